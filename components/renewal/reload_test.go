package renewal

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/controlplane"
)

// testPKI is a CA that issues serving certificates for 127.0.0.1.
type testPKI struct {
	ca    *x509.Certificate
	key   *ecdsa.PrivateKey
	caPEM []byte
	pool  *x509.CertPool
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &testPKI{ca: ca, key: key, caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	return p
}

// leaf issues a serving certificate for 127.0.0.1 with the given serial; it
// returns it for a server and as the PEM file the renewal would write.
func (p *testPKI) leaf(t *testing.T, serial int64) (*tls.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "daemon"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// daemon is a TLS server standing in for etcd or kube-apiserver: it presents
// whatever certificate is current, switching to next after `after`
// handshakes (never when after < 0), as a daemon that reloads its files does.
type daemon struct {
	srv        *httptest.Server
	cur, next  atomic.Pointer[tls.Certificate]
	after      atomic.Int32
	handshakes atomic.Int32
}

func newDaemon(t *testing.T, cur, next *tls.Certificate, after int32) *daemon {
	t.Helper()
	d := &daemon{}
	d.cur.Store(cur)
	d.next.Store(next)
	d.after.Store(after)
	d.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) }))
	// GetConfigForClient, not GetCertificate: the latter is not asked when
	// Certificates is set (httptest sets its own) and the client sends no SNI
	// (an IP address), the trap etcd's TLSInfo.baseConfig comment describes.
	d.srv.TLS = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		n := d.handshakes.Add(1)
		if a := d.after.Load(); a >= 0 && n > a {
			d.cur.Store(d.next.Load())
		}
		return &tls.Config{Certificates: []tls.Certificate{*d.cur.Load()}}, nil
	}}
	d.srv.StartTLS()
	t.Cleanup(d.srv.Close)
	return d
}

// reloadNow makes the daemon serve the next certificate from now on (what a
// restart does).
func (d *daemon) reloadNow() { d.after.Store(0) }

func (d *daemon) served(p *testPKI, name, file string) servedCert {
	return servedCert{name: name, file: file, url: d.srv.URL + "/version",
		tlsConfig: func(context.Context) (*tls.Config, error) {
			return &tls.Config{RootCAs: p.pool, MinVersion: tls.VersionTLS12}, nil
		}}
}

// reloadSetup is a host with etcd, the apiserver, the controller-manager and
// the kubelet running and every one of their files renewed; etcd picks its
// new certificate up after etcdAfter handshakes, the apiserver at once.
func reloadSetup(t *testing.T, etcdAfter int32) (*fakeHost, *Restarter, map[string]*daemon, map[string][]byte) {
	t.Helper()
	h := newFakeHost()
	for _, u := range []string{UnitEtcd, UnitAPIServer, UnitControllerManager, UnitKubelet} {
		h.addUnit(u, true)
	}
	p := newTestPKI(t)
	oldEtcd, _ := p.leaf(t, 0x11)
	newEtcd, newEtcdPEM := p.leaf(t, 0x12)
	oldAPI, _ := p.leaf(t, 0x21)
	newAPI, newAPIPEM := p.leaf(t, 0x122)
	files := map[string][]byte{"/etc/kubernetes/pki/etcd/server.crt": newEtcdPEM, "/etc/kubernetes/pki/apiserver.crt": newAPIPEM}
	for f, d := range files {
		h.files[f] = d
	}
	ds := map[string]*daemon{UnitEtcd: newDaemon(t, oldEtcd, newEtcd, etcdAfter), UnitAPIServer: newDaemon(t, oldAPI, newAPI, 0)}
	plan, err := NewPlan(context.Background(), h, []string{"etcd-server", "apiserver", "apiserver-etcd-client", "controller-manager.conf", "kubelet.conf"})
	if err != nil {
		t.Fatal(err)
	}
	r := &Restarter{o: fastOptions(h), plan: plan, ops: map[string]unitOps{}}
	r.o.defaults()
	for _, u := range plan.Units() {
		r.ops[u] = fakeOps(h, u, nil)
	}
	etcdOps := r.ops[UnitEtcd]
	etcdOps.serves = map[string]servedCert{"etcd-server": ds[UnitEtcd].served(p, "etcd-server", "/etc/kubernetes/pki/etcd/server.crt")}
	r.ops[UnitEtcd] = etcdOps
	apiOps := r.ops[UnitAPIServer]
	apiOps.serves = map[string]servedCert{"apiserver": ds[UnitAPIServer].served(p, "apiserver", "/etc/kubernetes/pki/apiserver.crt")}
	r.ops[UnitAPIServer] = apiOps
	return h, r, ds, files
}

