// Package fakehost is an in-memory host.Host for unit tests of the node
// components (containerd, kubelet, kube-proxy, cleanup): files, units with their
// states and a scripted command runner, and a log of every change, so a test can
// assert exactly what a phase did — or that it did nothing.
package fakehost

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/host"
)

// File is one file of the fake host.
type File struct {
	Data []byte
	Mode fs.FileMode
}

// Unit is one systemd unit.
type Unit struct {
	Content []byte
	Enabled bool
	Active  bool
}

// Host is the fake. Fields may be set directly by a test before use.
type Host struct {
	mu        sync.Mutex
	name      string
	Files     map[string]*File
	Dirs      map[string]bool
	UnitFiles map[string]*Unit
	// Commands maps a command line (host.QuoteArgv) to its result; a command
	// prefix ending in "*" matches every command starting with it. Unknown
	// commands exit 127.
	Commands map[string]host.Result
	// StartErr makes Start/Restart of the named unit fail.
	StartErr map[string]error
	changes  []string
	ran      []string
}

// New returns an empty host called name.
func New(name string) *Host {
	return &Host{name: name, Files: map[string]*File{}, Dirs: map[string]bool{"/": true}, UnitFiles: map[string]*Unit{},
		Commands: map[string]host.Result{}, StartErr: map[string]error{}}
}

// Changes lists every change made, in order ("write /etc/x 0644", "start a.service").
func (h *Host) Changes() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.changes...)
}

// ResetChanges forgets the changes recorded so far.
func (h *Host) ResetChanges() {
	h.mu.Lock()
	h.changes = nil
	h.ran = nil
	h.mu.Unlock()
}

// Ran lists every command run.
func (h *Host) Ran() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.ran...)
}

func (h *Host) change(format string, a ...any) {
	h.changes = append(h.changes, fmt.Sprintf(format, a...))
}

// SetFile puts a file on the host without recording a change.
func (h *Host) SetFile(p string, data string, mode fs.FileMode) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.Files[p] = &File{Data: []byte(data), Mode: mode}
	h.mkdirs(path.Dir(p))
}

func (h *Host) mkdirs(p string) {
	for ; p != "/" && p != "."; p = path.Dir(p) {
		h.Dirs[p] = true
	}
}

func (h *Host) Name() string { return h.name }

func (h *Host) Run(ctx context.Context, c host.Cmd) (host.Result, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	line := c.String()
	h.ran = append(h.ran, line)
	if !c.ReadOnly {
		h.change("run %s", line)
	}
	if r, ok := h.Commands[line]; ok {
		return r, nil
	}
	keys := make([]string, 0, len(h.Commands))
	for k := range h.Commands {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return len(keys[i]) > len(keys[j]) })
	for _, k := range keys {
		if strings.HasSuffix(k, "*") && strings.HasPrefix(line, strings.TrimSuffix(k, "*")) {
			return h.Commands[k], nil
		}
	}
	return host.Result{ExitCode: 127, Stderr: []byte(c.Argv[0] + ": command not found")}, nil
}

func (h *Host) ReadFile(ctx context.Context, p string) ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f, ok := h.Files[p]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
	}
	return append([]byte(nil), f.Data...), nil
}

func (h *Host) WriteFile(ctx context.Context, p string, data []byte, opts host.WriteOptions) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	mode := opts.Mode
	if mode == 0 {
		mode = 0o644
	}
	h.Files[p] = &File{Data: append([]byte(nil), data...), Mode: mode}
	h.mkdirs(path.Dir(p))
	h.change("write %s %04o", p, mode)
	return nil
}

func (h *Host) Stat(ctx context.Context, p string) (host.FileInfo, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if f, ok := h.Files[p]; ok {
		return host.FileInfo{Path: p, Size: int64(len(f.Data)), Mode: f.Mode, ModTime: time.Unix(0, 0)}, nil
	}
	if h.Dirs[p] {
		return host.FileInfo{Path: p, Mode: fs.ModeDir | 0o755}, nil
	}
	return host.FileInfo{}, &fs.PathError{Op: "stat", Path: p, Err: fs.ErrNotExist}
}

