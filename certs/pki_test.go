package certs

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
)

type wantCert struct {
	name, file, caFile string
	cn                 string
	orgs               []string
	dns, ips           []string
	usages             []x509.ExtKeyUsage
}

var (
	server  = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	clientU = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	both    = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
)

func seedWantCerts() []wantCert {
	etcdDNS := []string{"master01", "localhost"}
	etcdIPs := []string{"192.168.161.151", "127.0.0.1", "::1"}
	return []wantCert{
		{name: "apiserver", file: "apiserver", caFile: "ca", cn: "kube-apiserver",
			dns: []string{"master01", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "k8s-api.kubeforge.test", "api.example.com"},
			ips: []string{"10.96.0.1", "192.168.161.151", "127.0.0.1", "10.0.0.100"}, usages: server},
		{name: "apiserver-kubelet-client", file: "apiserver-kubelet-client", caFile: "ca", cn: "kube-apiserver-kubelet-client", orgs: []string{"kubeadm:cluster-admins"}, usages: clientU},
		{name: "front-proxy-client", file: "front-proxy-client", caFile: "front-proxy-ca", cn: "front-proxy-client", usages: clientU},
		{name: "etcd-server", file: "etcd/server", caFile: "etcd/ca", cn: "master01", dns: etcdDNS, ips: etcdIPs, usages: both},
		{name: "etcd-peer", file: "etcd/peer", caFile: "etcd/ca", cn: "master01", dns: etcdDNS, ips: etcdIPs, usages: both},
		{name: "etcd-healthcheck-client", file: "etcd/healthcheck-client", caFile: "etcd/ca", cn: "kube-etcd-healthcheck-client", usages: clientU},
		{name: "apiserver-etcd-client", file: "apiserver-etcd-client", caFile: "etcd/ca", cn: "kube-apiserver-etcd-client", usages: clientU},
		{name: "etcd-overlay-client", file: "etcd/overlay-client", caFile: "etcd/ca", cn: "kubeforge-overlay", usages: clientU},
	}
}

type wantKubeconfig struct {
	file, cn string
	orgs     []string
	server   string
}

func seedWantKubeconfigs() []wantKubeconfig {
	lb, local := "https://k8s-api.kubeforge.test:6443", "https://192.168.161.151:6443"
	return []wantKubeconfig{
		{"admin.conf", "kubernetes-admin", []string{"kubeadm:cluster-admins"}, lb},
		{"super-admin.conf", "kubernetes-super-admin", []string{"system:masters"}, lb},
		{"controller-manager.conf", "system:kube-controller-manager", nil, local},
		{"scheduler.conf", "system:kube-scheduler", nil, local},
		{"kubelet.conf", "system:node:master01", []string{"system:nodes"}, lb},
		{"kube-proxy.conf", "system:kube-proxy", nil, lb},
	}
}

