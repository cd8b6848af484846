package joinphases

import (
	"fmt"
	"path"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/clusterinfo"
	"github.com/kubeforge/kubeforge/components/kubeclient"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

// recordControlPlanePhase records a control-plane host the hosts table does
// not list in kube-system/kubeforge-joined-hosts, with its roles, so that later
// joins, upload-certs (etcd hand-overs are only for hosts that are not
// control-plane hosts) and the CSR approver see it as a control-plane host.
func recordControlPlanePhase() workflow.Phase {
	return workflow.Phase{
		Name:  "record-control-plane",
		Short: "Record a control-plane host the hosts table does not list",
		Long: `A control-plane host that is not in the cluster configuration's hosts table is
recorded in ConfigMap kube-system/` + clusterinfo.JoinedHostsConfigMapName + ` with its
address and roles (control-plane, and etcd with --etcd), with this host's
admin.conf, before its kubelet registers the Node: the CSR approver, which
records unlisted Nodes as workers, then finds it recorded. A listed host is
left to the table.`,
		RunIf: func(d workflow.RunData) (bool, error) {
			data, err := joinData(d, "record-control-plane")
			if err != nil {
				return false, err
			}
			return data.Node() != nil && data.Node().HasRole(config.RoleControlPlane), nil
		},
		Run: func(d workflow.RunData) error {
			data, err := joinData(d, "record-control-plane")
			if err != nil {
				return err
			}
			res, err := data.Discovered()
			if err != nil {
				return fmt.Errorf("phase record-control-plane: %w", err)
			}
			n := data.Node()
			if _, ok := res.Config.Host(n.Name); ok {
				return workflow.Unchanged("%s is in the hosts table", n.Name)
			}
			if data.DryRun() {
				data.Logger().Printf("dry run: would record %s (%s) in kube-system/%s", n.Name, n.Address, clusterinfo.JoinedHostsConfigMapName)
				return nil
			}
			ctx, h := data.Context(), data.Host()
			p := path.Join(data.KubeconfigDir(), certs.KubeconfigAdmin)
			kc, err := h.ReadFile(ctx, p)
			if err != nil {
				return fmt.Errorf("%s: %w (the kubeconfig phase writes it)", p, err)
			}
			cli, err := kubeclient.New(kc, kubeclient.Options{})
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			wrote, err := clusterinfo.RecordJoinedControlPlane(ctx, cli, res.Config, n.Name, n.Address, n.Roles, time.Now())
			if err != nil {
				return err
			}
			if !wrote {
				return workflow.Unchanged("%s is recorded in kube-system/%s", n.Name, clusterinfo.JoinedHostsConfigMapName)
			}
			data.Logger().Printf("recorded %s (%s, roles %v) in kube-system/%s", n.Name, n.Address, n.Roles, clusterinfo.JoinedHostsConfigMapName)
			return nil
		},
	}
}
