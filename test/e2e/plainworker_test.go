package e2e

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/images"
	"github.com/kubeforge/kubeforge/components/overlay/subnet"
)

// plainWorker checks node03, joined without --etcd (issue 14): its overlay runs
// through the Kubernetes API as the node itself, it holds nothing the etcd CA
// signed, its pods reach pods on other nodes, and its identity cannot change
// another Node's (other's) annotations or podCIDR. peers is how many other
// nodes its overlay agent programs.
func (l *nodesLab) plainWorker(t *testing.T, endpoint, other string, peers int) {
	etcdCA, err := certs.ParseCertPEM([]byte(l.must("master01", "cat /etc/kubernetes/pki/etcd/ca.crt")))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("no file on node03 is signed by the etcd CA", func(t *testing.T) {
		if out, err := l.ssh("node03", "ls /etc/kubernetes/pki/etcd", nil); err == nil {
			t.Errorf("node03 has /etc/kubernetes/pki/etcd: %s", out)
		}
		// Every PEM certificate in a file, and every certificate embedded in a
		// kubeconfig, anywhere kubeforge or the components write.
		dump := l.must("node03", `find /etc /var/lib /root /run /usr/local -xdev -type f \( -name '*.crt' -o -name '*.pem' -o -name '*.conf' -o -name '*.key' -o -name '*.yaml' \) 2>/dev/null | while read f; do echo "==> $f"; cat "$f"; echo; done`)
		files, checked := 0, 0
		for _, part := range strings.Split(dump, "==> ")[1:] {
			name, body, _ := strings.Cut(part, "\n")
			files++
			var ders [][]byte
			rest := []byte(body)
			for {
				var b *pem.Block
				b, rest = pem.Decode(rest)
				if b == nil {
					break
				}
				if b.Type == "CERTIFICATE" {
					ders = append(ders, b.Bytes)
				}
			}
			for _, m := range regexp.MustCompile(`(?:client-certificate-data|certificate-authority-data):\s*(\S+)`).FindAllStringSubmatch(body, -1) {
				if raw, err := base64.StdEncoding.DecodeString(m[1]); err == nil {
					for b, r := pem.Decode(raw); b != nil; b, r = pem.Decode(r) {
						ders = append(ders, b.Bytes)
					}
				}
			}
			for _, der := range ders {
				c, err := x509.ParseCertificate(der)
				if err != nil {
					continue
				}
				checked++
				if c.CheckSignatureFrom(etcdCA) == nil || c.Equal(etcdCA) {
					t.Errorf("node03 %s holds a certificate of the etcd CA: %s", name, c.Subject)
				}
			}
		}
		if checked == 0 {
			t.Fatalf("found no certificate at all on node03 (%d files): the check looked in the wrong place", files)
		}
		t.Logf("node03: %d certificates in %d files, none from the etcd CA", checked, files)
		if conf := l.must("node03", "cat /etc/kubeforge/overlay.yaml"); !strings.Contains(conf, "backend: kube") || strings.Contains(conf, "etcd") {
			t.Errorf("node03's overlay config:\n%s", conf)
		}
	})

	t.Run("node03's overlay publishes its VTEP on its own Node and programs every peer", func(t *testing.T) {
		ann := l.kubectl("get node node03 -o jsonpath={.metadata.annotations}")
		if !strings.Contains(ann, subnet.AnnotationVtepMAC) || !strings.Contains(ann, subnet.AnnotationPublicIP) || !strings.Contains(ann, l.addr["node03"]) {
			t.Errorf("node03's annotations: %s", ann)
		}
		l.waitFor(fmt.Sprintf("node03's agent programming its %d peers", peers), time.Minute, func() string {
			out := l.must("node03", "kubeforge overlay status")
			if !strings.Contains(out, fmt.Sprintf("%d programmed", peers)) || !strings.Contains(out, "Backend:    kube") {
				return out
			}
			return ""
		})
	})

	t.Run("node03's identity cannot change another Node (403)", func(t *testing.T) {
		patch := func(node, body string) string {
			return strings.TrimSpace(l.must("node03", fmt.Sprintf(`curl -sS -o /dev/null -w '%%{http_code}' --cacert /etc/kubernetes/pki/ca.crt `+
				`--cert /var/lib/kubelet/pki/kubelet-client-current.pem --key /var/lib/kubelet/pki/kubelet-client-current.pem `+
				`-X PATCH -H 'Content-Type: application/merge-patch+json' --data '%s' https://%s/api/v1/nodes/%s`, body, endpoint, node)))
		}
		ann := fmt.Sprintf(`{"metadata":{"annotations":{"%s":"0e:00:00:00:00:66","%s":"%s"}}}`, subnet.AnnotationVtepMAC, subnet.AnnotationPublicIP, l.addr["node03"])
		if code := patch(other, ann); code != "403" {
			t.Errorf("node03 patching %s's overlay annotations: HTTP %s, want 403", other, code)
		}
		if code := patch(other, `{"spec":{"podCIDR":"10.244.250.0/24","podCIDRs":["10.244.250.0/24"]}}`); code != "403" {
			t.Errorf("node03 patching %s's podCIDR: HTTP %s, want 403", other, code)
		}
		// The same credential may change its own Node: the 403s are about the
		// target, not a broken credential.
		own := l.kubectl("get node node03 -o jsonpath={.metadata.annotations.overlay\\.kubeforge\\.io/vtep-mac}")
		if code := patch("node03", fmt.Sprintf(`{"metadata":{"annotations":{"%s":"%s"}}}`, subnet.AnnotationVtepMAC, own)); code != "200" {
			t.Errorf("node03 patching its own Node: HTTP %s, want 200", code)
		}
		if got := l.kubectl("get node " + other + " -o jsonpath={.spec.podCIDR}"); got == "10.244.250.0/24" {
			t.Errorf("%s's podCIDR changed", other)
		}
		if got := l.kubectl("get node " + other + " -o jsonpath={.metadata.annotations.overlay\\.kubeforge\\.io/vtep-mac}"); got == "0e:00:00:00:00:66" {
			t.Errorf("%s's VTEP MAC annotation changed", other)
		}
	})

	t.Run("pods on node03 reach pods on other nodes across the overlay", func(t *testing.T) {
		for _, n := range []string{"node01", "node03"} {
			manifest := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: echo-%s, namespace: default, labels: {e2e: plainworker}}
spec:
  nodeName: %s
  containers:
  - {name: httpecho, image: %s, imagePullPolicy: Never, ports: [{containerPort: 8080}]}
`, n, n, images.TestServerImage)
			if out, err := l.ssh("master01", "KUBECONFIG=/etc/kubernetes/admin.conf kubectl apply -f -", []byte(manifest)); err != nil {
				t.Fatalf("apply: %v\n%s", err, out)
			}
		}
		ips := map[string]string{}
		l.waitFor("the two pinned pods Running", 3*time.Minute, func() string {
			for _, n := range []string{"node01", "node03"} {
				out, _ := l.ssh("master01", "KUBECONFIG=/etc/kubernetes/admin.conf kubectl get pod echo-"+n+" -o jsonpath='{.status.phase} {.status.podIP}'", nil)
				f := strings.Fields(out)
				if len(f) != 2 || f[0] != "Running" {
					return "echo-" + n + ": " + out
				}
				ips[n] = f[1]
			}
			return ""
		})
		for _, c := range []struct{ from, to string }{{"node03", "node01"}, {"node01", "node03"}, {"master01", "node03"}, {"node02", "node03"}} {
			out, err := l.ssh(c.from, "curl -sS -m 5 http://"+ips[c.to]+":8080/", nil)
			if err != nil || !strings.HasPrefix(out, "httpecho echo-"+c.to) {
				t.Errorf("%s -> pod on %s (%s): %v %q", c.from, c.to, ips[c.to], err, out)
			}
		}
		l.kubectl("delete pod -l e2e=plainworker --wait=false")
	})
}
