package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubeforge/kubeforge/certs"
)

// The attacks of issue 15 item 1, played by node01 with its own kubelet
// identity (/etc/kubernetes/kubelet.conf, the kubelet's rotated client
// certificate) against the running cluster of TestNodes.

// kubectlAsNode01 is kubectl on node01 authenticated as the kubelet
// (system:node:node01); workers have no kubectl installed, the bundle's is used.
const kubectlAsNode01 = "/opt/kubeforge/bundle/bin/kubectl --kubeconfig /etc/kubernetes/kubelet.conf "

// approverUnit is where the approver runs: the node runtime.
const approverUnit = "kubeforge-node.service"

// servingCSR is a kubelet serving CSR as a kubelet makes it: subject
// CN=system:node:<node>, O=system:nodes, with the given names.
func servingCSR(t *testing.T, name, nodeName string, sans ...string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:node:" + nodeName, Organization: []string{"system:nodes"}}}
	for _, s := range sans {
		if ip := net.ParseIP(s); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, s)
		}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	req := base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	return []byte(`apiVersion: certificates.k8s.io/v1
kind: CertificateSigningRequest
metadata: {name: ` + name + `}
spec:
  request: ` + req + `
  signerName: kubernetes.io/kubelet-serving
  usages: [digital signature, server auth]
`)
}

// csrState is what the admin sees of a CSR.
type csrState struct {
	Spec struct {
		Username string `json:"username"`
	} `json:"spec"`
	Status struct {
		Certificate string                          `json:"certificate"`
		Conditions  []struct{ Type, Reason string } `json:"conditions"`
	} `json:"status"`
}

func (l *nodesLab) csr(t *testing.T, name string) csrState {
	t.Helper()
	var c csrState
	out, err := l.ssh("master01", "KUBECONFIG=/etc/kubernetes/admin.conf kubectl get csr "+name+" -o json", nil)
	if err != nil || json.Unmarshal([]byte(out), &c) != nil {
		t.Fatalf("kubectl get csr %s: %v\n%s", name, err, out)
	}
	return c
}

// poll waits for cond (which says what it still waits for, "" when done) with
// a deadline, failing t with what it waited for.
func poll(t *testing.T, what string, timeout time.Duration, cond func() string) {
	t.Helper()
	last := ""
	err := wait.PollUntilContextTimeout(context.Background(), 500*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		last = cond()
		return last == "", nil
	})
	if err != nil {
		t.Fatalf("%s: still %s after %s", what, last, timeout)
	}
}

func (l *nodesLab) remoteCA(t *testing.T, path string) *certs.CA {
	t.Helper()
	out, err := l.ssh("master01", "cat "+path, nil)
	if err != nil {
		t.Fatalf("%s: %v\n%s", path, err, out)
	}
	ca, err := certs.ParseCA([]byte(out), nil)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return ca
}

