package subnet

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apimachinery/pkg/util/validation"
)

// DefaultTTL is how long a node's subnet survives without its agent.
//
// 24 hours, as flannel: a node that is powered off for maintenance, whose agent is
// stopped for an upgrade, or that cannot reach etcd for a few hours keeps its
// subnet, so its pods keep their addresses and nothing is re-routed. The price is
// that a node that is gone for good holds one subnet for a day (or until `reset`
// releases it); with the default /16 and /24 that is one of 256.
const DefaultTTL = 24 * time.Hour

// ErrNoConfig is returned when etcd holds no network configuration yet.
var ErrNoConfig = errors.New("no overlay network configuration in etcd")

// ErrExhausted is wrapped by the error Acquire returns when every subnet is taken.
var ErrExhausted = errors.New("no free subnet left")

// Attrs is what a node publishes about itself with its subnet.
type Attrs struct {
	// Node is the node's name; a restarting agent finds its subnet by it.
	Node string `json:"node"`
	// PublicIP is the node's underlay address: peers send VXLAN packets to it.
	PublicIP string `json:"publicIP"`
	// VtepMAC is the MAC of the node's VXLAN device.
	VtepMAC string `json:"vtepMAC"`
}

// Validate checks the attributes a lease must carry to be programmed.
func (a Attrs) Validate() error {
	var errs []error
	if msgs := validation.IsDNS1123Subdomain(a.Node); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("node %q: %s", a.Node, strings.Join(msgs, "; ")))
	}
	if ip, err := netip.ParseAddr(a.PublicIP); err != nil || !ip.Is4() {
		errs = append(errs, fmt.Errorf("publicIP %q is not an IPv4 address", a.PublicIP))
	}
	if mac, err := net.ParseMAC(a.VtepMAC); err != nil || len(mac) != 6 {
		errs = append(errs, fmt.Errorf("vtepMAC %q is not an Ethernet MAC address", a.VtepMAC))
	}
	return errors.Join(errs...)
}

// Lease is one node's subnet as etcd holds it.
type Lease struct {
	Subnet netip.Prefix
	Attrs
	// LeaseID is the etcd lease the key is attached to (0: none).
	LeaseID clientv3.LeaseID
	// ModRevision is the key's last modification, for compare-and-swap updates.
	ModRevision int64
	// holder is what Holder reports when it is not an etcd lease.
	holder string
}

// Snapshot is every lease at one etcd revision.
type Snapshot struct {
	Leases   []Lease
	Revision int64
	// Invalid lists keys below subnets/ that could not be decoded; they are
	// skipped, never programmed, and never handed out again.
	Invalid []error
	taken   map[netip.Prefix]bool
}

// Registry reads and writes the overlay's keys.
type Registry struct {
	cli    *clientv3.Client
	prefix string
}

// New returns a registry under prefix ("" means DefaultPrefix).
func New(cli *clientv3.Client, prefix string) *Registry {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return &Registry{cli: cli, prefix: strings.TrimSuffix(prefix, "/")}
}

// Prefix is the registry's key prefix.
func (r *Registry) Prefix() string { return r.prefix }

// SubnetsPrefix is the key prefix every lease lives under (for watches).
func (r *Registry) SubnetsPrefix() string { return subnetsDir(r.prefix) }

// Config reads the network configuration; ErrNoConfig when there is none.
func (r *Registry) Config(ctx context.Context) (Config, error) {
	key := configKey(r.prefix)
	resp, err := r.cli.Get(ctx, key)
	if err != nil {
		return Config{}, fmt.Errorf("etcd get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return Config{}, fmt.Errorf("%w (key %s)", ErrNoConfig, key)
	}
	return decodeConfig(key, resp.Kvs[0].Value)
}

// EnsureConfig stores want unless a configuration exists. An existing one that
// differs is an error listing the differences: changing the pod network under
// running nodes would strand every pod, so it is never overwritten.
func (r *Registry) EnsureConfig(ctx context.Context, want Config) (created bool, err error) {
	if err := want.Validate(); err != nil {
		return false, err
	}
	key := configKey(r.prefix)
	data, err := json.Marshal(want)
	if err != nil {
		return false, err
	}
	resp, err := r.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(data))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return false, fmt.Errorf("etcd txn on %s: %w", key, err)
	}
	if resp.Succeeded {
		return true, nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return false, fmt.Errorf("etcd key %s vanished while it was being read", key)
	}
	have, err := decodeConfig(key, kvs[0].Value)
	if err != nil {
		return false, err
	}
	if d := have.Diff(want); len(d) > 0 {
		return false, fmt.Errorf("etcd key %s already holds a different overlay network (etcd != this node's config: %s); the pod network of a running cluster cannot be changed",
			key, strings.Join(d, ", "))
	}
	return false, nil
}

