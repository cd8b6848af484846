package resetphases

import (
	"github.com/kubeforge/kubeforge/components/renewal"
	"github.com/kubeforge/kubeforge/phases/rundata"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

// certRenewPhase removes the renewal schedule first, so no renewal restarts a
// unit that reset is taking down.
func certRenewPhase() workflow.Phase {
	return workflow.Phase{
		Name:  "cert-renew",
		Short: "Stop and remove the certificate renewal timer and service",
		Long: `Stop, disable and delete ` + renewal.TimerName + ` and ` + renewal.ServiceName + `.
A host without the units skips the phase.`,
		RunIf: func(d workflow.RunData) (bool, error) {
			data, err := rundata.From(d, "cert-renew")
			if err != nil {
				return false, err
			}
			return renewal.TimerPresent(data.Context(), data.Host())
		},
		Run: func(d workflow.RunData) error {
			data, err := rundata.From(d, "cert-renew")
			if err != nil {
				return err
			}
			changed, err := renewal.RemoveTimer(data.Context(), data.Host(), data.Logger().Printf)
			if err != nil {
				return err
			}
			return workflow.Outcome(data.Logger(), changed, "certificate renewal timer removed")
		},
	}
}
