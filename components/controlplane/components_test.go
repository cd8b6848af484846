package controlplane

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host/dryrun"
	"github.com/kubeforge/kubeforge/certs"
)

func testOptions(t *testing.T) Options {
	t.Helper()
	c := config.Default()
	node, ok := c.Host("master01")
	if !ok {
		t.Fatal("default config has no master01")
	}
	return Options{Cluster: c, Node: *node}
}

func all(t *testing.T, o Options) []Component {
	t.Helper()
	enc, err := NewEncryptionConfig()
	if err != nil {
		t.Fatal(err)
	}
	var out []Component
	for _, n := range Names {
		c, err := o.Component(n, enc)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

func TestAPIServerFlags(t *testing.T) {
	o := testOptions(t)
	c := all(t, o)[0]
	want := map[string]string{
		"advertise-address":            "192.168.161.151",
		"authorization-mode":           "Node,RBAC",
		"enable-admission-plugins":     "NodeRestriction",
		"profiling":                    "false",
		"etcd-servers":                 "https://192.168.161.151:2379,https://192.168.161.152:2379,https://192.168.161.153:2379",
		"etcd-certfile":                "/etc/kubernetes/pki/apiserver-etcd-client.crt",
		"service-account-issuer":       "https://kubernetes.default.svc.cluster.local",
		"service-account-key-file":     "/etc/kubernetes/pki/sa.pub",
		"requestheader-client-ca-file": "/etc/kubernetes/pki/front-proxy-ca.crt",
		"proxy-client-cert-file":       "/etc/kubernetes/pki/front-proxy-client.crt",
		"audit-log-maxage":             "30",
		"audit-log-maxbackup":          "10",
		"audit-log-maxsize":            "100",
		"audit-policy-file":            "/etc/kubernetes/audit-policy.yaml",
		"encryption-provider-config":   "/etc/kubernetes/encryption-config.yaml",
		"authentication-config":        "/etc/kubernetes/authentication-config.yaml",
		"secure-port":                  "6443",
	}
	for k, v := range want {
		if c.Args[k] != v {
			t.Errorf("--%s=%q, want %q", k, c.Args[k], v)
		}
	}
	if got := c.Args["kubelet-certificate-authority"]; got != "/etc/kubernetes/pki/kubelet-serving-ca.crt" {
		t.Errorf("--kubelet-certificate-authority=%q: kubelets must be verified against the kubelet-serving CA", got)
	}
	if c.Args.Has("anonymous-auth") {
		t.Error("--anonymous-auth set together with --authentication-config (the apiserver refuses both)")
	}
	if c.HealthURL != "https://192.168.161.151:6443/readyz" || !c.HealthCA {
		t.Errorf("health %s %v", c.HealthURL, c.HealthCA)
	}
	if !slices.Contains(c.After, "etcd.service") {
		t.Errorf("master01 runs etcd, but the apiserver is not ordered after it: %v", c.After)
	}
	modes := map[string]bool{}
	for _, f := range c.Files {
		if f.Mode != 0o600 {
			t.Errorf("%s mode %o", f.Path, f.Mode)
		}
		modes[f.Path] = f.Secret
	}
	if !modes["/etc/kubernetes/encryption-config.yaml"] {
		t.Error("the encryption config is not marked secret")
	}
}

// TestTLSPolicy: every control-plane server takes kubeforge's cipher suites
// and TLS 1.2 as the minimum.
func TestTLSPolicy(t *testing.T) {
	o := testOptions(t)
	for _, name := range Names {
		c, err := o.Component(name, []byte("enc"))
		if err != nil {
			t.Fatal(err)
		}
		if c.Args["tls-cipher-suites"] != strings.Join(certs.TLSCipherSuites, ",") || c.Args["tls-min-version"] != "VersionTLS12" {
			t.Errorf("%s: --tls-cipher-suites=%q --tls-min-version=%q", name, c.Args["tls-cipher-suites"], c.Args["tls-min-version"])
		}
	}
}

func TestExtraArgsMergeAndOverride(t *testing.T) {
	o := testOptions(t)
	o.Cluster.Spec.Components.APIServer.ExtraArgs = map[string]string{"secure-port": "7443", "anonymous-auth": "false", "v": "2"}
	o.Cluster.Spec.Components.ControllerManager.ExtraArgs = map[string]string{"allocate-node-cidrs": "true"}
	o.Cluster.Spec.Components.Scheduler.ExtraArgs = map[string]string{"bind-address": "0.0.0.0", "secure-port": "11259"}
	cs := all(t, o)
	api, cm, sched := cs[0], cs[1], cs[2]
	if api.Args["secure-port"] != "7443" || api.Args["v"] != "2" || api.HealthURL != "https://192.168.161.151:7443/readyz" {
		t.Errorf("apiserver extraArgs not applied: %v %s", api.Args, api.HealthURL)
	}
	// The operator took over anonymous access: kubeforge's AuthenticationConfiguration
	// must go, or the apiserver refuses to start with both.
	if api.Args.Has("authentication-config") {
		t.Error("--authentication-config kept next to --anonymous-auth")
	}
	for _, f := range api.Files {
		if f.Path == o.AuthenticationConfigPath() {
			t.Error("authentication config still written")
		}
	}
	if cm.Args["allocate-node-cidrs"] != "true" || cm.Args["cluster-cidr"] != "10.244.0.0/16" || cm.Args["node-cidr-mask-size"] != "24" {
		t.Errorf("controller-manager with node CIDR allocation: %v", cm.Args)
	}
	if sched.HealthURL != "https://127.0.0.1:11259/healthz" {
		t.Errorf("scheduler health on 0.0.0.0 must be probed on loopback: %s", sched.HealthURL)
	}
	o.Cluster.Spec.Components.Scheduler.ExtraArgs = map[string]string{"--v": "2"}
	if _, err := o.SchedulerComponent(); err == nil || !strings.Contains(err.Error(), "spec.components.scheduler.extraArgs") {
		t.Errorf("flag name with dashes accepted: %v", err)
	}
}

func TestControllerManagerDefaults(t *testing.T) {
	cm := all(t, testOptions(t))[1]
	for k, v := range map[string]string{
		// The overlay's kube backend routes the podCIDRs it allocates.
		"allocate-node-cidrs":             "true",
		"cluster-cidr":                    "10.244.0.0/16",
		"node-cidr-mask-size":             "24",
		"controllers":                     "*,bootstrapsigner,tokencleaner",
		"use-service-account-credentials": "true",
		"kubeconfig":                      "/etc/kubernetes/controller-manager.conf",
		"profiling":                       "false",
		"bind-address":                    "127.0.0.1",
		// Kubelet serving certificates from their own CA, clients from the
		// cluster CA; no catch-all signer.
		"cluster-signing-kubelet-serving-cert-file":       "/etc/kubernetes/pki/kubelet-serving-ca.crt",
		"cluster-signing-kubelet-serving-key-file":        "/etc/kubernetes/pki/kubelet-serving-ca.key",
		"cluster-signing-kubelet-client-cert-file":        "/etc/kubernetes/pki/ca.crt",
		"cluster-signing-kubelet-client-key-file":         "/etc/kubernetes/pki/ca.key",
		"cluster-signing-kube-apiserver-client-cert-file": "/etc/kubernetes/pki/ca.crt",
		"cluster-signing-kube-apiserver-client-key-file":  "/etc/kubernetes/pki/ca.key",
	} {
		if cm.Args[k] != v {
			t.Errorf("--%s=%q, want %q", k, cm.Args[k], v)
		}
	}
	for _, k := range []string{"cluster-signing-cert-file", "cluster-signing-key-file", "cluster-signing-legacy-unknown-cert-file"} {
		if cm.Args.Has(k) {
			t.Errorf("--%s is set", k)
		}
	}
	// With the etcd backend the agents allocate subnets themselves.
	eo := testOptions(t)
	eo.Cluster.Spec.Networking.Overlay.Backend = config.OverlayBackendEtcd
	cm = all(t, eo)[1]
	if cm.Args["allocate-node-cidrs"] != "false" || cm.Args.Has("cluster-cidr") {
		t.Errorf("etcd backend: --allocate-node-cidrs=%q --cluster-cidr=%q", cm.Args["allocate-node-cidrs"], cm.Args["cluster-cidr"])
	}
	// The controller-manager refuses the catch-all files together with
	// per-signer ones: an operator's catch-all replaces kubeforge's per-signer set.
	o := testOptions(t)
	o.Cluster.Spec.Components.ControllerManager.ExtraArgs = map[string]string{"cluster-signing-cert-file": "/x/ca.crt", "cluster-signing-key-file": "/x/ca.key"}
	cm, err := o.ControllerManagerComponent()
	if err != nil {
		t.Fatal(err)
	}
	for k := range cm.Args {
		if strings.HasPrefix(k, "cluster-signing-") && k != "cluster-signing-cert-file" && k != "cluster-signing-key-file" {
			t.Errorf("--%s set together with the operator's --cluster-signing-cert-file", k)
		}
	}
}

func TestRefusesLoopbackAdvertiseAddress(t *testing.T) {
	o := testOptions(t)
	o.Node.Address = "127.0.0.1"
	if _, err := o.APIServerComponent([]byte("x")); err == nil || !strings.Contains(err.Error(), "advertise") {
		t.Errorf("loopback advertise address: %v", err)
	}
	o = testOptions(t)
	o.Node.Roles = []config.Role{config.RoleWorker}
	if _, err := o.SchedulerComponent(); err == nil || !strings.Contains(err.Error(), "control-plane") {
		t.Errorf("worker host: %v", err)
	}
}

// post219 are directives (per section) that systemd 219, CentOS 7's, does not
// load; the requirement names these four.
var post219 = map[string][]string{
	"Unit":    {"StartLimitIntervalSec", "StartLimitBurst"},
	"Service": {"StateDirectory", "TasksMax", "ExecCondition", "CacheDirectory", "LogsDirectory", "MemoryMax", "CPUWeight", "ProtectKernelTunables"},
}

// lint219 reports directives systemd 219 would not load.
func lint219(unit []byte) []string {
	var bad []string
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(unit))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") {
			section = strings.Trim(line, "[]")
			continue
		}
		key, _, ok := strings.Cut(line, "=")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		if slices.Contains(post219[section], key) {
			bad = append(bad, "["+section+"] "+key)
		}
		if key == "Type" && strings.Contains(line, "exec") {
			bad = append(bad, "Type=exec")
		}
	}
	return bad
}

