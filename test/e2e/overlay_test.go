package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/lab"
	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/etcd"
	"github.com/kubeforge/kubeforge/components/overlay"
	"github.com/kubeforge/kubeforge/components/overlay/subnet"
)

// The overlay's end-to-end test: three lab hosts with a three-member etcd (TLS
// from the certs package), the agent installed by the real init/join overlay
// phases, pods (network namespaces on cni0) talking across real VXLAN, a fourth
// host joining, restarts, an etcd member killed under an agent, 500 simulated
// leases, iperf3 pod-to-pod against host-to-host, and reset.

const (
	ovSubnet  = "192.168.174.0/24"
	ovPodCIDR = "10.128.0.0/14" // 1024 /24 subnets: room for the 500-lease bench
	pkiDir    = "/etc/kubernetes/pki"
	etcdUnit  = "kf-e2e-etcd"
)

type ovLab struct {
	t       *testing.T
	s       *lab.State
	opts    lab.Options
	pki     string // local PKI dir
	spec    certs.Spec
	etcdCA  *certs.CA
	cluster *config.Cluster
	cli     *clientv3.Client
	etcdCmd map[string]string
}

// ssh runs cmd on host with stdin; it returns combined output and the error.
func (l *ovLab) ssh(host, cmd string, stdin []byte) (string, error) {
	c := labSSH(l.s, host, cmd)
	if stdin != nil {
		c.Stdin = bytes.NewReader(stdin)
	}
	out, err := c.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func (l *ovLab) run(host, cmd string) string {
	l.t.Helper()
	out, err := l.ssh(host, cmd, nil)
	if err != nil {
		l.t.Fatalf("%s: %s: %v\n%s", host, cmd, err, out)
	}
	return out
}

func (l *ovLab) put(host, path string, data []byte, mode os.FileMode) {
	l.t.Helper()
	cmd := fmt.Sprintf("mkdir -p %s && cat > %s.tmp && chmod %o %s.tmp && mv %s.tmp %s", filepath.Dir(path), path, mode, path, path, path)
	if out, err := l.ssh(host, cmd, data); err != nil {
		l.t.Fatalf("%s: writing %s: %v\n%s", host, path, err, out)
	}
}

func (l *ovLab) addr(host string) string {
	h, err := l.s.Host(host)
	if err != nil {
		l.t.Fatal(err)
	}
	return h.Address
}

func (l *ovLab) hostByAddr(addr string) string {
	for _, h := range l.s.Hosts {
		if h.Address == addr {
			return h.Name
		}
	}
	return ""
}

// writeCluster writes the lab's cluster config (with the test's pod CIDR) to host.
func (l *ovLab) writeCluster(hosts ...string) {
	l.t.Helper()
	c, err := l.s.ClusterConfig()
	if err != nil {
		l.t.Fatal(err)
	}
	c.Spec.Networking.PodCIDR = ovPodCIDR
	// This test is the etcd backend's (no Kubernetes here); TestNodes runs the
	// default kube backend.
	c.Spec.Networking.Overlay.Backend = config.OverlayBackendEtcd
	// The etcd backend refuses hosts without the etcd role (only they may hold
	// an etcd client certificate); the test's hosts all get one.
	for i := range c.Spec.Hosts {
		if !c.Spec.Hosts[i].HasRole(config.RoleEtcd) {
			w := *c
			if _, err := w.Validate(); err == nil || !strings.Contains(err.Error(), "spec.networking.overlay.backend is etcd") {
				l.t.Errorf("etcd backend with %s lacking the etcd role: %v", c.Spec.Hosts[i].Name, err)
			}
			c.Spec.Hosts[i].Roles = append(c.Spec.Hosts[i].Roles, config.RoleEtcd)
		}
	}
	data, err := config.Marshal(c)
	if err != nil {
		l.t.Fatal(err)
	}
	if _, err := config.Decode(data); err != nil {
		l.t.Fatalf("test cluster config: %v", err)
	}
	l.cluster = c
	for _, h := range hosts {
		l.put(h, "/root/cluster.yaml", data, 0o644)
	}
}

// certsFor copies what a host gets from the PKI: the etcd CA certificate, an
// etcd member's server and peer certificates, the CA key only on master01 (where
// the init phase then issues the overlay's client certificate itself), and a
// pre-issued overlay client certificate everywhere else (a host without the CA
// key must be handed one).
func (l *ovLab) certsFor(host string, member bool) {
	l.t.Helper()
	files := map[string][]byte{"etcd/ca.crt": l.etcdCA.CertPEM}
	if member {
		m, err := certs.IssueEtcdMemberFiles(l.etcdCA, l.spec, host)
		if err != nil {
			l.t.Fatal(err)
		}
		for k, v := range m {
			files[k] = v
		}
	}
	if host == "master01" {
		files["etcd/ca.key"] = l.etcdCA.KeyPEM
	} else {
		spec := l.spec
		spec.NodeName = host
		c, err := certs.IssueFiles(l.etcdCA, spec, certs.CertEtcdOverlayClient, "")
		if err != nil {
			l.t.Fatal(err)
		}
		for k, v := range c {
			files[k] = v
		}
	}
	for rel, data := range files {
		l.put(host, filepath.Join(pkiDir, rel), data, certs.FileMode(rel))
	}
}

func (l *ovLab) startEtcd(host string) {
	l.t.Helper()
	if l.etcdCmd == nil {
		l.etcdCmd = map[string]string{}
	}
	cmd, ok := l.etcdCmd[host]
	if !ok {
		var initial []string
		for _, m := range []string{"master01", "node01", "node02"} {
			initial = append(initial, fmt.Sprintf("%s=https://%s:2380", m, l.addr(m)))
		}
		a := l.addr(host)
		cmd = strings.Join([]string{"systemd-run", "--unit=" + etcdUnit, "/opt/kubeforge/bundle/bin/etcd",
			"--name=" + host, "--data-dir=/var/lib/kf-e2e-etcd",
			"--listen-client-urls=https://" + a + ":2379", "--advertise-client-urls=https://" + a + ":2379",
			"--listen-peer-urls=https://" + a + ":2380", "--initial-advertise-peer-urls=https://" + a + ":2380",
			"--initial-cluster=" + strings.Join(initial, ","), "--initial-cluster-state=new", "--initial-cluster-token=kf-e2e-overlay",
			"--client-cert-auth", "--trusted-ca-file=" + pkiDir + "/etcd/ca.crt",
			"--cert-file=" + pkiDir + "/etcd/server.crt", "--key-file=" + pkiDir + "/etcd/server.key",
			"--peer-client-cert-auth", "--peer-trusted-ca-file=" + pkiDir + "/etcd/ca.crt",
			"--peer-cert-file=" + pkiDir + "/etcd/peer.crt", "--peer-key-file=" + pkiDir + "/etcd/peer.key",
			"--log-level=warn"}, " ")
		l.etcdCmd[host] = cmd
	}
	l.run(host, "systemctl reset-failed "+etcdUnit+" 2>/dev/null; "+cmd)
}

// waitEtcd waits until every member answers a linearizable read.
func (l *ovLab) waitEtcd(members ...string) {
	l.t.Helper()
	tlsCfg := l.clientTLS()
	for _, m := range members {
		ep := "https://" + l.addr(m) + ":2379"
		waitFor(l.t, 60*time.Second, "etcd member "+m, func() bool {
			c, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, TLS: tlsCfg, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
			if err != nil {
				return false
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_, err = c.Get(ctx, "health")
			return err == nil
		})
	}
}

// clientTLS is the test's own etcd client identity (the health-check client),
// distinct from the overlay's.
func (l *ovLab) clientTLS() *tls.Config {
	l.t.Helper()
	d := etcd.PKIDir(l.pki)
	cfg, err := etcd.TLSFiles{CA: filepath.Join(d, "ca.crt"), Cert: filepath.Join(d, "healthcheck-client.crt"), Key: filepath.Join(d, "healthcheck-client.key")}.Config(etcd.LocalRead)
	if err != nil {
		l.t.Fatal(err)
	}
	return cfg
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (l *ovLab) status(host string) overlay.Status {
	l.t.Helper()
	out := l.run(host, overlay.BinaryPath+" overlay status -o json")
	var st overlay.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		l.t.Fatalf("%s: overlay status: %v\n%s", host, err, out)
	}
	return st
}

func (l *ovLab) journal(host string) string {
	out, _ := l.ssh(host, "journalctl -u "+overlay.UnitName+" -o cat --no-pager | tail -40", nil)
	return out
}

// routeCount counts the routes on the VXLAN device.
func (l *ovLab) routeCount(host string) int {
	l.t.Helper()
	n, err := strconv.Atoi(l.run(host, "ip route show dev kubeforge.1 | wc -l"))
	if err != nil {
		l.t.Fatal(err)
	}
	return n
}

// makePod does on host what the CNI bridge plugin does for a pod: cni0 with the
// subnet's gateway address, a network namespace with a veth on the bridge, the
// subnet's .10 and a default route via the gateway.
func (l *ovLab) makePod(host string, st overlay.Status) string {
	l.t.Helper()
	sub := netip.MustParsePrefix(st.Subnet)
	gw := sub.Addr().Next()
	pod := gw
	for i := 0; i < 9; i++ {
		pod = pod.Next()
	}
	script := fmt.Sprintf(`set -e
ip link show cni0 >/dev/null 2>&1 || ip link add cni0 type bridge
ip addr replace %[1]s/%[4]d dev cni0
ip link set cni0 up
ip netns add pod
ip link add vpod type veth peer name eth0 netns pod
ip link set vpod master cni0 mtu %[3]d up
ip -n pod link set lo up
ip -n pod addr add %[2]s/%[4]d dev eth0
ip -n pod link set eth0 mtu %[3]d up
ip -n pod route add default via %[1]s
`, gw, pod, st.MTU, sub.Bits())
	if out, err := l.ssh(host, "sh -s", []byte(script)); err != nil {
		l.t.Fatalf("%s: making a pod: %v\n%s", host, err, out)
	}
	return pod.String()
}

// iperf3 runs a 3-second TCP test from (client host, netns or "") to the server
// (host, netns or "", address) and returns the received bits per second.
func (l *ovLab) iperf3(client, clientNS, server, serverNS, addr string) float64 {
	l.t.Helper()
	in := func(ns string) string {
		if ns == "" {
			return ""
		}
		return "ip netns exec " + ns + " "
	}
	l.run(server, in(serverNS)+"iperf3 -s -1 -D")
	var out string
	var err error
	for i := 0; i < 20; i++ {
		if out, err = l.ssh(client, in(clientNS)+"iperf3 -J -t 3 -c "+addr, nil); err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		l.t.Fatalf("iperf3 %s -> %s: %v\n%s", client, addr, err, out)
	}
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.End.SumReceived.BitsPerSecond == 0 {
		l.t.Fatalf("iperf3 output: %v\n%s", err, out)
	}
	return res.End.SumReceived.BitsPerSecond
}

// waitRouteCount starts, on host, a watcher that prints the time (Unix seconds
// with nanoseconds) at which the device's route count first satisfies cmp
// against n. It returns once the watcher runs; the result comes on the channel.
func (l *ovLab) waitRouteCount(host, cmp string, n int) <-chan float64 {
	l.t.Helper()
	script := fmt.Sprintf(`echo armed; while ! [ "$(ip route show dev kubeforge.1 | wc -l)" %s %d ]; do sleep 0.005; done; date +%%s.%%N`, cmp, n)
	c := labSSH(l.s, host, "timeout 120 sh -c '"+script+"'")
	stdout, err := c.StdoutPipe()
	if err != nil {
		l.t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		l.t.Fatal(err)
	}
	r := bufio.NewReader(stdout)
	if line, err := r.ReadString('\n'); err != nil || strings.TrimSpace(line) != "armed" {
		l.t.Fatalf("route watcher on %s: %q %v", host, line, err)
	}
	ch := make(chan float64, 1)
	go func() {
		line, _ := r.ReadString('\n')
		_ = c.Wait()
		v, err := strconv.ParseFloat(strings.TrimSpace(line), 64)
		if err != nil {
			v = -1
		}
		ch <- v
	}()
	return ch
}

// leaseTime is when host's agent logged that it holds its subnet (the moment
// after the lease was written), from the journal's microsecond timestamps.
func (l *ovLab) leaseTime(host string) float64 {
	l.t.Helper()
	out := l.run(host, "journalctl -u "+overlay.UnitName+" -o json --no-pager")
	for _, line := range strings.Split(out, "\n") {
		var e struct {
			Msg string `json:"MESSAGE"`
			TS  string `json:"__REALTIME_TIMESTAMP"`
		}
		if json.Unmarshal([]byte(line), &e) != nil || !strings.HasPrefix(strings.TrimPrefix(e.Msg, "[overlay] "), "holding subnet") {
			continue
		}
		us, _ := strconv.ParseInt(e.TS, 10, 64)
		return float64(us) / 1e6
	}
	l.t.Fatalf("%s: no 'holding subnet' line in the agent's journal", host)
	return 0
}

func TestOverlay(t *testing.T) {
	requireE2E(t)
	t.Parallel()
	bdir := bundleDir()
	if bdir == "" {
		t.Skip("no bundle (hack/build-bundle.sh): the test runs the bundle's etcd on the lab hosts")
	}
	if _, err := os.Stat(filepath.Join(bdir, "bin", "etcd")); err != nil {
		t.Skip("the bundle has no bin/etcd yet")
	}
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("kubeforge-e2e-overlay-%d", os.Getpid()))
	labSubnet := ovSubnet
	if v := os.Getenv("KUBEFORGE_E2E_OVERLAY_SUBNET"); v != "" {
		labSubnet = v
	}
	opts := lab.Options{Dir: dir, Subnet: labSubnet, Hosts: []string{"master01", "node01", "node02"}, BundleDir: bdir, Log: testWriter{t}}
	s, err := lab.Up(opts)
	t.Cleanup(func() { _ = lab.Down(dir, testWriter{t}) })
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	l := &ovLab{t: t, s: s, opts: opts, pki: t.TempDir()}
	first := []string{"master01", "node01", "node02"}

	// PKI from the certs package: the etcd CA, and the test's own client.
	l.writeCluster(first...)
	if l.spec, err = certs.SpecFromConfig(l.cluster, "master01"); err != nil {
		t.Fatal(err)
	}
	p := &certs.PKI{Spec: l.spec, CertDir: l.pki}
	if err := p.CreateCerts(certs.CertEtcdCA, certs.CertEtcdHealthcheckClient); err != nil {
		t.Fatal(err)
	}
	crt, key, _ := certs.CertPaths(l.pki, certs.CertEtcdCA)
	if l.etcdCA, err = certs.LoadCA(certs.LocalFS{}, crt, key); err != nil {
		t.Fatal(err)
	}
	for _, h := range first {
		l.certsFor(h, true)
	}
	for _, h := range first {
		l.startEtcd(h)
	}
	l.waitEtcd(first...)
	var eps []string
	for _, h := range first {
		eps = append(eps, "https://"+l.addr(h)+":2379")
	}
	l.cli, err = clientv3.New(clientv3.Config{Endpoints: eps, TLS: l.clientTLS(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.cli.Close()
	reg := subnet.New(l.cli, "")

	bin, err := os.ReadFile(kubeforgeBin)
	if err != nil {
		t.Fatal(err)
	}
	install := func(host, verb string) string {
		l.put(host, "/root/kubeforge", bin, 0o755)
		// The overlay phase writes the agent's config; the node-runtime
		// phase starts the one kubeforge process the agent runs in.
		var all string
		for _, phase := range []string{"overlay", "node-runtime"} {
			out, err := l.ssh(host, fmt.Sprintf("/root/kubeforge %s phase %s --config /root/cluster.yaml --node-name %s", verb, phase, host), nil)
			if err != nil {
				t.Fatalf("%s: %s phase %s: %v\n%s\njournal:\n%s", host, verb, phase, err, out, l.journal(host))
			}
			t.Logf("%s: %s phase %s:\n%s", host, verb, phase, out)
			all += out
		}
		return all
	}

	st := map[string]overlay.Status{}
	pods := map[string]string{}
	t.Run("init and join phases start the agent on three hosts", func(t *testing.T) {
		install("master01", "init")
		install("node01", "join")
		install("node02", "join")
		seen := map[string]string{}
		for _, h := range first {
			waitFor(t, 30*time.Second, h+" programming its two peers", func() bool { return len(l.status(h).Peers) == 2 })
			st[h] = l.status(h)
			if other, dup := seen[st[h].Subnet]; dup {
				t.Fatalf("%s and %s share %s", h, other, st[h].Subnet)
			}
			seen[st[h].Subnet] = h
			t.Logf("%s: subnet %s, device %s mtu %d, tx offload %s", h, st[h].Subnet, st[h].Device, st[h].MTU, st[h].TxChecksumOffload)
		}
		cfg, err := reg.Config(context.Background())
		if err != nil || cfg.Network != ovPodCIDR || cfg.SubnetLen != 24 || cfg.VNI != 1 || cfg.Port != 8472 {
			t.Fatalf("network config in etcd: %+v %v", cfg, err)
		}
		// The agent authenticates with its own certificate, not the apiserver's.
		for _, h := range first {
			cert, err := certs.ParseCertPEM([]byte(l.run(h, "cat "+pkiDir+"/etcd/overlay-client.crt")))
			if err != nil || cert.Subject.CommonName != certs.DefaultOverlayClientCN {
				t.Errorf("%s: overlay client certificate: %v %v", h, cert, err)
			}
			if conf := l.run(h, "cat "+overlay.ConfigPath); !strings.Contains(conf, "certFile: "+pkiDir+"/etcd/overlay-client.crt") || strings.Contains(conf, "apiserver-etcd-client") {
				t.Errorf("%s: agent config does not use the overlay's own certificate:\n%s", h, conf)
			}
		}
		if l.run("master01", "test -f "+pkiDir+"/etcd/overlay-client.key && stat -c %a "+pkiDir+"/etcd/overlay-client.key") != "600" {
			t.Errorf("master01's overlay client key is not 0600")
		}
		// A second run changes nothing.
		for _, phase := range []string{"overlay", "node-runtime"} {
			if out := l.run("node01", "/root/kubeforge join phase "+phase+" --config /root/cluster.yaml --node-name node01"); !strings.Contains(out, "unchanged") {
				t.Errorf("second join phase %s was not unchanged:\n%s", phase, out)
			}
		}
		if u := l.run("node02", "systemctl show -p Type,ActiveState,SubState "+overlay.UnitName); !strings.Contains(u, "Type=notify") || !strings.Contains(u, "ActiveState=active") {
			t.Errorf("unit: %s", u)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("pods on different hosts reach each other", func(t *testing.T) {
		for _, h := range first {
			pods[h] = l.makePod(h, st[h])
		}
		for _, to := range []string{"node02", "master01"} {
			out, err := l.ssh("node01", "ip netns exec pod ping -c 3 -W 2 "+pods[to], nil)
			if err != nil || !strings.Contains(out, " 0% packet loss") {
				t.Errorf("pod on node01 -> pod on %s (%s): %v\n%s", to, pods[to], err, out)
			}
		}
		// TCP: 20 MiB from node01's pod into node02's pod, checksummed at both ends.
		l.run("node02", "ip netns exec pod sh -c 'timeout 60 socat -u TCP-LISTEN:9999,reuseaddr OPEN:/tmp/recv,creat,trunc >/dev/null 2>&1 &'")
		waitFor(t, 10*time.Second, "listener in node02's pod", func() bool {
			out, _ := l.ssh("node02", "ip netns exec pod ss -ltn | grep -c :9999", nil)
			return out == "1"
		})
		sent := l.run("node01", "head -c 20971520 /dev/urandom > /tmp/send && sha256sum < /tmp/send && ip netns exec pod socat -u OPEN:/tmp/send TCP:"+pods["node02"]+":9999")
		waitFor(t, 30*time.Second, "the transfer to finish", func() bool {
			out, _ := l.ssh("node02", "stat -c %s /tmp/recv", nil)
			return out == "20971520"
		})
		time.Sleep(200 * time.Millisecond)
		if got := l.run("node02", "sha256sum < /tmp/recv"); got != sent {
			t.Errorf("TCP transfer between pods: sent %s, received %s", sent, got)
		}
	})

	t.Run("bench: iperf3 pod-to-pod vs host-to-host", func(t *testing.T) {
		pod := l.iperf3("node01", "pod", "node02", "pod", pods["node02"])
		host := l.iperf3("node01", "", "node02", "", l.addr("node02"))
		t.Logf("BENCH iperf3 node01->node02: pod-to-pod %.2f Gbit/s, host-to-host %.2f Gbit/s, ratio %.2f (tx checksum offload off on kubeforge.1, the default)", pod/1e9, host/1e9, pod/host)
		// What the default costs: the same with offload on (and so TSO) on both ends.
		for _, h := range []string{"node01", "node02"} {
			l.run(h, "ethtool -K kubeforge.1 tx on >/dev/null")
		}
		on := l.iperf3("node01", "pod", "node02", "pod", pods["node02"])
		for _, h := range []string{"node01", "node02"} {
			l.run(h, "ethtool -K kubeforge.1 tx off >/dev/null")
		}
		t.Logf("BENCH iperf3 node01->node02 with tx checksum offload on: pod-to-pod %.2f Gbit/s, ratio %.2f", on/1e9, on/host)
	})

	t.Run("a fourth host: every other host has its route at once", func(t *testing.T) {
		o := opts
		o.Hosts = append(append([]string{}, first...), "node03")
		s2, err := lab.Up(o)
		if err != nil {
			t.Fatalf("lab up with node03: %v", err)
		}
		l.s = s2
		l.writeCluster(append(first, "node03")...)
		l.certsFor("node03", false)
		watch := map[string]<-chan float64{}
		for _, h := range first {
			watch[h] = l.waitRouteCount(h, "-gt", len(st[h].Peers))
		}
		install("node03", "join")
		lease := l.leaseTime("node03")
		st["node03"] = l.status("node03")
		worst := 0.0
		for _, h := range first {
			at := <-watch[h]
			if at < 0 {
				t.Fatalf("%s never got node03's route", h)
			}
			d := at - lease
			worst = max(worst, d)
			t.Logf("%s had node03's route %.0f ms after node03 wrote its lease", h, d*1000)
			if !strings.Contains(l.run(h, "ip route show dev kubeforge.1"), st["node03"].Subnet+" via") {
				t.Errorf("%s: no route for node03's %s", h, st["node03"].Subnet)
			}
		}
		t.Logf("BENCH convergence of a new node's route on all other hosts: %.0f ms (goal: under 1 s)", worst*1000)
		if worst > 1 {
			t.Logf("NOTE: convergence %.2f s is above the 1 s goal", worst)
		}
	})

	t.Run("stopping a host's agent and deleting its lease removes its routes everywhere", func(t *testing.T) {
		sub := st["node03"].Subnet
		l.run("node03", "systemctl stop "+overlay.UnitName)
		// A stopped agent leaves its lease: the others keep the route.
		if !strings.Contains(l.run("node01", "ip route show dev kubeforge.1"), sub) {
			t.Fatalf("node01 dropped node03's route when node03's agent merely stopped")
		}
		gone, err := reg.Release(context.Background(), "node03")
		if err != nil || len(gone) != 1 {
			t.Fatalf("deleting node03's lease: %v %v", gone, err)
		}
		for _, h := range first {
			waitFor(t, 10*time.Second, h+" removing node03's route", func() bool {
				return !strings.Contains(l.run(h, "ip route show dev kubeforge.1; ip neigh show dev kubeforge.1"), netip.MustParsePrefix(sub).Addr().String())
			})
		}
		// Started again, node03 gets the same subnet back from its subnet.env.
		l.run("node03", "systemctl start "+overlay.UnitName)
		if got := l.status("node03").Subnet; got != sub {
			t.Errorf("node03 came back with %s, had %s", got, sub)
		}
		waitFor(t, 10*time.Second, "node01 programming node03 again", func() bool {
			return strings.Contains(l.run("node01", "ip route show dev kubeforge.1"), sub)
		})
	})

	t.Run("restarting an agent keeps its subnet and connectivity", func(t *testing.T) {
		before := l.status("node02")
		var pingOut string
		var pingErr error
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			pingOut, pingErr = l.ssh("node01", "ip netns exec pod ping -c 30 -i 0.1 -W 1 "+pods["node02"], nil)
		}()
		time.Sleep(500 * time.Millisecond)
		l.run("node02", "systemctl restart "+overlay.UnitName)
		wg.Wait()
		after := l.status("node02")
		if after.Subnet != before.Subnet || after.LeaseID != before.LeaseID || after.VtepMAC != before.VtepMAC {
			t.Errorf("node02 after restart: %s lease %s mac %s; before %s lease %s mac %s", after.Subnet, after.LeaseID, after.VtepMAC, before.Subnet, before.LeaseID, before.VtepMAC)
		}
		if pingErr != nil || !strings.Contains(pingOut, " 0% packet loss") {
			t.Errorf("pings across node02's agent restart: %v\n%s", pingErr, pingOut)
		}
	})

	t.Run("killing the etcd member an agent watches through", func(t *testing.T) {
		before := l.status("node01")
		member, _, _ := strings.Cut(before.WatchSource, ":")
		victim := l.hostByAddr(member)
		if victim == "" {
			t.Fatalf("node01 watches through %q, which is no lab host", before.WatchSource)
		}
		t.Logf("node01's agent watches through %s's etcd (%s); killing it", victim, before.WatchSource)
		l.run(victim, "systemctl kill -s SIGKILL "+etcdUnit)
		waitFor(t, 60*time.Second, "node01's agent resyncing through another member", func() bool {
			s := l.status("node01")
			return s.Resyncs > before.Resyncs && s.WatchSource != before.WatchSource && s.WatchSource != ""
		})
		now := l.status("node01")
		t.Logf("node01 now watches through %s (last resync: %s)", now.WatchSource, now.LastResync)
		// It keeps programming: a new lease arrives through the surviving members.
		p := freeSubnets(t, reg, 1)[0]
		putSim(t, l.cli, []netip.Prefix{p}, 0)
		waitFor(t, 30*time.Second, "node01 programming a lease written after the kill", func() bool {
			return strings.Contains(l.run("node01", "ip route show dev kubeforge.1"), p.String())
		})
		deleteSim(t, l.cli, []netip.Prefix{p})
		l.startEtcd(victim)
		l.waitEtcd(victim)
	})

	t.Run("bench: 500 simulated leases", func(t *testing.T) {
		base := l.routeCount("node01")
		subs := freeSubnets(t, reg, 500)
		done := l.waitRouteCount("node01", "-ge", base+500)
		t0 := float64(time.Now().UnixNano()) / 1e9
		putSim(t, l.cli, subs, 0)
		at := <-done
		if at < 0 {
			t.Fatalf("node01 never had all 500 routes")
		}
		pid := l.run("node01", "systemctl show -p MainPID --value "+overlay.UnitName)
		rss := l.run("node01", "grep VmRSS /proc/"+pid+"/status")
		if cur := l.status("node01"); len(cur.Peers) < 500+3 {
			t.Errorf("node01 status shows %d peers", len(cur.Peers))
		}
		fields := strings.Fields(rss)
		t.Logf("BENCH 500 leases: node01 programmed 1500 entries (route+neigh+fdb per lease) %.0f ms after the first write; agent RSS %s %s", (at-t0)*1000, fields[1], fields[2])
		gone := l.waitRouteCount("node01", "-le", base)
		t1 := float64(time.Now().UnixNano()) / 1e9
		deleteSim(t, l.cli, subs)
		if at := <-gone; at < 0 {
			t.Fatalf("node01 kept simulated routes")
		} else {
			t.Logf("BENCH 500 leases deleted: node01 removed them in %.0f ms", (at-t1)*1000)
		}
		if n := l.routeCount("master01"); n != len(l.status("master01").Peers) {
			t.Errorf("master01 has %d routes for %d peers after the simulated leases left", n, len(l.status("master01").Peers))
		}
	})

	t.Run("reset leaves nothing behind", func(t *testing.T) {
		sub := l.status("node03").Subnet
		out := l.run("node03", "/root/kubeforge reset phase overlay --config /root/cluster.yaml --node-name node03 --force")
		t.Logf("node03: reset phase overlay:\n%s", out)
		l.checkClean(t, "node03", sub)
		out = l.run("node02", overlay.BinaryPath+" overlay reset --force")
		t.Logf("node02: overlay reset:\n%s", out)
		l.checkClean(t, "node02", st["node02"].Subnet)
		// A second reset has nothing to do.
		if out := l.run("node02", overlay.BinaryPath+" overlay reset --force --node-name node02"); !strings.Contains(out, "no overlay on this node") {
			t.Errorf("second reset: %s", out)
		}
	})
}

// checkClean verifies on host and in etcd that the overlay is gone, and that the
// remaining hosts dropped host's subnet.
func (l *ovLab) checkClean(t *testing.T, host, sub string) {
	t.Helper()
	checks := map[string]string{
		"device":        "ip -o -d link show | grep -E 'vxlan|cni0' || true",
		"routes":        "ip route show | grep -E '^10\\.(12[89]|13[01])\\.' || true",
		"neighbours":    "ip neigh show | grep -E '^10\\.(12[89]|13[01])\\.' || true",
		"fdb":           "bridge fdb show | grep -i kubeforge || true",
		"iptables":      "iptables-save | grep KUBEFORGE || true",
		"files":         "ls /etc/cni/net.d/10-kubeforge.conflist /run/kubeforge/subnet.env /etc/kubeforge/overlay.yaml /var/lib/cni/networks/kubeforge 2>/dev/null || true",
		"unit":          "systemctl list-unit-files " + overlay.UnitName + " --no-legend || true",
		"agent process": "pgrep -f '[k]ubeforge node run' || true",
	}
	names := make([]string, 0, len(checks))
	for n := range checks {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if out := l.run(host, checks[n]); out != "" {
			t.Errorf("%s after reset: %s left:\n%s", host, n, out)
		}
	}
	snap, err := subnet.New(l.cli, "").List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, le := range snap.Leases {
		if le.Node == host {
			t.Errorf("%s's lease %s still in etcd", host, le.Subnet)
		}
	}
	for _, h := range l.s.Hosts {
		if h.Name == host {
			continue
		}
		if out, err := l.ssh(h.Name, "ip route show dev kubeforge.1", nil); err == nil && strings.Contains(out, sub) {
			waitFor(t, 10*time.Second, h.Name+" dropping "+host+"'s route", func() bool {
				out, _ := l.ssh(h.Name, "ip route show dev kubeforge.1", nil)
				return !strings.Contains(out, sub)
			})
		}
	}
}

// freeSubnets returns n /24s of the pod network that no lease holds.
func freeSubnets(t *testing.T, reg *subnet.Registry, n int) []netip.Prefix {
	t.Helper()
	snap, err := reg.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	network := netip.MustParsePrefix(ovPodCIDR)
	var out []netip.Prefix
	a := network.Addr().As4()
	for i := 0; len(out) < n && i < 1024; i++ {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{a[0], a[1] + byte(i/256), byte(i % 256), 0}), 24)
		if !snap.Taken(p) {
			out = append(out, p)
		}
	}
	if len(out) < n {
		t.Fatalf("only %d free subnets", len(out))
	}
	return out
}

// putSim writes simulated leases (host addresses in the lab subnet that no host
// has, so nothing is ever sent to them), 100 per transaction.
func putSim(t *testing.T, cli *clientv3.Client, subs []netip.Prefix, offset int) {
	t.Helper()
	for i := 0; i < len(subs); i += 100 {
		var ops []clientv3.Op
		var cmps []clientv3.Cmp
		for j := i; j < min(i+100, len(subs)); j++ {
			k := subnet.SubnetKey(subnet.DefaultPrefix, subs[j])
			v := fmt.Sprintf(`{"node":"sim%04d","publicIP":"192.168.174.%d","vtepMAC":"0e:5e:00:00:%02x:%02x"}`, j+offset, 200+j%50, (j+offset)/256, (j+offset)%256)
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(k), "=", 0))
			ops = append(ops, clientv3.OpPut(k, v))
		}
		resp, err := cli.Txn(context.Background()).If(cmps...).Then(ops...).Commit()
		if err != nil || !resp.Succeeded {
			t.Fatalf("writing simulated leases: %v (succeeded %v)", err, resp != nil && resp.Succeeded)
		}
	}
}

func deleteSim(t *testing.T, cli *clientv3.Client, subs []netip.Prefix) {
	t.Helper()
	for i := 0; i < len(subs); i += 100 {
		var ops []clientv3.Op
		for j := i; j < min(i+100, len(subs)); j++ {
			ops = append(ops, clientv3.OpDelete(subnet.SubnetKey(subnet.DefaultPrefix, subs[j])))
		}
		if _, err := cli.Txn(context.Background()).Then(ops...).Commit(); err != nil {
			t.Fatalf("deleting simulated leases: %v", err)
		}
	}
}
