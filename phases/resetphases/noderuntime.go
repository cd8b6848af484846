package resetphases

import (
	"strings"

	"github.com/kubeforge/kubeforge/components/noderuntime"
	"github.com/kubeforge/kubeforge/phases/rundata"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

// nodeRuntimePhase stops and removes kubeforge's node runtime first, so none
// of its features (the overlay agent, the approver) puts back what the later
// phases remove.
func nodeRuntimePhase() workflow.Phase {
	return workflow.Phase{
		Name:  "node-runtime",
		Short: "Stop and remove " + noderuntime.UnitName,
		Long: `Stop, disable and remove ` + noderuntime.UnitName + ` (the overlay agent, the CSR
approver and the API load balancer) and the per-feature units of earlier
versions (` + strings.Join(noderuntime.LegacyUnits, ", ") + `). A host without them skips the phase.`,
		RunIf: func(d workflow.RunData) (bool, error) {
			data, err := rundata.From(d, "node-runtime")
			if err != nil {
				return false, err
			}
			return noderuntime.Present(data.Context(), data.Host())
		},
		Run: func(d workflow.RunData) error {
			data, err := rundata.From(d, "node-runtime")
			if err != nil {
				return err
			}
			removed, err := noderuntime.Remove(data.Context(), data.Host(), data.Logger().Printf)
			if err != nil {
				return err
			}
			return workflow.Outcome(data.Logger(), len(removed) > 0, "removed "+strings.Join(removed, ", "))
		},
	}
}