func TestUnitsLoadOnSystemd219(t *testing.T) {
	if got := lint219([]byte("[Unit]\nStartLimitIntervalSec=0\n[Service]\nTasksMax=10\n")); len(got) != 2 {
		t.Fatalf("the lint itself misses directives: %v", got)
	}
	for _, c := range all(t, testOptions(t)) {
		u := c.Unit("sha256:00")
		if bad := lint219(u); len(bad) > 0 {
			t.Errorf("%s uses directives systemd 219 does not know: %v\n%s", c.Name, bad, u)
		}
		s := string(u)
		for _, want := range []string{"Restart=always", "TimeoutStopSec=", "WantedBy=multi-user.target", "StartLimitInterval=0", "ExecStart=" + c.Binary + " \\\n"} {
			if !strings.Contains(s, want) {
				t.Errorf("%s unit lacks %q", c.Name, want)
			}
		}
		// Every flag is on its own continuation line, as systemd 219 parses it.
		if n := strings.Count(s, " \\\n  --"); n != len(c.Args) {
			t.Errorf("%s: %d flag lines for %d flags", c.Name, n, len(c.Args))
		}
	}
}

func TestUnitsHoldNoSecrets(t *testing.T) {
	enc, err := NewEncryptionConfig()
	if err != nil {
		t.Fatal(err)
	}
	o := testOptions(t)
	api, err := o.APIServerComponent(enc)
	if err != nil {
		t.Fatal(err)
	}
	key := ""
	for _, l := range strings.Split(string(enc), "\n") {
		if _, v, ok := strings.Cut(l, "secret: "); ok {
			key = v
		}
	}
	if len(key) != 44 {
		t.Fatalf("no 32-byte base64 key in the encryption config: %q", key)
	}
	u := string(api.Unit("sha256:00"))
	if strings.Contains(u, key) || strings.Contains(u, "PRIVATE KEY") {
		t.Error("the apiserver unit holds key material")
	}
	for _, f := range api.Args.Flags() {
		if strings.Contains(strings.ToLower(f), "token=") || strings.Contains(f, key) {
			t.Errorf("secret-looking flag %s", f)
		}
	}
}

