package apilb

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/kubeforge/kubeforge/components/kubeclient/fakewatch"
)

// apiserver is a TLS server standing in for one kube-apiserver: /readyz
// answers as told, every other path answers its name.
type apiserver struct {
	name  string
	srv   *httptest.Server
	ready atomic.Bool
}

func newAPIServer(t testing.TB, name string) *apiserver {
	a := &apiserver{name: name}
	a.ready.Store(true)
	a.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			if !a.ready.Load() {
				http.Error(w, "not ready", http.StatusServiceUnavailable)
				return
			}
			io.WriteString(w, "ok")
			return
		}
		io.WriteString(w, a.name)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *apiserver) addr() string { return strings.TrimPrefix(a.srv.URL, "https://") }

// pool trusts the httptest certificate (the same for every server).
func pool(a *apiserver) *x509.CertPool {
	return a.srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
}

// start runs a balancer over the servers until the test ends.
func start(t testing.TB, servers ...*apiserver) *Balancer {
	t.Helper()
	var addrs []string
	for _, s := range servers {
		addrs = append(addrs, s.addr())
	}
	b := New(Options{Listen: "127.0.0.1:0", Backends: addrs, CA: pool(servers[0]), Interval: 50 * time.Millisecond, Timeout: 5 * time.Second,
		Logf: func(f string, args ...any) { t.Logf(f, args...) }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10s of its context ending")
		}
	})
	select {
	case <-b.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	return b
}

// client talks HTTPS to the balancer, verifying the backend's certificate
// end to end; keepAlive false makes every request a new connection.
func client(b *Balancer, ca *x509.CertPool, keepAlive bool) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: ca, ServerName: "127.0.0.1"},
		DisableKeepAlives: !keepAlive,
	}}
}

