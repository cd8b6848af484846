// Package sdbus is the one implementation of host.Units, shared by the local and the
// SSH host. Unit files are written through the host's own file methods; everything
// systemd does (reload, enable, start, status) goes through systemd's D-Bus API via
// go-systemd, over whatever bus connection the host can dial: the local system bus,
// or the remote one reached through the SSH connection itself. Talking D-Bus instead
// of parsing systemctl output gives job results ("done", "failed", "timeout") and
// unit properties as data, identically on CentOS 7's systemd 219 and Debian's 252.
package sdbus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"sync"

	sd "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"

	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/bootstrap/host/internal/hostutil"
)

// DefaultUnitDir is where administrator-provided units live on every target distro.
const DefaultUnitDir = "/etc/systemd/system"

// Systemd is the part of go-systemd's *dbus.Conn that Units uses. *sd.Conn satisfies
// it; tests substitute a fake.
type Systemd interface {
	ReloadContext(ctx context.Context) error
	EnableUnitFilesContext(ctx context.Context, files []string, runtime, force bool) (bool, []sd.EnableUnitFileChange, error)
	DisableUnitFilesContext(ctx context.Context, files []string, runtime bool) ([]sd.DisableUnitFileChange, error)
	StartUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error)
	StopUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error)
	RestartUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error)
	GetUnitPropertiesContext(ctx context.Context, unit string) (map[string]any, error)
	GetServicePropertyContext(ctx context.Context, service, prop string) (*sd.Property, error)
	Connected() bool
	Close()
}

var _ Systemd = (*sd.Conn)(nil)

// Dialer opens a new connection to the host's systemd. The connection must outlive
// the ctx given (that ctx only bounds the dial).
type Dialer func(ctx context.Context) (Systemd, error)

// Machine is what Units needs from its host besides D-Bus: files for the unit files
// and Run for journalctl.
type Machine interface {
	Name() string
	Run(ctx context.Context, cmd host.Cmd) (host.Result, error)
	ReadFile(ctx context.Context, path string) ([]byte, error)
	WriteFile(ctx context.Context, path string, data []byte, opts host.WriteOptions) error
	Stat(ctx context.Context, path string) (host.FileInfo, error)
	Remove(ctx context.Context, path string) error
}

// Units implements host.Units for a Machine.
type Units struct {
	m    Machine
	dir  string
	dial Dialer

	mu   sync.Mutex
	conn Systemd
}

var _ host.Units = (*Units)(nil)

// New returns Units for m. dir is the unit directory ("" means DefaultUnitDir);
// dial is called lazily, on the first call that needs systemd, and again if the
// connection dropped.
func New(m Machine, dir string, dial Dialer) *Units {
	if dir == "" {
		dir = DefaultUnitDir
	}
	return &Units{m: m, dir: dir, dial: dial}
}

// Dir is the unit directory unit files are written to.
func (u *Units) Dir() string { return u.dir }

// Close drops the D-Bus connection, if one was made.
func (u *Units) Close() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.conn != nil {
		u.conn.Close()
		u.conn = nil
	}
	return nil
}

func (u *Units) systemd(ctx context.Context) (Systemd, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.conn != nil && u.conn.Connected() {
		return u.conn, nil
	}
	if u.conn != nil {
		u.conn.Close()
		u.conn = nil
	}
	if u.dial == nil {
		return nil, fmt.Errorf("%s: no way to reach systemd configured", u.m.Name())
	}
	c, err := u.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: connect to systemd over D-Bus: %w", u.m.Name(), err)
	}
	u.conn = c
	return c, nil
}

func (u *Units) unitPath(name string) string { return path.Join(u.dir, name) }

// WriteUnit writes the unit file (or drop-in) and reloads systemd when the content
// differs. If the reload fails the previous file is put back, so a retry sees the
// change again instead of finding the file "unchanged" while systemd still runs the
// old definition.
func (u *Units) WriteUnit(ctx context.Context, name string, content []byte) (bool, error) {
	if err := hostutil.CheckUnitName(name, true); err != nil {
		return false, fmt.Errorf("%s: %w", u.m.Name(), err)
	}
	p := u.unitPath(name)
	old, err := u.m.ReadFile(ctx, p)
	existed := err == nil
	switch {
	case existed && bytes.Equal(old, content):
		return false, nil
	case err != nil && !host.IsNotExist(err):
		return false, err
	}
	if err := u.m.WriteFile(ctx, p, content, host.WriteOptions{Mode: 0o644}); err != nil {
		return false, err
	}
	if err := u.DaemonReload(ctx); err != nil {
		var rb error
		if existed {
			rb = u.m.WriteFile(ctx, p, old, host.WriteOptions{Mode: 0o644})
		} else {
			rb = u.m.Remove(ctx, p)
		}
		if rb != nil {
			return true, fmt.Errorf("%w (and restoring the previous %s failed: %v)", err, p, rb)
		}
		return false, err
	}
	return true, nil
}

