package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubeforge/kubeforge/bootstrap/config"
)

// dnsLab drives TestDNS's two hosts over ssh.
type dnsLab struct{ nodesLab }

// poll waits until cond reports done, or fails the test after timeout naming
// what it waited for and the last state cond saw.
func (l *dnsLab) poll(what string, timeout time.Duration, cond func() (done bool, state string)) time.Duration {
	l.t.Helper()
	start := time.Now()
	var last string
	err := wait.PollUntilContextTimeout(context.Background(), time.Second, timeout, true, func(context.Context) (bool, error) {
		done, state := cond()
		last = state
		return done, nil
	})
	if err != nil {
		l.t.Fatalf("waiting for %s: still %q after %s", what, last, timeout)
	}
	return time.Since(start)
}

type dnsPods struct {
	Items []struct {
		Metadata struct {
			Name string `json:"name"`
			UID  string `json:"uid"`
		} `json:"metadata"`
		Spec struct {
			NodeName string `json:"nodeName"`
		} `json:"spec"`
		Status struct {
			Phase      string                          `json:"phase"`
			PodIP      string                          `json:"podIP"`
			Conditions []struct{ Type, Status string } `json:"conditions"`
		} `json:"status"`
	} `json:"items"`
}

// readyPods returns the Ready pods matching selector in ns, by node.
func (l *dnsLab) readyPods(ns, selector string) (byNode map[string]string, list dnsPods) {
	byNode = map[string]string{}
	out, err := l.ssh("master01", "KUBECONFIG=/etc/kubernetes/admin.conf kubectl -n "+ns+" get pods -l "+selector+" -o json", nil)
	if err != nil || json.Unmarshal([]byte(out), &list) != nil {
		return byNode, list
	}
	for _, p := range list.Items {
		for _, c := range p.Status.Conditions {
			if c.Type == "Ready" && c.Status == "True" {
				byNode[p.Spec.NodeName] = p.Metadata.Name
			}
		}
	}
	return byNode, list
}

// waitCoreDNS waits for want Ready CoreDNS pods, each on its own node.
func (l *dnsLab) waitCoreDNS(want int, timeout time.Duration) map[string]string {
	l.t.Helper()
	var byNode map[string]string
	l.poll(fmt.Sprintf("%d Ready CoreDNS pods on distinct nodes", want), timeout, func() (bool, string) {
		var list dnsPods
		byNode, list = l.readyPods("kube-system", "k8s-app=kube-dns")
		return len(byNode) == want && len(list.Items) == want, fmt.Sprintf("ready by node %v, %d pods", byNode, len(list.Items))
	})
	return byNode
}

// lookup runs dnsquery in pod and returns name -> answers, failing on any
// name that did not resolve.
func (l *dnsLab) lookup(pod, typ string, names ...string) map[string]string {
	l.t.Helper()
	out, err := l.ssh("master01", "KUBECONFIG=/etc/kubernetes/admin.conf kubectl exec "+pod+" -- /dnsquery lookup -type "+typ+" "+strings.Join(names, " "), nil)
	if err != nil {
		l.t.Fatalf("lookup %s in %s: %v\n%s", typ, pod, err, out)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) == 3 {
			got[f[0]] = f[2]
		}
	}
	return got
}

const dnsWorkloads = `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: dnsquery, namespace: default}
spec:
  selector: {matchLabels: {app: dnsquery}}
  template:
    metadata: {labels: {app: dnsquery}}
    spec:
      tolerations: [{key: node-role.kubernetes.io/control-plane, effect: NoSchedule}]
      containers:
      - {name: dnsquery, image: kubeforge.local/dnsquery:1.0, imagePullPolicy: Never, args: [sleep]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: default, labels: {app: web}}
spec:
  hostname: web-0
  subdomain: web-headless
  containers:
  - {name: httpecho, image: kubeforge.local/httpecho:1.0, imagePullPolicy: Never, ports: [{containerPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-headless, namespace: default}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 8080}]
`

