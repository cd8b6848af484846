package ssh_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/bootstrap/host/internal/unitcheck"
	kfssh "github.com/kubeforge/kubeforge/bootstrap/host/ssh"
	"github.com/kubeforge/kubeforge/bootstrap/lab"
)

// labHost connects to the lab's first host the way kubeforge would: the lab's
// client key, its known_hosts, strict host key checking.
func labHost(t *testing.T, tweak ...func(*kfssh.Config)) *kfssh.Host {
	dir := unitcheck.LabDir(t)
	st, err := lab.LoadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Hosts) == 0 {
		t.Fatalf("lab %s has no hosts", dir)
	}
	lh := st.Hosts[0]
	cfg := kfssh.Config{
		Name:           lh.Name,
		Address:        lh.Address,
		KeyFiles:       []string{filepath.Join(dir, "id_ed25519")},
		KnownHostsPath: filepath.Join(dir, "known_hosts"),
	}
	for _, f := range tweak {
		f(&cfg)
	}
	h, err := kfssh.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// TestLabUnitsOverSSH drives a real systemd (PID 1 of a lab machine) over D-Bus
// carried by the SSH connection.
func TestLabUnitsOverSSH(t *testing.T) {
	h := labHost(t)
	r, err := host.MustRun(testContext(t), h, "cat", "/proc/1/comm")
	if err != nil || strings.TrimSpace(string(r.Stdout)) != "systemd" {
		t.Fatalf("lab host PID 1 = %q, %v; want systemd", r.Stdout, err)
	}
	unitcheck.Lifecycle(t, h)
}

// TestLabUnitsOverPrivateSocket: with no bus daemon to talk to (here: a bus socket
// path that does not exist), units are managed through systemd's private socket,
// which has no Hello step and delivers job signals without a bus in between.
func TestLabUnitsOverPrivateSocket(t *testing.T) {
	h := labHost(t, func(c *kfssh.Config) { c.BusSocket = "/run/dbus/kubeforge-e2e-no-such-socket" })
	unitcheck.Lifecycle(t, h)
}

// TestLabUnitsOverStdioBridge: against an sshd that forbids stream-local forwarding
// (a second one started on the lab host for this test), units are managed through
// systemd-stdio-bridge running in an SSH session.
func TestLabUnitsOverStdioBridge(t *testing.T) {
	ctx := testContext(t)
	h := labHost(t)
	pidFile := "/run/kubeforge-e2e-sshd.pid"
	if _, err := host.MustRun(ctx, h, "/usr/sbin/sshd", "-p", "2222", "-o", "AllowStreamLocalForwarding=no",
		"-o", "PidFile="+pidFile); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		host.MustRun(ctx, h, "sh", "-c", `kill "$(cat "$1")"; rm -f "$1"`, "sh", pidFile)
	})
	var h2 *kfssh.Host
	// sshd daemonizes before it listens.
	pollUntil(t, 30*time.Second, "the second sshd on port 2222 to accept a login", func() (bool, error) {
		h2 = labHost(t, func(c *kfssh.Config) {
			c.Port = 2222
			c.KnownHostsPath = filepath.Join(t.TempDir(), "known_hosts")
			c.AcceptNewHostKeys = true
		})
		_, err := host.MustRun(ctx, h2, "true")
		return err == nil, err
	})
	// The D-Bus connection must be carried by a bridge process, not forwarding.
	if err := h2.Units().DaemonReload(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := host.MustRun(ctx, h2, "sh", "-c", "ps -eo comm | grep -c '^systemd-stdio-b'")
	if err != nil || strings.TrimSpace(string(r.Stdout)) == "0" {
		t.Fatalf("no systemd-stdio-bridge running for our D-Bus connection: %q %v", r.Stdout, err)
	}
	unitcheck.Lifecycle(t, h2)
}

