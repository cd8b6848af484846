package discovery

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/cluster-bootstrap/token/jws"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/clusterinfo"
	"github.com/kubeforge/kubeforge/components/containerd/fakehost"
)

const (
	tokenID     = "abcdef"
	tokenSecret = "0123456789abcdef"
	token       = tokenID + "." + tokenSecret
	certKey     = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
)

// apiserver is a loopback stand-in for kube-apiserver: cluster-info signed for
// one token, the kubeforge config and certificates behind that token.
type apiserver struct {
	*httptest.Server
	ca       *certs.CA
	hash     string
	rejected atomic.Bool // the token has expired: 401 on authenticated reads
	// extraCA, when set, is appended to the CA in cluster-info, which stays
	// properly signed for the token (an attacker who knows the token).
	extraCA  atomic.Pointer[[]byte]
	requests atomic.Int32
	// unsigned counts down the cluster-info reads still answered without the
	// token's signature (the bootstrap signer has not seen the token yet).
	unsigned atomic.Int32
	// hangAfter, when positive, makes every cluster-info read after that many
	// hang until the client gives up (a loaded apiserver at the deadline).
	hangAfter atomic.Int32
	infoReads atomic.Int32
	// noUpload: kubeforge-certs is gone (its two hours are over).
	noUpload atomic.Bool
}

func status(w http.ResponseWriter, code int, reason string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]any{"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code})
}

func newAPIServer(t *testing.T) *apiserver {
	t.Helper()
	ca, err := certs.NewCA("kubernetes", certs.ECDSAP256, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	crtPEM, keyPEM, err := certs.Issue(ca, certs.LeafSpec{Subject: pkix.Name{CommonName: "kube-apiserver"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyAlgorithm: certs.ECDSAP256, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(crtPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	a := &apiserver{ca: ca}
	caCert, _ := certs.ParseCertPEM(ca.CertPEM)
	a.hash = certs.CAHash(caCert)
	cfgYAML, err := config.Marshal(config.Default())
	if err != nil {
		t.Fatal(err)
	}
	blob, err := certs.EncryptBundle(certKey, map[string][]byte{"etcd/ca.crt": []byte("etcd ca"), "etcd/ca.key": []byte("etcd key")})
	if err != nil {
		t.Fatal(err)
	}
	a.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.requests.Add(1)
		authed := r.Header.Get("Authorization") == "Bearer "+token
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/api/v1/namespaces/kube-public/configmaps/cluster-info":
			if n := a.infoReads.Add(1); a.hangAfter.Load() > 0 && n > a.hangAfter.Load() {
				select {
				case <-r.Context().Done():
				case <-time.After(10 * time.Second):
				}
				return
			}
			caData := ca.CertPEM
			if extra := a.extraCA.Load(); extra != nil {
				caData = append(append([]byte{}, ca.CertPEM...), *extra...)
			}
			kc, _ := clusterinfo.Kubeconfig("https://"+r.Host, caData)
			sig, _ := jws.ComputeDetachedSignature(string(kc), tokenID, tokenSecret)
			data := map[string]string{"kubeconfig": string(kc), "jws-kubeconfig-" + tokenID: sig}
			if a.unsigned.Add(-1) >= 0 {
				delete(data, "jws-kubeconfig-"+tokenID)
				data["jws-kubeconfig-older1"] = "x"
			}
			json.NewEncoder(w).Encode(map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
				"metadata": map[string]any{"name": "cluster-info", "namespace": "kube-public"}, "data": data})
		case "/api/v1/namespaces/kube-system/configmaps/kubeforge-config":
			if !authed || a.rejected.Load() {
				status(w, 401, "Unauthorized")
				return
			}
			json.NewEncoder(w).Encode(map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
				"metadata": map[string]any{"name": "kubeforge-config", "namespace": "kube-system"},
				"data":     map[string]string{"cluster.yaml": string(cfgYAML)}})
		case "/api/v1/namespaces/kube-system/secrets/kubeforge-certs":
			if !authed {
				status(w, 401, "Unauthorized")
				return
			}
			if a.noUpload.Load() {
				status(w, 404, "NotFound")
				return
			}
			json.NewEncoder(w).Encode(map[string]any{"apiVersion": "v1", "kind": "Secret",
				"metadata": map[string]any{"name": "kubeforge-certs", "namespace": "kube-system"},
				"data":     map[string]string{"bundle": base64.StdEncoding.EncodeToString(blob)}})
		default:
			status(w, 404, "NotFound")
		}
	}))
	a.Server.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	a.Server.StartTLS()
	t.Cleanup(a.Server.Close)
	return a
}

