package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/cluster-bootstrap/token/jws"

	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/clusterinfo"
	"github.com/kubeforge/kubeforge/components/overlay/vxlan"
)

// TestSecurity plays the attacker against a real cluster on lab hosts
// (master01: control plane and etcd; node01: a worker and etcd member, as in
// the seed plan), each attack refused:
//   - a rogue API endpoint serving cluster-info with the real CA plus its own,
//     properly signed for the join token: the join is refused and the host is
//     unchanged, and the rogue server never sees the token;
//   - `reset` pointed at system directories (flags, config field, symlink):
//     refused before anything is removed;
//   - after init and a join (run exactly as init printed it), no token or
//     certificate key in ps, any process environment, the unit files, the
//     journal or the output (except the printed join commands);
//   - the TLS policy: TLS 1.1 and non-AEAD suites are refused by the
//     apiserver, controller-manager, scheduler, kubelet and etcd;
//   - component config files are 0600, and the certificate key goes from the
//     disk with its upload.
func TestSecurity(t *testing.T) {
	requireE2E(t)
	t.Parallel()
	bdir := requireBundle(t, "bin/containerd", "bin/runc", "cni/bin/bridge", "images/pause.tar")
	s := labFor(t, "security", "192.168.180.0/24", bdir, "master01", "node01")
	m := &remote{t: t, s: s, host: "master01"}
	n := &remote{t: t, s: s, host: "node01"}
	addr := map[string]string{}
	netns := map[string]string{}
	for _, h := range s.Hosts {
		addr[h.Name], netns[h.Name] = h.Address, h.Netns
	}
	for _, r := range []*remote{m, n} {
		r.put(kubeforgeBin, "/usr/local/bin/kubeforge", 0o755)
		r.put(s.Paths().ClusterConfig, "/root/kf/cluster.yaml", 0o600)
		r.run("kubeforge preflight --config /root/kf/cluster.yaml --node-name " + r.host + " --fix")
	}

	start := time.Now()
	initOut := m.run("kubeforge init --config /root/kf/cluster.yaml --node-name master01 2>&1")
	t.Logf("init took %s", time.Since(start).Round(10*time.Millisecond))
	token := submatch(t, initOut, `KUBEFORGE_TOKEN=([a-z0-9]{6}\.[a-z0-9]{16}) kubeforge join `)
	certKey := submatch(t, initOut, `KUBEFORGE_CERTIFICATE_KEY=([0-9a-f]{64}) kubeforge join \S+ --discovery-token-ca-cert-hash \S+ --control-plane`)
	etcdKey := submatch(t, initOut, `KUBEFORGE_CERTIFICATE_KEY=([0-9a-f]{64}) kubeforge join \S+ --discovery-token-ca-cert-hash \S+ --etcd`)
	caHash := submatch(t, initOut, `--discovery-token-ca-cert-hash (sha256:[0-9a-f]{64})`)
	tokenID, tokenSecret, _ := strings.Cut(token, ".")
	var workerJoin string
	for _, line := range strings.Split(initOut, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "KUBEFORGE_TOKEN=") && strings.HasSuffix(line, " --etcd") {
			workerJoin = line
		}
	}
	if workerJoin == "" {
		t.Fatalf("init printed no join command for a worker with an etcd member:\n%s", initOut)
	}

	t.Run("a rogue endpoint with the real CA plus its own is refused", func(t *testing.T) {
		n := n.with(t)
		realCA := m.run("cat /etc/kubernetes/pki/ca.crt")
		// The rogue endpoint is master01's address, another port: let it in.
		m.run("if firewall-cmd --state >/dev/null 2>&1; then firewall-cmd --add-port=7443/tcp; fi")
		t.Cleanup(func() {
			_, _ = m.try("if firewall-cmd --state >/dev/null 2>&1; then firewall-cmd --remove-port=7443/tcp; fi")
		})
		rogue := startRogueAPIServer(t, "/run/netns/"+netns["master01"], net.JoinHostPort(addr["master01"], "7443"), []byte(realCA+"\n"), tokenID, tokenSecret)
		before := n.snapshot()
		// As an operator would type it, into a shell: the token never is an argument.
		out, err := n.shell(fmt.Sprintf("KUBEFORGE_TOKEN=%s kubeforge join %s --discovery-token-ca-cert-hash %s --discovery-timeout 10s", token, rogue.addr, caHash))
		after := n.snapshot()
		if err == nil {
			t.Fatalf("join through the rogue endpoint succeeded:\n%s", out)
		}
		if !strings.Contains(out, "cluster-info must hold exactly one CA certificate") || !strings.Contains(out, "1 more PEM block") {
			t.Errorf("join failed, but not with the CA-bundle error:\n%s", out)
		}
		if d := diffSnapshots(before, after); d != "" {
			t.Errorf("the refused join changed node01:\n%s", d)
		}
		reqs := rogue.requests()
		if len(reqs) == 0 {
			t.Error("the rogue endpoint was never asked: the test proves nothing")
		}
		for _, r := range reqs {
			if r.auth != "" {
				t.Errorf("node01 sent credentials to the rogue endpoint: %s %s", r.path, r.auth)
			}
			if r.path != "/api/v1/namespaces/kube-public/configmaps/cluster-info" {
				t.Errorf("node01 went on to %s at the rogue endpoint", r.path)
			}
		}
		t.Logf("refused: %s", lastLine(out))
	})

	// The join exactly as init printed it, typed into a shell on node01.
	start = time.Now()
	joinOut, err := n.shell(workerJoin)
	if err != nil {
		t.Fatalf("the printed join command failed on node01: %v\n%s", err, joinOut)
	}
	t.Logf("join took %s", time.Since(start).Round(10*time.Millisecond))
	ctx := context.Background()
	var ready string
	if err := wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(context.Context) (bool, error) {
		ready, _ = m.try(`kubectl --kubeconfig /etc/kubernetes/admin.conf get node node01 -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}'`)
		return ready == "True", nil
	}); err != nil {
		t.Fatalf("node01 not Ready within 2m (Ready=%q)", ready)
	}

	t.Run("no token or certificate key where others can see it", func(t *testing.T) {
		secrets := map[string]string{"join token secret": tokenSecret, "certificate key": certKey, "etcd certificate key": etcdKey}
		// The output: only the printed join commands, which the operator asked for.
		for _, line := range strings.Split(initOut, "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "KUBEFORGE_TOKEN=") {
				continue
			}
			for name, sec := range secrets {
				if strings.Contains(line, sec) {
					t.Errorf("init output shows the %s outside the join commands: %q", name, line)
				}
			}
		}
		for name, sec := range secrets {
			if strings.Contains(joinOut, sec) {
				t.Errorf("join output shows the %s", name)
			}
		}
		// Fetched, then searched here: a grep on the host would put the
		// secrets into its own argv and environment.
		for _, r := range []*remote{m.with(t), n.with(t)} {
			for what, cmd := range map[string]string{
				"ps output":            "ps auxwwe",
				"process environments": `for f in /proc/[0-9]*/environ; do tr '\0' '\n' < $f; done 2>/dev/null`,
				"process arguments":    `for f in /proc/[0-9]*/cmdline; do tr '\0' ' ' < $f; echo; done 2>/dev/null`,
				"unit files":           "cat /etc/systemd/system/*.service /etc/systemd/system/*.timer /etc/systemd/system/*.d/* 2>/dev/null",
				"journal":              "journalctl --no-pager -o cat",
			} {
				text := r.run(cmd)
				if len(text) < 20 {
					t.Errorf("%s: %s came back empty: the check would prove nothing", r.host, what)
				}
				for name, sec := range secrets {
					if strings.Contains(text, sec) {
						t.Errorf("%s: the %s appears in the %s", r.host, name, what)
					}
				}
			}
		}
	})

	t.Run("TLS 1.1 and non-AEAD cipher suites are refused", func(t *testing.T) {
		bad := []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA, tls.TLS_RSA_WITH_AES_128_GCM_SHA256}
		for name, ep := range map[string]string{
			"kube-apiserver": net.JoinHostPort(addr["master01"], "6443"),
			"kubelet":        net.JoinHostPort(addr["node01"], "10250"),
			"etcd":           net.JoinHostPort(addr["master01"], "2379"),
		} {
			if err := handshake(ep, &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}); err == nil {
				t.Errorf("%s at %s accepts TLS 1.1", name, ep)
			}
			if err := handshake(ep, &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: bad}); err == nil {
				t.Errorf("%s at %s accepts CBC / RSA key-exchange suites", name, ep)
			}
			if name == "etcd" {
				continue // wants a client certificate; the cluster working shows the good suites
			}
			if err := handshake(ep, &tls.Config{MaxVersion: tls.VersionTLS12}); err != nil {
				t.Errorf("%s at %s refuses TLS 1.2 with the policy's suites: %v", name, ep, err)
			}
		}
		// controller-manager and scheduler listen on master01's loopback only.
		for name, port := range map[string]string{"kube-controller-manager": "10257", "kube-scheduler": "10259"} {
			url := "https://127.0.0.1:" + port + "/healthz"
			if out, err := m.try("curl -sk --tls-max 1.2 --ciphers ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA " + url); err == nil {
				t.Errorf("%s accepts a CBC suite: %s", name, out)
			} else if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 35 {
				t.Errorf("%s: curl with a CBC suite: %v (want exit 35, a refused handshake) %s", name, err, out)
			}
			if out, err := m.try("curl -sk --tls-max 1.2 --ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256 " + url); err != nil || out != "ok" {
				t.Errorf("%s with an AES-GCM suite: %v %q", name, err, out)
			}
		}
	})

	t.Run("component config files are 0600", func(t *testing.T) {
		for _, r := range []*remote{m.with(t), n.with(t)} {
			out := r.run("stat -c '%a %n' /var/lib/kubelet/config.yaml /var/lib/kube-proxy/config.yaml /etc/containerd/config.toml /etc/kubeforge/overlay.yaml /etc/kubernetes/kubelet.conf /etc/kubernetes/kube-proxy.conf")
			for _, line := range strings.Split(out, "\n") {
				if !strings.HasPrefix(line, "600 ") {
					t.Errorf("%s: %s", r.host, line)
				}
			}
		}
	})

	t.Run("the certificate keys go from the disk with their uploads", func(t *testing.T) {
		m := m.with(t)
		for unit, keyFile := range map[string]string{
			"kubeforge-certificate-key-expiry":      "/etc/kubernetes/pki/kubeforge-certificate-key",
			"kubeforge-etcd-certificate-key-expiry": "/etc/kubernetes/pki/kubeforge-etcd-certificate-key",
		} {
			if st := m.run("systemctl is-active " + unit + ".timer; systemctl is-enabled " + unit + ".timer"); st != "active\nenabled" {
				t.Errorf("%s.timer: %q", unit, st)
			}
			if next := m.run("systemctl show -p NextElapseUSecMonotonic --value " + unit + ".timer"); next == "" || next == "0" || next == "infinity" {
				t.Errorf("%s.timer is not armed: NextElapseUSecMonotonic=%q", unit, next)
			}
			m.run("test -s " + keyFile)
			// What the timer does when the two hours are over.
			m.run("systemctl start " + unit + ".service")
			if out, err := m.try("test -e " + keyFile); err == nil {
				t.Errorf("%s is still there after %s ran %s", keyFile, unit, out)
			}
		}
	})

	t.Run("reset refuses system directories and removes nothing", func(t *testing.T) {
		n := n.with(t)
		cfg, err := s.ClusterConfig()
		if err != nil {
			t.Fatal(err)
		}
		cfg.Spec.Etcd.DataDir = "/var"
		cfg.Spec.Etcd.Backup.Dir = "/srv/kubeforge-etcd-snapshots" // not inside the refused data dir
		n.putConfig(cfg, "/root/kf/datadir-var.yaml")
		n.run("ln -sfn /etc /root/kf/pki-link")
		before := n.checksums()
		for _, c := range []struct{ args, want string }{
			{"--cert-dir /etc", `--cert-dir "/etc": /etc is a system directory`},
			{"--kubeconfig-dir /etc", `--kubeconfig-dir "/etc": /etc is a system directory`},
			{"--kubeconfig-dir /var/lib", `--kubeconfig-dir "/var/lib": /var/lib is a system directory`},
			{"--cert-dir /usr/", `--cert-dir "/usr": /usr is a system directory`},
			{"--cert-dir /", `--cert-dir "/": must not be the root directory`},
			{"--config /root/kf/datadir-var.yaml --node-name node01", `spec.etcd.dataDir: Invalid value: "/var": /var is a system directory`},
			{"--cert-dir /root/kf/pki-link", "--cert-dir /root/kf/pki-link resolves to /etc"},
		} {
			out, err := n.try("kubeforge reset --force " + c.args)
			if err == nil {
				t.Errorf("reset %s succeeded:\n%s", c.args, out)
				continue
			}
			if !strings.Contains(out, c.want) {
				t.Errorf("reset %s: output lacks %q:\n%s", c.args, c.want, out)
			}
			t.Logf("reset %s: %s", c.args, lastLine(out))
		}
		if after := n.checksums(); after != before {
			t.Errorf("a refused reset changed node01:\n%s", diffLines(before, after))
		}
		if st := n.run("systemctl is-active kubelet containerd kube-proxy"); st != "active\nactive\nactive" {
			t.Errorf("node01's units after the refused resets: %q", st)
		}
		// The real reset removes the directory kubeforge created and marked.
		n.run("test -e /etc/kubernetes/.kubeforge-created && test -e /etc/kubernetes/pki/.kubeforge-created")
		// node01 is an etcd member: only the control plane may remove it.
		m.with(t).run("kubeforge etcd remove-member node01")
		if out, err := n.try("kubeforge reset --force"); err != nil {
			t.Fatalf("reset: %v\n%s", err, out)
		}
		if out, err := n.try("ls -A /etc/kubernetes"); err == nil {
			t.Errorf("/etc/kubernetes is left after the reset: %s", out)
		}
		n.run("test -d /etc && test -s /etc/passwd && test -d /var/lib && test -x /usr/local/bin/kubeforge")
	})
}

