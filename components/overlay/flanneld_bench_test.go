package overlay_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/controlplane"
	"github.com/kubeforge/kubeforge/components/controlplane/loopbacktest"
	"github.com/kubeforge/kubeforge/components/overlay"
	"github.com/kubeforge/kubeforge/components/overlay/internal/nettest"
	"github.com/kubeforge/kubeforge/components/overlay/subnet"
	"github.com/kubeforge/kubeforge/components/overlay/vxlan"
)

// The flanneld the side-by-side bench compares with, and where
// hack/build-flanneld.sh caches it.
const (
	flannelVersion = "v0.26.7"
	flannelPrefix  = "flannel.alpha.coreos.com/"
	// benchSims Nodes exist before the agents start; benchNew more are
	// annotated one at a time while both run.
	benchSims = 500
	benchNew  = 50
)

// benchNet is the pod network of the bench: 1024 /24s, room for the simulated
// Nodes, the new ones and the two agents' own.
var benchNet = subnet.Config{Network: "10.128.0.0/14", SubnetLen: 24, VNI: 1, Port: 8472}

// BenchmarkFlanneldSideBySide500 runs kubeforge's overlay agent (the built
// `kubeforge overlay run`, kube backend) and flanneld v0.26.7
// (--kube-subnet-mgr, VXLAN) as processes, each in a network namespace of its
// own, against one real loopback control plane holding 500 simulated Nodes
// (spec.podCIDR plus both agents' annotations, created through the API). It
// measures, for each agent:
//
//   - start to all 500 routes present (the agent started after the other one
//     was ready, so they do not share the CPU while starting);
//   - for benchNew new Nodes, one at a time: from the merge patch that writes
//     both agents' annotations to the Node's route present in each namespace
//     (p50 and max);
//   - the agent's RSS (VmRSS at the end, and VmHWM, its peak).
//
// It prints one table (figure | ours | flanneld | goal met?) and reports the
// same figures as metrics. One run is one sample set: run it with -benchtime 1x
// (hack/bench-overlay.sh does). Needs root, the bundle (etcd and the control
// plane) and flanneld (hack/build-flanneld.sh; or KUBEFORGE_FLANNELD=path).
// KUBEFORGE_BIN names a kubeforge binary to use instead of building one.
//
// The apiserver listens on the machine's loopback only; each namespace gets a
// forwarder on its own 127.0.0.1 with the same port (a listener opened inside
// the namespace by this process), so all traffic stays on loopback. Both agents
// use the same client certificate. kube-controller-manager runs without its
// node IPAM and node lifecycle controllers: the podCIDRs are the bench's, and
// Nodes without a kubelet would otherwise be tainted and updated mid-run, which
// a cluster of live nodes does not see.
func BenchmarkFlanneldSideBySide500(b *testing.B) {
	nettest.Require(b)
	flanneld := os.Getenv("KUBEFORGE_FLANNELD")
	if flanneld == "" {
		home, _ := os.UserHomeDir()
		flanneld = filepath.Join(home, ".cache", "kubeforge-bench", "flanneld-"+flannelVersion, "flanneld")
	}
	if fi, err := os.Stat(flanneld); err != nil || fi.Mode()&0o111 == 0 {
		b.Skipf("flanneld %s not found at %s: build it with hack/build-flanneld.sh (or set KUBEFORGE_FLANNELD to a flanneld binary)", flannelVersion, flanneld)
	}
	if _, err := os.Stat("/proc/sys/net/bridge/bridge-nf-call-iptables"); err != nil {
		b.Skip("flanneld refuses to start without br_netfilter (/proc/sys/net/bridge/bridge-nf-call-iptables): modprobe br_netfilter")
	}
	// Skip before building anything when the bundle is missing.
	loopbacktest.BundleBin(b, "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kubeforge := kubeforgeBinary(b)

	lc := loopbacktest.Run(b, ctx, map[string]map[string]string{
		controlplane.ControllerManager: {"controllers": "*,bootstrapsigner,tokencleaner,-node-ipam-controller,-node-lifecycle-controller"},
	})
	kubeconfig := filepath.Join(lc.KcDir, certs.KubeconfigSuperAdmin)
	data, err := os.ReadFile(kubeconfig)
	if err != nil {
		b.Fatal(err)
	}
	rc, err := clientcmd.RESTConfigFromKubeConfig(data)
	if err != nil {
		b.Fatal(err)
	}
	rc.QPS, rc.Burst = 500, 1000
	c, err := kubernetes.NewForConfig(rc)
	if err != nil {
		b.Fatal(err)
	}

	// 500 Nodes as both agents expect a peer's: podCIDR and annotations.
	t0 := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for j := 1; j <= benchSims; j++ {
		g.Go(func() error {
			n := simNode(j)
			maps.Copy(n.Annotations, simAnnotations(j))
			_, err := c.CoreV1().Nodes().Create(gctx, n, metav1.CreateOptions{})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatalf("creating %d Nodes: %v", benchSims, err)
	}
	b.Logf("created %d Nodes in %s", benchSims, time.Since(t0).Round(time.Millisecond))

	dir := b.TempDir()
	apiPort := lc.Endpoint[strings.LastIndex(lc.Endpoint, ":")+1:]
	ours := &benchAgent{name: "ours", node: "kf-self", publicIP: "192.0.2.1", self: 1000}
	flannel := &benchAgent{name: "flanneld", node: "fl-self", publicIP: "192.0.2.2", self: 1001}
	for _, a := range []*benchAgent{ours, flannel} {
		// The agent's own Node, as the kubelet and kube-controller-manager leave
		// it: registered, with a podCIDR, no overlay annotations yet.
		n := simNode(a.self)
		n.Name = a.node
		if _, err := c.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		// The underlay: a veth to a namespace of its own (this kernel has no
		// dummy links); nothing is sent over it.
		a.ns = nettest.New(b)
		nettest.Link(b, a.ns, "eth0", a.publicIP+"/24", nettest.New(b), "eth0", "192.0.2.254/24")
		forward(b, a.ns.Handle, "127.0.0.1:"+apiPort, lc.Endpoint)
		a.routes = watchRoutes(b, a.ns)
		a.dir = filepath.Join(dir, a.name)
		if err := os.MkdirAll(a.dir, 0o755); err != nil {
			b.Fatal(err)
		}
	}

	// Ours: `kubeforge overlay run` with its configuration file.
	cfg, err := yaml.Marshal(overlay.Config{NodeName: ours.node, PublicIP: ours.publicIP, Backend: overlay.BackendKube,
		Kubeconfig: kubeconfig, Network: &benchNet, HealthAddress: "127.0.0.1:9473",
		SubnetFile: filepath.Join(ours.dir, "subnet.env"), CNIConfFile: filepath.Join(ours.dir, "10-kubeforge.conflist")})
	if err != nil {
		b.Fatal(err)
	}
	ovlConf := filepath.Join(ours.dir, "overlay.yaml")
	if err := os.WriteFile(ovlConf, cfg, 0o600); err != nil {
		b.Fatal(err)
	}
	ours.argv = []string{kubeforge, "overlay", "run", "--config", ovlConf}

	// flanneld as its kube-subnet-mgr mode wants it: NODE_NAME, the kubeconfig,
	// net-conf.json (what kube-flannel's ConfigMap holds), --ip-masq as the
	// kube-flannel DaemonSet runs it (ours masquerades by default).
	netConf, _ := json.Marshal(map[string]any{"Network": benchNet.Network, "Backend": map[string]any{"Type": "vxlan", "VNI": benchNet.VNI, "Port": benchNet.Port}})
	netConfPath := filepath.Join(flannel.dir, "net-conf.json")
	if err := os.WriteFile(netConfPath, netConf, 0o644); err != nil {
		b.Fatal(err)
	}
	flannel.argv = []string{flanneld, "--kube-subnet-mgr", "--kubeconfig-file=" + kubeconfig, "--net-config-path=" + netConfPath,
		"--subnet-file=" + filepath.Join(flannel.dir, "subnet.env"), "--public-ip=" + flannel.publicIP, "--ip-masq"}
	flannel.env = []string{"NODE_NAME=" + flannel.node}

	// Start each, one after the other, and wait for its 500 routes.
	want := make([]netip.Prefix, 0, benchSims)
	for j := 1; j <= benchSims; j++ {
		want = append(want, simPrefix(j))
	}
	for _, a := range []*benchAgent{ours, flannel} {
		a.start(b)
		if err := a.routes.waitAll(ctx, a, want, 5*time.Minute); err != nil {
			b.Fatalf("%s: %v\n%s", a.name, err, a.tail())
		}
		a.startToAll = a.routes.last(want).Sub(a.started)
		a.rssReady = procStatusKiB(a.cmd.Process.Pid, "VmRSS")
		b.Logf("%s: %d routes %s after start, RSS %.1f MiB", a.name, len(want), a.startToAll.Round(time.Millisecond), float64(a.rssReady)/1024)
	}

	// New Nodes, one at a time: registered first (no annotations: no agent
	// routes it), then both agents' annotations in one write. A plain watch of
	// this process shows how much of the time is the API's: the write's round
	// trip, and when its watch event reaches a client that does nothing else.
	seen := watchAnnotated(b, ctx, c)
	var rtt, delivered []time.Duration
	b.ResetTimer()
	for i := 0; i < benchNew; i++ {
		j := benchSims + 1 + i
		n := simNode(j)
		if _, err := c.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": simAnnotations(j)}})
		t1 := time.Now()
		if _, err := c.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			b.Fatal(err)
		}
		rtt = append(rtt, time.Since(t1))
		for _, a := range []*benchAgent{ours, flannel} {
			p := []netip.Prefix{simPrefix(j)}
			if err := a.routes.waitAll(ctx, a, p, time.Minute); err != nil {
				b.Fatalf("%s: Node %s: %v\n%s", a.name, n.Name, err, a.tail())
			}
			a.lat = append(a.lat, a.routes.last(p).Sub(t1))
		}
		if at, ok := seen.at(ctx, n.Name, 10*time.Second); ok {
			delivered = append(delivered, at.Sub(t1))
			for _, a := range []*benchAgent{ours, flannel} {
				a.afterEvent = append(a.afterEvent, a.routes.last([]netip.Prefix{simPrefix(j)}).Sub(at))
			}
		}
		// Let both settle before the next write.
		time.Sleep(100 * time.Millisecond)
	}
	b.StopTimer()
	for _, a := range []*benchAgent{ours, flannel} {
		if !a.running() {
			b.Fatalf("%s exited during the run\n%s", a.name, a.tail())
		}
		a.rssEnd = procStatusKiB(a.cmd.Process.Pid, "VmRSS")
		a.rssPeak = procStatusKiB(a.cmd.Process.Pid, "VmHWM")
		a.rssAnon = procStatusKiB(a.cmd.Process.Pid, "RssAnon")
		a.rssFile = procStatusKiB(a.cmd.Process.Pid, "RssFile")
		// A real outcome, not only events: every route is in the kernel.
		if got := a.routes.count(b); got < benchSims+benchNew {
			b.Fatalf("%s: %d of %d routes in the kernel at the end", a.name, got, benchSims+benchNew)
		}
		slices.Sort(a.lat)
		slices.Sort(a.afterEvent)
	}
	slices.Sort(rtt)
	slices.Sort(delivered)

	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	mib := func(kib int) float64 { return float64(kib) / 1024 }
	yes := func(ok bool) string {
		if ok {
			return "yes"
		}
		return "no"
	}
	p50 := func(a *benchAgent) time.Duration { return median(a.lat) }
	mx := func(a *benchAgent) time.Duration { return a.lat[len(a.lat)-1] }
	rows := [][4]string{
		{"start to 500 routes (ms)", fmt.Sprintf("%.0f", ms(ours.startToAll)), fmt.Sprintf("%.0f", ms(flannel.startToAll)), "(no goal)"},
		{fmt.Sprintf("annotations to route, p50 of %d (ms)", benchNew), fmt.Sprintf("%.1f", ms(p50(ours))), fmt.Sprintf("%.1f", ms(p50(flannel))),
			yes(p50(ours) <= p50(flannel)/2) + " (goal: at most half)"},
		{fmt.Sprintf("annotations to route, max of %d (ms)", benchNew), fmt.Sprintf("%.1f", ms(mx(ours))), fmt.Sprintf("%.1f", ms(mx(flannel))), "(no goal)"},
		{"route after the event reached the plain client, p50 (ms)", fmt.Sprintf("%.1f", ms(median(ours.afterEvent))), fmt.Sprintf("%.1f", ms(median(flannel.afterEvent))), "(the agent's own share)"},
		{"RSS at the end (MiB)", fmt.Sprintf("%.1f", mib(ours.rssEnd)), fmt.Sprintf("%.1f", mib(flannel.rssEnd)),
			yes(ours.rssEnd <= flannel.rssEnd) + " (goal: at most flanneld's)"},
		{"RSS peak, VmHWM (MiB)", fmt.Sprintf("%.1f", mib(ours.rssPeak)), fmt.Sprintf("%.1f", mib(flannel.rssPeak)), "(no goal)"},
		{"RSS at the end: anonymous / file-backed (MiB)", fmt.Sprintf("%.1f / %.1f", mib(ours.rssAnon), mib(ours.rssFile)), fmt.Sprintf("%.1f / %.1f", mib(flannel.rssAnon), mib(flannel.rssFile)), "(heap and stacks / the binary's pages)"},
		{"RSS when 500 routes were in (MiB)", fmt.Sprintf("%.1f", mib(ours.rssReady)), fmt.Sprintf("%.1f", mib(flannel.rssReady)), "(no goal)"},
	}
	// On stdout: go test cuts a benchmark's log after a few lines.
	fmt.Printf("\n%d Nodes, %d new ones annotated one at a time; %s\n%s\n", benchSims, benchNew, time.Now().UTC().Format(time.RFC3339), loadNote())
	fmt.Print(table([4]string{"figure", "ours", "flanneld " + flannelVersion, "goal met?"}, rows))
	fmt.Printf("the API's share of annotations to route, the same write for both: its round trip p50 %.1f ms; its watch event at a plain client of this process p50 %.1f ms (%d of %d seen)\n",
		ms(median(rtt)), ms(median(delivered)), len(delivered), benchNew)
	for _, a := range []*benchAgent{ours, flannel} {
		b.ReportMetric(ms(a.startToAll), "ms-start-to-500-routes-"+a.name)
		b.ReportMetric(ms(p50(a)), "ms-p50-annotated-to-route-"+a.name)
		b.ReportMetric(ms(mx(a)), "ms-max-annotated-to-route-"+a.name)
		b.ReportMetric(mib(a.rssEnd), "MiB-rss-"+a.name)
	}
}

// benchAgent is one agent process of the side-by-side bench and its figures.
type benchAgent struct {
	name, node, publicIP string
	self                 int // its Node's index (podCIDR)
	ns                   *nettest.NS
	dir                  string
	argv, env            []string
	routes               *routeWatch

	cmd     *exec.Cmd
	log     string
	done    chan struct{}
	started time.Time

	startToAll                                  time.Duration
	lat, afterEvent                             []time.Duration
	rssReady, rssEnd, rssPeak, rssAnon, rssFile int
}

// start runs the agent inside its namespace (ip netns exec execs it, so the
// process is the agent itself) until the benchmark ends.
func (a *benchAgent) start(b *testing.B) {
	b.Helper()
	a.log = filepath.Join(a.dir, a.name+".log")
	f, err := os.Create(a.log)
	if err != nil {
		b.Fatal(err)
	}
	a.cmd = exec.Command("ip", append([]string{"netns", "exec", a.ns.Name}, a.argv...)...)
	a.cmd.Env = append(os.Environ(), a.env...)
	a.cmd.Stdout, a.cmd.Stderr = f, f
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	a.done = make(chan struct{})
	a.started = time.Now()
	if err := a.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() { _ = a.cmd.Wait(); f.Close(); close(a.done) }()
	b.Cleanup(func() {
		_ = a.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-a.done:
		case <-time.After(20 * time.Second):
			_ = a.cmd.Process.Kill()
			<-a.done
		}
	})
}

func (a *benchAgent) running() bool {
	select {
	case <-a.done:
		return false
	default:
		return true
	}
}

// tail is the agent's last 30 lines of output.
func (a *benchAgent) tail() string {
	data, _ := os.ReadFile(a.log)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return a.name + " (" + a.log + "):\n" + strings.Join(lines, "\n")
}

// routeWatch records when each pod-network route appears in a namespace's main
// table, from the kernel's route notifications (no polling of the kernel).
type routeWatch struct {
	ns   *nettest.NS
	mu   sync.Mutex
	seen map[netip.Prefix]time.Time
	lost error // the subscription failed: fall back to listing routes
}

func watchRoutes(b *testing.B, ns *nettest.NS) *routeWatch {
	b.Helper()
	w := &routeWatch{ns: ns, seen: map[netip.Prefix]time.Time{}}
	ch, done := make(chan netlink.RouteUpdate, 4096), make(chan struct{})
	h := ns.Handle
	err := netlink.RouteSubscribeWithOptions(ch, done, netlink.RouteSubscribeOptions{
		Namespace: &h, ReceiveBufferSize: 16 << 20, ReceiveBufferForceSize: true,
		ErrorCallback: func(err error) {
			w.mu.Lock()
			w.lost = err
			w.mu.Unlock()
		},
	})
	if err != nil {
		b.Fatalf("%s: subscribing to routes: %v", ns.Name, err)
	}
	b.Cleanup(func() { close(done) })
	podNet := benchNet.Prefix()
	go func() {
		for u := range ch {
			now := time.Now()
			p, ok := routePrefix(u.Route)
			if !ok || u.Table != unix.RT_TABLE_MAIN || !podNet.Contains(p.Addr()) {
				continue
			}
			w.mu.Lock()
			switch u.Type {
			case unix.RTM_NEWROUTE:
				if _, had := w.seen[p]; !had {
					w.seen[p] = now
				}
			case unix.RTM_DELROUTE:
				delete(w.seen, p)
			}
			w.mu.Unlock()
		}
	}()
	return w
}

func routePrefix(r netlink.Route) (netip.Prefix, bool) {
	if r.Dst == nil {
		return netip.Prefix{}, false
	}
	addr, ok := netip.AddrFromSlice(r.Dst.IP.To4())
	if !ok {
		return netip.Prefix{}, false
	}
	bits, _ := r.Dst.Mask.Size()
	return netip.PrefixFrom(addr, bits), bits == benchNet.SubnetLen
}

// waitAll waits until every prefix of want has a route, or the agent exits.
func (w *routeWatch) waitAll(ctx context.Context, a *benchAgent, want []netip.Prefix, timeout time.Duration) error {
	missing := func() int {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.lost != nil {
			// Notifications were dropped: look at the kernel, and take now as the
			// time of what is there.
			rs, err := w.ns.NL.RouteList(nil, netlink.FAMILY_V4)
			if err == nil {
				now := time.Now()
				for _, r := range rs {
					if p, ok := routePrefix(r); ok {
						if _, had := w.seen[p]; !had {
							w.seen[p] = now
						}
					}
				}
			}
		}
		n := 0
		for _, p := range want {
			if _, ok := w.seen[p]; !ok {
				n++
			}
		}
		return n
	}
	var exited error
	err := wait.PollUntilContextTimeout(ctx, time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		if !a.running() {
			exited = errors.New("the agent exited")
			return false, exited
		}
		return missing() == 0, nil
	})
	if exited != nil {
		return exited
	}
	if err != nil {
		return fmt.Errorf("%d of %d routes missing after %s", missing(), len(want), timeout)
	}
	return nil
}

