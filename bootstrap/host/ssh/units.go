package ssh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	sd "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
	xssh "golang.org/x/crypto/ssh"

	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/bootstrap/host/sdbus"
)

// systemdPrivateSocket is systemd's own D-Bus socket, there even when no dbus daemon
// runs (minimal container images); root only, and without the bus's Hello step.
const systemdPrivateSocket = "/run/systemd/private"

// dialSystemd gives sdbus a go-systemd connection to the remote systemd, carried by
// the SSH connection. go-systemd dials twice (one connection for calls, one for job
// signals); both ride the same SSH connection.
//
// Routes, in order:
//  1. root: the system bus socket forwarded over direct-streamlocal. The remote end
//     of the socket is sshd running as root, so EXTERNAL auth as uid 0 is true.
//  2. systemd-stdio-bridge (as root through sudo for other users) in an SSH session,
//     its stdin/stdout being the bus connection. This is the route for non-root
//     users, whose own uid the bus would not let manage units, and for servers that
//     forbid stream-local forwarding (AllowStreamLocalForwarding no).
//  3. root: systemd's private socket, when there is no bus daemon at all.
func (h *Host) dialSystemd(ctx context.Context) (sdbus.Systemd, error) {
	var errs []string
	try := func(route string, dial func() (*godbus.Conn, error)) (sdbus.Systemd, bool) {
		c, err := sd.NewConnection(dial)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", route, err))
			return nil, false
		}
		return c, true
	}
	if !h.sudo {
		if c, ok := try("bus socket "+h.cfg.BusSocket+" via ssh stream-local forwarding", func() (*godbus.Conn, error) {
			return h.dialStreamLocal(ctx, h.cfg.BusSocket, true)
		}); ok {
			return c, nil
		}
	}
	if c, ok := try("systemd-stdio-bridge", func() (*godbus.Conn, error) {
		return h.dialBridge(ctx)
	}); ok {
		return c, nil
	}
	if !h.sudo {
		if c, ok := try("systemd private socket", func() (*godbus.Conn, error) {
			return h.dialStreamLocal(ctx, systemdPrivateSocket, false)
		}); ok {
			return c, nil
		}
	}
	return nil, errors.New(strings.Join(errs, "; "))
}

func (h *Host) dialStreamLocal(ctx context.Context, socket string, hello bool) (*godbus.Conn, error) {
	l, err := h.conn(ctx)
	if err != nil {
		return nil, err
	}
	// DialContext stops waiting for the channel open when ctx ends (and closes the
	// channel should it open later).
	nc, err := l.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, l.explain(err)
	}
	conn, err := busHandshake(ctx, explainedStream{nc, l}, hello)
	return conn, l.explain(err)
}

// explainedStream is a D-Bus connection's byte stream over l: once l has been
// dropped (dead peer), its errors, which godbus passes on to every pending and
// later call, say why instead of a bare EOF.
type explainedStream struct {
	io.ReadWriteCloser
	l *link
}

func (s explainedStream) Read(p []byte) (int, error) {
	n, err := s.ReadWriteCloser.Read(p)
	if err != nil {
		err = s.l.explain(err)
	}
	return n, err
}

func (s explainedStream) Write(p []byte) (int, error) {
	n, err := s.ReadWriteCloser.Write(p)
	if err != nil {
		err = s.l.explain(err)
	}
	return n, err
}

// sessionConn is an SSH session's stdin/stdout as one byte stream.
type sessionConn struct {
	io.Reader
	io.WriteCloser
	s *xssh.Session
}

func (c *sessionConn) Close() error {
	c.WriteCloser.Close()
	return c.s.Close()
}

func (h *Host) dialBridge(ctx context.Context) (*godbus.Conn, error) {
	s, l, err := h.session(ctx)
	if err != nil {
		return nil, err
	}
	in, err := s.StdinPipe()
	if err != nil {
		s.Close()
		return nil, err
	}
	out, err := s.StdoutPipe()
	if err != nil {
		s.Close()
		return nil, err
	}
	stderr := &limitedWriter{n: 4096}
	s.Stderr = stderr
	argv := []string{"systemd-stdio-bridge", "--bus-path=unix:path=" + h.cfg.BusSocket}
	_, err = await(ctx, func() (struct{}, error) { return struct{}{}, s.Start(h.commandLine(host.Cmd{Argv: argv})) }, nil)
	if err != nil {
		s.Close()
		return nil, l.explain(err)
	}
	conn, err := busHandshake(ctx, explainedStream{&sessionConn{Reader: out, WriteCloser: in, s: s}, l}, true)
	if err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return nil, fmt.Errorf("%w (%s)", l.explain(err), msg)
		}
		return nil, l.explain(err)
	}
	return conn, nil
}

// busHandshake authenticates a raw stream to a D-Bus server. godbus must not get a
// context here: it closes a connection when that context ends, and this one lives as
// long as the Host. ctx bounds the handshake alone, by closing the stream should it
// end first.
func busHandshake(ctx context.Context, rwc io.ReadWriteCloser, hello bool) (conn *godbus.Conn, err error) {
	stop := context.AfterFunc(ctx, func() { rwc.Close() })
	defer func() {
		if !stop() { // ctx ended: whatever the handshake says, the stream is closed
			if conn != nil {
				conn.Close()
			}
			conn, err = nil, fmt.Errorf("D-Bus handshake: %w", ctx.Err())
		}
	}()
	conn, err = godbus.NewConn(rwc)
	if err != nil {
		rwc.Close()
		return nil, err
	}
	// EXTERNAL as uid 0 is true for both routes (sshd as root, or the bridge as root);
	// a bridge that does not check credentials takes ANONYMOUS instead.
	if err := conn.Auth([]godbus.Auth{godbus.AuthExternal("0"), godbus.AuthAnonymous()}); err != nil {
		conn.Close()
		return nil, fmt.Errorf("D-Bus auth: %w", err)
	}
	if hello {
		if err := conn.Hello(); err != nil {
			conn.Close()
			return nil, fmt.Errorf("D-Bus hello: %w", err)
		}
	}
	return conn, nil
}

// limitedWriter keeps the first n bytes (enough for an error message); it is written
// by the session's copier goroutine and read by us.
type limitedWriter struct {
	mu sync.Mutex
	b  strings.Builder
	n  int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n > 0 {
		k := min(len(p), l.n)
		l.b.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}

func (l *limitedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
