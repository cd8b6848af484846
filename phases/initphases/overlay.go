package initphases

import (
	"github.com/kubeforge/kubeforge/components/overlay"
	"github.com/kubeforge/kubeforge/phases/rundata"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

// overlayPhase stores the pod network in etcd and starts this node's overlay agent.
func overlayPhase() workflow.Phase {
	return workflow.Phase{
		Name:  "overlay",
		Short: "Set up the VXLAN overlay on this node",
		Long: `Store the pod network (podCIDR, nodeSubnetSize, VNI, port, MTU) in etcd under
/kubeforge/network/config, unless it is there already (a different one is an error:
the pod network of a running cluster cannot change), then install the overlay
agent on this host: the kubeforge binary as /usr/local/bin/kubeforge, the agent's
etcd client certificate (etcd/overlay-client), /etc/kubeforge/overlay.yaml and
` + overlay.UnitName + `, and start it. The phase ends when the agent holds
its subnet lease and has programmed every peer.`,
		Run: func(d workflow.RunData) error {
			data, err := rundata.From(d, "overlay")
			if err != nil {
				return err
			}
			return runOverlay(data, true)
		},
	}
}

func runOverlay(data rundata.Data, storeNetwork bool) error {
	res, err := overlay.Install(data.Context(), overlay.InstallOptions{
		Host:         data.Host(),
		Cluster:      data.Config(),
		Node:         *data.Node(),
		CertDir:      data.CertDir(),
		StoreNetwork: storeNetwork,
		DryRun:       data.DryRun(),
		Logf:         data.Logger().Printf,
	})
	if err != nil {
		return err
	}
	return workflow.Outcome(data.Logger(), res.Changed, res.Detail)
}
