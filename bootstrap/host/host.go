// Package host is the one door through which kubeforge touches a machine.
//
// Every phase (preflight fixes, certificates, etcd, control plane, node) is written
// against Host and never against os/exec, os.WriteFile or systemctl directly. Three
// implementations exist:
//
//   - local:  this machine; systemd through its D-Bus API (go-systemd).
//   - ssh:    a remote machine over golang.org/x/crypto/ssh with verified host keys.
//   - dryrun: wraps another Host, lets reads through and records every change instead
//     of making it, so `--dry-run` prints the plan the same phase code would carry out.
//
// Keeping the surface small (run, files, units) is what makes the third one possible:
// a phase that only talks through Host can always be dry-run.
package host

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"
)

// Host is a machine kubeforge acts on.
type Host interface {
	// Name is the host's name as the cluster config knows it (for messages).
	Name() string

	// Run executes argv (no shell) and waits for it. A non-zero exit status is not an
	// error: it is reported in Result.ExitCode. Errors are for commands that could not
	// be run at all (not found, connection lost, timeout).
	Run(ctx context.Context, cmd Cmd) (Result, error)

	// ReadFile returns the content of path. A missing file gives an error for which
	// errors.Is(err, fs.ErrNotExist) holds, on every implementation.
	ReadFile(ctx context.Context, path string) ([]byte, error)
	// WriteFile replaces path atomically (temp file in the same directory + rename),
	// creating parent directories (0755) as needed, with the given mode and owner.
	WriteFile(ctx context.Context, path string, data []byte, opts WriteOptions) error
	// Stat describes path; errors.Is(err, fs.ErrNotExist) when it does not exist.
	Stat(ctx context.Context, path string) (FileInfo, error)
	// Remove deletes path and, for a directory, everything below it. Removing a path
	// that does not exist is not an error.
	Remove(ctx context.Context, path string) error
	// MkdirAll creates a directory and its parents with the given mode.
	MkdirAll(ctx context.Context, path string, mode fs.FileMode) error

	// Units manages systemd units on the host.
	Units() Units

	// Close releases connections. The Host must not be used afterwards.
	Close() error
}

// Cmd is one command to run on a host.
type Cmd struct {
	Argv []string
	// Stdin is fed to the command; nil means no input.
	Stdin []byte
	// Env entries (KEY=value) added to the command's environment.
	Env []string
	// Timeout bounds the command; zero means only ctx bounds it.
	Timeout time.Duration
	// Secret marks a command whose stdin must never be logged or printed (dry-run
	// plans print "<secret>" instead). Argv must never hold secrets at all.
	Secret bool
	// ReadOnly marks a command that changes nothing on the host (a query such as
	// `uname -r` or `journalctl`), so a dry run may really execute it instead of
	// only recording it.
	ReadOnly bool
}

// String renders the command for logs and dry-run plans.
func (c Cmd) String() string { return QuoteArgv(c.Argv) }

// Result is what a finished command left behind.
type Result struct {
	Stdout   []byte
	Stderr   []byte
	ExitCode int
}

// OK reports whether the command exited 0.
func (r Result) OK() bool { return r.ExitCode == 0 }

// Err turns a non-zero exit into an error that names the host, the command and the
// last line of stderr, for callers that treat failure as fatal.
func (r Result) Err(h string, c Cmd) error {
	if r.ExitCode == 0 {
		return nil
	}
	msg := strings.TrimSpace(string(r.Stderr))
	if msg == "" {
		msg = strings.TrimSpace(string(r.Stdout))
	}
	if i := strings.LastIndex(msg, "\n"); i >= 0 {
		msg = msg[i+1:]
	}
	return fmt.Errorf("%s: %s exited %d: %s", h, c, r.ExitCode, msg)
}

// WriteOptions says how a file is written.
type WriteOptions struct {
	Mode fs.FileMode // 0 means 0644
	// Owner and Group are user/group names or numeric ids; empty leaves root:root
	// (or whatever the writing user is).
	Owner, Group string
	// Secret marks content that must never be logged or shown in a dry-run diff.
	Secret bool
}

// FileInfo is the part of a file's metadata phases care about.
type FileInfo struct {
	Path    string
	Size    int64
	Mode    fs.FileMode // permission bits plus fs.ModeDir etc.
	ModTime time.Time
	UID     int
	GID     int
}

// IsDir reports whether the path is a directory.
func (fi FileInfo) IsDir() bool { return fi.Mode.IsDir() }

// Units manages systemd units.
type Units interface {
	// WriteUnit writes /etc/systemd/system/<name> (or a drop-in when name contains
	// ".d/") and reloads systemd if the content changed. It reports whether it changed.
	WriteUnit(ctx context.Context, name string, content []byte) (changed bool, err error)
	// RemoveUnit deletes the unit file (and its drop-in directory) and reloads systemd.
	RemoveUnit(ctx context.Context, name string) error
	DaemonReload(ctx context.Context) error
	Enable(ctx context.Context, name string) error
	Disable(ctx context.Context, name string) error
	// Start, Stop and Restart wait for the job to finish and fail if it did not end
	// in "done".
	Start(ctx context.Context, name string) error
	Stop(ctx context.Context, name string) error
	Restart(ctx context.Context, name string) error
	// Status reports the unit's load, active and sub state.
	Status(ctx context.Context, name string) (UnitStatus, error)
	// Journal returns the unit's last n journal lines (oldest first).
	Journal(ctx context.Context, name string, n int) ([]string, error)
}

// UnitStatus is systemd's view of one unit.
type UnitStatus struct {
	Name        string
	LoadState   string // loaded, not-found, masked ...
	ActiveState string // active, inactive, failed, activating ...
	SubState    string // running, dead, exited ...
	Enabled     string // enabled, disabled, static ... ("" when unknown)
	MainPID     int
	// JobQueued: systemd has a job queued for the unit (a start waiting for
	// the units it is ordered after, or the restart of a crashed service), so
	// "inactive" is on its way to something else.
	JobQueued bool
}

// Active reports whether the unit is active.
func (s UnitStatus) Active() bool { return s.ActiveState == "active" }

// ErrNotExist is returned (wrapped) for missing files on every implementation.
var ErrNotExist = fs.ErrNotExist

// IsNotExist reports whether err means a missing file.
func IsNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// QuoteArgv renders argv as a shell would need it typed, for logs and plans.
func QuoteArgv(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		out[i] = ShellQuote(a)
	}
	return strings.Join(out, " ")
}

// ShellQuote quotes s for a POSIX shell when it needs quoting.
func ShellQuote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
}

// MustRun runs cmd and turns a non-zero exit into an error.
func MustRun(ctx context.Context, h Host, argv ...string) (Result, error) {
	c := Cmd{Argv: argv}
	r, err := h.Run(ctx, c)
	if err != nil {
		return r, err
	}
	return r, r.Err(h.Name(), c)
}