// servingCertAttacks: node01 asks for kubelet serving certificates naming the
// API server, the service IP, master01, node02 and the endpoint, after writing
// them into its own Node status (as in the review); the approver sees each
// and leaves it pending, and none is ever signed. A request for node01's own
// name and address is approved and signed by the kubelet-serving CA, which
// is not the cluster CA.
func (l *nodesLab) servingCertAttacks(endpoint string) func(t *testing.T) {
	return func(t *testing.T) {
		epHost, _, err := net.SplitHostPort(endpoint)
		if err != nil {
			t.Fatal(err)
		}
		stamp := fmt.Sprintf("%d-%d", os.Getpid(), time.Now().Unix())
		var made []string
		defer func() {
			if len(made) > 0 {
				l.ssh("master01", "KUBECONFIG=/etc/kubernetes/admin.conf kubectl delete csr "+strings.Join(made, " "), nil)
			}
		}()

		// What the review did first: node01 writes the names into its own status
		// (NodeRestriction lets a node change its own Node). The kubelet
		// overwrites it at its next status update; the approver must not care
		// either way.
		patch := `[{"op":"add","path":"/status/addresses/-","value":{"type":"InternalDNS","address":"kubernetes.default.svc"}},` +
			`{"op":"add","path":"/status/addresses/-","value":{"type":"InternalIP","address":"10.96.0.1"}},` +
			`{"op":"add","path":"/status/addresses/-","value":{"type":"Hostname","address":"master01"}}]`
		// kubectl patch --subresource=status first reads nodes/status, which a
		// node may not; the kubelet's own PATCH is what NodeRestriction allows.
		cred := "/var/lib/kubelet/pki/kubelet-client-current.pem"
		out, err := l.ssh("node01", "curl -sS -f --cacert /etc/kubernetes/pki/ca.crt --cert "+cred+" --key "+cred+
			" -X PATCH -H 'Content-Type: application/json-patch+json' --data-binary @- https://"+endpoint+"/api/v1/nodes/node01/status", []byte(patch))
		if err != nil || !strings.Contains(out, `"kubernetes.default.svc"`) {
			t.Errorf("node01 could not write its own status: %v\n%s", err, out)
		}

		attacks := []struct{ name, why string }{
			{"kubernetes.default.svc", "is a name of the API server"},
			{"10.96.0.1", "is in the service network"},
			{"master01", `"master01"`},
			{"node02", `"node02" is the name of another host`},
			{epHost, "is the control-plane endpoint"},
		}
		for i, a := range attacks {
			name := fmt.Sprintf("attack-%d-%s", i, stamp)
			// Each request also names node01's own name and address, as the
			// kubelet's does: one foreign name must spoil the whole request.
			manifest := servingCSR(t, name, "node01", "node01", l.addr["node01"], a.name)
			if out, err := l.ssh("node01", kubectlAsNode01+"create -f -", manifest); err != nil {
				t.Fatalf("node01 creating CSR for %s: %v\n%s", a.name, err, out)
			}
			made = append(made, name)
			if got := l.csr(t, name).Spec.Username; got != "system:node:node01" {
				t.Fatalf("CSR %s was made by %s, not by node01's kubelet identity", name, got)
			}
			// The approver has seen it once its journal says it left it pending.
			var line string
			poll(t, "the approver's verdict on "+name+" ("+a.name+")", time.Minute, func() string {
				out, _ := l.ssh("master01", "journalctl -u "+approverUnit+" -o cat --no-pager | grep -F 'leaving CSR "+name+" pending'", nil)
				if line = strings.TrimSpace(out); line == "" {
					return "no verdict in the journal of " + approverUnit
				}
				return ""
			})
			if !strings.Contains(line, a.why) {
				t.Errorf("%s: the approver left it pending for another reason than %q: %s", a.name, a.why, line)
			}
			t.Logf("%s: %s", a.name, line)
		}
		// Seen and left pending; none approved, denied by someone else, or signed.
		for i, a := range attacks {
			c := l.csr(t, made[i])
			if len(c.Status.Conditions) > 0 || c.Status.Certificate != "" {
				t.Errorf("CSR for %s: conditions %+v, certificate issued %v", a.name, c.Status.Conditions, c.Status.Certificate != "")
			}
		}

		// node01's own name and recorded address: approved, and signed by the
		// kubelet-serving CA, not by the cluster CA.
		name := "legit-" + stamp
		if out, err := l.ssh("node01", kubectlAsNode01+"create -f -", servingCSR(t, name, "node01", "node01", l.addr["node01"])); err != nil {
			t.Fatalf("node01 creating its own CSR: %v\n%s", err, out)
		}
		made = append(made, name)
		var issued csrState
		poll(t, "node01's own serving CSR approved and signed", time.Minute, func() string {
			issued = l.csr(t, name)
			if issued.Status.Certificate == "" {
				return fmt.Sprintf("conditions %+v, no certificate", issued.Status.Conditions)
			}
			return ""
		})
		if len(issued.Status.Conditions) == 0 || issued.Status.Conditions[0].Reason != "KubeforgeCSRApprover" {
			t.Errorf("approved by %+v", issued.Status.Conditions)
		}
		pemData, err := base64.StdEncoding.DecodeString(issued.Status.Certificate)
		if err != nil {
			t.Fatal(err)
		}
		crt, err := certs.ParseCertPEM(pemData)
		if err != nil {
			t.Fatal(err)
		}
		servingCA := l.remoteCA(t, "/etc/kubernetes/pki/kubelet-serving-ca.crt")
		clusterCA := l.remoteCA(t, "/etc/kubernetes/pki/ca.crt")
		if err := servingCA.Verify(crt, time.Now(), x509.ExtKeyUsageServerAuth); err != nil {
			t.Errorf("node01's serving certificate does not verify against the kubelet-serving CA: %v", err)
		}
		if clusterCA.Verify(crt, time.Now(), x509.ExtKeyUsageServerAuth) == nil {
			t.Error("node01's serving certificate verifies against the cluster CA: every client would trust it")
		}
		if crt.VerifyHostname(l.addr["node01"]) != nil || crt.VerifyHostname("node01") != nil {
			t.Errorf("issued for %v %v", crt.DNSNames, crt.IPAddresses)
		}
	}
}