// last is when the last route of want appeared.
func (w *routeWatch) last(want []netip.Prefix) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	var t time.Time
	for _, p := range want {
		if s := w.seen[p]; s.After(t) {
			t = s
		}
	}
	return t
}

// count is the number of pod-network /24 routes in the namespace's kernel table.
func (w *routeWatch) count(b *testing.B) int {
	rs, err := w.ns.NL.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for _, r := range rs {
		if p, ok := routePrefix(r); ok && benchNet.Prefix().Contains(p.Addr()) {
			n++
		}
	}
	return n
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[len(d)/2]
}

// annotatedWatch records when each Node's overlay annotations first arrive in
// a plain watch of this process.
type annotatedWatch struct {
	mu      sync.Mutex
	arrived map[string]time.Time
}

func watchAnnotated(b *testing.B, ctx context.Context, c kubernetes.Interface) *annotatedWatch {
	b.Helper()
	l, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{Limit: 1})
	if err != nil {
		b.Fatal(err)
	}
	timeout := int64(3600)
	w, err := c.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{ResourceVersion: l.ResourceVersion, TimeoutSeconds: &timeout})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(w.Stop)
	s := &annotatedWatch{arrived: map[string]time.Time{}}
	go func() {
		for ev := range w.ResultChan() {
			now := time.Now()
			n, ok := ev.Object.(*corev1.Node)
			if !ok || n.Annotations[subnet.AnnotationVtepMAC] == "" {
				continue
			}
			s.mu.Lock()
			if _, had := s.arrived[n.Name]; !had {
				s.arrived[n.Name] = now
			}
			s.mu.Unlock()
		}
	}()
	return s
}

