package coredns_test

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubeforge/kubeforge/components/coredns"
	"github.com/kubeforge/kubeforge/components/kubeclient"
)

// The add-on phase waits for CoreDNS only on a Ready node (NodeNotReady says
// why not), and a failed wait says why the pods are not ready.
func TestAddonWaitConditions(t *testing.T) {
	ctx := context.Background()
	node := func(name string, st corev1.ConditionStatus) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{
			{Type: corev1.NodeReady, Status: st, Message: "container runtime network not ready: cni config uninitialized"}}}}
	}
	pending := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "coredns-a", Namespace: coredns.Namespace, Labels: map[string]string{coredns.AppLabel: coredns.AppLabelValue}},
		Spec:       corev1.PodSpec{NodeName: "master01"},
		Status: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImageNeverPull", Message: "image not present"}}}}},
	}
	cli := fake.NewClientset(node("master01", corev1.ConditionFalse), node("node01", corev1.ConditionTrue), pending)
	if why := kubeclient.NodeNotReady(ctx, cli, "master01"); !strings.Contains(why, "Node master01 is not Ready (container runtime network not ready") {
		t.Errorf("NotReady node: %q", why)
	}
	if why := kubeclient.NodeNotReady(ctx, cli, "node01"); why != "" {
		t.Errorf("Ready node: %q", why)
	}
	if why := kubeclient.NodeNotReady(ctx, cli, "node09"); !strings.Contains(why, "node09") {
		t.Errorf("missing node: %q", why)
	}
	if got := coredns.PodProblems(ctx, cli); got != `pod coredns-a on "master01": ErrImageNeverPull: image not present` {
		t.Errorf("podProblems: %q", got)
	}
}
