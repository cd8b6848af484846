// Package busfake runs a real dbus-daemon with a fake systemd on it, for tests on
// machines where systemd is not PID 1. The fake speaks systemd's actual D-Bus
// interface (org.freedesktop.systemd1.Manager methods, JobRemoved signals, unit
// properties), so clients are exercised end to end: go-systemd, godbus, the bus
// daemon and whatever transport (SSH forwarding, systemd-stdio-bridge) is between.
//
// Its model of systemd is small but strict where kubeforge's correctness depends on
// it: a unit file is only known to systemd after a Reload (so a missing daemon-reload
// shows up as "not found"), enabling needs an [Install] section, and a unit whose
// ExecStart is /bin/false fails to start.
package busfake

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"
)

const busConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="root"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
  </policy>
</busconfig>
`

// StartBus starts a private system-type dbus-daemon and returns its socket path. It
// skips the test when dbus-daemon is not installed.
func StartBus(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("dbus-daemon")
	if err != nil {
		t.Skip("dbus-daemon not installed (apt-get install dbus-daemon)")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "system_bus_socket")
	conf := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(busConfig, sock)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config-file="+conf, "--nofork", "--nopidfile")
	var log strings.Builder
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	for i := 0; ; i++ {
		if c, err := godbus.Dial("unix:path=" + sock); err == nil {
			c.Close()
			break
		}
		if i == 200 {
			t.Fatalf("dbus-daemon did not come up: %s", log.String())
		}
		time.Sleep(25 * time.Millisecond)
	}
	return sock
}

// Systemd is the fake systemd service.
type Systemd struct {
	unitDir string
	conn    *godbus.Conn

	mu      sync.Mutex
	reloads int
	loaded  map[string]string // unit -> file content as of the last Reload
	active  map[string]bool
	enabled map[string]bool
	jobID   uint32
	peers   map[string]bool // /proc/PID/comm of callers
}

// Serve connects to the bus at sock, claims org.freedesktop.systemd1 and serves
// units whose files are in unitDir.
func Serve(t testing.TB, sock, unitDir string) *Systemd {
	t.Helper()
	conn, err := godbus.Dial("unix:path=" + sock)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Auth(nil); err != nil {
		t.Fatal(err)
	}
	if err := conn.Hello(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	s := &Systemd{unitDir: unitDir, conn: conn, loaded: map[string]string{}, active: map[string]bool{},
		enabled: map[string]bool{}, peers: map[string]bool{}}
	if err := conn.Export((*manager)(s), "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager"); err != nil {
		t.Fatal(err)
	}
	if err := conn.ExportSubtree((*props)(s), "/org/freedesktop/systemd1/unit", "org.freedesktop.DBus.Properties"); err != nil {
		t.Fatal(err)
	}
	reply, err := conn.RequestName("org.freedesktop.systemd1", godbus.NameFlagDoNotQueue)
	if err != nil || reply != godbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("claim org.freedesktop.systemd1: %v %v", reply, err)
	}
	return s
}

// Reloads is how many daemon-reloads were requested.
func (s *Systemd) Reloads() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reloads
}

// Peers returns the process names (comm) of the processes that called systemd, as
// the bus daemon saw them: "sshd" for stream-local forwarding, the bridge's name for
// systemd-stdio-bridge.
func (s *Systemd) Peers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for p := range s.peers {
		out = append(out, p)
	}
	return out
}

func (s *Systemd) notePeer(sender godbus.Sender) {
	var pid uint32
	if err := s.conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixProcessID", 0, string(sender)).Store(&pid); err != nil {
		return
	}
	comm, _ := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/comm")
	s.mu.Lock()
	s.peers[strings.TrimSpace(string(comm))] = true
	s.mu.Unlock()
}

type manager Systemd

type fileChange struct{ Type, Filename, Destination string }

func noSuchUnit(msg string) *godbus.Error {
	return &godbus.Error{Name: "org.freedesktop.systemd1.NoSuchUnit", Body: []any{msg}}
}

func (m *manager) Reload(sender godbus.Sender) *godbus.Error {
	s := (*Systemd)(m)
	s.notePeer(sender)
	entries, _ := os.ReadDir(s.unitDir)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reloads++
	s.loaded = map[string]string{}
	for _, e := range entries {
		if b, err := os.ReadFile(filepath.Join(s.unitDir, e.Name())); err == nil {
			s.loaded[e.Name()] = string(b)
		}
	}
	return nil
}

func (m *manager) EnableUnitFiles(sender godbus.Sender, files []string, runtime, force bool) (bool, []fileChange, *godbus.Error) {
	s := (*Systemd)(m)
	s.notePeer(sender)
	s.mu.Lock()
	defer s.mu.Unlock()
	install := true
	var changes []fileChange
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(s.unitDir, f))
		if err != nil {
			return false, nil, &godbus.Error{Name: "org.freedesktop.DBus.Error.FileNotFound", Body: []any{"Unit file " + f + " does not exist."}}
		}
		if !strings.Contains(string(b), "[Install]") {
			install = false
			continue
		}
		if !s.enabled[f] {
			s.enabled[f] = true
			changes = append(changes, fileChange{"symlink", "/etc/systemd/system/multi-user.target.wants/" + f, filepath.Join(s.unitDir, f)})
		}
	}
	return install, changes, nil
}

func (m *manager) DisableUnitFiles(sender godbus.Sender, files []string, runtime bool) ([]fileChange, *godbus.Error) {
	s := (*Systemd)(m)
	s.notePeer(sender)
	s.mu.Lock()
	defer s.mu.Unlock()
	var changes []fileChange
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(s.unitDir, f)); err != nil {
			return nil, &godbus.Error{Name: "org.freedesktop.DBus.Error.FileNotFound", Body: []any{"Unit file " + f + " does not exist."}}
		}
		if s.enabled[f] {
			delete(s.enabled, f)
			changes = append(changes, fileChange{"unlink", "/etc/systemd/system/multi-user.target.wants/" + f, ""})
		}
	}
	return changes, nil
}

// job runs a job to completion and announces it with JobRemoved, as systemd does
// after replying with the job's object path.
func (m *manager) job(sender godbus.Sender, name string, run func(s *Systemd) (string, *godbus.Error)) (godbus.ObjectPath, *godbus.Error) {
	s := (*Systemd)(m)
	s.notePeer(sender)
	s.mu.Lock()
	result, derr := run(s)
	s.jobID++
	id := s.jobID
	s.mu.Unlock()
	if derr != nil {
		return "", derr
	}
	path := godbus.ObjectPath(fmt.Sprintf("/org/freedesktop/systemd1/job/%d", id))
	go func() {
		time.Sleep(10 * time.Millisecond) // let the reply go out first, like a real job
		s.conn.Emit("/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager.JobRemoved", id, path, name, result)
	}()
	return path, nil
}

func start(name string) func(s *Systemd) (string, *godbus.Error) {
	return func(s *Systemd) (string, *godbus.Error) {
		content, ok := s.loaded[name]
		if !ok {
			return "", noSuchUnit("Unit " + name + " not found.")
		}
		if strings.Contains(content, "ExecStart=/bin/false") {
			s.active[name] = false
			return "failed", nil
		}
		s.active[name] = true
		return "done", nil
	}
}

func (m *manager) StartUnit(sender godbus.Sender, name, mode string) (godbus.ObjectPath, *godbus.Error) {
	return m.job(sender, name, start(name))
}

func (m *manager) RestartUnit(sender godbus.Sender, name, mode string) (godbus.ObjectPath, *godbus.Error) {
	return m.job(sender, name, start(name))
}

func (m *manager) StopUnit(sender godbus.Sender, name, mode string) (godbus.ObjectPath, *godbus.Error) {
	return m.job(sender, name, func(s *Systemd) (string, *godbus.Error) {
		if _, ok := s.loaded[name]; !ok && !s.active[name] {
			return "", noSuchUnit("Unit " + name + " not loaded.")
		}
		s.active[name] = false
		return "done", nil
	})
}

type props Systemd

// unitName undoes go-systemd's object path escaping (_XX for every byte outside
// [A-Za-z0-9]).
func unitName(p godbus.ObjectPath) string {
	esc := string(p)[strings.LastIndex(string(p), "/")+1:]
	var b strings.Builder
	for i := 0; i < len(esc); i++ {
		if esc[i] == '_' && i+2 < len(esc) {
			if n, err := strconv.ParseUint(esc[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(n))
				i += 2
				continue
			}
		}
		b.WriteByte(esc[i])
	}
	return b.String()
}

func (p *props) unitProps(name string) map[string]godbus.Variant {
	s := (*Systemd)(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	load, active, sub, file := "not-found", "inactive", "dead", ""
	if _, ok := s.loaded[name]; ok {
		load, file = "loaded", "disabled"
		if s.enabled[name] {
			file = "enabled"
		}
	}
	if s.active[name] {
		active, sub = "active", "running"
	}
	pid := uint32(0)
	if s.active[name] {
		pid = 4242
	}
	return map[string]godbus.Variant{
		"Id":            godbus.MakeVariant(name),
		"LoadState":     godbus.MakeVariant(load),
		"ActiveState":   godbus.MakeVariant(active),
		"SubState":      godbus.MakeVariant(sub),
		"UnitFileState": godbus.MakeVariant(file),
		"MainPID":       godbus.MakeVariant(pid),
	}
}

func (p *props) GetAll(msg godbus.Message, iface string) (map[string]godbus.Variant, *godbus.Error) {
	all := p.unitProps(unitName(msg.Headers[godbus.FieldPath].Value().(godbus.ObjectPath)))
	if iface == "org.freedesktop.systemd1.Service" {
		return map[string]godbus.Variant{"MainPID": all["MainPID"]}, nil
	}
	delete(all, "MainPID")
	return all, nil
}

func (p *props) Get(msg godbus.Message, iface, prop string) (godbus.Variant, *godbus.Error) {
	all := p.unitProps(unitName(msg.Headers[godbus.FieldPath].Value().(godbus.ObjectPath)))
	v, ok := all[prop]
	if !ok {
		return godbus.Variant{}, &godbus.Error{Name: "org.freedesktop.DBus.Error.UnknownProperty", Body: []any{prop}}
	}
	return v, nil
}
