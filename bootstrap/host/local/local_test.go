package local_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/bootstrap/host/internal/sdfake"
	"github.com/kubeforge/kubeforge/bootstrap/host/local"
	"github.com/kubeforge/kubeforge/bootstrap/host/sdbus"
)

func newHost(t *testing.T) (*local.Host, *sdfake.Systemd, string) {
	t.Helper()
	fake := sdfake.New()
	unitDir := t.TempDir()
	h := local.New(local.Options{Name: "node1", UnitDir: unitDir,
		DialSystemd: func(context.Context) (sdbus.Systemd, error) { return fake, nil }})
	t.Cleanup(func() { h.Close() })
	return h, fake, unitDir
}

func TestRun(t *testing.T) {
	ctx := context.Background()
	h, _, _ := newHost(t)

	r, err := h.Run(ctx, host.Cmd{Argv: []string{"sh", "-c", `echo out; echo err >&2; exit 3`}})
	if err != nil {
		t.Fatal(err)
	}
	if string(r.Stdout) != "out\n" || string(r.Stderr) != "err\n" || r.ExitCode != 3 || r.OK() {
		t.Fatalf("result = %+v", r)
	}
	if e := r.Err("node1", host.Cmd{Argv: []string{"x"}}); e == nil || !strings.Contains(e.Error(), "exited 3: err") {
		t.Fatalf("Result.Err = %v", e)
	}

	// Arguments are passed as they are, no shell in between.
	r, err = h.Run(ctx, host.Cmd{Argv: []string{"printf", "%s|", "a b", "'q'", "$HOME", ""}})
	if err != nil || string(r.Stdout) != "a b|'q'|$HOME||" {
		t.Fatalf("argv passing: %q %v", r.Stdout, err)
	}

	r, err = h.Run(ctx, host.Cmd{Argv: []string{"sh", "-c", `tr a-z A-Z; echo "$KF_X"`}, Stdin: []byte("hello\n"), Env: []string{"KF_X=42"}})
	if err != nil || string(r.Stdout) != "HELLO\n42\n" {
		t.Fatalf("stdin/env: %q %v", r.Stdout, err)
	}

	_, err = h.Run(ctx, host.Cmd{Argv: []string{"/nonexistent/kubeforge-nope"}})
	if err == nil || !strings.Contains(err.Error(), "node1") || !strings.Contains(err.Error(), "/nonexistent/kubeforge-nope") {
		t.Fatalf("missing binary: %v", err)
	}

	r, err = h.Run(ctx, host.Cmd{Argv: []string{"sh", "-c", "kill -TERM $$"}})
	if err != nil || r.ExitCode != 128+int(syscall.SIGTERM) {
		t.Fatalf("signal death: exit %d, %v", r.ExitCode, err)
	}

	if _, err := h.Run(ctx, host.Cmd{}); err == nil {
		t.Fatal("empty argv accepted")
	}
}

