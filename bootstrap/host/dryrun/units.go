package dryrun

import (
	"bytes"
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/bootstrap/host/internal/hostutil"
)

// units is the dry-run Host seen as host.Units. Operations that would not change
// anything (starting an active unit, enabling an enabled one) are not recorded, so a
// plan for an already converged host is empty, as a real run's changes would be.
type units Host

var _ host.Units = (*units)(nil)

func (u *units) h() *Host { return (*Host)(u) }

func (u *units) check(name string, dropIn bool) error {
	if err := hostutil.CheckUnitName(name, dropIn); err != nil {
		return fmt.Errorf("%s: %w", u.name, err)
	}
	return nil
}

func (u *units) WriteUnit(ctx context.Context, name string, content []byte) (bool, error) {
	if err := u.check(name, true); err != nil {
		return false, err
	}
	h := u.h()
	p := path.Join(u.unitDir, name)
	old, err := h.ReadFile(ctx, p)
	exists := err == nil
	switch {
	case exists && bytes.Equal(old, content):
		return false, nil
	case err != nil && !host.IsNotExist(err):
		return false, err
	}
	h.mu.Lock()
	h.setDirs(p)
	h.files[p] = &entry{kind: planFile, data: bytes.Clone(content), mode: 0o644}
	h.actions = append(h.actions, Action{Kind: WriteUnit, Unit: name, Path: p, Mode: 0o644,
		Old: old, OldExists: exists, New: bytes.Clone(content)})
	h.mu.Unlock()
	return true, nil
}

func (u *units) RemoveUnit(ctx context.Context, name string) error {
	if err := u.check(name, true); err != nil {
		return err
	}
	h := u.h()
	paths := []string{path.Join(u.unitDir, name)}
	if !strings.Contains(name, ".d/") {
		paths = append(paths, path.Join(u.unitDir, name+".d"))
	}
	var existing []string
	for _, p := range paths {
		if _, err := h.Stat(ctx, p); err == nil {
			existing = append(existing, p)
		} else if !host.IsNotExist(err) {
			return err
		}
	}
	if len(existing) == 0 {
		return nil
	}
	h.mu.Lock()
	for _, p := range existing {
		h.forget(p)
		h.files[p] = &entry{kind: planRemoved}
	}
	h.actions = append(h.actions, Action{Kind: RemoveUnit, Unit: name, Path: strings.Join(existing, " ")})
	h.mu.Unlock()
	return nil
}

func (u *units) DaemonReload(ctx context.Context) error {
	u.h().record(Action{Kind: DaemonReload})
	return nil
}

// Status is the unit's status as the real host reports it with this dry
// run's planned changes applied.
func (u *units) Status(ctx context.Context, name string) (host.UnitStatus, error) {
	if err := u.check(name, false); err != nil {
		return host.UnitStatus{Name: name}, err
	}
	st := host.UnitStatus{Name: name, LoadState: "not-found", ActiveState: "inactive", SubState: "dead"}
	h := u.h()
	if u.inner != nil {
		real, err := u.inner.Units().Status(ctx, name)
		h.mu.Lock()
		_, planned := h.units[name]
		h.mu.Unlock()
		// A unit this plan already acted on can be described without the real
		// systemd; anything else needs it.
		if err != nil && !planned {
			return real, err
		}
		if err == nil {
			st = real
		}
	}
	if _, err := h.Stat(ctx, path.Join(u.unitDir, name)); err == nil && st.LoadState == "not-found" {
		st.LoadState = "loaded"
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if s := h.units[name]; s != nil {
		if s.active != nil {
			if *s.active {
				st.ActiveState, st.SubState = "active", "running"
			} else {
				st.ActiveState, st.SubState, st.MainPID = "inactive", "dead", 0
			}
		}
		if s.enabled != nil {
			if *s.enabled {
				st.Enabled = "enabled"
			} else {
				st.Enabled = "disabled"
			}
		}
	}
	return st, nil
}

// change records a unit operation unless the unit is already in the wanted state.
func (u *units) change(ctx context.Context, kind Kind, name string, skip func(host.UnitStatus) bool, apply func(*unitState)) error {
	if err := u.check(name, false); err != nil {
		return err
	}
	// When systemd cannot be asked, the change is recorded: the plan may then show
	// an operation that turns out to be a no-op, but never hides one.
	if st, err := u.Status(ctx, name); err == nil && skip != nil && skip(st) {
		return nil
	}
	h := u.h()
	h.mu.Lock()
	s := h.units[name]
	if s == nil {
		s = &unitState{}
		h.units[name] = s
	}
	apply(s)
	h.actions = append(h.actions, Action{Kind: kind, Unit: name})
	h.mu.Unlock()
	return nil
}

func ptr(b bool) *bool { return &b }

func (u *units) Enable(ctx context.Context, name string) error {
	return u.change(ctx, Enable, name,
		func(st host.UnitStatus) bool { return st.Enabled == "enabled" },
		func(s *unitState) { s.enabled = ptr(true) })
}

func (u *units) Disable(ctx context.Context, name string) error {
	return u.change(ctx, Disable, name,
		func(st host.UnitStatus) bool { return st.Enabled != "enabled" },
		func(s *unitState) { s.enabled = ptr(false) })
}

func (u *units) Start(ctx context.Context, name string) error {
	return u.change(ctx, Start, name,
		func(st host.UnitStatus) bool { return st.Active() },
		func(s *unitState) { s.active = ptr(true) })
}

func (u *units) Stop(ctx context.Context, name string) error {
	return u.change(ctx, Stop, name,
		func(st host.UnitStatus) bool { return !st.Active() && st.ActiveState != "activating" },
		func(s *unitState) { s.active = ptr(false) })
}

func (u *units) Restart(ctx context.Context, name string) error {
	return u.change(ctx, Restart, name, nil, func(s *unitState) { s.active = ptr(true) })
}

// Journal passes through; a dry run adds no log lines.
func (u *units) Journal(ctx context.Context, name string, n int) ([]string, error) {
	if err := u.check(name, false); err != nil {
		return nil, err
	}
	if u.inner == nil {
		return nil, nil
	}
	return u.inner.Units().Journal(ctx, name, n)
}