func TestCreateAllIssuesAVerifiablePKI(t *testing.T) {
	for _, alg := range []KeyAlgorithm{RSA2048, ECDSAP256} {
		t.Run(string(alg), func(t *testing.T) {
			now := fixedNow()
			p := newTestPKI(t, seedSpec(alg), now)
			if err := p.CreateAll(); err != nil {
				t.Fatal(err)
			}
			pki := p.CertDir
			checkKeyAlg := func(t *testing.T, c *x509.Certificate) {
				t.Helper()
				switch alg {
				case RSA2048:
					k, ok := c.PublicKey.(*rsa.PublicKey)
					if !ok || k.N.BitLen() != 2048 {
						t.Errorf("%s: want RSA-2048 key, got %T", c.Subject.CommonName, c.PublicKey)
					}
				case ECDSAP256:
					k, ok := c.PublicKey.(*ecdsa.PublicKey)
					if !ok || k.Curve.Params().Name != "P-256" {
						t.Errorf("%s: want ECDSA P-256 key, got %T", c.Subject.CommonName, c.PublicKey)
					}
				}
			}

			// CAs: self-signed, CA:TRUE, may sign certificates, 10 years.
			for _, ca := range []struct{ file, cn string }{{"ca", "kubernetes"}, {"front-proxy-ca", "front-proxy-ca"}, {"etcd/ca", "etcd-ca"}, {"kubelet-serving-ca", "kubelet-serving-ca"}} {
				c := mustReadCert(t, filepath.Join(pki, ca.file+".crt"))
				if !c.IsCA || !c.BasicConstraintsValid || c.KeyUsage&x509.KeyUsageCertSign == 0 {
					t.Errorf("%s: not a signing CA (IsCA=%v KeyUsage=%v)", ca.file, c.IsCA, c.KeyUsage)
				}
				if c.Subject.CommonName != ca.cn {
					t.Errorf("%s: CN %q, want %q", ca.file, c.Subject.CommonName, ca.cn)
				}
				if err := c.CheckSignatureFrom(c); err != nil {
					t.Errorf("%s: not self-signed: %v", ca.file, err)
				}
				if !c.NotBefore.Equal(now.Add(-5*time.Minute)) || !c.NotAfter.Equal(now.Add(DefaultCAValidity)) {
					t.Errorf("%s: validity %s..%s, want %s..%s", ca.file, c.NotBefore, c.NotAfter, now.Add(-5*time.Minute), now.Add(DefaultCAValidity))
				}
				checkKeyAlg(t, c)
			}

			for _, w := range seedWantCerts() {
				t.Run(w.name, func(t *testing.T) {
					certFile := filepath.Join(pki, w.file+".crt")
					caFile := filepath.Join(pki, w.caFile+".crt")
					c := mustReadCert(t, certFile)
					ca := mustReadCert(t, caFile)
					pool := x509.NewCertPool()
					pool.AddCert(ca)
					for _, u := range w.usages {
						if _, err := c.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
							t.Errorf("Go verifier rejects %s for usage %v: %v", w.name, u, err)
						}
					}
					if !slices.Equal(c.ExtKeyUsage, w.usages) {
						t.Errorf("ExtKeyUsage %v, want %v", c.ExtKeyUsage, w.usages)
					}
					for _, u := range w.usages {
						purpose := map[x509.ExtKeyUsage]string{x509.ExtKeyUsageServerAuth: "sslserver", x509.ExtKeyUsageClientAuth: "sslclient"}[u]
						opensslVerify(t, caFile, certFile, purpose)
					}
					if slices.Equal(w.usages, clientU) {
						// A client-only certificate must not pass as a server.
						opensslRejects(t, caFile, certFile, "sslserver")
					}
					wantKU := x509.KeyUsageDigitalSignature
					if alg.IsRSA() {
						wantKU |= x509.KeyUsageKeyEncipherment
					}
					if c.KeyUsage != wantKU {
						t.Errorf("KeyUsage %v, want %v", c.KeyUsage, wantKU)
					}
					if c.IsCA {
						t.Error("leaf certificate is a CA")
					}
					if c.Subject.CommonName != w.cn || !slices.Equal(c.Subject.Organization, w.orgs) {
						t.Errorf("subject CN=%q O=%q, want CN=%q O=%q", c.Subject.CommonName, c.Subject.Organization, w.cn, w.orgs)
					}
					if !slices.Equal(sorted(c.DNSNames), sorted(w.dns)) {
						t.Errorf("DNS SANs %v, want %v", c.DNSNames, w.dns)
					}
					if !slices.Equal(ipStrings(c.IPAddresses), sorted(w.ips)) {
						t.Errorf("IP SANs %v, want %v", ipStrings(c.IPAddresses), w.ips)
					}
					if !c.NotBefore.Equal(now.Add(-5*time.Minute)) || !c.NotAfter.Equal(now.Add(DefaultValidity)) {
						t.Errorf("validity %s..%s, want %s..%s", c.NotBefore, c.NotAfter, now.Add(-5*time.Minute), now.Add(DefaultValidity))
					}
					checkKeyAlg(t, c)
					// The key on disk belongs to the certificate.
					kb, err := os.ReadFile(filepath.Join(pki, w.file+".key"))
					if err != nil {
						t.Fatal(err)
					}
					k, err := ParseKeyPEM(kb)
					if err != nil || !publicKeysEqual(k.Public(), c.PublicKey) {
						t.Errorf("key file does not match certificate (%v)", err)
					}
				})
			}

			// Kubeconfigs: server, embedded CA, client certificate verified both ways.
			caFile := filepath.Join(pki, "ca.crt")
			ca := mustReadCert(t, caFile)
			for _, w := range seedWantKubeconfigs() {
				path := filepath.Join(p.root, w.file)
				cfg, err := clientcmd.LoadFromFile(path)
				if err != nil {
					t.Fatalf("%s: %v", w.file, err)
				}
				ctx := cfg.Contexts[cfg.CurrentContext]
				if ctx == nil || ctx.Cluster != "kubeforge" {
					t.Fatalf("%s: current context %q does not name cluster kubeforge", w.file, cfg.CurrentContext)
				}
				cl, ai := cfg.Clusters[ctx.Cluster], cfg.AuthInfos[ctx.AuthInfo]
				if cl.Server != w.server {
					t.Errorf("%s: server %q, want %q", w.file, cl.Server, w.server)
				}
				if c, err := ParseCertPEM(cl.CertificateAuthorityData); err != nil || !c.Equal(ca) {
					t.Errorf("%s: embedded CA is not ca.crt (%v)", w.file, err)
				}
				c, err := ParseCertPEM(ai.ClientCertificateData)
				if err != nil {
					t.Fatalf("%s: %v", w.file, err)
				}
				pool := x509.NewCertPool()
				pool.AddCert(ca)
				if _, err := c.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: clientU}); err != nil {
					t.Errorf("%s: Go verifier rejects the client certificate: %v", w.file, err)
				}
				tmp := filepath.Join(t.TempDir(), "client.crt")
				os.WriteFile(tmp, ai.ClientCertificateData, 0o644)
				opensslVerify(t, caFile, tmp, "sslclient")
				if c.Subject.CommonName != w.cn || !slices.Equal(c.Subject.Organization, w.orgs) {
					t.Errorf("%s: subject CN=%q O=%q, want CN=%q O=%q", w.file, c.Subject.CommonName, c.Subject.Organization, w.cn, w.orgs)
				}
				k, err := ParseKeyPEM(ai.ClientKeyData)
				if err != nil || !publicKeysEqual(k.Public(), c.PublicKey) {
					t.Errorf("%s: client key does not match certificate (%v)", w.file, err)
				}
				checkKeyAlg(t, c)
			}

			// Modes of every file and directory, kubeadm's.
			wantModes := map[string]fs.FileMode{"pki": fs.ModeDir | 0o755, "pki/etcd": fs.ModeDir | 0o755}
			for _, f := range []string{"ca", "front-proxy-ca", "etcd/ca", "kubelet-serving-ca", "apiserver", "apiserver-kubelet-client", "front-proxy-client",
				"etcd/server", "etcd/peer", "etcd/healthcheck-client", "apiserver-etcd-client", "etcd/overlay-client"} {
				wantModes["pki/"+f+".crt"] = 0o644
				wantModes["pki/"+f+".key"] = 0o600
			}
			wantModes["pki/sa.key"], wantModes["pki/sa.pub"] = 0o600, 0o600
			for _, w := range seedWantKubeconfigs() {
				wantModes[w.file] = 0o600
			}
			got := snapshot(t, p.root)
			delete(got, ".")
			for path, mode := range wantModes {
				st, ok := got[path]
				if !ok {
					t.Errorf("%s was not created", path)
				} else if st.mode != mode {
					t.Errorf("%s: mode %v, want %v", path, st.mode, mode)
				}
			}
			for path := range got {
				if _, ok := wantModes[path]; !ok {
					t.Errorf("unexpected file %s", path)
				}
			}

			// sa.key is RSA whatever the algorithm, and sa.pub is its public half.
			kb, _ := os.ReadFile(filepath.Join(pki, "sa.key"))
			sk, err := ParseKeyPEM(kb)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := sk.(*rsa.PrivateKey); !ok {
				t.Errorf("sa.key is %T, want RSA", sk)
			}
			pb, _ := os.ReadFile(filepath.Join(pki, "sa.pub"))
			if pub, err := parsePublicKeyPEM(pb); err != nil || !publicKeysEqual(pub, sk.Public()) {
				t.Errorf("sa.pub is not sa.key's public key (%v)", err)
			}
		})
	}
}

