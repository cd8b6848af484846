package overlay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"

	"github.com/kubeforge/kubeforge/components/etcd"
	"github.com/kubeforge/kubeforge/components/overlay/cni"
	"github.com/kubeforge/kubeforge/components/overlay/iptables"
	"github.com/kubeforge/kubeforge/components/overlay/subnet"
	"github.com/kubeforge/kubeforge/components/overlay/vxlan"
)

// Options are the agent's test seams; the zero value is a real node.
type Options struct {
	// NS is the network namespace to program; closed (the zero value) means the
	// agent's own.
	NS netns.NsHandle
	// IPTables runs iptables; nil means the host's binary via os/exec.
	IPTables iptables.Runner
	// KernelRelease overrides uname -r (for the checksum decision).
	KernelRelease string
	// Logf receives every line the agent logs; nil means stderr.
	Logf func(format string, a ...any)
	// Ready is called once the agent is programmed and watching; nil means
	// sd_notify(READY=1), which is a no-op outside a Type=notify unit.
	Ready func()
}

// Agent is the overlay agent of one node.
type Agent struct {
	cfg  *Config
	opts Options
	logf func(string, ...any)

	nl      *netlink.Handle
	cli     *clientv3.Client
	reg     *subnet.Registry
	network subnet.Config
	dev     *vxlan.Device
	m       *metrics

	// watchStreams counts Watch streams gRPC opened; one opened while a watch
	// is established means clientv3 reconnected (to another member, usually),
	// which triggers a full resync.
	watchStreams atomic.Int64
	streamOpened chan struct{}
	watchPeer    atomic.Value // string: the member the watch stream is on

	mu     sync.Mutex
	lease  subnet.Lease
	peers  map[netip.Prefix]subnet.Lease // programmed on the device
	known  int
	st     runState
	server *http.Server
	addr   net.Addr
}

type runState struct {
	ready          bool
	problem        string
	revision       int64
	resyncs        int
	lastResync     string
	lastSync       time.Time
	txOffload      string
	lastSyncResult vxlan.SyncResult
}

// New checks the config and returns an agent; Run starts it.
func New(cfg *Config, opts Options) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Logf == nil {
		opts.Logf = func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }
	}
	if opts.NS == 0 {
		opts.NS = netns.None()
	}
	if opts.IPTables == nil {
		opts.IPTables = iptables.Exec()
	}
	if opts.Ready == nil {
		opts.Ready = func() { _, _ = daemon.SdNotify(false, daemon.SdNotifyReady) }
	}
	return &Agent{cfg: cfg, opts: opts, logf: opts.Logf, m: newMetrics(), peers: map[netip.Prefix]subnet.Lease{}, streamOpened: make(chan struct{}, 1)}, nil
}

// Addr is where the health server listens (after Run started it).
func (a *Agent) Addr() net.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.addr
}

// Run sets the node up and then follows etcd until ctx ends. A clean stop leaves
// the lease in etcd to expire on its own, so a restart finds its subnet again and
// no peer reprograms anything.
func (a *Agent) Run(ctx context.Context) error {
	defer a.close()
	if err := a.setup(ctx); err != nil {
		return err
	}
	a.opts.Ready()
	err := a.loop(ctx)
	if ctx.Err() != nil {
		a.logf("stopping; lease on %s stays in etcd until it expires (up to %s), so a restart keeps the subnet", a.lease.Subnet, a.cfg.LeaseTTL)
		return nil
	}
	return err
}

func (a *Agent) close() {
	if a.server != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = a.server.Shutdown(sctx)
		cancel()
	}
	if a.cli != nil {
		_ = a.cli.Close()
	}
	if a.nl != nil {
		a.nl.Close()
	}
}

