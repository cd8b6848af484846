package ssh_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/bootstrap/host/internal/busfake"
	kfssh "github.com/kubeforge/kubeforge/bootstrap/host/ssh"
)

// unitsOverSSH drives the whole unit life cycle through an SSH host whose D-Bus
// traffic reaches a real dbus-daemon (with a fake systemd on it) by way of the SSH
// connection, and returns which process the bus saw as the caller.
func unitsOverSSH(t *testing.T, sshdExtra ...string) []string {
	ctx := testContext(t)
	sock := busfake.StartBus(t)
	unitDir := t.TempDir()
	sd := busfake.Serve(t, sock, unitDir)
	s := startSSHD(t, sshdExtra...)
	var dials atomic.Int64
	cfg := s.Config("node1", &dials)
	cfg.BusSocket = sock
	cfg.UnitDir = unitDir
	h, err := kfssh.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	u := h.Units()

	unit := []byte("[Unit]\nDescription=etcd\n[Service]\nExecStart=/usr/local/bin/etcd\n[Install]\nWantedBy=multi-user.target\n")
	changed, err := u.WriteUnit(ctx, "etcd.service", unit)
	if err != nil || !changed {
		t.Fatalf("WriteUnit: %v %v", changed, err)
	}
	if b, _ := os.ReadFile(filepath.Join(unitDir, "etcd.service")); string(b) != string(unit) {
		t.Fatalf("unit file on disk = %q", b)
	}
	if sd.Reloads() != 1 {
		t.Fatalf("reloads = %d after a new unit, want 1", sd.Reloads())
	}
	if changed, err := u.WriteUnit(ctx, "etcd.service", unit); err != nil || changed || sd.Reloads() != 1 {
		t.Fatalf("identical WriteUnit: changed=%v err=%v reloads=%d", changed, err, sd.Reloads())
	}

	if err := u.Enable(ctx, "etcd.service"); err != nil {
		t.Fatal(err)
	}
	if err := u.Start(ctx, "etcd.service"); err != nil {
		t.Fatal(err)
	}
	st, err := u.Status(ctx, "etcd.service")
	want := host.UnitStatus{Name: "etcd.service", LoadState: "loaded", ActiveState: "active", SubState: "running", Enabled: "enabled", MainPID: 4242}
	if err != nil || st != want {
		t.Fatalf("Status = %+v, %v\nwant %+v", st, err, want)
	}
	if err := u.Restart(ctx, "etcd.service"); err != nil {
		t.Fatal(err)
	}

	// A unit that fails: the job result comes back as an error naming it.
	if _, err := u.WriteUnit(ctx, "broken.service", []byte("[Service]\nExecStart=/bin/false\n")); err != nil {
		t.Fatal(err)
	}
	err = u.Start(ctx, "broken.service")
	if err == nil || !strings.Contains(err.Error(), `node1: start broken.service: job ended with result "failed"`) {
		t.Fatalf("failing start: %v", err)
	}
	// Without [Install] it cannot be enabled.
	if err := u.Enable(ctx, "broken.service"); err == nil || !strings.Contains(err.Error(), "[Install]") {
		t.Fatalf("enable without [Install]: %v", err)
	}
	// A unit never written is unknown to systemd.
	if err := u.Start(ctx, "ghost.service"); err == nil || !strings.Contains(err.Error(), "ghost.service not found") {
		t.Fatalf("start of unknown unit: %v", err)
	}
	if st, err := u.Status(ctx, "ghost.service"); err != nil || st.LoadState != "not-found" {
		t.Fatalf("status of unknown unit: %+v %v", st, err)
	}

	if err := u.Stop(ctx, "etcd.service"); err != nil {
		t.Fatal(err)
	}
	if err := u.Disable(ctx, "etcd.service"); err != nil {
		t.Fatal(err)
	}
	st, _ = u.Status(ctx, "etcd.service")
	if st.ActiveState != "inactive" || st.Enabled != "disabled" || st.MainPID != 0 {
		t.Fatalf("after stop+disable: %+v", st)
	}
	reloads := sd.Reloads()
	if err := u.RemoveUnit(ctx, "etcd.service"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(unitDir, "etcd.service")); !os.IsNotExist(err) || sd.Reloads() != reloads+1 {
		t.Fatalf("RemoveUnit: file %v, reloads %d -> %d", err, reloads, sd.Reloads())
	}
	if st, _ := u.Status(ctx, "etcd.service"); st.LoadState != "not-found" {
		t.Fatalf("after RemoveUnit: %+v", st)
	}

	// Files, commands and both D-Bus connections shared one SSH connection.
	if n := dials.Load(); n != 1 {
		t.Fatalf("TCP connections = %d, want 1", n)
	}
	return sd.Peers()
}

// TestUnitsOverStreamLocal: as root, the bus socket is forwarded over the SSH
// connection; the bus daemon sees sshd as its peer.
func TestUnitsOverStreamLocal(t *testing.T) {
	peers := unitsOverSSH(t)
	if !slices.Equal(peers, []string{"sshd"}) {
		t.Fatalf("bus peers = %v, want only sshd (stream-local forwarding)", peers)
	}
}

// TestUnitsOverStdioBridge: a server that forbids stream-local forwarding still
// works, through systemd-stdio-bridge run in an SSH session.
func TestUnitsOverStdioBridge(t *testing.T) {
	if _, err := os.Stat("/usr/bin/systemd-stdio-bridge"); err != nil {
		t.Skip("systemd-stdio-bridge not installed")
	}
	peers := unitsOverSSH(t, "AllowStreamLocalForwarding no")
	if len(peers) != 1 || !strings.HasPrefix(peers[0], "systemd-stdio") {
		t.Fatalf("bus peers = %v, want the stdio bridge", peers)
	}
}
