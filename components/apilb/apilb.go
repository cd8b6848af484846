// Package apilb is the node-local API load balancer: it listens on loopback
// and forwards TCP connections to every healthy kube-apiserver, so that the
// kubelet, kube-proxy and kubeforge's own agents on a node keep reaching the API
// when one control-plane host goes away.
//
// It forwards bytes, not requests: TLS runs end to end between the client and
// the apiserver, so client certificates keep authenticating the node and the
// balancer holds no credential and cannot read or alter the traffic. (k3s's
// agent load balancer and k0s's node-local load balancing make the same
// choice; kubeadm leaves the balancer to the user.)
//
// Health: each backend's /readyz is polled (anonymous, verified against the
// cluster CA) every Interval. A backend that fails a check or a dial is taken
// out at once and its open connections are closed, so clients such as the
// kubelet, whose HTTP/2 connection would otherwise sit on a dead peer until
// its own health check gives up, reconnect through a healthy backend within
// one interval. A backend comes back when /readyz says ok again.
//
// The set of backends starts from the configured endpoint and then follows
// the `kubernetes` EndpointSlice (see WatchAPIServers), so a third control
// plane needs no change on the nodes.
package apilb

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// maxInFlight bounds the health checks of one backend running at once.
const maxInFlight = 2

// Options configure a Balancer.
type Options struct {
	// Listen is the loopback address clients connect to, e.g. 127.0.0.1:6444.
	Listen string
	// Backends are the apiservers to start with, host:port each.
	Backends []string
	// CA verifies the apiservers' serving certificates during health checks.
	CA *x509.CertPool
	// Interval between the starts of two health checks of one backend
	// (default 500ms). Checks overlap (at most maxInFlight at once), so a
	// backend that stops answering fails its checks Interval apart, not
	// Timeout+Interval apart: with the defaults a silent apiserver is out
	// 1.5-2 s after it went quiet (BenchmarkFailover).
	Interval time.Duration
	// Timeout of one health check (default 1s).
	Timeout time.Duration
	// FailureThreshold is how many checks in a row must fail before a
	// backend is taken out (default 2): one slow answer on a loaded host must
	// not cut every client's connection. A failed dial takes it out at once.
	FailureThreshold int
	// DialTimeout bounds connecting to a backend (default 1s).
	DialTimeout time.Duration
	// Logf reports backends changing state; nil is quiet.
	Logf func(format string, args ...any)
}

// Balancer forwards connections from Listen to healthy backends.
type Balancer struct {
	o      Options
	health *http.Client

	mu       sync.Mutex
	backends map[string]*backend
	next     uint64
	ln       net.Listener
	ready    chan struct{}
	runCtx   context.Context
}

// backend is one apiserver and the connections forwarded to it.
type backend struct {
	addr    string
	healthy atomic.Bool
	checked atomic.Bool // at least one health check has completed
	// inFlight counts the health checks running now.
	inFlight atomic.Int32
	stop     context.CancelFunc

	mu       sync.Mutex
	failures int                   // checks failed in a row
	conns    map[net.Conn]net.Conn // client → upstream
	removed  bool
	lastErr  string
}

// BackendStatus is what Status reports for one backend.
type BackendStatus struct {
	Address string
	Healthy bool
	Checked bool
	Conns   int
	Error   string
}

// New returns a Balancer; Run starts it.
func New(o Options) *Balancer {
	if o.Interval <= 0 {
		o.Interval = 500 * time.Millisecond
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	if o.FailureThreshold <= 0 {
		o.FailureThreshold = 2
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = time.Second
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: o.CA, MinVersion: tls.VersionTLS12},
		DisableKeepAlives: true, // a check must find out whether a new connection works
		DialContext:       (&net.Dialer{Timeout: o.DialTimeout}).DialContext,
	}
	return &Balancer{
		o:        o,
		health:   &http.Client{Transport: tr, Timeout: o.Timeout},
		backends: map[string]*backend{},
		ready:    make(chan struct{}),
	}
}

// Run listens and forwards until ctx ends.
func (b *Balancer) Run(ctx context.Context) error {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", b.o.Listen)
	if err != nil {
		return fmt.Errorf("api load balancer: listen on %s: %w", b.o.Listen, err)
	}
	b.mu.Lock()
	b.ln = ln
	b.runCtx = ctx
	b.mu.Unlock()
	b.SetBackends(b.o.Backends)
	close(b.ready)
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer b.SetBackends(nil) // stops the checkers, closes forwarded connections
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("api load balancer: accept on %s: %w", b.o.Listen, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.forward(ctx, c)
		}()
	}
}

// Ready is closed once Run listens.
func (b *Balancer) Ready() <-chan struct{} { return b.ready }

// Addr is the address Run listens on (after Ready).
func (b *Balancer) Addr() net.Addr {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ln == nil {
		return nil
	}
	return b.ln.Addr()
}

