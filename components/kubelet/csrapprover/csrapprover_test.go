package csrapprover

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/components/clusterinfo"
	"github.com/kubeforge/kubeforge/components/kubeclient/fakewatch"
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

var labIPs = map[string]string{"master01": "192.168.176.151", "node01": "192.168.176.152", "node02": "192.168.176.153", "node03": "192.168.176.154"}

func servingReq(name, nodeName string) req {
	return req{name: name, user: "system:node:" + nodeName, signer: certv1.KubeletServingSignerName,
		subject: pkix.Name{CommonName: "system:node:" + nodeName, Organization: []string{"system:nodes"}},
		dns:     []string{nodeName}, ips: []string{labIPs[nodeName]}, usages: serving}
}

func proxyReq(name string) req {
	return req{name: name, user: "system:node:node01", signer: certv1.KubeAPIServerClientSignerName,
		subject: pkix.Name{CommonName: KubeProxyUser}, usages: client}
}

// testCluster is the cluster configuration the approver reads in these tests:
// the seed plan on 192.168.176.0/24 (master01 control plane and the endpoint,
// node01 and node02 workers), plus a host that only exists in the table.
func testCluster(t testing.TB, mod ...func(*config.Cluster)) *config.Cluster {
	t.Helper()
	c := config.Default()
	for i := range c.Spec.Hosts {
		c.Spec.Hosts[i].Address = labIPs[c.Spec.Hosts[i].Name]
	}
	c.Spec.ControlPlaneEndpoint = labIPs["master01"] + ":6443"
	c.Spec.Hosts = append(c.Spec.Hosts, config.Host{Name: "node04", Address: "192.168.176.155", Roles: []config.Role{config.RoleWorker}})
	for _, m := range mod {
		m(c)
	}
	return c
}