// shell runs script in a login-less shell on the host, fed on stdin, as an
// operator typing it: nothing of it is any process's argument.
func (r *remote) shell(script string) (string, error) {
	r.t.Helper()
	c := r.cmd("bash -s")
	c.Stdin = strings.NewReader(script + "\n")
	out, err := c.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// checksums hashes every file and lists every entry (with mode and owner)
// under the system directories a reset must not touch.
func (r *remote) checksums() string {
	r.t.Helper()
	return r.run(`find /etc /root /home /boot /usr/local /var/lib -xdev \( -path /var/lib/kubelet -o -path /var/lib/containerd -o -path /var/lib/etcd -o -path /var/lib/systemd -o -path /var/lib/chrony \) -prune -o -printf '%p %y %m %u:%g\n' | sort; ` +
		`find /etc /root /home /boot /usr/local -xdev -type f -print0 | sort -z | xargs -0 sha256sum`)
}

func diffLines(a, b string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	ma, mb := in(a), in(b)
	var d []string
	for l := range ma {
		if !mb[l] {
			d = append(d, "- "+l)
		}
	}
	for l := range mb {
		if !ma[l] {
			d = append(d, "+ "+l)
		}
	}
	return strings.Join(d, "\n")
}

// handshake completes a TLS handshake with ep (server not verified: only what
// the server agrees to matters here).
func handshake(ep string, cfg *tls.Config) error {
	cfg.InsecureSkipVerify = true //nolint:gosec // probing the server's TLS policy only
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", ep, cfg)
	if err != nil {
		return err
	}
	return c.Close()
}

type rogueRequest struct{ path, auth string }

type rogueServer struct {
	addr string
	mu   sync.Mutex
	reqs []rogueRequest
}

func (r *rogueServer) requests() []rogueRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]rogueRequest(nil), r.reqs...)
}

