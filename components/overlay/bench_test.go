package overlay

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kubeforge/kubeforge/components/overlay/internal/etcdtest"
	"github.com/kubeforge/kubeforge/components/overlay/internal/nettest"
	"github.com/kubeforge/kubeforge/components/overlay/iptables"
	"github.com/kubeforge/kubeforge/components/overlay/subnet"
	"github.com/kubeforge/kubeforge/components/overlay/vxlan"
)

// BenchmarkAgentStart500 is an agent starting on a node of a 500-node cluster:
// from nothing to ready, which includes acquiring its lease, creating the device
// and programming 500 peers (1500 kernel entries) from a real etcd.
func BenchmarkAgentStart500(b *testing.B) {
	nettest.Require(b)
	srv := etcdtest.Start(b)
	cli := srv.Client(b)
	ns, peer := nettest.New(b), nettest.New(b)
	nettest.Link(b, ns, "eth0", "192.0.2.1/24", peer, "eth0", "192.0.2.2/24")
	nc := &subnet.Config{Network: "10.128.0.0/14", SubnetLen: 24, VNI: 1, Port: 8472}
	ctx := context.Background()
	for i := 0; i < 500; i += 100 {
		var ops []clientv3.Op
		for j := i; j < i+100; j++ {
			p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(128 + j/256), byte(j % 256), 0}), 24)
			ops = append(ops, clientv3.OpPut(subnet.SubnetKey(subnet.DefaultPrefix, p),
				fmt.Sprintf(`{"node":"sim%03d","publicIP":"192.0.2.%d","vtepMAC":"0e:5e:00:00:%02x:%02x"}`, j, 10+j%200, j/256, j%256)))
		}
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			b.Fatal(err)
		}
	}
	dir := b.TempDir()
	cfg := &Config{NodeName: "bench", PublicIP: "192.0.2.1", Etcd: Etcd{Endpoints: []string{srv.Endpoint}}, Network: nc,
		HealthAddress: "127.0.0.1:0", SubnetFile: dir + "/subnet.env", CNIConfFile: dir + "/10-kubeforge.conflist"}
	cfg.SetDefaults()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ready := make(chan struct{})
		a, err := New(cfg, Options{NS: ns.Handle, IPTables: iptables.Exec(ns.Prefix()...), Logf: func(string, ...any) {}, Ready: func() { close(ready) }})
		if err != nil {
			b.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- a.Run(rctx) }()
		select {
		case <-ready:
		case err := <-done:
			b.Fatal(err)
		}
		b.StopTimer()
		if n := len(a.Status().Peers); n != 500 {
			b.Fatalf("%d peers programmed", n)
		}
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			b.Fatal("the agent did not stop within 30s of its context ending")
		}
		if _, err := vxlan.Delete(ns.NL, "kubeforge.1"); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