func TestSecondRunKeepsEverythingByteForByte(t *testing.T) {
	now := fixedNow()
	p := newTestPKI(t, seedSpec(ECDSAP256), now)
	if err := p.CreateAll(); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, p.root)
	p.out.Reset()
	// A later run (the clock moved on) must keep every file.
	p.Now = func() time.Time { return now.Add(time.Hour) }
	if err := p.CreateAll(); err != nil {
		t.Fatalf("second run: %v", err)
	}
	assertUnchanged(t, before, p.root)
	out := p.out.String()
	if strings.Contains(out, "Generating") || strings.Contains(out, "Writing") {
		t.Errorf("second run generated something:\n%s", out)
	}
	for _, want := range []string{"[certs] Using existing apiserver certificate and key on disk", "[certs] Using existing ca certificate authority",
		`[certs] Using the existing "sa" key`, `[kubeconfig] Using existing kubeconfig file: "` + filepath.Join(p.root, "admin.conf") + `"`} {
		if !strings.Contains(out, want) {
			t.Errorf("second run output lacks %q:\n%s", want, out)
		}
	}
}

func TestExistingFilesThatDoNotMatchAreErrors(t *testing.T) {
	now := fixedNow()
	cases := []struct {
		name   string
		mutate func(t *testing.T, p *testPKI, other *testPKI)
		spec   func(*Spec)
		want   []string
	}{
		{
			name: "apiserver cert from another CA",
			mutate: func(t *testing.T, p, other *testPKI) {
				copyFile(t, filepath.Join(other.CertDir, "apiserver.crt"), filepath.Join(p.CertDir, "apiserver.crt"))
				copyFile(t, filepath.Join(other.CertDir, "apiserver.key"), filepath.Join(p.CertDir, "apiserver.key"))
			},
			want: []string{filepath.Join("pki", "apiserver.crt"), "not signed by the CA", "ca.crt"},
		},
		{
			name: "kubeconfig from another cluster",
			mutate: func(t *testing.T, p, other *testPKI) {
				copyFile(t, filepath.Join(other.root, "admin.conf"), filepath.Join(p.root, "admin.conf"))
			},
			want: []string{"admin.conf", "embeds a different CA"},
		},
		{
			name: "apiserver cert lacks a new SAN",
			spec: func(s *Spec) { s.ExtraAPIServerSANs = append(s.ExtraAPIServerSANs, "new-lb.example.com", "10.0.0.200") },
			want: []string{filepath.Join("pki", "apiserver.crt"), "lacks subject alternative names new-lb.example.com, 10.0.0.200"},
		},
		{
			name: "key of another certificate",
			mutate: func(t *testing.T, p, _ *testPKI) {
				copyFile(t, filepath.Join(p.CertDir, "front-proxy-client.key"), filepath.Join(p.CertDir, "apiserver-kubelet-client.key"))
			},
			want: []string{"apiserver-kubelet-client.key", "does not belong to the certificate"},
		},
		{
			name: "expired leaf",
			mutate: func(t *testing.T, p, _ *testPKI) {
				ca := loadTestCA(t, p.CertDir, "ca")
				l, _ := LeafSpecFor(p.Spec, CertAPIServer, "")
				l.Now, l.Validity = now.Add(-48*time.Hour), time.Hour
				writeLeaf(t, ca, l, filepath.Join(p.CertDir, "apiserver"))
			},
			want: []string{filepath.Join("pki", "apiserver.crt"), "expired at"},
		},
		{
			name: "control-plane endpoint moved",
			spec: func(s *Spec) {
				s.ControlPlaneEndpoint = "other-lb.kubeforge.test:6443"
				s.ExtraAPIServerSANs = append(s.ExtraAPIServerSANs, "k8s-api.kubeforge.test")
			},
			want: []string{"apiserver.crt", "lacks subject alternative names other-lb.kubeforge.test"},
		},
	}
	other := newTestPKI(t, seedSpec(ECDSAP256), now)
	if err := other.CreateAll(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newTestPKI(t, seedSpec(ECDSAP256), now)
			if err := p.CreateAll(); err != nil {
				t.Fatal(err)
			}
			if tc.mutate != nil {
				tc.mutate(t, p, other)
			}
			if tc.spec != nil {
				tc.spec(&p.Spec)
			}
			before := snapshot(t, p.root)
			err := p.CreateAll()
			if err == nil {
				t.Fatal("mismatching file accepted")
			}
			t.Logf("error: %v", err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			assertUnchanged(t, before, p.root)
		})
	}
}

