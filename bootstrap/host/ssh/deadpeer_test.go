package ssh_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/bootstrap/host/internal/busfake"
	kfssh "github.com/kubeforge/kubeforge/bootstrap/host/ssh"
)

// deadPeerBound is how long a test lets one operation on a silent peer take before
// calling it hung. The keepalive settings below notice a dead peer in about a
// second and the redial gives up after ConnectTimeout (2s); the rest is slack for
// a loaded machine.
const deadPeerBound = 30 * time.Second

// silentPeerHost is a Host for s reached through a proxy the test can silence,
// with keepalives small enough for a test.
func silentPeerHost(t *testing.T, s *testSSHD, dials *atomic.Int64, edit func(*kfssh.Config)) (*kfssh.Host, *blackholeProxy) {
	t.Helper()
	p := startProxy(t, s.Port)
	cfg := s.Config("node1", dials)
	cfg.Port = p.Port
	cfg.KnownHostsPath = p.KnownHosts(t, s)
	cfg.ConnectTimeout = 2 * time.Second
	cfg.KeepaliveInterval = 200 * time.Millisecond
	cfg.KeepaliveCountMax = 5
	if edit != nil {
		edit(&cfg)
	}
	h, err := kfssh.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h, p
}

// failsNamingHost asserts that op, run against a silent peer, returns an error
// naming the host (and saying want, when given) within deadPeerBound.
func failsNamingHost(t *testing.T, what, want string, op func() error) {
	t.Helper()
	err := within(t, deadPeerBound, what+" on a connection whose peer went silent", op)
	if err == nil {
		t.Fatalf("%s on a silent peer succeeded", what)
	}
	if !strings.HasPrefix(err.Error(), "node1: ") {
		t.Fatalf("%s on a silent peer: error does not name the host: %v", what, err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("%s on a silent peer: error does not say %q: %v", what, want, err)
	}
	t.Logf("%s on a silent peer: %v", what, err)
}

// TestDeadPeerIsDetected (issue 11): a connection whose peer stops answering
// without closing it (a hung or unplugged host) must not hang the next operation.
// The caller gives no deadline here (context.Background), so only keepalives can
// notice: each operation fails naming the host, and once the host answers again
// the next operation redials and succeeds.
func TestDeadPeerIsDetected(t *testing.T) {
	s := startSSHD(t)
	var dials atomic.Int64
	h, p := silentPeerHost(t, s, &dials, nil)
	ctx := context.Background() // deliberately unbounded: within() bounds the test
	dir := t.TempDir()
	if _, err := host.MustRun(testContext(t), h, "true"); err != nil {
		t.Fatal(err)
	}

	p.Blackhole()
	failsNamingHost(t, "Run", "did not answer keepalives", func() error {
		_, err := h.Run(ctx, host.Cmd{Argv: []string{"true"}})
		return err
	})
	failsNamingHost(t, "WriteFile", "", func() error {
		return h.WriteFile(ctx, dir+"/f", []byte("x"), host.WriteOptions{})
	})
	failsNamingHost(t, "Stat", "", func() error {
		_, err := h.Stat(ctx, dir)
		return err
	})

	p.Restore()
	err := within(t, deadPeerBound, "Run after the peer came back", func() error {
		_, err := host.MustRun(ctx, h, "true")
		return err
	})
	if err != nil {
		t.Fatalf("after the peer came back: %v", err)
	}
	if n := dials.Load(); n < 2 {
		t.Fatalf("dials = %d: the dead connection was not replaced", n)
	}
}

// TestDeadPeerRunningCommand: a command already running when the peer goes
// silent does not wait for its exit status forever.
func TestDeadPeerRunningCommand(t *testing.T) {
	s := startSSHD(t)
	h, p := silentPeerHost(t, s, nil, nil)
	pidFile := filepath.Join(t.TempDir(), "pid")
	done := make(chan error, 1)
	go func() {
		_, err := h.Run(context.Background(), host.Cmd{Argv: []string{"sh", "-c", `echo $$ > "$1.tmp"; mv "$1.tmp" "$1"; exec sleep 60`, "sh", pidFile}})
		done <- err
	}()
	var pid string
	pollUntil(t, 30*time.Second, "the long command to start", func() (bool, error) {
		b, err := os.ReadFile(pidFile)
		pid = strings.TrimSpace(string(b))
		return err == nil && pid != "", err
	})
	t.Cleanup(func() { runCmd("kill", "-KILL", pid) })
	p.Blackhole()
	err := receive(t, done, deadPeerBound, "result of a command whose peer went silent")
	if err == nil || !strings.HasPrefix(err.Error(), "node1: ") || !strings.Contains(err.Error(), "did not answer keepalives") {
		t.Fatalf("running command on a silent peer: %v", err)
	}
	t.Logf("running command on a silent peer: %v", err)
}

// TestContextBoundsChannelOpen: with keepalives off, the caller's context still
// bounds opening a session on a silent connection (it used to be honoured only
// around a running command).
func TestContextBoundsChannelOpen(t *testing.T) {
	s := startSSHD(t)
	h, p := silentPeerHost(t, s, nil, func(c *kfssh.Config) { c.KeepaliveInterval = -1 })
	if _, err := host.MustRun(testContext(t), h, "true"); err != nil {
		t.Fatal(err)
	}
	p.Blackhole()
	err := within(t, deadPeerBound, "Run with a 500ms context on a silent peer", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		_, err := h.Run(ctx, host.Cmd{Argv: []string{"true"}})
		return err
	})
	if err == nil || !strings.HasPrefix(err.Error(), "node1: ") || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Fatalf("Run past its context on a silent peer: %v", err)
	}
	t.Logf("Run past its context on a silent peer: %v", err)
}

// TestDeadPeerUnits: a unit operation whose D-Bus connection rides a connection
// that went silent fails naming the host, and works again (new SSH and D-Bus
// connections) once the host answers.
func TestDeadPeerUnits(t *testing.T) {
	sock := busfake.StartBus(t)
	unitDir := t.TempDir()
	busfake.Serve(t, sock, unitDir)
	s := startSSHD(t)
	var dials atomic.Int64
	h, p := silentPeerHost(t, s, &dials, func(c *kfssh.Config) {
		c.BusSocket = sock
		c.UnitDir = unitDir
	})
	u := h.Units()
	if _, err := u.Status(testContext(t), "etcd.service"); err != nil {
		t.Fatal(err)
	}
	p.Blackhole()
	failsNamingHost(t, "Units().Status", "did not answer keepalives", func() error {
		_, err := u.Status(context.Background(), "etcd.service")
		return err
	})
	p.Restore()
	err := within(t, deadPeerBound, "Units().Status after the peer came back", func() error {
		_, err := u.Status(context.Background(), "etcd.service")
		return err
	})
	if err != nil {
		t.Fatalf("after the peer came back: %v", err)
	}
	if n := dials.Load(); n < 2 {
		t.Fatalf("dials = %d: the dead connection was not replaced", n)
	}
}
