package csrapprover

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
)

type req struct {
	name    string
	user    string
	groups  []string
	signer  string
	subject pkix.Name
	dns     []string
	ips     []string
	usages  []certv1.KeyUsage
	tamper  bool
}

func (r req) csr(t *testing.T) *certv1.CertificateSigningRequest {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.CertificateRequest{Subject: r.subject, DNSNames: r.dns}
	for _, ip := range r.ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	if r.tamper {
		der[len(der)-5] ^= 0xff
	}
	if r.groups == nil {
		r.groups = []string{"system:nodes", "system:authenticated"}
	}
	return &certv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: r.name},
		Spec: certv1.CertificateSigningRequestSpec{
			Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			SignerName: r.signer,
			Username:   r.user,
			Groups:     r.groups,
			Usages:     r.usages,
		},
	}
}

func node(name string, addrs ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: name})
	for _, a := range addrs {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a})
	}
	return n
}

var (
	serving = []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageServerAuth}
	client  = []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageKeyEncipherment, certv1.UsageClientAuth}
)

var labIPs = map[string]string{"node01": "192.168.176.152", "node02": "192.168.176.153", "node03": "192.168.176.154"}

func servingReq(name, nodeName string) req {
	return req{name: name, user: "system:node:" + nodeName, signer: certv1.KubeletServingSignerName,
		subject: pkix.Name{CommonName: "system:node:" + nodeName, Organization: []string{"system:nodes"}},
		dns:     []string{nodeName}, ips: []string{labIPs[nodeName]}, usages: serving}
}

func proxyReq(name string) req {
	return req{name: name, user: "system:node:node01", signer: certv1.KubeAPIServerClientSignerName,
		subject: pkix.Name{CommonName: KubeProxyUser}, usages: client}
}

