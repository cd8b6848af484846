package ssh

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	xssh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// knownHostsMu serialises appends to known_hosts files within this process: several
// hosts may be connected in parallel with accept-new, and interleaved appends would
// corrupt lines.
var knownHostsMu sync.Mutex

// Fingerprint is how OpenSSH shows a key: "ssh-ed25519 SHA256:...".
func Fingerprint(k xssh.PublicKey) string {
	return k.Type() + " " + xssh.FingerprintSHA256(k)
}

// hostKeyChecker verifies host keys against one known_hosts file, the way OpenSSH
// does with StrictHostKeyChecking=yes, or =accept-new when acceptNew is set.
type hostKeyChecker struct {
	hostName  string // kubeforge's name for the host, for messages
	path      string
	acceptNew bool
}

// load parses the known_hosts file; a missing file is an empty one.
func (c *hostKeyChecker) load() (xssh.HostKeyCallback, error) {
	if _, err := os.Stat(c.path); errors.Is(err, os.ErrNotExist) {
		return func(string, net.Addr, xssh.PublicKey) error { return &knownhosts.KeyError{} }, nil
	}
	cb, err := knownhosts.New(c.path)
	if err != nil {
		return nil, fmt.Errorf("known_hosts %s: %w", c.path, err)
	}
	return cb, nil
}

// check is the ssh.HostKeyCallback.
func (c *hostKeyChecker) check(hostport string, remote net.Addr, key xssh.PublicKey) error {
	knownHostsMu.Lock()
	defer knownHostsMu.Unlock()
	cb, err := c.load()
	if err != nil {
		return err
	}
	err = cb(hostport, remote, key)
	var ke *knownhosts.KeyError
	if err == nil || !errors.As(err, &ke) {
		return err
	}
	if len(ke.Want) > 0 {
		known := make([]string, len(ke.Want))
		for i, w := range ke.Want {
			known[i] = fmt.Sprintf("%s (%s:%d)", Fingerprint(w.Key), w.Filename, w.Line)
		}
		return fmt.Errorf("host key for %s (%s) CHANGED: it presented %s but known_hosts has %s; "+
			"this may be a man-in-the-middle attack; if the host was reinstalled, remove the old line and connect again",
			c.hostName, hostport, Fingerprint(key), strings.Join(known, ", "))
	}
	if !c.acceptNew {
		return fmt.Errorf("host key for %s (%s) is unknown: %s is not in %s; verify the fingerprint and add it "+
			"(or enable accepting new host keys)", c.hostName, hostport, Fingerprint(key), c.path)
	}
	return c.appendKey(hostport, key)
}

func (c *hostKeyChecker) appendKey(hostport string, key xssh.PublicKey) error {
	if err := os.MkdirAll(filepath.Dir(c.path), 0o700); err != nil {
		return fmt.Errorf("record host key of %s: %w", c.hostName, err)
	}
	f, err := os.OpenFile(c.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("record host key of %s: %w", c.hostName, err)
	}
	line := knownhosts.Line([]string{knownhosts.Normalize(hostport)}, key) + "\n"
	// A file whose last line lacks "\n" would otherwise get our line glued to it.
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		if b, err := os.ReadFile(c.path); err == nil && b[len(b)-1] != '\n' {
			line = "\n" + line
		}
	}
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return fmt.Errorf("record host key of %s in %s: %w", c.hostName, c.path, err)
	}
	return f.Close()
}

// algorithmsFor returns the host key algorithms to offer for hostport: those of the
// keys known_hosts already holds for it. Without this the server may pick, say, its
// ECDSA key while known_hosts only has its ed25519 one, and a perfectly known host
// would look like a changed one. Nil (no preference) for unknown hosts.
func (c *hostKeyChecker) algorithmsFor(hostport string) []string {
	knownHostsMu.Lock()
	cb, err := c.load()
	knownHostsMu.Unlock()
	if err != nil {
		return nil
	}
	// A key no host has makes the callback list every known key for this address.
	err = cb(hostport, &net.TCPAddr{IP: net.IPv4zero}, probeKey{})
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) || len(ke.Want) == 0 {
		return nil
	}
	var algos []string
	seen := map[string]bool{}
	add := func(a string) {
		if !seen[a] {
			seen[a] = true
			algos = append(algos, a)
		}
	}
	for _, w := range ke.Want {
		switch t := w.Key.Type(); t {
		case xssh.KeyAlgoRSA:
			// An RSA key is negotiated under its SHA-2 signature names.
			add(xssh.KeyAlgoRSASHA512)
			add(xssh.KeyAlgoRSASHA256)
			add(xssh.KeyAlgoRSA)
		default:
			add(t)
		}
	}
	return algos
}

// probeKey is a public key of a type no known_hosts line can hold.
type probeKey struct{}

func (probeKey) Type() string                         { return "kubeforge-probe" }
func (probeKey) Marshal() []byte                      { return []byte("kubeforge-probe") }
func (probeKey) Verify([]byte, *xssh.Signature) error { return errors.New("probe key") }
