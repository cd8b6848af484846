package cmd

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/certs"
)

func certsFixture(t *testing.T) (certDir, kcDir string) {
	t.Helper()
	root := t.TempDir()
	p := &certs.PKI{
		Spec: certs.Spec{NodeName: "master01", AdvertiseAddress: "192.168.161.151", KeyAlgorithm: certs.ECDSAP256,
			Validity: 2 * time.Hour},
		CertDir: filepath.Join(root, "pki"), KubeconfigDir: root,
		// Back-dated so that renewal (now) visibly extends NotAfter.
		Now: func() time.Time { return time.Now().Add(-time.Hour) },
	}
	if err := p.CreateAll(); err != nil {
		t.Fatal(err)
	}
	return p.CertDir, root
}

func TestCertsCheckExpirationCommand(t *testing.T) {
	certDir, kcDir := certsFixture(t)
	out, err := runRoot(t, "", "certs", "check-expiration", "--cert-dir", certDir, "--kubeconfig-dir", kcDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CERTIFICATE AUTHORITY", "admin.conf", "apiserver-etcd-client", "etcd-ca"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// The fixture's certificates expire in about an hour.
	out, err = runRoot(t, "", "certs", "check-expiration", "--cert-dir", certDir, "--kubeconfig-dir", kcDir, "--warn-within", "2h")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "WARNING: certificate apiserver (") || !strings.Contains(out, "within the renewal window of 2h0m0s; renew it: kubeforge certs renew apiserver") {
		t.Errorf("no WARNING for the apiserver certificate within 2h:\n%s", out)
	}
	out, err = runRoot(t, "", "certs", "check-expiration", "--cert-dir", certDir, "--kubeconfig-dir", kcDir, "--warn-within", "30m")
	if err != nil || strings.Contains(out, "WARNING") {
		t.Errorf("warnings within 30m (err %v):\n%s", err, out)
	}
	out, err = runRoot(t, "", "certs", "check-expiration", "--cert-dir", certDir, "--kubeconfig-dir", kcDir, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var r certs.ExpirationReport
	if err := json.Unmarshal([]byte(out), &r); err != nil || len(r.CAs) != 4 {
		t.Fatalf("json output (%v):\n%s", err, out)
	}
	if _, err := runRoot(t, "", "certs", "check-expiration", "-o", "yaml"); err == nil {
		t.Error("-o yaml accepted")
	}
}

func TestCertsRenewCommand(t *testing.T) {
	certDir, kcDir := certsFixture(t)
	before, _ := os.ReadFile(filepath.Join(certDir, "apiserver.crt"))
	out, err := runRoot(t, "", "certs", "renew", "all", "--cert-dir", certDir, "--kubeconfig-dir", kcDir, "--dry-run")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "apiserver") || !strings.Contains(out, "would renew") {
		t.Errorf("dry-run output:\n%s", out)
	}
	if after, _ := os.ReadFile(filepath.Join(certDir, "apiserver.crt")); string(after) != string(before) {
		t.Fatal("--dry-run changed apiserver.crt")
	}
	backup := filepath.Join(t.TempDir(), "backup")
	out, err = runRoot(t, "", "certs", "renew", "apiserver", "admin.conf", "--cert-dir", certDir, "--kubeconfig-dir", kcDir, "--backup-dir", backup)
	if err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(filepath.Join(certDir, "apiserver.crt")); string(after) == string(before) {
		t.Fatalf("renew did not change apiserver.crt:\n%s", out)
	}
	if got, _ := os.ReadFile(filepath.Join(backup, "pki", "apiserver.crt")); string(got) != string(before) {
		t.Error("backup does not hold the replaced apiserver.crt")
	}
	// --expiring-within: the fixture's certificates expire in about an hour,
	// the two just renewed an hour later.
	out, err = runRoot(t, "", "certs", "renew", "all", "--cert-dir", certDir, "--kubeconfig-dir", kcDir, "--expiring-within", "30m")
	if err != nil || !strings.Contains(out, "nothing to do") {
		t.Errorf("--expiring-within 30m (err %v):\n%s", err, out)
	}
	out, err = runRoot(t, "", "certs", "renew", "all", "--cert-dir", certDir, "--kubeconfig-dir", kcDir, "--expiring-within", "90m", "--dry-run")
	if err != nil {
		t.Fatal(err)
	}
	due, _, _ := strings.Cut(strings.SplitN(out, "[renew] expiring within 1h30m0s: ", 2)[len(strings.SplitN(out, "[renew] expiring within 1h30m0s: ", 2))-1], "\n")
	set := map[string]bool{}
	for _, n := range strings.Split(due, ", ") {
		set[n] = true
	}
	if !set["front-proxy-client"] || set["apiserver"] || set["admin.conf"] {
		t.Errorf("--expiring-within 90m selected %q; want the fixture's certificates but not the renewed apiserver and admin.conf:\n%s", due, out)
	}
	if _, err := runRoot(t, "", "certs", "renew", "all", "apiserver", "--cert-dir", certDir); err == nil {
		t.Error(`"all" combined with a name accepted`)
	}
	if _, err := runRoot(t, "", "certs", "renew", "ca", "--cert-dir", certDir); err == nil {
		t.Error("renewing a CA accepted")
	}
}

func TestCertsCertificateKeyCommand(t *testing.T) {
	out, err := runRoot(t, "", "certs", "certificate-key")
	if err != nil {
		t.Fatal(err)
	}
	if k := strings.TrimSpace(out); len(k) != 64 {
		t.Errorf("certificate key %q is not 64 hex characters", k)
	}
}
