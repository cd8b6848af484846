package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/lab"
	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/images"
)

// haWait polls cond every second until it returns "" or timeout passes (then
// the test fails naming what it waited for and what it saw last); it returns
// how long it took.
func haWait(t *testing.T, what string, timeout time.Duration, cond func() string) time.Duration {
	t.Helper()
	start := time.Now()
	var last string
	err := wait.PollUntilContextTimeout(context.Background(), time.Second, timeout, true, func(context.Context) (bool, error) {
		last = cond()
		return last == "", nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: still %s after %s", what, last, timeout)
	}
	return time.Since(start)
}

// apiEndpoints are the addresses of the default/kubernetes EndpointSlice, as
// seen through kubectl on host against server.
func (l *nodesLab) apiEndpoints(host, server string) ([]string, error) {
	out, err := l.ssh(host, "KUBECONFIG=/etc/kubernetes/admin.conf kubectl --request-timeout 5s --server "+server+" -n default get endpointslice kubernetes -o json", nil)
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, strings.TrimSpace(out))
	}
	var es struct {
		Endpoints []struct{ Addresses []string } `json:"endpoints"`
	}
	if err := json.Unmarshal([]byte(out), &es); err != nil {
		return nil, err
	}
	var addrs []string
	for _, e := range es.Endpoints {
		addrs = append(addrs, e.Addresses...)
	}
	sort.Strings(addrs)
	return addrs, nil
}

// leaseHolders are the holders of the controller-manager's and scheduler's
// leader leases.
func (l *nodesLab) leaseHolders(host, server string) (string, error) {
	out, err := l.ssh(host, "KUBECONFIG=/etc/kubernetes/admin.conf kubectl --request-timeout 5s --server "+server+
		" -n kube-system get lease kube-controller-manager kube-scheduler -o jsonpath='{range .items[*]}{.metadata.name}={.spec.holderIdentity} {end}'", nil)
	return strings.TrimSpace(out), err
}

const haDeployment = `apiVersion: apps/v1
kind: Deployment
metadata: {name: ha-echo, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: ha-echo}}
  template:
    metadata: {labels: {app: ha-echo}}
    spec:
      # node01's and node02's kubelets still talk to master01's address (the
      # control-plane endpoint) until the node-local API balancer is wired in:
      # with master01 down only master02's kubelet (which talks to its own
      # apiserver) can start pods.
      nodeSelector: {kubernetes.io/hostname: master02}
      tolerations: [{key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}]
      containers:
      - name: echo
        image: ` + images.TestServerImage + `
        imagePullPolicy: Never
        ports: [{containerPort: 8080}]
`