// at is when Node name's annotations arrived; false if they did not within timeout.
func (s *annotatedWatch) at(ctx context.Context, name string, timeout time.Duration) (time.Time, bool) {
	var t time.Time
	err := wait.PollUntilContextTimeout(ctx, time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		var ok bool
		t, ok = s.arrived[name]
		return ok, nil
	})
	return t, err == nil
}

func simPrefix(j int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(128 + j/256), byte(j % 256), 0}), 24)
}

// simNode is simulated Node j: registered, with its podCIDR and the
// annotations a kubelet puts on its Node. (flanneld v0.26.7 panics on a Node
// with no annotations at all: kube.go writes into the nil map.)
func simNode(j int) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("sim%04d", j),
		Annotations: map[string]string{"volumes.kubernetes.io/controller-managed-attach-detach": "true", "node.alpha.kubernetes.io/ttl": "0"}},
		Spec: corev1.NodeSpec{PodCIDR: simPrefix(j).String()}}
}

// simAnnotations are both agents' annotations of Node j, as each agent would
// write them on its own Node: ours (VTEP MAC and address) and flannel's
// (backend type and data, public IP, kube-subnet-manager).
func simAnnotations(j int) map[string]string {
	mac := fmt.Sprintf("0e:5e:00:00:%02x:%02x", j/256, j%256)
	ip := fmt.Sprintf("198.18.%d.%d", j/250, 1+j%250)
	return map[string]string{
		subnet.AnnotationVtepMAC:              mac,
		subnet.AnnotationPublicIP:             ip,
		flannelPrefix + "backend-type":        "vxlan",
		flannelPrefix + "backend-data":        fmt.Sprintf(`{"VNI":%d,"VtepMAC":%q}`, benchNet.VNI, mac),
		flannelPrefix + "public-ip":           ip,
		flannelPrefix + "kube-subnet-manager": "true",
	}
}