// RemoveUnit deletes the unit file and its drop-in directory (or just the one
// drop-in) and reloads systemd if anything was there.
func (u *Units) RemoveUnit(ctx context.Context, name string) error {
	if err := hostutil.CheckUnitName(name, true); err != nil {
		return fmt.Errorf("%s: %w", u.m.Name(), err)
	}
	paths := []string{u.unitPath(name)}
	if !strings.Contains(name, ".d/") {
		paths = append(paths, u.unitPath(name+".d"))
	}
	removed := false
	for _, p := range paths {
		if _, err := u.m.Stat(ctx, p); err != nil {
			if host.IsNotExist(err) {
				continue
			}
			return err
		}
		if err := u.m.Remove(ctx, p); err != nil {
			return err
		}
		removed = true
	}
	if !removed {
		return nil
	}
	return u.DaemonReload(ctx)
}

// DaemonReload makes systemd re-read unit files (systemctl daemon-reload).
func (u *Units) DaemonReload(ctx context.Context) error {
	c, err := u.systemd(ctx)
	if err != nil {
		return err
	}
	if err := c.ReloadContext(ctx); err != nil {
		return fmt.Errorf("%s: systemd daemon-reload: %w", u.m.Name(), err)
	}
	return nil
}

// Enable links the unit into the targets named by its [Install] section, like
// `systemctl enable`, and reloads systemd when links changed (as systemctl does).
func (u *Units) Enable(ctx context.Context, name string) error {
	if err := hostutil.CheckUnitName(name, false); err != nil {
		return fmt.Errorf("%s: %w", u.m.Name(), err)
	}
	c, err := u.systemd(ctx)
	if err != nil {
		return err
	}
	hasInstall, changes, err := c.EnableUnitFilesContext(ctx, []string{name}, false, false)
	if err != nil {
		return fmt.Errorf("%s: enable %s: %w", u.m.Name(), name, err)
	}
	if !hasInstall {
		// systemctl only warns here; for kubeforge a unit that is silently not
		// started at boot is a cluster that does not come back after a reboot.
		return fmt.Errorf("%s: enable %s: the unit has no [Install] section, so it cannot be enabled", u.m.Name(), name)
	}
	if len(changes) > 0 {
		return u.DaemonReload(ctx)
	}
	return nil
}

// Disable removes the unit's [Install] links. Disabling a unit that does not exist
// is not an error: it is as disabled as it can be.
func (u *Units) Disable(ctx context.Context, name string) error {
	if err := hostutil.CheckUnitName(name, false); err != nil {
		return fmt.Errorf("%s: %w", u.m.Name(), err)
	}
	c, err := u.systemd(ctx)
	if err != nil {
		return err
	}
	changes, err := c.DisableUnitFilesContext(ctx, []string{name}, false)
	if err != nil {
		if isNoSuchUnit(err) {
			return nil
		}
		return fmt.Errorf("%s: disable %s: %w", u.m.Name(), name, err)
	}
	if len(changes) > 0 {
		return u.DaemonReload(ctx)
	}
	return nil
}

// Start starts the unit and waits for its job.
func (u *Units) Start(ctx context.Context, name string) error {
	return u.job(ctx, "start", name, func(c Systemd, ch chan<- string) (int, error) {
		return c.StartUnitContext(ctx, name, "replace", ch)
	})
}

// Stop stops the unit and waits for its job. Stopping a unit systemd does not know
// is not an error.
func (u *Units) Stop(ctx context.Context, name string) error {
	return u.job(ctx, "stop", name, func(c Systemd, ch chan<- string) (int, error) {
		return c.StopUnitContext(ctx, name, "replace", ch)
	})
}

// Restart restarts (or starts) the unit and waits for its job.
func (u *Units) Restart(ctx context.Context, name string) error {
	return u.job(ctx, "restart", name, func(c Systemd, ch chan<- string) (int, error) {
		return c.RestartUnitContext(ctx, name, "replace", ch)
	})
}