// startRogueAPIServer serves, at addr inside the network namespace nsPath (a
// lab host's), a cluster-info whose CA data is the real CA followed by the
// attacker's own, signed for the token the attacker knows, over TLS with a
// certificate of the attacker's CA. It records every request.
func startRogueAPIServer(t *testing.T, nsPath, addr string, realCA []byte, tokenID, tokenSecret string) *rogueServer {
	t.Helper()
	ca, err := certs.NewCA("kubernetes", certs.ECDSAP256, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	host, _, _ := net.SplitHostPort(addr)
	crt, key, err := certs.Issue(ca, certs.LeafSpec{Subject: pkix.Name{CommonName: "kube-apiserver"}, IPAddresses: []net.IP{net.ParseIP(host)},
		Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyAlgorithm: certs.ECDSAP256, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := clusterinfo.Kubeconfig("https://"+addr, append(append([]byte{}, realCA...), ca.CertPEM...))
	if err != nil {
		t.Fatal(err)
	}
	sig, err := jws.ComputeDetachedSignature(string(kc), tokenID, tokenSecret)
	if err != nil {
		t.Fatal(err)
	}
	cm, _ := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "cluster-info", "namespace": "kube-public"},
		"data":     map[string]string{"kubeconfig": string(kc), "jws-kubeconfig-" + tokenID: sig}})
	rs := &rogueServer{addr: addr}
	l := listenInNetns(t, nsPath, addr)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			rs.mu.Lock()
			rs.reqs = append(rs.reqs, rogueRequest{path: req.URL.Path, auth: req.Header.Get("Authorization")})
			rs.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			if req.URL.Path == "/api/v1/namespaces/kube-public/configmaps/cluster-info" {
				_, _ = w.Write(cm)
				return
			}
			w.WriteHeader(http.StatusNotFound)
		}),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{pair}},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          nil,
	}
	go func() { _ = srv.ServeTLS(l, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	return rs
}

// listenInNetns opens a TCP listener at addr inside the network namespace at
// nsPath (vxlan.InNetns): the socket keeps living there after the thread went
// back.
func listenInNetns(t *testing.T, nsPath, addr string) net.Listener {
	t.Helper()
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		t.Fatalf("opening %s: %v", nsPath, err)
	}
	defer ns.Close()
	var l net.Listener
	if err := vxlan.InNetns(ns, func() (err error) { l, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatalf("listening at %s in %s: %v", addr, nsPath, err)
	}
	return l
}
