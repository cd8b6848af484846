package subnet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kubeforge/kubeforge/components/overlay/internal/etcdtest"
)

func netCfg(network string, subnetLen int) Config {
	return Config{Network: network, SubnetLen: subnetLen, VNI: 1, Port: 8472}
}

func attrs(node string, n int) Attrs {
	return Attrs{Node: node, PublicIP: fmt.Sprintf("192.0.2.%d", n), VtepMAC: fmt.Sprintf("0e:00:00:00:00:%02x", n)}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

func TestConfigValidate(t *testing.T) {
	good := netCfg("10.244.0.0/16", 24)
	if err := good.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	cases := []struct {
		mut  func(*Config)
		want string
	}{
		{func(c *Config) { c.Network = "10.244.0.0" }, "network: \"10.244.0.0\" is not a CIDR"},
		{func(c *Config) { c.Network = "fd00::/48" }, "only IPv4"},
		{func(c *Config) { c.Network = "10.244.1.0/16" }, "host bits set; the network is 10.244.0.0/16"},
		{func(c *Config) { c.SubnetLen = 16 }, "subnetLen: 16 must be longer"},
		{func(c *Config) { c.SubnetLen = 31 }, "subnetLen: 31"},
		{func(c *Config) { c.VNI = 0 }, "vni: 0"},
		{func(c *Config) { c.VNI = 1 << 24 }, "vni: 16777216"},
		{func(c *Config) { c.Port = 70000 }, "port: 70000"},
		{func(c *Config) { c.MTU = 100 }, "mtu: 100"},
	}
	for _, tc := range cases {
		t.Run(tc.want, func(t *testing.T) {
			c := good
			tc.mut(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%+v: got %v, want an error containing %q", c, err, tc.want)
			}
		})
	}
	if n := netCfg("10.244.0.0/16", 24).Capacity(); n != 256 {
		t.Errorf("capacity of /16 in /24s = %d", n)
	}
}

func TestSubnetKeyRoundTrip(t *testing.T) {
	p := netip.MustParsePrefix("10.244.3.0/24")
	k := SubnetKey(DefaultPrefix, p)
	if k != "/kubeforge/network/subnets/10.244.3.0-24" {
		t.Fatalf("key %q", k)
	}
	got, err := ParseSubnetKey(DefaultPrefix, k)
	if err != nil || got != p {
		t.Fatalf("parse %q = %v, %v", k, got, err)
	}
	for _, bad := range []string{"/kubeforge/network/subnets/10.244.3.1-24", "/kubeforge/network/subnets/10.244.3.0", "/other/10.244.3.0-24", "/kubeforge/network/subnets/fd00::-64"} {
		if _, err := ParseSubnetKey(DefaultPrefix, bad); err == nil {
			t.Errorf("ParseSubnetKey(%q) accepted it", bad)
		}
	}
}

func TestEnsureConfig(t *testing.T) {
	srv := etcdtest.Start(t)
	r := New(srv.Client(t), "")
	c := ctx(t)
	if _, err := r.Config(c); !errors.Is(err, ErrNoConfig) {
		t.Fatalf("config before any write: %v, want ErrNoConfig", err)
	}
	want := netCfg("10.244.0.0/16", 24)
	created, err := r.EnsureConfig(c, want)
	if err != nil || !created {
		t.Fatalf("first EnsureConfig: created=%v err=%v", created, err)
	}
	created, err = r.EnsureConfig(c, want)
	if err != nil || created {
		t.Fatalf("second EnsureConfig: created=%v err=%v", created, err)
	}
	other := want
	other.Network, other.VNI = "10.245.0.0/16", 7
	_, err = r.EnsureConfig(c, other)
	if err == nil || !strings.Contains(err.Error(), "network: 10.244.0.0/16 != 10.245.0.0/16") || !strings.Contains(err.Error(), "vni: 1 != 7") {
		t.Fatalf("mismatching EnsureConfig: %v", err)
	}
	got, err := r.Config(c)
	if err != nil || got != want {
		t.Fatalf("config after a refused change = %+v, %v; want %+v", got, err, want)
	}
}

func TestAcquireReuseAndUpdate(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	r := New(cli, "")
	c := ctx(t)
	nc := netCfg("10.244.0.0/16", 24)

	first, err := r.Acquire(c, AcquireRequest{Attrs: attrs("node01", 1), Network: nc})
	if err != nil {
		t.Fatal(err)
	}
	if first.LeaseID == 0 || first.Subnet.Bits() != 24 || !nc.Prefix().Contains(first.Subnet.Addr()) {
		t.Fatalf("first lease %+v", first)
	}
	ttl, err := cli.TimeToLive(c, first.LeaseID)
	if err != nil || ttl.GrantedTTL != int64(DefaultTTL/time.Second) {
		t.Fatalf("etcd lease TTL = %+v, %v; want %d s", ttl, err, int64(DefaultTTL/time.Second))
	}

	// A restarting agent asks again (with another hint even): same subnet, same lease.
	again, err := r.Acquire(c, AcquireRequest{Attrs: attrs("node01", 1), Network: nc, Hint: netip.MustParsePrefix("10.244.200.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	if again.Subnet != first.Subnet || again.LeaseID != first.LeaseID || again.ModRevision != first.ModRevision {
		t.Fatalf("reacquire = %+v, want the unchanged %+v", again, first)
	}

	// New MAC (device recreated on another kernel): same subnet, value updated.
	moved := attrs("node01", 1)
	moved.VtepMAC = "0e:00:00:00:99:99"
	upd, err := r.Acquire(c, AcquireRequest{Attrs: moved, Network: nc})
	if err != nil {
		t.Fatal(err)
	}
	if upd.Subnet != first.Subnet || upd.LeaseID != first.LeaseID || upd.VtepMAC != moved.VtepMAC {
		t.Fatalf("update = %+v", upd)
	}
	snap, err := r.List(c)
	if err != nil || len(snap.Leases) != 1 || snap.Leases[0].VtepMAC != moved.VtepMAC || snap.Leases[0].LeaseID != first.LeaseID {
		t.Fatalf("after update etcd holds %+v (%v)", snap, err)
	}

	// Another node gets another subnet; the hint is honoured when free.
	hint := netip.MustParsePrefix("10.244.77.0/24")
	n2, err := r.Acquire(c, AcquireRequest{Attrs: attrs("node02", 2), Network: nc, Hint: hint})
	if err != nil || n2.Subnet != hint {
		t.Fatalf("node02 with a free hint: %+v, %v", n2, err)
	}
	n3, err := r.Acquire(c, AcquireRequest{Attrs: attrs("node03", 3), Network: nc, Hint: hint})
	if err != nil || n3.Subnet == hint || n3.Subnet == first.Subnet {
		t.Fatalf("node03 with a taken hint: %+v, %v", n3, err)
	}

	// Release removes the key and revokes the lease.
	gone, err := r.Release(c, "node02")
	if err != nil || len(gone) != 1 || gone[0].Subnet != hint {
		t.Fatalf("release node02: %+v, %v", gone, err)
	}
	if resp, _ := cli.Get(c, SubnetKey(DefaultPrefix, hint)); len(resp.Kvs) != 0 {
		t.Fatalf("node02's key still exists")
	}
	if ttl, err := cli.TimeToLive(c, n2.LeaseID); err != nil || ttl.TTL != -1 {
		t.Fatalf("node02's lease after release: %+v, %v; want revoked (TTL -1)", ttl, err)
	}
	if gone, err := r.Release(c, "node02"); err != nil || len(gone) != 0 {
		t.Fatalf("second release: %+v, %v", gone, err)
	}
}

// A lease that expired while the agent was down: the subnet comes back through the
// hint the agent kept (subnet.env), on a fresh etcd lease.
func TestExpiredLeaseComesBackByHint(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	r := New(cli, "")
	c := ctx(t)
	nc := netCfg("10.244.0.0/16", 24)
	l, err := r.Acquire(c, AcquireRequest{Attrs: attrs("node01", 1), Network: nc, TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	key := SubnetKey(DefaultPrefix, l.Subnet)
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		resp, err := cli.Get(c, key)
		if err == nil && len(resp.Kvs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("key %s never expired", key)
		}
	}
	back, err := r.Acquire(c, AcquireRequest{Attrs: attrs("node01", 1), Network: nc, Hint: l.Subnet})
	if err != nil || back.Subnet != l.Subnet || back.LeaseID == l.LeaseID {
		t.Fatalf("after expiry: %+v, %v; want %s on a new lease", back, err, l.Subnet)
	}
}

// A key whose lease is gone but which still exists (written without a lease, as an
// operator or an older version might): reuse attaches a fresh lease.
func TestReuseAttachesLeaseToLeaselessKey(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	r := New(cli, "")
	c := ctx(t)
	nc := netCfg("10.244.0.0/16", 24)
	p := netip.MustParsePrefix("10.244.9.0/24")
	if _, err := cli.Put(c, SubnetKey(DefaultPrefix, p), `{"node":"node01","publicIP":"192.0.2.1","vtepMAC":"0e:00:00:00:00:01"}`); err != nil {
		t.Fatal(err)
	}
	l, err := r.Acquire(c, AcquireRequest{Attrs: attrs("node01", 1), Network: nc})
	if err != nil || l.Subnet != p || l.LeaseID == 0 {
		t.Fatalf("acquire = %+v, %v", l, err)
	}
	resp, _ := cli.Get(c, SubnetKey(DefaultPrefix, p))
	if len(resp.Kvs) != 1 || clientv3.LeaseID(resp.Kvs[0].Lease) != l.LeaseID {
		t.Fatalf("key not attached to lease %x: %+v", int64(l.LeaseID), resp.Kvs)
	}
}

func TestExhaustion(t *testing.T) {
	srv := etcdtest.Start(t)
	r := New(srv.Client(t), "")
	c := ctx(t)
	nc := netCfg("10.10.0.0/28", 30) // 4 subnets
	seen := map[netip.Prefix]string{}
	for i := 1; i <= 4; i++ {
		l, err := r.Acquire(c, AcquireRequest{Attrs: attrs(fmt.Sprintf("node%02d", i), i), Network: nc})
		if err != nil {
			t.Fatalf("node%02d: %v", i, err)
		}
		if other, dup := seen[l.Subnet]; dup {
			t.Fatalf("%s given to node%02d and %s", l.Subnet, i, other)
		}
		seen[l.Subnet] = l.Node
	}
	_, err := r.Acquire(c, AcquireRequest{Attrs: attrs("node05", 5), Network: nc})
	if !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), "all 4 /30 subnets are leased") || !strings.Contains(err.Error(), "10.10.0.0/28") {
		t.Fatalf("fifth node: %v", err)
	}
	// An existing node still gets its subnet back from a full pool.
	if l, err := r.Acquire(c, AcquireRequest{Attrs: attrs("node02", 2), Network: nc}); err != nil || seen[l.Subnet] != "node02" {
		t.Fatalf("node02 from a full pool: %+v, %v", l, err)
	}
}

// A key that cannot be decoded is reported, never programmed, and its subnet is
// never handed out.
func TestInvalidKeyBlocksItsSubnet(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	r := New(cli, "")
	c := ctx(t)
	nc := netCfg("10.10.0.0/29", 30) // 2 subnets
	if _, err := cli.Put(c, SubnetKey(DefaultPrefix, netip.MustParsePrefix("10.10.0.0/30")), "{not json"); err != nil {
		t.Fatal(err)
	}
	snap, err := r.List(c)
	if err != nil || len(snap.Leases) != 0 || len(snap.Invalid) != 1 || !strings.Contains(snap.Invalid[0].Error(), "10.10.0.0-30") {
		t.Fatalf("list: %+v, %v", snap, err)
	}
	l, err := r.Acquire(c, AcquireRequest{Attrs: attrs("node01", 1), Network: nc})
	if err != nil || l.Subnet != netip.MustParsePrefix("10.10.0.4/30") {
		t.Fatalf("acquire next to a broken key: %+v, %v", l, err)
	}
	if _, err := r.Acquire(c, AcquireRequest{Attrs: attrs("node02", 2), Network: nc}); !errors.Is(err, ErrExhausted) {
		t.Fatalf("third subnet from a 2-subnet pool: %v", err)
	}
}

// Many nodes joining at the same moment, each with its own client (as separate
// agents would): every one gets a distinct subnet until the pool is empty, and
// exactly the surplus is told so.
func TestConcurrentAcquire(t *testing.T) {
	srv := etcdtest.Start(t)
	c := ctx(t)
	nc := netCfg("10.20.0.0/24", 28) // 16 subnets
	const nodes = 24
	type res struct {
		l   Lease
		err error
	}
	results := make([]res, nodes)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < nodes; i++ {
		r := New(srv.Client(t), "")
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			l, err := r.Acquire(c, AcquireRequest{Attrs: attrs(fmt.Sprintf("node%02d", i), i+1), Network: nc})
			results[i] = res{l, err}
		}()
	}
	close(start)
	wg.Wait()
	owner := map[netip.Prefix]int{}
	exhausted := 0
	for i, r := range results {
		if r.err != nil {
			if !errors.Is(r.err, ErrExhausted) {
				t.Errorf("node%02d: %v", i, r.err)
			}
			exhausted++
			continue
		}
		if j, dup := owner[r.l.Subnet]; dup {
			t.Errorf("%s given to node%02d and node%02d", r.l.Subnet, j, i)
		}
		owner[r.l.Subnet] = i
	}
	if len(owner) != 16 || exhausted != nodes-16 {
		t.Fatalf("%d nodes got subnets, %d were refused; want 16 and %d", len(owner), exhausted, nodes-16)
	}
	snap, err := New(srv.Client(t), "").List(c)
	if err != nil || len(snap.Leases) != 16 {
		t.Fatalf("etcd holds %d leases (%v), want 16", len(snap.Leases), err)
	}
	for _, l := range snap.Leases {
		if i, ok := owner[l.Subnet]; !ok || l.Node != fmt.Sprintf("node%02d", i) {
			t.Errorf("etcd says %s belongs to %s", l.Subnet, l.Node)
		}
	}
}
