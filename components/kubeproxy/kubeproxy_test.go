package kubeproxy

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"sigs.k8s.io/yaml"

	"github.com/kubeforge/kubeforge/bootstrap/bundle"
	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/containerd/fakehost"
	"github.com/kubeforge/kubeforge/components/etcd"
	"github.com/kubeforge/kubeforge/components/kubeclient/fakewatch"
)

func TestRenderConfig(t *testing.T) {
	data, err := RenderConfig(ConfigOptions{Kubeconfig: "/etc/kubernetes/kube-proxy.conf", ClusterCIDR: "10.244.0.0/16", NodeName: "node01", KeepConntrackMax: true})
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg["mode"] != "iptables" || cfg["clusterCIDR"] != "10.244.0.0/16" || cfg["hostnameOverride"] != "node01" ||
		cfg["clientConnection"].(map[string]any)["kubeconfig"] != "/etc/kubernetes/kube-proxy.conf" ||
		cfg["conntrack"].(map[string]any)["maxPerCore"] != float64(0) || cfg["metricsBindAddress"] != "127.0.0.1:10249" {
		t.Errorf("config %v", cfg)
	}
	data, _ = RenderConfig(ConfigOptions{Kubeconfig: "/k", ClusterCIDR: "10.244.0.0/16", NodeName: "n"})
	if strings.Contains(string(data), "conntrack") {
		t.Error("conntrack settings on an ordinary machine")
	}
	if _, err := RenderConfig(ConfigOptions{Kubeconfig: "k"}); err == nil {
		t.Error("relative kubeconfig accepted")
	}
}

func TestUnit(t *testing.T) {
	u, err := Unit("/usr/local/bin", map[string]string{"v": "2"})
	if err != nil {
		t.Fatal(err)
	}
	if err := etcd.LintUnit(u); err != nil {
		t.Error(err)
	}
	if !strings.Contains(string(u), "ExecStart=/usr/local/bin/kube-proxy \\\n  --config=/var/lib/kube-proxy/config.yaml \\\n  --v=2\n") {
		t.Errorf("unit:\n%s", u)
	}
	if u, err := Unit("/b", map[string]string{"v": "2 --x"}); err != nil || !strings.Contains(string(u), `"--v=2 --x"`) {
		t.Errorf("a value with a blank is one quoted argument: err %v\n%s", err, u)
	}
	if _, err := Unit("/b", map[string]string{"v x": "2"}); err == nil {
		t.Error("bad flag name accepted")
	}
}

