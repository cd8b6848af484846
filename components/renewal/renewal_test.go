package renewal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/kubelet"
	"github.com/kubeforge/kubeforge/components/kubeproxy"
	"github.com/kubeforge/kubeforge/components/overlay"
)

// Every renewable name is either read by a unit or explicitly by nobody, so a
// certificate added to the certs catalog forces a decision here.
func TestEveryRenewableNameIsMapped(t *testing.T) {
	nobody := []string{certs.CertEtcdHealthcheckClient, certs.KubeconfigAdmin, certs.KubeconfigSuperAdmin}
	for _, n := range certs.RenewableNames() {
		units := UnitsReading(n)
		switch {
		case slices.Contains(nobody, n) && len(units) > 0:
			t.Errorf("%s is read by %v; expected by nothing that needs a restart", n, units)
		case !slices.Contains(nobody, n) && len(units) == 0:
			t.Errorf("%s: no unit reads it and it is not listed as read by nobody", n)
		}
		for _, u := range units {
			if !slices.Contains(Order, u) {
				t.Errorf("%s is read by %s, which is not in Order", n, u)
			}
		}
	}
}

func TestMapping(t *testing.T) {
	want := map[string][]string{
		"apiserver":                {UnitAPIServer},
		"apiserver-kubelet-client": {UnitAPIServer},
		"apiserver-etcd-client":    {UnitAPIServer},
		"front-proxy-client":       {UnitAPIServer},
		"etcd-server":              {UnitEtcd},
		"etcd-peer":                {UnitEtcd},
		"etcd-overlay-client":      {"kubeforge-node.service"},
		"controller-manager.conf":  {"kube-controller-manager.service"},
		"scheduler.conf":           {"kube-scheduler.service"},
		"kubelet.conf":             {"kubelet.service"},
		"kube-proxy.conf":          {"kube-proxy.service", "kubeforge-node.service"},
		"admin.conf":               nil,
		"super-admin.conf":         nil,
	}
	for n, w := range want {
		if got := UnitsReading(n); !reflect.DeepEqual(got, w) {
			t.Errorf("UnitsReading(%s) = %v, want %v", n, got, w)
		}
	}
	// etcd and the apiserver re-read every renewable file they use (see the
	// sources cited at readers); everything else loads its credential once.
	reloads := map[string]string{"apiserver": UnitAPIServer, "apiserver-kubelet-client": UnitAPIServer,
		"apiserver-etcd-client": UnitAPIServer, "front-proxy-client": UnitAPIServer, "etcd-server": UnitEtcd, "etcd-peer": UnitEtcd}
	for n, units := range want {
		for _, u := range units {
			if got := Reloads(n, u); got != (reloads[n] == u) {
				t.Errorf("Reloads(%s, %s) = %v", n, u, got)
			}
		}
	}
	if Reloads("apiserver", UnitEtcd) {
		t.Error("etcd reloads the apiserver's certificate?")
	}
}

func TestAffectedIsOrderedAndDeduplicated(t *testing.T) {
	// Given in the "wrong" order, with two names for the same unit.
	got := Affected([]string{"kube-proxy.conf", "scheduler.conf", "admin.conf", "apiserver", "etcd-peer", "front-proxy-client",
		"etcd-server", "controller-manager.conf", "etcd-overlay-client", "kubelet.conf"})
	want := []string{"etcd.service", "kube-apiserver.service", "kube-controller-manager.service", "kube-scheduler.service",
		"kubelet.service", "kube-proxy.service", "kubeforge-node.service"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Affected = %v\nwant       %v", got, want)
	}
	if got := Affected([]string{"admin.conf", "super-admin.conf", "etcd-healthcheck-client"}); len(got) != 0 {
		t.Errorf("admin kubeconfigs affect %v", got)
	}
}

func TestRenewedLeavesSkippedOut(t *testing.T) {
	res := &certs.RenewResult{Certificates: []certs.RenewedCert{
		{Name: "apiserver"}, {Name: "etcd-server", Skipped: "externally managed: CA key absent"}, {Name: "kubelet.conf", Skipped: "not embedded"}, {Name: "admin.conf"},
	}}
	if got := Renewed(res); !reflect.DeepEqual(got, []string{"apiserver", "admin.conf"}) {
		t.Errorf("Renewed = %v", got)
	}
	if Renewed(nil) != nil {
		t.Error("Renewed(nil) is not empty")
	}
}

