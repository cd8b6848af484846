// Package component is the contract every node component (containerd, the
// kubelet, kube-proxy, the control plane, etcd, the overlay, the CSR approver)
// follows, and the few helpers that contract needs, written once:
//
//   - Ensure is idempotent: it writes files with WriteIfChanged, renders its
//     unit's ExecStart= with ExecStart (one quoting rule), starts or restarts the
//     unit, and waits for health with Poll (apimachinery's wait, never a
//     hand-rolled select loop). A unit that fails says why with JournalTail.
//   - Running is the one "is this unit up or coming up" test.
//   - Each component declares its Footprint: the binaries it installs, the
//     units it writes, the files and directories it owns. Reset (components/
//     cleanup) removes what the footprints list and only orders the steps; it
//     knows no component's paths itself.
//
// The shape follows k0s's pkg/component/manager (Init, Start, Ready, Stop)
// folded into the Ensure/Reset pair kubeforge phases already call.
package component

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/bootstrap/host/owndirs"
)

// WriteIfChanged writes p unless it already has this content and mode, and
// reports whether it wrote. secret marks content (keys, tokens, kubeconfigs
// with credentials) that is never shown in a dry-run diff; such files are
// written 0600 by their callers. Errors name the host and the file.
func WriteIfChanged(ctx context.Context, h host.Host, p string, data []byte, mode fs.FileMode, secret bool) (bool, error) {
	cur, err := h.ReadFile(ctx, p)
	if err == nil && bytes.Equal(cur, data) {
		if fi, serr := h.Stat(ctx, p); serr == nil && fi.Mode.Perm() == mode.Perm() {
			return false, nil
		}
	}
	if err != nil && !host.IsNotExist(err) {
		return false, fmt.Errorf("%s: reading %s: %w", h.Name(), p, err)
	}
	if err := h.WriteFile(ctx, p, data, host.WriteOptions{Mode: mode, Secret: secret}); err != nil {
		return false, fmt.Errorf("%s: writing %s: %w", h.Name(), p, err)
	}
	return true, nil
}

// Running reports whether systemd has the unit up or on its way up: active,
// activating (a Type=notify daemon that has not signalled yet, or one waiting
// in its RestartSec) or reloading. Units in any of these states are stopped by
// reset and are not started again by Ensure.
func Running(st host.UnitStatus) bool {
	return st.Active() || st.ActiveState == "activating" || st.ActiveState == "reloading"
}

// JournalTail renders a unit's last n journal lines for an error message, or
// "" when there are none: "job failed" alone tells an operator nothing.
func JournalTail(ctx context.Context, h host.Host, unit string, n int) string {
	if h == nil {
		return ""
	}
	lines, err := h.Units().Journal(ctx, unit, n)
	if err != nil || len(lines) == 0 {
		return ""
	}
	return fmt.Sprintf("\nlast %d journal lines of %s on %s:\n  %s", len(lines), unit, h.Name(), strings.Join(lines, "\n  "))
}

// WithJournal wraps err with the unit's last n journal lines (err unchanged
// when there are none), so errors.Is still sees err.
func WithJournal(ctx context.Context, h host.Host, unit string, n int, err error) error {
	if err == nil {
		return nil
	}
	tail := JournalTail(ctx, h, unit, n)
	if tail == "" {
		return err
	}
	return fmt.Errorf("%w%s", err, tail)
}

// Poll calls cond every interval until it reports done, returns an error, ctx
// ends or timeout passes (0: only ctx bounds it). cond runs once immediately.
// It is apimachinery's wait.PollUntilContextTimeout; a timeout is reported as
// wait.ErrWaitTimeout-compatible (use wait.Interrupted to test for it), so
// callers add what they waited for and the last error they saw.
func Poll(ctx context.Context, interval, timeout time.Duration, cond func(context.Context) (bool, error)) error {
	if timeout <= 0 {
		return wait.PollUntilContextCancel(ctx, interval, true, cond)
	}
	return wait.PollUntilContextTimeout(ctx, interval, timeout, true, cond)
}

// PollError is the error a caller of Poll returns: nil when the wait
// succeeded, the context's error when the caller was cancelled, timedOut()
// (what was waited for, and the last thing seen) when the deadline passed, and
// the condition's own error otherwise.
func PollError(ctx context.Context, err error, timedOut func() error) error {
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case wait.Interrupted(err):
		return timedOut()
	}
	return err
}

// RunUnit writes the unit (reloading systemd when it changed), enables it, and
// starts it when it is not active, or restarts it when the unit or any input
// the daemon reads at start (inputsChanged: its config, its binary) changed.
// A failed start or restart comes with the unit's last journal lines. It
// reports whether the unit file changed and whether it (re)started the unit.
func RunUnit(ctx context.Context, h host.Host, name string, unit []byte, inputsChanged bool) (unitChanged, started bool, err error) {
	unitChanged, err = h.Units().WriteUnit(ctx, name, unit)
	if err != nil {
		return false, false, fmt.Errorf("%s: writing %s: %w", h.Name(), name, err)
	}
	if err := h.Units().Enable(ctx, name); err != nil {
		return unitChanged, false, fmt.Errorf("%s: enabling %s: %w", h.Name(), name, err)
	}
	st, err := h.Units().Status(ctx, name)
	if err != nil {
		return unitChanged, false, err
	}
	verb := ""
	switch {
	case !st.Active():
		verb, err = "starting", h.Units().Start(ctx, name)
	case unitChanged || inputsChanged:
		verb, err = "restarting", h.Units().Restart(ctx, name)
	default:
		return unitChanged, false, nil
	}
	if err != nil {
		return unitChanged, false, fmt.Errorf("%s: %s %s: %w%s", h.Name(), verb, name, err, JournalTail(ctx, h, name, 8))
	}
	return unitChanged, true, nil
}

// UnitMarker is in the header of every unit kubeforge writes; it is how reset
// finds them, and how init and join tell a re-run from a first run.
const UnitMarker = "written by kubeforge"

// UnitDir is where kubeforge's units live.
const UnitDir = "/etc/systemd/system"

// WrittenByKubeforge reports whether unit (a file name in UnitDir) exists on h
// and carries UnitMarker.
func WrittenByKubeforge(ctx context.Context, h host.Host, unit string) (bool, error) {
	data, err := h.ReadFile(ctx, UnitDir+"/"+unit)
	if host.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return bytes.Contains(data, []byte(UnitMarker)), nil
}

// SetUpBefore returns the first of units on h that kubeforge wrote, or else
// dir when kubeforge created it (it carries owndirs.Marker); "" when neither:
// init or join ran here before, at least in part. The directory covers a run
// killed after it wrote certificates and kubeconfigs but before any unit.
func SetUpBefore(ctx context.Context, h host.Host, dir string, units ...string) (string, error) {
	for _, u := range units {
		ok, err := WrittenByKubeforge(ctx, h, u)
		if err != nil {
			return "", err
		}
		if ok {
			return u, nil
		}
	}
	if dir == "" {
		return "", nil
	}
	created, err := owndirs.Created(ctx, h, dir)
	if err != nil || !created {
		return "", err
	}
	return dir, nil
}