// testCA is a cluster CA with its issued kube-proxy kubeconfig.
func testCA(t *testing.T) *certs.CA {
	t.Helper()
	ca, err := certs.NewCA("kubernetes", certs.ECDSAP256, 24*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func issued(t *testing.T, ca *certs.CA, cn string, validity time.Duration) []byte {
	t.Helper()
	crt, key, err := certs.Issue(ca, certs.LeafSpec{Subject: pkix.Name{CommonName: cn}, Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		KeyAlgorithm: certs.ECDSAP256, Validity: validity})
	if err != nil {
		t.Fatal(err)
	}
	kc, err := Kubeconfig("kubernetes", "https://192.168.161.151:6443", ca.CertPEM, crt, key)
	if err != nil {
		t.Fatal(err)
	}
	return kc
}

func TestValidKubeconfig(t *testing.T) {
	ca := testCA(t)
	cert, _ := certs.ParseCertPEM(ca.CertPEM)
	now := time.Now()
	if !ValidKubeconfig(issued(t, ca, User, 12*time.Hour), cert, now) {
		t.Error("a fresh kube-proxy kubeconfig is not valid")
	}
	if ValidKubeconfig(issued(t, ca, "system:node:node01", 12*time.Hour), cert, now) {
		t.Error("another identity accepted")
	}
	if ValidKubeconfig(issued(t, ca, User, 12*time.Hour), cert, now.Add(11*time.Hour)) {
		t.Error("a certificate with 1h of 12h (+5m backdate) left is kept")
	}
	other := testCA(t)
	if ValidKubeconfig(issued(t, other, User, 12*time.Hour), cert, now) {
		t.Error("another CA's certificate accepted")
	}
	if ValidKubeconfig([]byte("garbage"), cert, now) || ValidKubeconfig(nil, cert, now) {
		t.Error("garbage accepted")
	}
}

func fakeBundle(t *testing.T) string {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
	os.WriteFile(filepath.Join(dir, "bin/kube-proxy"), []byte("kube-proxy"), 0o755)
	if _, err := bundle.WriteManifest(dir, "v1.34.4", "v3.6.16", map[string]string{"bin/kube-proxy": "v1.34.4"}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func nodeHost(ca *certs.CA) *fakehost.Host {
	h := fakehost.New("node01")
	h.Commands["stat -f -c %T /sys/fs/cgroup"] = host.Result{Stdout: []byte("tmpfs\n")}
	h.Commands["stat -f -c %T /var/lib"] = host.Result{Stdout: []byte("ext2/ext3\n")}
	h.Commands["systemd-detect-virt --container"] = host.Result{Stdout: []byte("systemd-nspawn\n")}
	h.Commands["iptables -w 5 -t nat -S KUBE-SERVICES"] = host.Result{Stdout: []byte("-N KUBE-SERVICES\n")}
	h.SetFile("/proc/1/comm", "systemd\n", 0o444)
	h.SetFile("/proc/1/status", "CapBnd:\t000001ffffffffff\n", 0o444)
	h.Dirs["/var/lib"] = true
	h.SetFile("/etc/kubernetes/pki/ca.crt", string(ca.CertPEM), 0o644)
	return h
}

type countingCreds struct {
	n  int
	kc []byte
}

func (c *countingCreds) Kubeconfig(context.Context) ([]byte, error) { c.n++; return c.kc, nil }
func (c *countingCreds) Describe() string                           { return "test" }

func TestEnsure(t *testing.T) {
	ctx := context.Background()
	ca := testCA(t)
	h := nodeHost(ca)
	creds := &countingCreds{kc: issued(t, ca, User, 12*time.Hour)}
	n, _ := config.Default().Host("node01")
	o := Options{Host: h, Cluster: config.Default(), Node: *n, BundleDir: fakeBundle(t), Credentials: creds}
	var logs []string
	o.Logf = func(f string, a ...any) { logs = append(logs, f) }
	res, err := Ensure(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || creds.n != 1 {
		t.Errorf("first run %+v, credentials asked %d times", res, creds.n)
	}
	if f := h.Files["/etc/kubernetes/kube-proxy.conf"]; f == nil || f.Mode != 0o600 {
		t.Errorf("kube-proxy.conf %+v", f)
	}
	if !strings.Contains(string(h.Files[ConfigPath].Data), "maxPerCore: 0") || !strings.Contains(strings.Join(logs, "\n"), "adjusted for this host") {
		t.Error("container adjustment missing or not reported")
	}
	if u := h.UnitFiles[UnitName]; u == nil || !u.Active || !u.Enabled {
		t.Errorf("unit %+v", u)
	}
	h.ResetChanges()
	res, err = Ensure(ctx, o)
	if err != nil || res.Changed || creds.n != 1 || len(h.Changes()) != 0 {
		t.Errorf("rerun: %+v %v asked=%d changes=%v", res, err, creds.n, h.Changes())
	}

	// Credentials of another CA are refused before anything is written.
	h2 := nodeHost(ca)
	o.Host, o.Credentials = h2, &countingCreds{kc: issued(t, testCA(t), User, time.Hour)}
	if _, err := Ensure(ctx, o); err == nil || !strings.Contains(err.Error(), "not a valid") {
		t.Errorf("foreign credentials: %v", err)
	}
	for _, c := range h2.Changes() {
		if !strings.HasPrefix(c, "run ") {
			t.Errorf("changed %s", c)
		}
	}
}

// TestCSRCredentials plays the approver and the controller-manager's signer on
// a fake API: the request must be a clean system:kube-proxy CSR, and the
// resulting kubeconfig a valid kube-proxy client of the CA.
func TestCSRCredentials(t *testing.T) {
	ca := testCA(t)
	caCert, _ := certs.ParseCertPEM(ca.CertPEM)
	c := fake.NewSimpleClientset()
	// The requester waits with a list and then a watch; a certificate issued
	// between the two is never seen on the fake clientset (it failed CI on a
	// loaded machine), so the signer issues once the watch is open.
	opened := fakewatch.Opened(c, "certificatesigningrequests")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	errs := make(chan error, 1)
	go func() {
		for ctx.Err() == nil {
			list, err := c.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
			if err != nil || len(list.Items) == 0 {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			csr := list.Items[0]
			block, _ := pem.Decode(csr.Spec.Request)
			req, err := x509.ParseCertificateRequest(block.Bytes)
			if err != nil || req.Subject.CommonName != User || len(req.Subject.Organization) != 0 || csr.Spec.SignerName != certv1.KubeAPIServerClientSignerName {
				errs <- err
				return
			}
			tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: req.Subject, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
				ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, req.PublicKey, ca.Key)
			if err != nil {
				errs <- err
				return
			}
			select {
			case <-opened:
			case <-ctx.Done():
				errs <- fmt.Errorf("the requester never watched its CSR: %w", ctx.Err())
				return
			}
			csr.Status.Conditions = []certv1.CertificateSigningRequestCondition{{Type: certv1.CertificateApproved, Status: corev1.ConditionTrue}}
			csr.Status.Certificate = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
			_, err = c.CertificatesV1().CertificateSigningRequests().UpdateStatus(ctx, &csr, metav1.UpdateOptions{})
			errs <- err
			return
		}
	}()
	cred := &CSRCredentials{Client: c, NodeName: "node01", ClusterName: "kubernetes", Server: "https://192.168.161.151:6443", CAPEM: ca.CertPEM}
	kc, err := cred.Kubeconfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errs; err != nil {
		t.Fatalf("signer: %v", err)
	}
	if !ValidKubeconfig(kc, caCert, time.Now()) {
		t.Errorf("kubeconfig from the CSR is not valid:\n%s", kc)
	}
}

// TestCSRCredentialsSaysWhereItIsStuck: a CSR that gets no certificate is
// reported by where it stopped: never approved (and whether its Node exists),
// approved but never signed, denied.
func TestCSRCredentialsSaysWhereItIsStuck(t *testing.T) {
	cases := []struct {
		name  string
		node  bool
		cond  *certv1.CertificateSigningRequestCondition
		wants []string
	}{
		{"pending, no node", false, nil, []string{"still pending, never approved", "Node node01 does not exist", "journalctl -u kubelet"}},
		{"pending, node exists", true, nil, []string{"still pending, never approved", "Node node01 exists", "kubeforge-csr-approver.service"}},
		{"approved, not signed", true, &certv1.CertificateSigningRequestCondition{Type: certv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "KubeforgeCSRApprover"},
			[]string{"approved (KubeforgeCSRApprover", "never signed", "kube-controller-manager"}},
		{"denied", true, &certv1.CertificateSigningRequestCondition{Type: certv1.CertificateDenied, Status: corev1.ConditionTrue, Reason: "Nope", Message: "by hand"},
			[]string{"denied (Nope: by hand)"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := fake.NewSimpleClientset()
			if tc.node {
				c.CoreV1().Nodes().Create(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node01"}}, metav1.CreateOptions{})
			}
			if tc.cond != nil {
				cond := *tc.cond
				c.PrependReactor("create", "certificatesigningrequests", func(a k8stesting.Action) (bool, runtime.Object, error) {
					obj := a.(k8stesting.CreateAction).GetObject().(*certv1.CertificateSigningRequest)
					obj.Status.Conditions = append(obj.Status.Conditions, cond)
					return false, nil, nil
				})
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cred := &CSRCredentials{Client: c, NodeName: "node01", ClusterName: "kubernetes", Server: "https://192.168.161.151:6443", Timeout: 300 * time.Millisecond}
			_, err := cred.Kubeconfig(ctx)
			if err == nil {
				t.Fatal("no error for a CSR that was never signed")
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}