func (a *apiserver) endpoint() string { return strings.TrimPrefix(a.URL, "https://") }

func TestDiscover(t *testing.T) {
	a := newAPIServer(t)
	ctx := context.Background()
	res, err := Discover(ctx, Options{Endpoint: a.endpoint(), Token: token, CAHashes: []string{a.hash}, CertificateKey: certKey})
	if err != nil {
		t.Fatal(err)
	}
	if res.Server != a.URL || string(res.CAPEM) != string(a.ca.CertPEM) || res.Token.ID != tokenID {
		t.Errorf("result %+v", res)
	}
	if res.Config == nil || len(res.Config.Spec.Hosts) != 3 {
		t.Errorf("config %+v", res.Config)
	}
	if string(res.Certs["etcd/ca.key"]) != "etcd key" {
		t.Errorf("certs %v", res.Certs)
	}
	// Upper-case hex in the pin is the same pin.
	if _, err := Discover(ctx, Options{Endpoint: a.endpoint(), Token: token, CAHashes: []string{"sha256:" + strings.ToUpper(strings.TrimPrefix(a.hash, "sha256:"))}}); err != nil {
		t.Errorf("upper-case pin: %v", err)
	}
}

func TestDiscoverFailures(t *testing.T) {
	a := newAPIServer(t)
	ctx := context.Background()
	other, _ := certs.NewCA("impostor", certs.ECDSAP256, time.Hour, time.Now())
	otherCert, _ := certs.ParseCertPEM(other.CertPEM)
	wrongHash := certs.CAHash(otherCert)
	base := Options{Endpoint: a.endpoint(), Token: token, CAHashes: []string{a.hash}, Timeout: 5 * time.Second}
	for _, tc := range []struct {
		what   string
		mod    func(*Options)
		before func()
		want   error
		text   []string
	}{
		{"wrong CA hash", func(o *Options) { o.CAHashes = []string{wrongHash} }, nil, ErrCAHashMismatch, []string{a.hash, wrongHash}},
		{"unknown token ID", func(o *Options) { o.Token = "zzzzzz." + tokenSecret; o.Timeout = 1500 * time.Millisecond }, nil, ErrUnknownToken,
			[]string{`"zzzzzz"`, "expired", "after 1.5s", "signed for: " + tokenID, "kubeforge token create --print-join-command"}},
		{"wrong token secret", func(o *Options) { o.Token = tokenID + ".ffffffffffffffff" }, nil, ErrTokenSignature, []string{"secret is wrong"}},
		{"expired token", nil, func() { a.rejected.Store(true) }, ErrTokenRejected, []string{"expired or was revoked", tokenID}},
		{"wrong certificate key", func(o *Options) { o.CertificateKey = strings.Repeat("ab", 32) }, func() { a.rejected.Store(false) }, ErrCertificateKey, []string{"does not match"}},
		{"malformed hash", func(o *Options) { o.CAHashes = []string{"md5:00"} }, nil, ErrBadInput, []string{"sha256:<64 hex digits>"}},
		{"no hash", func(o *Options) { o.CAHashes = nil }, nil, ErrBadInput, []string{"required"}},
		{"malformed token", func(o *Options) { o.Token = "abc" }, nil, ErrBadInput, []string{"[a-z0-9]{6}"}},
		{"malformed endpoint", func(o *Options) { o.Endpoint = "no-port" }, nil, ErrBadInput, []string{"host:port"}},
		{"malformed certificate key", func(o *Options) { o.CertificateKey = "xyz" }, nil, ErrBadInput, []string{"64 hex digits"}},
	} {
		t.Run(tc.what, func(t *testing.T) {
			if tc.before != nil {
				tc.before()
			}
			o := base
			if tc.mod != nil {
				tc.mod(&o)
			}
			_, err := Discover(ctx, o)
			if !errors.Is(err, tc.want) {
				t.Errorf("%s: error %v, want %v", tc.what, err, tc.want)
				return
			}
			for _, s := range tc.text {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%s: error %q lacks %q", tc.what, err, s)
				}
			}
			if strings.Contains(err.Error(), tokenSecret) {
				t.Errorf("%s: the token secret is in the error", tc.what)
			}
		})
	}
}

