package cleanup

import (
	"strings"
	"testing"
)

// The kubelet and the agents stop first, etcd after every other unit (so the
// apiserver and controller-manager do not fail under the reset), containerd
// not here at all.
func TestStopOrder(t *testing.T) {
	got := strings.Join(stopOrder([]string{"containerd.service", "etcd.service", "kube-apiserver.service",
		"kube-controller-manager.service", "kubelet.service", "kubeforge-overlay.service"}), " ")
	want := "kubelet.service kubeforge-overlay.service kube-apiserver.service kube-controller-manager.service etcd.service"
	if got != want {
		t.Errorf("stop order\n got %s\nwant %s", got, want)
	}
}
