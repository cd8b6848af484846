package certs

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
)

func TestCheckExpiration(t *testing.T) {
	now := fixedNow()
	p := newTestPKI(t, seedSpec(RSA2048), now)
	if err := p.CreateAll(); err != nil {
		t.Fatal(err)
	}
	later := now.Add(24 * time.Hour)
	r, err := CheckExpiration(nil, p.CertDir, p.root, later)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.CAs) != 4 || len(r.Certificates) != len(KubeconfigNames())+8 {
		t.Fatalf("report has %d CAs and %d certificates", len(r.CAs), len(r.Certificates))
	}
	for _, c := range r.Certificates {
		if c.Missing || c.ExternallyManaged {
			t.Errorf("%s: missing=%v external=%v", c.Name, c.Missing, c.ExternallyManaged)
		}
		if !c.NotAfter.Equal(now.Add(DefaultValidity)) || c.Residual != DefaultValidity-24*time.Hour {
			t.Errorf("%s: NotAfter %s residual %s", c.Name, c.NotAfter, c.Residual)
		}
	}
	byName := map[string]CertExpiration{}
	for _, c := range r.Certificates {
		byName[c.Name] = c
	}
	if byName["admin.conf"].CA != "ca" || byName["etcd-peer"].CA != "etcd-ca" || byName["front-proxy-client"].CA != "front-proxy-ca" {
		t.Errorf("signing CAs: %+v", byName)
	}
	if byName["admin.conf"].Subject != "CN=kubernetes-admin,O=kubeadm:cluster-admins" {
		t.Errorf("admin.conf subject %q", byName["admin.conf"].Subject)
	}
	for _, ca := range r.CAs {
		if !ca.NotAfter.Equal(now.Add(DefaultCAValidity)) || ca.ExternallyManaged {
			t.Errorf("CA %s: %+v", ca.Name, ca)
		}
	}

	var text bytes.Buffer
	r.WriteText(&text)
	for _, want := range []string{"CERTIFICATE AUTHORITY", "EXTERNALLY MANAGED", "admin.conf", "etcd-overlay-client", "364d", "9y", "front-proxy-ca", "kubelet-serving-ca"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
	js, _ := json.Marshal(r)
	if !strings.Contains(string(js), `"residualSeconds":`) || strings.Contains(string(js), "BEGIN") {
		t.Errorf("json report: %s", js)
	}

	// Without ca.key the CA and everything it signed is externally managed; a
	// missing file is listed as missing.
	os.Remove(filepath.Join(p.CertDir, "ca.key"))
	os.Remove(filepath.Join(p.CertDir, "etcd", "server.crt"))
	r, err = CheckExpiration(LocalFS{}, p.CertDir, p.root, later)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range r.Certificates {
		wantExt := c.CA == "ca"
		if c.ExternallyManaged != wantExt {
			t.Errorf("%s: externally managed %v, want %v", c.Name, c.ExternallyManaged, wantExt)
		}
		if c.Missing != (c.Name == "etcd-server") {
			t.Errorf("%s: missing %v", c.Name, c.Missing)
		}
	}
	text.Reset()
	r.WriteText(&text)
	if !strings.Contains(text.String(), "!MISSING! etcd-server") {
		t.Errorf("text report does not flag the missing certificate:\n%s", text.String())
	}

	os.WriteFile(filepath.Join(p.CertDir, "apiserver.crt"), []byte("junk"), 0o644)
	if _, err := CheckExpiration(LocalFS{}, p.CertDir, p.root, later); err == nil || !strings.Contains(err.Error(), "apiserver.crt") {
		t.Errorf("corrupt certificate: %v", err)
	}
}

