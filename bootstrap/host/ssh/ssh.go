// Package ssh implements host.Host for a remote machine over golang.org/x/crypto/ssh.
//
// One SSH connection carries everything: commands and file transfers are sessions
// multiplexed on it, and systemd is reached through the same connection by
// forwarding the remote D-Bus socket (direct-streamlocal, what `ssh -L local:remote`
// with a socket path does), so units are managed with the very same D-Bus code as on
// the local host. Host keys are always verified against known_hosts.
//
// # Dead peers
//
// A TCP connection whose peer stops answering without closing it (the host hung,
// lost power, fell off the network, or its sshd is wedged) looks healthy to the
// client: writes succeed into the kernel's buffers and reads just wait. x/crypto
// has no timeouts of its own, so an operation on such a connection used to wait
// forever (issue 11), and kubeforge driving a host would hang with it. Two things
// prevent that:
//
//   - Keepalives, as OpenSSH's ServerAliveInterval/ServerAliveCountMax do: a
//     keepalive@openssh.com request every KeepaliveInterval; when one stays
//     unanswered for KeepaliveCountMax intervals the peer is taken for dead and the
//     connection closed. Closing it is what unblocks everything waiting on it
//     (channel opens, requests, a command's exit status, the D-Bus connections
//     carried by it), each failing with an error naming the host; the next
//     operation dials afresh. Keepalives cover callers that give no deadline, and
//     a sshd that answers them processes channel requests too (same loop), so one
//     mechanism decides that a connection is dead.
//   - The caller's context bounds every step that waits for the peer, opening a
//     channel and starting a command included, not only the running command. A
//     context that ends does not declare the connection dead (other operations may
//     be using it fine): the step stops waiting and anything it would have opened
//     is closed when it arrives.
package ssh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	xssh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/bootstrap/host/sdbus"
)