func TestCheck(t *testing.T) {
	nodes := Nodes{"node01": node("node01", "192.168.176.152"), "node02": node("node02", "192.168.176.153")}
	mod := func(r req, f func(*req)) req { f(&r); return r }
	for _, tc := range []struct {
		what    string
		r       req
		approve bool
		kind    Kind
		reason  string
	}{
		{"kubelet serving certificate for its own names", servingReq("a", "node01"), true, KindKubeletServing, "node node01 for node01, 192.168.176.152"},
		{"RSA key usages", mod(servingReq("a", "node01"), func(r *req) {
			r.usages = []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageKeyEncipherment, certv1.UsageServerAuth}
		}), true, KindKubeletServing, ""},
		{"another node's IP", mod(servingReq("a", "node01"), func(r *req) { r.ips = []string{"192.168.176.153"} }), false, KindKubeletServing, "not an address of node node01"},
		{"a foreign DNS name", mod(servingReq("a", "node01"), func(r *req) { r.dns = []string{"kubernetes.default"} }), false, KindKubeletServing, "DNS name"},
		{"no names at all", mod(servingReq("a", "node01"), func(r *req) { r.dns, r.ips = nil, nil }), false, KindKubeletServing, "names no DNS name"},
		{"client auth on a serving certificate", mod(servingReq("a", "node01"), func(r *req) {
			r.usages = append(r.usages, certv1.UsageClientAuth)
		}), false, KindKubeletServing, "usage \"client auth\""},
		{"subject of another node", mod(servingReq("a", "node01"), func(r *req) { r.subject.CommonName = "system:node:node02" }), false, KindKubeletServing, "subject"},
		{"masters group in the subject", mod(servingReq("a", "node01"), func(r *req) { r.subject.Organization = []string{"system:masters"} }), false, KindKubeletServing, "subject"},
		{"requested with a bootstrap token", mod(servingReq("a", "node01"), func(r *req) {
			r.user, r.groups = "system:bootstrap:abcdef", []string{"system:bootstrappers"}
		}), false, KindKubeletServing, "not by a node identity"},
		{"node not registered", servingReq("a", "node03"), false, KindKubeletServing, "does not exist"},
		{"broken signature", mod(servingReq("a", "node01"), func(r *req) { r.tamper = true }), false, KindKubeletServing, "request"},
		{"kube-proxy certificate for a node", proxyReq("p"), true, KindKubeProxy, "requested by node node01"},
		{"kube-proxy with system:masters", mod(proxyReq("p"), func(r *req) { r.subject.Organization = []string{"system:masters"} }), false, KindKubeProxy, "subject"},
		{"another client identity", mod(proxyReq("p"), func(r *req) { r.subject.CommonName = "kubernetes-admin" }), false, KindKubeProxy, "subject"},
		{"kube-proxy with SANs", mod(proxyReq("p"), func(r *req) { r.dns = []string{"node01"} }), false, KindKubeProxy, "alternative names"},
		{"kube-proxy with server auth", mod(proxyReq("p"), func(r *req) { r.usages = append(r.usages, certv1.UsageServerAuth) }), false, KindKubeProxy, "not allowed"},
		{"a user's own client certificate", mod(proxyReq("p"), func(r *req) { r.user, r.groups = "alice", []string{"devs"} }), false, KindOther, ""},
		{"kubelet client certificates are the controller-manager's", mod(servingReq("a", "node01"), func(r *req) {
			r.signer = certv1.KubeAPIServerClientKubeletSignerName
		}), false, KindOther, "not one this approver handles"},
	} {
		d := Check(tc.r.csr(t), nodes)
		if d.Approve != tc.approve || d.Kind != tc.kind || !strings.Contains(d.Reason, tc.reason) {
			t.Errorf("%s: %+v, want approve=%v kind=%q reason containing %q", tc.what, d, tc.approve, tc.kind, tc.reason)
		}
	}
	// A node that lists another node's address in its own status still cannot
	// get a certificate for it.
	liar := Nodes{"node01": node("node01", "192.168.176.152"), "node02": node("node02", "192.168.176.153", "192.168.176.152")}
	r := servingReq("a", "node02")
	r.ips = []string{"192.168.176.152"}
	if d := Check(r.csr(t), liar); d.Approve || !strings.Contains(d.Reason, "also an address of node node01") {
		t.Errorf("claimed address: %+v", d)
	}
}

// approved reports whether the CSR carries this approver's approval.
func approved(t *testing.T, c *fake.Clientset, name string) bool {
	t.Helper()
	csr, err := c.CertificatesV1().CertificateSigningRequests().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, cond := range csr.Status.Conditions {
		if cond.Type == certv1.CertificateApproved && cond.Reason == ApprovalReason {
			return true
		}
	}
	return false
}

