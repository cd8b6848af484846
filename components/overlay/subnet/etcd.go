package subnet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
	"k8s.io/apimachinery/pkg/util/wait"
)

// EtcdOptions configure the etcd Manager.
type EtcdOptions struct {
	Endpoints []string
	// TLS is the client's TLS configuration (its own certificate); nil: plain.
	TLS *tls.Config
	// Prefix of the keys ("" means DefaultPrefix).
	Prefix string
	// Network, when set, is stored unless a configuration is there, and must
	// match the one that is. Without it Network waits for one.
	Network *Config
	// TTL of newly granted etcd leases; 0 means DefaultTTL.
	TTL time.Duration
	// Logf receives what the manager does; nil discards it.
	Logf func(format string, a ...any)
	// Problem is called with a description while etcd cannot be reached; nil
	// ignores it.
	Problem func(string)
}

// Etcd is the etcd Manager: the Registry plus a watch that resyncs whenever it
// broke, was compacted, or clientv3 reconnected to another member.
type Etcd struct {
	o   EtcdOptions
	cli *clientv3.Client
	reg *Registry

	// watchStreams counts Watch streams gRPC opened; one opened while a watch
	// is established means clientv3 reconnected (to another member, usually),
	// which triggers a full resync.
	watchStreams atomic.Int64
	streamOpened chan struct{}
	watchPeer    atomic.Value // string: the member the watch stream is on

	// beforeWatch, when set, runs between a snapshot and the watch from its
	// revision (a test seam: changes and a compaction in that gap).
	beforeWatch func()
}

// NewEtcd connects to etcd. A gRPC stream interceptor notices every Watch
// stream clientv3 opens: one opened while the watch is established is a
// reconnect.
func NewEtcd(o EtcdOptions) (*Etcd, error) {
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.Problem == nil {
		o.Problem = func(string) {}
	}
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	m := &Etcd{o: o, streamOpened: make(chan struct{}, 1)}
	intercept := func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		cs, err := streamer(ctx, desc, cc, method, opts...)
		if err == nil && strings.HasSuffix(method, "/Watch") {
			m.watchStreams.Add(1)
			if p, ok := peer.FromContext(cs.Context()); ok && p.Addr != nil {
				m.watchPeer.Store(p.Addr.String())
			}
			select {
			case m.streamOpened <- struct{}{}:
			default:
			}
		}
		return cs, err
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            o.Endpoints,
		TLS:                  o.TLS,
		DialTimeout:          5 * time.Second,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		DialOptions:          []grpc.DialOption{grpc.WithChainStreamInterceptor(intercept)},
		Logger:               zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client for %v: %w", o.Endpoints, err)
	}
	m.cli = cli
	m.reg = New(cli, o.Prefix)
	return m, nil
}

// Name implements Manager.
func (m *Etcd) Name() string { return "etcd" }

// Close implements Manager.
func (m *Etcd) Close() error { return m.cli.Close() }

// Network stores the configured network (or checks it against what is there),
// or waits for one to appear when the manager has none of its own.
func (m *Etcd) Network(ctx context.Context) (Config, error) {
	if m.o.Network != nil {
		want := *m.o.Network
		created, err := retry(ctx, m, "storing the network config", func(ctx context.Context) (bool, error) {
			return m.reg.EnsureConfig(ctx, want)
		})
		if err != nil {
			return Config{}, err
		}
		if created {
			m.o.Logf("stored network config in etcd: %s, /%d per node, vni %d, port %d", want.Network, want.SubnetLen, want.VNI, want.Port)
		}
		return want, nil
	}
	for {
		c, err := retry(ctx, m, "reading the network config", func(ctx context.Context) (Config, error) {
			c, err := m.reg.Config(ctx)
			if errors.Is(err, ErrNoConfig) {
				return Config{}, nil
			}
			return c, err
		})
		if err != nil {
			return Config{}, err
		}
		if c.Network != "" {
			return c, nil
		}
		m.o.Logf("no network config in etcd under %s yet; waiting for init to write it", m.reg.Prefix())
		wctx, cancel := context.WithCancel(ctx)
		wch := m.cli.Watch(wctx, configKey(m.reg.Prefix()))
		select {
		case <-wch:
		case <-ctx.Done():
		}
		cancel()
		if ctx.Err() != nil {
			return Config{}, ctx.Err()
		}
	}
}

// Acquire implements Manager, retrying while etcd is unreachable.
func (m *Etcd) Acquire(ctx context.Context, req AcquireRequest) (Lease, error) {
	if req.TTL == 0 {
		req.TTL = m.o.TTL
	}
	if req.Logf == nil {
		req.Logf = m.o.Logf
	}
	l, err := retry(ctx, m, "acquiring a subnet", func(ctx context.Context) (Lease, error) {
		return m.reg.Acquire(ctx, req)
	})
	if err != nil {
		return l, err
	}
	m.o.Logf("etcd key %s, etcd lease %x", SubnetKey(m.reg.Prefix(), l.Subnet), int64(l.LeaseID))
	return l, nil
}

