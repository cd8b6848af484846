package renewal

import (
	"context"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/components/component"
	"github.com/kubeforge/kubeforge/components/etcd/snapshot"
)

// The automatic renewal's units.
const (
	ServiceName = "kubeforge-certs-renew.service"
	TimerName   = "kubeforge-certs-renew.timer"
)

// Service is kubeforge-certs-renew.service: one `kubeforge certs renew all
// --expiring-within <renewBefore>` per start, which renews only what expires
// within the window and restarts the units that read it one at a time, each
// healthy before the next (the Restarter). Type=oneshot, so a renewal or a
// restart that fails leaves the unit "failed" with the error in the journal.
// After=etcd.service and the control plane: at boot, the renewal's health
// checks need them up. Every directive loads on systemd 219.
func Service(a config.CertAutoRenew) []byte {
	return []byte(`# Certificate renewal, written by kubeforge. Schedule: ` + TimerName + `
[Unit]
Description=kubeforge certificate renewal: renew what expires within ` + string(a.RenewBefore) + `, check or restart its readers one at a time
Documentation=https://github.com/kubeforge/kubeforge
After=etcd.service kube-apiserver.service kube-controller-manager.service kube-scheduler.service

[Service]
Type=oneshot
ExecStart=` + snapshot.BinaryPath + ` certs renew all --expiring-within ` + string(a.RenewBefore) + `
`)
}

// Timer is kubeforge-certs-renew.timer, with the schedule's directives as the
// backup timer has them.
func Timer(a config.CertAutoRenew) ([]byte, error) {
	when, err := snapshot.TimerDirectives("spec.certificates.autoRenew.schedule", a.Schedule)
	if err != nil {
		return nil, err
	}
	return []byte(`# Certificate renewal schedule, written by kubeforge (spec.certificates.autoRenew.schedule: ` + a.Schedule + `)
[Unit]
Description=kubeforge certificate renewal schedule

[Timer]
` + when + `AccuracySec=1s

[Install]
WantedBy=timers.target
`), nil
}

// InstallTimer writes the service and timer, installs the kubeforge binary
// they run when it is missing or differs, and enables and starts the timer
// (restarting it when its schedule changed). A converged host reports
// unchanged.
func InstallTimer(ctx context.Context, h host.Host, a config.CertAutoRenew, logf func(string, ...any)) (changed bool, err error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if installed, err := snapshot.EnsureBinary(ctx, h, ""); err != nil {
		return false, err
	} else if installed {
		logf("installed %s", snapshot.BinaryPath)
		changed = true
	}
	timer, err := Timer(a)
	if err != nil {
		return false, err
	}
	c, err := scheduled.Ensure(ctx, h, Service(a), timer, "schedule "+a.Schedule+", renew within "+string(a.RenewBefore)+" of expiry", logf)
	return changed || c, err
}

// scheduled is the renewal's service and timer.
var scheduled = component.Scheduled{Service: ServiceName, Timer: TimerName}

// TimerPresent reports whether h has the renewal units.
func TimerPresent(ctx context.Context, h host.Host) (bool, error) {
	return scheduled.Present(ctx, h)
}

// RemoveTimer stops, disables and deletes the timer and the service.
func RemoveTimer(ctx context.Context, h host.Host, logf func(string, ...any)) (bool, error) {
	return scheduled.Remove(ctx, h, logf)
}
