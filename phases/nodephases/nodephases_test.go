package nodephases

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/components/containerd/fakehost"
	"github.com/kubeforge/kubeforge/components/kubelet"
	"github.com/kubeforge/kubeforge/phases/rundata"
)

const seed = "../../docs/examples/seed-topology.yaml"

// runData is init's run data for name in the seed topology ("" config: none).
func runData(t *testing.T, configPath, name string) *rundata.Node {
	t.Helper()
	n, err := rundata.New(context.Background(), rundata.Flags{ConfigPath: configPath, NodeName: name}, rundata.Options{
		OpenHost: func(string) (host.Host, error) { return fakehost.New(name), nil },
		Identity: func() (string, []net.IP, error) { return name, nil, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func TestTaints(t *testing.T) {
	for _, tc := range []struct {
		name  string
		roles []config.Role
		want  []string
	}{
		{"a control-plane-only host keeps ordinary pods off", []config.Role{config.RoleControlPlane, config.RoleEtcd}, []string{kubelet.ControlPlaneTaint}},
		{"a control-plane host that is also a worker takes pods", []config.Role{config.RoleControlPlane, config.RoleWorker}, nil},
		{"a worker takes pods", []config.Role{config.RoleWorker, config.RoleEtcd}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := taints(&config.Host{Name: "h", Roles: tc.roles}); !slices.Equal(got, tc.want) {
				t.Errorf("taints = %v, want %v", got, tc.want)
			}
		})
	}
}

// A joining worker's kubelet and kube-proxy use the endpoint discovery found; a
// control-plane host's use its own apiserver, so they keep working while
// another control plane is down.
func TestJoinServer(t *testing.T) {
	const discovered = "https://192.168.161.150:6443" // another control plane
	got, err := joinServer(runData(t, seed, "node01"), discovered)
	if err != nil || got != discovered {
		t.Errorf("worker: %q %v, want %q", got, err, discovered)
	}
	got, err = joinServer(runData(t, seed, "master01"), discovered)
	if err != nil || got != "https://192.168.161.151:6443" {
		t.Errorf("control plane: %q %v, want its own apiserver", got, err)
	}
}

// The node phases run where the roles say, and a phase without a cluster
// configuration says which phase needs it.
func TestPhaseSelection(t *testing.T) {
	for _, tc := range []struct {
		host              string
		certRenew, backup bool
	}{
		{"master01", true, true}, // control-plane and etcd
		{"node01", true, false},  // worker and etcd: member certificates to renew, no backups
	} {
		t.Run(tc.host, func(t *testing.T) {
			d := runData(t, seed, tc.host)
			if got, err := CertRenewPhase().RunIf(d); err != nil || got != tc.certRenew {
				t.Errorf("cert-renew runs: %v %v, want %v", got, err, tc.certRenew)
			}
			if got, err := EtcdBackupPhase().RunIf(d); err != nil || got != tc.backup {
				t.Errorf("etcd-backup runs: %v %v, want %v", got, err, tc.backup)
			}
		})
	}
	t.Run("no configuration", func(t *testing.T) {
		_, err := CertRenewPhase().RunIf(runData(t, "", "node01"))
		if err == nil || !strings.Contains(err.Error(), "phase cert-renew needs the cluster configuration") {
			t.Errorf("cert-renew without --config: %v", err)
		}
	})
}