// SetBackends makes addrs the set of backends: new ones are health-checked
// before they get traffic, removed ones stop their checks and lose their
// connections. An empty set is ignored while Run runs, because a balancer with
// no backend helps no one: an EndpointSlice that is briefly empty (all
// apiservers restarting) must not make the node forget the ones it knew.
func (b *Balancer) SetBackends(addrs []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(addrs) == 0 && b.runCtx != nil && b.runCtx.Err() == nil {
		return
	}
	want := map[string]bool{}
	for _, a := range addrs {
		want[a] = true
	}
	for a, be := range b.backends {
		if !want[a] {
			be.stop()
			be.remove()
			delete(b.backends, a)
			b.o.Logf("[apilb] backend %s removed", a)
		}
	}
	if b.runCtx == nil || b.runCtx.Err() != nil {
		return
	}
	for a := range want {
		if _, ok := b.backends[a]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(b.runCtx)
		be := &backend{addr: a, stop: cancel, conns: map[net.Conn]net.Conn{}}
		b.backends[a] = be
		b.o.Logf("[apilb] backend %s added", a)
		go wait.UntilWithContext(ctx, func(ctx context.Context) {
			if be.inFlight.Add(1) > maxInFlight {
				be.inFlight.Add(-1)
				return
			}
			go func() {
				defer be.inFlight.Add(-1)
				b.check(ctx, be)
			}()
		}, b.o.Interval)
	}
}

// Status lists the backends, sorted by address.
func (b *Balancer) Status() []BackendStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]BackendStatus, 0, len(b.backends))
	for _, be := range b.backends {
		be.mu.Lock()
		out = append(out, BackendStatus{Address: be.addr, Healthy: be.healthy.Load(), Checked: be.checked.Load(), Conns: len(be.conns), Error: be.lastErr})
		be.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Address < out[j].Address })
	return out
}

// check asks one backend's /readyz.
func (b *Balancer) check(ctx context.Context, be *backend) {
	err := b.readyz(ctx, be.addr)
	if ctx.Err() != nil {
		return // removed or stopping: not the backend's fault
	}
	b.setHealth(be, err, b.o.FailureThreshold)
}

func (b *Balancer) readyz(ctx context.Context, addr string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := b.health.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz answered %s", resp.Status)
	}
	return nil
}

// setHealth records a check or dial result: threshold failures in a row
// take a backend out, and it loses its connections so their clients
// reconnect elsewhere; one success brings it back.
func (b *Balancer) setHealth(be *backend, err error, threshold int) {
	be.mu.Lock()
	if err != nil {
		be.lastErr = err.Error()
		be.failures++
	} else {
		be.lastErr = ""
		be.failures = 0
	}
	failures := be.failures
	be.mu.Unlock()
	var healthy bool
	switch {
	case err == nil:
		healthy = true
	case !be.checked.Load() || !be.healthy.Load() || failures >= threshold:
		// A backend never seen healthy gets no traffic on hope.
	default:
		return // one failure of a healthy backend: wait for the next check
	}
	be.checked.Store(true)
	was := be.healthy.Swap(healthy)
	switch {
	case was && !healthy:
		b.o.Logf("[apilb] backend %s unhealthy: %v", be.addr, err)
		be.closeConns()
	case !was && healthy:
		b.o.Logf("[apilb] backend %s healthy", be.addr)
	}
}

// candidates are the backends to try for a new connection: the healthy ones
// in round-robin order, or, if none is healthy, every backend (a balancer
// whose checks fail for a reason of their own, a CA mismatch say, must not cut
// the node off an API that works).
func (b *Balancer) candidates() []*backend {
	b.mu.Lock()
	defer b.mu.Unlock()
	var healthy, all []*backend
	for _, be := range b.backends {
		all = append(all, be)
		if be.healthy.Load() {
			healthy = append(healthy, be)
		}
	}
	list := healthy
	if len(list) == 0 {
		list = all
	}
	sort.Slice(list, func(i, j int) bool { return list[i].addr < list[j].addr })
	if len(list) > 1 {
		n := int(b.next % uint64(len(list)))
		b.next++
		list = append(list[n:], list[:n]...)
	}
	return slices.Clone(list)
}

// forward connects c to the first backend that accepts and copies both ways.
func (b *Balancer) forward(ctx context.Context, c net.Conn) {
	defer c.Close()
	var up net.Conn
	var be *backend
	for _, cand := range b.candidates() {
		d := net.Dialer{Timeout: b.o.DialTimeout}
		conn, err := d.DialContext(ctx, "tcp", cand.addr)
		if err != nil {
			b.setHealth(cand, fmt.Errorf("dial: %w", err), 1)
			continue
		}
		up, be = conn, cand
		break
	}
	if up == nil {
		return // every backend refused: the client sees its connection closed
	}
	defer up.Close()
	if !be.track(c, up) {
		return
	}
	defer be.untrack(c)
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, c); closeWrite(up); done <- struct{}{} }()
	go func() { io.Copy(c, up); closeWrite(c); done <- struct{}{} }()
	select {
	case <-done:
		// One side finished; the half-close lets the other drain, and the
		// deferred closes end it if the peer never does.
		select {
		case <-done:
		case <-ctx.Done():
		}
	case <-ctx.Done():
	}
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}

// track registers a forwarded connection pair; false if the backend was
// removed meanwhile.
func (be *backend) track(client, up net.Conn) bool {
	be.mu.Lock()
	defer be.mu.Unlock()
	if be.removed {
		return false
	}
	be.conns[client] = up
	return true
}

// remove closes the backend's connections and refuses new ones.
func (be *backend) remove() {
	be.mu.Lock()
	be.removed = true
	be.mu.Unlock()
	be.closeConns()
}

func (be *backend) untrack(client net.Conn) {
	be.mu.Lock()
	defer be.mu.Unlock()
	delete(be.conns, client)
}

// closeConns ends every connection forwarded to this backend.
func (be *backend) closeConns() {
	be.mu.Lock()
	defer be.mu.Unlock()
	for c, up := range be.conns {
		c.Close()
		up.Close()
	}
	clear(be.conns)
}