func testPolicy(t testing.TB, c *config.Cluster, apiserverCerts ...*x509.Certificate) *Policy {
	t.Helper()
	p, err := NewPolicy(c, apiserverCerts...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// testNodes are the registered Nodes. node01's status claims what it likes
// (the node writes it itself): the API server's names, the service IP and
// master01's address. Nothing of it may count.
func testNodes() Nodes {
	liar := node("node01", labIPs["node01"], "10.96.0.1", labIPs["master01"])
	liar.Status.Addresses = append(liar.Status.Addresses,
		corev1.NodeAddress{Type: corev1.NodeInternalDNS, Address: "kubernetes.default.svc"},
		corev1.NodeAddress{Type: corev1.NodeHostName, Address: "master01"})
	return Nodes{"master01": node("master01", labIPs["master01"]), "node01": liar, "node02": node("node02", labIPs["node02"]),
		"node03": node("node03", labIPs["node03"])}
}

// apiserverCertWith is a stand-in for the apiserver certificate in use, with
// SANs beyond what the configuration implies (an operator's own certificate).
func apiserverCertWith(dns []string, ips ...string) *x509.Certificate {
	c := &x509.Certificate{DNSNames: dns}
	for _, ip := range ips {
		c.IPAddresses = append(c.IPAddresses, net.ParseIP(ip))
	}
	return c
}

func TestCheck(t *testing.T) {
	in := Inputs{Nodes: testNodes(), Policy: testPolicy(t, testCluster(t), apiserverCertWith([]string{"apiserver.internal"}, "192.168.176.250"))}
	// A cluster whose endpoint is a DNS name, with extra apiserver SANs.
	lb := Inputs{Nodes: testNodes(), Policy: testPolicy(t, testCluster(t, func(c *config.Cluster) {
		c.Spec.ControlPlaneEndpoint = "api.example.com:6443"
		c.Spec.Certificates.CertSANs = []string{"lb.example.com", "192.168.176.200", "*.apps.example.com"}
	}))}
	// Hosts whose recorded name or address is one no kubelet may serve under.
	odd := Inputs{Nodes: Nodes{"kubernetes": node("kubernetes"), "svcnode": node("svcnode"), "loopy": node("loopy"), "node01": node("node01")},
		Policy: testPolicy(t, testCluster(t, func(c *config.Cluster) {
			c.Spec.Hosts = append(c.Spec.Hosts,
				config.Host{Name: "kubernetes", Address: "192.168.176.160", Roles: []config.Role{config.RoleWorker}},
				config.Host{Name: "svcnode", Address: "10.96.0.50", Roles: []config.Role{config.RoleWorker}},
				config.Host{Name: "loopy", Address: "127.0.0.5", Roles: []config.Role{config.RoleWorker}})
		}))}
	noPolicy := Inputs{Nodes: testNodes(), PolicyErr: errors.New(`reading kube-system/kubeforge-config: configmaps "kubeforge-config" is forbidden`)}

	mod := func(r req, f func(*req)) req { f(&r); return r }
	names := func(nodeName string, dns []string, ips ...string) req {
		return mod(servingReq("a", nodeName), func(r *req) { r.dns, r.ips = dns, ips })
	}
	for _, tc := range []struct {
		what    string
		in      Inputs
		r       req
		approve bool
		kind    Kind
		reason  string
	}{
		// Approved: the node's own name and recorded address.
		{"kubelet serving certificate for its own name and recorded address", in, servingReq("a", "node01"), true, KindKubeletServing, "node node01 for node01, 192.168.176.152"},
		{"its own name only", in, names("node01", []string{"node01"}), true, KindKubeletServing, "for node01"},
		{"its own name in capitals, with a trailing dot", in, names("node01", []string{"NODE01."}), true, KindKubeletServing, ""},
		{"the control-plane host's own name and address, which the apiserver and endpoint share", in, servingReq("a", "master01"), true, KindKubeletServing, "node master01 for master01, 192.168.176.151"},
		{"RSA key usages", in, mod(servingReq("a", "node01"), func(r *req) {
			r.usages = []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageKeyEncipherment, certv1.UsageServerAuth}
		}), true, KindKubeletServing, ""},

		// The API server's names and the service network.
		{"kubernetes", in, names("node01", []string{"node01", "kubernetes"}), false, KindKubeletServing, `"kubernetes" is a name of the API server`},
		{"kubernetes.default", in, names("node01", []string{"kubernetes.default"}), false, KindKubeletServing, "a name of the API server"},
		{"kubernetes.default.svc", in, names("node01", []string{"kubernetes.default.svc"}), false, KindKubeletServing, "a name of the API server"},
		{"kubernetes.default.svc.cluster.local", in, names("node01", []string{"kubernetes.default.svc.cluster.local"}), false, KindKubeletServing, "a name of the API server"},
		{"kubernetes.default.svc spelt in capitals", in, names("node01", []string{"Kubernetes.Default.SVC."}), false, KindKubeletServing, "a name of the API server"},
		{"the kubernetes service IP", in, names("node01", nil, "10.96.0.1"), false, KindKubeletServing, "IP 10.96.0.1 is in the service network 10.96.0.0/12"},
		{"another service IP", in, names("node01", nil, labIPs["node01"], "10.100.2.3"), false, KindKubeletServing, "in the service network"},
		{"a pod IP", in, names("node01", nil, "10.244.1.5"), false, KindKubeletServing, "in the pod network"},
		{"the control plane asking for the kubernetes service name", in, names("master01", []string{"master01", "kubernetes.default.svc"}), false, KindKubeletServing, "a name of the API server"},
		{"the control plane asking for the service IP", in, names("master01", nil, "10.96.0.1"), false, KindKubeletServing, "service network"},

		// The endpoint and the apiserver certificate's SANs.
		{"the endpoint (master01's address) from a worker", in, names("node01", nil, labIPs["master01"]), false, KindKubeletServing, "IP 192.168.176.151 is the control-plane endpoint"},
		{"the endpoint's DNS name", lb, names("node01", []string{"api.example.com"}), false, KindKubeletServing, `"api.example.com" is the control-plane endpoint`},
		{"the endpoint's DNS name, even for the control-plane host", lb, names("master01", []string{"master01", "api.example.com"}), false, KindKubeletServing, "control-plane endpoint"},
		{"a certSANs name", lb, names("node01", []string{"lb.example.com"}), false, KindKubeletServing, "certSANs"},
		{"a certSANs IP", lb, names("node01", nil, "192.168.176.200"), false, KindKubeletServing, "certSANs"},
		{"a name under a certSANs wildcard", lb, names("node01", []string{"x.apps.example.com"}), false, KindKubeletServing, "covered by a SAN of the API server"},
		{"a SAN of the apiserver certificate in use", in, names("node01", []string{"apiserver.internal"}), false, KindKubeletServing, "certificate in use"},
		{"an IP SAN of the apiserver certificate in use", in, names("node01", nil, "192.168.176.250"), false, KindKubeletServing, "certificate in use"},
		{"loopback, an apiserver SAN", in, names("master01", nil, "127.0.0.1"), false, KindKubeletServing, "loopback"},

		// Other hosts and Nodes.
		{"master01's name from a worker", in, names("node01", []string{"node01", "master01"}), false, KindKubeletServing, `"master01" is a SAN of the API server certificate`},
		{"another worker's name", in, names("node01", []string{"node02"}), false, KindKubeletServing, `"node02" is the name of another host`},
		{"another worker's address", in, names("node01", nil, labIPs["node02"]), false, KindKubeletServing, "IP 192.168.176.153 is the recorded address of host node02"},
		{"a host of the table that has not joined", in, names("node01", []string{"node04"}, "192.168.176.155"), false, KindKubeletServing, "another host"},
		{"another Node's name (not in the table)", in, names("node01", []string{"node03"}), false, KindKubeletServing, `"node03" is the name of another Node`},
		{"another node's name in capitals", in, names("node01", []string{"Node02"}), false, KindKubeletServing, "another host"},
		{"what the node wrote into its own status", in, names("node01", []string{"kubernetes.default.svc"}, "10.96.0.1", labIPs["master01"]), false, KindKubeletServing, "a name of the API server"},
		{"a foreign name", in, names("node01", []string{"evil.example"}), false, KindKubeletServing, `"evil.example" is not node node01's own name`},
		{"an address not recorded for it", in, names("node01", nil, "192.168.176.99"), false, KindKubeletServing, "IP 192.168.176.99 is not an address recorded for node node01 (kube-system/kubeforge-config has 192.168.176.152)"},
		{"a node that is not in the hosts table gets nothing", in, servingReq("a", "node03"), false, KindKubeletServing, "node node03 is not in the hosts table"},
		{"a node not in the table, its own name only", in, names("node03", []string{"node03"}), false, KindKubeletServing, "not in the hosts table"},
		{"IPv6 loopback", in, names("node01", nil, "::1"), false, KindKubeletServing, "loopback"},
		{"the unspecified address", in, names("node01", nil, "0.0.0.0"), false, KindKubeletServing, "unspecified"},
		{"a link-local address", in, names("node01", nil, "169.254.10.1"), false, KindKubeletServing, "link-local"},

		// Recorded hosts whose own name or address is refused all the same.
		{"a host recorded as \"kubernetes\"", odd, names("kubernetes", []string{"kubernetes"}), false, KindKubeletServing, "a name of the API server"},
		{"a host recorded inside the service network", odd, names("svcnode", nil, "10.96.0.50"), false, KindKubeletServing, "service network"},
		{"a host recorded on loopback", odd, names("loopy", nil, "127.0.0.5"), false, KindKubeletServing, "loopback"},

		// No configuration to judge by: nothing approved, kube-proxy still is.
		{"the cluster configuration cannot be read", noPolicy, servingReq("a", "node01"), false, KindKubeletServing, "cannot check its names against the cluster configuration: reading kube-system/kubeforge-config"},
		{"kube-proxy without the cluster configuration", noPolicy, proxyReq("p"), true, KindKubeProxy, ""},

		// The rest of the request.
		{"no names at all", in, names("node01", nil), false, KindKubeletServing, "names no DNS name"},
		{"client auth on a serving certificate", in, mod(servingReq("a", "node01"), func(r *req) {
			r.usages = append(r.usages, certv1.UsageClientAuth)
		}), false, KindKubeletServing, "usage \"client auth\""},
		{"subject of another node", in, mod(servingReq("a", "node01"), func(r *req) { r.subject.CommonName = "system:node:node02" }), false, KindKubeletServing, "subject"},
		{"masters group in the subject", in, mod(servingReq("a", "node01"), func(r *req) { r.subject.Organization = []string{"system:masters"} }), false, KindKubeletServing, "subject"},
		{"requested with a bootstrap token", in, mod(servingReq("a", "node01"), func(r *req) {
			r.user, r.groups = "system:bootstrap:abcdef", []string{"system:bootstrappers"}
		}), false, KindKubeletServing, "not by a node identity"},
		{"node not registered", in, servingReq("a", "node04"), false, KindKubeletServing, "does not exist"},
		{"broken signature", in, mod(servingReq("a", "node01"), func(r *req) { r.tamper = true }), false, KindKubeletServing, "request"},
		{"kube-proxy certificate for a node", in, proxyReq("p"), true, KindKubeProxy, "requested by node node01"},
		{"kube-proxy with system:masters", in, mod(proxyReq("p"), func(r *req) { r.subject.Organization = []string{"system:masters"} }), false, KindKubeProxy, "subject"},
		{"another client identity", in, mod(proxyReq("p"), func(r *req) { r.subject.CommonName = "kubernetes-admin" }), false, KindKubeProxy, "subject"},
		{"kube-proxy with SANs", in, mod(proxyReq("p"), func(r *req) { r.dns = []string{"node01"} }), false, KindKubeProxy, "alternative names"},
		{"kube-proxy with server auth", in, mod(proxyReq("p"), func(r *req) { r.usages = append(r.usages, certv1.UsageServerAuth) }), false, KindKubeProxy, "not allowed"},
		{"a user's own client certificate", in, mod(proxyReq("p"), func(r *req) { r.user, r.groups = "alice", []string{"devs"} }), false, KindOther, ""},
		{"kubelet client certificates are the controller-manager's", in, mod(servingReq("a", "node01"), func(r *req) {
			r.signer = certv1.KubeAPIServerClientKubeletSignerName
		}), false, KindOther, "not one this approver handles"},
	} {
		t.Run(tc.what, func(t *testing.T) {
			d := Check(tc.r.csr(t), tc.in)
			t.Logf("approve=%v: %s", d.Approve, d.Reason)
			if d.Approve != tc.approve || d.Kind != tc.kind || !strings.Contains(d.Reason, tc.reason) {
				t.Errorf("%+v, want approve=%v kind=%q reason containing %q", d, tc.approve, tc.kind, tc.reason)
			}
		})
	}
}

func TestNewPolicyRefusesBadConfig(t *testing.T) {
	for _, tc := range []struct {
		what string
		mod  func(*config.Cluster)
		want string
	}{
		{"bad service CIDR", func(c *config.Cluster) { c.Spec.Networking.ServiceCIDR = "10.96.0.0/99" }, "service network"},
		{"bad host address", func(c *config.Cluster) { c.Spec.Hosts[1].Address = "node01.example" }, "spec.hosts node01"},
		{"bad endpoint", func(c *config.Cluster) { c.Spec.ControlPlaneEndpoint = "nohost" }, "controlPlaneEndpoint"},
	} {
		t.Run(tc.what, func(t *testing.T) {
			if _, err := NewPolicy(testCluster(t, tc.mod)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%v, want an error about %q", err, tc.want)
			}
		})
	}
}

// configMap is kube-system/kubeforge-config as upload-config writes it.
func configMap(t testing.TB, c *config.Cluster) *corev1.ConfigMap {
	t.Helper()
	data, err := config.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: clusterinfo.ConfigMapName, Namespace: metav1.NamespaceSystem},
		Data: map[string]string{clusterinfo.ConfigKey: string(data)}}
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
	c := fake.NewSimpleClientset(node("node01", "192.168.176.152"), configMap(t, testCluster(t)))
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
	c := fake.NewSimpleClientset(node("node01", "192.168.176.152"), configMap(t, testCluster(t)))
	watching := fakewatch.AllOpened(c, "certificatesigningrequests", "nodes")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- (&Approver{Client: c}).Run(runCtx, time.Hour) }()
	select {
	case <-watching:
	case <-ctx.Done():
		t.Fatal("the approver's informers did not open their watches")
	}
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
	// The uploaded configuration: get on that one ConfigMap, in kube-system;
	// get and update on the record of joined hosts, nothing on anything else.
	cr, cb := ConfigRBAC()
	if cr.Namespace != "kube-system" || len(cr.Rules) != 2 || strings.Join(cr.Rules[0].Verbs, ",") != "get" ||
		strings.Join(cr.Rules[0].Resources, ",") != "configmaps" || strings.Join(cr.Rules[0].ResourceNames, ",") != clusterinfo.ConfigMapName ||
		strings.Join(cr.Rules[1].Verbs, ",") != "get,update" || strings.Join(cr.Rules[1].Resources, ",") != "configmaps" ||
		strings.Join(cr.Rules[1].ResourceNames, ",") != clusterinfo.JoinedHostsConfigMapName {
		t.Errorf("config reader role %+v", cr)
	}
	if cb.Namespace != "kube-system" || len(cb.Subjects) != 1 || cb.Subjects[0].Name != User || cb.RoleRef.Kind != "Role" || cb.RoleRef.Name != cr.Name {
		t.Errorf("config reader binding %+v", cb)
	}
}

