package resetphases

import (
	"context"

	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/components/etcd/snapshot"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

// etcdBackupPhase removes the backup schedule. It runs first, so no backup
// starts while the member is being removed. The snapshots stay.
func etcdBackupPhase() workflow.Phase {
	return removal{
		name:  "etcd-backup",
		short: "Stop and remove the etcd backup timer and service (the snapshots stay)",
		long: `Stop, disable and delete ` + snapshot.TimerName + ` and ` + snapshot.ServiceName + `.
The snapshot directory and its snapshots are left in place: they are what the
cluster may have to be restored from. A host without the units skips the phase.`,
		present: snapshot.Present,
		remove: func(ctx context.Context, h host.Host, logf func(string, ...any)) (bool, string, error) {
			changed, err := snapshot.Remove(ctx, h, logf)
			return changed, "etcd backup timer removed; snapshots kept", err
		},
	}.phase()
}
