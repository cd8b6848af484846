package overlay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

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
	// Manager is the subnet manager; nil means the one the config names.
	Manager subnet.Manager
}

// Agent is the overlay agent of one node.
type Agent struct {
	cfg  *Config
	opts Options
	logf func(string, ...any)

	nl      *netlink.Handle
	mgr     subnet.Manager
	network subnet.Config
	dev     *vxlan.Device
	m       *metrics

	mu     sync.Mutex
	lease  subnet.Lease
	all    map[netip.Prefix]subnet.Lease // every lease the manager reported
	peers  map[netip.Prefix]subnet.Lease // programmed on the device
	st     runState
	server *http.Server
	addr   net.Addr
}

type runState struct {
	ready          bool
	problem        string
	revision       int64
	source         string
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
	return &Agent{cfg: cfg, opts: opts, logf: opts.Logf, m: newMetrics(), all: map[netip.Prefix]subnet.Lease{}, peers: map[netip.Prefix]subnet.Lease{}}, nil
}

// Addr is where the health server listens (after Run started it).
func (a *Agent) Addr() net.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.addr
}

// Run sets the node up and then follows the subnet manager until ctx ends. A
// clean stop leaves the lease where it is (an etcd lease expires on its own, a
// Node keeps its podCIDR), so a restart finds its subnet again and no peer
// reprograms anything.
func (a *Agent) Run(ctx context.Context) error {
	defer a.close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	updates, watchErr, err := a.setup(ctx)
	if err != nil {
		return err
	}
	a.opts.Ready()
	err = a.loop(ctx, updates, watchErr)
	if ctx.Err() != nil {
		a.logf("stopping; subnet %s stays with this node (%s backend), so a restart keeps it", a.lease.Subnet, a.mgr.Name())
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
	if a.mgr != nil {
		_ = a.mgr.Close()
	}
	if a.nl != nil {
		a.nl.Close()
	}
}

// setup acquires the subnet, builds the device and the node's files around it,
// and programs the peers of the manager's first snapshot. The watch it starts
// goes on delivering into the returned channel.
func (a *Agent) setup(ctx context.Context) (<-chan subnet.Update, <-chan error, error) {
	var err error
	if a.opts.NS.IsOpen() {
		a.nl, err = netlink.NewHandleAt(a.opts.NS)
	} else {
		a.nl, err = netlink.NewHandle()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("netlink: %w", err)
	}
	publicIP := netip.MustParseAddr(a.cfg.PublicIP)
	if a.cfg.Interface == "" {
		// Fail before touching the store when the address is not this node's.
		if _, err := vxlan.FindUnderlay(a.nl, publicIP); err != nil {
			return nil, nil, err
		}
	}
	if err := a.startHealth(); err != nil {
		return nil, nil, err
	}
	a.mgr = a.opts.Manager
	if a.mgr == nil {
		if a.mgr, err = newManager(a.cfg, a.logf, a.storeProblem); err != nil {
			return nil, nil, err
		}
	}
	if a.network, err = a.mgr.Network(ctx); err != nil {
		return nil, nil, err
	}
	hint := netip.Prefix{}
	if data, err := os.ReadFile(a.cfg.SubnetFile); err == nil {
		if p, _, err := cni.ParseSubnetEnv(data); err == nil {
			hint = p
		}
	}
	lease, err := a.acquire(ctx, hint)
	if err != nil {
		return nil, nil, err
	}
	if err := a.ensureDevice(lease); err != nil {
		return nil, nil, err
	}
	// The CNI config is written only now that the subnet is known.
	if err := a.ensureHost(ctx, lease); err != nil {
		return nil, nil, err
	}
	updates, watchErr := make(chan subnet.Update, 16), make(chan error, 1)
	go func() { watchErr <- a.mgr.Watch(ctx, updates) }()
	select {
	case u := <-updates:
		if u.Snapshot == nil {
			return nil, nil, fmt.Errorf("%s subnet manager: the first update is not a snapshot", a.mgr.Name())
		}
		a.applySnapshot(u, false)
	case err := <-watchErr:
		return nil, nil, fmt.Errorf("%s subnet manager: watching leases: %w", a.mgr.Name(), err)
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	return updates, watchErr, nil
}

// storeProblem is what a subnet manager reports while its store is unreachable.
func (a *Agent) storeProblem(p string) {
	a.m.inc("kubeforge_overlay_errors_total", "op", "store")
	a.setProblem(p)
}

func (a *Agent) attrs() subnet.Attrs {
	return subnet.Attrs{Node: a.cfg.NodeName, PublicIP: a.cfg.PublicIP, VtepMAC: vxlan.DeviceMAC(a.cfg.NodeName, a.network.VNI).String()}
}

func (a *Agent) acquire(ctx context.Context, hint netip.Prefix) (subnet.Lease, error) {
	l, err := a.mgr.Acquire(ctx, subnet.AcquireRequest{Attrs: a.attrs(), Network: a.network, Hint: hint, TTL: a.cfg.TTL(), Logf: a.logf})
	if err != nil {
		return l, fmt.Errorf("node %s: %w", a.cfg.NodeName, err)
	}
	a.logf("holding subnet %s (%s, %s backend) for %s at %s, vtep mac %s", l.Subnet, l.Holder(), a.mgr.Name(), l.Node, l.PublicIP, l.VtepMAC)
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

// applySnapshot replaces everything known with u's snapshot and makes the device
// hold exactly its peers; resync counts it as one (every snapshot after the
// first is).
func (a *Agent) applySnapshot(u subnet.Update, resync bool) {
	for _, err := range u.Snapshot.Invalid {
		a.logf("skipping %v", err)
	}
	all := map[netip.Prefix]subnet.Lease{}
	for _, l := range u.Snapshot.Leases {
		all[l.Subnet] = l
	}
	a.mu.Lock()
	a.all = all
	a.st.revision, a.st.source = u.Revision, u.Source
	if resync {
		a.st.resyncs++
		a.st.lastResync = u.Reason
	}
	a.mu.Unlock()
	if resync {
		a.m.inc("kubeforge_overlay_resyncs_total", "reason", reasonLabel(u.Reason))
	}
	a.syncAll(u.Reason)
}

// syncAll makes the device hold exactly the wanted peers among all leases known.
func (a *Agent) syncAll(reason string) {
	a.mu.Lock()
	leases := make([]subnet.Lease, 0, len(a.all))
	for _, l := range a.all {
		leases = append(leases, l)
	}
	rev := a.st.revision
	a.mu.Unlock()
	subnet.SortLeases(leases)
	var peers []vxlan.Peer
	want := map[netip.Prefix]subnet.Lease{}
	for _, l := range leases {
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
	a.logf("synced %d peers at %s revision %d (%s): %d added, %d updated, %d removed, %d unchanged in %s",
		len(peers), a.mgr.Name(), rev, reason, res.Added, res.Updated, res.Removed, res.Unchanged, d.Round(time.Microsecond))
	a.mu.Lock()
	a.peers = want
	a.st.lastSync = time.Now()
	a.st.lastSyncResult = res
	if err != nil {
		a.st.problem = "sync: " + err.Error()
	} else {
		a.st.problem = ""
	}
	a.mu.Unlock()
	a.m.set("kubeforge_overlay_peers", float64(len(want)))
	a.m.set("kubeforge_overlay_leases", float64(len(leases)))
}

// onUpdate is the handler of the manager's watch: a snapshot resyncs, events
// are applied one by one; an event that cannot be applied resyncs from what is
// known.
func (a *Agent) onUpdate(ctx context.Context, u subnet.Update) error {
	if u.Snapshot != nil {
		a.applySnapshot(u, true)
		return nil
	}
	for _, ev := range u.Events {
		a.m.inc("kubeforge_overlay_watch_events_total")
		if err := a.onEvent(ctx, ev); err != nil {
			if errors.Is(err, errSubnetChanged) {
				return err
			}
			a.logf("%v; resyncing", err)
			a.syncAll("failed to apply an event")
			break
		}
	}
	a.mu.Lock()
	a.st.revision, a.st.source = u.Revision, u.Source
	a.mu.Unlock()
	return nil
}

// onEvent applies one lease change to the device.
func (a *Agent) onEvent(ctx context.Context, ev subnet.Event) error {
	l, p := ev.Lease, ev.Lease.Subnet
	a.mu.Lock()
	old, had := a.peers[p]
	if ev.Type == subnet.Removed {
		delete(a.all, p)
	} else {
		a.all[p] = l
	}
	known := len(a.all)
	a.mu.Unlock()
	a.m.set("kubeforge_overlay_leases", float64(known))
	own := a.ownSubnet()
	if ev.Type == subnet.Removed {
		if p == own && (l.Node == "" || l.Node == a.cfg.NodeName) {
			return a.reclaim(ctx, fmt.Sprintf("this node's lease was removed from %s", a.mgr.Name()))
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
	if p == own && l.Node != a.cfg.NodeName {
		return a.reclaim(ctx, fmt.Sprintf("this node's subnet %s was taken over by node %s at %s", p, l.Node, l.PublicIP))
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
	err := a.dev.Add(peerOf(l))
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

// reclaim acquires the node's subnet again after its lease vanished while the
// agent ran.
func (a *Agent) reclaim(ctx context.Context, why string) error {
	old := a.ownSubnet()
	a.logf("%s; registering %s again", why, old)
	a.m.inc("kubeforge_overlay_lease_keepalive_lost_total")
	l, err := a.acquire(ctx, old)
	if err != nil {
		return err
	}
	if l.Subnet != old {
		return fmt.Errorf("%w: %s was taken by another node while this node's lease was gone, now %s; restarting to move", errSubnetChanged, old, l.Subnet)
	}
	return nil
}

// loop runs one handler per event source: the manager's watch, the renewal of
// this node's lease, and the VXLAN device's netlink notifications.
func (a *Agent) loop(ctx context.Context, updates <-chan subnet.Update, watchErr <-chan error) error {
	lost := make(chan error, 1)
	renew := func() context.CancelFunc {
		rctx, cancel := context.WithCancel(ctx)
		a.mu.Lock()
		l := a.lease
		a.mu.Unlock()
		go func() {
			if err := a.mgr.Renew(rctx, l); err != nil && rctx.Err() == nil {
				lost <- err
			}
		}()
		return cancel
	}
	stopRenew := renew()
	defer func() { stopRenew() }()
	linkGone := a.watchLink(ctx)
	a.setReady(true)
	a.m.set("kubeforge_overlay_ready", 1)
	for {
		var err error
		select {
		case <-ctx.Done():
			return ctx.Err()
		case u := <-updates:
			before := a.lease
			err = a.onUpdate(ctx, u)
			if err == nil && a.lease != before {
				stopRenew()
				stopRenew = renew()
			}
		case err = <-watchErr:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			err = fmt.Errorf("%s subnet manager: watching leases: %w", a.mgr.Name(), err)
		case lerr := <-lost:
			if !errors.Is(lerr, subnet.ErrLeaseLost) {
				err = lerr
				break
			}
			if err = a.reclaim(ctx, lerr.Error()); err == nil {
				stopRenew()
				stopRenew = renew()
			}
		case why := <-linkGone:
			a.logf("%s; recreating it", why)
			if err = a.ensureDevice(a.lease); err == nil {
				a.mu.Lock()
				a.st.resyncs++
				a.st.lastResync = "device recreated"
				a.mu.Unlock()
				a.m.inc("kubeforge_overlay_resyncs_total", "reason", reasonLabel("device recreated"))
				a.syncAll("device recreated")
			}
		}
		if err != nil {
			return err
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
