package nodephases

import (
	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/components/etcd/snapshot"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

// EtcdBackupPhase schedules etcd backups on a control-plane etcd host, for init
// and join.
// It runs after the overlay phase, which installs the kubeforge binary the
// timer runs; with that phase skipped it installs the binary itself.
func EtcdBackupPhase() workflow.Phase {
	return workflow.Phase{
		Name:  "etcd-backup",
		Short: "Schedule etcd snapshots on this etcd host",
		Long: `Install the kubeforge binary as ` + snapshot.BinaryPath + ` (unless it is there), write ` + snapshot.ServiceName + ` (kubeforge etcd snapshot backup: save a snapshot
of the local member, verify that it restores, keep the newest spec.etcd.backup.keep)
and ` + snapshot.TimerName + ` (every spec.etcd.backup.schedule), create
spec.etcd.backup.dir (0700) and enable and start the timer. Only control-plane
hosts with the etcd role run it: a snapshot reads etcd's whole keyspace, which
only etcd's administrator may, and only a control-plane host (holding the etcd CA
key) has that credential. An unchanged host reports "unchanged".`,
		RunIf: func(d workflow.RunData) (bool, error) {
			data, err := data(d, "etcd-backup")
			if err != nil {
				return false, err
			}
			return data.Node().HasRole(config.RoleEtcd) && data.Node().HasRole(config.RoleControlPlane), nil
		},
		Run: func(d workflow.RunData) error {
			data, err := data(d, "etcd-backup")
			if err != nil {
				return err
			}
			b := data.Config().Spec.Etcd.Backup
			changed, err := snapshot.Install(data.Context(), snapshot.InstallOptions{
				Host: data.Host(), Backup: b, Logf: data.Logger().Printf,
			})
			if err != nil {
				return err
			}
			return workflow.Outcome(data.Logger(), changed, "etcd snapshots every "+b.Schedule+" into "+b.Dir)
		},
	}
}
