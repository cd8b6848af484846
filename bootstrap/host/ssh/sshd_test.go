package ssh_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	xssh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	kfssh "github.com/kubeforge/kubeforge/bootstrap/host/ssh"
)

const sshdPath = "/usr/sbin/sshd"

// testSSHD is a real OpenSSH server on 127.0.0.1 with its own host key and
// authorized_keys, run in the foreground by the test.
type testSSHD struct {
	Port       int
	Dir        string
	HostKey    xssh.PublicKey
	ClientKey  string // private key file authorized on the server
	KnownHosts string // a known_hosts file holding HostKey for this server
	log        *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func writeKey(t testing.TB, path string) xssh.PublicKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := xssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	spub, err := xssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return spub
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startSSHD starts sshd with extra config lines (which override the defaults);
// it stops with the test.
func startSSHD(t testing.TB, extra ...string) *testSSHD {
	t.Helper()
	if _, err := os.Stat(sshdPath); err != nil {
		t.Skipf("no OpenSSH server at %s (apt-get install openssh-server): %v", sshdPath, err)
	}
	if os.Geteuid() != 0 {
		t.Skip("sshd tests run sshd as root (it must switch to the login user)")
	}
	// sshd refuses to start without its privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := &testSSHD{Dir: dir, log: &syncBuffer{}}
	s.HostKey = writeKey(t, filepath.Join(dir, "host_key"))
	s.ClientKey = filepath.Join(dir, "client_key")
	clientPub := writeKey(t, s.ClientKey)
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), xssh.MarshalAuthorizedKey(clientPub), 0o600); err != nil {
		t.Fatal(err)
	}
	s.Port = freePort(t)
	conf := []string{
		"Port " + strconv.Itoa(s.Port),
		"ListenAddress 127.0.0.1",
		"HostKey " + filepath.Join(dir, "host_key"),
		"AuthorizedKeysFile " + filepath.Join(dir, "authorized_keys"),
		"PidFile none",
		"UsePAM no",
		"StrictModes no",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PubkeyAuthentication yes",
		"PermitRootLogin prohibit-password",
		"LogLevel VERBOSE",
		"MaxSessions 64",
	}
	// sshd takes the first value it reads for a keyword, so extras go first.
	conf = append(append([]string(nil), extra...), conf...)
	cfgPath := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfgPath, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sshdPath, "-D", "-e", "-f", cfgPath)
	cmd.Stdout, cmd.Stderr = s.log, s.log
	// Session processes inherit the log pipe and may outlive the listener; Wait
	// must not wait for them.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("sshd log:\n%s", s.log.String())
		}
	})
	pollUntil(t, 30*time.Second, "sshd on port "+strconv.Itoa(s.Port)+" to accept connections", func() (bool, error) {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)), time.Second)
		if err != nil {
			return false, fmt.Errorf("%w\nsshd log:\n%s", err, s.log.String())
		}
		c.Close()
		return true, nil
	})
	s.KnownHosts = filepath.Join(dir, "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)))}, s.HostKey)
	if err := os.WriteFile(s.KnownHosts, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

// Config returns a Config for this server with verified host key, counting TCP
// connections in dials.
func (s *testSSHD) Config(name string, dials *atomic.Int64) kfssh.Config {
	return kfssh.Config{
		Name:           name,
		Address:        "127.0.0.1",
		Port:           s.Port,
		KeyFiles:       []string{s.ClientKey},
		KnownHostsPath: s.KnownHosts,
		ConnectTimeout: 10 * time.Second,
		// A connection left half-dead (TestConnectionReuse kills sshd's session
		// processes) is noticed in seconds, not the default 45s; generous enough
		// that a loaded machine does not make a live sshd look dead.
		KeepaliveInterval: 500 * time.Millisecond,
		KeepaliveCountMax: 6,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if dials != nil {
				dials.Add(1)
			}
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
}

func (s *testSSHD) Host(t testing.TB, dials *atomic.Int64) *kfssh.Host {
	t.Helper()
	h, err := kfssh.New(s.Config("node1", dials))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func (s *testSSHD) Logs() string { return s.log.String() }

func fingerprint(k xssh.PublicKey) string {
	return fmt.Sprintf("%s %s", k.Type(), xssh.FingerprintSHA256(k))
}

// runCmd runs a local helper tool (ssh-keygen, pgrep, kill) and returns its
// output; a tool that hangs is killed after a minute.
func runCmd(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if ctx.Err() != nil {
		return string(out), fmt.Errorf("%s did not finish within a minute: %w", name, err)
	}
	return string(out), err
}

// startAgent runs ssh-agent in the foreground on sock until the test ends.
func startAgent(t testing.TB, sock string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("ssh-agent", "-D", "-a", sock)
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	pollUntil(t, 30*time.Second, "ssh-agent to listen on "+sock, func() (bool, error) {
		c, err := net.DialTimeout("unix", sock, time.Second)
		if err != nil {
			return false, err
		}
		c.Close()
		return true, nil
	})
	return cmd
}
