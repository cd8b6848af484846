package renewal

import (
	"context"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
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
Description=kubeforge certificate renewal: renew what expires within ` + string(a.RenewBefore) + `, restart its readers one at a time
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
	svcChanged, err := h.Units().WriteUnit(ctx, ServiceName, Service(a))
	if err != nil {
		return false, err
	}
	timerChanged, err := h.Units().WriteUnit(ctx, TimerName, timer)
	if err != nil {
		return false, err
	}
	if svcChanged || timerChanged {
		logf("wrote %s and %s (schedule %s, renew within %s of expiry)", ServiceName, TimerName, a.Schedule, a.RenewBefore)
		changed = true
	}
	if err := h.Units().Enable(ctx, TimerName); err != nil {
		return false, err
	}
	st, err := h.Units().Status(ctx, TimerName)
	if err != nil {
		return false, err
	}
	switch {
	case !st.Active():
		if err := h.Units().Start(ctx, TimerName); err != nil {
			return false, err
		}
		logf("started %s", TimerName)
		changed = true
	case timerChanged:
		if err := h.Units().Restart(ctx, TimerName); err != nil {
			return false, err
		}
		logf("restarted %s (its schedule changed)", TimerName)
	}
	return changed, nil
}

// TimerPresent reports whether h has the renewal units.
func TimerPresent(ctx context.Context, h host.Host) (bool, error) {
	for _, n := range []string{TimerName, ServiceName} {
		if _, err := h.Stat(ctx, UnitDir+"/"+n); err == nil {
			return true, nil
		} else if !host.IsNotExist(err) {
			return false, err
		}
	}
	return false, nil
}

// RemoveTimer stops, disables and deletes the timer and the service.
func RemoveTimer(ctx context.Context, h host.Host, logf func(string, ...any)) (bool, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	changed := false
	for _, n := range []string{TimerName, ServiceName} {
		if _, err := h.Stat(ctx, UnitDir+"/"+n); host.IsNotExist(err) {
			continue
		} else if err != nil {
			return changed, err
		}
		if err := h.Units().Stop(ctx, n); err != nil {
			return changed, err
		}
		if err := h.Units().Disable(ctx, n); err != nil {
			return changed, err
		}
		if err := h.Units().RemoveUnit(ctx, n); err != nil {
			return changed, err
		}
		logf("removed %s", n)
		changed = true
	}
	return changed, nil
}
