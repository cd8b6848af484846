// Package ssh implements host.Host for a remote machine over golang.org/x/crypto/ssh.
//
// One SSH connection carries everything: commands and file transfers are sessions
// multiplexed on it, and systemd is reached through the same connection by
// forwarding the remote D-Bus socket (direct-streamlocal, what `ssh -L local:remote`
// with a socket path does), so units are managed with the very same D-Bus code as on
// the local host. Host keys are always verified against known_hosts.
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
	client *xssh.Client
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

// conn returns the shared connection, dialling it if there is none yet.
func (h *Host) conn(ctx context.Context) (*xssh.Client, error) {
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
	h.client = c
	// Notice a dropped connection (host rebooted, network blip) as soon as it
	// happens, so the next operation dials afresh instead of failing once first.
	go func() {
		_ = c.Wait()
		h.mu.Lock()
		if h.client == c {
			h.client = nil
		}
		h.mu.Unlock()
	}()
	return c, nil
}

// drop forgets c (if it is still the current connection) so the next conn() redials.
func (h *Host) drop(c *xssh.Client) {
	h.mu.Lock()
	if h.client == c {
		h.client = nil
	}
	h.mu.Unlock()
	c.Close()
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
// connection turns out to be dead.
func (h *Host) session(ctx context.Context) (*xssh.Session, error) {
	c, err := h.conn(ctx)
	if err != nil {
		return nil, err
	}
	s, err := h.newSession(ctx, c)
	if err == nil {
		return s, nil
	}
	// A refusal (sshd's MaxSessions, say) comes over a working connection; dropping
	// it would kill every other session on it.
	var oce *xssh.OpenChannelError
	if errors.As(err, &oce) {
		return nil, fmt.Errorf("%s: sshd refused a new session: %w", h.name, err)
	}
	h.drop(c)
	c, err2 := h.conn(ctx)
	if err2 != nil {
		return nil, fmt.Errorf("%s: connection lost (%v) and reconnecting failed: %w", h.name, err, err2)
	}
	s, err = h.newSession(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("%s: open ssh session: %w", h.name, err)
	}
	return s, nil
}

// sessionRetryBudget bounds how long a refused session open is retried.
const sessionRetryBudget = 3 * time.Second

// newSession opens a session, retrying for a while when sshd refuses it: a session
// we just closed is only released by sshd once it has processed our close, so a
// client that stays within MaxSessions can still be refused for a moment.
func (h *Host) newSession(ctx context.Context, c *xssh.Client) (*xssh.Session, error) {
	deadline := time.Now().Add(sessionRetryBudget)
	delay := 10 * time.Millisecond
	for {
		s, err := c.NewSession()
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
	s, err := h.session(ctx)
	if err != nil {
		return res, err
	}
	defer s.Close()
	var stdout, stderr bytes.Buffer
	s.Stdout, s.Stderr = &stdout, &stderr
	if c.Stdin != nil {
		s.Stdin = bytes.NewReader(c.Stdin)
	}
	if err := s.Start(h.commandLine(c)); err != nil {
		return res, fmt.Errorf("%s: %s: %w", h.name, c, err)
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
		return res, fmt.Errorf("%s: %s: connection lost before the command reported its exit status", h.name, c)
	default:
		return res, fmt.Errorf("%s: %s: %w", h.name, c, err)
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