// etcd and the apiserver load the renewed certificates themselves: they are
// checked where they serve, healthy, and never restarted; the others are
// restarted in order after them.
func TestRunReloadsWithoutRestart(t *testing.T) {
	h, r, ds, _ := reloadSetup(t, 3)
	pids := map[string]int{UnitEtcd: h.pid(UnitEtcd), UnitAPIServer: h.pid(UnitAPIServer)}
	res, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"healthy etcd.service",
		"healthy kube-apiserver.service",
		"restart kube-controller-manager.service", "healthy kube-controller-manager.service",
		"restart kubelet.service", "healthy kubelet.service",
	}
	if got := h.log(); !reflect.DeepEqual(got, want) {
		t.Errorf("events:\n%s\nwant:\n%s", joinLines(got), joinLines(want))
	}
	if n := ds[UnitEtcd].handshakes.Load(); n < 4 {
		t.Errorf("etcd was asked %d times; it serves the new certificate from the 4th handshake", n)
	}
	if len(res.Reloaded) != 2 {
		t.Fatalf("reloaded %+v", res.Reloaded)
	}
	etcdRes, apiRes := res.Reloaded[0], res.Reloaded[1]
	if etcdRes.Unit != UnitEtcd || etcdRes.PID != pids[UnitEtcd] || etcdRes.NewPID != pids[UnitEtcd] ||
		len(etcdRes.Served) != 1 || etcdRes.Served[0].Serial != "12" || etcdRes.Served[0].Name != "etcd-server" || len(etcdRes.PerConnection) != 0 {
		t.Errorf("etcd: %+v", etcdRes)
	}
	// The apiserver's etcd client certificate shows nowhere: it is reported
	// as read per connection.
	if apiRes.Unit != UnitAPIServer || apiRes.PID != pids[UnitAPIServer] || apiRes.NewPID != apiRes.PID ||
		len(apiRes.Served) != 1 || apiRes.Served[0].Serial != "0122" || !reflect.DeepEqual(apiRes.PerConnection, []string{"apiserver-etcd-client"}) {
		t.Errorf("apiserver: %+v", apiRes)
	}
	var restarted []string
	for _, rs := range res.Restarted {
		restarted = append(restarted, rs.Unit)
	}
	if !reflect.DeepEqual(restarted, []string{UnitControllerManager, UnitKubelet}) {
		t.Errorf("restarted %v", restarted)
	}
}

// A daemon that keeps serving the replaced certificate past ReloadTimeout is
// restarted after all, the report saying why, and checked again.
func TestReloadFallsBackToRestart(t *testing.T) {
	h, r, ds, _ := reloadSetup(t, -1)
	r.o.ReloadTimeout = 100 * time.Millisecond
	h.onRestart[UnitEtcd] = ds[UnitEtcd].reloadNow
	old := h.pid(UnitEtcd)
	res, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(h.log(), "restart etcd.service") || slices.Contains(h.log(), "restart kube-apiserver.service") {
		t.Errorf("events: %v", h.log())
	}
	if len(res.Restarted) == 0 || res.Restarted[0].Unit != UnitEtcd {
		t.Fatalf("restarted %+v", res.Restarted)
	}
	rs := res.Restarted[0]
	for _, w := range []string{"restarted, because it did not load the renewed certificate by itself: not within 100ms",
		"still serves the replaced certificate (serial 11", "/etc/kubernetes/pki/etcd/server.crt has serial 12"} {
		if !strings.Contains(rs.How, w) {
			t.Errorf("how lacks %q: %s", w, rs.How)
		}
	}
	if rs.OldPID != old || rs.NewPID == old {
		t.Errorf("etcd pid %d -> %d (was %d)", rs.OldPID, rs.NewPID, old)
	}
	if len(res.Reloaded) != 1 || res.Reloaded[0].Unit != UnitAPIServer {
		t.Errorf("reloaded %+v", res.Reloaded)
	}
}