// Renew keeps l's etcd lease alive until ctx ends or the lease is gone.
func (m *Etcd) Renew(ctx context.Context, l Lease) error {
	ch, err := m.reg.KeepAlive(ctx, l)
	if err != nil {
		return err
	}
	for range ch {
	}
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("%w: the etcd lease keepalive of %s ended (lease expired or revoked)", ErrLeaseLost, l.Subnet)
}

// Watch follows subnets/ from a snapshot's revision on; a watch that closed,
// failed, was compacted or moved to another member starts over with a new
// snapshot.
func (m *Etcd) Watch(ctx context.Context, ch chan<- Update) error {
	var (
		wcancel context.CancelFunc = func() {}
		wch     clientv3.WatchChan
		created bool
		base    int64
	)
	defer func() { wcancel() }()
	send := func(u Update) error {
		u.Source, _ = m.watchPeer.Load().(string)
		select {
		case ch <- u:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	resync := func(reason string) error {
		wcancel()
		snap, err := retry(ctx, m, "listing leases", m.reg.List)
		if err != nil {
			return err
		}
		if m.beforeWatch != nil {
			m.beforeWatch()
		}
		var wctx context.Context
		wctx, wcancel = context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch = m.cli.Watch(wctx, m.reg.SubnetsPrefix(), clientv3.WithPrefix(), clientv3.WithRev(snap.Revision+1), clientv3.WithPrevKV(), clientv3.WithCreatedNotify())
		created = false
		return send(Update{Snapshot: snap, Reason: reason, Revision: snap.Revision})
	}
	if err := resync("start"); err != nil {
		return err
	}
	for {
		var err error
		select {
		case <-ctx.Done():
			return ctx.Err()
		case resp, ok := <-wch:
			switch {
			case !ok:
				if ctx.Err() != nil {
					return ctx.Err()
				}
				err = resync("watch channel closed")
			case resp.Created:
				created, base = true, m.watchStreams.Load()
			case resp.Err() != nil:
				reason := "watch error: " + resp.Err().Error()
				if resp.CompactRevision != 0 {
					reason = fmt.Sprintf("watch compacted at revision %d", resp.CompactRevision)
				}
				err = resync(reason)
			default:
				err = send(Update{Events: m.events(resp.Events), Revision: resp.Header.Revision})
			}
		case <-m.streamOpened:
			if created && m.watchStreams.Load() > base {
				ep, _ := m.watchPeer.Load().(string)
				err = resync("etcd watch stream re-established on " + ep)
			}
		}
		if err != nil {
			return err
		}
	}
}

// events turns etcd events into lease events; keys that do not decode are
// logged and skipped (a deleted one still removes its subnet).
func (m *Etcd) events(evs []*clientv3.Event) []Event {
	var out []Event
	for _, ev := range evs {
		p, err := ParseSubnetKey(m.reg.Prefix(), string(ev.Kv.Key))
		if err != nil {
			m.o.Logf("ignoring %v", err)
			continue
		}
		if ev.Type == mvccpb.DELETE {
			l := Lease{Subnet: p}
			if ev.PrevKv != nil {
				if old, err := m.reg.decode(ev.PrevKv); err == nil {
					l = old
				}
			}
			out = append(out, Event{Type: Removed, Lease: l})
			continue
		}
		l, err := m.reg.decode(ev.Kv)
		if err != nil {
			m.o.Logf("ignoring %v", err)
			continue
		}
		out = append(out, Event{Type: Added, Lease: l})
	}
	return out
}

// retry repeats an etcd operation with backoff while etcd is unreachable; errors
// that are about the data (a mismatching config, a full pool) are returned at once.
func retry[T any](ctx context.Context, m *Etcd, what string, f func(context.Context) (T, error)) (T, error) {
	var v T
	var last error
	b := wait.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Cap: 30 * time.Second, Steps: math.MaxInt32}
	err := wait.ExponentialBackoffWithContext(ctx, b, func(ctx context.Context) (bool, error) {
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		v, last = f(cctx)
		cancel()
		if last == nil || !transient(last) {
			return true, last
		}
		m.o.Problem(fmt.Sprintf("%s: %v", what, last))
		m.o.Logf("%s: %v; retrying", what, last)
		return false, nil
	})
	if err != nil && ctx.Err() != nil {
		return v, ctx.Err()
	}
	return v, err
}

func transient(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "Unavailable") ||
		strings.Contains(err.Error(), "connection") || strings.Contains(err.Error(), "no leader") ||
		strings.Contains(err.Error(), "leader changed") || strings.Contains(err.Error(), "timed out")
}