// Config says how to reach and log into one host.
type Config struct {
	// Name is the host's name in messages; "" means Address.
	Name string
	// Address is the hostname or IP to connect to.
	Address string
	// Port defaults to 22.
	Port int
	// User defaults to root. Any other user runs everything through `sudo -n`, so
	// it needs password-less sudo.
	User string
	// KeyFiles are private key files to offer (unencrypted; passphrase-protected
	// keys belong in ssh-agent).
	KeyFiles []string
	// UseAgent offers the keys of the ssh-agent at AgentSocket.
	UseAgent bool
	// AgentSocket defaults to $SSH_AUTH_SOCK.
	AgentSocket string
	// KnownHostsPath defaults to ~/.ssh/known_hosts.
	KnownHostsPath string
	// AcceptNewHostKeys records the key of a host not yet in known_hosts instead of
	// refusing it (OpenSSH's StrictHostKeyChecking=accept-new). A changed key is
	// refused regardless.
	AcceptNewHostKeys bool
	// ConnectTimeout bounds TCP connect plus SSH handshake; defaults to 15s.
	ConnectTimeout time.Duration
	// KeepaliveInterval is how often a keepalive@openssh.com request probes the
	// connection (OpenSSH's ServerAliveInterval); defaults to 15s. Negative turns
	// keepalives off, leaving only the caller's context to bound an operation.
	KeepaliveInterval time.Duration
	// KeepaliveCountMax is how many intervals a probe may go unanswered before the
	// peer is taken for dead and the connection dropped (ServerAliveCountMax);
	// defaults to 3.
	KeepaliveCountMax int
	// UnitDir is where unit files are written; "" means /etc/systemd/system.
	UnitDir string
	// BusSocket is the remote system bus socket; "" means
	// /run/dbus/system_bus_socket. systemd's private socket is tried after it.
	BusSocket string
	// MaxSessions caps the commands running at once on the connection; defaults to
	// 8, which with the two sessions a systemd-stdio-bridge D-Bus connection may hold
	// stays within OpenSSH's default MaxSessions of 10. Further commands wait.
	MaxSessions int
	// DialContext replaces the TCP dial (tests count connections with it).
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Host is a remote machine reached over SSH.
type Host struct {
	cfg      Config
	name     string
	hostport string
	sudo     bool
	keys     *hostKeyChecker
	auth     []xssh.AuthMethod
	agentC   io.Closer

	sessions chan struct{} // semaphore, Config.MaxSessions slots

	mu     sync.Mutex
	client *link
	closed bool

	units *sdbus.Units
}

var _ host.Host = (*Host)(nil)

// New validates cfg and prepares authentication. It does not connect: the first
// operation does, so building Hosts for a whole inventory is cheap.
func New(cfg Config) (*Host, error) {
	if cfg.Address == "" {
		return nil, fmt.Errorf("ssh host %q: no address", cfg.Name)
	}
	if cfg.Name == "" {
		cfg.Name = cfg.Address
	}
	if cfg.Port == 0 {
		cfg.Port = 22
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("%s: invalid ssh port %d", cfg.Name, cfg.Port)
	}
	if cfg.User == "" {
		cfg.User = "root"
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 15 * time.Second
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = 8
	}
	if cfg.KeepaliveInterval == 0 {
		cfg.KeepaliveInterval = 15 * time.Second
	}
	if cfg.KeepaliveCountMax <= 0 {
		cfg.KeepaliveCountMax = 3
	}
	if cfg.BusSocket == "" {
		cfg.BusSocket = "/run/dbus/system_bus_socket"
	}
	if cfg.KnownHostsPath == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, fmt.Errorf("%s: no known_hosts path given and no home directory: %w", cfg.Name, err)
		}
		cfg.KnownHostsPath = filepath.Join(home, ".ssh", "known_hosts")
	}
	h := &Host{
		cfg:      cfg,
		name:     cfg.Name,
		hostport: net.JoinHostPort(cfg.Address, strconv.Itoa(cfg.Port)),
		sudo:     cfg.User != "root",
		keys:     &hostKeyChecker{hostName: cfg.Name, path: cfg.KnownHostsPath, acceptNew: cfg.AcceptNewHostKeys},
		sessions: make(chan struct{}, cfg.MaxSessions),
	}
	var signers []xssh.Signer
	for _, f := range cfg.KeyFiles {
		s, err := loadKey(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.Name, err)
		}
		signers = append(signers, s)
	}
	if len(signers) > 0 {
		h.auth = append(h.auth, xssh.PublicKeys(signers...))
	}
	if cfg.UseAgent {
		sock := cfg.AgentSocket
		if sock == "" {
			sock = os.Getenv("SSH_AUTH_SOCK")
		}
		if sock == "" {
			return nil, fmt.Errorf("%s: ssh-agent requested but SSH_AUTH_SOCK is not set", cfg.Name)
		}
		conn, err := net.Dial("unix", sock)
		if err != nil {
			return nil, fmt.Errorf("%s: ssh-agent at %s: %w", cfg.Name, sock, err)
		}
		h.agentC = conn
		h.auth = append(h.auth, xssh.PublicKeysCallback(agent.NewClient(conn).Signers))
	}
	if len(h.auth) == 0 {
		return nil, fmt.Errorf("%s: no ssh credentials: give key files or use ssh-agent", cfg.Name)
	}
	h.units = sdbus.New(h, cfg.UnitDir, h.dialSystemd)
	return h, nil
}

func loadKey(path string) (xssh.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ssh key: %w", err)
	}
	s, err := xssh.ParsePrivateKey(b)
	var pp *xssh.PassphraseMissingError
	if errors.As(err, &pp) {
		return nil, fmt.Errorf("ssh key %s is passphrase-protected: load it into ssh-agent and use the agent", path)
	}
	if err != nil {
		return nil, fmt.Errorf("ssh key %s: %w", path, err)
	}
	return s, nil
}

// Name is the host's name.
func (h *Host) Name() string { return h.name }

// Units manages the remote systemd over D-Bus through the SSH connection.
func (h *Host) Units() host.Units { return h.units }

