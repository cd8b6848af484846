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
		Long: `Install the overlay agent on this host: the kubeforge binary as
/usr/local/bin/kubeforge, the agent's etcd client certificate (etcd/overlay-client,
issued here when the host holds the etcd CA key), /etc/kubeforge/overlay.yaml and
` + overlay.UnitName + `, and start it. The agent acquires this node's subnet
(the same one again after a restart) and the phase ends when every peer is
programmed. A pod network in etcd that differs from this host's configuration
stops the agent with an error naming the difference.`,
		Run: func(d workflow.RunData) error {
			data, err := rundata.From(d, "overlay")
			if err != nil {
				return err
			}
			res, err := overlay.Install(data.Context(), overlay.InstallOptions{
				Host:    data.Host(),
				Cluster: data.Config(),
				Node:    *data.Node(),
				CertDir: data.CertDir(),
				DryRun:  data.DryRun(),
				Logf:    data.Logger().Printf,
			})
			if err != nil {
				return err
			}
			return workflow.Outcome(data.Logger(), res.Changed, res.Detail)
		},
	}
}
