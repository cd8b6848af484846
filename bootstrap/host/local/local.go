// Package local implements host.Host for the machine kubeforge runs on: commands via
// os/exec, files with atomic replace, units through systemd's D-Bus API.
package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	sd "github.com/coreos/go-systemd/v22/dbus"

	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/bootstrap/host/internal/hostutil"
	"github.com/kubeforge/kubeforge/bootstrap/host/sdbus"
)

// Options configures a local Host. The zero value is the real machine.
type Options struct {
	// Name is the host's name in messages; "" means the kernel's hostname.
	Name string
	// UnitDir is where unit files are written; "" means /etc/systemd/system.
	// Tests point it at a temp dir.
	UnitDir string
	// DialSystemd opens the D-Bus connection to systemd; nil means the system bus,
	// falling back to systemd's private socket when no dbus daemon runs (root only).
	DialSystemd sdbus.Dialer
}

// Host is this machine.
type Host struct {
	name  string
	units *sdbus.Units
}

var _ host.Host = (*Host)(nil)

// New returns the local host.
func New(opts Options) *Host {
	h := &Host{name: opts.Name}
	if h.name == "" {
		h.name, _ = os.Hostname()
		if h.name == "" {
			h.name = "localhost"
		}
	}
	dial := opts.DialSystemd
	if dial == nil {
		dial = DialSystemd
	}
	h.units = sdbus.New(h, opts.UnitDir, dial)
	return h
}

// DialSystemd connects to the local systemd over the system bus, or over its private
// socket /run/systemd/private when no bus daemon runs (minimal images, early boot).
func DialSystemd(ctx context.Context) (sdbus.Systemd, error) {
	// The connection is kept for the Host's lifetime; godbus closes a connection when
	// the context it was dialled with ends, so ctx must not be passed down.
	_ = ctx
	c, err := sd.NewSystemConnectionContext(context.Background())
	if err == nil {
		return c, nil
	}
	if os.Geteuid() == 0 {
		if c, err2 := sd.NewSystemdConnectionContext(context.Background()); err2 == nil {
			return c, nil
		}
	}
	return nil, err
}

// Name is the host's name.
func (h *Host) Name() string { return h.name }

// Units manages the local systemd.
func (h *Host) Units() host.Units { return h.units }

// Close drops the D-Bus connection.
func (h *Host) Close() error { return h.units.Close() }