func TestEncryptionConfig(t *testing.T) {
	a, err := NewEncryptionConfig()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewEncryptionConfig()
	if bytes.Equal(a, b) {
		t.Fatal("two generated encryption configs are equal: the key is not random")
	}
	if err := CheckEncryptionConfig(a); err != nil {
		t.Fatalf("generated config rejected: %v", err)
	}
	identityFirst := []byte("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - identity: {}\n  - aescbc: {keys: [{name: k, secret: x}]}\n")
	if err := CheckEncryptionConfig(identityFirst); err == nil || !strings.Contains(err.Error(), "unencrypted") {
		t.Errorf("identity first: %v", err)
	}
	if err := CheckEncryptionConfig([]byte("kind: [")); err == nil {
		t.Error("garbage accepted")
	}

	ctx := context.Background()
	h := dryrun.New(nil, dryrun.Options{Name: "master01"})
	p := "/etc/kubernetes/encryption-config.yaml"
	got, created, err := EnsureEncryptionConfig(ctx, h, p)
	if err != nil || !created || CheckEncryptionConfig(got) != nil {
		t.Fatalf("fresh host: created=%v err=%v", created, err)
	}
	// Once a file exists it is kept as it is: its key encrypts stored Secrets.
	if err := h.WriteFile(ctx, p, a, hostWrite600); err != nil {
		t.Fatal(err)
	}
	got, created, err = EnsureEncryptionConfig(ctx, h, p)
	if err != nil || created || !bytes.Equal(got, a) {
		t.Fatalf("existing file not kept: created=%v err=%v", created, err)
	}
	if err := h.WriteFile(ctx, p, identityFirst, hostWrite600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := EnsureEncryptionConfig(ctx, h, p); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("bad existing file: %v", err)
	}
}

