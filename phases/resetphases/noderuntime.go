package resetphases

import (
	"context"
	"strings"

	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/components/noderuntime"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

// nodeRuntimePhase stops and removes kubeforge's node runtime first, so none
// of its features (the overlay agent, the approver) puts back what the later
// phases remove.
func nodeRuntimePhase() workflow.Phase {
	return removal{
		name:  "node-runtime",
		short: "Stop and remove " + noderuntime.UnitName,
		long: `Stop, disable and remove ` + noderuntime.UnitName + ` (the overlay agent, the CSR
approver and the API load balancer) and the per-feature units of earlier
versions (` + strings.Join(noderuntime.LegacyUnits, ", ") + `). A host without them skips the phase.`,
		present: noderuntime.Present,
		remove: func(ctx context.Context, h host.Host, logf func(string, ...any)) (bool, string, error) {
			removed, err := noderuntime.Remove(ctx, h, logf)
			return len(removed) > 0, "removed " + strings.Join(removed, ", "), err
		},
	}.phase()
}