func TestNewPlan(t *testing.T) {
	h := newFakeHost()
	h.addUnit(UnitEtcd, true)
	h.addUnit(UnitAPIServer, true)
	h.addUnit(UnitScheduler, false) // installed, stopped
	// kube-controller-manager and kubelet are not installed here.
	p, err := NewPlan(context.Background(), h, []string{"kubelet.conf", "apiserver", "scheduler.conf", "etcd-peer", "etcd-server",
		"controller-manager.conf", "admin.conf", "apiserver-etcd-client"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range p.Steps {
		got = append(got, fmt.Sprintf("%s [%s] reload=%v %s", s.Unit, strings.Join(s.Reads, ","), s.Reload, s.Skip))
	}
	want := []string{
		"etcd.service [etcd-peer,etcd-server] reload=true ",
		"kube-apiserver.service [apiserver,apiserver-etcd-client] reload=true ",
		"kube-controller-manager.service [controller-manager.conf] reload=false not installed on this host",
		"kube-scheduler.service [scheduler.conf] reload=false not running (inactive/dead); it loads the new files when it starts",
		"kubelet.service [kubelet.conf] reload=false not installed on this host",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("plan:\n%s\nwant:\n%s", joinLines(got), joinLines(want))
	}
	// etcd and the apiserver reload what they read: checked, not restarted.
	if r := p.Restarts(); len(r) != 0 {
		t.Errorf("Restarts = %v", r)
	}
	if r := p.Reloads(); !reflect.DeepEqual(r, []string{UnitEtcd, UnitAPIServer}) {
		t.Errorf("Reloads = %v", r)
	}
	if r := p.Units(); !reflect.DeepEqual(r, []string{UnitEtcd, UnitAPIServer}) {
		t.Errorf("Units = %v", r)
	}
	if n := p.NeedConfig(); !reflect.DeepEqual(n, []string{UnitEtcd, UnitAPIServer}) {
		t.Errorf("NeedConfig = %v", n)
	}
	if len(h.log()) != 0 {
		t.Errorf("planning changed the host: %v", h.log())
	}
}

func TestNodeUnitsNeedNoConfig(t *testing.T) {
	h := newFakeHost()
	h.addUnit(UnitKubelet, true)
	h.addUnit(UnitKubeProxy, true)
	p, err := NewPlan(context.Background(), h, []string{"kubelet.conf", "kube-proxy.conf", "admin.conf"})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Restarts()) != 2 || len(p.NeedConfig()) != 0 {
		t.Errorf("restarts %v, need config %v", p.Restarts(), p.NeedConfig())
	}
}

func TestPrepareRefusesControlPlaneWithoutConfig(t *testing.T) {
	h := newFakeHost()
	h.addUnit(UnitEtcd, true)
	h.addUnit(UnitAPIServer, true)
	p, _ := NewPlan(context.Background(), h, []string{"apiserver", "etcd-server"})
	_, err := Prepare(context.Background(), fastOptions(h), p)
	if err == nil || !strings.Contains(err.Error(), "etcd.service, kube-apiserver.service") || !strings.Contains(err.Error(), "cluster configuration") {
		t.Fatalf("Prepare without config: %v", err)
	}
}

// testCluster is a one-host cluster whose only host runs everything.
func testCluster(t *testing.T) (*config.Cluster, *config.Host) {
	t.Helper()
	c := config.Default()
	c.Spec.Hosts = []config.Host{{Name: "fake01", Address: "192.168.177.10", Roles: []config.Role{config.RoleControlPlane, config.RoleEtcd}}}
	c.Spec.ControlPlaneEndpoint = "192.168.177.10:6443"
	c.Spec.TimeSync.Server = ""
	config.SetDefaults(c)
	if _, err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	n, _ := c.Host("fake01")
	return c, n
}

// A missing encryption configuration must stop the renewal before anything is
// written: re-ensuring the apiserver with a new key would leave every stored
// Secret unreadable.
func TestPrepareNeverMakesANewEncryptionKey(t *testing.T) {
	h := newFakeHost()
	h.addUnit(UnitAPIServer, true)
	h.files["/etc/kubernetes/pki/ca.crt"] = []byte("ca")
	c, n := testCluster(t)
	p, _ := NewPlan(context.Background(), h, []string{"apiserver"})
	o := fastOptions(h)
	o.Cluster, o.Node = c, n
	_, err := Prepare(context.Background(), o, p)
	if err == nil || !strings.Contains(err.Error(), "/etc/kubernetes/encryption-config.yaml") {
		t.Fatalf("Prepare without the encryption config: %v", err)
	}
	if l := h.log(); len(l) != 0 {
		t.Errorf("Prepare changed the host: %v", l)
	}
}

func TestPrepareControlPlane(t *testing.T) {
	h := newFakeHost()
	for _, u := range []string{UnitAPIServer, UnitControllerManager, UnitScheduler} {
		h.addUnit(u, true)
	}
	h.files["/etc/kubernetes/pki/ca.crt"] = newTestPKI(t).caPEM
	h.files["/etc/kubernetes/encryption-config.yaml"] = []byte(`apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
- resources: [secrets]
  providers:
  - secretbox:
      keys:
      - name: key1
        secret: c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=
  - identity: {}
`)
	c, n := testCluster(t)
	p, _ := NewPlan(context.Background(), h, []string{"apiserver", "controller-manager.conf", "scheduler.conf"})
	o := fastOptions(h)
	o.Cluster, o.Node = c, n
	r, err := Prepare(context.Background(), o, p)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{UnitAPIServer, UnitControllerManager, UnitScheduler} {
		if ops := r.ops[u]; ops.trigger == nil || ops.wait == nil {
			t.Errorf("%s: no re-ensure trigger or control-plane wait", u)
		}
	}
	// The apiserver is checked where it serves: its secure port, against the
	// file its --tls-cert-file names.
	sc, ok := r.ops[UnitAPIServer].serves["apiserver"]
	if !ok || sc.url != "https://192.168.177.10:6443/readyz" || sc.file != "/etc/kubernetes/pki/apiserver.crt" {
		t.Errorf("the apiserver is checked at %+v", sc)
	}
	if len(r.ops[UnitControllerManager].serves) != 0 {
		t.Errorf("controller-manager serves %v", r.ops[UnitControllerManager].serves)
	}
}

func TestPrepareEtcdChecksBothPorts(t *testing.T) {
	h := newFakeHost()
	h.addUnit(UnitEtcd, true)
	c, n := testCluster(t)
	p, _ := NewPlan(context.Background(), h, []string{"etcd-server", "etcd-peer"})
	o := fastOptions(h)
	o.Cluster, o.Node = c, n
	r, err := Prepare(context.Background(), o, p)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for name, sc := range r.ops[UnitEtcd].serves {
		got[name] = sc.url + " " + sc.file
	}
	want := map[string]string{
		"etcd-server": "https://192.168.177.10:2379/version /etc/kubernetes/pki/etcd/server.crt",
		"etcd-peer":   "https://192.168.177.10:2380/version /etc/kubernetes/pki/etcd/peer.crt",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("etcd is checked at %v, want %v", got, want)
	}
}

func TestRunRestartsOneAtATimeInOrder(t *testing.T) {
	h := newFakeHost()
	units := []string{UnitKubeProxy, UnitControllerManager, UnitKubelet, UnitScheduler} // added out of order
	for _, u := range units {
		h.addUnit(u, true)
	}
	p, _ := NewPlan(context.Background(), h, []string{"kube-proxy.conf", "kubelet.conf", "scheduler.conf", "controller-manager.conf"})
	before := map[string]int{}
	r := &Restarter{o: fastOptions(h), plan: p, ops: map[string]unitOps{}}
	r.o.defaults()
	for _, u := range units {
		before[u] = h.pid(u)
		probes := 0
		// Each unit answers unhealthy twice after its restart, so a sequence
		// that did not wait would restart the next one in between.
		r.ops[u] = fakeOps(h, u, func() error {
			if probes++; probes < 3 {
				return errors.New("starting")
			}
			return nil
		})
	}
	res, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"restart kube-controller-manager.service", "healthy kube-controller-manager.service",
		"restart kube-scheduler.service", "healthy kube-scheduler.service",
		"restart kubelet.service", "healthy kubelet.service",
		"restart kube-proxy.service", "healthy kube-proxy.service",
	}
	if got := h.log(); !reflect.DeepEqual(got, want) {
		t.Errorf("events:\n%s\nwant:\n%s", joinLines(got), joinLines(want))
	}
	if len(res.Restarted) != 4 {
		t.Fatalf("restarted %v", res.Restarted)
	}
	for _, rs := range res.Restarted {
		if rs.OldPID != before[rs.Unit] || rs.NewPID == rs.OldPID || rs.NewPID != h.pid(rs.Unit) {
			t.Errorf("%s: pid %d -> %d (was %d, now %d)", rs.Unit, rs.OldPID, rs.NewPID, before[rs.Unit], h.pid(rs.Unit))
		}
	}
}

