package joinphases

import (
	"github.com/kubeforge/kubeforge/components/overlay"
	"github.com/kubeforge/kubeforge/phases/rundata"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

// overlayPhase starts this node's overlay agent; init stored the pod network.
func overlayPhase() workflow.Phase {
	return workflow.Phase{
		Name:  "overlay",
		Short: "Set up the VXLAN overlay on this node",
		Long: `Configure the overlay agent on this host: /etc/kubeforge/overlay.yaml (the
agent runs inside ` + overlay.UnitName + `, which the node-runtime phase starts). With the kube backend (the default) the agent uses this node's own
credential (kubelet.conf, from the kubelet phase before this one): it waits for
its Node's spec.podCIDR, publishes its VTEP as annotations on its own Node, and
follows every Node; the host needs no etcd credential. With the etcd backend
(only for hosts with the etcd role; others are refused) it uses the etcd client
certificate etcd/overlay-client from the etcd hand-over. The node-runtime phase
after it ends when the agent holds its subnet and every peer is programmed.`,
		Run: func(d workflow.RunData) error {
			data, err := rundata.From(d, "overlay")
			if err != nil {
				return err
			}
			res, err := overlay.Install(data.Context(), overlay.InstallOptions{
				Host:          data.Host(),
				Cluster:       data.Config(),
				Node:          *data.Node(),
				CertDir:       data.CertDir(),
				KubeconfigDir: data.KubeconfigDir(),
				DryRun:        data.DryRun(),
				Logf:          data.Logger().Printf,
			})
			if err != nil {
				return err
			}
			return workflow.Outcome(data.Logger(), res.Changed, res.Detail)
		},
	}
}
