package component

import (
	"context"
	"path"

	"github.com/kubeforge/kubeforge/bootstrap/host"
)

// Scheduled is one of kubeforge's scheduled jobs: a oneshot service and the
// systemd timer that runs it (the etcd backups, the certificate renewal). Both
// share this life cycle, so it is written once.
type Scheduled struct {
	Service, Timer string
}

// unitDir is where WriteUnit puts units.
const unitDir = "/etc/systemd/system"

// Ensure writes both units, enables and starts the timer, and restarts it when
// its own unit changed (a new schedule takes effect only then). what describes
// the schedule for the log line. A converged host reports unchanged.
func (s Scheduled) Ensure(ctx context.Context, h host.Host, service, timer []byte, what string, logf func(string, ...any)) (changed bool, err error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	u := h.Units()
	svcChanged, err := u.WriteUnit(ctx, s.Service, service)
	if err != nil {
		return false, err
	}
	timerChanged, err := u.WriteUnit(ctx, s.Timer, timer)
	if err != nil {
		return false, err
	}
	if svcChanged || timerChanged {
		logf("wrote %s and %s (%s)", s.Service, s.Timer, what)
		changed = true
	}
	if err := u.Enable(ctx, s.Timer); err != nil {
		return false, err
	}
	st, err := u.Status(ctx, s.Timer)
	if err != nil {
		return false, err
	}
	switch {
	case !st.Active():
		if err := u.Start(ctx, s.Timer); err != nil {
			return false, err
		}
		logf("started %s", s.Timer)
		changed = true
	case timerChanged:
		if err := u.Restart(ctx, s.Timer); err != nil {
			return false, err
		}
		logf("restarted %s (its schedule changed)", s.Timer)
	}
	return changed, nil
}

// Present reports whether h has either unit.
func (s Scheduled) Present(ctx context.Context, h host.Host) (bool, error) {
	for _, n := range []string{s.Timer, s.Service} {
		if _, err := h.Stat(ctx, path.Join(unitDir, n)); err == nil {
			return true, nil
		} else if !host.IsNotExist(err) {
			return false, err
		}
	}
	return false, nil
}

// Remove stops, disables and deletes the timer and the service, and nothing
// else (what the job produced is its owner's business).
func (s Scheduled) Remove(ctx context.Context, h host.Host, logf func(string, ...any)) (bool, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	changed := false
	for _, n := range []string{s.Timer, s.Service} {
		if _, err := h.Stat(ctx, path.Join(unitDir, n)); host.IsNotExist(err) {
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