func (a *Agent) setup(ctx context.Context) error {
	var err error
	if a.opts.NS.IsOpen() {
		a.nl, err = netlink.NewHandleAt(a.opts.NS)
	} else {
		a.nl, err = netlink.NewHandle()
	}
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	publicIP := netip.MustParseAddr(a.cfg.PublicIP)
	if a.cfg.Interface == "" {
		// Fail before touching etcd when the address is not this node's.
		if _, err := vxlan.FindUnderlay(a.nl, publicIP); err != nil {
			return err
		}
	}
	if err := a.startHealth(); err != nil {
		return err
	}
	if err := a.connect(); err != nil {
		return err
	}
	a.reg = subnet.New(a.cli, a.cfg.Etcd.Prefix)
	if a.network, err = a.networkConfig(ctx); err != nil {
		return err
	}
	hint := netip.Prefix{}
	if data, err := os.ReadFile(a.cfg.SubnetFile); err == nil {
		if p, _, err := cni.ParseSubnetEnv(data); err == nil {
			hint = p
		}
	}
	mac := vxlan.DeviceMAC(a.cfg.NodeName, a.network.VNI)
	lease, err := a.acquire(ctx, subnet.Attrs{Node: a.cfg.NodeName, PublicIP: a.cfg.PublicIP, VtepMAC: mac.String()}, hint)
	if err != nil {
		return err
	}
	if err := a.ensureDevice(lease); err != nil {
		return err
	}
	if err := a.ensureHost(ctx, lease); err != nil {
		return err
	}
	snap, err := a.reg.List(ctx)
	if err != nil {
		return err
	}
	a.syncTo(snap, "start")
	return nil
}

// connect opens the etcd client with the agent's own certificate. A gRPC stream
// interceptor notices every Watch stream clientv3 opens: one opened while the
// watch is established is a reconnect.
func (a *Agent) connect() error {
	var tlsCfg *tls.Config
	if a.cfg.Etcd.CAFile != "" {
		var err error
		tlsCfg, err = etcd.TLSFiles{CA: a.cfg.Etcd.CAFile, Cert: a.cfg.Etcd.CertFile, Key: a.cfg.Etcd.KeyFile}.Config(etcd.LocalRead)
		if err != nil {
			return err
		}
	}
	intercept := func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		cs, err := streamer(ctx, desc, cc, method, opts...)
		if err == nil && strings.HasSuffix(method, "/Watch") {
			a.watchStreams.Add(1)
			if p, ok := peer.FromContext(cs.Context()); ok && p.Addr != nil {
				a.watchPeer.Store(p.Addr.String())
			}
			select {
			case a.streamOpened <- struct{}{}:
			default:
			}
		}
		return cs, err
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            a.cfg.Etcd.Endpoints,
		TLS:                  tlsCfg,
		DialTimeout:          etcd.DialTimeout,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		DialOptions:          []grpc.DialOption{grpc.WithChainStreamInterceptor(intercept)},
		Logger:               zap.NewNop(),
	})
	if err != nil {
		return fmt.Errorf("etcd client for %v: %w", a.cfg.Etcd.Endpoints, err)
	}
	a.cli = cli
	return nil
}

// networkConfig stores the configured network in etcd (or checks it against what
// is there), or waits for one to appear when the agent has none of its own.
func (a *Agent) networkConfig(ctx context.Context) (subnet.Config, error) {
	if a.cfg.Network != nil {
		created, err := retry(ctx, a, "storing the network config", func(ctx context.Context) (bool, error) {
			return a.reg.EnsureConfig(ctx, *a.cfg.Network)
		})
		if err != nil {
			return subnet.Config{}, err
		}
		if created {
			a.logf("stored network config in etcd: %s, /%d per node, vni %d, port %d", a.cfg.Network.Network, a.cfg.Network.SubnetLen, a.cfg.Network.VNI, a.cfg.Network.Port)
		}
		return *a.cfg.Network, nil
	}
	for {
		c, err := retry(ctx, a, "reading the network config", func(ctx context.Context) (subnet.Config, error) {
			c, err := a.reg.Config(ctx)
			if errors.Is(err, subnet.ErrNoConfig) {
				return subnet.Config{}, nil
			}
			return c, err
		})
		if err != nil {
			return subnet.Config{}, err
		}
		if c.Network != "" {
			return c, nil
		}
		a.logf("no network config in etcd under %s yet; waiting for init to write it", a.cfg.Etcd.Prefix)
		wctx, cancel := context.WithCancel(ctx)
		wch := a.cli.Watch(wctx, strings.TrimSuffix(a.cfg.Etcd.Prefix, "/")+"/config")
		select {
		case <-wch:
		case <-ctx.Done():
		}
		cancel()
		if ctx.Err() != nil {
			return subnet.Config{}, ctx.Err()
		}
	}
}