// TestHA: a second control-plane host joins with `join --control-plane` and
// keeps the cluster's API, controllers and scheduling going while the first
// one is powered off; the first one comes back and rejoins the endpoints;
// reset takes a control-plane host out of them and refuses the last one
// without --force.
func TestHA(t *testing.T) {
	requireE2E(t)
	t.Parallel()
	bdir := requireBundle(t, "bin/containerd", "bin/runc", "cni/bin/bridge", "images/pause.tar", "images/httpecho.tar")
	hosts := []string{"master01", "master02", "node01", "node02"}
	s := labFor(t, "ha", "192.168.190.0/24", bdir, hosts...)
	l := &nodesLab{t: t, s: s, addr: map[string]string{}}
	for _, h := range s.Hosts {
		l.addr[h.Name] = h.Address
	}
	m1, m2 := "https://"+net.JoinHostPort(l.addr["master01"], "6443"), "https://"+net.JoinHostPort(l.addr["master02"], "6443")
	// master02 is the seed plan's time server: its preflight --fix makes it
	// serve before the others' point at it.
	l.prepare("master02", "master01", "node01", "node02")
	// The lab's configuration makes the first control-plane host by address
	// (master02, .150) the endpoint; init runs on master01, so it is the
	// endpoint (as in the seed plan), and master02 joins.
	cfg, err := config.Load(s.Paths().ClusterConfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Spec.ControlPlaneEndpoint = net.JoinHostPort(l.addr["master01"], "6443")
	y, err := config.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		if out, err := l.ssh(h, "cat > /root/kf/cluster.yaml", y); err != nil {
			t.Fatalf("%s: %v\n%s", h, err, out)
		}
	}

	start := time.Now()
	initOut, err := l.ssh("master01", "kubeforge init --config /root/kf/cluster.yaml --node-name master01", nil)
	if err != nil {
		t.Fatalf("init: %v\n%s", err, initOut)
	}
	t.Logf("init on master01 took %s", time.Since(start).Round(10*time.Millisecond))
	joinRE := func(flag string) []string {
		m := regexp.MustCompile(`KUBEFORGE_TOKEN=(\S+) KUBEFORGE_CERTIFICATE_KEY=([0-9a-f]{64}) kubeforge join (\S+) --discovery-token-ca-cert-hash (\S+) ` + flag).FindStringSubmatch(initOut)
		if m == nil {
			t.Fatalf("init printed no working %s join command:\n%s", flag, initOut)
		}
		return m
	}
	etcdJoin, cpJoin := joinRE("--etcd"), joinRE("--control-plane")
	token, endpoint, caHash := cpJoin[1], cpJoin[3], cpJoin[4]

	for _, h := range []string{"node01", "node02"} {
		start := time.Now()
		out, err := l.ssh(h, fmt.Sprintf("kubeforge join %s --discovery-token-ca-cert-hash %s --etcd", endpoint, caHash), nil,
			"KUBEFORGE_TOKEN="+token, "KUBEFORGE_CERTIFICATE_KEY="+etcdJoin[2])
		if err != nil {
			t.Fatalf("join %s --etcd: %v\n%s\n%s", h, err, out, l.controlPlaneJournals())
		}
		t.Logf("join %s --etcd took %s", h, time.Since(start).Round(10*time.Millisecond))
	}

	cpKey := cpJoin[2]
	t.Run("bad control-plane join input is refused before master02 changes", func(t *testing.T) {
		other := "sha256:" + strings.Repeat("ab", 32)
		join := func(key, hash string) string {
			return fmt.Sprintf("KUBEFORGE_TOKEN=%s KUBEFORGE_CERTIFICATE_KEY=%s kubeforge join %s --discovery-token-ca-cert-hash %s --control-plane", token, key, endpoint, hash)
		}
		refused := func(name, cmd, want string) {
			before := l.snapshot("master02")
			out, err := l.ssh("master02", cmd, nil)
			if after := l.snapshot("master02"); after != before {
				t.Errorf("%s: master02 changed", name)
			}
			if err == nil || !strings.Contains(out, want) || !strings.Contains(out, "[discovery] failed") {
				t.Errorf("%s: want a discovery failure about %q, got %v:\n%s", name, want, err, out)
			}
			t.Logf("%s: %s", name, finalLine(out))
		}
		refused("wrong certificate key", join(strings.Repeat("cd", 32), caHash), "certificate key does not decrypt")
		refused("wrong CA pin", join(cpKey, other), "does not match --discovery-token-ca-cert-hash")
		// The upload's end, as the garbage collector makes it after two hours.
		l.kubectl("-n kube-system delete secret kubeforge-certs")
		refused("expired upload", join(cpKey, caHash), "init phase upload-certs")
		// A new upload and its key, as an operator gets them.
		out := l.must("master01", "kubeforge init phase upload-certs --config /root/kf/cluster.yaml --node-name master01")
		m := regexp.MustCompile(`certificate key:\n([0-9a-f]{64})`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("init phase upload-certs printed no certificate key:\n%s", out)
		}
		cpKey = m[1]
	})

	start = time.Now()
	out, err := l.ssh("master02", fmt.Sprintf("kubeforge join %s --discovery-token-ca-cert-hash %s --control-plane", endpoint, caHash), nil,
		"KUBEFORGE_TOKEN="+token, "KUBEFORGE_CERTIFICATE_KEY="+cpKey)
	if err != nil {
		j, _ := l.ssh("master02", "journalctl --no-pager -n 60 -u kube-apiserver -u kube-controller-manager -u kube-scheduler -u kubelet", nil)
		t.Fatalf("join master02 --control-plane: %v\n%s\n--- master02 journal ---\n%s\n%s", err, out, j, l.controlPlaneJournals())
	}
	t.Logf("join master02 --control-plane took %s:\n%s", time.Since(start).Round(10*time.Millisecond), out)
	// A wait phase whose components answer at the first probe reports
	// "unchanged" rather than "done"; either shows it ran and passed.
	for _, want := range []string{"[control-plane-certs/apiserver] done", "[kubeconfig/admin] done", "[control-plane/apiserver] done", "[wait-control-plane] done|[wait-control-plane] unchanged", "[mark-control-plane] done", "[wait-node] done|[wait-node] unchanged"} {
		found := false
		for _, alt := range strings.Split(want, "|") {
			found = found || strings.Contains(out, alt)
		}
		if !found {
			t.Errorf("join master02 output lacks %q", want)
		}
	}
	haWait(t, "four Ready nodes", 3*time.Minute, func() string {
		if ready, _, _ := l.readyNodes(); strings.Join(ready, ",") != "master01,master02,node01,node02" {
			return fmt.Sprintf("ready %v", ready)
		}
		return ""
	})

	t.Run("master02's apiserver serves with its own certificate", func(t *testing.T) {
		caPEM := l.must("master02", "cat /etc/kubernetes/pki/ca.crt")
		own := l.must("master02", "cat /etc/kubernetes/pki/apiserver.crt")
		first := l.must("master01", "cat /etc/kubernetes/pki/apiserver.crt")
		if own == first {
			t.Fatal("master02's apiserver.crt is master01's")
		}
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", net.JoinHostPort(l.addr["master02"], "6443"), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // verified below
		if err != nil {
			t.Fatal(err)
		}
		served := conn.ConnectionState().PeerCertificates[0]
		conn.Close()
		file, err := certs.ParseCertPEM([]byte(own))
		if err != nil {
			t.Fatal(err)
		}
		if !served.Equal(file) {
			t.Errorf("master02 serves %s, not its apiserver.crt", served.Subject)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM([]byte(caPEM))
		for _, name := range []string{l.addr["master02"], strings.Split(endpoint, ":")[0], "kubernetes.default.svc"} {
			if _, err := served.Verify(x509.VerifyOptions{Roots: pool, DNSName: name}); err != nil {
				t.Errorf("master02's serving certificate for %s: %v", name, err)
			}
		}
		if r := l.must("master02", "KUBECONFIG=/etc/kubernetes/admin.conf kubectl --server "+m2+" get --raw /readyz"); r != "ok" {
			t.Errorf("master02 /readyz: %s", r)
		}
		if got := l.must("master02", "KUBECONFIG=/etc/kubernetes/admin.conf kubectl --server "+m2+" get nodes -o name"); strings.Count(got, "node/") != 4 {
			t.Errorf("kubectl through master02: %s", got)
		}
		if got := l.kubectl("get node master02 -o jsonpath={.metadata.labels}"); !strings.Contains(got, "node-role.kubernetes.io/control-plane") {
			t.Errorf("master02 is not labelled a control-plane node: %s", got)
		}
	})
	both := []string{l.addr["master01"], l.addr["master02"]}
	sort.Strings(both)
	haWait(t, "both apiservers in the kubernetes EndpointSlice", time.Minute, func() string {
		got, err := l.apiEndpoints("master01", m1)
		if err != nil || !slices.Equal(got, both) {
			return fmt.Sprintf("%v %v", got, err)
		}
		return ""
	})

	// --- master01 powered off ----------------------------------------------------
	_, _ = l.ssh("master01", "systemctl --no-block poweroff", nil)
	down := time.Now()
	took := haWait(t, "kubectl through master02 with master01 off", 2*time.Minute, func() string {
		if _, err := l.ssh("master01", "true", nil); err == nil {
			return "master01 still answers ssh"
		}
		out, err := l.ssh("master02", "KUBECONFIG=/etc/kubernetes/admin.conf kubectl --request-timeout 5s --server "+m2+" get --raw /readyz", nil)
		if err != nil || strings.TrimSpace(out) != "ok" {
			return fmt.Sprintf("readyz %q %v", strings.TrimSpace(out), err)
		}
		return ""
	})
	t.Logf("API through master02 ready %s after master01's poweroff", took.Round(100*time.Millisecond))
	haWait(t, "controller-manager and scheduler leases held by master02", 2*time.Minute, func() string {
		h, err := l.leaseHolders("master02", m2)
		if err != nil || strings.Count(h, "=master02_") != 2 {
			return fmt.Sprintf("holders %q %v", h, err)
		}
		return ""
	})
	t.Logf("leases moved to master02 %s after master01's poweroff", time.Since(down).Round(100*time.Millisecond))
	if out, err := l.ssh("master02", "KUBECONFIG=/etc/kubernetes/admin.conf kubectl --server "+m2+" apply -f -", []byte(haDeployment)); err != nil {
		t.Fatalf("creating a Deployment through master02: %v\n%s", err, out)
	}
	took = haWait(t, "the new Deployment's 2 pods Running on master02", 3*time.Minute, func() string {
		out, err := l.ssh("master02", "KUBECONFIG=/etc/kubernetes/admin.conf kubectl --request-timeout 5s --server "+m2+
			" get pods -l app=ha-echo -o jsonpath='{range .items[*]}{.spec.nodeName}/{.status.phase} {end}'", nil)
		if err != nil || strings.Count(out, "master02/Running") != 2 {
			return fmt.Sprintf("pods %q %v", strings.TrimSpace(out), err)
		}
		return ""
	})
	t.Logf("Deployment created through master02 running after %s", took.Round(100*time.Millisecond))

	// --- master01 back -------------------------------------------------------------
	if _, err := lab.Up(lab.Options{Dir: s.Dir, Subnet: s.Subnet, Hosts: hosts, BundleDir: bdir, Log: testWriter{t}}); err != nil {
		t.Fatalf("booting master01 again: %v", err)
	}
	took = haWait(t, "master01's apiserver back in the kubernetes EndpointSlice", 4*time.Minute, func() string {
		got, err := l.apiEndpoints("master02", m2)
		if err != nil || !slices.Equal(got, both) {
			return fmt.Sprintf("%v %v", got, err)
		}
		return ""
	})
	t.Logf("master01 back in the endpoints %s after lab up", took.Round(100*time.Millisecond))
	if r := l.must("master01", "KUBECONFIG=/etc/kubernetes/admin.conf kubectl --server "+m1+" get --raw /readyz"); r != "ok" {
		t.Errorf("master01 /readyz: %s", r)
	}

	// --- reset of a control-plane host ----------------------------------------------
	if out, err := l.ssh("master02", "kubeforge reset --force", nil); err != nil {
		t.Fatalf("reset master02: %v\n%s", err, out)
	}
	haWait(t, "master02 gone from the kubernetes EndpointSlice", 30*time.Second, func() string {
		got, err := l.apiEndpoints("master01", m1)
		if err != nil || !slices.Equal(got, []string{l.addr["master01"]}) {
			return fmt.Sprintf("%v %v", got, err)
		}
		return ""
	})
	out, err = l.ssh("master01", "echo y | kubeforge reset", nil)
	if err == nil || !strings.Contains(out, "last control-plane host") {
		t.Errorf("reset of the last control-plane host without --force: %v\n%s", err, out)
	}
	if st := l.must("master01", "systemctl is-active kube-apiserver"); st != "active" {
		t.Errorf("master01's apiserver after the refused reset: %s", st)
	}
}