// TestLabFilesOverSSH: file operations on a real remote host, including owner by a
// name that exists only there.
func TestLabFilesOverSSH(t *testing.T) {
	ctx := testContext(t)
	h := labHost(t)
	dir := "/tmp/kubeforge-e2e-files"
	t.Cleanup(func() { h.Remove(ctx, dir) })
	p := dir + "/pki/ca.key"
	if err := h.WriteFile(ctx, p, []byte("k\n"), host.WriteOptions{Mode: 0o600, Owner: "nobody", Group: "nogroup", Secret: true}); err != nil {
		t.Fatal(err)
	}
	fi, err := h.Stat(ctx, p)
	if err != nil || fi.Mode != 0o600 || fi.UID != 65534 || fi.Size != 2 {
		t.Fatalf("Stat = %+v, %v", fi, err)
	}
	if b, err := h.ReadFile(ctx, p); err != nil || string(b) != "k\n" {
		t.Fatalf("ReadFile = %q, %v", b, err)
	}
	if err := h.Remove(ctx, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Stat(ctx, p); !host.IsNotExist(err) {
		t.Fatalf("after Remove: %v", err)
	}
}

// TestLabNonRootSudo: a non-root login runs everything through `sudo -n`, including
// the D-Bus connection (systemd-stdio-bridge as root); without password-less sudo
// the error says so.
func TestLabNonRootSudo(t *testing.T) {
	ctx := testContext(t)
	root := labHost(t)
	dir := unitcheck.LabDir(t)
	pub, err := os.ReadFile(filepath.Join(dir, "id_ed25519.pub"))
	if err != nil {
		t.Fatal(err)
	}
	const user, sudoers = "kfe2e", "/etc/sudoers.d/kubeforge-e2e"
	t.Cleanup(func() {
		root.Remove(ctx, sudoers)
		// -f: the user's sshd session may still be winding down.
		if _, err := host.MustRun(ctx, root, "userdel", "-f", "-r", user); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	// Left over by an interrupted run? Then reuse it.
	if r, _ := root.Run(ctx, host.Cmd{Argv: []string{"id", user}, ReadOnly: true}); !r.OK() {
		if _, err := host.MustRun(ctx, root, "useradd", "-m", "-s", "/bin/sh", user); err != nil {
			t.Fatal(err)
		}
	}
	if err := root.MkdirAll(ctx, "/home/"+user+"/.ssh", 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := host.MustRun(ctx, root, "chown", user+":"+user, "/home/"+user+"/.ssh"); err != nil {
		t.Fatal(err)
	}
	if err := root.WriteFile(ctx, "/home/"+user+"/.ssh/authorized_keys", pub, host.WriteOptions{Mode: 0o600, Owner: user, Group: user}); err != nil {
		t.Fatal(err)
	}
	if err := root.WriteFile(ctx, sudoers, []byte(user+" ALL=(ALL) NOPASSWD: ALL\n"), host.WriteOptions{Mode: 0o440}); err != nil {
		t.Fatal(err)
	}

	h := labHost(t, func(c *kfssh.Config) { c.User = user })
	r, err := host.MustRun(ctx, h, "id", "-u")
	if err != nil || strings.TrimSpace(string(r.Stdout)) != "0" {
		t.Fatalf("id -u through sudo = %q, %v", r.Stdout, err)
	}
	p := "/etc/kubeforge-e2e-sudo/secret"
	t.Cleanup(func() { root.Remove(ctx, "/etc/kubeforge-e2e-sudo") })
	if err := h.WriteFile(ctx, p, []byte("s"), host.WriteOptions{Mode: 0o600, Secret: true}); err != nil {
		t.Fatal(err)
	}
	if fi, err := root.Stat(ctx, p); err != nil || fi.UID != 0 || fi.Mode != 0o600 {
		t.Fatalf("file written through sudo: %+v %v", fi, err)
	}
	if b, err := h.ReadFile(ctx, p); err != nil || string(b) != "s" {
		t.Fatalf("read through sudo: %q %v", b, err)
	}
	unitcheck.Lifecycle(t, h)

	// Take password-less sudo away: the error must say what is missing.
	if err := root.Remove(ctx, sudoers); err != nil {
		t.Fatal(err)
	}
	_, err = h.Run(ctx, host.Cmd{Argv: []string{"true"}})
	if err == nil || !strings.Contains(err.Error(), "sudo -n needs a password for user "+user) {
		t.Fatalf("want the sudo password error, got %v", err)
	}
}
