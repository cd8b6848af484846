package ssh_test

import (
	"bytes"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/kubeforge/kubeforge/bootstrap/host"
	kfssh "github.com/kubeforge/kubeforge/bootstrap/host/ssh"
)

func TestRun(t *testing.T) {
	ctx := testContext(t)
	s := startSSHD(t)
	h := s.Host(t, nil)

	r, err := h.Run(ctx, host.Cmd{Argv: []string{"sh", "-c", `echo out; echo err >&2; exit 3`}})
	if err != nil {
		t.Fatal(err)
	}
	if string(r.Stdout) != "out\n" || string(r.Stderr) != "err\n" || r.ExitCode != 3 {
		t.Fatalf("result = %+v", r)
	}

	// argv survives the remote shell exactly: spaces, quotes, $, globs, empty args.
	args := []string{"a b", "it's", `"dq"`, "$HOME", "*", "", "semi;colon", "new\nline"}
	r, err = h.Run(ctx, host.Cmd{Argv: append([]string{"printf", "[%s]"}, args...)})
	if err != nil {
		t.Fatal(err)
	}
	want := "[" + strings.Join(args, "][") + "]"
	if string(r.Stdout) != want {
		t.Fatalf("argv round trip:\n got %q\nwant %q", r.Stdout, want)
	}

	// stdin is streamed (1 MiB, more than any SSH window) and env is applied.
	in := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	r, err = h.Run(ctx, host.Cmd{Argv: []string{"sh", "-c", `wc -c; echo "$KF_A|$KF_B"`}, Stdin: in,
		Env: []string{"KF_A=1", "KF_B=two words"}})
	if err != nil || strings.Fields(string(r.Stdout))[0] != strconv.Itoa(len(in)) || !strings.HasSuffix(string(r.Stdout), "1|two words\n") {
		t.Fatalf("stdin/env: %q %v", r.Stdout, err)
	}

	r, err = h.Run(ctx, host.Cmd{Argv: []string{"sh", "-c", "kill -KILL $$"}})
	if err != nil || r.ExitCode != 137 {
		t.Fatalf("signal death: exit %d, %v", r.ExitCode, err)
	}

	r, err = h.Run(ctx, host.Cmd{Argv: []string{"kubeforge-no-such-binary"}})
	if err != nil || r.ExitCode != 127 {
		t.Fatalf("missing binary: %+v %v", r, err)
	}

	_, err = h.Run(ctx, host.Cmd{Argv: []string{"sleep", "30"}, Timeout: 300 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "node1: sleep 30: timed out after 300ms") {
		t.Fatalf("timeout: %v", err)
	}
	// The connection is still good after a timed-out command.
	if r, err := h.Run(ctx, host.Cmd{Argv: []string{"true"}}); err != nil || !r.OK() {
		t.Fatalf("after timeout: %+v %v", r, err)
	}
	if _, err := h.Run(ctx, host.Cmd{Argv: []string{"env"}, Env: []string{"NOEQUALS"}}); err == nil {
		t.Fatal("malformed env accepted")
	}
}

func TestFiles(t *testing.T) {
	ctx := testContext(t)
	s := startSSHD(t)
	h := s.Host(t, nil)
	dir := t.TempDir()
	p := filepath.Join(dir, "etc", "kubernetes", "pki", "ca.key")
	secret := []byte("-----BEGIN PRIVATE KEY-----\nnot really\n-----END PRIVATE KEY-----\n")

	if err := h.WriteFile(ctx, p, secret, host.WriteOptions{Mode: 0o600, Secret: true}); err != nil {
		t.Fatal(err)
	}
	got, err := h.ReadFile(ctx, p)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("read back %q %v", got, err)
	}
	// The file on disk (same machine) really is 0600 root:root.
	osfi, err := os.Stat(p)
	if err != nil || osfi.Mode() != 0o600 {
		t.Fatalf("on disk: %v %v", osfi.Mode(), err)
	}
	fi, err := h.Stat(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode != 0o600 || fi.Size != int64(len(secret)) || fi.UID != 0 || fi.GID != 0 || fi.Path != p ||
		fi.ModTime.Unix() != osfi.ModTime().Unix() {
		t.Fatalf("Stat = %+v", fi)
	}
	if dfi, err := h.Stat(ctx, filepath.Dir(p)); err != nil || !dfi.IsDir() {
		t.Fatalf("Stat dir = %+v %v", dfi, err)
	}

	// Binary content, empty content, owner by name, setgid mode.
	bin := make([]byte, 256)
	for i := range bin {
		bin[i] = byte(i)
	}
	q := filepath.Join(dir, "bin")
	if err := h.WriteFile(ctx, q, bin, host.WriteOptions{Mode: 0o2750, Owner: "nobody", Group: "nogroup"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := h.ReadFile(ctx, q); !bytes.Equal(got, bin) {
		t.Fatal("binary content changed in transit")
	}
	fi, _ = h.Stat(ctx, q)
	if fi.Mode != 0o750|fs.ModeSetgid || fi.UID != 65534 || fi.GID != 65534 {
		t.Fatalf("Stat = %+v (%v), want 2750 nobody:nogroup", fi, fi.Mode)
	}
	if err := h.WriteFile(ctx, q, nil, host.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if fi, _ := h.Stat(ctx, q); fi.Size != 0 || fi.Mode != 0o644 {
		t.Fatalf("empty rewrite: %+v", fi)
	}

	// Atomic overwrite: a new inode renamed over the old one, no temp file left.
	before, _ := os.Stat(p)
	if err := h.WriteFile(ctx, p, []byte("v2\n"), host.WriteOptions{Mode: 0o600}); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(p)
	if os.SameFile(before, after) {
		t.Fatal("overwrite reused the inode: not a rename")
	}
	if entries, _ := os.ReadDir(filepath.Dir(p)); len(entries) != 1 {
		t.Fatalf("temp files left: %v", entries)
	}

	// A failed write (unknown owner) leaves the old file and no temp file.
	err = h.WriteFile(ctx, p, []byte("v3\n"), host.WriteOptions{Owner: "kf-no-such-user"})
	if err == nil || !strings.Contains(err.Error(), "node1: write "+p) || !strings.Contains(err.Error(), "kf-no-such-user") {
		t.Fatalf("bad owner: %v", err)
	}
	if got, _ := os.ReadFile(p); string(got) != "v2\n" {
		t.Fatalf("failed write changed the file: %q", got)
	}
	if entries, _ := os.ReadDir(filepath.Dir(p)); len(entries) != 1 {
		t.Fatalf("failed write left temp files: %v", entries)
	}

	// Missing files.
	if _, err := h.ReadFile(ctx, filepath.Join(dir, "nope")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("ReadFile missing: %v", err)
	}
	if _, err := h.Stat(ctx, filepath.Join(dir, "nope")); !host.IsNotExist(err) {
		t.Fatalf("Stat missing: %v", err)
	}
	if _, err := h.ReadFile(ctx, dir); err == nil || host.IsNotExist(err) || !strings.Contains(err.Error(), "Is a directory") {
		t.Fatalf("ReadFile of a directory: %v", err)
	}

	// MkdirAll sets the exact mode; Remove is recursive and idempotent.
	m := filepath.Join(dir, "var", "lib", "etcd")
	if err := h.MkdirAll(ctx, m, 0o700); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(m); err != nil || fi.Mode().Perm() != 0o700 || !fi.IsDir() {
		t.Fatalf("MkdirAll: %v %v", fi, err)
	}
	if err := h.Remove(ctx, filepath.Join(dir, "etc")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "etc")); !os.IsNotExist(err) {
		t.Fatalf("Remove left the tree: %v", err)
	}
	if err := h.Remove(ctx, filepath.Join(dir, "etc")); err != nil {
		t.Fatalf("Remove of a missing path: %v", err)
	}
	if err := h.Remove(ctx, "/"); err == nil {
		t.Fatal("Remove(/) accepted")
	}
	if err := h.WriteFile(ctx, "relative", nil, host.WriteOptions{}); err == nil {
		t.Fatal("relative path accepted")
	}
}

// TestWriteFileIsAtomic checks, from a reader on the same machine, that a file being
// rewritten over SSH is always one complete version.
func TestWriteFileIsAtomic(t *testing.T) {
	ctx := testContext(t)
	s := startSSHD(t)
	h := s.Host(t, nil)
	p := filepath.Join(t.TempDir(), "admin.conf")
	versions := [][]byte{bytes.Repeat([]byte("A"), 64<<10), bytes.Repeat([]byte("B"), 32<<10)}
	if err := h.WriteFile(ctx, p, versions[0], host.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var bad, reads atomic.Int64
	var wg sync.WaitGroup
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
	for i := range 8 {
		if err := h.WriteFile(ctx, p, versions[i%2], host.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	waitGroup(t, &wg, opBudget, "the local reader to stop")
	if bad.Load() != 0 {
		t.Fatalf("%d of %d reads saw a partial file", bad.Load(), reads.Load())
	}
}

func TestUnknownHostKeyRefused(t *testing.T) {
	s := startSSHD(t)
	cfg := s.Config("node1", nil)
	cfg.KnownHostsPath = filepath.Join(t.TempDir(), "known_hosts") // empty: host unknown
	h, err := kfssh.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	_, err = h.Run(testContext(t), host.Cmd{Argv: []string{"true"}})
	if err == nil {
		t.Fatal("connected to a host whose key is unknown")
	}
	fp := fingerprint(s.HostKey) // "ssh-ed25519 SHA256:..."
	for _, want := range []string{"node1", "unknown", fp, cfg.KnownHostsPath} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if _, err := os.Stat(cfg.KnownHostsPath); !os.IsNotExist(err) {
		t.Fatalf("refusing must not write known_hosts: %v", err)
	}
}

func TestAcceptNewHostKey(t *testing.T) {
	ctx := testContext(t)
	s := startSSHD(t)
	cfg := s.Config("node1", nil)
	cfg.KnownHostsPath = filepath.Join(t.TempDir(), "sub", "known_hosts")
	cfg.AcceptNewHostKeys = true
	h, err := kfssh.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := host.MustRun(ctx, h, "true"); err != nil {
		t.Fatal(err)
	}
	h.Close()
	b, err := os.ReadFile(cfg.KnownHostsPath)
	if err != nil {
		t.Fatal(err)
	}
	wantLine := knownhosts.Line([]string{"[127.0.0.1]:" + strconv.Itoa(s.Port)}, s.HostKey) + "\n"
	if string(b) != wantLine {
		t.Fatalf("known_hosts = %q, want %q", b, wantLine)
	}
	if fi, _ := os.Stat(cfg.KnownHostsPath); fi.Mode().Perm() != 0o600 {
		t.Fatalf("known_hosts mode %v", fi.Mode())
	}

	// Under strict checking the recorded key is now enough.
	cfg.AcceptNewHostKeys = false
	h2, err := kfssh.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	if _, err := host.MustRun(ctx, h2, "true"); err != nil {
		t.Fatalf("second connection with the recorded key: %v", err)
	}
	if b2, _ := os.ReadFile(cfg.KnownHostsPath); !bytes.Equal(b, b2) {
		t.Fatalf("known_hosts changed on a known host: %q", b2)
	}
}

func TestChangedHostKeyRefused(t *testing.T) {
	s := startSSHD(t)
	// known_hosts holds a different key for this host:port, as after a reinstall or
	// with a man in the middle.
	other := writeKey(t, filepath.Join(t.TempDir(), "other"))
	kh := filepath.Join(t.TempDir(), "known_hosts")
	line := knownhosts.Line([]string{"[127.0.0.1]:" + strconv.Itoa(s.Port)}, other)
	os.WriteFile(kh, []byte(line+"\n"), 0o600)

	cfg := s.Config("node1", nil)
	cfg.KnownHostsPath = kh
	cfg.AcceptNewHostKeys = true // must not matter for a changed key
	h, err := kfssh.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	_, err = h.Run(testContext(t), host.Cmd{Argv: []string{"true"}})
	if err == nil {
		t.Fatal("connected despite a changed host key")
	}
	for _, want := range []string{"CHANGED", fingerprint(s.HostKey), fingerprint(other), kh + ":1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if b, _ := os.ReadFile(kh); string(b) != line+"\n" {
		t.Fatalf("known_hosts modified: %q", b)
	}
}

// TestKnownKeyOfOtherTypeIsNotAMismatch: known_hosts holds only the server's
// ed25519 key while the server also has an ECDSA key; the client must ask for
// ed25519 rather than report a changed key.
func TestKnownKeyOfOtherTypeIsNotAMismatch(t *testing.T) {
	dir := t.TempDir()
	for _, typ := range []string{"ecdsa"} {
		if out, err := runCmd("ssh-keygen", "-q", "-t", typ, "-N", "", "-f", filepath.Join(dir, typ)); err != nil {
			t.Skipf("ssh-keygen: %v %s", err, out)
		}
	}
	// Offered too (x/crypto prefers ECDSA over ed25519 when free to choose), so the
	// client would get it if the client let it choose.
	s := startSSHD(t, "HostKey "+filepath.Join(dir, "ecdsa"))
	h := s.Host(t, nil)
	if _, err := host.MustRun(testContext(t), h, "true"); err != nil {
		t.Fatal(err)
	}
}

func TestUnreachable(t *testing.T) {
	port := freePort(t) // nothing listens there any more
	h, err := kfssh.New(kfssh.Config{Name: "node9", Address: "127.0.0.1", Port: port,
		KeyFiles: []string{writeKeyFile(t)}, KnownHostsPath: filepath.Join(t.TempDir(), "kh"),
		ConnectTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	_, err = h.Run(testContext(t), host.Cmd{Argv: []string{"true"}})
	want := "node9: cannot reach 127.0.0.1:" + strconv.Itoa(port) + ": connect: connection refused"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
}

// TestHandshakeTimeout: a port that accepts TCP but never speaks SSH must fail
// within the connect timeout, naming the address.
func TestHandshakeTimeout(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close() // hold it open, silent
		}
	}()
	port := l.Addr().(*net.TCPAddr).Port
	h, err := kfssh.New(kfssh.Config{Name: "node9", Address: "127.0.0.1", Port: port,
		KeyFiles: []string{writeKeyFile(t)}, KnownHostsPath: filepath.Join(t.TempDir(), "kh"),
		ConnectTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	_, err = h.Run(testContext(t), host.Cmd{Argv: []string{"true"}})
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:"+strconv.Itoa(port)) || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("err = %v", err)
	}
}

func TestBadCredentials(t *testing.T) {
	s := startSSHD(t)
	cfg := s.Config("node1", nil)
	cfg.KeyFiles = []string{writeKeyFile(t)} // not authorized
	h, err := kfssh.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	_, err = h.Run(testContext(t), host.Cmd{Argv: []string{"true"}})
	if err == nil || !strings.Contains(err.Error(), "root@127.0.0.1:") || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Fatalf("err = %v", err)
	}

	if _, err := kfssh.New(kfssh.Config{Address: "x", KeyFiles: []string{"/nonexistent/key"}}); err == nil || !strings.Contains(err.Error(), "/nonexistent/key") {
		t.Fatalf("missing key file: %v", err)
	}
	enc := filepath.Join(t.TempDir(), "enc")
	if out, err := runCmd("ssh-keygen", "-q", "-t", "ed25519", "-N", "pass", "-f", enc); err != nil {
		t.Skipf("ssh-keygen: %v %s", err, out)
	}
	if _, err := kfssh.New(kfssh.Config{Address: "x", KeyFiles: []string{enc}}); err == nil || !strings.Contains(err.Error(), "passphrase") {
		t.Fatalf("encrypted key: %v", err)
	}
}

// TestConnectionReuse: many operations, one TCP connection; a dropped connection is
// replaced transparently on the next operation.
func TestConnectionReuse(t *testing.T) {
	ctx := testContext(t)
	s := startSSHD(t)
	var dials atomic.Int64
	h := s.Host(t, &dials)
	dir := t.TempDir()
	for i := range 4 {
		if _, err := host.MustRun(ctx, h, "true"); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, strconv.Itoa(i))
		if err := h.WriteFile(ctx, p, []byte("x"), host.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.Stat(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	// Concurrent use shares the connection too.
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := host.MustRun(ctx, h, "true")
			errs <- err
		}()
	}
	waitGroup(t, &wg, opBudget, "4 concurrent Runs")
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := dials.Load(); n != 1 {
		t.Fatalf("16 operations used %d TCP connections, want 1", n)
	}
	if n := strings.Count(s.Logs(), "Accepted publickey"); n != 1 {
		t.Fatalf("sshd logged %d logins, want 1", n)
	}

	// Kill the connection from the server side: the session's sshd process dies.
	// Depending on timing, the client sees the connection closed or half-dead (a
	// process left holding it that never answers again): the keepalives of
	// s.Config notice the latter, so either way the next operation reconnects.
	killSessionProcesses(t, s)
	err := within(t, time.Minute, "Run after sshd's session processes were killed", func() error {
		_, err := host.MustRun(ctx, h, "true")
		return err
	})
	if err != nil {
		t.Fatalf("after the connection dropped: %v", err)
	}
	if n := dials.Load(); n != 2 {
		t.Fatalf("dials = %d, want exactly one reconnect", n)
	}
}

// killSessionProcesses kills the per-connection sshd processes of s (the listener
// survives), which drops every client connection to it.
func killSessionProcesses(t *testing.T, s *testSSHD) {
	t.Helper()
	out, err := runCmd("pgrep", "-f", "sshd: root")
	if err != nil {
		t.Skipf("pgrep: %v %s", err, out)
	}
	// Only the children of our own sshd, identified by its config file.
	listener, _ := runCmd("pgrep", "-f", s.Dir+"/sshd_config")
	lpid := strings.TrimSpace(listener)
	killed := 0
	for _, pid := range strings.Fields(out) {
		ppid, _ := os.ReadFile("/proc/" + pid + "/stat")
		f := strings.Fields(string(ppid))
		if len(f) > 3 && f[3] == lpid {
			runCmd("kill", "-KILL", pid)
			killed++
		}
	}
	if killed == 0 {
		t.Fatalf("found no session process of sshd %s among %q", lpid, out)
	}
}

func BenchmarkRunReused(b *testing.B) {
	s := startSSHD(b)
	h := s.Host(b, nil)
	ctx := testContext(b)
	if _, err := host.MustRun(ctx, h, "true"); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := host.MustRun(ctx, h, "true"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRunNewConnection is what reuse saves: a TCP connect, key exchange and
// login for every command.
func BenchmarkRunNewConnection(b *testing.B) {
	s := startSSHD(b)
	ctx := testContext(b)
	cfg := s.Config("node1", nil)
	for b.Loop() {
		h, err := kfssh.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := host.MustRun(ctx, h, "true"); err != nil {
			b.Fatal(err)
		}
		h.Close()
	}
}

func writeKeyFile(t testing.TB) string {
	p := filepath.Join(t.TempDir(), "id")
	writeKey(t, p)
	return p
}

// TestAgentAuth logs in with a key held only by a real ssh-agent.
func TestAgentAuth(t *testing.T) {
	if _, err := runCmd("sh", "-c", "command -v ssh-agent && command -v ssh-add"); err != nil {
		t.Skip("ssh-agent/ssh-add not installed")
	}
	s := startSSHD(t)
	sock := filepath.Join(t.TempDir(), "agent.sock")
	startAgent(t, sock)
	if out, err := runCmd("env", "SSH_AUTH_SOCK="+sock, "ssh-add", s.ClientKey); err != nil {
		t.Fatalf("ssh-add: %v %s", err, out)
	}
	cfg := s.Config("node1", nil)
	cfg.KeyFiles = nil
	cfg.UseAgent = true
	cfg.AgentSocket = sock
	h, err := kfssh.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if _, err := host.MustRun(testContext(t), h, "true"); err != nil {
		t.Fatal(err)
	}

	// No key anywhere is refused up front.
	cfg.UseAgent = false
	if _, err := kfssh.New(cfg); err == nil || !strings.Contains(err.Error(), "no ssh credentials") {
		t.Fatalf("no credentials: %v", err)
	}
}

// TestSessionLimit: more concurrent commands than the server allows sessions wait
// for a free one instead of failing, and stay on one connection.
func TestSessionLimit(t *testing.T) {
	ctx := testContext(t)
	s := startSSHD(t, "MaxSessions 2")
	var dials atomic.Int64
	cfg := s.Config("node1", &dials)
	cfg.MaxSessions = 2
	h, err := kfssh.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := host.MustRun(ctx, h, "sleep", "0.2")
			errs <- err
		}()
	}
	waitGroup(t, &wg, opBudget, "6 Runs sharing 2 sessions")
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if dials.Load() != 1 {
		t.Fatalf("dials = %d, want 1", dials.Load())
	}

	// Past the server's limit (client configured too high) a refusal that lasts is
	// an error, and it leaves the connection and the sessions on it alone.
	cfg.MaxSessions = 8
	h2, err := kfssh.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	dir := t.TempDir()
	long := make(chan error, 2)
	for i := range 2 {
		marker := filepath.Join(dir, strconv.Itoa(i))
		go func() {
			_, err := host.MustRun(ctx, h2, "sh", "-c", "touch "+marker+"; sleep 10")
			long <- err
		}()
	}
	// Both long sessions hold their slots once their markers exist.
	pollUntil(t, opBudget, "both long-running commands to start", func() (bool, error) {
		_, e0 := os.Stat(filepath.Join(dir, "0"))
		_, e1 := os.Stat(filepath.Join(dir, "1"))
		return e0 == nil && e1 == nil, errors.Join(e0, e1)
	})
	_, err = host.MustRun(ctx, h2, "true")
	if err == nil || !strings.Contains(err.Error(), "node1: sshd refused a new session") {
		t.Fatalf("third session on a server allowing 2: %v", err)
	}
	for range 2 {
		if err := receive(t, long, opBudget, "result of a long-running command"); err != nil {
			t.Fatalf("a running session was hurt by the refusal: %v", err)
		}
	}
	if dials.Load() != 2 {
		t.Fatalf("dials = %d, want 2 (one per host)", dials.Load())
	}
}