func TestAuthenticationConfigLimitsAnonymous(t *testing.T) {
	s := string(AuthenticationConfig())
	for _, want := range []string{"kind: AuthenticationConfiguration", "apiVersion: apiserver.config.k8s.io/v1", "enabled: true", "path: /readyz", "path: /livez", "path: /healthz", "path: " + ClusterInfoPath} {
		if !strings.Contains(s, want) {
			t.Errorf("authentication config lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "path: /api\n") || strings.Contains(s, "path: /\n") {
		t.Error("anonymous allowed on the API root")
	}
}

func TestCheckEndpoint(t *testing.T) {
	ctx := context.Background()
	o := testOptions(t)
	h := dryrun.New(nil, dryrun.Options{Name: "master01"})
	failDial := func(context.Context, string, string) (net.Conn, error) {
		return nil, &net.OpError{Op: "dial", Err: errTimeout{}}
	}
	// The default endpoint is master01's own address: nothing to reach yet.
	if err := CheckEndpoint(ctx, h, o.Cluster, o.Node, failDial); err != nil {
		t.Errorf("own address: %v", err)
	}
	o.Cluster.Spec.ControlPlaneEndpoint = "192.168.161.99:6443"
	err := CheckEndpoint(ctx, h, o.Cluster, o.Node, failDial)
	if err == nil || !strings.Contains(err.Error(), "192.168.161.99:6443 is unreachable") || !strings.Contains(err.Error(), "192.168.161.151:6443") {
		t.Errorf("unreachable VIP: %v", err)
	}
	// A load balancer that accepts connections is fine.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	o.Cluster.Spec.ControlPlaneEndpoint = l.Addr().String()
	o.Node.Address = "192.168.161.151"
	if err := CheckEndpoint(ctx, h, o.Cluster, o.Node, nil); err != nil {
		t.Errorf("listening endpoint: %v", err)
	}
}

type errTimeout struct{}

func (errTimeout) Error() string   { return "i/o timeout" }
func (errTimeout) Timeout() bool   { return true }
func (errTimeout) Temporary() bool { return true }

func TestAPIServerStopsWithinItsUnit(t *testing.T) {
	o := testOptions(t)
	c := all(t, o)[0]
	// Without these the apiserver waits up to --request-timeout for connections
	// with open watches and systemd kills it (see TestAPIServerGracefulStop).
	for k, v := range map[string]string{"shutdown-send-retry-after": "true", "shutdown-watch-termination-grace-period": "10s"} {
		if c.Args[k] != v {
			t.Errorf("--%s=%q, want %q", k, c.Args[k], v)
		}
	}
	if u := string(c.Unit("sha256:00")); !strings.Contains(u, "\nTimeoutStopSec=30s\n") {
		t.Errorf("apiserver unit without TimeoutStopSec=30s:\n%s", u)
	}
	for _, tc := range []struct {
		extra map[string]string
		want  string
	}{
		// An operator's delay for a load balancer is waited out before the drain.
		{map[string]string{"shutdown-delay-duration": "70s"}, "TimeoutStopSec=95s"},
		{map[string]string{"shutdown-delay-duration": "20s", "shutdown-watch-termination-grace-period": "25.5s"}, "TimeoutStopSec=61s"},
		{map[string]string{"shutdown-watch-termination-grace-period": "0s"}, "TimeoutStopSec=30s"},
		// The apiserver refuses what does not parse; the unit keeps the default.
		{map[string]string{"shutdown-delay-duration": "soon"}, "TimeoutStopSec=30s"},
	} {
		t.Run(fmt.Sprint(tc.extra), func(t *testing.T) {
			o := testOptions(t)
			o.Cluster.Spec.Components.APIServer.ExtraArgs = tc.extra
			c, err := o.APIServerComponent([]byte("x"))
			if err != nil {
				t.Fatal(err)
			}
			if u := string(c.Unit("sha256:00")); !strings.Contains(u, "\n"+tc.want+"\n") {
				t.Errorf("extraArgs %v: unit lacks %s:\n%s", tc.extra, tc.want, u[strings.Index(u, "Restart="):])
			}
		})
	}
	for _, c := range all(t, o)[1:] {
		if u := string(c.Unit("sha256:00")); !strings.Contains(u, "\nTimeoutStopSec=30s\n") {
			t.Errorf("%s unit without TimeoutStopSec=30s", c.Name)
		}
	}
}
