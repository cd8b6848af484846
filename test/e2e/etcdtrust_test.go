package e2e

import (
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/etcd"
)

// keyDirs are where a process on a node looks for credentials: every directory
// kubeforge, the kubelet, containerd or an operator writes to, the bundle and
// containerd's image store aside.
const keyDirs = "/etc /var/lib /root /run /opt /srv /home /usr/local /tmp"

// etcdAttackFromNode plays a process on node (an etcd member that is not a
// control-plane host) that collects every private key and certificate on the
// node's disk and tries each pair against etcd with the bundle's etcdctl: it must
// read no key of the cluster (the overlay's client may read the overlay's own
// prefix, nothing else) and add or remove no member; and no private key on the
// node may belong to a CA (or be the service-account key).
func etcdAttackFromNode(t *testing.T, l *nodesLab, node, victim string) {
	// The control plane's CAs and the service-account key, as public keys.
	var caPubs []crypto.PublicKey
	var caNames []string
	for path, blocks := range pemFiles(l.must("master01", `for f in $(find /etc/kubernetes/pki -name '*.crt' -o -name '*.pub'); do echo "### $f"; cat "$f"; done`)) {
		for _, b := range blocks {
			switch b.Type {
			case "CERTIFICATE":
				if c, err := x509.ParseCertificate(b.Bytes); err == nil && c.IsCA {
					caPubs, caNames = append(caPubs, c.PublicKey), append(caNames, path)
				}
			case "PUBLIC KEY":
				if k, err := x509.ParsePKIXPublicKey(b.Bytes); err == nil {
					caPubs, caNames = append(caPubs, k), append(caNames, path)
				}
			}
		}
	}
	if len(caPubs) < 4 {
		t.Fatalf("found only %v on master01 (want the CAs and sa.pub)", caNames)
	}

	// Everything on the node that holds a key or a certificate.
	list := l.must(node, `grep -rlsI --exclude-dir=containerd --exclude-dir=bundle -e 'PRIVATE KEY' -e 'BEGIN CERTIFICATE' -e 'client-key-data' `+keyDirs+` 2>/dev/null; true`)
	var files []string
	for _, f := range strings.Fields(list) {
		if !strings.HasPrefix(f, "/usr/local/share/ca-certificates") {
			files = append(files, f)
		}
	}
	dump := l.must(node, `for f in `+strings.Join(files, " ")+`; do echo "### $f"; cat "$f"; echo; done`)
	var keys []keyFile
	var leafs []certFile
	for path, blocks := range pemFiles(dump) {
		for _, b := range blocks {
			switch {
			case b.Type == "OPENSSH PRIVATE KEY":
				// sshd's host key: no X.509 certificate can carry it, so etcd's
				// TLS cannot take it, and no CA of the cluster is ed25519/OpenSSH.
				t.Logf("%s: an OpenSSH key, not usable against etcd", path)
			case strings.HasSuffix(b.Type, "PRIVATE KEY"):
				if k, err := certs.ParseKeyPEM(pem.EncodeToMemory(b)); err == nil {
					keys = append(keys, keyFile{path, k, pem.EncodeToMemory(b)})
				} else {
					t.Errorf("%s: unparsable private key: %v", path, err)
				}
			case b.Type == "CERTIFICATE":
				if c, err := x509.ParseCertificate(b.Bytes); err == nil && !c.IsCA {
					leafs = append(leafs, certFile{path, c, pem.EncodeToMemory(b)})
				}
			}
		}
	}
	if len(keys) == 0 {
		t.Fatalf("no private key found on %s in %s:\n%s", node, keyDirs, list)
	}

	t.Run("no private key on "+node+" belongs to a CA or is the service-account key", func(t *testing.T) {
		for _, k := range keys {
			for i, pub := range caPubs {
				if pubEqual(k.key.Public(), pub) {
					t.Errorf("%s on %s is the private key of %s on master01", k.path, node, caNames[i])
				}
			}
		}
		if out := l.must(node, "ls /etc/kubernetes/pki/etcd/ /etc/kubernetes/pki/ 2>&1; true"); strings.Contains(out, "ca.key") {
			t.Errorf("%s has a CA key file:\n%s", node, out)
		}
	})

	// Pair keys with their certificates.
	type pair struct {
		name      string
		crt, key  []byte
		commonNam string
	}
	var pairs []pair
	for _, k := range keys {
		for _, c := range leafs {
			if pubEqual(k.key.Public(), c.cert.PublicKey) {
				pairs = append(pairs, pair{fmt.Sprintf("%s (CN %s, key %s)", c.path, c.cert.Subject.CommonName, k.path), c.pem, k.pem, c.cert.Subject.CommonName})
				break
			}
		}
	}
	var cns []string
	for _, p := range pairs {
		cns = append(cns, p.commonNam)
	}
	t.Logf("%d private keys, %d leaf certificates, %d usable pairs on %s: %v", len(keys), len(leafs), len(pairs), node, cns)
	for _, want := range []string{node, certs.DefaultOverlayClientCN, "kube-etcd-healthcheck-client", "system:node:" + node} {
		found := false
		for _, cn := range cns {
			found = found || cn == want
		}
		if !found {
			t.Errorf("the search found no key pair for %q on %s: the attack would miss it (%v)", want, node, cns)
		}
	}

	victimID := ""
	var st etcd.ClusterStatus
	out := l.must("master01", "kubeforge etcd status -o json")
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &st); err != nil {
		t.Fatalf("etcd status: %v\n%s", err, out)
	}
	var eps []string
	for _, m := range st.Members {
		eps = append(eps, m.ClientURLs...)
		if m.Name == victim {
			victimID = m.IDHex
		}
	}
	if victimID == "" {
		t.Fatalf("no etcd member %s: %+v", victim, st)
	}
	before := l.etcdMembers()

	t.Run("every key pair on "+node+" is refused by etcd", func(t *testing.T) {
		ctl := "/opt/kubeforge/bundle/bin/etcdctl --endpoints " + strings.Join(eps, ",") + " --insecure-skip-tls-verify --dial-timeout 3s --command-timeout 5s --cert /tmp/kf-attack.crt --key /tmp/kf-attack.key "
		attacks := []struct{ name, cmd string }{
			{"read every key", "get '' --from-key --keys-only --limit 1"},
			{"read /registry/secrets", "get /registry/secrets --prefix --keys-only"},
			{"add a member", "member add kf-attacker --learner --peer-urls https://192.0.2.10:2380"},
			{"remove " + victim, "member remove " + victimID},
			{"snapshot", "snapshot save /tmp/kf-attack.db"},
		}
		for _, p := range pairs {
			l.must(node, "umask 077; cat > /tmp/kf-attack.crt <<'EOF'\n"+string(p.crt)+"EOF\ncat > /tmp/kf-attack.key <<'EOF'\n"+string(p.key)+"EOF")
			for _, a := range attacks {
				out, err := l.ssh(node, ctl+a.cmd, nil)
				if err == nil || strings.Contains(out, "/registry/") || strings.Contains(out, "Member ") && strings.Contains(out, "added") {
					t.Errorf("%s with %s succeeded:\n%s", a.name, p.name, out)
				}
			}
			if p.commonNam == certs.DefaultOverlayClientCN {
				// The control: the same etcdctl with the overlay's certificate
				// may read the overlay's own prefix, so the refusals are etcd's.
				// The prefix is empty: the default overlay backend keeps
				// subnets in Nodes, not in etcd.
				if out, err := l.ssh(node, ctl+"get /kubeforge/network/ --prefix --keys-only", nil); err != nil || strings.Contains(out, "/kubeforge/network/subnets/") {
					t.Errorf("the overlay's certificate cannot read its own prefix: %v\n%s", err, out)
				}
			}
		}
		l.must(node, "rm -f /tmp/kf-attack.crt /tmp/kf-attack.key /tmp/kf-attack.db /tmp/kf-attack.db.part")
		if after := l.etcdMembers(); after != before {
			t.Errorf("etcd membership changed: %s -> %s", before, after)
		}
	})

	t.Run("the API server still reads and writes Secrets", func(t *testing.T) {
		l.kubectl("-n default create secret generic kf-etcd-trust --from-literal=probe=still-works")
		got := l.kubectl("-n default get secret kf-etcd-trust -o jsonpath={.data.probe}")
		if v, err := base64.StdEncoding.DecodeString(strings.TrimSpace(got)); err != nil || string(v) != "still-works" {
			t.Errorf("Secret read back: %q %v", got, err)
		}
		l.kubectl("-n default delete secret kf-etcd-trust")
	})
}

type keyFile struct {
	path string
	key  crypto.Signer
	pem  []byte
}

type certFile struct {
	path string
	cert *x509.Certificate
	pem  []byte
}

var kubeconfigData = regexp.MustCompile(`(client-key-data|client-certificate-data):\s*(\S+)`)

// pemFiles splits the output of `echo "### path"; cat path` per file into PEM
// blocks, with the base64 client key and certificate of kubeconfigs decoded.
func pemFiles(dump string) map[string][]*pem.Block {
	out := map[string][]*pem.Block{}
	for _, part := range strings.Split(dump, "### ")[1:] {
		path, body, _ := strings.Cut(part, "\n")
		data := []byte(body)
		for _, m := range kubeconfigData.FindAllStringSubmatch(body, -1) {
			if dec, err := base64.StdEncoding.DecodeString(m[2]); err == nil {
				data = append(append(data, '\n'), dec...)
			}
		}
		for {
			var b *pem.Block
			b, data = pem.Decode(data)
			if b == nil {
				break
			}
			out[path] = append(out[path], b)
		}
	}
	return out
}

func pubEqual(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}
