package overlay

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kubeforge/kubeforge/components/overlay/internal/etcdtest"
	"github.com/kubeforge/kubeforge/components/overlay/internal/nettest"
	"github.com/kubeforge/kubeforge/components/overlay/iptables"
	"github.com/kubeforge/kubeforge/components/overlay/subnet"
	"github.com/kubeforge/kubeforge/components/overlay/vxlan"
)

type syncLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *syncLog) logf(f string, a ...any) {
	l.mu.Lock()
	l.lines = append(l.lines, fmt.Sprintf(f, a...))
	l.mu.Unlock()
}

func (l *syncLog) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func (l *syncLog) reset() {
	l.mu.Lock()
	l.lines = nil
	l.mu.Unlock()
}

type testNode struct {
	name  string
	ns    *nettest.NS
	ip    string
	dir   string
	cfg   *Config
	agent *Agent
	log   *syncLog
	stop  context.CancelFunc
	done  chan error
}

func testNetwork() *subnet.Config {
	return &subnet.Config{Network: "10.244.0.0/16", SubnetLen: 24, VNI: 1, Port: 8472}
}

// newTestNode prepares an agent whose subnet.env (from a "previous run") hints at
// hint, so tests know which subnets the agents get and can use others freely.
func newTestNode(t *testing.T, name, ip string, ns *nettest.NS, endpoint, hint string) *testNode {
	dir := t.TempDir()
	p := netip.MustParsePrefix(hint)
	env := fmt.Sprintf("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=%s/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n", p.Addr().Next())
	if err := os.WriteFile(filepath.Join(dir, "subnet.env"), []byte(env), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := &Config{
		NodeName:          name,
		PublicIP:          ip,
		Backend:           BackendEtcd,
		Etcd:              Etcd{Endpoints: []string{endpoint}},
		Network:           testNetwork(),
		TxChecksumOffload: vxlan.TxOffloadAuto,
		HealthAddress:     "127.0.0.1:0",
		SubnetFile:        filepath.Join(dir, "subnet.env"),
		CNIConfFile:       filepath.Join(dir, "net.d", "10-kubeforge.conflist"),
	}
	cfg.SetDefaults()
	return &testNode{name: name, ns: ns, ip: ip, dir: dir, cfg: cfg, log: &syncLog{}}
}

func (n *testNode) start(t *testing.T) {
	t.Helper()
	ready := make(chan struct{})
	a, err := New(n.cfg, Options{
		NS: n.ns.Handle, IPTables: iptables.Exec(n.ns.Prefix()...),
		KernelRelease: "4.18.0-553.el8_10.x86_64", Logf: n.log.logf,
		Ready: func() { close(ready) },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.agent, n.stop, n.done = a, cancel, make(chan error, 1)
	go func() { n.done <- a.Run(ctx) }()
	select {
	case <-ready:
	case err := <-n.done:
		t.Fatalf("agent %s exited during setup: %v\n%s", n.name, err, n.log.text())
	case <-time.After(60 * time.Second):
		t.Fatalf("agent %s not ready after 60s:\n%s", n.name, n.log.text())
	}
}

func (n *testNode) halt(t *testing.T) {
	if n.stop == nil {
		return
	}
	n.stop()
	if err := <-n.done; err != nil {
		t.Errorf("agent %s: %v", n.name, err)
	}
	n.stop = nil
}

func (n *testNode) status() Status { return n.agent.Status() }

func (n *testNode) hasPeer(sub string) bool {
	for _, p := range n.status().Peers {
		if p.Subnet == sub {
			return true
		}
	}
	return false
}

func (n *testNode) routes(t *testing.T) string {
	return n.ns.Run(t, "ip", "route", "show", "dev", "kubeforge.1")
}

// eventually waits for cond; the deadline only bounds a hang, it asserts nothing
// about speed.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func putLease(t *testing.T, cli *clientv3.Client, sub, node, ip, mac string) {
	t.Helper()
	p := netip.MustParsePrefix(sub)
	if _, err := cli.Put(context.Background(), subnet.SubnetKey(subnet.DefaultPrefix, p), fmt.Sprintf(`{"node":%q,"publicIP":%q,"vtepMAC":%q}`, node, ip, mac)); err != nil {
		t.Fatal(err)
	}
}

func twoNodes(t *testing.T, srv *etcdtest.Server) (*testNode, *testNode) {
	nsA, nsB := nettest.New(t), nettest.New(t)
	nettest.Link(t, nsA, "eth0", "192.0.2.1/24", nsB, "eth0", "192.0.2.2/24")
	return newTestNode(t, "node-a", "192.0.2.1", nsA, srv.Endpoint, "10.244.1.0/24"), newTestNode(t, "node-b", "192.0.2.2", nsB, srv.Endpoint, "10.244.2.0/24")
}

func TestAgent(t *testing.T) {
	nettest.Require(t)
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	a, b := twoNodes(t, srv)
	a.start(t)
	t.Cleanup(func() { a.halt(t) })
	b.start(t)
	t.Cleanup(func() { b.halt(t) })
	sa, sb := a.status().Subnet, b.status().Subnet
	if sa != "10.244.1.0/24" || sb != "10.244.2.0/24" {
		t.Fatalf("subnets %q and %q; want the ones subnet.env hinted at", sa, sb)
	}
	eventually(t, "each agent programming the other", func() bool { return a.hasPeer(sb) && b.hasPeer(sa) })

	t.Run("node setup", func(t *testing.T) {
		env, err := os.ReadFile(a.cfg.SubnetFile)
		sub := netip.MustParsePrefix(sa)
		if err != nil || !strings.Contains(string(env), fmt.Sprintf("FLANNEL_SUBNET=%s/24\n", sub.Addr().Next())) || !strings.Contains(string(env), "FLANNEL_MTU=1450\n") {
			t.Errorf("subnet.env: %q %v", env, err)
		}
		if conf, err := os.ReadFile(a.cfg.CNIConfFile); err != nil || !strings.Contains(string(conf), `"subnet": "`+sa+`"`) {
			t.Errorf("cni config: %s %v", conf, err)
		}
		if out := a.ns.Run(t, "iptables", "-t", "nat", "-S", "KUBEFORGE-POSTRTG"); !strings.Contains(out, "-d "+sa+" ") {
			t.Errorf("nat rules:\n%s", out)
		}
		if out := strings.TrimSpace(a.ns.Run(t, "cat", "/proc/sys/net/ipv4/ip_forward")); out != "1" {
			t.Errorf("ip_forward %s", out)
		}
		if st := a.status(); !strings.HasPrefix(st.TxChecksumOffload, "off (RHEL 8") {
			t.Errorf("tx checksum offload on a RHEL 8 kernel: %q", st.TxChecksumOffload)
		}
		if !strings.Contains(a.routes(t), sb+" via "+netip.MustParsePrefix(sb).Addr().String()+" onlink") {
			t.Errorf("node-a routes:\n%s", a.routes(t))
		}
	})

	t.Run("pod addresses reach each other across the overlay", func(t *testing.T) {
		ipA := netip.MustParsePrefix(sa).Addr().Next()
		ipB := netip.MustParsePrefix(sb).Addr().Next()
		a.ns.Run(t, "ip", "addr", "add", ipA.String()+"/32", "dev", "lo")
		b.ns.Run(t, "ip", "addr", "add", ipB.String()+"/32", "dev", "lo")
		var ln net.Listener
		if err := vxlan.InNetns(b.ns.Handle, func() (err error) { ln, err = net.Listen("tcp4", ipB.String()+":0"); return }); err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		payload := make([]byte, 1<<20)
		_, _ = rand.Read(payload)
		got := make(chan []byte, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				got <- nil
				return
			}
			data, _ := io.ReadAll(c)
			c.Close()
			got <- data
		}()
		var c net.Conn
		if err := vxlan.InNetns(a.ns.Handle, func() (err error) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IP(ipA.AsSlice())}, Timeout: 10 * time.Second}
			c, err = d.Dial("tcp4", ln.Addr().String())
			return
		}); err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write(payload)
		c.Close()
		if data := <-got; !bytes.Equal(data, payload) {
			t.Fatalf("got %d bytes, want %d", len(data), len(payload))
		}
	})

	t.Run("health and metrics", func(t *testing.T) {
		resp, err := http.Get("http://" + a.agent.Addr().String() + "/healthz")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("healthz: %v %v", resp, err)
		}
		resp.Body.Close()
		resp, err = http.Get("http://" + a.agent.Addr().String() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, want := range []string{"kubeforge_overlay_peers 1\n", "kubeforge_overlay_leases 2\n", "kubeforge_overlay_ready 1\n",
			`kubeforge_overlay_program_duration_seconds_count{op="sync"} 1`, "# TYPE kubeforge_overlay_program_duration_seconds histogram"} {
			if !strings.Contains(string(body), want) {
				t.Errorf("metrics lack %q:\n%s", want, body)
			}
		}
		st, err := FetchStatus(context.Background(), a.agent.Addr().String())
		if err != nil || st.Subnet != sa || len(st.Peers) != 1 || st.Peers[0].Node != "node-b" {
			t.Fatalf("status over HTTP: %+v %v", st, err)
		}
		var text bytes.Buffer
		_ = st.WriteText(&text)
		if !strings.Contains(text.String(), sb) || !strings.Contains(text.String(), "node-b") {
			t.Errorf("status text:\n%s", text.String())
		}
	})

	t.Run("leases come and go by watch", func(t *testing.T) {
		putLease(t, cli, "10.244.200.0/24", "sim1", "192.0.2.50", "0e:00:00:00:00:50")
		eventually(t, "sim1 on both", func() bool { return a.hasPeer("10.244.200.0/24") && b.hasPeer("10.244.200.0/24") })
		if !strings.Contains(a.routes(t), "10.244.200.0/24 via 10.244.200.0 onlink") {
			t.Fatalf("route for sim1 missing:\n%s", a.routes(t))
		}
		// The simulated node moves to another host: fdb follows.
		putLease(t, cli, "10.244.200.0/24", "sim1", "192.0.2.51", "0e:00:00:00:00:50")
		eventually(t, "sim1's new address", func() bool {
			return strings.Contains(a.ns.Run(t, "bridge", "fdb", "show", "dev", "kubeforge.1"), "0e:00:00:00:00:50 dst 192.0.2.51 self permanent")
		})
		if _, err := cli.Delete(context.Background(), subnet.SubnetKey(subnet.DefaultPrefix, netip.MustParsePrefix("10.244.200.0/24"))); err != nil {
			t.Fatal(err)
		}
		eventually(t, "sim1 gone from both", func() bool {
			return !a.hasPeer("10.244.200.0/24") && !b.hasPeer("10.244.200.0/24") &&
				!strings.Contains(a.routes(t), "10.244.200.0") && !strings.Contains(b.routes(t), "10.244.200.0")
		})
		if fdb := a.ns.Run(t, "bridge", "fdb", "show", "dev", "kubeforge.1"); strings.Contains(fdb, "0e:00:00:00:00:50") {
			t.Errorf("fdb entry left:\n%s", fdb)
		}
		// A lease that claims node-a's own address is refused, not programmed.
		putLease(t, cli, "10.244.201.0/24", "impostor", "192.0.2.1", "0e:00:00:00:00:51")
		eventually(t, "node-b programming the impostor", func() bool { return b.hasPeer("10.244.201.0/24") })
		eventually(t, "node-a refusing the impostor", func() bool { return strings.Contains(a.log.text(), "claims this node's address") })
		if a.hasPeer("10.244.201.0/24") || strings.Contains(a.routes(t), "10.244.201.0") {
			t.Errorf("node-a programmed a lease with its own address")
		}
		_, _ = cli.Delete(context.Background(), subnet.SubnetKey(subnet.DefaultPrefix, netip.MustParsePrefix("10.244.201.0/24")))
		eventually(t, "impostor gone", func() bool { return !b.hasPeer("10.244.201.0/24") })
	})

	t.Run("restart keeps the subnet and changes nothing on peers", func(t *testing.T) {
		before := a.status()
		a.halt(t)
		resp, _ := cli.Get(context.Background(), subnet.SubnetKey(subnet.DefaultPrefix, netip.MustParsePrefix(sa)))
		if len(resp.Kvs) != 1 {
			t.Fatalf("a clean stop removed the lease")
		}
		b.log.reset()
		a.start(t)
		after := a.status()
		if after.Subnet != before.Subnet || after.LeaseID != before.LeaseID || after.VtepMAC != before.VtepMAC {
			t.Fatalf("after restart %+v, before %+v", after, before)
		}
		if !strings.Contains(a.log.text(), "0 added, 0 updated, 0 removed, 1 unchanged") {
			t.Errorf("restart reprogrammed entries:\n%s", a.log.text())
		}
		if strings.Contains(b.log.text(), "peer") {
			t.Errorf("node-b changed something for node-a's restart:\n%s", b.log.text())
		}
	})

	t.Run("own lease deleted: registered again", func(t *testing.T) {
		key := subnet.SubnetKey(subnet.DefaultPrefix, netip.MustParsePrefix(sa))
		if _, err := cli.Delete(context.Background(), key); err != nil {
			t.Fatal(err)
		}
		eventually(t, "node-a's key back", func() bool {
			resp, err := cli.Get(context.Background(), key)
			return err == nil && len(resp.Kvs) == 1 && resp.Kvs[0].Lease != 0
		})
		eventually(t, "node-b programming node-a again", func() bool { return b.hasPeer(sa) })
		if a.status().Subnet != sa {
			t.Fatalf("node-a moved to %s", a.status().Subnet)
		}
	})

	t.Run("device deleted behind the agent's back is rebuilt", func(t *testing.T) {
		a.ns.Run(t, "ip", "link", "del", "kubeforge.1")
		eventually(t, "kubeforge.1 and its route back", func() bool {
			out, err := a.ns.Try("ip", "route", "show", "dev", "kubeforge.1")
			return err == nil && strings.Contains(out, sb+" via")
		})
	})

	t.Run("etcd restart: reconnect and resync", func(t *testing.T) {
		before := b.status().Resyncs
		srv.Restart(t)
		// While b was cut off nothing changed; a change after the reconnect
		// still arrives.
		eventually(t, "node-b resyncing after the reconnect", func() bool { return b.status().Resyncs > before })
		if st := b.status(); !strings.HasPrefix(st.LastResync, "etcd watch stream re-established") {
			t.Errorf("last resync: %q", st.LastResync)
		}
		putLease(t, cli, "10.244.202.0/24", "sim2", "192.0.2.60", "0e:00:00:00:00:60")
		eventually(t, "sim2 on both after the restart", func() bool { return a.hasPeer("10.244.202.0/24") && b.hasPeer("10.244.202.0/24") })
	})
}