func TestRunTimeoutKillsProcessGroup(t *testing.T) {
	h, _, _ := newHost(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	// The background sleep is a grandchild: killing only the direct child would
	// leave it running (and holding stdout open).
	_, err := h.Run(context.Background(), host.Cmd{
		Argv:    []string{"sh", "-c", "sleep 30 & echo $! > " + pidFile + "; sleep 30"},
		Timeout: 300 * time.Millisecond,
	})
	if err == nil || !strings.Contains(err.Error(), "timed out after 300ms") || !strings.Contains(err.Error(), "sleep 30") {
		t.Fatalf("want a timeout error naming the command, got %v", err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid := strings.TrimSpace(string(b))
	// SIGKILL is already delivered; wait (bounded) for the kernel to finish it off.
	for i := 0; ; i++ {
		st, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil || strings.Contains(string(st), ") Z ") {
			break
		}
		if i == 500 {
			t.Fatalf("grandchild %s still alive after the timeout: %s", pid, st)
		}
		time.Sleep(10 * time.Millisecond)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.Run(ctx, host.Cmd{Argv: []string{"true"}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled ctx: %v", err)
	}
}

func TestWriteFile(t *testing.T) {
	ctx := context.Background()
	h, _, _ := newHost(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "a", "b", "ca.key")

	if err := h.WriteFile(ctx, p, []byte("secret\n"), host.WriteOptions{Mode: 0o600, Secret: true}); err != nil {
		t.Fatal(err)
	}
	got, err := h.ReadFile(ctx, p)
	if err != nil || string(got) != "secret\n" {
		t.Fatalf("read back %q %v", got, err)
	}
	fi, err := h.Stat(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode != 0o600 || fi.Size != 7 || fi.UID != 0 || fi.GID != 0 || fi.IsDir() || fi.Path != p {
		t.Fatalf("stat = %+v", fi)
	}
	if pfi, _ := h.Stat(ctx, filepath.Dir(p)); !pfi.IsDir() || pfi.Mode.Perm() != 0o755 {
		t.Fatalf("parent dir = %+v, want a 0755 dir", pfi)
	}

	// Mode must not depend on the umask; default mode is 0644; owner by name.
	old := syscall.Umask(0o077)
	err = h.WriteFile(ctx, filepath.Join(dir, "pub"), []byte("x"), host.WriteOptions{Owner: "nobody", Group: "nogroup"})
	syscall.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ = h.Stat(ctx, filepath.Join(dir, "pub"))
	if fi.Mode != 0o644 || fi.UID != 65534 || fi.GID != 65534 {
		t.Fatalf("stat = %+v, want 0644 nobody:nogroup", fi)
	}
	// Numeric ids, and setgid survives the chown.
	if err := h.WriteFile(ctx, filepath.Join(dir, "num"), []byte("x"), host.WriteOptions{Mode: 0o2750, Owner: "123", Group: "456"}); err != nil {
		t.Fatal(err)
	}
	fi, _ = h.Stat(ctx, filepath.Join(dir, "num"))
	if fi.Mode != 0o750|fs.ModeSetgid || fi.UID != 123 || fi.GID != 456 {
		t.Fatalf("stat = %+v (mode %v)", fi, fi.Mode)
	}

	// Bad input leaves nothing behind.
	before := listDir(t, dir)
	for _, tc := range []struct {
		path string
		opts host.WriteOptions
		want string
	}{
		{filepath.Join(dir, "x"), host.WriteOptions{Owner: "no-such-user-kf"}, "no-such-user-kf"},
		{filepath.Join(dir, "x"), host.WriteOptions{Owner: "a;rm -rf /"}, "invalid owner"},
		{"relative/x", host.WriteOptions{}, "not absolute"},
		{"/", host.WriteOptions{}, "root directory"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			err := h.WriteFile(ctx, tc.path, []byte("x"), tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "node1") {
				t.Errorf("WriteFile(%q, %+v) = %v, want error with %q", tc.path, tc.opts, err, tc.want)
			}
		})
	}
	if after := listDir(t, dir); after != before {
		t.Fatalf("failed writes left files:\nbefore %s\nafter  %s", before, after)
	}
}

func listDir(t *testing.T, dir string) string {
	var b strings.Builder
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		b.WriteString(p + " ")
		return nil
	})
	return b.String()
}

// TestWriteFileIsAtomic overwrites a file over and over while readers check that
// they only ever see one complete version, never a truncated or mixed one.
func TestWriteFileIsAtomic(t *testing.T) {
	ctx := context.Background()
	h, _, _ := newHost(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "kubeconfig")
	versions := [][]byte{bytes.Repeat([]byte("A"), 64<<10), bytes.Repeat([]byte("B"), 32<<10)}
	if err := h.WriteFile(ctx, p, versions[0], host.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var bad atomic.Int64
	var reads atomic.Int64
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				b, err := os.ReadFile(p)
				reads.Add(1)
				if err != nil || !(bytes.Equal(b, versions[0]) || bytes.Equal(b, versions[1])) {
					bad.Add(1)
				}
			}
		}()
	}
	for i := range 60 {
		if err := h.WriteFile(ctx, p, versions[i%2], host.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d of %d reads saw a partial or missing file", bad.Load(), reads.Load())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temp files left behind: %v", entries)
	}
}

func TestFilesMissingRemoveMkdir(t *testing.T) {
	ctx := context.Background()
	h, _, _ := newHost(t)
	dir := t.TempDir()

	if _, err := h.ReadFile(ctx, filepath.Join(dir, "nope")); !host.IsNotExist(err) || !strings.Contains(err.Error(), "node1") {
		t.Fatalf("ReadFile missing: %v", err)
	}
	if _, err := h.Stat(ctx, filepath.Join(dir, "nope")); !host.IsNotExist(err) {
		t.Fatalf("Stat missing: %v", err)
	}

	pki := filepath.Join(dir, "etc", "kubernetes", "pki")
	if err := h.MkdirAll(ctx, pki, 0o700); err != nil {
		t.Fatal(err)
	}
	fi, err := h.Stat(ctx, pki)
	if err != nil || !fi.IsDir() || fi.Mode.Perm() != 0o700 {
		t.Fatalf("mkdir: %+v %v", fi, err)
	}
	// Idempotent, and it corrects a wrong mode.
	os.Chmod(pki, 0o755)
	if err := h.MkdirAll(ctx, pki, 0o700); err != nil {
		t.Fatal(err)
	}
	if fi, _ := h.Stat(ctx, pki); fi.Mode.Perm() != 0o700 {
		t.Fatalf("mode after second MkdirAll = %v", fi.Mode)
	}
	if err := h.WriteFile(ctx, filepath.Join(pki, "etcd", "ca.crt"), []byte("c"), host.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := h.MkdirAll(ctx, filepath.Join(pki, "etcd", "ca.crt"), 0o755); err == nil {
		t.Fatal("MkdirAll over a file succeeded")
	}

	top := filepath.Join(dir, "etc")
	if err := h.Remove(ctx, top); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(top); !os.IsNotExist(err) {
		t.Fatalf("Remove left %s: %v", top, err)
	}
	if err := h.Remove(ctx, top); err != nil {
		t.Fatalf("removing a missing path: %v", err)
	}
	for _, p := range []string{"/", "", "etc", "/etc/../"} {
		if err := h.Remove(ctx, p); err == nil {
			t.Errorf("Remove(%q) accepted", p)
		}
	}
}

// TestUnitsUseUnitDirAndSystemd checks the local host's wiring: unit files land in
// the configured directory and systemd is asked through the D-Bus connection.
func TestUnitsUseUnitDirAndSystemd(t *testing.T) {
	ctx := context.Background()
	h, fake, unitDir := newHost(t)
	u := h.Units()
	changed, err := u.WriteUnit(ctx, "etcd.service", []byte("[Service]\nExecStart=/bin/etcd\n[Install]\nWantedBy=multi-user.target\n"))
	if err != nil || !changed {
		t.Fatal(changed, err)
	}
	if _, err := os.Stat(filepath.Join(unitDir, "etcd.service")); err != nil {
		t.Fatal(err)
	}
	fake.JobResult["etcd.service"] = "done"
	if err := u.Enable(ctx, "etcd.service"); err != nil {
		t.Fatal(err)
	}
	if err := u.Start(ctx, "etcd.service"); err != nil {
		t.Fatal(err)
	}
	want := "Reload,Enable etcd.service,Reload,Start etcd.service"
	if got := strings.Join(fake.Calls(), ","); got != want {
		t.Fatalf("systemd calls = %s, want %s", got, want)
	}
}

func TestDefaultDialFailsClearlyWithoutSystemd(t *testing.T) {
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		t.Skip("this machine runs systemd")
	}
	h := local.New(local.Options{Name: "node1", UnitDir: t.TempDir()})
	defer h.Close()
	err := h.Units().DaemonReload(context.Background())
	if err == nil || !strings.Contains(err.Error(), "node1: connect to systemd over D-Bus") {
		t.Fatalf("want a clear D-Bus connect error, got %v", err)
	}
}
