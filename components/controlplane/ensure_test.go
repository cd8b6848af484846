package controlplane

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/bootstrap/host/local"
)

var hostWrite600 = host.WriteOptions{Mode: 0o600}

// seed writes what the earlier phases leave behind: the binary and every file
// the component's flags name.
func seed(t *testing.T, h host.Host, c Component) {
	t.Helper()
	ctx := context.Background()
	if err := h.WriteFile(ctx, c.Binary, []byte("binary"), host.WriteOptions{Mode: 0o755}); err != nil {
		t.Fatal(err)
	}
	for k, v := range c.Args {
		if !inputFlag(k) {
			continue
		}
		for _, p := range strings.Split(v, ",") {
			if _, err := h.Stat(ctx, p); host.IsNotExist(err) {
				if err := h.WriteFile(ctx, p, []byte("content of "+p), hostWrite600); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

func TestEnsureIsIdempotentAndRestartsOnInputChange(t *testing.T) {
	ctx := context.Background()
	o := testOptions(t)
	cs := all(t, o)
	h := newFakeHost()
	for _, c := range cs {
		seed(t, h, c)
	}
	h.changes()
	for _, c := range cs {
		res, err := Ensure(ctx, h, c, nil)
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		if !res.Changed || res.Action != "started" {
			t.Errorf("%s first run: %+v", c.Name, res)
		}
	}
	plan := strings.Join(h.changes(), "\n")
	for _, want := range []string{"write /etc/kubernetes/audit-policy.yaml", "write /etc/kubernetes/encryption-config.yaml",
		"mkdir " + AuditLogDir, "write-unit kube-apiserver.service", "enable kube-apiserver.service", "start kube-apiserver.service",
		"write-unit kube-controller-manager.service", "start kube-scheduler.service"} {
		if !strings.Contains(plan, want) {
			t.Errorf("changes lack %q:\n%s", want, plan)
		}
	}
	if u := h.units["kube-apiserver.service"].content; !strings.Contains(string(u), "# inputs sha256:") {
		t.Errorf("unit has no input digest:\n%s", u)
	}

	// Second run: everything in place, nothing to do.
	for _, c := range cs {
		res, err := Ensure(ctx, h, c, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Changed {
			t.Errorf("%s rerun changed: %+v", c.Name, res)
		}
	}
	if extra := h.changes(); len(extra) > 0 {
		t.Errorf("rerun changed the host: %v", extra)
	}

	// A renewed certificate that the apiserver reloads by itself (serving,
	// front-proxy, etcd and kubelet client) leaves its unit alone: no restart.
	h.changes()
	for _, f := range []string{"apiserver.crt", "apiserver.key", "front-proxy-client.crt", "front-proxy-client.key",
		"apiserver-etcd-client.crt", "apiserver-etcd-client.key", "apiserver-kubelet-client.crt", "apiserver-kubelet-client.key"} {
		if err := h.WriteFile(ctx, "/etc/kubernetes/pki/"+f, []byte("renewed"), hostWrite600); err != nil {
			t.Fatal(err)
		}
	}
	h.changes()
	res, err := Ensure(ctx, h, cs[0], nil)
	if err != nil || res.Changed {
		t.Errorf("apiserver after a renewal of the certificates it reloads: %+v %v", res, err)
	}
	if ch := h.changes(); len(ch) > 0 {
		t.Errorf("apiserver after a renewal of the certificates it reloads: changed %v", ch)
	}
	// A file it reads only at start changes its inputs, so it restarts; the
	// scheduler, which does not read it, stays.
	if err := h.WriteFile(ctx, "/etc/kubernetes/pki/sa.pub", []byte("another key"), hostWrite600); err != nil {
		t.Fatal(err)
	}
	res, err = Ensure(ctx, h, cs[0], nil)
	if err != nil || res.Action != "restarted" {
		t.Errorf("apiserver after a change of its service-account key: %+v %v", res, err)
	}
	res, err = Ensure(ctx, h, cs[2], nil)
	if err != nil || res.Changed {
		t.Errorf("scheduler after the apiserver's key changed: %+v %v", res, err)
	}
	// A new binary (rewritten by install) restarts its daemon too.
	h.changes()
	if err := h.WriteFile(ctx, cs[2].Binary, []byte("binary"), host.WriteOptions{Mode: 0o755}); err != nil {
		t.Fatal(err)
	}
	if res, err := Ensure(ctx, h, cs[2], nil); err != nil || res.Action != "restarted" {
		t.Errorf("scheduler after its binary was replaced: %+v %v", res, err)
	}
	// A unit stopped by hand is started again, without rewriting anything.
	h.units["kube-scheduler.service"].running = false
	h.changes()
	if res, err := Ensure(ctx, h, cs[2], nil); err != nil || res.Action != "started" {
		t.Errorf("stopped scheduler: %+v %v", res, err)
	}
	if ch := h.changes(); len(ch) != 1 || ch[0] != "start kube-scheduler.service" {
		t.Errorf("starting a stopped unit changed %v", ch)
	}
}

func TestEnsureRefusesMissingInputs(t *testing.T) {
	ctx := context.Background()
	c := all(t, testOptions(t))[2]
	h := newFakeHost()
	if _, err := Ensure(ctx, h, c, nil); err == nil || !strings.Contains(err.Error(), "install-binaries") {
		t.Errorf("missing binary: %v", err)
	}
	if err := h.WriteFile(ctx, c.Binary, []byte("b"), host.WriteOptions{Mode: 0o755}); err != nil {
		t.Fatal(err)
	}
	h.changes()
	if _, err := Ensure(ctx, h, c, nil); err == nil || !strings.Contains(err.Error(), "scheduler.conf") {
		t.Errorf("missing kubeconfig: %v", err)
	}
	if ch := h.changes(); len(ch) != 0 {
		t.Errorf("a refused Ensure changed %v", ch)
	}
	// The apiserver writes its own config files, but not before it knows its
	// certificates are there.
	api := all(t, testOptions(t))[0]
	if err := h.WriteFile(ctx, api.Binary, []byte("b"), host.WriteOptions{Mode: 0o755}); err != nil {
		t.Fatal(err)
	}
	h.changes()
	if _, err := Ensure(ctx, h, api, nil); err == nil || !strings.Contains(err.Error(), "/etc/kubernetes/pki/") {
		t.Errorf("apiserver without certificates: %v", err)
	}
	if ch := h.changes(); len(ch) != 0 {
		t.Errorf("a refused apiserver Ensure changed %v", ch)
	}
}

func TestPortTaken(t *testing.T) {
	ctx := context.Background()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	h := local.New(local.Options{Name: "testhost", UnitDir: t.TempDir()})
	busy, err := ListeningPorts(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	if !busy[port] {
		t.Fatalf("listening port %d not found in /proc/net/tcp", port)
	}
	c := all(t, testOptions(t))[0]
	c.Args["secure-port"] = fmt.Sprint(port)
	err = CheckPortFree(ctx, h, c)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("port %d/tcp", port)) || !strings.Contains(err.Error(), "kube-apiserver") {
		t.Errorf("taken port: %v", err)
	}
	l.Close()
	if err := CheckPortFree(ctx, h, c); err != nil {
		t.Errorf("free port: %v", err)
	}
}

func TestWaitReportsProgressAndSuccess(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			http.Error(w, "[-]etcd failed: not ready", http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, "ok")
	}))
	defer srv.Close()
	c := Component{Name: APIServer, HealthURL: srv.URL + "/readyz"}
	var logs []string
	res, err := Wait(context.Background(), WaitOptions{
		Components: []Component{c}, Interval: time.Millisecond, Progress: time.Nanosecond,
		Transport: srv.Client().Transport,
		Logf:      func(f string, a ...any) { logs = append(logs, fmt.Sprintf(f, a...)) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := res.Ready[APIServer]; !ok || calls.Load() != 3 {
		t.Errorf("ready %v after %d probes", res.Ready, calls.Load())
	}
	joined := strings.Join(logs, "\n")
	if !strings.Contains(joined, "still waiting") || !strings.Contains(joined, "HTTP 500") || !strings.Contains(joined, "kube-apiserver is healthy") {
		t.Errorf("progress lines:\n%s", joined)
	}
}

func TestWaitTimeoutNamesTheFailure(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "[-]poststarthook/rbac/bootstrap-roles failed", http.StatusInternalServerError)
	}))
	defer srv.Close()
	c := Component{Name: Scheduler, HealthURL: srv.URL + "/healthz"}
	_, err := Wait(context.Background(), WaitOptions{Components: []Component{c}, Interval: time.Millisecond, Timeout: 20 * time.Millisecond, Transport: srv.Client().Transport})
	if err == nil || !strings.Contains(err.Error(), "kube-scheduler did not get healthy") || !strings.Contains(err.Error(), "rbac/bootstrap-roles") {
		t.Errorf("timeout error: %v", err)
	}
}

// TestWaitVerifiesTheAPIServerCertificate: the apiserver's probe trusts only the
// cluster CA, so a server with another certificate never counts as ready.
func TestWaitVerifiesTheAPIServerCertificate(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	defer srv.Close()
	c := Component{Name: APIServer, HealthURL: srv.URL + "/readyz", HealthCA: true}
	_, err := Wait(context.Background(), WaitOptions{Components: []Component{c}, Interval: time.Millisecond, Timeout: 30 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted apiserver certificate: %v", err)
	}
	// Self-signed components are only probed for liveness.
	c.HealthCA = false
	if _, err := Wait(context.Background(), WaitOptions{Components: []Component{c}, Interval: time.Millisecond, Timeout: time.Second}); err != nil {
		t.Errorf("self-signed health endpoint: %v", err)
	}
}

func TestRemoveUndoesEnsure(t *testing.T) {
	ctx := context.Background()
	o := testOptions(t)
	cs := all(t, o)
	h := newFakeHost()
	for _, c := range cs {
		seed(t, h, c)
		if _, err := Ensure(ctx, h, c, nil); err != nil {
			t.Fatal(err)
		}
	}
	h.changes()
	if err := Remove(ctx, h, o, nil); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(h.changes(), "\n")
	for _, want := range []string{"stop kube-scheduler.service", "disable kube-apiserver.service", "remove-unit kube-controller-manager.service",
		"remove /etc/kubernetes/encryption-config.yaml", "remove " + AuditLogDir} {
		if !strings.Contains(got, want) {
			t.Errorf("Remove did not %q:\n%s", want, got)
		}
	}
	if strings.Index(got, "stop kube-scheduler.service") > strings.Index(got, "stop kube-apiserver.service") {
		t.Error("the apiserver was stopped before its clients")
	}
	// Nothing left to do the second time.
	if err := Remove(ctx, h, o, nil); err != nil {
		t.Fatal(err)
	}
	if ch := h.changes(); len(ch) != 0 {
		t.Errorf("second Remove changed %v", ch)
	}
}

// TestWaitRidesOutARestart: a Restart=always unit that crashed is inactive
// (dead) for a moment while systemd runs its restart job; the wait must not read
// that moment as "stopped for good" (it failed init on a loaded CI machine when
// kube-controller-manager lost its leader lease and restarted). A unit that
// stays down past the grace does fail the wait, naming how long it was down.
func TestWaitRidesOutARestart(t *testing.T) {
	for _, tc := range []struct {
		name     string
		downFor  int32 // probes the unit stays inactive; -1 = for good
		wantFail bool
	}{
		{"restarts", 20, false},
		{"stays down", -1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newFakeHost()
			unit := ControllerManager + ".service"
			h.Units().WriteUnit(context.Background(), unit, []byte("[Service]\n"))
			var probes atomic.Int32
			srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := probes.Add(1)
				if tc.downFor >= 0 && n > tc.downFor {
					h.Units().Start(r.Context(), unit)
					fmt.Fprint(w, "ok")
					return
				}
				http.Error(w, "connection refused", http.StatusServiceUnavailable)
			}))
			defer srv.Close()
			c := Component{Name: ControllerManager, HealthURL: srv.URL + "/healthz"}
			_, err := Wait(context.Background(), WaitOptions{Host: h, Components: []Component{c},
				Interval: time.Millisecond, Timeout: 20 * time.Second, DownGrace: 300 * time.Millisecond,
				Transport: srv.Client().Transport})
			switch {
			case tc.wantFail && (err == nil || !strings.Contains(err.Error(), "has not restarted for")):
				t.Errorf("a unit down for good: %v", err)
			case !tc.wantFail && err != nil:
				t.Errorf("a unit inactive for %d probes failed the wait: %v", tc.downFor, err)
			}
		})
	}
}
