package csrapprover_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/controlplane/loopbacktest"
	"github.com/kubeforge/kubeforge/components/kubeclient"
	"github.com/kubeforge/kubeforge/components/kubelet/csrapprover"
)

// proxy forwards TCP from a loopback port to target. Cut closes every
// connection it carries (an apiserver restart, as the approver sees it);
// BlackHole keeps them open but stops moving bytes on them (a peer that died
// without a FIN or RST, a NAT entry gone); new connections work either way.
type proxy struct {
	l      net.Listener
	target string

	mu    sync.Mutex
	conns []*pconn
}

type pconn struct {
	client, server net.Conn
	mu             sync.Mutex
	dead           bool
}

func newProxy(t *testing.T, target string) *proxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l, target: target}
	t.Cleanup(func() { l.Close(); p.Cut() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			pc := &pconn{client: c, server: s}
			p.mu.Lock()
			p.conns = append(p.conns, pc)
			p.mu.Unlock()
			go pc.pipe(c, s)
			go pc.pipe(s, c)
		}
	}()
	return p
}

func (pc *pconn) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		pc.mu.Lock()
		dead := pc.dead
		pc.mu.Unlock()
		if dead {
			// Swallow everything from now on, answer nothing, close nothing.
			if err != nil {
				return
			}
			continue
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				dst.Close()
			}
			if tc, ok := dst.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
			return
		}
	}
}

func (p *proxy) addr() string { return p.l.Addr().String() }

// Cut closes every connection carried so far.
func (p *proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.client.Close()
		c.server.Close()
	}
	p.conns = nil
}

// BlackHole silences every connection carried so far, for good.
func (p *proxy) BlackHole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.mu.Lock()
		c.dead = true
		c.mu.Unlock()
	}
	p.conns = nil
}

// nodeCSR is a kube-proxy client CSR as a node makes it (the approver approves
// those for any registered node).
func nodeCSR(t *testing.T, name string) *certv1.CertificateSigningRequest {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: csrapprover.KubeProxyUser}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return &certv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: certv1.CertificateSigningRequestSpec{
			Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			SignerName: certv1.KubeAPIServerClientSignerName,
			Usages:     []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageClientAuth},
		},
	}
}

func isApproved(csr *certv1.CertificateSigningRequest) bool {
	for _, c := range csr.Status.Conditions {
		if c.Type == certv1.CertificateApproved && c.Reason == csrapprover.ApprovalReason {
			return true
		}
	}
	return false
}

// TestApproverSurvivesDisconnects runs the approver against a real apiserver
// through a proxy that breaks its connections in the two ways a network does,
// and creates a CSR while the approver is cut off each time. The resync
// interval is an hour, so only the approver's watch machinery can find those
// CSRs: an approver that re-watches "from now" after a disconnect misses them
// (what the approver did before it used informers), and one whose dead
// connection is never noticed waits forever.
func TestApproverSurvivesDisconnects(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// client-go notices a silent HTTP/2 connection by pinging it after this many
	// idle seconds (30 by default); the black-hole case would otherwise take 45s.
	t.Setenv("HTTP2_READ_IDLE_TIMEOUT_SECONDS", "3")
	t.Setenv("HTTP2_PING_TIMEOUT_SECONDS", "3")
	lc := loopbacktest.Run(t, ctx, nil)

	super, err := os.ReadFile(filepath.Join(lc.KcDir, certs.KubeconfigSuperAdmin))
	if err != nil {
		t.Fatal(err)
	}
	restCfg, err := clientcmd.RESTConfigFromKubeConfig(super)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		t.Fatal(err)
	}
	// The node makes its CSRs as itself: impersonation gives the CSR the
	// username and groups a real node's would have.
	asNode := rest.CopyConfig(restCfg)
	asNode.Impersonate = rest.ImpersonationConfig{UserName: "system:node:node01", Groups: []string{"system:nodes", "system:authenticated"}}
	node, err := kubernetes.NewForConfig(asNode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node01"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// The approver talks to the apiserver through the proxy only.
	p := newProxy(t, lc.Endpoint)
	viaProxy := rest.CopyConfig(restCfg)
	viaProxy.Host = "https://" + p.addr()
	viaProxy.TLSClientConfig.ServerName = "127.0.0.1"
	cli, err := kubeclient.NewForConfig(viaProxy, kubeclient.Options{Timeout: kubeclient.NoTimeout})
	if err != nil {
		t.Fatal(err)
	}
	var logMu sync.Mutex
	a := &csrapprover.Approver{Client: cli, Logf: func(f string, args ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		t.Logf("approver: "+f, args...)
	}}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx, time.Hour) }()
	defer func() {
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(30 * time.Second):
			t.Error("the approver did not stop within 30s of its context ending")
		}
	}()

	approvedWithin := func(name string, timeout time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		var last *certv1.CertificateSigningRequest
		err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
			c, err := admin.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			last = c
			return isApproved(c), nil
		})
		if err != nil {
			t.Fatalf("CSR %s not approved by the approver within %s (conditions %+v)", name, timeout, last.Status.Conditions)
		}
		return time.Since(start)
	}
	create := func(name string) {
		t.Helper()
		if _, err := node.CertificatesV1().CertificateSigningRequests().Create(ctx, nodeCSR(t, name), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	create("connected")
	t.Logf("a CSR made while connected was approved after %s", approvedWithin("connected", time.Minute))

	// Connections closed (an apiserver restart): the CSR made meanwhile must be
	// found when the approver reconnects.
	p.Cut()
	create("after-cut")
	t.Logf("a CSR made right after every connection was cut was approved after %s", approvedWithin("after-cut", time.Minute))

	// Connections silently dead: the approver must notice, reconnect, and find
	// the CSR made meanwhile.
	p.BlackHole()
	create("after-blackhole")
	t.Logf("a CSR made after the connections went silent was approved after %s", approvedWithin("after-blackhole", time.Minute))

	// And the node that registers after asking: its waiting CSR is approved as
	// soon as the Node appears.
	asNode2 := rest.CopyConfig(asNode)
	asNode2.Impersonate.UserName = "system:node:node02"
	node2, err := kubernetes.NewForConfig(asNode2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := node2.CertificatesV1().CertificateSigningRequests().Create(ctx, nodeCSR(t, "early"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node02"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Logf("a CSR made before its Node registered was approved %s after the Node appeared", approvedWithin("early", time.Minute))
}
