package coredns

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// WaitReady waits until at least one CoreDNS replica is ready, and reports how
// many are of how many wanted. On timeout the error says why the pods are not.
func WaitReady(ctx context.Context, c kubernetes.Interface, timeout time.Duration) (ready, want int32, err error) {
	err = wait.PollUntilContextTimeout(ctx, time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		dep, err := c.AppsV1().Deployments(Namespace).Get(ctx, Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, nil // the apiserver may be briefly busy; the deadline bounds it
		}
		want = 1
		if dep.Spec.Replicas != nil {
			want = *dep.Spec.Replicas
		}
		ready = dep.Status.ReadyReplicas
		return ready > 0 && dep.Status.ObservedGeneration >= dep.Generation, nil
	})
	if err != nil {
		return ready, want, fmt.Errorf("no CoreDNS replica became ready within %s: %s (kubectl -n %s get pods -l %s=%s)",
			timeout, PodProblems(ctx, c), Namespace, AppLabel, AppLabelValue)
	}
	return ready, want, nil
}

// PodProblems summarises why CoreDNS pods are not ready.
func PodProblems(ctx context.Context, c kubernetes.Interface) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	pods, err := c.CoreV1().Pods(Namespace).List(ctx, metav1.ListOptions{LabelSelector: AppLabel + "=" + AppLabelValue})
	if err != nil {
		return "listing its pods: " + err.Error()
	}
	if len(pods.Items) == 0 {
		return "no CoreDNS pod exists"
	}
	var out []string
	for _, p := range pods.Items {
		why := string(p.Status.Phase)
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil {
				why = w.Reason + ": " + w.Message
			} else if t := cs.LastTerminationState.Terminated; t != nil {
				why += fmt.Sprintf(", last exit %d (%s)", t.ExitCode, t.Reason)
			}
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodScheduled && cond.Status != corev1.ConditionTrue {
				why = "unscheduled: " + cond.Message
			}
		}
		out = append(out, fmt.Sprintf("pod %s on %q: %s", p.Name, p.Spec.NodeName, why))
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}
