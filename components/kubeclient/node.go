package kubeclient

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// NodeNotReady says why Node name is not Ready, "" when it is.
func NodeNotReady(ctx context.Context, c kubernetes.Interface, name string) string {
	n, err := c.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Sprintf("Node %s: %v", name, err)
	}
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			if cond.Status == corev1.ConditionTrue {
				return ""
			}
			return fmt.Sprintf("Node %s is not Ready (%s)", name, cond.Message)
		}
	}
	return fmt.Sprintf("Node %s reports no Ready condition yet", name)
}
