package kubelet

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/kubeforge/kubeforge/bootstrap/bundle"
	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/containerd/fakehost"
	"github.com/kubeforge/kubeforge/components/etcd"
)

func TestRenderConfig(t *testing.T) {
	data, err := RenderConfig(ConfigOptions{CgroupDriver: "systemd", ClusterDNS: "10.96.0.10", ClusterDomain: "cluster.local",
		ClientCAFile: "/etc/kubernetes/pki/ca.crt", ResolvConf: "/etc/resolv.conf", RuntimeEndpoint: "unix:///run/containerd/containerd.sock"})
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	get := func(path ...string) any {
		var v any = cfg
		for _, p := range path {
			v = v.(map[string]any)[p]
		}
		return v
	}
	for path, want := range map[string]any{
		"kind":                             "KubeletConfiguration",
		"cgroupDriver":                     "systemd",
		"clusterDomain":                    "cluster.local",
		"rotateCertificates":               true,
		"serverTLSBootstrap":               true,
		"readOnlyPort":                     float64(0),
		"authorization.mode":               "Webhook",
		"authentication.anonymous.enabled": false,
		"authentication.webhook.enabled":   true,
		"authentication.x509.clientCAFile": "/etc/kubernetes/pki/ca.crt",
		"containerRuntimeEndpoint":         "unix:///run/containerd/containerd.sock",
	} {
		if got := get(strings.Split(path, ".")...); got != want {
			t.Errorf("%s = %v, want %v", path, got, want)
		}
	}
	if dns := cfg["clusterDNS"].([]any); len(dns) != 1 || dns[0] != "10.96.0.10" {
		t.Errorf("clusterDNS %v", dns)
	}
	// kubeforge's TLS policy (CIS 4.2.12).
	if cfg["tlsMinVersion"] != "VersionTLS12" || fmt.Sprint(cfg["tlsCipherSuites"]) != fmt.Sprint(certs.TLSCipherSuites) {
		t.Errorf("TLS policy: tlsMinVersion %v, tlsCipherSuites %v", cfg["tlsMinVersion"], cfg["tlsCipherSuites"])
	}
	if _, err := RenderConfig(ConfigOptions{CgroupDriver: "cgroupv2"}); err == nil {
		t.Error("bad cgroup driver accepted")
	}
}