func TestConfigParse(t *testing.T) {
	good := `nodeName: node01
publicIP: 192.168.161.152
backend: etcd
etcd:
  endpoints: [https://192.168.161.151:2379]
  caFile: /etc/kubernetes/pki/etcd/ca.crt
  certFile: /etc/kubernetes/pki/etcd/overlay-client.crt
  keyFile: /etc/kubernetes/pki/etcd/overlay-client.key
network: {network: 10.244.0.0/16, subnetLen: 24, vni: 1, port: 8472}
`
	c, err := ParseConfig([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if c.HealthAddress != DefaultHealth || c.TTL() != 24*time.Hour || !*c.IPMasq || c.TxChecksumOffload != "disabled" || c.Etcd.Prefix != "/kubeforge/network" {
		t.Errorf("defaults: %+v", c)
	}
	out, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if c2, err := ParseConfig(out); err != nil || c2.NodeName != "node01" || c2.Network.Network != "10.244.0.0/16" {
		t.Fatalf("round trip: %v\n%s", err, out)
	}
	if c, err := ParseConfig([]byte(strings.Replace(good, "backend: etcd\n", "", 1))); err != nil || c.Backend != BackendEtcd {
		t.Errorf("a config from before backends existed (etcd endpoints, no backend) must stay etcd: %+v %v", c, err)
	}
	kube := "nodeName: node01\npublicIP: 192.168.161.152\nkubeconfig: /etc/kubernetes/kubelet.conf\nnetwork: {network: 10.244.0.0/16, subnetLen: 24, vni: 1, port: 8472}\n"
	if c, err := ParseConfig([]byte(kube)); err != nil || c.Backend != BackendKube {
		t.Fatalf("kube is the default backend and needs no etcd: %+v %v", c, err)
	}
	if _, err := ParseConfig([]byte(strings.Replace(kube, "network:", "x:", 1))); err == nil {
		t.Errorf("kube backend without a network accepted")
	}
	for bad, want := range map[string]string{
		strings.Replace(good, "publicIP", "publicAddress", 1):                       "unknown field",
		strings.Replace(good, "192.168.161.152", "fd00::1", 1):                      "publicIP",
		strings.Replace(good, "  caFile: /etc/kubernetes/pki/etcd/ca.crt\n", "", 1): "etcd.caFile: required for https endpoints",
		strings.Replace(good, "https://192.168.161.151:2379", "192.168.161.151", 1): "etcd.endpoints[0]",
		strings.Replace(good, "subnetLen: 24", "subnetLen: 8", 1):                   "network: network config: subnetLen",
		good + "txChecksumOffload: off\n":                                           "txChecksumOffload",
		good + "leaseTTL: 1s\n":                                                     "leaseTTL",
		good + "subnetFile: subnet.env\n":                                           "subnetFile",
		strings.Replace(good, "backend: etcd", "backend: flannel", 1):               "backend",
		strings.Replace(good, "backend: etcd", "backend: kube", 1):                  "kubeconfig",
	} {
		if _, err := ParseConfig([]byte(bad)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("config with %q: %v", want, err)
		}
	}
}

func TestMetricsExposition(t *testing.T) {
	m := newMetrics()
	m.set("kubeforge_overlay_peers", 3)
	m.inc("kubeforge_overlay_errors_total", "op", "add")
	m.inc("kubeforge_overlay_errors_total", "op", "add")
	m.observe("add", 300*time.Microsecond)
	m.observe("add", 2*time.Second)
	var b bytes.Buffer
	if err := m.write(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"# TYPE kubeforge_overlay_peers gauge\nkubeforge_overlay_peers 3\n",
		"# TYPE kubeforge_overlay_errors_total counter\nkubeforge_overlay_errors_total{op=\"add\"} 2\n",
		"kubeforge_overlay_program_duration_seconds_bucket{op=\"add\",le=\"0.0001\"} 0\n",
		"kubeforge_overlay_program_duration_seconds_bucket{op=\"add\",le=\"0.0005\"} 1\n",
		"kubeforge_overlay_program_duration_seconds_bucket{op=\"add\",le=\"1\"} 1\n",
		"kubeforge_overlay_program_duration_seconds_bucket{op=\"add\",le=\"5\"} 2\n",
		"kubeforge_overlay_program_duration_seconds_bucket{op=\"add\",le=\"+Inf\"} 2\n",
		"kubeforge_overlay_program_duration_seconds_count{op=\"add\"} 2\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("exposition lacks %q:\n%s", want, out)
		}
	}
}
