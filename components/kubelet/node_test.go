package kubelet

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func node(name string, ready corev1.ConditionStatus) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready, Message: "container runtime network not ready"}}}}
}

func TestWaitReady(t *testing.T) {
	ctx := context.Background()
	t.Run("ready", func(t *testing.T) {
		cli := fake.NewClientset(node("node01", corev1.ConditionTrue))
		if _, err := WaitReady(ctx, cli, "node01", time.Minute, t.Logf); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("never ready names the node and the condition", func(t *testing.T) {
		cli := fake.NewClientset(node("node01", corev1.ConditionFalse))
		_, err := WaitReady(ctx, cli, "node01", 300*time.Millisecond, t.Logf)
		if err == nil || !strings.Contains(err.Error(), "Node node01 is not Ready") || !strings.Contains(err.Error(), "network not ready") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("missing node", func(t *testing.T) {
		_, err := WaitReady(ctx, fake.NewClientset(), "node02", 300*time.Millisecond, t.Logf)
		if err == nil || !strings.Contains(err.Error(), "node02") || !strings.Contains(err.Error(), "not found") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := WaitReady(cctx, fake.NewClientset(), "node02", time.Minute, t.Logf); err != context.Canceled {
			t.Fatalf("got %v, want context.Canceled", err)
		}
	})
}
