package kubelet

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/components/component"
)

// WaitReady polls the Node until its Ready condition is True, logging what it
// still waits for every 15 s. It returns how long that took.
func WaitReady(ctx context.Context, cli kubernetes.Interface, name string, timeout time.Duration, logf func(string, ...any)) (time.Duration, error) {
	start := time.Now()
	last, lastLog := "", start
	err := component.Poll(ctx, 250*time.Millisecond, timeout, func(ctx context.Context) (bool, error) {
		n, err := cli.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
		} else {
			last = "not Ready"
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady {
					if c.Status == corev1.ConditionTrue {
						return true, nil
					}
					last = fmt.Sprintf("Ready=%s: %s", c.Status, strings.TrimSpace(c.Message))
				}
			}
		}
		if time.Since(lastLog) > 15*time.Second {
			logf("waiting for Node %s: %s", name, last)
			lastLog = time.Now()
		}
		return false, nil
	})
	switch {
	case ctx.Err() != nil:
		return 0, ctx.Err()
	case err != nil:
		return 0, fmt.Errorf("Node %s is not Ready after %s: %s", name, timeout, last)
	}
	return time.Since(start), nil
}

// WaitServingCert waits until the kubelet holds its serving certificate, which
// it gets only through a CSR the control plane approves.
func WaitServingCert(ctx context.Context, h host.Host, timeout time.Duration) error {
	err := component.Poll(ctx, 250*time.Millisecond, timeout, func(ctx context.Context) (bool, error) {
		_, err := h.Stat(ctx, ServingCertPath)
		return err == nil, nil
	})
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		return fmt.Errorf("%s: the kubelet has no serving certificate %s after %s: its CSR is not approved (is kubeforge-csr-approver.service running on a control-plane host? `kubectl get csr`)", h.Name(), ServingCertPath, timeout)
	}
	return nil
}
