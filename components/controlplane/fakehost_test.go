package controlplane

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/host"
)

// fakeHost is an in-memory host.Host whose file times only move when a file is
// written, as on a real filesystem, and whose systemd keeps unit state and logs
// every change.
type fakeHost struct {
	mu      sync.Mutex
	clock   time.Time
	files   map[string]fakeFile
	units   map[string]*fakeUnit
	actions []string
	journal map[string][]string
}

type fakeFile struct {
	data  []byte
	mode  fs.FileMode
	mtime time.Time
}

type fakeUnit struct {
	content          []byte
	enabled, running bool
}

func newFakeHost() *fakeHost {
	return &fakeHost{clock: time.Unix(1700000000, 0), files: map[string]fakeFile{}, units: map[string]*fakeUnit{}, journal: map[string][]string{}}
}

func (h *fakeHost) log(format string, a ...any) {
	h.actions = append(h.actions, fmt.Sprintf(format, a...))
}

// changes returns and clears the recorded changes.
func (h *fakeHost) changes() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.actions
	h.actions = nil
	return out
}

func (h *fakeHost) Name() string { return "fake" }
func (h *fakeHost) Run(_ context.Context, c host.Cmd) (host.Result, error) {
	if !c.ReadOnly {
		h.mu.Lock()
		h.log("run %s", c)
		h.mu.Unlock()
	}
	return host.Result{ExitCode: 127, Stderr: []byte("not available in the fake")}, nil
}
func (h *fakeHost) ReadFile(_ context.Context, p string) ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f, ok := h.files[p]
	if !ok {
		return nil, fmt.Errorf("read %s: %w", p, fs.ErrNotExist)
	}
	return bytes.Clone(f.data), nil
}
func (h *fakeHost) WriteFile(_ context.Context, p string, data []byte, o host.WriteOptions) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.clock = h.clock.Add(time.Second)
	mode := o.Mode
	if mode == 0 {
		mode = 0o644
	}
	h.files[p] = fakeFile{data: bytes.Clone(data), mode: mode, mtime: h.clock}
	h.log("write %s", p)
	return nil
}
func (h *fakeHost) Stat(_ context.Context, p string) (host.FileInfo, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if f, ok := h.files[p]; ok {
		return host.FileInfo{Path: p, Size: int64(len(f.data)), Mode: f.mode, ModTime: f.mtime}, nil
	}
	for k, f := range h.files {
		if strings.HasPrefix(k, p+"/") || (f.mode.IsDir() && k == p) {
			return host.FileInfo{Path: p, Mode: fs.ModeDir | 0o755}, nil
		}
	}
	return host.FileInfo{}, fmt.Errorf("stat %s: %w", p, fs.ErrNotExist)
}
func (h *fakeHost) Remove(_ context.Context, p string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.files, p)
	h.log("remove %s", p)
	return nil
}
func (h *fakeHost) MkdirAll(_ context.Context, p string, mode fs.FileMode) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.files[p] = fakeFile{mode: fs.ModeDir | mode}
	h.log("mkdir %s", p)
	return nil
}
func (h *fakeHost) Units() host.Units { return (*fakeUnits)(h) }
func (h *fakeHost) Close() error      { return nil }

type fakeUnits fakeHost

func (u *fakeUnits) h() *fakeHost { return (*fakeHost)(u) }

func (u *fakeUnits) unit(name string) *fakeUnit {
	if u.units[name] == nil {
		u.units[name] = &fakeUnit{}
	}
	return u.units[name]
}

func (u *fakeUnits) WriteUnit(_ context.Context, name string, content []byte) (bool, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	x := u.unit(name)
	if bytes.Equal(x.content, content) {
		return false, nil
	}
	x.content = bytes.Clone(content)
	u.h().log("write-unit %s", name)
	return true, nil
}
func (u *fakeUnits) RemoveUnit(_ context.Context, name string) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.units, name)
	u.h().log("remove-unit %s", name)
	return nil
}
func (u *fakeUnits) DaemonReload(context.Context) error { return nil }
func (u *fakeUnits) set(verb, name string, f func(*fakeUnit)) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.units[name] == nil || u.units[name].content == nil {
		return fmt.Errorf("%s %s: unit not found", verb, name)
	}
	f(u.units[name])
	u.h().log("%s %s", verb, name)
	return nil
}
func (u *fakeUnits) Enable(_ context.Context, n string) error {
	return u.set("enable", n, func(x *fakeUnit) { x.enabled = true })
}
func (u *fakeUnits) Disable(_ context.Context, n string) error {
	return u.set("disable", n, func(x *fakeUnit) { x.enabled = false })
}
func (u *fakeUnits) Start(_ context.Context, n string) error {
	return u.set("start", n, func(x *fakeUnit) { x.running = true })
}
func (u *fakeUnits) Stop(_ context.Context, n string) error {
	return u.set("stop", n, func(x *fakeUnit) { x.running = false })
}
func (u *fakeUnits) Restart(_ context.Context, n string) error {
	return u.set("restart", n, func(x *fakeUnit) { x.running = true })
}
func (u *fakeUnits) Status(_ context.Context, name string) (host.UnitStatus, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	st := host.UnitStatus{Name: name, LoadState: "not-found", ActiveState: "inactive", SubState: "dead", Enabled: "disabled"}
	if x := u.units[name]; x != nil && x.content != nil {
		st.LoadState = "loaded"
		if x.running {
			st.ActiveState, st.SubState = "active", "running"
		}
		if x.enabled {
			st.Enabled = "enabled"
		}
	}
	return st, nil
}
func (u *fakeUnits) Journal(_ context.Context, name string, n int) ([]string, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	j := u.journal[name]
	if len(j) > n {
		j = j[len(j)-n:]
	}
	return j, nil
}

var _ host.Host = (*fakeHost)(nil)
