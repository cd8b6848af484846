package certs

import (
	"crypto/x509"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestIssueForAnotherHost issues node01's etcd member certificates on the CA host,
// ships them through the encrypted bundle and lays them down in node01's cert dir.
func TestIssueForAnotherHost(t *testing.T) {
	now := fixedNow()
	p := newTestPKI(t, seedSpec(ECDSAP256), now)
	if err := p.CreateCerts(); err != nil {
		t.Fatal(err)
	}
	etcdCA := loadTestCA(t, p.CertDir, "etcd/ca")
	files, err := IssueEtcdMemberFiles(etcdCA, seedSpec(ECDSAP256), "node01")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"etcd/ca.crt", "etcd/peer.crt", "etcd/peer.key", "etcd/server.crt", "etcd/server.key"}
	var got []string
	for k := range files {
		got = append(got, k)
	}
	if !slices.Equal(sorted(got), want) {
		t.Fatalf("files %v, want %v", sorted(got), want)
	}
	if _, err := IssueEtcdMemberFiles(etcdCA, seedSpec(ECDSAP256), "node99"); err == nil || !strings.Contains(err.Error(), "not one of the etcd hosts") {
		t.Errorf("unknown member: %v", err)
	}

	key, _ := NewCertificateKey()
	enc, err := EncryptBundle(key, files)
	if err != nil {
		t.Fatal(err)
	}
	recv, err := DecryptBundle(key, enc)
	if err != nil {
		t.Fatal(err)
	}
	node01 := filepath.Join(t.TempDir(), "pki")
	if err := WriteFiles(LocalFS{}, node01, recv); err != nil {
		t.Fatal(err)
	}
	// Writing the same files again is a no-op; different content is refused.
	before := snapshot(t, node01)
	if err := WriteFiles(LocalFS{}, node01, recv); err != nil {
		t.Fatalf("idempotent rewrite: %v", err)
	}
	again, _ := IssueEtcdMemberFiles(etcdCA, seedSpec(ECDSAP256), "node01")
	if err := WriteFiles(LocalFS{}, node01, again); err == nil || !strings.Contains(err.Error(), "different content") {
		t.Errorf("conflicting rewrite: %v", err)
	}
	assertUnchanged(t, before, node01)
	if err := WriteFiles(LocalFS{}, node01, map[string][]byte{"../escape.crt": nil}); err == nil {
		t.Error("path escaping the cert dir accepted")
	}
	st := snapshot(t, node01)
	if st["etcd/server.key"].mode != 0o600 || st["etcd/server.crt"].mode != 0o644 {
		t.Errorf("modes: key %v cert %v", st["etcd/server.key"].mode, st["etcd/server.crt"].mode)
	}

	for _, f := range []string{"server", "peer"} {
		certFile := filepath.Join(node01, "etcd", f+".crt")
		c := mustReadCert(t, certFile)
		if c.Subject.CommonName != "node01" {
			t.Errorf("%s: CN %q", f, c.Subject.CommonName)
		}
		if !slices.Equal(sorted(c.DNSNames), []string{"localhost", "node01"}) || !slices.Equal(ipStrings(c.IPAddresses), []string{"127.0.0.1", "192.168.161.152", "::1"}) {
			t.Errorf("%s: SANs %v %v", f, c.DNSNames, ipStrings(c.IPAddresses))
		}
		if err := etcdCA.Verify(c, now, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth); err != nil {
			t.Errorf("%s: %v", f, err)
		}
		opensslVerify(t, filepath.Join(node01, "etcd", "ca.crt"), certFile, "sslserver")
		opensslVerify(t, filepath.Join(node01, "etcd", "ca.crt"), certFile, "sslclient")
	}

	// A joining control-plane host gets the shared files and issues its own leaves.
	shared, err := ReadSharedFiles(LocalFS{}, p.CertDir)
	if err != nil {
		t.Fatal(err)
	}
	enc, _ = EncryptBundle(key, shared)
	recv, _ = DecryptBundle(key, enc)
	s2 := seedSpec(ECDSAP256)
	s2.NodeName, s2.AdvertiseAddress = "master02", "192.168.161.160"
	q := newTestPKI(t, s2, now)
	if err := WriteFiles(LocalFS{}, q.CertDir, recv); err != nil {
		t.Fatal(err)
	}
	if err := q.CreateCerts(); err != nil {
		t.Fatal(err)
	}
	ca := loadTestCA(t, p.CertDir, "ca")
	c := mustReadCert(t, filepath.Join(q.CertDir, "apiserver.crt"))
	if err := ca.Verify(c, now, x509.ExtKeyUsageServerAuth); err != nil {
		t.Errorf("joined host's apiserver cert does not chain to the shared CA: %v", err)
	}
	if !slices.Contains(c.DNSNames, "master02") {
		t.Errorf("joined host's apiserver cert lacks its own name: %v", c.DNSNames)
	}
}