// List reads every lease.
func (r *Registry) List(ctx context.Context) (*Snapshot, error) {
	dir := r.SubnetsPrefix()
	resp, err := r.cli.Get(ctx, dir, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("etcd get %s*: %w", dir, err)
	}
	s := &Snapshot{Revision: resp.Header.Revision, taken: map[netip.Prefix]bool{}}
	for _, kv := range resp.Kvs {
		l, err := r.decode(kv)
		if p, perr := ParseSubnetKey(r.prefix, string(kv.Key)); perr == nil {
			// A key whose value is broken still blocks its subnet: handing it out
			// again would give two nodes the same range if the value was written by
			// a newer kubeforge.
			s.taken[p] = true
		}
		if err != nil {
			s.Invalid = append(s.Invalid, err)
			continue
		}
		s.Leases = append(s.Leases, l)
	}
	return s, nil
}

// Decode turns a key-value under subnets/ into a Lease.
func (r *Registry) Decode(kv *mvccpb.KeyValue) (Lease, error) { return r.decode(kv) }

func (r *Registry) decode(kv *mvccpb.KeyValue) (Lease, error) {
	p, err := ParseSubnetKey(r.prefix, string(kv.Key))
	if err != nil {
		return Lease{}, err
	}
	var a Attrs
	if err := json.Unmarshal(kv.Value, &a); err != nil {
		return Lease{}, fmt.Errorf("etcd key %s: %w", kv.Key, err)
	}
	if err := a.Validate(); err != nil {
		return Lease{}, fmt.Errorf("etcd key %s: %w", kv.Key, err)
	}
	return Lease{Subnet: p, Attrs: a, LeaseID: clientv3.LeaseID(kv.Lease), ModRevision: kv.ModRevision}, nil
}

// AcquireRequest is what a node asks for.
type AcquireRequest struct {
	Attrs
	// Network is the configuration to allocate from.
	Network Config
	// Hint is the subnet the node had before (flannel keeps it in subnet.env);
	// it is preferred when free. Zero means none.
	Hint netip.Prefix
	// TTL of a newly granted etcd lease; 0 means DefaultTTL.
	TTL time.Duration
	// Logf receives what Acquire decided; nil discards it.
	Logf func(format string, a ...any)
}

