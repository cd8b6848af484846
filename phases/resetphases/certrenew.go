package resetphases

import (
	"context"

	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/components/renewal"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

// certRenewPhase removes the renewal schedule first, so no renewal restarts a
// unit that reset is taking down.
func certRenewPhase() workflow.Phase {
	return removal{
		name:  "cert-renew",
		short: "Stop and remove the certificate renewal timer and service",
		long: `Stop, disable and delete ` + renewal.TimerName + ` and ` + renewal.ServiceName + `.
A host without the units skips the phase.`,
		present: renewal.TimerPresent,
		remove: func(ctx context.Context, h host.Host, logf func(string, ...any)) (bool, string, error) {
			changed, err := renewal.RemoveTimer(ctx, h, logf)
			return changed, "certificate renewal timer removed", err
		},
	}.phase()
}
