// Package dryrun implements host.Host as a recorder: reads go to the real host (when
// there is one), every change is written down instead of made. Phase code runs
// unmodified against it, so `--dry-run` shows exactly what a real run would do.
//
// Changes are also kept in an overlay that later reads see: a phase that writes a
// file and reads it back, or starts a unit and then checks it is active, takes the
// same path as in a real run.
package dryrun

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/bootstrap/host/internal/hostutil"
)

// Kind is what an Action does.
type Kind string

// The kinds of recorded change.
const (
	Run          Kind = "run"
	WriteFile    Kind = "write"
	Remove       Kind = "remove"
	MkdirAll     Kind = "mkdir"
	WriteUnit    Kind = "write-unit"
	RemoveUnit   Kind = "remove-unit"
	DaemonReload Kind = "daemon-reload"
	Enable       Kind = "enable"
	Disable      Kind = "disable"
	Start        Kind = "start"
	Stop         Kind = "stop"
	Restart      Kind = "restart"
)

// Action is one change a real run would make.
type Action struct {
	Kind Kind
	// Cmd is the command (Run).
	Cmd host.Cmd
	// Path is the file or directory (files, and the unit file for WriteUnit and
	// RemoveUnit).
	Path string
	// Unit is the unit name (unit kinds).
	Unit string
	// Mode, Owner and Group as requested (WriteFile, MkdirAll).
	Mode         fs.FileMode
	Owner, Group string
	// Secret content is never shown.
	Secret bool
	// Old is the content before (WriteFile, WriteUnit); OldExists tells a new file
	// from an empty one.
	Old       []byte
	OldExists bool
	// New is the planned content (WriteFile, WriteUnit).
	New []byte
	// Unchanged marks a WriteFile whose content, mode and owner already match: a
	// real run rewrites it, but nothing changes.
	Unchanged bool
}

// Options configures a dry-run host.
type Options struct {
	// Name is used when there is no inner host ("" means "dry-run").
	Name string
	// UnitDir is where unit files are planned; "" means /etc/systemd/system.
	UnitDir string
}

// Host records changes instead of making them.
type Host struct {
	inner   host.Host
	name    string
	unitDir string

	mu      sync.Mutex
	actions []Action
	files   map[string]*entry
	units   map[string]*unitState
}

var _ host.Host = (*Host)(nil)

type entryKind int

const (
	planFile    entryKind = iota + 1
	planDir               // exists; fresh means nothing of the real host's is below it
	planRemoved           // does not exist, nor does anything below it
)

type entry struct {
	kind         entryKind
	fresh        bool
	data         []byte
	mode         fs.FileMode
	owner, group string
}

type unitState struct {
	active  *bool
	enabled *bool
}

// New wraps inner; inner may be nil, and then files do not exist and read-only
// commands succeed with no output.
func New(inner host.Host, opts Options) *Host {
	h := &Host{inner: inner, name: opts.Name, unitDir: opts.UnitDir,
		files: map[string]*entry{}, units: map[string]*unitState{}}
	if inner != nil {
		h.name = inner.Name()
	}
	if h.name == "" {
		h.name = "dry-run"
	}
	if h.unitDir == "" {
		h.unitDir = "/etc/systemd/system"
	}
	return h
}

// Name is the host's name.
func (h *Host) Name() string { return h.name }

// Units records unit changes.
func (h *Host) Units() host.Units { return (*units)(h) }

// Close closes the inner host.
func (h *Host) Close() error {
	if h.inner != nil {
		return h.inner.Close()
	}
	return nil
}

// Plan returns the recorded actions in order.
func (h *Host) Plan() []Action {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Action(nil), h.actions...)
}

func (h *Host) record(a Action) {
	h.mu.Lock()
	h.actions = append(h.actions, a)
	h.mu.Unlock()
}

