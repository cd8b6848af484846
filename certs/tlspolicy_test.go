package certs

import (
	"crypto/tls"
	"strings"
	"testing"
)

// TestTLSCipherSuites: every suite of the policy is one Go knows as secure,
// ECDHE and AEAD, TLS 1.2 capable; none is repeated.
func TestTLSCipherSuites(t *testing.T) {
	secure := map[string]*tls.CipherSuite{}
	for _, c := range tls.CipherSuites() {
		secure[c.Name] = c
	}
	seen := map[string]bool{}
	for _, name := range TLSCipherSuites {
		c, ok := secure[name]
		if !ok {
			t.Errorf("%s is not a secure suite Go knows", name)
			continue
		}
		if seen[name] {
			t.Errorf("%s listed twice", name)
		}
		seen[name] = true
		if !strings.HasPrefix(name, "TLS_ECDHE_") || !(strings.Contains(name, "_GCM_") || strings.Contains(name, "CHACHA20_POLY1305")) {
			t.Errorf("%s is not ECDHE with an AEAD cipher", name)
		}
		tls12 := false
		for _, v := range c.SupportedVersions {
			tls12 = tls12 || v == tls.VersionTLS12
		}
		if !tls12 {
			t.Errorf("%s is not a TLS 1.2 suite", name)
		}
	}
}