// forward serves to on addr inside ns: the listener is opened in the
// namespace, the connections to to are made from this process's own.
func forward(b *testing.B, ns netns.NsHandle, addr, to string) {
	b.Helper()
	var l net.Listener
	if err := vxlan.InNetns(ns, func() (err error) { l, err = net.Listen("tcp", addr); return err }); err != nil {
		b.Fatalf("listening on %s in the namespace: %v", addr, err)
	}
	var wg sync.WaitGroup
	b.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer in.Close()
				out, err := net.Dial("tcp", to)
				if err != nil {
					return
				}
				defer out.Close()
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(out, in); done <- struct{}{} }()
				go func() { _, _ = io.Copy(in, out); done <- struct{}{} }()
				<-done
			}()
		}
	}()
}

// kubeforgeBinary is KUBEFORGE_BIN, or kubeforge built as `make build` does.
func kubeforgeBinary(b *testing.B) string {
	b.Helper()
	if p := os.Getenv("KUBEFORGE_BIN"); p != "" {
		return p
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		b.Skip("no go command to build kubeforge with (set KUBEFORGE_BIN)")
	}
	out := filepath.Join(b.TempDir(), "kubeforge")
	cmd := exec.Command(goBin, "build", "-trimpath", "-o", out, "github.com/kubeforge/kubeforge/cmd/kubeforge")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("building kubeforge: %v\n%s", err, msg)
	}
	return out
}

// procStatusKiB is a kB field of /proc/PID/status (VmRSS, VmHWM), 0 when unknown.
func procStatusKiB(pid int, field string) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == field+":" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}

// table renders rows under head as a Markdown table.
func table(head [4]string, rows [][4]string) string {
	var s strings.Builder
	line := func(r [4]string) { fmt.Fprintf(&s, "| %s | %s | %s | %s |\n", r[0], r[1], r[2], r[3]) }
	line(head)
	s.WriteString("|---|---:|---:|---|\n")
	for _, r := range rows {
		line(r)
	}
	return s.String()
}

// loadNote says how busy the machine was: the figures depend on it.
func loadNote() string {
	data, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return ""
	}
	return fmt.Sprintf("machine: %d CPUs, load average %s %s %s (1/5/15 min) at the end", runtime.NumCPU(), f[0], f[1], f[2])
}