func TestRenewKeepsIdentityAndExtendsValidity(t *testing.T) {
	// Back-dated so that openssl, which checks against the real clock, sees the
	// renewed certificates (NotBefore t1-5m) as valid.
	t0 := fixedNow().Add(-50 * time.Minute)
	spec := seedSpec(ECDSAP256)
	spec.Validity = time.Hour
	p := newTestPKI(t, spec, t0)
	if err := p.CreateAll(); err != nil {
		t.Fatal(err)
	}
	old := snapshot(t, p.root)
	oldCerts := map[string][]byte{}
	for _, n := range []string{"apiserver.crt", "apiserver.key", "etcd/peer.crt"} {
		oldCerts[n], _ = os.ReadFile(filepath.Join(p.CertDir, n))
	}
	oldAdmin, _ := os.ReadFile(filepath.Join(p.root, "admin.conf"))
	t1 := t0.Add(40 * time.Minute)
	opts := RenewOptions{CertDir: p.CertDir, KubeconfigDir: p.root, Now: func() time.Time { return t1 }, DryRun: true}

	// Dry run: a full report, no change.
	res, err := Renew(opts, "all")
	if err != nil {
		t.Fatal(err)
	}
	assertUnchanged(t, old, p.root)
	if len(res.Certificates) != len(RenewableNames()) || res.BackupDir == "" {
		t.Fatalf("dry run reported %d certificates, backup %q", len(res.Certificates), res.BackupDir)
	}
	if _, err := os.Stat(res.BackupDir); !os.IsNotExist(err) {
		t.Errorf("dry run created the backup dir")
	}
	var text bytes.Buffer
	res.WriteText(&text)
	if !strings.Contains(text.String(), "would renew") {
		t.Errorf("dry run text:\n%s", text.String())
	}

	opts.DryRun = false
	res, err = Renew(opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range res.Certificates {
		if c.Skipped != "" {
			t.Errorf("%s skipped: %s", c.Name, c.Skipped)
			continue
		}
		// Original period (1h) counted from the renewal.
		if !c.NewNotAfter.Equal(t1.Add(time.Hour)) || !c.NewNotAfter.After(c.OldNotAfter) {
			t.Errorf("%s: NotAfter %s -> %s", c.Name, c.OldNotAfter, c.NewNotAfter)
		}
	}

	// Same identity, new key and serial, same CA.
	oldAPI, _ := ParseCertPEM(oldCerts["apiserver.crt"])
	newAPI := mustReadCert(t, filepath.Join(p.CertDir, "apiserver.crt"))
	if newAPI.Subject.String() != oldAPI.Subject.String() || !slices.Equal(newAPI.DNSNames, oldAPI.DNSNames) ||
		!slices.Equal(ipStrings(newAPI.IPAddresses), ipStrings(oldAPI.IPAddresses)) || !slices.Equal(newAPI.ExtKeyUsage, oldAPI.ExtKeyUsage) ||
		newAPI.KeyUsage != oldAPI.KeyUsage {
		t.Errorf("apiserver identity changed:\nold %v %v %v %v\nnew %v %v %v %v", oldAPI.Subject, oldAPI.DNSNames, oldAPI.IPAddresses, oldAPI.ExtKeyUsage,
			newAPI.Subject, newAPI.DNSNames, newAPI.IPAddresses, newAPI.ExtKeyUsage)
	}
	if newAPI.SerialNumber.Cmp(oldAPI.SerialNumber) == 0 || publicKeysEqual(newAPI.PublicKey, oldAPI.PublicKey) {
		t.Error("renewal reused the serial number or the key")
	}
	if err := newAPI.CheckSignatureFrom(mustReadCert(t, filepath.Join(p.CertDir, "ca.crt"))); err != nil {
		t.Errorf("renewed apiserver cert not signed by ca.crt: %v", err)
	}
	opensslVerify(t, filepath.Join(p.CertDir, "etcd", "ca.crt"), filepath.Join(p.CertDir, "etcd", "peer.crt"), "sslserver")
	opensslVerify(t, filepath.Join(p.CertDir, "etcd", "ca.crt"), filepath.Join(p.CertDir, "etcd", "peer.crt"), "sslclient")

	// Backups hold exactly the replaced bytes.
	for n, b := range oldCerts {
		got, err := os.ReadFile(filepath.Join(res.BackupDir, "pki", n))
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("backup of %s: %v", n, err)
		}
	}
	if got, _ := os.ReadFile(filepath.Join(res.BackupDir, "kubeconfig", "admin.conf")); !bytes.Equal(got, oldAdmin) {
		t.Error("backup of admin.conf differs from the replaced file")
	}
	if st := snapshot(t, res.BackupDir); st["pki/apiserver.key"].mode != 0o600 || st["kubeconfig/admin.conf"].mode != 0o600 {
		t.Errorf("backup modes: %v %v", st["pki/apiserver.key"].mode, st["kubeconfig/admin.conf"].mode)
	}

	// Kubeconfigs: new client cert, same server and CA, same subject.
	cfg, err := clientcmd.LoadFromFile(filepath.Join(p.root, "admin.conf"))
	if err != nil {
		t.Fatal(err)
	}
	ai := cfg.AuthInfos[cfg.Contexts[cfg.CurrentContext].AuthInfo]
	c, _ := ParseCertPEM(ai.ClientCertificateData)
	if !c.NotAfter.Equal(t1.Add(time.Hour)) || c.Subject.CommonName != "kubernetes-admin" || !slices.Equal(c.Subject.Organization, []string{"kubeadm:cluster-admins"}) {
		t.Errorf("renewed admin.conf cert: %v until %s", c.Subject, c.NotAfter)
	}
	if cfg.Clusters["kubeforge"].Server != "https://k8s-api.kubeforge.test:6443" {
		t.Errorf("renewal changed the server to %q", cfg.Clusters["kubeforge"].Server)
	}

	// The renewed tree is exactly what CreateAll accepts as-is.
	renewed := snapshot(t, p.root)
	p.Now = func() time.Time { return t1 }
	if err := p.CreateAll(); err != nil {
		t.Fatalf("CreateAll after renew: %v", err)
	}
	assertUnchanged(t, renewed, p.root)

	// Renewing a single name touches only that certificate.
	before := snapshot(t, p.CertDir)
	res, err = Renew(RenewOptions{CertDir: p.CertDir, KubeconfigDir: p.root, Now: func() time.Time { return t1.Add(time.Minute) }, BackupDir: filepath.Join(t.TempDir(), "b")}, "front-proxy-client")
	if err != nil || len(res.Certificates) != 1 {
		t.Fatalf("renew front-proxy-client: %v %+v", err, res)
	}
	d := diffSnapshots(before, snapshot(t, p.CertDir))
	if !slices.Equal(d, []string{"changed front-proxy-client.crt", "changed front-proxy-client.key"}) {
		t.Errorf("single renewal changed %v", d)
	}
}