// Close closes the D-Bus and SSH connections.
func (h *Host) Close() error {
	h.units.Close()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	var err error
	if h.client != nil {
		err = h.client.Close()
		h.client = nil
	}
	if h.agentC != nil {
		h.agentC.Close()
		h.agentC = nil
	}
	return err
}

// link is one SSH connection and what we know about its end.
type link struct {
	*xssh.Client
	gone chan struct{} // closed once the connection has ended

	mu  sync.Mutex
	why error // why we dropped it, when we did
}

// dropped records why we close l (the first reason wins) and closes it.
func (l *link) dropped(why error) {
	l.mu.Lock()
	if l.why == nil {
		l.why = why
	}
	l.mu.Unlock()
	l.Close()
}

// explain replaces err, an error from an operation on l, by why l was dropped if
// we dropped it: x/crypto then only says "EOF" or "unexpected packet", which does
// not tell the reader that the host stopped answering. err stays in the chain.
func (l *link) explain(err error) error {
	l.mu.Lock()
	why := l.why
	l.mu.Unlock()
	if err == nil || why == nil {
		return err
	}
	return &droppedError{why: why, err: err}
}

type droppedError struct{ why, err error }

func (e *droppedError) Error() string   { return "connection dropped: " + e.why.Error() }
func (e *droppedError) Unwrap() []error { return []error{e.why, e.err} }

// conn returns the shared connection, dialling it if there is none yet.
func (h *Host) conn(ctx context.Context) (*link, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, fmt.Errorf("%s: host already closed", h.name)
	}
	if h.client != nil {
		return h.client, nil
	}
	c, err := h.dial(ctx)
	if err != nil {
		return nil, err
	}
	l := &link{Client: c, gone: make(chan struct{})}
	h.client = l
	// Notice a dropped connection (host rebooted, network blip, dead peer) as soon
	// as it happens, so the next operation dials afresh instead of failing once first.
	go func() {
		_ = c.Wait()
		close(l.gone)
		h.mu.Lock()
		if h.client == l {
			h.client = nil
		}
		h.mu.Unlock()
	}()
	if h.cfg.KeepaliveInterval > 0 {
		go h.keepalive(l)
	}
	return l, nil
}

// drop forgets l (if it is still the current connection) so the next conn() redials.
func (h *Host) drop(l *link, why error) {
	h.mu.Lock()
	if h.client == l {
		h.client = nil
	}
	h.mu.Unlock()
	l.dropped(why)
}

// keepalive probes l every KeepaliveInterval and drops it once a probe has gone
// unanswered for KeepaliveCountMax intervals. One probe is in flight at a time:
// x/crypto serialises global requests, and a second probe would only queue
// behind an unanswered first.
func (h *Host) keepalive(l *link) {
	interval, countMax := h.cfg.KeepaliveInterval, h.cfg.KeepaliveCountMax
	tick := time.NewTicker(interval)
	defer tick.Stop()
	answered := make(chan struct{}, 1)
	pending, unanswered := false, 0
	for {
		select {
		case <-l.gone:
			return
		case <-answered:
			pending, unanswered = false, 0
		case <-tick.C:
			if !pending {
				pending = true
				go func() {
					// Any reply counts: OpenSSH answers this one with a failure.
					if _, _, err := l.SendRequest("keepalive@openssh.com", true, nil); err == nil {
						answered <- struct{}{}
					}
				}()
				continue
			}
			if unanswered++; unanswered >= countMax {
				h.drop(l, fmt.Errorf("%s did not answer keepalives for %s", h.hostport, time.Duration(countMax)*interval))
				return
			}
		}
	}
}

// await waits for op, a step that waits for the peer and cannot be cancelled, no
// longer than ctx allows. When ctx ends first, op is left to finish in the
// background and undo is given what it produced (a session, say) to close. A
// peer that never answers is the keepalive's business: dropping the connection
// ends op.
func await[T any](ctx context.Context, op func() (T, error), undo func(T)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := op()
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.err == nil && undo != nil {
				undo(r.v)
			}
		}()
		var zero T
		return zero, ctx.Err()
	}
}

