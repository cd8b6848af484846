package status

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/components/etcd"
	"github.com/kubeforge/kubeforge/components/etcd/snapshot"
	"github.com/kubeforge/kubeforge/components/kubeclient"
	"github.com/kubeforge/kubeforge/components/overlay"
)

// LocalProbes read from the host kubeforge runs on, with the credentials it
// holds: etcd as its administrator on a control-plane host, else with the
// health-check certificate; the API as admin.conf where it exists, else as the
// node itself (which sees its own Node); the overlay agent on its loopback
// status address; the backup directory on the local disk.
func LocalProbes(cluster *config.Cluster, certDir, kcDir string) Probes {
	return Probes{
		Etcd: func(ctx context.Context) (*Etcd, error) {
			return localEtcd(ctx, cluster, certDir)
		},
		Node: func(ctx context.Context, name string) (*Node, error) {
			return localNode(ctx, kcDir, name)
		},
		Overlay: func(ctx context.Context) (*Overlay, error) {
			addr := overlay.DefaultHealth
			if c, err := overlay.LoadConfig(overlay.ConfigPath); err == nil && c.HealthAddress != "" {
				addr = c.HealthAddress
			}
			st, err := overlay.FetchStatus(ctx, addr)
			if err != nil {
				return nil, err
			}
			o := &Overlay{Subnet: st.Subnet, Peers: len(st.Peers)}
			if !st.Ready {
				o.Error = "not ready: " + st.Problem
			}
			return o, nil
		},
		Snapshots: snapshot.List,
	}
}

func localEtcd(ctx context.Context, cluster *config.Cluster, certDir string) (*Etcd, error) {
	tlsCfg, err := etcd.AdminTLS(etcd.LocalRead, certDir)
	if errors.Is(err, etcd.ErrNoAdminCredential) {
		tlsCfg, err = etcd.ClientTLSFiles(certDir).Config(etcd.LocalRead)
	}
	if err != nil {
		return nil, err
	}
	var eps []string
	if cluster != nil {
		for _, h := range cluster.HostsWithRole(config.RoleEtcd) {
			eps = append(eps, etcd.MemberOf(h).ClientURL())
		}
	}
	if len(eps) == 0 {
		// No configuration (a joined host): the local member, which also
		// listens on loopback, lists the others.
		eps = []string{fmt.Sprintf("https://127.0.0.1:%d", etcd.DefaultClientPort)}
	}
	cli, err := etcd.NewClient(eps, tlsCfg)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	st, err := etcd.GetClusterStatus(ctx, cli, tlsCfg)
	if err != nil {
		return nil, fmt.Errorf("etcd at %v: %w", eps, err)
	}
	e := &Etcd{Members: len(st.Members)}
	for _, m := range st.Members {
		if m.Healthy {
			e.Healthy++
		}
		if m.IDHex == st.Leader {
			e.Leader = m.Name
		}
	}
	return e, nil
}

func localNode(ctx context.Context, kcDir, name string) (*Node, error) {
	kc := filepath.Join(kcDir, "admin.conf")
	admin := true
	data, err := os.ReadFile(kc)
	if err != nil {
		admin = false
		kc = filepath.Join(kcDir, "kubelet.conf")
		if data, err = os.ReadFile(kc); err != nil {
			return nil, err
		}
	}
	cli, err := kubeclient.New(data, kubeclient.Options{})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", kc, err)
	}
	n := &Node{Name: name}
	if admin {
		list, err := cli.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("listing Nodes with %s: %w", kc, err)
		}
		n.Nodes = len(list.Items)
		found := false
		for i := range list.Items {
			ready := nodeReady(&list.Items[i])
			if list.Items[i].Name == name {
				n.Ready, found = ready, true
			} else if !ready {
				n.NotReady = append(n.NotReady, list.Items[i].Name)
			}
		}
		if !found {
			return nil, fmt.Errorf("no Node %s in the cluster", name)
		}
		return n, nil
	}
	node, err := cli.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("no Node %s in the cluster", name)
	}
	if err != nil {
		return nil, fmt.Errorf("reading Node %s with %s: %w", name, kc, err)
	}
	n.Ready = nodeReady(node)
	return n, nil
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