// TestDiscoverControlPlaneBadInput: the three ways a control-plane join's
// hand-over input is wrong each have their own error, and discovery (which
// only reads) is where they fail: an endpoint whose CA is not the pinned one
// (another cluster, or an impostor), a certificate key of another upload, and
// an upload that has expired (the Secret deleted after two hours), whose error
// says how to get a new one.
func TestDiscoverControlPlaneBadInput(t *testing.T) {
	a := newAPIServer(t)
	ctx := context.Background()
	other, _ := certs.NewCA("kubernetes", certs.ECDSAP256, time.Hour, time.Now())
	otherCert, _ := certs.ParseCertPEM(other.CertPEM)
	base := Options{Endpoint: a.endpoint(), Token: token, CAHashes: []string{a.hash}, CertificateKey: certKey, Timeout: 5 * time.Second}
	if res, err := Discover(ctx, base); err != nil || res.Certs["etcd/ca.key"] == nil {
		t.Fatalf("good input: %v", err)
	}
	wrongPin := base
	wrongPin.CAHashes = []string{certs.CAHash(otherCert)}
	if _, err := Discover(ctx, wrongPin); !errors.Is(err, ErrCAHashMismatch) {
		t.Errorf("wrong CA pin: %v", err)
	}
	wrongKey := base
	wrongKey.CertificateKey = strings.Repeat("ab", 32)
	if _, err := Discover(ctx, wrongKey); !errors.Is(err, ErrCertificateKey) || !strings.Contains(err.Error(), "upload-certs") {
		t.Errorf("wrong certificate key: %v", err)
	}
	a.noUpload.Store(true)
	_, err := Discover(ctx, base)
	if !errors.Is(err, ErrNoCertsUploaded) || errors.Is(err, ErrCertificateKey) || !strings.Contains(err.Error(), "expired") ||
		!strings.Contains(err.Error(), "kubeforge init phase upload-certs") {
		t.Errorf("expired upload: %v", err)
	}
}

// TestDiscoverWaitsForTheSignature: right after `token create` on an older
// control plane, cluster-info is not signed for the token yet; discovery reads
// it again until it is, and says once what it saw.
func TestDiscoverWaitsForTheSignature(t *testing.T) {
	a := newAPIServer(t)
	a.unsigned.Store(2)
	var log strings.Builder
	res, err := Discover(context.Background(), Options{Endpoint: a.endpoint(), Token: token, CAHashes: []string{a.hash}, Timeout: time.Minute,
		Logf: func(f string, args ...any) { fmt.Fprintf(&log, f+"\n", args...) }})
	if err != nil {
		t.Fatal(err)
	}
	if res.Token.ID != tokenID {
		t.Errorf("result %+v", res)
	}
	if a.unsigned.Load() >= 0 {
		t.Errorf("discovery succeeded with %d unsigned reads left", a.unsigned.Load()+1)
	}
	if n := strings.Count(log.String(), "no signature for token ID"); n != 1 || !strings.Contains(log.String(), "signed for: older1") {
		t.Errorf("want one line saying what it saw, got %d:\n%s", n, log.String())
	}
}

// TestDiscoverUnsignedAtTheDeadline: the read in flight when the deadline
// passes is cut; the error must still say what discovery saw (no signature for
// the token), not that the API server cannot be reached.
func TestDiscoverUnsignedAtTheDeadline(t *testing.T) {
	a := newAPIServer(t)
	a.unsigned.Store(1000)
	a.hangAfter.Store(1)
	_, err := Discover(context.Background(), Options{Endpoint: a.endpoint(), Token: token, CAHashes: []string{a.hash}, Timeout: 1500 * time.Millisecond})
	if !errors.Is(err, ErrUnknownToken) || !strings.Contains(err.Error(), "after 1.5s") {
		t.Errorf("error %v, want ErrUnknownToken saying how long it waited", err)
	}
}