// Acquire returns the node's subnet: the one etcd already holds for the node name
// (updated if the node's address or MAC changed, re-attached to a fresh etcd lease
// if its old one expired), otherwise a free one claimed with a compare-and-create,
// retried when another node was faster. A full pool is an error wrapping
// ErrExhausted.
func (r *Registry) Acquire(ctx context.Context, req AcquireRequest) (Lease, error) {
	if err := req.Attrs.Validate(); err != nil {
		return Lease{}, err
	}
	if err := req.Network.Validate(); err != nil {
		return Lease{}, err
	}
	if req.TTL == 0 {
		req.TTL = DefaultTTL
	}
	logf := req.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	var granted clientv3.LeaseID
	defer func() {
		// A lease granted for a claim that then lost every race would hold nothing;
		// revoke it rather than leave it to expire.
		if granted != 0 {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_, _ = r.cli.Revoke(rctx, granted)
			cancel()
		}
	}()
	const attempts = 16
	for i := 0; i < attempts; i++ {
		snap, err := r.List(ctx)
		if err != nil {
			return Lease{}, err
		}
		if mine := snap.ofNode(req.Node); len(mine) > 0 {
			l := mine[0]
			for _, m := range mine {
				if m.Subnet == req.Hint {
					l = m
				}
			}
			got, retry, err := r.reuse(ctx, l, req)
			if retry {
				continue
			}
			if err == nil && len(mine) > 1 {
				logf("node %s holds %d subnets; keeping %s, releasing the others", req.Node, len(mine), l.Subnet)
				for _, m := range mine {
					if m.Subnet != l.Subnet {
						if _, derr := r.deleteLease(ctx, m); derr != nil {
							logf("releasing %s: %v", m.Subnet, derr)
						}
					}
				}
			}
			return got, err
		}
		sub, err := snap.pick(req.Network, req.Hint)
		if err != nil {
			return Lease{}, err
		}
		if granted == 0 {
			g, err := r.cli.Grant(ctx, int64(req.TTL/time.Second))
			if err != nil {
				return Lease{}, fmt.Errorf("etcd lease grant: %w", err)
			}
			granted = g.ID
		}
		key := SubnetKey(r.prefix, sub)
		val, _ := json.Marshal(req.Attrs)
		resp, err := r.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, string(val), clientv3.WithLease(granted))).
			Commit()
		if err != nil {
			return Lease{}, fmt.Errorf("etcd txn on %s: %w", key, err)
		}
		if !resp.Succeeded {
			logf("subnet %s was taken by another node meanwhile; trying again", sub)
			continue
		}
		l := Lease{Subnet: sub, Attrs: req.Attrs, LeaseID: granted, ModRevision: resp.Header.Revision}
		granted = 0
		return l, nil
	}
	return Lease{}, fmt.Errorf("node %s: no subnet after %d attempts: every chosen subnet was claimed by another node first", req.Node, attempts)
}

// reuse brings the node's existing lease up to date. retry means the key changed
// under us and the caller should look again.
func (r *Registry) reuse(ctx context.Context, l Lease, req AcquireRequest) (Lease, bool, error) {
	key := SubnetKey(r.prefix, l.Subnet)
	alive := false
	if l.LeaseID != 0 {
		ttl, err := r.cli.TimeToLive(ctx, l.LeaseID)
		if err != nil {
			return Lease{}, false, fmt.Errorf("etcd lease %x of %s: %w", int64(l.LeaseID), key, err)
		}
		alive = ttl.TTL > 0
	}
	if alive && l.Attrs == req.Attrs {
		return l, false, nil
	}
	id := l.LeaseID
	if !alive {
		g, err := r.cli.Grant(ctx, int64(req.TTL/time.Second))
		if err != nil {
			return Lease{}, false, fmt.Errorf("etcd lease grant: %w", err)
		}
		id = g.ID
	}
	val, _ := json.Marshal(req.Attrs)
	resp, err := r.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", l.ModRevision)).
		Then(clientv3.OpPut(key, string(val), clientv3.WithLease(id))).
		Commit()
	if err != nil {
		return Lease{}, false, fmt.Errorf("etcd txn on %s: %w", key, err)
	}
	if !resp.Succeeded {
		if id != l.LeaseID {
			_, _ = r.cli.Revoke(ctx, id)
		}
		return Lease{}, true, nil
	}
	return Lease{Subnet: l.Subnet, Attrs: req.Attrs, LeaseID: id, ModRevision: resp.Header.Revision}, false, nil
}

// KeepAlive keeps the lease's etcd lease alive until ctx ends. The channel closes
// when the lease is gone (expired or revoked) or ctx ends.
func (r *Registry) KeepAlive(ctx context.Context, l Lease) (<-chan *clientv3.LeaseKeepAliveResponse, error) {
	if l.LeaseID == 0 {
		return nil, fmt.Errorf("subnet %s has no etcd lease to keep alive", l.Subnet)
	}
	ch, err := r.cli.KeepAlive(ctx, l.LeaseID)
	if err != nil {
		return nil, fmt.Errorf("etcd keepalive of lease %x (%s): %w", int64(l.LeaseID), l.Subnet, err)
	}
	return ch, nil
}

