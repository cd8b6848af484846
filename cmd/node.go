package cmd

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/components/clusterinfo"
	"github.com/kubeforge/kubeforge/components/etcd"
	"github.com/kubeforge/kubeforge/components/overlay"
	"github.com/kubeforge/kubeforge/phases/rundata"
)

func init() { register(newNodeCmd) }

func newNodeCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "node",
		Short: "Manage the cluster's nodes, and run this host's node runtime",
	}
	c.AddCommand(newNodeRemoveCmd(), newNodeRunCmd(), newNodeStatusCmd())
	return c
}

func newNodeRemoveCmd() *cobra.Command {
	var (
		kubeconfig, certDir string
		endpoints           []string
		force               bool
		timeout             time.Duration
	)
	c := &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a host that is dead or gone from the cluster (on a control-plane host)",
		Long: `Remove what the cluster keeps for a host that is dead or gone for good, from a
control-plane host (one with the etcd CA key, whose etcd administrator may change
the membership and the overlay's leases):

  - its etcd member, if it was one: refused, changing nothing, when the remaining
    members would have no healthy quorum (--force overrides that, never for the
    last voting member);
  - its overlay subnet, so every peer drops its route, FDB and neighbour entries;
  - its Node object;
  - its entry in kube-system/kubeforge-joined-hosts, if it joined without being in
    the hosts table.

A host whose Node is Ready is refused (--force overrides): run 'kubeforge reset' on
a host that is still alive, or power it off first. Each step that finds nothing
to remove says so, so the command can be re-run.`,
		Example: `  kubeforge node remove node04
  kubeforge node remove node02 --force   # its Node still reports Ready, or etcd quorum would be at risk`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if msgs := validation.IsDNS1123Label(name); len(msgs) > 0 {
				return fmt.Errorf("node name %q: %s", name, strings.Join(msgs, "; "))
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			kube, err := tokenClient(kubeconfig)
			if err != nil {
				return fmt.Errorf("node remove runs on a control-plane host: %w", err)
			}
			tlsCfg, err := clientTLS(etcd.TLSFiles{}, certDir, true)
			if err != nil {
				return fmt.Errorf("node remove needs etcd's administrator credential (on a control-plane host, with %s/etcd/ca.key): %w", certDir, err)
			}
			ecli, st, err := clusterStatus(ctx, endpoints, tlsCfg)
			if err != nil {
				return err
			}
			defer ecli.Close()
			cluster, err := clusterinfo.DownloadConfig(ctx, kube)
			if err != nil {
				return fmt.Errorf("node remove: reading the cluster configuration: %w", err)
			}
			self, _ := os.Hostname()
			self, _, _ = strings.Cut(self, ".")
			r := nodeRemoval{Kube: kube, Etcd: &etcdAdmin{backend: cluster.Spec.Networking.Overlay.Backend, cli: ecli, tls: tlsCfg, st: st}, Force: force, Self: self}
			return r.run(ctx, cmd.OutOrStdout(), name)
		},
	}
	f := c.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "/etc/kubernetes/admin.conf", "kubeconfig to reach the cluster with")
	f.StringSliceVar(&endpoints, "endpoints", []string{fmt.Sprintf("https://127.0.0.1:%d", etcd.DefaultClientPort)}, "etcd client URLs (host:port means https)")
	f.StringVar(&certDir, "cert-dir", rundata.DefaultCertDir, "directory of the PKI (etcd/ca.crt and etcd/ca.key)")
	f.BoolVar(&force, "force", false, "remove a host whose Node is Ready, or whose etcd member's removal leaves no healthy quorum")
	f.DurationVar(&timeout, "timeout", 2*time.Minute, "how long to wait for the cluster")
	return c
}

// etcdOps is what node remove does in etcd: the membership and the overlay's
// lease (an interface so the steps' order and refusals are testable).
type etcdOps interface {
	// CheckMember returns the member ID of name (0: not a member) or why its
	// removal is refused.
	CheckMember(out io.Writer, name string, force bool) (uint64, error)
	RemoveMember(ctx context.Context, out io.Writer, id uint64) error
	ForgetOverlay(ctx context.Context, name string) ([]string, error)
}

type etcdAdmin struct {
	// backend is the cluster's overlay backend (from the uploaded config).
	backend config.OverlayBackend
	cli     *clientv3.Client
	tls     *tls.Config
	st      *etcd.ClusterStatus
}

func (e *etcdAdmin) CheckMember(out io.Writer, name string, force bool) (uint64, error) {
	return checkEtcdRemoval(out, e.st, name, force)
}

func (e *etcdAdmin) RemoveMember(ctx context.Context, out io.Writer, id uint64) error {
	return removeEtcdMember(ctx, out, e.cli, e.tls, e.st, id)
}