func TestRenewRefusals(t *testing.T) {
	now := fixedNow()
	p := newTestPKI(t, seedSpec(ECDSAP256), now)
	if err := p.CreateAll(); err != nil {
		t.Fatal(err)
	}
	opts := RenewOptions{CertDir: p.CertDir, KubeconfigDir: p.root, Now: func() time.Time { return now }}
	if _, err := Renew(opts, "ca"); err == nil || !strings.Contains(err.Error(), "not a renewable certificate") {
		t.Errorf("renewing a CA: %v", err)
	}
	// A certificate from another CA is an error, and nothing is written.
	other := newTestPKI(t, seedSpec(ECDSAP256), now)
	if err := other.CreateCerts(); err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join(other.CertDir, "apiserver.crt"), filepath.Join(p.CertDir, "apiserver.crt"))
	before := snapshot(t, filepath.Dir(p.root))
	if _, err := Renew(opts, "all"); err == nil || !strings.Contains(err.Error(), "apiserver.crt: not signed by the CA") {
		t.Errorf("foreign certificate: %v", err)
	}
	assertUnchanged(t, before, filepath.Dir(p.root))

	// Without the CA key, renewal skips what that CA signed (external CA).
	q := newTestPKI(t, seedSpec(ECDSAP256), now)
	if err := q.CreateAll(); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(q.CertDir, "front-proxy-ca.key"))
	res, err := Renew(RenewOptions{CertDir: q.CertDir, KubeconfigDir: q.root, Now: func() time.Time { return now }, DryRun: true}, "all")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range res.Certificates {
		if (c.Name == "front-proxy-client") != strings.HasPrefix(c.Skipped, "externally managed") {
			t.Errorf("%s: skipped=%q", c.Name, c.Skipped)
		}
	}
}
