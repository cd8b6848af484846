package nodephases

import (
	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/components/renewal"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

// CertRenewPhase schedules the automatic certificate renewal on hosts that
// hold kubeforge-issued certificates (control-plane and etcd hosts), for init
// and join. The kubelet and kube-proxy client certificates of every node rotate
// through CSRs and need no timer.
func CertRenewPhase() workflow.Phase {
	return workflow.Phase{
		Name:  "cert-renew",
		Short: "Schedule the renewal of certificates close to expiry on this host",
		Long: `Install the kubeforge binary (unless it is there), write ` + renewal.ServiceName + `
(kubeforge certs renew all --expiring-within spec.certificates.autoRenew.renewBefore:
renew only what expires within the window, then restart the units that read it one
at a time, each healthy before the next) and ` + renewal.TimerName + ` (every
spec.certificates.autoRenew.schedule), and enable and start the timer. Control-plane
and etcd hosts run it. An unchanged host reports "unchanged".`,
		RunIf: func(d workflow.RunData) (bool, error) {
			data, err := data(d, "cert-renew")
			if err != nil {
				return false, err
			}
			return data.Node().HasRole(config.RoleEtcd) || data.Node().HasRole(config.RoleControlPlane), nil
		},
		Run: func(d workflow.RunData) error {
			data, err := data(d, "cert-renew")
			if err != nil {
				return err
			}
			a := data.Config().Spec.Certificates.AutoRenew
			changed, err := renewal.InstallTimer(data.Context(), data.Host(), a, data.Logger().Printf)
			if err != nil {
				return err
			}
			return workflow.Outcome(data.Logger(), changed, "certificates expiring within "+string(a.RenewBefore)+" renewed every "+a.Schedule)
		},
	}
}