// Run passes read-only commands through and records the rest, reporting success.
func (h *Host) Run(ctx context.Context, c host.Cmd) (host.Result, error) {
	if len(c.Argv) == 0 || c.Argv[0] == "" {
		return host.Result{}, fmt.Errorf("%s: run: empty command", h.name)
	}
	if c.ReadOnly {
		if h.inner != nil {
			return h.inner.Run(ctx, c)
		}
		return host.Result{}, nil
	}
	c.Stdin = bytes.Clone(c.Stdin)
	h.record(Action{Kind: Run, Cmd: c, Secret: c.Secret})
	return host.Result{}, nil
}

// lookup finds the planned state of p: the entry for p itself; a synthesized
// "removed" when an ancestor was removed (or replaced by a file, or recreated
// empty); or nil when the real host decides. Caller holds h.mu.
func (h *Host) lookup(p string) *entry {
	if e, ok := h.files[p]; ok {
		return e
	}
	for d := path.Dir(p); ; d = path.Dir(d) {
		if e, ok := h.files[d]; ok {
			if e.kind == planRemoved || e.kind == planFile || e.fresh {
				return &entry{kind: planRemoved}
			}
		}
		if d == "/" {
			return nil
		}
	}
}

// setDirs marks the ancestors of p as existing directories, as WriteFile and
// MkdirAll would create them. Caller holds h.mu.
func (h *Host) setDirs(p string) {
	for d := path.Dir(p); d != "/"; d = path.Dir(d) {
		e, ok := h.files[d]
		switch {
		case !ok:
			// Below a removed ancestor the directory is recreated empty.
			fresh := h.lookup(d) != nil
			h.files[d] = &entry{kind: planDir, mode: 0o755, fresh: fresh}
		case e.kind != planDir:
			h.files[d] = &entry{kind: planDir, mode: 0o755, fresh: true}
		}
	}
}

// forget drops planned entries below p (p itself is overwritten by the caller).
func (h *Host) forget(p string) {
	for k := range h.files {
		if strings.HasPrefix(k, p+"/") {
			delete(h.files, k)
		}
	}
}

// ReadFile returns planned content for files written in this dry run, else reads
// the real file.
func (h *Host) ReadFile(ctx context.Context, p string) ([]byte, error) {
	if err := hostutil.CheckPath(p); err != nil {
		return nil, fmt.Errorf("%s: read: %w", h.name, err)
	}
	p = path.Clean(p)
	h.mu.Lock()
	e := h.lookup(p)
	h.mu.Unlock()
	if e != nil {
		switch e.kind {
		case planFile:
			return bytes.Clone(e.data), nil
		case planDir:
			return nil, fmt.Errorf("%s: read %s: is a directory", h.name, p)
		default:
			return nil, fmt.Errorf("%s: read %s (removed in this dry run): %w", h.name, p, fs.ErrNotExist)
		}
	}
	if h.inner == nil {
		return nil, fmt.Errorf("%s: read %s: %w", h.name, p, fs.ErrNotExist)
	}
	return h.inner.ReadFile(ctx, p)
}

// Stat describes planned files, else the real one.
func (h *Host) Stat(ctx context.Context, p string) (host.FileInfo, error) {
	if err := hostutil.CheckPath(p); err != nil {
		return host.FileInfo{}, fmt.Errorf("%s: stat: %w", h.name, err)
	}
	p = path.Clean(p)
	h.mu.Lock()
	e := h.lookup(p)
	var fi host.FileInfo
	if e != nil {
		fi = host.FileInfo{Path: p, Size: int64(len(e.data)), Mode: e.mode, ModTime: time.Now(),
			UID: accountID(e.owner), GID: accountID(e.group)}
		if e.kind == planDir {
			fi.Mode |= fs.ModeDir
		}
	}
	h.mu.Unlock()
	if e != nil {
		if e.kind == planRemoved {
			return host.FileInfo{}, fmt.Errorf("%s: stat %s (removed in this dry run): %w", h.name, p, fs.ErrNotExist)
		}
		return fi, nil
	}
	if h.inner == nil {
		return host.FileInfo{}, fmt.Errorf("%s: stat %s: %w", h.name, p, fs.ErrNotExist)
	}
	return h.inner.Stat(ctx, p)
}