func TestBadInputWritesNothing(t *testing.T) {
	now := fixedNow()
	cases := []struct {
		name string
		// fresh starts from an empty directory instead of a complete PKI.
		fresh  bool
		mutate func(t *testing.T, p *testPKI)
		want   []string
	}{
		{
			name: "corrupt CA key",
			mutate: func(t *testing.T, p *testPKI) {
				os.WriteFile(filepath.Join(p.CertDir, "ca.key"), []byte("-----BEGIN RSA PRIVATE KEY-----\nbm90IGEga2V5\n-----END RSA PRIVATE KEY-----\n"), 0o600)
				os.Remove(filepath.Join(p.CertDir, "apiserver.crt"))
				os.Remove(filepath.Join(p.CertDir, "apiserver.key"))
			},
			want: []string{filepath.Join("pki", "ca.key"), "not a valid PEM-encoded"},
		},
		{
			name: "corrupt leaf key",
			mutate: func(t *testing.T, p *testPKI) {
				os.WriteFile(filepath.Join(p.CertDir, "etcd", "peer.key"), []byte("garbage"), 0o600)
			},
			want: []string{filepath.Join("pki", "etcd", "peer.key"), "private key"},
		},
		{
			name: "missing CA key when a leaf must be signed",
			mutate: func(t *testing.T, p *testPKI) {
				os.Remove(filepath.Join(p.CertDir, "ca.key"))
				os.Remove(filepath.Join(p.CertDir, "apiserver.crt"))
				os.Remove(filepath.Join(p.CertDir, "apiserver.key"))
				// A kubeconfig that would need signing too: the first error wins,
				// and still nothing is written.
				os.Remove(filepath.Join(p.root, "scheduler.conf"))
			},
			want: []string{"cannot create apiserver", filepath.Join("pki", "ca.key"), "is missing"},
		},
		{
			name: "CA certificate without its key's certificate",
			mutate: func(t *testing.T, p *testPKI) {
				os.Remove(filepath.Join(p.CertDir, "front-proxy-ca.crt"))
			},
			want: []string{"front-proxy-ca.key exists but", "front-proxy-ca.crt does not"},
		},
		{
			name: "certificate without its key",
			mutate: func(t *testing.T, p *testPKI) {
				os.Remove(filepath.Join(p.CertDir, "etcd", "healthcheck-client.key"))
			},
			want: []string{"healthcheck-client.crt exists but its key", "healthcheck-client.key does not"},
		},
		{
			name:  "etcd dir is not a directory",
			fresh: true,
			mutate: func(t *testing.T, p *testPKI) {
				os.MkdirAll(p.CertDir, 0o755)
				os.WriteFile(filepath.Join(p.CertDir, "etcd"), []byte("x"), 0o644)
			},
			want: []string{filepath.Join("pki", "etcd", "ca.crt"), "not a directory"},
		},
		{
			name:  "ca.crt is a directory",
			fresh: true,
			mutate: func(t *testing.T, p *testPKI) {
				os.MkdirAll(filepath.Join(p.CertDir, "ca.crt"), 0o755)
			},
			want: []string{filepath.Join("pki", "ca.crt"), "is a directory"},
		},
	}
	if os.Geteuid() != 0 {
		cases = append(cases, struct {
			name   string
			fresh  bool
			mutate func(t *testing.T, p *testPKI)
			want   []string
		}{
			name: "unreadable cert dir",
			mutate: func(t *testing.T, p *testPKI) {
				os.Chmod(p.CertDir, 0)
				t.Cleanup(func() { os.Chmod(p.CertDir, 0o755) })
			},
			want: []string{filepath.Join("pki", "ca.crt"), "permission denied"},
		})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newTestPKI(t, seedSpec(ECDSAP256), now)
			if !tc.fresh {
				if err := p.CreateAll(); err != nil {
					t.Fatal(err)
				}
			}
			tc.mutate(t, p)
			before := snapshot(t, p.root)
			err := p.CreateAll()
			if err == nil {
				t.Fatal("bad input accepted")
			}
			t.Logf("error: %v", err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			assertUnchanged(t, before, p.root)
		})
	}
}

