package controlplane

import (
	"context"
	"fmt"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubeforge/kubeforge/components/component"
)

// WaitLeaders waits until each named component holds its leader-election lease
// in kube-system, renewed within the lease duration: only then does the
// controller-manager run its controllers (the bootstrapsigner among them) and
// the scheduler place pods. It returns "name=holder" pairs.
func WaitLeaders(ctx context.Context, cli kubernetes.Interface, names []string, timeout time.Duration, logf func(string, ...any)) (string, error) {
	start, last := time.Now(), time.Now()
	var held []string
	var missing error
	err := component.Poll(ctx, 250*time.Millisecond, timeout, func(ctx context.Context) (bool, error) {
		held, missing = nil, nil
		for _, n := range names {
			l, err := cli.CoordinationV1().Leases(metav1.NamespaceSystem).Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				missing = fmt.Errorf("lease %s: %v", n, err)
				break
			}
			if !leaseHeld(l, time.Now()) {
				missing = fmt.Errorf("lease %s has no current holder", n)
				break
			}
			held = append(held, n+"="+*l.Spec.HolderIdentity)
		}
		if missing == nil {
			return true, nil
		}
		if time.Since(last) >= 5*time.Second {
			last = time.Now()
			logf("waiting for leader election: %v (%s)", missing, time.Since(start).Round(time.Second))
		}
		return false, nil
	})
	if err != nil {
		return "", fmt.Errorf("no leader after %s: %v", timeout, missing)
	}
	return strings.Join(held, ", "), nil
}

// leaseHeld reports whether a lease has a holder whose last renewal is within
// the lease duration.
func leaseHeld(l *coordinationv1.Lease, now time.Time) bool {
	s := l.Spec
	if s.HolderIdentity == nil || *s.HolderIdentity == "" || s.RenewTime == nil {
		return false
	}
	d := 15 * time.Second
	if s.LeaseDurationSeconds != nil {
		d = time.Duration(*s.LeaseDurationSeconds) * time.Second
	}
	return now.Sub(s.RenewTime.Time) <= d
}
