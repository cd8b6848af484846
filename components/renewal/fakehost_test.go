package renewal

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/host"
)

// fakeHost is an in-memory host whose systemd gives every restarted unit a new
// main PID and can make a unit fail, crash-loop or stop after its restart. It
// logs restarts and the events tests add, in order.
type fakeHost struct {
	mu      sync.Mutex
	files   map[string][]byte
	units   map[string]*fakeUnit
	nextPID int
	events  []string
	// onRestart runs (without the lock) after a unit's successful restart.
	onRestart map[string]func()
}

type fakeUnit struct {
	active  bool
	sub     string
	pid     int
	restart string // "", "job-fails", "crash", "stops"
}

func newFakeHost() *fakeHost {
	return &fakeHost{files: map[string][]byte{}, units: map[string]*fakeUnit{}, nextPID: 1000, onRestart: map[string]func(){}}
}

// addUnit installs a unit file and, when active, a running process.
func (h *fakeHost) addUnit(name string, active bool) *fakeUnit {
	h.mu.Lock()
	defer h.mu.Unlock()
	u := &fakeUnit{active: active, sub: "dead"}
	if active {
		h.nextPID++
		u.pid, u.sub = h.nextPID, "running"
	}
	h.units[name] = u
	h.files[path.Join(UnitDir, name)] = []byte("[Service]\n")
	return u
}

func (h *fakeHost) event(format string, a ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, fmt.Sprintf(format, a...))
}

func (h *fakeHost) log() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.events...)
}

func (h *fakeHost) pid(name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.units[name].pid
}

func (h *fakeHost) Name() string { return "fake01" }
func (h *fakeHost) Run(context.Context, host.Cmd) (host.Result, error) {
	return host.Result{ExitCode: 127}, nil
}
func (h *fakeHost) ReadFile(_ context.Context, p string) ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if d, ok := h.files[p]; ok {
		return append([]byte(nil), d...), nil
	}
	return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
}
func (h *fakeHost) WriteFile(_ context.Context, p string, data []byte, _ host.WriteOptions) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.files[p] = append([]byte(nil), data...)
	h.events = append(h.events, "write "+p)
	return nil
}
func (h *fakeHost) Stat(_ context.Context, p string) (host.FileInfo, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if d, ok := h.files[p]; ok {
		return host.FileInfo{Path: p, Size: int64(len(d)), Mode: 0o644}, nil
	}
	return host.FileInfo{}, &fs.PathError{Op: "stat", Path: p, Err: fs.ErrNotExist}
}
func (h *fakeHost) Remove(context.Context, string) error                { return errors.New("not in this fake") }
func (h *fakeHost) MkdirAll(context.Context, string, fs.FileMode) error { return nil }
func (h *fakeHost) Units() host.Units                                   { return (*fakeUnits)(h) }
func (h *fakeHost) Close() error                                        { return nil }

type fakeUnits fakeHost

func (u *fakeUnits) h() *fakeHost { return (*fakeHost)(u) }

func (u *fakeUnits) WriteUnit(context.Context, string, []byte) (bool, error) {
	return false, errors.New("not in this fake")
}
func (u *fakeUnits) RemoveUnit(context.Context, string) error { return errors.New("not in this fake") }
func (u *fakeUnits) DaemonReload(context.Context) error       { return nil }
func (u *fakeUnits) Enable(context.Context, string) error     { return nil }
func (u *fakeUnits) Disable(context.Context, string) error    { return nil }
func (u *fakeUnits) Start(context.Context, string) error      { return errors.New("not in this fake") }
func (u *fakeUnits) Stop(context.Context, string) error       { return errors.New("not in this fake") }

// Restart gives the unit a new PID, or plays the failure it is set up for.
func (u *fakeUnits) Restart(ctx context.Context, name string) error {
	err := u.restart(name)
	if f := u.h().onRestart[name]; err == nil && f != nil {
		f()
	}
	return err
}

func (u *fakeUnits) restart(name string) error {
	h := u.h()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, "restart "+name)
	un, ok := h.units[name]
	if !ok {
		return fmt.Errorf("unit %s not found", name)
	}
	switch un.restart {
	case "job-fails":
		un.active, un.sub, un.pid = false, "failed", 0
		return errors.New(`job for ` + name + ` ended in "failed"`)
	case "crash":
		un.active, un.sub, un.pid = false, "auto-restart", 0
		return nil
	case "stops":
		un.active, un.sub, un.pid = false, "dead", 0
		return nil
	}
	h.nextPID++
	un.active, un.sub, un.pid = true, "running", h.nextPID
	return nil
}

// Status reports the unit; a crash-looping unit alternates between starting
// (a short-lived new PID) and auto-restart, as systemd shows it.
func (u *fakeUnits) Status(_ context.Context, name string) (host.UnitStatus, error) {
	h := u.h()
	h.mu.Lock()
	defer h.mu.Unlock()
	un, ok := h.units[name]
	if !ok {
		return host.UnitStatus{Name: name, LoadState: "not-found", ActiveState: "inactive", SubState: "dead"}, nil
	}
	st := host.UnitStatus{Name: name, LoadState: "loaded", ActiveState: "inactive", SubState: un.sub, MainPID: un.pid}
	switch {
	case un.active:
		st.ActiveState = "active"
	case un.sub == "failed":
		st.ActiveState = "failed"
	case un.sub == "auto-restart":
		st.ActiveState = "activating"
		// Next look: it started again and will exit again.
		h.nextPID++
		un.sub, un.pid = "start", h.nextPID
	case un.sub == "start":
		st.ActiveState = "activating"
		un.sub, un.pid = "auto-restart", 0
	}
	return st, nil
}

func (u *fakeUnits) Journal(_ context.Context, name string, n int) ([]string, error) {
	return []string{name + ": E0101 tls: private key does not match public key"}, nil
}

// fastOptions are Options for tests: no real waiting.
func fastOptions(h host.Host) Options {
	return Options{Host: h, Timeout: 2 * time.Second, ReloadTimeout: 2 * time.Second, Interval: time.Millisecond}
}

// fakeOps restarts the unit through the fake systemd; its probe passes while
// the unit runs and healthy (if set) agrees, and logs "healthy <unit>".
func fakeOps(h *fakeHost, unit string, healthy func() error) unitOps {
	return unitOps{
		trigger: plainRestart(h, unit),
		probe: func(context.Context) error {
			h.mu.Lock()
			up := h.units[unit].active
			h.mu.Unlock()
			if !up {
				return errors.New("connection refused")
			}
			if healthy != nil {
				if err := healthy(); err != nil {
					return err
				}
			}
			h.event("healthy %s", unit)
			return nil
		},
	}
}

func joinLines(s []string) string { return strings.Join(s, "\n") }