func (e *etcdAdmin) ForgetOverlay(ctx context.Context, name string) ([]string, error) {
	return overlay.ForgetNode(ctx, e.backend, e.cli, "", name)
}

// nodeRemoval is `kubeforge node remove`: every refusal is decided before the
// first change.
type nodeRemoval struct {
	Kube  kubernetes.Interface
	Etcd  etcdOps
	Force bool
	// Self is this host's name: it cannot remove itself.
	Self string
}

func (r nodeRemoval) run(ctx context.Context, out io.Writer, name string) error {
	if name == r.Self {
		return fmt.Errorf("%s is this host: run `kubeforge reset` here instead", name)
	}
	node, err := r.Kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		node = nil
	case err != nil:
		return fmt.Errorf("reading Node %s: %w", name, err)
	case ready(node) && !r.Force:
		return fmt.Errorf("refusing to remove %s: its Node is Ready (kubelet heartbeat %s), so the host looks alive; run `kubeforge reset` on it, or power it off and wait until the Node is NotReady (about a minute), or pass --force",
			name, heartbeat(node))
	}
	listed := false
	if cfg, err := clusterinfo.DownloadConfig(ctx, r.Kube); err == nil {
		listed = inHostsTable(ctx, r.Kube, cfg, name)
	}

	id, err := r.Etcd.CheckMember(out, name, r.Force)
	if err != nil {
		return err
	}
	var removed []string
	if id != 0 {
		if err := r.Etcd.RemoveMember(ctx, out, id); err != nil {
			return err
		}
		removed = append(removed, fmt.Sprintf("etcd member %s (%x)", name, id))
	}
	leases, err := r.Etcd.ForgetOverlay(ctx, name)
	if err != nil {
		return err
	}
	for _, l := range leases {
		fmt.Fprintf(out, "[node] released %s\n", l)
	}
	removed = append(removed, leases...)
	// The Node before its entry in the record. The approver records a Node
	// the hosts table does not list, and its informer may still show the Node
	// for a moment after the deletion; dropping the entry first would let it
	// write the entry back. Recording checks the live Node after reading the
	// record (clusterinfo.RecordJoinedHost), so once the Node is gone a
	// dropped entry stays dropped. The approver also drops a deleted Node's
	// entry: whether this command or the approver got there first, the report
	// says the entry that was there is gone.
	recorded, err := joinedEntry(ctx, r.Kube, name)
	if err != nil {
		return err
	}
	if node != nil {
		uid := node.UID
		err := r.Kube.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting Node %s: %w", name, err)
		}
		fmt.Fprintf(out, "[node] deleted Node %s\n", name)
		removed = append(removed, "Node "+name)
	} else {
		fmt.Fprintf(out, "[node] no Node %s\n", name)
	}
	forgot, err := clusterinfo.ForgetJoinedHost(ctx, r.Kube, name)
	if err != nil {
		return err
	}
	if forgot || recorded {
		fmt.Fprintf(out, "[node] removed %s from kube-system/%s\n", name, clusterinfo.JoinedHostsConfigMapName)
		removed = append(removed, "its entry in kube-system/"+clusterinfo.JoinedHostsConfigMapName)
	}
	if len(removed) == 0 {
		fmt.Fprintf(out, "[node] nothing of %s was left to remove\n", name)
	} else {
		fmt.Fprintf(out, "[node] %s removed: %s\n", name, strings.Join(removed, "; "))
	}
	if listed {
		fmt.Fprintf(out, "[node] %s is still in the hosts table of the cluster configuration (kube-system/%s): remove it from your cluster.yaml and run `kubeforge init phase upload-config --config cluster.yaml` here, or a later join of it would make it a member again\n",
			name, clusterinfo.ConfigMapName)
	}
	return nil
}

// joinedEntry reports whether the record of joined hosts has an entry for name.
func joinedEntry(ctx context.Context, c kubernetes.Interface, name string) (bool, error) {
	joined, err := clusterinfo.JoinedHosts(ctx, c)
	if err != nil {
		return false, err
	}
	for _, j := range joined {
		if j.Name == name {
			return true, nil
		}
	}
	return false, nil
}

// inHostsTable reports whether name is in the operator's hosts table (not only
// in the record of joined hosts).
func inHostsTable(ctx context.Context, c kubernetes.Interface, merged *config.Cluster, name string) bool {
	if _, ok := merged.Host(name); !ok {
		return false
	}
	joined, err := clusterinfo.JoinedHosts(ctx, c)
	if err != nil {
		return true
	}
	for _, j := range joined {
		if j.Name == name {
			return false
		}
	}
	return true
}

func ready(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func heartbeat(n *corev1.Node) string {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && !c.LastHeartbeatTime.IsZero() {
			return c.LastHeartbeatTime.UTC().Format(time.RFC3339)
		}
	}
	return "unknown"
}