// Release deletes every subnet of node and revokes their etcd leases. It returns
// the leases removed; none is not an error.
func (r *Registry) Release(ctx context.Context, node string) ([]Lease, error) {
	snap, err := r.List(ctx)
	if err != nil {
		return nil, err
	}
	var out []Lease
	for _, l := range snap.ofNode(node) {
		ok, err := r.deleteLease(ctx, l)
		if err != nil {
			return out, err
		}
		if ok {
			out = append(out, l)
		}
	}
	return out, nil
}

func (r *Registry) deleteLease(ctx context.Context, l Lease) (bool, error) {
	key := SubnetKey(r.prefix, l.Subnet)
	resp, err := r.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", l.ModRevision)).
		Then(clientv3.OpDelete(key)).
		Commit()
	if err != nil {
		return false, fmt.Errorf("etcd delete %s: %w", key, err)
	}
	if l.LeaseID != 0 {
		// Only this node's key is attached to its lease, so revoking it removes
		// nothing else; an already expired lease is fine.
		if _, err := r.cli.Revoke(ctx, l.LeaseID); err != nil && !strings.Contains(err.Error(), "requested lease not found") {
			return resp.Succeeded, fmt.Errorf("etcd revoke lease %x of %s: %w", int64(l.LeaseID), key, err)
		}
	}
	return resp.Succeeded, nil
}

func (s *Snapshot) ofNode(node string) []Lease {
	var out []Lease
	for _, l := range s.Leases {
		if l.Node == node {
			out = append(out, l)
		}
	}
	return out
}

// Taken reports whether subnet p has a key (valid or not).
func (s *Snapshot) Taken(p netip.Prefix) bool { return s.taken[p] }

// pick chooses a free subnet: the hint when it is free, otherwise a random one.
// Random rather than lowest-first, because nodes joining at the same moment
// would otherwise all race for the same subnet (flannel does the same).
func (s *Snapshot) pick(c Config, hint netip.Prefix) (netip.Prefix, error) {
	network := c.Prefix()
	if hint.IsValid() && hint.Bits() == c.SubnetLen && network.Contains(hint.Addr()) && hint.Masked() == hint && !s.taken[hint] {
		return hint, nil
	}
	n := c.Capacity()
	var inNet uint64
	for p := range s.taken {
		if p.Bits() == c.SubnetLen && network.Contains(p.Addr()) {
			inNet++
		}
	}
	if inNet >= n {
		return netip.Prefix{}, fmt.Errorf("%w in pod network %s: all %d /%d subnets are leased (%d nodes); release the subnets of removed nodes (kubeforge overlay reset on them) or use a larger podCIDR",
			ErrExhausted, c.Network, n, c.SubnetLen, len(s.Leases))
	}
	// Random probes find a free subnet fast while the pool is not nearly full; a
	// linear scan from a random start then settles the rest.
	for i := 0; i < 32; i++ {
		if p := subnetAt(network, c.SubnetLen, rand.Uint64N(n)); !s.taken[p] {
			return p, nil
		}
	}
	start := rand.Uint64N(n)
	for i := uint64(0); i < n; i++ {
		if p := subnetAt(network, c.SubnetLen, (start+i)%n); !s.taken[p] {
			return p, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("%w in pod network %s: all /%d subnets are leased", ErrExhausted, c.Network, c.SubnetLen)
}

// subnetAt is the idx-th subnet of length bits in network.
func subnetAt(network netip.Prefix, bits int, idx uint64) netip.Prefix {
	base := network.Addr().As4()
	v := binary.BigEndian.Uint32(base[:]) + uint32(idx)<<(32-bits)
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.PrefixFrom(netip.AddrFrom4(b), bits)
}

// SubnetIndex is the position of p in network (for tests and messages).
func SubnetIndex(network, p netip.Prefix) int {
	a, b := network.Addr().As4(), p.Addr().As4()
	return int((binary.BigEndian.Uint32(b[:]) - binary.BigEndian.Uint32(a[:])) >> (32 - p.Bits()))
}

// SortLeases orders leases by subnet, for stable output.
func SortLeases(ls []Lease) {
	slices.SortFunc(ls, func(a, b Lease) int { return a.Subnet.Addr().Compare(b.Subnet.Addr()) })
}