func get(t testing.TB, c *http.Client, b *Balancer) string {
	t.Helper()
	resp, err := c.Get("https://" + b.Addr().String() + "/version")
	if err != nil {
		t.Fatalf("request through the balancer: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// waitHealth waits until the balancer sees addr as healthy (or not).
func waitHealth(t *testing.T, b *Balancer, addr string, healthy bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
		for _, s := range b.Status() {
			if s.Address == addr {
				return s.Checked && s.Healthy == healthy, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("backend %s did not become healthy=%v within 20s: %+v", addr, healthy, b.Status())
	}
}

func TestSpreadsAndFollowsReadyz(t *testing.T) {
	m1, m2 := newAPIServer(t, "master01"), newAPIServer(t, "master02")
	b := start(t, m1, m2)
	waitHealth(t, b, m1.addr(), true)
	waitHealth(t, b, m2.addr(), true)
	c := client(b, pool(m1), false)
	seen := map[string]int{}
	for range 20 {
		seen[get(t, c, b)]++
	}
	if seen["master01"] == 0 || seen["master02"] == 0 {
		t.Errorf("connections were not spread over both apiservers: %v", seen)
	}

	// master01 stops being ready (it still accepts TCP): it gets no new connections.
	m1.ready.Store(false)
	waitHealth(t, b, m1.addr(), false)
	for range 10 {
		if got := get(t, c, b); got != "master02" {
			t.Fatalf("a new connection went to %s, which is not ready", got)
		}
	}
	m1.ready.Store(true)
	waitHealth(t, b, m1.addr(), true)
}

// A backend that goes unhealthy loses its open connections, so a client on a
// long-lived connection reconnects to a healthy one instead of waiting on a
// dead peer.
func TestUnhealthyBackendLosesItsConnections(t *testing.T) {
	m1, m2 := newAPIServer(t, "master01"), newAPIServer(t, "master02")
	b := start(t, m1, m2)
	waitHealth(t, b, m1.addr(), true)
	waitHealth(t, b, m2.addr(), true)
	c := client(b, pool(m1), true)
	first := get(t, c, b)
	var gone *apiserver
	for _, s := range []*apiserver{m1, m2} {
		if s.name == first {
			gone = s
		}
	}
	gone.ready.Store(false)
	waitHealth(t, b, gone.addr(), false)
	// The kept-alive connection was closed under the client: its next request
	// dials again and lands on the other apiserver.
	if got := get(t, c, b); got == first {
		t.Errorf("the client's connection still reaches %s after it went unhealthy", first)
	}
	for _, s := range b.Status() {
		if s.Address == gone.addr() && s.Conns != 0 {
			t.Errorf("%d connections still forwarded to the unhealthy backend", s.Conns)
		}
	}
}

// A backend that refuses connections is skipped at once, before any health
// check notices: no client request fails.
func TestDialFailureTriesTheNext(t *testing.T) {
	m2 := newAPIServer(t, "master02")
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	b := New(Options{Listen: "127.0.0.1:0", Backends: []string{deadAddr, m2.addr()}, CA: pool(m2), Interval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go b.Run(ctx)
	<-b.Ready()
	c := client(b, pool(m2), false)
	for range 10 {
		if got := get(t, c, b); got != "master02" {
			t.Fatalf("got %q", got)
		}
	}
	for _, s := range b.Status() {
		if s.Address == deadAddr && s.Healthy {
			t.Errorf("the refusing backend is still healthy: %+v", s)
		}
	}
}

func TestSetBackends(t *testing.T) {
	m1, m2 := newAPIServer(t, "master01"), newAPIServer(t, "master02")
	b := start(t, m1)
	waitHealth(t, b, m1.addr(), true)
	b.SetBackends([]string{m2.addr()})
	waitHealth(t, b, m2.addr(), true)
	if st := b.Status(); len(st) != 1 || st[0].Address != m2.addr() {
		t.Fatalf("backends after replacing the set: %+v", st)
	}
	c := client(b, pool(m1), false)
	if got := get(t, c, b); got != "master02" {
		t.Errorf("got %q after master01 left the set", got)
	}
	// An empty set (all apiservers briefly out of the EndpointSlice) keeps
	// what the balancer knew.
	b.SetBackends(nil)
	if st := b.Status(); len(st) != 1 {
		t.Errorf("an empty set emptied the balancer: %+v", st)
	}
}

func TestAPIServers(t *testing.T) {
	slice := &discoveryv1.EndpointSlice{
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To[int32](6443)}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"192.168.161.152"}},
			{Addresses: []string{"192.168.161.151"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
			{Addresses: []string{"192.168.161.153"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}},
		},
	}
	got := strings.Join(APIServers([]*discoveryv1.EndpointSlice{slice, slice}), ",")
	if got != "192.168.161.151:6443,192.168.161.152:6443" {
		t.Errorf("APIServers = %s", got)
	}
	noPort := &discoveryv1.EndpointSlice{Endpoints: slice.Endpoints}
	if got := APIServers([]*discoveryv1.EndpointSlice{noPort}); len(got) != 0 {
		t.Errorf("a slice without a port gave %v", got)
	}
}

// TestWatchAPIServers: a second apiserver added to the `kubernetes` Service's
// EndpointSlice joins the balancer's pool with no change on the node.
func TestWatchAPIServers(t *testing.T) {
	m1, m2 := newAPIServer(t, "master01"), newAPIServer(t, "master02")
	slice := func(servers ...*apiserver) *discoveryv1.EndpointSlice {
		s := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default",
				Labels: map[string]string{discoveryv1.LabelServiceName: "kubernetes"}},
			AddressType: discoveryv1.AddressTypeIPv4,
		}
		for _, a := range servers {
			host, port, _ := net.SplitHostPort(a.addr())
			p := int32(0)
			for _, c := range port {
				p = p*10 + int32(c-'0')
			}
			// httptest servers differ by port, so each gets a slice port of
			// its own; real apiservers share 6443 and differ by address.
			s.Ports = []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To(p)}}
			s.Endpoints = []discoveryv1.Endpoint{{Addresses: []string{host}}}
		}
		return s
	}
	c := fake.NewSimpleClientset(slice(m1))
	watching := fakewatch.AllOpened(c, "endpointslices")
	b := start(t, m1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go WatchAPIServers(ctx, c, b)
	select {
	case <-watching:
	case <-time.After(20 * time.Second):
		t.Fatal("WatchAPIServers did not open its watch within 20s")
	}
	if _, err := c.DiscoveryV1().EndpointSlices("default").Update(ctx, slice(m2), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitHealth(t, b, m2.addr(), true)
	if st := b.Status(); len(st) != 1 {
		t.Errorf("backends after the slice moved to master02: %+v", st)
	}
}