// TestEnsureRBAC: the approver's RBAC is applied, once.
func TestEnsureRBAC(t *testing.T) {
	ctx := context.Background()
	c := fake.NewSimpleClientset()
	changed, err := EnsureRBAC(ctx, c)
	if err != nil || len(changed) != 4 {
		t.Fatalf("changed %v %v", changed, err)
	}
	if _, err := c.RbacV1().Roles("kube-system").Get(ctx, RoleName, metav1.GetOptions{}); err != nil {
		t.Error(err)
	}
	if changed, err := EnsureRBAC(ctx, c); err != nil || len(changed) != 0 {
		t.Errorf("second run changed %v %v", changed, err)
	}
}

// TestSyncWithoutConfiguration: without the uploaded configuration (or with an
// unreadable apiserver certificate) no serving CSR is approved; kube-proxy's
// still is, and the serving CSR is approved once the configuration is there.
func TestSyncWithoutConfiguration(t *testing.T) {
	ctx := context.Background()
	c := fake.NewSimpleClientset(node("node01", "192.168.176.152"))
	for _, r := range []req{servingReq("serving", "node01"), proxyReq("proxy")} {
		if _, err := c.CertificatesV1().CertificateSigningRequests().Create(ctx, r.csr(t), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var logs []string
	a := &Approver{Client: c, Logf: func(f string, args ...any) { logs = append(logs, fmt.Sprintf(f, args...)) }}
	got, err := a.Sync(ctx)
	if err != nil || strings.Join(got, ",") != "proxy" {
		t.Fatalf("approved %v %v", got, err)
	}
	if !strings.Contains(strings.Join(logs, "\n"), "leaving CSR serving pending: cannot check its names against the cluster configuration: reading kube-system/kubeforge-config") {
		t.Errorf("logs %v", logs)
	}
	if _, err := c.CoreV1().ConfigMaps("kube-system").Create(ctx, configMap(t, testCluster(t)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	a.APIServerCert = filepath.Join(t.TempDir(), "apiserver.crt")
	if got, err := a.Sync(ctx); err != nil || len(got) != 0 {
		t.Errorf("approved %v %v with the apiserver certificate missing", got, err)
	}
	if !strings.Contains(strings.Join(logs, "\n"), "reading the apiserver certificate") {
		t.Errorf("logs %v", logs)
	}
	a.APIServerCert = ""
	if got, err := a.Sync(ctx); err != nil || strings.Join(got, ",") != "serving" {
		t.Errorf("approved %v %v", got, err)
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

// BenchmarkCheck is the cost of judging one serving CSR against a 100-host
// cluster (the recorded-address conflict scan is linear in the hosts).
func BenchmarkCheck(b *testing.B) {
	nodes := Nodes{}
	c := config.Default()
	c.Spec.Hosts = nil
	for i := 0; i < 100; i++ {
		name := "node" + strconv.Itoa(i)
		addr := "10.0." + strconv.Itoa(i/250) + "." + strconv.Itoa(i%250+1)
		nodes[name] = node(name, addr)
		roles := []config.Role{config.RoleWorker}
		if i == 0 {
			roles = []config.Role{config.RoleControlPlane, config.RoleEtcd}
		}
		c.Spec.Hosts = append(c.Spec.Hosts, config.Host{Name: name, Address: addr, Roles: roles})
	}
	c.Spec.ControlPlaneEndpoint = "10.0.0.1:6443"
	in := Inputs{Nodes: nodes, Policy: testPolicy(b, c)}
	r := servingReq("bench", "node7")
	r.ips = []string{"10.0.0.8"}
	csr := r.csr(&testing.T{})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if d := Check(csr, in); !d.Approve {
			b.Fatal(d.Reason)
		}
	}
}