func TestExternalCAWithCompleteLeavesIsAccepted(t *testing.T) {
	now := fixedNow()
	p := newTestPKI(t, seedSpec(ECDSAP256), now)
	if err := p.CreateAll(); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(p.CertDir, "ca.key"))
	before := snapshot(t, p.root)
	p.out.Reset()
	if err := p.CreateAll(); err != nil {
		t.Fatalf("external CA with every leaf present: %v", err)
	}
	assertUnchanged(t, before, p.root)
	if !strings.Contains(p.out.String(), "externally managed") {
		t.Errorf("output does not say the CA is externally managed:\n%s", p.out)
	}
}

func TestSingleCertPhaseNeedsItsCA(t *testing.T) {
	now := fixedNow()
	p := newTestPKI(t, seedSpec(RSA2048), now)
	err := p.CreateCerts(CertAPIServer)
	if err == nil || !strings.Contains(err.Error(), filepath.Join("pki", "ca.crt")) || !strings.Contains(err.Error(), "init phase certs ca") {
		t.Fatalf("apiserver without a CA: %v", err)
	}
	if _, err := os.Stat(p.CertDir); !os.IsNotExist(err) {
		t.Fatalf("a failed phase created %s", p.CertDir)
	}
	if err := p.CreateCerts(CertCA); err != nil {
		t.Fatal(err)
	}
	if err := p.CreateCerts(CertAPIServer); err != nil {
		t.Fatal(err)
	}
	got := snapshot(t, p.CertDir)
	for _, f := range []string{"ca.crt", "ca.key", "apiserver.crt", "apiserver.key"} {
		if _, ok := got[f]; !ok {
			t.Errorf("%s missing", f)
		}
	}
	if len(got) != 5 { // the four files and "."
		t.Errorf("phase wrote more than asked for: %v", got)
	}
	if err := p.CreateCerts("etcd-nonsense"); err == nil || !strings.Contains(err.Error(), "unknown certificate") {
		t.Errorf("unknown name: %v", err)
	}
	// A node that is not an etcd member gets no etcd member certificates.
	s := seedSpec(RSA2048)
	s.NodeName, s.AdvertiseAddress = "master02", "192.168.161.160"
	q := newTestPKI(t, s, now)
	if err := q.CreateCerts(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(q.CertDir, "etcd", "server.crt")); !os.IsNotExist(err) {
		t.Error("etcd/server.crt issued on a node that is not an etcd host")
	}
	if err := q.CreateCerts(CertEtcdPeer); err == nil || !strings.Contains(err.Error(), "not one of the etcd hosts") {
		t.Errorf("etcd-peer on a non-member: %v", err)
	}
}