func TestSync(t *testing.T) {
	ctx := context.Background()
	c := fake.NewSimpleClientset(node("node01", "192.168.176.152"))
	for _, r := range []req{servingReq("good", "node01"), servingReq("early", "node02"), proxyReq("proxy"),
		func() req { r := servingReq("bad", "node01"); r.dns = []string{"evil.example"}; return r }()} {
		if _, err := c.CertificatesV1().CertificateSigningRequests().Create(ctx, r.csr(t), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var logs []string
	a := &Approver{Client: c, Logf: func(f string, args ...any) { logs = append(logs, f) }}
	got, err := a.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "good,proxy" {
		t.Errorf("approved %v", got)
	}
	if !approved(t, c, "good") || !approved(t, c, "proxy") || approved(t, c, "bad") || approved(t, c, "early") {
		t.Error("approval conditions do not match what Sync reported")
	}
	// Pending ones are reported once, not on every sync.
	n := len(logs)
	if _, err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if len(logs) != n {
		t.Errorf("a second sync logged again: %v", logs[n:])
	}
	// The node registers: its CSR is approved on the next sync; approved ones
	// are not touched again.
	c.CoreV1().Nodes().Create(ctx, node("node02", "192.168.176.153"), metav1.CreateOptions{})
	got, err = a.Sync(ctx)
	if err != nil || strings.Join(got, ",") != "early" {
		t.Errorf("after node02 registered: %v %v", got, err)
	}
}

// TestRun: CSRs created while the approver runs are approved without waiting for
// the resync interval (an hour here), and a CSR waiting for its Node is approved
// once the Node registers. (TestApproverSurvivesDisconnects does the same
// against a real apiserver whose connections break.)
func TestRun(t *testing.T) {
	c := fake.NewSimpleClientset(node("node01", "192.168.176.152"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- (&Approver{Client: c}).Run(runCtx, time.Hour) }()
	defer func() {
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10s of its context ending")
		}
	}()
	waitApproved := func(name string) {
		t.Helper()
		if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
			return approved(t, c, name), nil
		}); err != nil {
			t.Fatalf("CSR %s was not approved by the running approver within 20s", name)
		}
	}
	for _, r := range []req{servingReq("live", "node01"), servingReq("early", "node02")} {
		if _, err := c.CertificatesV1().CertificateSigningRequests().Create(ctx, r.csr(t), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitApproved("live")
	if approved(t, c, "early") {
		t.Fatal("approved a CSR of a node that does not exist")
	}
	if _, err := c.CoreV1().Nodes().Create(ctx, node("node02", "192.168.176.153"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitApproved("early")

	// A node asking for its removal is deleted.
	asked := node("node03", "192.168.176.154")
	asked.Annotations = map[string]string{RemovalAnnotation: "2025-01-01T00:00:00Z"}
	if _, err := c.CoreV1().Nodes().Create(ctx, asked, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := c.CoreV1().Nodes().Get(ctx, "node03", metav1.GetOptions{})
		return err != nil, nil
	}); err != nil {
		t.Fatal("Node node03 asked for its removal and is still there after 20s")
	}
}

func TestRBACIsNarrow(t *testing.T) {
	role, binding := RBAC()
	for _, r := range role.Rules {
		for _, v := range r.Verbs {
			if v == "*" || v == "create" || v == "patch" || (v == "delete" && r.Resources[0] != "nodes") {
				t.Errorf("rule %+v grants %s", r, v)
			}
		}
		if len(r.Resources) == 1 && r.Resources[0] == "signers" && len(r.ResourceNames) != 2 {
			t.Errorf("approve on signers %v", r.ResourceNames)
		}
	}
	if binding.Subjects[0].Name != User || binding.RoleRef.Name != role.Name {
		t.Errorf("binding %+v", binding)
	}
}

func TestRemoveRequested(t *testing.T) {
	ctx := context.Background()
	asked := node("node02", "192.168.176.153")
	asked.Annotations = map[string]string{RemovalAnnotation: "2025-01-01T00:00:00Z"}
	c := fake.NewSimpleClientset(node("node01", "192.168.176.152"), asked)
	got, err := (&Approver{Client: c}).RemoveRequested(ctx)
	if err != nil || strings.Join(got, ",") != "node02" {
		t.Fatalf("deleted %v %v", got, err)
	}
	nl, _ := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if len(nl.Items) != 1 || nl.Items[0].Name != "node01" {
		t.Errorf("nodes left %v", nl.Items)
	}
}

// BenchmarkCheck is the cost of judging one serving CSR against a 100-node
// cluster (the IP-conflict scan is linear in the nodes).
func BenchmarkCheck(b *testing.B) {
	nodes := Nodes{}
	for i := 0; i < 100; i++ {
		name := "node" + strconv.Itoa(i)
		nodes[name] = node(name, "10.0."+strconv.Itoa(i/250)+"."+strconv.Itoa(i%250+1))
	}
	r := servingReq("bench", "node7")
	r.ips = []string{"10.0.0.8"}
	csr := r.csr(&testing.T{})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if d := Check(csr, nodes); !d.Approve {
			b.Fatal(d.Reason)
		}
	}
}
