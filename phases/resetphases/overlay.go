package resetphases

import (
	"github.com/kubeforge/kubeforge/components/overlay"
	"github.com/kubeforge/kubeforge/phases/rundata"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

// overlayPhase removes the overlay. It runs first: releasing the subnet lease
// needs etcd, which the etcd phase may be about to take off this host.
func overlayPhase() workflow.Phase {
	return workflow.Phase{
		Name:  "overlay",
		Short: "Remove the overlay agent, its device, rules and files, and release the subnet lease",
		Long: `Stop and remove ` + overlay.UnitName + `, release this node's subnet lease in
etcd (peers drop its routes at once instead of when the lease expires), delete
the VXLAN device (with its routes, neighbour and FDB entries) and the cni0 bridge,
remove the KUBEFORGE-FORWARD and KUBEFORGE-POSTRTG iptables chains, the CNI config,
subnet.env, host-local's allocations and /etc/kubeforge/overlay.yaml. When etcd
cannot be reached the lease is left to expire and everything local is still removed.
A host with none of the overlay's files skips the phase.`,
		RunIf: func(d workflow.RunData) (bool, error) {
			data, err := rundata.From(d, "overlay")
			if err != nil {
				return false, err
			}
			return overlay.Present(data.Context(), data.Host())
		},
		Run: func(d workflow.RunData) error {
			data, err := rundata.From(d, "overlay")
			if err != nil {
				return err
			}
			res, err := overlay.Reset(data.Context(), overlay.ResetOptions{
				Host:     data.Host(),
				NodeName: data.NodeName(),
				Cluster:  data.Config(),
				CertDir:  data.CertDir(),
				DryRun:   data.DryRun(),
				Logf:     data.Logger().Printf,
			})
			if err != nil {
				return err
			}
			return workflow.Outcome(data.Logger(), res.Changed, res.Detail)
		},
	}
}