func TestRunStopsAtTheFirstUnhealthyUnit(t *testing.T) {
	for _, tc := range []struct {
		mode, want string
	}{
		{"crash", "exited 3 times since the restart"},
		{"job-fails", `restart job: job for kube-controller-manager.service ended in "failed"`},
		{"stops", "it is inactive (dead) after the restart"},
		{"unhealthy", "not healthy within 50ms: serving the old certificate"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			h := newFakeHost()
			for _, u := range []string{UnitEtcd, UnitControllerManager, UnitScheduler} {
				h.addUnit(u, true)
			}
			if tc.mode != "unhealthy" {
				h.units[UnitControllerManager].restart = tc.mode
			}
			// etcd reloads (checked, not restarted), the controller-manager
			// restarts and fails, the scheduler is never reached.
			p, _ := NewPlan(context.Background(), h, []string{"etcd-server", "controller-manager.conf", "scheduler.conf"})
			o := fastOptions(h)
			o.BackupDir = "/etc/kubernetes/tmp/kubeforge-certs-backup-20250101T000000Z"
			o.Timeout = 50 * time.Millisecond
			r := &Restarter{o: o, plan: p, ops: map[string]unitOps{}}
			r.o.defaults()
			for _, u := range p.Units() {
				var healthy func() error
				if u == UnitControllerManager && tc.mode == "unhealthy" {
					healthy = func() error { return errors.New("serving the old certificate") }
				}
				r.ops[u] = fakeOps(h, u, healthy)
			}
			res, err := r.Run(context.Background())
			var re *Error
			if !errors.As(err, &re) {
				t.Fatalf("Run: %v", err)
			}
			msg := err.Error()
			for _, w := range []string{
				"kube-controller-manager.service on fake01 did not come back healthy", tc.want,
				"on the new certificates and healthy before it: etcd.service",
				"not checked or restarted (the sequence stopped here): kube-scheduler.service",
				o.BackupDir, "tls: private key does not match public key", // the journal tail
			} {
				if !strings.Contains(msg, w) {
					t.Errorf("error lacks %q:\n%s", w, msg)
				}
			}
			if re.Unit != UnitControllerManager || !reflect.DeepEqual(re.Pending, []string{UnitScheduler}) {
				t.Errorf("error unit %s pending %v", re.Unit, re.Pending)
			}
			if len(res.Reloaded) != 1 || res.Reloaded[0].Unit != UnitEtcd || len(res.Restarted) != 0 {
				t.Errorf("reloaded %v, restarted %v", res.Reloaded, res.Restarted)
			}
			for _, e := range h.log() {
				if strings.Contains(e, UnitScheduler) || e == "restart "+UnitEtcd {
					t.Errorf("%s was touched: %v", strings.Fields(e)[1], h.log())
				}
			}
		})
	}
}