// logsAndExec: the apiserver verifies kubelets against the kubelet-serving CA
// (--kubelet-certificate-authority, CIS 1.2.5), and kubectl logs and exec,
// which it proxies to the kubelet, work on a pod of node01.
func (l *nodesLab) logsAndExec(t *testing.T) {
	pid, err := l.ssh("master01", "systemctl show -p MainPID --value kube-apiserver.service", nil)
	if err != nil {
		t.Fatal(err)
	}
	args, err := l.ssh("master01", "tr '\\0' '\\n' < /proc/"+strings.TrimSpace(pid)+"/cmdline", nil)
	if err != nil || !strings.Contains(args, "--kubelet-certificate-authority=/etc/kubernetes/pki/kubelet-serving-ca.crt\n") {
		t.Errorf("the running kube-apiserver lacks --kubelet-certificate-authority: %v\n%s", err, args)
	}
	pod, err := l.ssh("master01", "KUBECONFIG=/etc/kubernetes/admin.conf kubectl get pods -l app=httpecho --field-selector spec.nodeName=node01 -o jsonpath='{.items[0].metadata.name}'", nil)
	if pod = strings.TrimSpace(pod); err != nil || pod == "" {
		t.Fatalf("no httpecho pod on node01: %v %s", err, pod)
	}
	if out, err := l.ssh("master01", "KUBECONFIG=/etc/kubernetes/admin.conf kubectl logs "+pod, nil); err != nil || !strings.Contains(out, "listening on :8080") {
		t.Errorf("kubectl logs %s: %v\n%s", pod, err, out)
	}
	if out, err := l.ssh("master01", "KUBECONFIG=/etc/kubernetes/admin.conf kubectl exec "+pod+" -- /httpecho -version", nil); err != nil || !strings.Contains(out, "httpecho version") {
		t.Errorf("kubectl exec %s: %v\n%s", pod, err, out)
	}
	// Every kubelet serves with a certificate of the kubelet-serving CA.
	servingCA := l.remoteCA(t, "/etc/kubernetes/pki/kubelet-serving-ca.crt")
	for _, h := range []string{"master01", "node01", "node02"} {
		out, err := l.ssh(h, "cat /var/lib/kubelet/pki/kubelet-server-current.pem", nil)
		if err != nil {
			t.Errorf("%s: %v", h, err)
			continue
		}
		c, err := certs.ParseCertPEM([]byte(out))
		if err != nil {
			t.Errorf("%s: %v", h, err)
			continue
		}
		if err := servingCA.Verify(c, time.Now(), x509.ExtKeyUsageServerAuth); err != nil {
			t.Errorf("%s's kubelet serving certificate: %v", h, err)
		}
	}
}