func TestUnit(t *testing.T) {
	u, err := Unit(UnitOptions{BinDir: "/usr/local/bin", NodeName: "master01", NodeIP: "192.168.176.151", Taints: []string{ControlPlaneTaint},
		Kubeconfig: "/etc/kubernetes/kubelet.conf", BootstrapKubeconfig: "/etc/kubernetes/bootstrap-kubelet.conf",
		ExtraArgs: map[string]string{"v": "2", "node-ip": "192.168.176.200"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := etcd.LintUnit(u); err != nil {
		t.Error(err)
	}
	s := string(u)
	for _, want := range []string{
		"ExecStart=/usr/local/bin/kubelet \\\n  --bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf \\\n  --config=/var/lib/kubelet/config.yaml \\\n  --hostname-override=master01 \\\n  --kubeconfig=/etc/kubernetes/kubelet.conf \\\n  --node-ip=192.168.176.200 \\\n  --register-with-taints=node-role.kubernetes.io/control-plane:NoSchedule \\\n  --v=2\n",
		"Requires=containerd.service", "StartLimitInterval=0",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("unit lacks %q:\n%s", want, s)
		}
	}
	// A value cannot smuggle in a second flag or a systemd expansion: it is
	// quoted into one argument (components/component.ExecQuote).
	for extra, want := range map[string]string{"v": `"--v=2 --anonymous-auth=true"`, "root-dir": "--root-dir=$$HOME"} {
		val := map[string]string{"v": "2 --anonymous-auth=true", "root-dir": "$HOME"}[extra]
		u, err := Unit(UnitOptions{BinDir: "/b", NodeName: "n", NodeIP: "1.2.3.4", ExtraArgs: map[string]string{extra: val}})
		if err != nil || !strings.Contains(string(u), "  "+want+"\n") {
			t.Errorf("extra arg %s=%q: err %v, unit lacks %s:\n%s", extra, val, err, want, u)
		}
	}
	if _, err := Unit(UnitOptions{BinDir: "/b", NodeName: "n", NodeIP: "1.2.3.4", ExtraArgs: map[string]string{"a b": "1"}}); err == nil {
		t.Error(`extra arg "a b" accepted`)
	}
}

func testCluster(t *testing.T) (*config.Cluster, config.Host, *certs.CA) {
	t.Helper()
	c := config.Default()
	ca, err := certs.NewCA("kubernetes", certs.ECDSAP256, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	n, _ := c.Host("node01")
	return c, *n, ca
}

func fakeBundle(t *testing.T) string {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
	os.WriteFile(filepath.Join(dir, "bin/kubelet"), []byte("kubelet"), 0o755)
	if _, err := bundle.WriteManifest(dir, "v1.34.4", "v3.6.16", map[string]string{"bin/kubelet": "v1.34.4"}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func joinOptions(t *testing.T, h *fakehost.Host) (Options, *certs.CA) {
	c, n, ca := testCluster(t)
	return Options{Host: h, Cluster: c, Node: n, BundleDir: fakeBundle(t), CgroupDriver: "systemd", DryRun: true,
		Bootstrap: &Bootstrap{Server: "https://192.168.161.151:6443", CAPEM: ca.CertPEM, Token: "abcdef.0123456789abcdef"}}, ca
}

// TestEnsureJoin: a joining node gets the CA, a 0600 bootstrap kubeconfig with
// the token, its config and unit, started; a rerun changes nothing.
func TestEnsureJoin(t *testing.T) {
	ctx := context.Background()
	h := fakehost.New("node01")
	o, ca := joinOptions(t, h)
	res, err := Ensure(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed {
		t.Error("no change reported")
	}
	ch := strings.Join(h.Changes(), "\n")
	for _, want := range []string{"write /usr/local/bin/kubelet 0755", "write /etc/kubernetes/pki/ca.crt 0644",
		"write /etc/kubernetes/bootstrap-kubelet.conf 0600", "write /var/lib/kubelet/config.yaml 0600", "unit kubelet.service", "start kubelet.service"} {
		if !strings.Contains(ch, want) {
			t.Errorf("changes lack %q:\n%s", want, ch)
		}
	}
	bk, err := clientcmd.Load(h.Files["/etc/kubernetes/bootstrap-kubelet.conf"].Data)
	if err != nil {
		t.Fatal(err)
	}
	auth := bk.AuthInfos[bk.Contexts[bk.CurrentContext].AuthInfo]
	cl := bk.Clusters[bk.Contexts[bk.CurrentContext].Cluster]
	if auth.Token != "abcdef.0123456789abcdef" || cl.Server != "https://192.168.161.151:6443" || string(cl.CertificateAuthorityData) != string(ca.CertPEM) {
		t.Errorf("bootstrap kubeconfig %+v %+v", auth, cl)
	}
	if u := string(h.UnitFiles[UnitName].Content); strings.Contains(u, "0123456789abcdef") {
		t.Error("the token is in the unit file")
	}

	h.ResetChanges()
	res, err = Ensure(ctx, o)
	if err != nil || res.Changed || len(h.Changes()) != 0 {
		t.Errorf("rerun: %+v %v %v", res, err, h.Changes())
	}
}

// TestEnsureRefusesAnotherClustersHost: leftovers of another cluster are an
// error before anything is written.
func TestEnsureRefusesAnotherClustersHost(t *testing.T) {
	ctx := context.Background()
	other, _ := certs.NewCA("other", certs.ECDSAP256, time.Hour, time.Now())
	for _, f := range []string{"/etc/kubernetes/pki/ca.crt", "/etc/kubernetes/kubelet.conf"} {
		h := fakehost.New("node01")
		o, _ := joinOptions(t, h)
		if f == "/etc/kubernetes/pki/ca.crt" {
			h.SetFile(f, string(other.CertPEM), 0o644)
		} else {
			h.SetFile("/etc/kubernetes/pki/ca.crt", string(o.Bootstrap.CAPEM), 0o644)
			kc, _ := BootstrapKubeconfig(Bootstrap{Server: "https://x:6443", CAPEM: other.CertPEM, Token: "t"}, "other")
			h.SetFile(f, string(kc), 0o600)
		}
		_, err := Ensure(ctx, o)
		if err == nil || !strings.Contains(err.Error(), "another cluster") || !strings.Contains(err.Error(), "kubeforge reset") {
			t.Errorf("%s of another cluster: %v", f, err)
		}
		if c := h.Changes(); len(c) != 0 {
			t.Errorf("%s of another cluster: host changed %v", f, c)
		}
	}
}

// TestEnsureAfterBootstrapNeedsNoToken: once kubelet.conf exists the bootstrap
// kubeconfig is not written again, so an expired token does not matter.
func TestEnsureAfterBootstrapNeedsNoToken(t *testing.T) {
	h := fakehost.New("node01")
	o, ca := joinOptions(t, h)
	kc, _ := BootstrapKubeconfig(Bootstrap{Server: "https://x:6443", CAPEM: ca.CertPEM, Token: "rotated-away"}, "kubernetes")
	h.SetFile("/etc/kubernetes/kubelet.conf", string(kc), 0o600)
	if _, err := Ensure(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.Files["/etc/kubernetes/bootstrap-kubelet.conf"]; ok {
		t.Error("bootstrap kubeconfig written although the node is bootstrapped")
	}
}

func TestEnsureInitNeedsKubeletConf(t *testing.T) {
	h := fakehost.New("master01")
	o, _ := joinOptions(t, h)
	o.Bootstrap = nil
	_, err := Ensure(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "init phase kubeconfig kubelet") || len(h.Changes()) != 0 {
		t.Errorf("%v %v", err, h.Changes())
	}
}

func TestResolvConf(t *testing.T) {
	ctx := context.Background()
	h := fakehost.New("n")
	h.SetFile("/etc/resolv.conf", "nameserver 10.0.0.2\n", 0o644)
	if got := ResolvConf(ctx, h); got != "/etc/resolv.conf" {
		t.Errorf("plain: %s", got)
	}
	h.SetFile("/etc/resolv.conf", "nameserver 127.0.0.53\noptions edns0\n", 0o644)
	h.SetFile("/run/systemd/resolve/resolv.conf", "nameserver 10.0.0.2\n", 0o644)
	if got := ResolvConf(ctx, h); got != "/run/systemd/resolve/resolv.conf" {
		t.Errorf("resolved stub: %s", got)
	}
}