// accountID is the id a planned owner will have when it is numeric or root; -1 when
// only the real run can tell.
func accountID(s string) int {
	switch s {
	case "", "root":
		return 0
	}
	if n, err := strconv.Atoi(s); err == nil {
		return n
	}
	return -1
}

// WriteFile records the write with the content it replaces, for the plan's diff.
func (h *Host) WriteFile(ctx context.Context, p string, data []byte, opts host.WriteOptions) error {
	if err := hostutil.CheckPath(p); err != nil {
		return fmt.Errorf("%s: write: %w", h.name, err)
	}
	if _, err := hostutil.OwnerSpec(opts.Owner, opts.Group); err != nil {
		return fmt.Errorf("%s: write %s: %w", h.name, p, err)
	}
	p = path.Clean(p)
	mode := hostutil.FileMode(opts.Mode)
	a := Action{Kind: WriteFile, Path: p, Mode: mode, Owner: opts.Owner, Group: opts.Group,
		Secret: opts.Secret, New: bytes.Clone(data)}
	old, err := h.ReadFile(ctx, p)
	switch {
	case err == nil:
		a.Old, a.OldExists = old, true
	case !host.IsNotExist(err):
		return err
	}
	if a.OldExists && bytes.Equal(old, data) {
		if fi, err := h.Stat(ctx, p); err == nil && fi.Mode.Perm() == mode.Perm() &&
			(opts.Owner == "" || accountID(opts.Owner) == fi.UID) &&
			(opts.Group == "" || accountID(opts.Group) == fi.GID) {
			a.Unchanged = true
		}
	}
	h.mu.Lock()
	h.setDirs(p)
	h.forget(p)
	h.files[p] = &entry{kind: planFile, data: bytes.Clone(data), mode: mode, owner: opts.Owner, group: opts.Group}
	h.actions = append(h.actions, a)
	h.mu.Unlock()
	return nil
}

// Remove records the removal when there is something to remove.
func (h *Host) Remove(ctx context.Context, p string) error {
	if err := hostutil.CheckPath(p); err != nil {
		return fmt.Errorf("%s: remove: %w", h.name, err)
	}
	p = path.Clean(p)
	if _, err := h.Stat(ctx, p); err != nil {
		if host.IsNotExist(err) {
			return nil
		}
		return err
	}
	h.mu.Lock()
	h.forget(p)
	h.files[p] = &entry{kind: planRemoved}
	h.actions = append(h.actions, Action{Kind: Remove, Path: p})
	h.mu.Unlock()
	return nil
}

// MkdirAll records the directory unless it already exists with that mode.
func (h *Host) MkdirAll(ctx context.Context, p string, mode fs.FileMode) error {
	if err := hostutil.CheckPath(p); err != nil {
		return fmt.Errorf("%s: mkdir: %w", h.name, err)
	}
	p = path.Clean(p)
	if mode == 0 {
		mode = 0o755
	}
	fi, err := h.Stat(ctx, p)
	switch {
	case err == nil && fi.IsDir() && fi.Mode.Perm() == mode.Perm():
		return nil
	case err == nil && !fi.IsDir():
		return fmt.Errorf("%s: mkdir %s: exists and is not a directory", h.name, p)
	case err != nil && !host.IsNotExist(err):
		return err
	}
	h.mu.Lock()
	h.setDirs(p)
	e, ok := h.files[p]
	if !ok || e.kind != planDir {
		h.files[p] = &entry{kind: planDir, fresh: ok || h.lookup(p) != nil}
	}
	h.files[p].mode = mode
	h.actions = append(h.actions, Action{Kind: MkdirAll, Path: p, Mode: mode})
	h.mu.Unlock()
	return nil
}