// retry repeats an etcd operation with backoff while etcd is unreachable; errors
// that are about the data (a mismatching config, a full pool) are returned at once.
func retry[T any](ctx context.Context, a *Agent, what string, f func(context.Context) (T, error)) (T, error) {
	backoff := 500 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		v, err := f(cctx)
		cancel()
		if err == nil || !transient(err) || ctx.Err() != nil {
			return v, err
		}
		a.m.inc("kubeforge_overlay_errors_total", "op", "etcd")
		a.setProblem(fmt.Sprintf("%s: %v", what, err))
		a.logf("%s: %v; retrying in %s", what, err, backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return v, ctx.Err()
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

func transient(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "Unavailable") ||
		strings.Contains(err.Error(), "connection") || strings.Contains(err.Error(), "no leader") ||
		strings.Contains(err.Error(), "leader changed") || strings.Contains(err.Error(), "timed out")
}

func (a *Agent) acquire(ctx context.Context, attrs subnet.Attrs, hint netip.Prefix) (subnet.Lease, error) {
	l, err := retry(ctx, a, "acquiring a subnet", func(ctx context.Context) (subnet.Lease, error) {
		return a.reg.Acquire(ctx, subnet.AcquireRequest{Attrs: attrs, Network: a.network, Hint: hint, TTL: a.cfg.TTL(), Logf: a.logf})
	})
	if err != nil {
		return l, fmt.Errorf("node %s: %w", attrs.Node, err)
	}
	a.logf("holding subnet %s (etcd lease %x, key %s) for %s at %s, vtep mac %s",
		l.Subnet, int64(l.LeaseID), subnet.SubnetKey(a.reg.Prefix(), l.Subnet), l.Node, l.PublicIP, l.VtepMAC)
	a.mu.Lock()
	a.lease = l
	a.mu.Unlock()
	return l, nil
}

func (a *Agent) ensureDevice(l subnet.Lease) error {
	mac := vxlan.DeviceMAC(a.cfg.NodeName, a.network.VNI)
	dev, err := vxlan.Ensure(vxlan.Config{
		Name: vxlan.DeviceName(a.network.VNI), VNI: a.network.VNI, Port: a.network.Port, MTU: a.network.MTU,
		LocalIP: netip.MustParseAddr(a.cfg.PublicIP), Underlay: a.cfg.Interface, MAC: mac,
		Address: netip.PrefixFrom(l.Subnet.Addr(), 32),
	}, vxlan.Options{Handle: a.nl, NS: a.opts.NS, Logf: a.logf})
	if err != nil {
		return err
	}
	a.dev = dev
	release := a.opts.KernelRelease
	if release == "" {
		var u unix.Utsname
		if err := unix.Uname(&u); err == nil {
			release = unix.ByteSliceToString(u.Release[:])
		}
	}
	disable, why, warn, err := vxlan.DecideTxChecksum(a.cfg.TxChecksumOffload, release)
	if err != nil {
		return err
	}
	state := "left on"
	if warn {
		a.logf("warning: %s; Service traffic over the overlay may stall (set txChecksumOffload: disabled)", why)
	}
	if disable {
		on, err := dev.TxChecksum()
		if err != nil {
			return err
		}
		state = "off"
		if on {
			if err := dev.SetTxChecksum(false); err != nil {
				return err
			}
			a.logf("%s: tx checksum offload turned off: %s", dev.Name(), why)
		}
	}
	a.mu.Lock()
	a.st.txOffload = state + " (" + why + ")"
	a.mu.Unlock()
	return nil
}

// ensureHost writes everything on the node that depends on the subnet: IP
// forwarding, the iptables rules, subnet.env and the CNI config.
func (a *Agent) ensureHost(ctx context.Context, l subnet.Lease) error {
	if changed, err := vxlan.EnsureIPv4Forwarding(a.opts.NS); err != nil {
		return err
	} else if changed {
		a.logf("net.ipv4.ip_forward turned on: pod traffic is forwarded between cni0 and %s", a.dev.Name())
	}
	if *a.cfg.IPMasq {
		changes, err := iptables.New(a.opts.IPTables, "").Ensure(ctx, iptables.Rules{PodCIDR: a.network.Prefix(), NodeSubnet: l.Subnet})
		for _, c := range changes {
			a.logf("iptables: %s", c)
		}
		if err != nil {
			return err
		}
	}
	p := cni.Params{Network: a.network.Prefix(), Subnet: l.Subnet, MTU: a.dev.MTU()}
	if changed, err := cni.WriteFile(a.cfg.SubnetFile, cni.SubnetEnv(p, *a.cfg.IPMasq), 0o644); err != nil {
		return err
	} else if changed {
		a.logf("wrote %s: subnet %s, mtu %d", a.cfg.SubnetFile, l.Subnet, p.MTU)
	}
	conf, err := cni.Conflist(p)
	if err != nil {
		return err
	}
	if changed, err := cni.WriteFile(a.cfg.CNIConfFile, conf, 0o644); err != nil {
		return err
	} else if changed {
		a.logf("wrote %s: bridge %s, gateway %s, host-local %s, mtu %d", a.cfg.CNIConfFile, cni.BridgeName, cni.Gateway(l.Subnet), l.Subnet, p.MTU)
	}
	return nil
}

func (a *Agent) ownSubnet() netip.Prefix {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lease.Subnet
}

func peerOf(l subnet.Lease) vxlan.Peer {
	mac, _ := net.ParseMAC(l.VtepMAC)
	return vxlan.Peer{Node: l.Node, Subnet: l.Subnet, PublicIP: netip.MustParseAddr(l.PublicIP), MAC: mac}
}

// wanted says whether a lease of someone else should be programmed, and why not.
func (a *Agent) wanted(l subnet.Lease) (bool, string) {
	switch {
	case l.Subnet == a.ownSubnet():
		return false, ""
	case l.Node == a.cfg.NodeName:
		return false, fmt.Sprintf("lease %s also names this node %s; ignoring it", l.Subnet, l.Node)
	case l.PublicIP == a.cfg.PublicIP:
		return false, fmt.Sprintf("lease %s of node %s claims this node's address %s; ignoring it", l.Subnet, l.Node, l.PublicIP)
	case l.Subnet.Bits() != a.network.SubnetLen || !a.network.Prefix().Contains(l.Subnet.Addr()):
		return false, fmt.Sprintf("lease %s of node %s is not a /%d of %s; ignoring it", l.Subnet, l.Node, a.network.SubnetLen, a.network.Network)
	}
	return true, ""
}

// syncTo makes the device hold exactly the snapshot's peers.
func (a *Agent) syncTo(snap *subnet.Snapshot, reason string) {
	for _, err := range snap.Invalid {
		a.logf("skipping %v", err)
	}
	var peers []vxlan.Peer
	want := map[netip.Prefix]subnet.Lease{}
	for _, l := range snap.Leases {
		ok, why := a.wanted(l)
		if why != "" {
			a.logf("%s", why)
		}
		if ok {
			peers = append(peers, peerOf(l))
			want[l.Subnet] = l
		}
	}
	t0 := time.Now()
	res, err := a.dev.Sync(peers)
	d := time.Since(t0)
	a.m.observe("sync", d)
	if err != nil {
		a.m.inc("kubeforge_overlay_errors_total", "op", "sync")
		a.logf("sync (%s): %v", reason, err)
	}
	a.logf("synced %d peers at etcd revision %d (%s): %d added, %d updated, %d removed, %d unchanged in %s",
		len(peers), snap.Revision, reason, res.Added, res.Updated, res.Removed, res.Unchanged, d.Round(time.Microsecond))
	a.mu.Lock()
	a.peers = want
	a.known = len(snap.Leases)
	a.st.revision = snap.Revision
	a.st.lastSync = time.Now()
	a.st.lastSyncResult = res
	if err != nil {
		a.st.problem = "sync: " + err.Error()
	} else {
		a.st.problem = ""
	}
	a.mu.Unlock()
	a.m.set("kubeforge_overlay_peers", float64(len(want)))
	a.m.set("kubeforge_overlay_leases", float64(len(snap.Leases)))
}

// handle applies one watch event.
func (a *Agent) handle(ctx context.Context, ev *clientv3.Event) error {
	a.m.inc("kubeforge_overlay_watch_events_total")
	key := string(ev.Kv.Key)
	p, err := subnet.ParseSubnetKey(a.reg.Prefix(), key)
	if err != nil {
		a.logf("ignoring %v", err)
		return nil
	}
	a.mu.Lock()
	old, had := a.peers[p]
	a.mu.Unlock()
	if ev.Type == mvccpb.DELETE {
		a.addKnown(-1)
		if p == a.ownSubnet() {
			return a.reclaim(ctx, "this node's lease was deleted from etcd")
		}
		if !had {
			return nil
		}
		t0 := time.Now()
		err := a.dev.Remove(peerOf(old))
		a.m.observe("remove", time.Since(t0))
		if err != nil {
			a.m.inc("kubeforge_overlay_errors_total", "op", "remove")
			return err
		}
		a.mu.Lock()
		delete(a.peers, p)
		n := len(a.peers)
		a.mu.Unlock()
		a.m.set("kubeforge_overlay_peers", float64(n))
		a.logf("removed peer %s (%s at %s): lease gone", p, old.Node, old.PublicIP)
		return nil
	}
	l, err := a.reg.Decode(ev.Kv)
	if err != nil {
		a.logf("ignoring %v", err)
		return nil
	}
	if ev.IsCreate() {
		a.addKnown(1)
	}
	if p == a.ownSubnet() && l.Node != a.cfg.NodeName {
		return a.reclaim(ctx, fmt.Sprintf("the etcd key of this node's subnet %s was overwritten by node %s at %s", p, l.Node, l.PublicIP))
	}
	ok, why := a.wanted(l)
	if why != "" {
		a.logf("%s", why)
	}
	if !ok {
		return nil
	}
	if had && old.Attrs == l.Attrs {
		return nil
	}
	t0 := time.Now()
	if had {
		// The old MAC's FDB entry and neighbour must not linger.
		if err := a.dev.Remove(peerOf(old)); err != nil {
			a.logf("removing the old entries of %s: %v", p, err)
		}
	}
	err = a.dev.Add(peerOf(l))
	a.m.observe("add", time.Since(t0))
	if err != nil {
		a.m.inc("kubeforge_overlay_errors_total", "op", "add")
		return err
	}
	a.mu.Lock()
	a.peers[p] = l
	n := len(a.peers)
	a.mu.Unlock()
	a.m.set("kubeforge_overlay_peers", float64(n))
	verb := "added"
	if had {
		verb = "updated"
	}
	a.logf("%s peer %s: node %s at %s, vtep mac %s", verb, p, l.Node, l.PublicIP, l.VtepMAC)
	return nil
}

// errSubnetChanged ends Run when the node would have to move to another subnet:
// a restart rebuilds device, CNI config and rules around the new one in order.
var errSubnetChanged = errors.New("subnet changed")

// reclaim re-registers the node after its lease vanished while the agent ran.
func (a *Agent) reclaim(ctx context.Context, why string) error {
	old := a.ownSubnet()
	a.logf("%s; registering %s again", why, old)
	a.m.inc("kubeforge_overlay_lease_keepalive_lost_total")
	attrs := subnet.Attrs{Node: a.cfg.NodeName, PublicIP: a.cfg.PublicIP, VtepMAC: vxlan.DeviceMAC(a.cfg.NodeName, a.network.VNI).String()}
	l, err := a.acquire(ctx, attrs, old)
	if err != nil {
		return err
	}
	if l.Subnet != old {
		return fmt.Errorf("%w: %s was taken by another node while this node's lease was gone, now %s; restarting to move", errSubnetChanged, old, l.Subnet)
	}
	return nil
}

// loop follows etcd: subnet events from a watch, the lease's keepalive, and a full
// resync whenever the watch broke, was compacted or clientv3 reconnected.
func (a *Agent) loop(ctx context.Context) error {
	var (
		ka       <-chan *clientv3.LeaseKeepAliveResponse
		kaID     clientv3.LeaseID
		kaCancel context.CancelFunc = func() {}
	)
	defer func() { kaCancel() }()
	// keepAlive (re)starts the keepalive whenever the node's lease is another one
	// than the one kept alive (after a reclaim).
	keepAlive := func() error {
		a.mu.Lock()
		l := a.lease
		a.mu.Unlock()
		if l.LeaseID == kaID {
			return nil
		}
		kaCancel()
		var kctx context.Context
		kctx, kaCancel = context.WithCancel(ctx)
		ch, err := a.reg.KeepAlive(kctx, l)
		if err != nil {
			return err
		}
		ka, kaID = ch, l.LeaseID
		return nil
	}
	if err := keepAlive(); err != nil {
		return err
	}
	linkGone := a.watchLink(ctx)
	a.setReady(true)
	a.m.set("kubeforge_overlay_ready", 1)
	var (
		wctx    context.Context
		wcancel context.CancelFunc = func() {}
		wch     clientv3.WatchChan
		created bool
		base    int64
	)
	startWatch := func(rev int64) {
		wcancel()
		wctx, wcancel = context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch = a.cli.Watch(wctx, a.reg.SubnetsPrefix(), clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithPrevKV(), clientv3.WithCreatedNotify())
		created = false
	}
	defer func() { wcancel() }()
	resync := func(reason string) error {
		wcancel()
		snap, err := retry(ctx, a, "listing leases for a resync", a.reg.List)
		if err != nil {
			return err
		}
		a.syncTo(snap, reason)
		startWatch(snap.Revision)
		a.m.inc("kubeforge_overlay_resyncs_total", "reason", reasonLabel(reason))
		a.mu.Lock()
		a.st.resyncs++
		a.st.lastResync = reason
		a.mu.Unlock()
		return nil
	}
	a.mu.Lock()
	rev := a.st.revision
	a.mu.Unlock()
	startWatch(rev)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case resp, ok := <-wch:
			if !ok {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if err := resync("watch channel closed"); err != nil {
					return err
				}
				continue
			}
			if resp.Created {
				created, base = true, a.watchStreams.Load()
				continue
			}
			if err := resp.Err(); err != nil {
				reason := "watch error: " + err.Error()
				if resp.CompactRevision != 0 {
					reason = fmt.Sprintf("watch compacted at revision %d", resp.CompactRevision)
				}
				a.m.inc("kubeforge_overlay_errors_total", "op", "watch")
				if err := resync(reason); err != nil {
					return err
				}
				continue
			}
			for _, ev := range resp.Events {
				if err := a.handle(ctx, ev); err != nil {
					if errors.Is(err, errSubnetChanged) {
						return err
					}
					a.logf("%v; resyncing", err)
					if err := resync("failed to apply an event"); err != nil {
						return err
					}
					break
				}
			}
			a.mu.Lock()
			a.st.revision = resp.Header.Revision
			a.mu.Unlock()
			if err := keepAlive(); err != nil {
				return err
			}
		case <-a.streamOpened:
			if created && a.watchStreams.Load() > base {
				ep, _ := a.watchPeer.Load().(string)
				if err := resync("etcd watch stream re-established on " + ep); err != nil {
					return err
				}
			}
		case _, ok := <-ka:
			if ok {
				continue
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err := a.reclaim(ctx, "the etcd lease keepalive ended (lease expired or revoked)"); err != nil {
				return err
			}
			kaID = 0 // the same lease may have come back; keep it alive anew
			if err := keepAlive(); err != nil {
				return err
			}
		case why := <-linkGone:
			a.logf("%s; recreating it", why)
			if err := a.ensureDevice(a.lease); err != nil {
				return err
			}
			if err := resync("device recreated"); err != nil {
				return err
			}
		}
	}
}