// An old process that still answers must not count: health only counts once
// systemd shows a new main PID.
func TestWaitUpIgnoresTheOldProcess(t *testing.T) {
	h := newFakeHost()
	h.addUnit(UnitKubelet, true)
	r := &Restarter{o: fastOptions(h)}
	r.o.Timeout = 30 * time.Millisecond
	r.o.defaults()
	old := h.pid(UnitKubelet)
	_, err := r.waitUp(context.Background(), UnitKubelet, old, nil, func(context.Context) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "no new process yet") {
		t.Fatalf("waitUp with the old process running: %v", err)
	}
}

func TestHTTPProbesOfNodeUnits(t *testing.T) {
	var status = http.StatusServiceUnavailable
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
		fmt.Fprintln(w, "rules not synced")
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	h := newFakeHost()
	h.files[kubelet.ConfigPath] = []byte("kind: KubeletConfiguration\nhealthzBindAddress: 127.0.0.1\nhealthzPort: " + port + "\n")
	// Bound to every address: probed on loopback.
	h.files[kubeproxy.ConfigPath] = []byte("kind: KubeProxyConfiguration\nhealthzBindAddress: 0.0.0.0:" + port + "\n")
	h.files[overlay.ConfigPath] = []byte("nodeName: fake01\npublicIP: 192.168.177.10\netcd:\n  endpoints: [https://192.168.177.10:2379]\n  caFile: /etc/kubernetes/pki/etcd/ca.crt\n  certFile: /etc/kubernetes/pki/etcd/overlay-client.crt\n  keyFile: /etc/kubernetes/pki/etcd/overlay-client.key\nhealthAddress: 127.0.0.1:" + port + "\n")
	r := &Restarter{o: fastOptions(h)}
	r.o.defaults()
	ctx := context.Background()
	for name, mk := range map[string]func(context.Context) (unitOps, error){"kubelet": r.kubeletOps, "kube-proxy": r.kubeProxyOps, "overlay": r.overlayOps} {
		ops, err := mk(ctx)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		status = http.StatusServiceUnavailable
		if err := ops.probe(ctx); err == nil || !strings.Contains(err.Error(), "HTTP 503: rules not synced") || !strings.Contains(err.Error(), "127.0.0.1:"+port) {
			t.Errorf("%s probe of a 503: %v", name, err)
		}
		status = http.StatusOK
		if err := ops.probe(ctx); err != nil {
			t.Errorf("%s probe of a 200: %v", name, err)
		}
	}
	// A broken configuration fails Prepare, naming the file.
	h.files[kubeproxy.ConfigPath] = []byte("healthzBindAddress: nonsense\n")
	if _, err := r.kubeProxyOps(ctx); err == nil || !strings.Contains(err.Error(), kubeproxy.ConfigPath) {
		t.Errorf("bad kube-proxy config: %v", err)
	}
}