func TestSpecValidation(t *testing.T) {
	s := seedSpec(RSA2048)
	s.AdvertiseAddress = "not-an-ip"
	s.KeyAlgorithm = "dsa-1024"
	s.ExtraAPIServerSANs = []string{"bad_name!"}
	s.EtcdHosts = append(s.EtcdHosts, Host{Name: "node01", Address: "192.168.161.154"})
	s.Validity = 20 * 365 * 24 * time.Hour
	err := s.WithDefaults().Validate()
	if err == nil {
		t.Fatal("invalid spec accepted")
	}
	for _, w := range []string{"AdvertiseAddress", "KeyAlgorithm", "ExtraAPIServerSANs[0]", `EtcdHosts[3].Name: "node01" is listed twice`, "cannot outlive its CA"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not mention %q:\n%v", w, err)
		}
	}
	p := newTestPKI(t, s, fixedNow())
	if err := p.CreateAll(); err == nil {
		t.Fatal("CreateAll accepted an invalid spec")
	}
	if _, err := os.Stat(p.CertDir); !os.IsNotExist(err) {
		t.Error("an invalid spec created files")
	}
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func loadTestCA(t testing.TB, certDir, base string) *CA {
	t.Helper()
	ca, err := LoadCA(LocalFS{}, filepath.Join(certDir, base+".crt"), filepath.Join(certDir, base+".key"))
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func writeLeaf(t testing.TB, ca *CA, l LeafSpec, base string) {
	t.Helper()
	c, k, err := Issue(ca, l)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(base+".crt", c, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(base+".key", k, 0o600); err != nil {
		t.Fatal(err)
	}
}