// A daemon that serves the old certificate even after the restart stops the
// sequence.
func TestReloadRestartDoesNotHelp(t *testing.T) {
	h, r, _, _ := reloadSetup(t, -1)
	r.o.ReloadTimeout, r.o.Timeout = 50*time.Millisecond, 100*time.Millisecond
	_, err := r.Run(context.Background())
	var re *Error
	if !errors.As(err, &re) || re.Unit != UnitEtcd {
		t.Fatalf("Run: %v", err)
	}
	for _, w := range []string{"etcd.service on fake01 did not come back healthy", "it did not load the renewed certificate by itself",
		"restarted, it still does not serve it: not within 100ms", "not checked or restarted (the sequence stopped here): kube-apiserver.service"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
	if slices.Contains(h.log(), "restart kube-controller-manager.service") {
		t.Errorf("went on after etcd: %v", h.log())
	}
}

// servedNow names what it sees: an unreachable daemon, and a certificate
// file that is not one.
func TestServedNowErrors(t *testing.T) {
	h, r, ds, _ := reloadSetup(t, 0)
	sc := r.ops[UnitEtcd].serves["etcd-server"]
	if s, err := r.servedNow(context.Background(), sc); err != nil || s.Serial != "12" || s.URL != ds[UnitEtcd].srv.URL+"/version" {
		t.Fatalf("servedNow: %+v %v", s, err)
	}
	good := h.files["/etc/kubernetes/pki/etcd/server.crt"]
	h.files["/etc/kubernetes/pki/etcd/server.crt"] = []byte("garbage")
	if _, err := r.servedNow(context.Background(), sc); err == nil || !strings.Contains(err.Error(), "etcd-server: /etc/kubernetes/pki/etcd/server.crt: no PEM certificate") {
		t.Errorf("garbage file: %v", err)
	}
	h.files["/etc/kubernetes/pki/etcd/server.crt"] = good
	ds[UnitEtcd].srv.Close()
	if _, err := r.servedNow(context.Background(), sc); err == nil || !strings.Contains(err.Error(), "etcd-server: "+sc.url+": ") {
		t.Errorf("daemon down: %v", err)
	}
}

// The apiserver is not restarted for the files it reloads, so its unit's
// input digest must not change with them either, or the next `kubeforge
// init` would restart it after all: readers and controlplane agree.
func TestAPIServerDigestLeavesReloadedFilesOut(t *testing.T) {
	ctx := context.Background()
	h := newFakeHost()
	c, n := testCluster(t)
	cpo := controlplane.Options{Cluster: c, Node: *n}
	comp, err := cpo.Component(controlplane.APIServer, []byte("encryption config"))
	if err != nil {
		t.Fatal(err)
	}
	h.files[comp.Binary] = []byte("binary")
	for k, v := range comp.Args {
		for _, p := range strings.Split(v, ",") {
			if strings.HasPrefix(p, "/") {
				h.files[p] = []byte("content of " + k)
			}
		}
	}
	before, err := controlplane.Inputs(ctx, h, comp)
	if err != nil {
		t.Fatal(err)
	}
	var reloaded int
	for _, name := range certs.RenewableNames() {
		if !slices.Contains(UnitsReading(name), UnitAPIServer) {
			continue
		}
		if !Reloads(name, UnitAPIServer) {
			t.Errorf("the apiserver does not reload %s: the renewal restarts it, the digest must cover it", name)
			continue
		}
		crt, key, err := certs.CertPaths(certs.DefaultCertDir, name)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{crt, key} {
			if _, ok := h.files[f]; !ok {
				t.Errorf("the apiserver's flags do not name %s", f)
			}
			h.files[f] = []byte("renewed")
		}
		reloaded++
	}
	after, err := controlplane.Inputs(ctx, h, comp)
	if err != nil {
		t.Fatal(err)
	}
	if reloaded != 4 || before != after {
		t.Errorf("%d renewed files reloaded; digest %s -> %s", reloaded, before, after)
	}
	// A file it reads at start still counts.
	h.files["/etc/kubernetes/pki/sa.pub"] = []byte("another key")
	if again, _ := controlplane.Inputs(ctx, h, comp); again == after {
		t.Error("the digest does not cover the service-account key")
	}
}