func TestLoopbackFor(t *testing.T) {
	for in, want := range map[string]string{"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1", "127.0.0.1": "127.0.0.1", "10.0.0.5": "10.0.0.5"} {
		if got := loopbackFor(in); got != want {
			t.Errorf("loopbackFor(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLoadConfig(t *testing.T) {
	ctx := context.Background()
	h := newFakeHost()
	if c, n, from, err := LoadConfig(ctx, h, ConfigSource{HostCopy: "/etc/kubeforge/cluster.yaml", NodeName: "fake01"}); c != nil || n != nil || from != "" || err != nil {
		t.Fatalf("no copy: %v %v %q %v", c, n, from, err)
	}
	c, _ := testCluster(t)
	data, err := config.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	h.files["/etc/kubeforge/cluster.yaml"] = data
	noIdentity := func() (string, []net.IP, error) { return "elsewhere", nil, nil }
	got, n, from, err := LoadConfig(ctx, h, ConfigSource{HostCopy: "/etc/kubeforge/cluster.yaml", NodeName: "fake01"})
	if err != nil || got == nil || n.Name != "fake01" || from != "fake01:/etc/kubeforge/cluster.yaml" {
		t.Fatalf("copy: %v %v %q %v", got, n, from, err)
	}
	// Found by address when no name is given.
	byAddr := func() (string, []net.IP, error) { return "other", []net.IP{net.ParseIP("192.168.177.10")}, nil }
	if _, n, _, err := LoadConfig(ctx, h, ConfigSource{HostCopy: "/etc/kubeforge/cluster.yaml", Identity: byAddr}); err != nil || n.Name != "fake01" {
		t.Errorf("by address: %v %v", n, err)
	}
	if _, _, _, err := LoadConfig(ctx, h, ConfigSource{HostCopy: "/etc/kubeforge/cluster.yaml", Identity: noIdentity}); err == nil || !strings.Contains(err.Error(), "/etc/kubeforge/cluster.yaml") {
		t.Errorf("host not in the config: %v", err)
	}
	h.files["/etc/kubeforge/cluster.yaml"] = bytes.Replace(data, []byte("kind: Cluster"), []byte("kind: Clustr"), 1)
	if _, _, _, err := LoadConfig(ctx, h, ConfigSource{HostCopy: "/etc/kubeforge/cluster.yaml", NodeName: "fake01"}); err == nil || !strings.Contains(err.Error(), "fake01: /etc/kubeforge/cluster.yaml") {
		t.Errorf("broken copy: %v", err)
	}
}

func TestReportText(t *testing.T) {
	na := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rep := &Report{
		Renewal: &certs.RenewResult{DryRun: true, BackupDir: "/etc/kubernetes/tmp/b", Certificates: []certs.RenewedCert{
			{Name: "apiserver", Path: "/etc/kubernetes/pki/apiserver.crt", OldNotAfter: na, NewNotAfter: na.Add(time.Hour)},
			{Name: "kubelet.conf", Skipped: "client certificate is not embedded"},
		}},
		Plan: Plan{Steps: []Step{{Unit: UnitAPIServer, Reads: []string{"apiserver"}}, {Unit: UnitKubelet, Reads: []string{"kubelet.conf"}, Skip: "not installed on this host"}}},
	}
	var b bytes.Buffer
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{
		"would renew: /etc/kubernetes/pki/apiserver.crt, expires 2026-01-02T04:04:05Z (was 2026-01-02T03:04:05Z)",
		"kubelet.conf   skipped: client certificate is not embedded",
		"would be backed up to /etc/kubernetes/tmp/b",
		"kube-apiserver.service (reads apiserver): would restart",
		"kubelet.service (reads kubelet.conf): not restarted: not installed on this host",
	} {
		if !strings.Contains(b.String(), w) {
			t.Errorf("dry-run report lacks %q:\n%s", w, b.String())
		}
	}
	rep.Renewal.DryRun = false
	rep.Restart = &Result{Restarted: []Restarted{{Unit: UnitAPIServer, How: "re-ensured (unit restarted with the new input digest)", OldPID: 10, NewPID: 20, Took: 3 * time.Second}}}
	rep.Total = 4 * time.Second
	b.Reset()
	_ = rep.WriteText(&b)
	for _, w := range []string{"kube-apiserver.service (reads apiserver): re-ensured (unit restarted with the new input digest), healthy after 3s (pid 10 -> 20)", "Renewal and restarts took 4s."} {
		if !strings.Contains(b.String(), w) {
			t.Errorf("report lacks %q:\n%s", w, b.String())
		}
	}

	// Units that reload by themselves: planned, checked, or (--no-restart)
	// neither.
	rep = &Report{
		Renewal: &certs.RenewResult{DryRun: true, Certificates: []certs.RenewedCert{{Name: "apiserver"}, {Name: "etcd-server"}, {Name: "scheduler.conf"}}},
		Plan: Plan{Steps: []Step{{Unit: UnitEtcd, Reads: []string{"etcd-server"}, Reload: true},
			{Unit: UnitAPIServer, Reads: []string{"apiserver", "front-proxy-client"}, Reload: true}, {Unit: UnitScheduler, Reads: []string{"scheduler.conf"}}}},
	}
	b.Reset()
	_ = rep.WriteText(&b)
	for _, w := range []string{
		"etcd.service (reads etcd-server): would not restart: it reloads them by itself; would check that it serves the renewed certificates and is healthy",
		"kube-scheduler.service (reads scheduler.conf): would restart",
	} {
		if !strings.Contains(b.String(), w) {
			t.Errorf("dry-run report lacks %q:\n%s", w, b.String())
		}
	}
	rep.Renewal.DryRun = false
	rep.Restart = &Result{
		Reloaded: []Reloaded{{Unit: UnitEtcd, PID: 7, NewPID: 7, Took: time.Second, Served: []Served{{Name: "etcd-server", URL: "https://10.0.0.1:2379/version", Serial: "0A"}}},
			{Unit: UnitAPIServer, PID: 8, NewPID: 8, Took: time.Second, Served: []Served{{Name: "apiserver", URL: "https://10.0.0.1:6443/readyz", Serial: "0B"}}, PerConnection: []string{"front-proxy-client"}}},
		Restarted: []Restarted{{Unit: UnitScheduler, How: "re-ensured", OldPID: 9, NewPID: 19, Took: time.Second}},
	}
	b.Reset()
	_ = rep.WriteText(&b)
	for _, w := range []string{
		"etcd.service (reads etcd-server): not restarted: reloaded them by itself, healthy after 1s (pid 7, unchanged); serves the renewed etcd-server (serial 0A) at https://10.0.0.1:2379/version\n",
		"kube-apiserver.service (reads apiserver, front-proxy-client): not restarted: reloaded them by itself, healthy after 1s (pid 8, unchanged); serves the renewed apiserver (serial 0B) at https://10.0.0.1:6443/readyz; reads front-proxy-client again for each new connection\n",
		"kube-scheduler.service (reads scheduler.conf): re-ensured, healthy after 1s (pid 9 -> 19)",
	} {
		if !strings.Contains(b.String(), w) {
			t.Errorf("report lacks %q:\n%s", w, b.String())
		}
	}
	rep.Restart, rep.NoRestart = nil, true
	b.Reset()
	_ = rep.WriteText(&b)
	for _, w := range []string{
		"etcd.service (reads etcd-server): not restarted: it reloads them by itself (not checked: --no-restart)",
		"Restarts skipped (--no-restart): restart kube-scheduler.service one at a time",
	} {
		if !strings.Contains(b.String(), w) {
			t.Errorf("--no-restart report lacks %q:\n%s", w, b.String())
		}
	}
}