// PrintPlan writes the recorded actions for people: commands, files with mode,
// owner and a diff against the current content, unit operations. Secret content
// (and secret stdin) is shown only as its size.
func (h *Host) PrintPlan(w io.Writer) error {
	plan := h.Plan()
	changes := 0
	for _, a := range plan {
		if !a.Unchanged {
			changes++
		}
	}
	bw := &errWriter{w: w}
	fmt.Fprintf(bw, "host %s: %d planned change(s)\n", h.name, changes)
	n := 0
	for _, a := range plan {
		n++
		fmt.Fprintf(bw, "  [%d] %s\n", n, a.Summary())
		const ind = "      "
		switch a.Kind {
		case WriteFile, WriteUnit:
			if a.Unchanged {
				continue
			}
			switch {
			case a.Secret:
				fmt.Fprintf(bw, "%s<secret: %d bytes>\n", ind, len(a.New))
			case !a.OldExists && len(a.New) == 0:
				fmt.Fprintf(bw, "%s(empty file)\n", ind)
			default:
				oldName := a.Path
				if !a.OldExists {
					oldName = "/dev/null"
				}
				UnifiedDiff(bw, ind, oldName, a.Path+" (planned)", a.Old, a.New)
			}
		case Run:
			if a.Cmd.Stdin != nil {
				if a.Cmd.Secret {
					fmt.Fprintf(bw, "%sstdin: <secret: %d bytes>\n", ind, len(a.Cmd.Stdin))
				} else {
					fmt.Fprintf(bw, "%sstdin: %d bytes\n", ind, len(a.Cmd.Stdin))
				}
			}
			if len(a.Cmd.Env) > 0 {
				fmt.Fprintf(bw, "%senv: %s\n", ind, envNames(a.Cmd.Env))
			}
		}
	}
	return bw.err
}

// envNames lists only variable names: values may be credentials (proxies with
// passwords, tokens) and a plan is meant to be pasted into tickets.
func envNames(env []string) string {
	names := make([]string, len(env))
	for i, e := range env {
		k, _, _ := strings.Cut(e, "=")
		names[i] = k
	}
	return strings.Join(names, " ")
}

// Summary is the one-line description of the action.
func (a Action) Summary() string {
	switch a.Kind {
	case Run:
		return "run: " + a.Cmd.String()
	case WriteFile:
		attrs := []string{fmt.Sprintf("mode %04o", hostutil.ChmodBits(a.Mode))}
		if o, _ := hostutil.OwnerSpec(a.Owner, a.Group); o != "" {
			attrs = append(attrs, "owner "+o)
		}
		switch {
		case a.Unchanged:
			attrs = append(attrs, "unchanged")
		case !a.OldExists:
			attrs = append(attrs, "new file")
		case bytes.Equal(a.Old, a.New):
			attrs = append(attrs, "same content")
		}
		return fmt.Sprintf("write %s (%s)", a.Path, strings.Join(attrs, ", "))
	case Remove:
		return "remove " + a.Path
	case MkdirAll:
		return fmt.Sprintf("mkdir %s (mode %04o)", a.Path, hostutil.ChmodBits(a.Mode))
	case WriteUnit:
		state := "changed"
		if !a.OldExists {
			state = "new"
		}
		return fmt.Sprintf("write unit %s (%s, %s) and daemon-reload", a.Unit, a.Path, state)
	case RemoveUnit:
		return fmt.Sprintf("remove unit %s (%s) and daemon-reload", a.Unit, a.Path)
	case DaemonReload:
		return "systemd daemon-reload"
	default:
		return fmt.Sprintf("%s unit %s", a.Kind, a.Unit)
	}
}

// errWriter remembers the first write error so PrintPlan can use fmt freely.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return len(p), nil
	}
	_, e.err = e.w.Write(p)
	return len(p), nil
}
