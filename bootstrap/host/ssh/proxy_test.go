package ssh_test

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh/knownhosts"
)

// blackholeProxy is a TCP proxy between a client and a loopback sshd that can
// make the peer go silent: once black-holed it stops forwarding in both
// directions but closes nothing, which is what a client sees of a host that hung,
// lost power or fell off the network (the connection stays "established" and
// nothing ever answers). Connections accepted while black-holed are held silent
// too. Restore forwards new connections again; the silenced ones are closed then,
// as a peer that came back would reset them.
type blackholeProxy struct {
	Port   int
	target string
	l      net.Listener

	mu      sync.Mutex
	silent  bool
	restore chan struct{} // closed by Restore; parked connections end then
	conns   map[net.Conn]struct{}
	closed  bool
}

func startProxy(t testing.TB, targetPort int) *blackholeProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &blackholeProxy{
		Port:    l.Addr().(*net.TCPAddr).Port,
		target:  net.JoinHostPort("127.0.0.1", strconv.Itoa(targetPort)),
		l:       l,
		restore: make(chan struct{}),
		conns:   map[net.Conn]struct{}{},
	}
	go p.serve()
	t.Cleanup(p.close)
	return p
}

// KnownHosts writes a known_hosts file for the proxy's address holding s's key.
func (p *blackholeProxy) KnownHosts(t testing.TB, s *testSSHD) string {
	t.Helper()
	addr := knownhosts.Normalize(net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Port)))
	path := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(path, []byte(knownhosts.Line([]string{addr}, s.HostKey)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Blackhole silences every connection, present and future.
func (p *blackholeProxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.silent = true
}

// Restore forwards again: silenced connections are closed, new ones forwarded.
func (p *blackholeProxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.silent {
		p.silent = false
		close(p.restore)
		p.restore = make(chan struct{})
	}
}

// parked reports whether traffic must stop, and the channel that ends the silence.
func (p *blackholeProxy) parked() (bool, chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.silent, p.restore
}

func (p *blackholeProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *blackholeProxy) close() {
	p.mu.Lock()
	p.closed = true
	p.l.Close()
	for c := range p.conns {
		c.Close()
	}
	if p.silent {
		close(p.restore)
		p.silent = false
	}
	p.mu.Unlock()
}

func (p *blackholeProxy) serve() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			return
		}
		go p.handle(c)
	}
}

func (p *blackholeProxy) handle(client net.Conn) {
	if silent, restore := p.parked(); silent {
		<-restore // accepted, but nothing answers
		client.Close()
		return
	}
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	if !p.track(server) {
		client.Close()
		return
	}
	go p.pump(server, client)
	p.pump(client, server)
}

// pump copies src to dst until either ends, or parks without forwarding (and
// without reading further) while the proxy is black-holed.
func (p *blackholeProxy) pump(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if silent, restore := p.parked(); silent {
			<-restore
			return
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil { // EOF or closed: the other pump ends when we close both
			return
		}
	}
}
