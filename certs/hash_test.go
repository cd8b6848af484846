package certs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCAHashMatchesOpenSSL computes kubeadm's pin the way its documentation does
// (openssl x509 -pubkey | openssl pkey -pubin -outform der | sha256) and compares.
func TestCAHashMatchesOpenSSL(t *testing.T) {
	if _, err := os.Stat("/usr/bin/openssl"); err != nil {
		t.Skip("openssl not installed at /usr/bin/openssl")
	}
	for _, alg := range []KeyAlgorithm{RSA2048, ECDSAP256} {
		ca, err := NewCA("kubernetes", alg, DefaultCAValidity, fixedNow())
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(t.TempDir(), "ca.crt")
		os.WriteFile(f, ca.CertPEM, 0o644)
		out, err := exec.Command("bash", "-c",
			"set -o pipefail; /usr/bin/openssl x509 -in '"+f+"' -pubkey -noout | /usr/bin/openssl pkey -pubin -outform der | /usr/bin/openssl dgst -sha256 -hex").CombinedOutput()
		if err != nil {
			t.Fatalf("openssl: %v\n%s", err, out)
		}
		fields := strings.Fields(string(out))
		want := "sha256:" + fields[len(fields)-1]
		if got := CAHash(ca.Cert); got != want {
			t.Errorf("%s: CAHash = %s, openssl says %s", alg, got, want)
		}
	}
}