func (h *Host) dial(ctx context.Context) (*xssh.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.ConnectTimeout)
	defer cancel()
	dialer := h.cfg.DialContext
	if dialer == nil {
		d := &net.Dialer{}
		dialer = d.DialContext
	}
	tcp, err := dialer(ctx, "tcp", h.hostport)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("%s: cannot reach %s: no answer within %s", h.name, h.hostport, h.cfg.ConnectTimeout)
		}
		return nil, fmt.Errorf("%s: cannot reach %s: %w", h.name, h.hostport, unwrapOp(err))
	}
	// The handshake has no context of its own; a deadline on the socket bounds it,
	// and closing the socket when ctx ends covers cancellation.
	deadline, _ := ctx.Deadline()
	tcp.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { tcp.Close() })
	cfg := &xssh.ClientConfig{
		User:              h.cfg.User,
		Auth:              h.auth,
		HostKeyCallback:   h.keys.check,
		HostKeyAlgorithms: h.keys.algorithmsFor(h.hostport),
		Timeout:           h.cfg.ConnectTimeout,
	}
	sc, chans, reqs, err := xssh.NewClientConn(tcp, h.hostport, cfg)
	if !stop() {
		if err == nil {
			sc.Close()
		}
		tcp.Close()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("%s: ssh handshake with %s timed out after %s", h.name, h.hostport, h.cfg.ConnectTimeout)
		}
		return nil, fmt.Errorf("%s: ssh handshake with %s: %w", h.name, h.hostport, ctx.Err())
	}
	if err != nil {
		tcp.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, fmt.Errorf("%s: ssh handshake with %s timed out after %s", h.name, h.hostport, h.cfg.ConnectTimeout)
		}
		return nil, fmt.Errorf("%s: ssh to %s@%s: %w", h.name, h.cfg.User, h.hostport, err)
	}
	tcp.SetDeadline(time.Time{})
	return xssh.NewClient(sc, chans, reqs), nil
}

// unwrapOp strips net.OpError's "dial tcp 127.0.0.1:1:" prefix, which would repeat
// the address the message already names.
func unwrapOp(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}

// session opens a session on the shared connection, redialling once if the
// connection turns out to be dead. It returns the connection the session is on.
func (h *Host) session(ctx context.Context) (*xssh.Session, *link, error) {
	l, err := h.conn(ctx)
	if err != nil {
		return nil, nil, err
	}
	s, err := h.newSession(ctx, l)
	if err == nil {
		return s, l, nil
	}
	// A refusal (sshd's MaxSessions, say) comes over a working connection; dropping
	// it would kill every other session on it. Neither does a caller's deadline say
	// anything about the connection.
	var oce *xssh.OpenChannelError
	if errors.As(err, &oce) {
		return nil, nil, fmt.Errorf("%s: sshd refused a new session: %w", h.name, err)
	}
	if ctx.Err() != nil {
		return nil, nil, fmt.Errorf("%s: open ssh session: %w", h.name, l.explain(err))
	}
	err = l.explain(err)
	h.drop(l, err)
	l, err2 := h.conn(ctx)
	if err2 != nil {
		return nil, nil, fmt.Errorf("%s: connection lost (%v) and reconnecting failed: %w", h.name, err, err2)
	}
	s, err = h.newSession(ctx, l)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: open ssh session: %w", h.name, l.explain(err))
	}
	return s, l, nil
}

// sessionRetryBudget bounds how long a refused session open is retried.
const sessionRetryBudget = 3 * time.Second

// newSession opens a session, retrying for a while when sshd refuses it: a session
// we just closed is only released by sshd once it has processed our close, so a
// client that stays within MaxSessions can still be refused for a moment.
func (h *Host) newSession(ctx context.Context, l *link) (*xssh.Session, error) {
	deadline := time.Now().Add(sessionRetryBudget)
	delay := 10 * time.Millisecond
	for {
		s, err := await(ctx, l.NewSession, func(s *xssh.Session) { s.Close() })
		var oce *xssh.OpenChannelError
		if err == nil || !errors.As(err, &oce) || time.Now().After(deadline) {
			return s, err
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, err
		}
		delay = min(2*delay, 200*time.Millisecond)
	}
}