func reasonLabel(reason string) string {
	switch {
	case strings.HasPrefix(reason, "watch compacted"):
		return "compacted"
	case strings.HasPrefix(reason, "etcd watch stream re-established"):
		return "reconnect"
	case strings.HasPrefix(reason, "watch"):
		return "watch"
	case reason == "device recreated":
		return "device"
	}
	return "other"
}

// watchLink reports when the VXLAN device is deleted behind the agent's back
// (an operator's `ip link del`, a network service restart), from netlink link
// notifications rather than by looking.
func (a *Agent) watchLink(ctx context.Context) <-chan string {
	out := make(chan string, 1)
	updates := make(chan netlink.LinkUpdate, 64)
	opts := netlink.LinkSubscribeOptions{ErrorCallback: func(err error) {
		if ctx.Err() == nil {
			a.logf("netlink link subscription: %v", err)
		}
	}}
	if a.opts.NS.IsOpen() {
		ns := a.opts.NS
		opts.Namespace = &ns
	}
	if err := netlink.LinkSubscribeWithOptions(updates, ctx.Done(), opts); err != nil {
		a.logf("cannot follow link changes (%v); a deleted %s is only noticed at the next restart", err, a.dev.Name())
		return out
	}
	name, index := a.dev.Name(), a.dev.Index()
	go func() {
		for u := range updates {
			if u.Header.Type == unix.RTM_DELLINK && (u.Attrs().Name == name || int(u.Index) == index) {
				select {
				case out <- fmt.Sprintf("%s was deleted", name):
				default:
				}
			}
		}
	}()
	return out
}

func (a *Agent) addKnown(d int) {
	a.mu.Lock()
	a.known = max(0, a.known+d)
	n := a.known
	a.mu.Unlock()
	a.m.set("kubeforge_overlay_leases", float64(n))
}

func (a *Agent) setReady(r bool) {
	a.mu.Lock()
	a.st.ready = r
	a.mu.Unlock()
}

func (a *Agent) setProblem(p string) {
	a.mu.Lock()
	a.st.problem = p
	a.mu.Unlock()
}
