package inventory

import (
	"slices"
	"testing"

	"github.com/kubeforge/kubeforge/bootstrap/config"
)

func TestForRoles(t *testing.T) {
	for _, tc := range []struct {
		name  string
		roles []config.Role
		want  []string
	}{
		{"every role, repeated", []config.Role{config.RoleControlPlane, config.RoleEtcd, config.RoleWorker, config.RoleControlPlane},
			[]string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kubelet", "kube-proxy"}},
		{"worker", []config.Role{config.RoleWorker}, []string{"kubelet", "kube-proxy"}},
		// etcd installs its own binaries with the member; the host is still a node.
		{"etcd only", []config.Role{config.RoleEtcd}, []string{"kubelet", "kube-proxy"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ForRoles(tc.roles); !slices.Equal(got, tc.want) {
				t.Errorf("ForRoles(%v) = %v, want %v", tc.roles, got, tc.want)
			}
		})
	}
}

// TestResetCoversInstall: whatever a component installs, reset knows about.
func TestResetCoversInstall(t *testing.T) {
	for _, f := range All() {
		t.Run(f.Name, func(t *testing.T) {
			if len(f.Binaries) == 0 && len(f.Units) == 0 {
				t.Errorf("%s declares neither binaries nor units", f.Name)
			}
			for _, u := range f.Units {
				if !slices.Contains(Units(), u) {
					t.Errorf("unit %s of %s missing from Units()", u, f.Name)
				}
			}
		})
	}
	for _, want := range []string{"/var/lib/kubelet", "/var/lib/kube-proxy", "/etc/containerd", "/var/lib/containerd", "/run/containerd", "/etc/cni/net.d", "/var/lib/cni"} {
		if !slices.Contains(Paths(), want) {
			t.Errorf("Paths() lacks %s", want)
		}
	}
	if got := ChainPrefixes(); !slices.Equal(got, []string{"KUBE-", "CNI-"}) {
		t.Errorf("ChainPrefixes() = %v", got)
	}
}
