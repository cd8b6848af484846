package overlay

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubeforge/kubeforge/components/kubeclient/fakewatch"
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
	cfg := &Config{NodeName: "bench", PublicIP: "192.0.2.1", Backend: BackendEtcd, Etcd: Etcd{Endpoints: []string{srv.Endpoint}}, Network: nc,
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

// BenchmarkKubeAgent500 is the kube backend in a 500-node cluster (Node objects in
// a fake clientset, the real netlink programming in a network namespace): the
// agent from start to ready with 500 peers, then, per iteration, the time from a
// new Node's annotations written through the API to its route present on the
// device. It reports that latency (p50, max) and the process's RSS growth.
func BenchmarkKubeAgent500(b *testing.B) {
	nettest.Require(b)
	ns, peer := nettest.New(b), nettest.New(b)
	nettest.Link(b, ns, "eth0", "192.0.2.1/24", peer, "eth0", "192.0.2.2/24")
	nc := subnet.Config{Network: "10.128.0.0/14", SubnetLen: 24, VNI: 1, Port: 8472}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := fake.NewClientset()
	node := func(j int, annotated bool) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("sim%04d", j)},
			Spec: corev1.NodeSpec{PodCIDR: fmt.Sprintf("10.%d.%d.0/24", 128+j/256, j%256)}}
		if annotated {
			n.Annotations = map[string]string{subnet.AnnotationVtepMAC: fmt.Sprintf("0e:5e:00:00:%02x:%02x", j/256, j%256), subnet.AnnotationPublicIP: fmt.Sprintf("192.0.2.%d", 10+j%200)}
		}
		return n
	}
	for j := 1; j <= 500; j++ {
		if _, err := c.CoreV1().Nodes().Create(ctx, node(j, true), metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	self := node(0, false)
	self.Name = "bench"
	if _, err := c.CoreV1().Nodes().Create(ctx, self, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	watching := fakewatch.Opened(c, "nodes")
	mgr, err := subnet.NewKube(subnet.KubeOptions{Client: c, NodeName: "bench", Network: nc})
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	cfg := &Config{NodeName: "bench", PublicIP: "192.0.2.1", Kubeconfig: "/dev/null", Network: &nc,
		HealthAddress: "127.0.0.1:0", SubnetFile: dir + "/subnet.env", CNIConfFile: dir + "/10-kubeforge.conflist"}
	cfg.SetDefaults()
	rss0 := rssKiB()
	ready := make(chan struct{})
	a, err := New(cfg, Options{NS: ns.Handle, IPTables: iptables.Exec(ns.Prefix()...), Logf: func(string, ...any) {}, Ready: func() { close(ready) }, Manager: mgr})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	t0 := time.Now()
	go func() { done <- a.Run(ctx) }()
	select {
	case <-ready:
	case err := <-done:
		b.Fatal(err)
	}
	start := time.Since(t0)
	if n := len(a.Status().Peers); n != 500 {
		b.Fatalf("%d peers programmed", n)
	}
	select {
	case <-watching:
	case <-time.After(30 * time.Second):
		b.Fatal("the agent's Node informer did not open its watch within 30s")
	}
	b.ResetTimer()
	var lat []time.Duration
	for i := 0; i < b.N; i++ {
		j := 501 + i
		n := node(j, false)
		if _, err := c.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		want := node(j, true)
		dst := netip.MustParsePrefix(want.Spec.PodCIDR)
		t1 := time.Now()
		patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q,%q:%q}}}`, subnet.AnnotationVtepMAC, want.Annotations[subnet.AnnotationVtepMAC], subnet.AnnotationPublicIP, want.Annotations[subnet.AnnotationPublicIP])
		if _, err := c.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			b.Fatal(err)
		}
		if err := wait.PollUntilContextTimeout(ctx, 200*time.Microsecond, 30*time.Second, true, func(context.Context) (bool, error) {
			rs, err := ns.NL.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(24, 32)}}, netlink.RT_FILTER_DST)
			return err == nil && len(rs) > 0, nil
		}); err != nil {
			b.Fatalf("no route to %s within 30s of its Node's annotations", dst)
		}
		lat = append(lat, time.Since(t1))
	}
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "ms-p50-annotated-to-route")
		b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "ms-max-annotated-to-route")
	}
	b.ReportMetric(float64(start.Milliseconds()), "ms-start-to-ready-500")
	b.ReportMetric(float64(rssKiB()-rss0)/1024, "MiB-rss-growth")
	cancel()
	<-done
	if _, err := vxlan.Delete(ns.NL, "kubeforge.1"); err != nil {
		b.Fatal(err)
	}
}

// rssKiB is this process's resident set (VmRSS), 0 when unknown.
func rssKiB() int {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}
