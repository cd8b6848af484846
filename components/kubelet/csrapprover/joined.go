package csrapprover

import (
	"context"
	"errors"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubeforge/kubeforge/components/clusterinfo"
)

// recordJoined records a Node that the hosts table does not list in
// kube-system/kubeforge-joined-hosts (clusterinfo.RecordJoinedHost), with the
// InternalIP its kubelet reported, so the control plane's tools and this
// approver's serving-certificate policy know the host. The node itself cannot
// write the record; the approver only ever adds an entry for a name nobody
// has, never changes one, and refuses an address a known host has (logged,
// not retried: the Node's next change looks again). n may come from the
// informer's cache after the Node was deleted: RecordJoinedHost checks the
// Node against the API after reading the record, so a deleted Node whose
// entry `kubeforge node remove` dropped is not recorded again.
func (a *Approver) recordJoined(ctx context.Context, n *corev1.Node) error {
	addr := ""
	for _, ad := range n.Status.Addresses {
		if ad.Type == corev1.NodeInternalIP && addr == "" {
			addr = ad.Address
		}
	}
	if addr == "" {
		return nil // its kubelet has not reported an address yet
	}
	cfg, err := clusterinfo.DownloadConfig(ctx, a.Client)
	if err != nil {
		return err
	}
	if _, ok := cfg.Host(n.Name); ok {
		return nil
	}
	ok, err := clusterinfo.RecordJoinedHost(ctx, a.Client, cfg, n.Name, addr, n.UID, time.Now())
	if errors.Is(err, clusterinfo.ErrJoinedConflict) {
		a.logf("not recording Node %s: %v", n.Name, err)
		return nil
	}
	if ok {
		a.logf("recorded Node %s (%s), which joined without being in the hosts table, in kube-system/%s", n.Name, addr, clusterinfo.JoinedHostsConfigMapName)
	}
	return err
}

// forgetJoined drops a deleted Node's entry from the record.
func (a *Approver) forgetJoined(ctx context.Context, name string) error {
	ok, err := clusterinfo.ForgetJoinedHost(ctx, a.Client, name)
	if ok {
		a.logf("Node %s is gone: removed it from kube-system/%s", name, clusterinfo.JoinedHostsConfigMapName)
	}
	return err
}