// TestDiscoverCABundle: cluster-info with the pinned CA plus anything else —
// a second CA (the attack: everything after discovery trusts the whole bundle),
// another PEM block, trailing bytes — is refused with ErrCABundle, although the
// signature verifies and the first certificate matches the pin.
func TestDiscoverCABundle(t *testing.T) {
	a := newAPIServer(t)
	rogue, err := certs.NewCA("kubernetes", certs.ECDSAP256, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		what  string
		extra []byte
		text  string
	}{
		{"a second CA", rogue.CertPEM, "1 more PEM block"},
		{"a second CA without a newline between", bytes.TrimSpace(rogue.CertPEM), "1 more PEM block"},
		{"another kind of block", []byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"), "1 more PEM block"},
		{"trailing bytes", []byte("garbage"), "trailing data"},
	} {
		t.Run(tc.what, func(t *testing.T) {
			extra := tc.extra
			a.extraCA.Store(&extra)
			before := a.requests.Load()
			_, err := Discover(context.Background(), Options{Endpoint: a.endpoint(), Token: token, CAHashes: []string{a.hash}, CertificateKey: certKey, Timeout: 5 * time.Second})
			if !errors.Is(err, ErrCABundle) || !strings.Contains(err.Error(), tc.text) || !strings.Contains(err.Error(), a.endpoint()) {
				t.Errorf("%s: error %v, want ErrCABundle saying %q", tc.what, err, tc.text)
			}
			if n := a.requests.Load() - before; n != 1 {
				t.Errorf("%s: %d requests, want only the anonymous cluster-info read (no token sent)", tc.what, n)
			}
		})
	}
	// Whitespace after the one certificate is not a second anything.
	nl := []byte("\n\n")
	a.extraCA.Store(&nl)
	res, err := Discover(context.Background(), Options{Endpoint: a.endpoint(), Token: token, CAHashes: []string{a.hash}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(res.CAPEM, a.ca.CertPEM) {
		t.Errorf("CAPEM %q, want exactly the pinned certificate", res.CAPEM)
	}
}

func TestDiscoverUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ep := l.Addr().String()
	l.Close() // nothing listens there now
	_, err = Discover(context.Background(), Options{Endpoint: ep, Token: token, CAHashes: []string{"sha256:" + strings.Repeat("0", 64)}, Timeout: 1500 * time.Millisecond})
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), ep) {
		t.Errorf("error %v", err)
	}
}

func TestResolveNode(t *testing.T) {
	cfg := config.Default() // master01 cp+etcd, node01/node02 worker+etcd
	c, n, err := ResolveNode(cfg, "node01", "", JoinRoles{Etcd: true})
	if err != nil || n.Name != "node01" || !n.HasRole(config.RoleEtcd) || !n.HasRole(config.RoleWorker) {
		t.Fatalf("%+v %v", n, err)
	}
	if _, _, err := ResolveNode(cfg, "node01", "", JoinRoles{}); !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), "--etcd") {
		t.Errorf("etcd host without --etcd: %v", err)
	}
	// An unlisted host joins as a worker with its own address; the caller's
	// config is not touched.
	c, n, err = ResolveNode(cfg, "node07", "192.168.161.160", JoinRoles{})
	if err != nil || n.Address != "192.168.161.160" || len(n.Roles) != 1 || n.Roles[0] != config.RoleWorker || len(c.Spec.Hosts) != 4 || len(cfg.Spec.Hosts) != 3 {
		t.Errorf("unlisted host: %+v %v", n, err)
	}
	// Found by address when the hostname differs from the config's name.
	_, n, err = ResolveNode(cfg, "localhost", "192.168.161.153", JoinRoles{Etcd: true})
	if err != nil || n.Name != "node02" {
		t.Errorf("by address: %+v %v", n, err)
	}
	// --etcd on a plain worker adds the role in the copy only.
	_, n, err = ResolveNode(cfg, "node08", "192.168.161.161", JoinRoles{Etcd: true})
	if err != nil || !n.HasRole(config.RoleEtcd) {
		t.Errorf("added etcd: %+v %v", n, err)
	}
	if _, _, err := ResolveNode(cfg, "node09", "", JoinRoles{}); err == nil {
		t.Error("unlisted host without address accepted")
	}
}

func TestSourceAddress(t *testing.T) {
	h := fakehost.New("node01")
	h.Commands["ip -o route get 192.168.176.151"] = host.Result{Stdout: []byte("192.168.176.151 dev host0 src 192.168.176.152 uid 0 \\    cache \n")}
	for _, server := range []string{"https://192.168.176.151:6443", "192.168.176.151:6443", "192.168.176.151"} {
		if got, err := SourceAddress(context.Background(), h, server); err != nil || got != "192.168.176.152" {
			t.Errorf("%s: %q %v", server, got, err)
		}
	}
}