// TestDNS brings up master01 and node01 with the bundle's binaries and checks the
// CoreDNS add-on: cluster names, Service names, headless pod records and PTR
// records resolve from a pod on every node; losing a CoreDNS pod loses no
// answer; re-running the phase changes nothing, a config change rolls the
// Deployment; reset and a new init leave no add-on object of the old cluster.
// The lab hosts name no nameserver at all (an air-gapped site): cluster names
// must resolve regardless.
func TestDNS(t *testing.T) {
	requireE2E(t)
	t.Parallel()
	bdir := requireBundle(t, "images/pause.tar", "images/coredns.tar", "images/dnsquery.tar", "images/httpecho.tar")
	hosts := []string{"master01", "node01"}
	s := labFor(t, "dns", "192.168.183.0/24", bdir, hosts...)
	l := &dnsLab{nodesLab{t: t, s: s, addr: map[string]string{}}}
	for _, h := range s.Hosts {
		l.addr[h.Name] = h.Address
	}
	l.prepare(hosts...)

	initCluster := func() string {
		t.Helper()
		start := time.Now()
		out, err := l.ssh("master01", "kubeforge init --config /root/kf/cluster.yaml --node-name master01", nil)
		if err != nil {
			t.Fatalf("init: %v\n%s", err, out)
		}
		t.Logf("init took %s; its add-on lines:\n%s", time.Since(start).Round(10*time.Millisecond), grepLines(out, "[addon"))
		return out
	}
	joinNode01 := func(initOut string) {
		t.Helper()
		m := regexp.MustCompile(`KUBEFORGE_TOKEN=(\S+) KUBEFORGE_CERTIFICATE_KEY=([0-9a-f]{64}) kubeforge join (\S+) --discovery-token-ca-cert-hash (\S+) --etcd`).FindStringSubmatch(initOut)
		if m == nil {
			t.Fatalf("init printed no etcd join command:\n%s", initOut)
		}
		out, err := l.ssh("node01", fmt.Sprintf("kubeforge join %s --discovery-token-ca-cert-hash %s --etcd", m[3], m[4]), nil,
			"KUBEFORGE_TOKEN="+m[1], "KUBEFORGE_CERTIFICATE_KEY="+m[2])
		if err != nil {
			t.Fatalf("join node01: %v\n%s", err, out)
		}
	}

	initOut := initCluster()
	for _, want := range []string{"[addon/coredns]", "lists no nameserver: CoreDNS answers cluster names only", "1/2 replicas ready at 10.96.0.10"} {
		if !strings.Contains(initOut, want) {
			t.Errorf("init output lacks %q", want)
		}
	}
	joinNode01(initOut)
	coreDNSPods := l.waitCoreDNS(2, 3*time.Minute)
	t.Logf("CoreDNS pods by node: %v", coreDNSPods)

	if out, err := l.ssh("master01", "KUBECONFIG=/etc/kubernetes/admin.conf kubectl apply -f -", []byte(dnsWorkloads)); err != nil {
		t.Fatalf("apply workloads: %v\n%s", err, out)
	}
	var clients map[string]string
	l.poll("a Ready dnsquery pod on each node and web-0 Ready", 3*time.Minute, func() (bool, string) {
		clients, _ = l.readyPods("default", "app=dnsquery")
		web, _ := l.readyPods("default", "app=web")
		return len(clients) == 2 && len(web) == 1, fmt.Sprintf("dnsquery %v, web %v", clients, web)
	})
	webIP := l.kubectl("get pod web-0 -o jsonpath={.status.podIP}")
	webSvcIP := l.kubectl("get svc web -o jsonpath={.spec.clusterIP}")
	dnsSvcIP := l.kubectl("-n kube-system get svc kube-dns -o jsonpath={.spec.clusterIP}")
	if dnsSvcIP != "10.96.0.10" {
		t.Errorf("Service kube-dns at %s, want 10.96.0.10", dnsSvcIP)
	}
	// The endpoints of the headless Service must be published before its names exist.
	l.poll("web-headless endpoints", time.Minute, func() (bool, string) {
		out, _ := l.ssh("master01", "KUBECONFIG=/etc/kubernetes/admin.conf kubectl get endpointslices -l kubernetes.io/service-name=web-headless -o jsonpath='{.items[*].endpoints[*].addresses[*]}'", nil)
		return strings.TrimSpace(out) == webIP, "addresses " + out
	})

	want := map[string]string{
		"kubernetes.default":                           "10.96.0.1",
		"web.default.svc.cluster.local":                webSvcIP,
		"kube-dns.kube-system":                         dnsSvcIP,
		"web-headless.default.svc.cluster.local":       webIP,
		"web-0.web-headless.default.svc.cluster.local": webIP,
	}
	wantPTR := map[string]string{
		webSvcIP: "web.default.svc.cluster.local.",
		webIP:    "web-0.web-headless.default.svc.cluster.local.",
	}
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	checkAll := func(t *testing.T) {
		t.Helper()
		for node, pod := range clients {
			got := l.lookup(pod, "A", names...)
			for n, w := range want {
				if got[n] != w {
					t.Errorf("from %s on %s: %s = %q, want %q", pod, node, n, got[n], w)
				}
			}
			// A pod behind two Services has a name under each: the headless
			// one's hostname record must be among them.
			ptr := l.lookup(pod, "PTR", webSvcIP, webIP)
			for ip, w := range wantPTR {
				if !slices.Contains(strings.Split(ptr[ip], ","), w) {
					t.Errorf("from %s on %s: PTR %s = %q, want %q among them", pod, node, ip, ptr[ip], w)
				}
			}
		}
	}

	t.Run("cluster names, Service names, headless pod records and PTR resolve from every node", func(t *testing.T) {
		if len(clients) != 2 {
			t.Fatalf("dnsquery pods %v, want one on each node", clients)
		}
		checkAll(t)
		// The pods' resolver is the cluster DNS the kubelet was told about.
		for _, pod := range clients {
			if conf := l.kubectl("exec " + pod + " -- /dnsquery lookup -type A kubernetes.default.svc.cluster.local."); !strings.Contains(conf, "10.96.0.1") {
				t.Errorf("fully qualified lookup in %s: %s", pod, conf)
			}
		}
	})

	t.Run("re-running the phase changes nothing; --dry-run shows the objects", func(t *testing.T) {
		out := l.must("master01", "kubeforge init phase addon coredns --config /root/kf/cluster.yaml --node-name master01")
		if !strings.Contains(out, "[addon/coredns] unchanged") {
			t.Errorf("second run did not report unchanged:\n%s", out)
		}
		dry := l.must("master01", "kubeforge init phase addon coredns --config /root/kf/cluster.yaml --node-name master01 --dry-run")
		for _, w := range []string{"would patch Deployment kube-system/coredns", "would patch Service kube-system/kube-dns", "clusterIP: 10.96.0.10", "kubernetes cluster.local"} {
			if !strings.Contains(dry, w) {
				t.Errorf("dry run lacks %q:\n%s", w, dry)
			}
		}
	})

	t.Run("deleting a CoreDNS pod keeps names resolving", func(t *testing.T) {
		byNode := l.waitCoreDNS(2, time.Minute)
		var victim string
		for _, p := range byNode {
			victim = p
			break
		}
		l.kubectl("-n kube-system delete pod " + victim + " --wait=false")
		// Ask again and again while the pod terminates and its replacement starts.
		for i := 0; i < 5; i++ {
			checkAll(t)
		}
		after := l.waitCoreDNS(2, 2*time.Minute)
		for _, p := range after {
			if p == victim {
				t.Errorf("deleted pod %s still Ready", victim)
			}
		}
		checkAll(t)
	})

	t.Run("a changed configuration rolls the Deployment", func(t *testing.T) {
		before := l.kubectl("-n kube-system get deploy coredns -o jsonpath='{.spec.template.metadata.annotations.kubeforge\\.io/coredns-config-sha256}'")
		cluster, err := os.ReadFile(s.Paths().ClusterConfig)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Decode(cluster)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Spec.Addons.CoreDNS.StubDomains = []config.StubDomain{{Domain: "corp.example", Servers: []string{l.addr["master01"]}}}
		changed, err := config.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if out, err := l.ssh("master01", "cat > /root/kf/cluster-stub.yaml", changed); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		out := l.must("master01", "kubeforge init phase addon coredns --config /root/kf/cluster-stub.yaml --node-name master01")
		if !strings.Contains(out, "[addon/coredns] done") {
			t.Errorf("changed config not applied:\n%s", out)
		}
		after := l.kubectl("-n kube-system get deploy coredns -o jsonpath='{.spec.template.metadata.annotations.kubeforge\\.io/coredns-config-sha256}'")
		if after == before || after == "" {
			t.Errorf("pod template checksum %q -> %q: the Deployment does not roll", before, after)
		}
		l.poll("the rollout to finish", 3*time.Minute, func() (bool, string) {
			out, _ := l.ssh("master01", "KUBECONFIG=/etc/kubernetes/admin.conf kubectl -n kube-system get deploy coredns -o jsonpath='{.status.updatedReplicas}/{.status.readyReplicas}/{.status.replicas}'", nil)
			return strings.TrimSpace(out) == "2/2/2", "updated/ready/total " + out
		})
		if cm := l.kubectl("-n kube-system get cm coredns -o jsonpath={.data.Corefile}"); !strings.Contains(cm, "corp.example:53") {
			t.Errorf("Corefile lacks the stub domain:\n%s", cm)
		}
		l.waitCoreDNS(2, 2*time.Minute)
		checkAll(t)
	})

	t.Run("bench: query latency and CoreDNS memory", func(t *testing.T) {
		pod := clients["node01"]
		out := l.kubectl("exec " + pod + " -- /dnsquery bench -server " + dnsSvcIP + ":53 -names kubernetes.default.svc.cluster.local,web.default.svc.cluster.local,kube-dns.kube-system.svc.cluster.local -queries 20000 -concurrency 8 -max-duration 60s")
		t.Logf("DNS bench from %s (node01) to %s: %s", pod, dnsSvcIP, out)
		m := regexp.MustCompile(`errors=(\d+) .* qps=(\d+) p50_us=(\d+) p90_us=(\d+) p99_us=(\d+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("bench printed no figures: %s", out)
		}
		// UDP through kube-proxy's DNAT on a loaded machine may lose a few
		// queries (a resolver retries them); more than 0.1% is a fault.
		if errs, _ := strconv.Atoi(m[1]); errs > 20 {
			t.Errorf("%d of 20000 queries failed in the bench", errs)
		}
		for _, h := range hosts {
			rss := l.must(h, "ps -o rss= -C coredns")
			t.Logf("CoreDNS RSS on %s: %s KiB", h, strings.Join(strings.Fields(rss), " KiB, "))
		}
		if f := os.Getenv("KUBEFORGE_BENCH_OUT"); f != "" {
			mem := map[string]string{}
			for _, h := range hosts {
				mem[h] = strings.TrimSpace(l.must(h, "ps -o rss= -C coredns"))
			}
			b, _ := json.Marshal(map[string]any{"bench": strings.TrimSpace(out), "corednsRSSKiB": mem})
			_ = os.WriteFile(f, b, 0o644)
		}
	})

	t.Run("reset and a new init leave no add-on object of the old cluster", func(t *testing.T) {
		oldUID := l.kubectl("-n kube-system get deploy coredns -o jsonpath={.metadata.uid}")
		// node01 leaves etcd first; master01 is then its last member, whose
		// removal (the cluster's data) must be asked for.
		// Only the control plane may change etcd's membership: it removes
		// node01's member first.
		for _, c := range []struct{ host, cmd string }{{"master01", "kubeforge etcd remove-member node01"}, {"node01", "kubeforge reset --force"}, {"master01", "kubeforge reset phase etcd --force --force-etcd-removal && kubeforge reset --force"}} {
			if out, err := l.ssh(c.host, c.cmd, nil); err != nil {
				t.Fatalf("reset %s: %v\n%s", c.host, err, out)
			}
		}
		for _, h := range hosts {
			if out := l.must(h, "ps -o pid= -C coredns || true"); out != "" {
				t.Errorf("%s: a coredns process survived the reset: %s", h, out)
			}
		}
		l.must("master01", "kubeforge preflight --config /root/kf/cluster.yaml --node-name master01 --fix")
		initCluster()
		newUID := l.kubectl("-n kube-system get deploy coredns -o jsonpath={.metadata.uid}")
		if newUID == oldUID {
			t.Errorf("the Deployment of the old cluster survived (uid %s)", oldUID)
		}
		if rs := l.kubectl("-n kube-system get rs -l k8s-app=kube-dns -o name"); len(strings.Fields(rs)) != 1 {
			t.Errorf("ReplicaSets after re-init: %q, want only the new cluster's one", rs)
		}
		if cm := l.kubectl("-n kube-system get cm coredns -o jsonpath={.data.Corefile}"); strings.Contains(cm, "corp.example") {
			t.Errorf("the old cluster's Corefile survived:\n%s", cm)
		}
		managed := l.kubectl("get sa,cm,deploy,pdb,svc,clusterrole,clusterrolebinding -A -l app.kubernetes.io/managed-by=kubeforge,k8s-app=kube-dns -o name")
		if got := len(strings.Fields(managed)); got != 7 {
			t.Errorf("add-on objects after re-init: %d, want 7:\n%s", got, managed)
		}
		byNode, _ := l.readyPods("kube-system", "k8s-app=kube-dns")
		if len(byNode) != 1 {
			t.Errorf("Ready CoreDNS pods after re-init on one node: %v", byNode)
		}
	})
}

func grepLines(s, prefix string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, prefix) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
