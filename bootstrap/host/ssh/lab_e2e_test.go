package ssh_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/bootstrap/host/internal/unitcheck"
	kfssh "github.com/kubeforge/kubeforge/bootstrap/host/ssh"
	"github.com/kubeforge/kubeforge/bootstrap/lab"
)

// labHost connects to the lab's first host the way kubeforge would: the lab's
// client key, its known_hosts, strict host key checking.
func labHost(t *testing.T) *kfssh.Host {
	dir := unitcheck.LabDir(t)
	st, err := lab.LoadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Hosts) == 0 {
		t.Fatalf("lab %s has no hosts", dir)
	}
	lh := st.Hosts[0]
	h, err := kfssh.New(kfssh.Config{
		Name:           lh.Name,
		Address:        lh.Address,
		KeyFiles:       []string{filepath.Join(dir, "id_ed25519")},
		KnownHostsPath: filepath.Join(dir, "known_hosts"),
	})
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
	r, err := host.MustRun(context.Background(), h, "cat", "/proc/1/comm")
	if err != nil || strings.TrimSpace(string(r.Stdout)) != "systemd" {
		t.Fatalf("lab host PID 1 = %q, %v; want systemd", r.Stdout, err)
	}
	unitcheck.Lifecycle(t, h)
}

// TestLabFilesOverSSH: file operations on a real remote host, including owner by a
// name that exists only there.
func TestLabFilesOverSSH(t *testing.T) {
	ctx := context.Background()
	h := labHost(t)
	dir := "/tmp/kubeforge-e2e-files"
	t.Cleanup(func() { h.Remove(context.Background(), dir) })
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