// commandLine turns argv into the one string an SSH exec request carries, adding
// sudo for non-root users and env for Cmd.Env (sshd's AcceptEnv usually refuses
// environment requests, so they cannot be sent as such). Env values thus show in the
// remote process list, like argv: secrets go through stdin.
func (h *Host) commandLine(c host.Cmd) string {
	var argv []string
	if h.sudo {
		argv = append(argv, "sudo", "-n", "--")
	}
	if len(c.Env) > 0 {
		argv = append(argv, "env")
		argv = append(argv, c.Env...)
	}
	argv = append(argv, c.Argv...)
	return host.QuoteArgv(argv)
}

// Run executes argv on the host. The exit status comes from the SSH exit-status
// message; a command killed by a signal reports 128+signal like a shell does.
func (h *Host) Run(ctx context.Context, c host.Cmd) (host.Result, error) {
	var res host.Result
	if len(c.Argv) == 0 || c.Argv[0] == "" {
		return res, fmt.Errorf("%s: run: empty command", h.name)
	}
	for _, e := range c.Env {
		if !strings.Contains(e, "=") || strings.HasPrefix(e, "=") {
			return res, fmt.Errorf("%s: %s: environment entry %q is not KEY=value", h.name, c, e)
		}
	}
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	select {
	case h.sessions <- struct{}{}:
		defer func() { <-h.sessions }()
	case <-ctx.Done():
		return res, fmt.Errorf("%s: %s: waiting for a free ssh session: %w", h.name, c, ctx.Err())
	}
	s, l, err := h.session(ctx)
	if err != nil {
		return res, err
	}
	defer s.Close()
	var stdout, stderr bytes.Buffer
	s.Stdout, s.Stderr = &stdout, &stderr
	if c.Stdin != nil {
		s.Stdin = bytes.NewReader(c.Stdin)
	}
	// The exec request waits for sshd's answer; the deferred Close ends the session
	// should the answer come after we stopped waiting.
	if _, err := await(ctx, func() (struct{}, error) { return struct{}{}, s.Start(h.commandLine(c)) }, nil); err != nil {
		return res, fmt.Errorf("%s: %s: %w", h.name, c, l.explain(err))
	}
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		// OpenSSH delivers the signal to the command (since 7.9); closing the channel
		// then makes sure we stop waiting either way.
		_ = s.Signal(xssh.SIGKILL)
		s.Close()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) && c.Timeout > 0 {
			return res, fmt.Errorf("%s: %s: timed out after %s", h.name, c, c.Timeout)
		}
		return res, fmt.Errorf("%s: %s: %w", h.name, c, ctx.Err())
	}
	res.Stdout, res.Stderr = stdout.Bytes(), stderr.Bytes()
	var ee *xssh.ExitError
	var em *xssh.ExitMissingError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		// x/crypto already maps a signal death to 128+signal, as a shell would.
		res.ExitCode = ee.ExitStatus()
	case errors.As(err, &em):
		if why := l.explain(err); why != err {
			return res, fmt.Errorf("%s: %s: before the command reported its exit status: %w", h.name, c, why)
		}
		return res, fmt.Errorf("%s: %s: connection lost before the command reported its exit status", h.name, c)
	default:
		return res, fmt.Errorf("%s: %s: %w", h.name, c, l.explain(err))
	}
	if h.sudo && res.ExitCode != 0 && sudoNeedsPassword(res.Stderr) {
		return res, fmt.Errorf("%s: %s: sudo -n needs a password for user %s; kubeforge needs password-less sudo (NOPASSWD) or the root user",
			h.name, c, h.cfg.User)
	}
	return res, nil
}

func sudoNeedsPassword(stderr []byte) bool {
	s := string(stderr)
	return strings.Contains(s, "sudo: a password is required") || strings.Contains(s, "sudo: a terminal is required")
}