func (u *Units) job(ctx context.Context, verb, name string, enqueue func(Systemd, chan<- string) (int, error)) error {
	if err := hostutil.CheckUnitName(name, false); err != nil {
		return fmt.Errorf("%s: %w", u.m.Name(), err)
	}
	c, err := u.systemd(ctx)
	if err != nil {
		return err
	}
	// Buffered: go-systemd delivers the result from its signal goroutine and must
	// not block on us if we gave up waiting (ctx cancelled).
	ch := make(chan string, 1)
	if _, err := enqueue(c, ch); err != nil {
		if verb == "stop" && isNoSuchUnit(err) {
			return nil
		}
		return fmt.Errorf("%s: %s %s: %w", u.m.Name(), verb, name, err)
	}
	select {
	case res := <-ch:
		if res == "done" {
			return nil
		}
		return fmt.Errorf("%s: %s %s: job ended with result %q%s", u.m.Name(), verb, name, res, u.journalHint(ctx, name))
	case <-ctx.Done():
		return fmt.Errorf("%s: %s %s: gave up waiting for the systemd job: %w", u.m.Name(), verb, name, ctx.Err())
	}
}

// journalHint adds the unit's last journal lines to a failed job's error, because
// "job ended with result failed" alone sends every operator to the host anyway.
func (u *Units) journalHint(ctx context.Context, name string) string {
	lines, err := u.Journal(ctx, name, 5)
	if err != nil || len(lines) == 0 {
		return ""
	}
	return "; last journal lines:\n  " + strings.Join(lines, "\n  ")
}

// Status reads the unit's state from systemd. A unit systemd has no file for is
// reported with LoadState "not-found", not as an error.
func (u *Units) Status(ctx context.Context, name string) (host.UnitStatus, error) {
	st := host.UnitStatus{Name: name}
	if err := hostutil.CheckUnitName(name, false); err != nil {
		return st, fmt.Errorf("%s: %w", u.m.Name(), err)
	}
	c, err := u.systemd(ctx)
	if err != nil {
		return st, err
	}
	props, err := c.GetUnitPropertiesContext(ctx, name)
	if err != nil {
		return st, fmt.Errorf("%s: status of %s: %w", u.m.Name(), name, err)
	}
	st.LoadState = propString(props, "LoadState")
	st.ActiveState = propString(props, "ActiveState")
	st.SubState = propString(props, "SubState")
	st.Enabled = propString(props, "UnitFileState")
	st.JobQueued = jobQueued(props["Job"])
	if strings.HasSuffix(name, ".service") && st.LoadState == "loaded" {
		p, err := c.GetServicePropertyContext(ctx, name, "MainPID")
		if err != nil {
			return st, fmt.Errorf("%s: MainPID of %s: %w", u.m.Name(), name, err)
		}
		st.MainPID = variantInt(p.Value)
	}
	return st, nil
}

// jobQueued reads the unit's Job property, a (job id, object path) pair
// whose id is 0 when no job is queued.
func jobQueued(v any) bool {
	if pair, ok := v.([]any); ok && len(pair) > 0 {
		if id, ok := pair[0].(uint32); ok {
			return id != 0
		}
	}
	return false
}

// Journal returns the unit's last n journal lines, oldest first. journalctl is used
// rather than sdjournal because the latter needs cgo (libsystemd), and kubeforge is a
// static binary.
func (u *Units) Journal(ctx context.Context, name string, n int) ([]string, error) {
	if err := hostutil.CheckUnitName(name, false); err != nil {
		return nil, fmt.Errorf("%s: %w", u.m.Name(), err)
	}
	if n <= 0 {
		n = 50
	}
	c := host.Cmd{Argv: []string{"journalctl", "-u", name, "-n", strconv.Itoa(n), "-o", "cat", "--no-pager"}, ReadOnly: true}
	r, err := u.m.Run(ctx, c)
	if err != nil {
		return nil, err
	}
	if err := r.Err(u.m.Name(), c); err != nil {
		return nil, err
	}
	lines := hostutil.SplitLines(r.Stdout)
	// journalctl prints this marker instead of nothing when the unit never logged.
	if len(lines) == 1 && lines[0] == "-- No entries --" {
		return nil, nil
	}
	return lines, nil
}

func isNoSuchUnit(err error) bool {
	var de godbus.Error
	if errors.As(err, &de) {
		return de.Name == "org.freedesktop.systemd1.NoSuchUnit" || de.Name == "org.freedesktop.DBus.Error.FileNotFound"
	}
	var dep *godbus.Error
	if errors.As(err, &dep) {
		return dep.Name == "org.freedesktop.systemd1.NoSuchUnit" || dep.Name == "org.freedesktop.DBus.Error.FileNotFound"
	}
	return false
}

func propString(props map[string]any, key string) string {
	switch v := props[key].(type) {
	case string:
		return v
	case godbus.Variant:
		s, _ := v.Value().(string)
		return s
	}
	return ""
}

func variantInt(v godbus.Variant) int {
	switch x := v.Value().(type) {
	case uint32:
		return int(x)
	case int32:
		return int(x)
	case uint64:
		return int(x)
	case int64:
		return int(x)
	case int:
		return x
	}
	return 0
}