func (h *Host) Remove(ctx context.Context, p string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	found := false
	for f := range h.Files {
		if f == p || strings.HasPrefix(f, p+"/") {
			delete(h.Files, f)
			found = true
		}
	}
	for d := range h.Dirs {
		if d == p || strings.HasPrefix(d, p+"/") {
			delete(h.Dirs, d)
			found = true
		}
	}
	if found {
		h.change("remove %s", p)
	}
	return nil
}

func (h *Host) MkdirAll(ctx context.Context, p string, mode fs.FileMode) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.Dirs[p] {
		h.change("mkdir %s", p)
	}
	h.mkdirs(p)
	return nil
}

func (h *Host) Units() host.Units { return (*units)(h) }
func (h *Host) Close() error      { return nil }

type units Host

func (u *units) h() *Host { return (*Host)(u) }

func (u *units) WriteUnit(ctx context.Context, name string, content []byte) (bool, error) {
	h := u.h()
	h.mu.Lock()
	defer h.mu.Unlock()
	un := h.UnitFiles[name]
	if un == nil {
		un = &Unit{}
		h.UnitFiles[name] = un
	}
	if string(un.Content) == string(content) {
		return false, nil
	}
	un.Content = append([]byte(nil), content...)
	h.change("unit %s", name)
	return true, nil
}

func (u *units) RemoveUnit(ctx context.Context, name string) error {
	h := u.h()
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.UnitFiles[name]; ok {
		delete(h.UnitFiles, name)
		h.change("remove-unit %s", name)
	}
	return nil
}

func (u *units) DaemonReload(ctx context.Context) error { return nil }

func (u *units) set(name, verb string, f func(*Unit)) {
	h := u.h()
	h.mu.Lock()
	defer h.mu.Unlock()
	un := h.UnitFiles[name]
	if un == nil {
		un = &Unit{}
		h.UnitFiles[name] = un
	}
	f(un)
	h.change("%s %s", verb, name)
}

func (u *units) Enable(ctx context.Context, name string) error {
	h := u.h()
	h.mu.Lock()
	if un := h.UnitFiles[name]; un != nil && un.Enabled {
		h.mu.Unlock()
		return nil
	}
	h.mu.Unlock()
	u.set(name, "enable", func(x *Unit) { x.Enabled = true })
	return nil
}

func (u *units) Disable(ctx context.Context, name string) error {
	u.set(name, "disable", func(x *Unit) { x.Enabled = false })
	return nil
}

func (u *units) Start(ctx context.Context, name string) error {
	if err := u.h().StartErr[name]; err != nil {
		return err
	}
	u.set(name, "start", func(x *Unit) { x.Active = true })
	return nil
}

func (u *units) Stop(ctx context.Context, name string) error {
	u.set(name, "stop", func(x *Unit) { x.Active = false })
	return nil
}

func (u *units) Restart(ctx context.Context, name string) error {
	if err := u.h().StartErr[name]; err != nil {
		return err
	}
	u.set(name, "restart", func(x *Unit) { x.Active = true })
	return nil
}

func (u *units) Status(ctx context.Context, name string) (host.UnitStatus, error) {
	h := u.h()
	h.mu.Lock()
	defer h.mu.Unlock()
	un, ok := h.UnitFiles[name]
	st := host.UnitStatus{Name: name, LoadState: "not-found", ActiveState: "inactive", SubState: "dead", Enabled: "disabled"}
	if ok && un.Content != nil {
		st.LoadState = "loaded"
	}
	if ok && un.Active {
		st.ActiveState, st.SubState, st.MainPID = "active", "running", 4242
	}
	if ok && un.Enabled {
		st.Enabled = "enabled"
	}
	return st, nil
}

func (u *units) Journal(ctx context.Context, name string, n int) ([]string, error) {
	return []string{name + ": something went wrong"}, nil
}
