package resetphases

import (
	"github.com/kubeforge/kubeforge/components/etcd/snapshot"
	"github.com/kubeforge/kubeforge/phases/rundata"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

// etcdBackupPhase removes the backup schedule. It runs first, so no backup
// starts while the member is being removed. The snapshots stay.
func etcdBackupPhase() workflow.Phase {
	return workflow.Phase{
		Name:  "etcd-backup",
		Short: "Stop and remove the etcd backup timer and service (the snapshots stay)",
		Long: `Stop, disable and delete ` + snapshot.TimerName + ` and ` + snapshot.ServiceName + `.
The snapshot directory and its snapshots are left in place: they are what the
cluster may have to be restored from. A host without the units skips the phase.`,
		RunIf: func(d workflow.RunData) (bool, error) {
			data, err := rundata.From(d, "etcd-backup")
			if err != nil {
				return false, err
			}
			return snapshot.Present(data.Context(), data.Host())
		},
		Run: func(d workflow.RunData) error {
			data, err := rundata.From(d, "etcd-backup")
			if err != nil {
				return err
			}
			changed, err := snapshot.Remove(data.Context(), data.Host(), data.Logger().Printf)
			if err != nil {
				return err
			}
			return workflow.Outcome(data.Logger(), changed, "etcd backup timer removed; snapshots kept")
		},
	}
}