// Run executes the command. The command runs in its own process group so a timeout
// kills what it spawned too, not just the direct child.
func (h *Host) Run(ctx context.Context, c host.Cmd) (host.Result, error) {
	var res host.Result
	if len(c.Argv) == 0 || c.Argv[0] == "" {
		return res, fmt.Errorf("%s: run: empty command", h.name)
	}
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, c.Argv[0], c.Argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A grandchild that keeps stdout open would otherwise hold Wait forever.
	cmd.WaitDelay = 2 * time.Second
	if len(c.Env) > 0 {
		cmd.Env = append(os.Environ(), c.Env...)
	}
	if c.Stdin != nil {
		cmd.Stdin = bytes.NewReader(c.Stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res.Stdout, res.Stderr = stdout.Bytes(), stderr.Bytes()
	if ctxErr := ctx.Err(); ctxErr != nil {
		if errors.Is(ctxErr, context.DeadlineExceeded) && c.Timeout > 0 {
			return res, fmt.Errorf("%s: %s: timed out after %s", h.name, c, c.Timeout)
		}
		return res, fmt.Errorf("%s: %s: %w", h.name, c, ctxErr)
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.ExitCode = ee.ExitCode()
		if res.ExitCode < 0 { // killed by a signal
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				res.ExitCode = 128 + int(ws.Signal())
			}
		}
	default:
		return res, fmt.Errorf("%s: %s: %w", h.name, c, err)
	}
	return res, nil
}

// ReadFile reads path.
func (h *Host) ReadFile(ctx context.Context, path string) ([]byte, error) {
	if err := hostutil.CheckPath(path); err != nil {
		return nil, fmt.Errorf("%s: read: %w", h.name, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", h.name, err)
	}
	return b, nil
}

// WriteFile replaces path atomically: readers see the old or the new content, never
// a mix, and a crash leaves at most a stray temp file. The temp file is created 0600
// and only gets its final mode and owner after the content is complete, so a secret
// is never readable by others on the way.
func (h *Host) WriteFile(ctx context.Context, path string, data []byte, opts host.WriteOptions) error {
	if err := hostutil.CheckPath(path); err != nil {
		return fmt.Errorf("%s: write: %w", h.name, err)
	}
	uid, gid, err := lookupOwner(opts.Owner, opts.Group)
	if err != nil {
		return fmt.Errorf("%s: write %s: %w", h.name, path, err)
	}
	mode := hostutil.FileMode(opts.Mode)
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("%s: write %s: %w", h.name, path, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".kubeforge-*")
	if err != nil {
		return fmt.Errorf("%s: write %s: %w", h.name, path, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("%s: write %s: %w", h.name, path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("%s: write %s: fsync: %w", h.name, path, err)
	}
	if uid >= 0 || gid >= 0 {
		if err := f.Chown(uid, gid); err != nil {
			return fmt.Errorf("%s: write %s: %w", h.name, path, err)
		}
	}
	// After chown: chown clears setuid/setgid bits, and the mode must not depend on
	// the process umask either.
	if err := syscall.Fchmod(int(f.Fd()), hostutil.ChmodBits(mode)); err != nil {
		return fmt.Errorf("%s: write %s: %w", h.name, path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("%s: write %s: %w", h.name, path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("%s: write %s: %w", h.name, path, err)
	}
	ok = true
	// Make the rename itself durable; without it a power loss can bring back the old
	// file (or none) even though the content was synced.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// lookupOwner resolves names or numeric ids; -1 leaves that id unchanged (chown(2)).
func lookupOwner(owner, group string) (uid, gid int, err error) {
	if _, err := hostutil.OwnerSpec(owner, group); err != nil {
		return -1, -1, err
	}
	uid, gid = -1, -1
	if owner != "" {
		if uid, err = strconv.Atoi(owner); err != nil {
			u, err := user.Lookup(owner)
			if err != nil {
				return -1, -1, fmt.Errorf("owner %q: %w", owner, err)
			}
			uid, _ = strconv.Atoi(u.Uid)
		}
	}
	if group != "" {
		if gid, err = strconv.Atoi(group); err != nil {
			g, err := user.LookupGroup(group)
			if err != nil {
				return -1, -1, fmt.Errorf("group %q: %w", group, err)
			}
			gid, _ = strconv.Atoi(g.Gid)
		}
	}
	return uid, gid, nil
}

// Stat describes path, following symlinks.
func (h *Host) Stat(ctx context.Context, path string) (host.FileInfo, error) {
	if err := hostutil.CheckPath(path); err != nil {
		return host.FileInfo{}, fmt.Errorf("%s: stat: %w", h.name, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return host.FileInfo{}, fmt.Errorf("%s: %w", h.name, err)
	}
	info := host.FileInfo{Path: path, Size: fi.Size(), Mode: fi.Mode(), ModTime: fi.ModTime(), UID: -1, GID: -1}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		info.UID, info.GID = int(st.Uid), int(st.Gid)
	}
	return info, nil
}

// Remove deletes path recursively; a missing path is fine.
func (h *Host) Remove(ctx context.Context, path string) error {
	if err := hostutil.CheckPath(path); err != nil {
		return fmt.Errorf("%s: remove: %w", h.name, err)
	}
	if err := os.RemoveAll(path); err != nil {
		return fmt.Errorf("%s: %w", h.name, err)
	}
	return nil
}

// MkdirAll creates path and missing parents. The leaf gets exactly mode (also when it
// already existed, and regardless of umask), since callers use it for directories
// whose mode matters, such as a 0700 pki dir.
func (h *Host) MkdirAll(ctx context.Context, path string, mode fs.FileMode) error {
	if err := hostutil.CheckPath(path); err != nil {
		return fmt.Errorf("%s: mkdir: %w", h.name, err)
	}
	if mode == 0 {
		mode = 0o755
	}
	if err := os.MkdirAll(path, 0o755); err != nil {
		return fmt.Errorf("%s: %w", h.name, err)
	}
	if err := syscall.Chmod(path, hostutil.ChmodBits(mode)); err != nil {
		return fmt.Errorf("%s: chmod %s: %w", h.name, path, err)
	}
	return nil
}
