package certs

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"time"

	"github.com/cloudflare/cfssl/config"
	"github.com/cloudflare/cfssl/csr"
	cflog "github.com/cloudflare/cfssl/log"
	"github.com/cloudflare/cfssl/signer"
	"github.com/cloudflare/cfssl/signer/local"
)

func init() {
	// cfssl logs every signature at INFO to stderr ("signed certificate with serial
	// number ..."). Our callers report what happened themselves, and failures come
	// back as errors, so only cfssl's critical messages are let through.
	cflog.Level = cflog.LevelCritical
}

// CA is a certificate authority: its certificate and, when kubeforge manages it, its
// private key. A CA without a key (external CA) can verify but not sign.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	Key     crypto.Signer // nil for an externally managed CA
	KeyPEM  []byte
}

// CanSign reports whether the CA's private key is available.
func (ca *CA) CanSign() bool { return ca != nil && ca.Key != nil }

// NewCA creates a self-signed CA with a fresh key, valid from now-Backdate until
// now+validity. Signing goes through cfssl's local signer with a CA policy, the same
// path `cfssl gencert -initca` takes, but with an explicit validity window.
func NewCA(commonName string, alg KeyAlgorithm, validity time.Duration, now time.Time) (*CA, error) {
	if commonName == "" {
		return nil, errors.New("new CA: empty common name")
	}
	key, err := GenerateKey(alg)
	if err != nil {
		return nil, err
	}
	req := &csr.CertificateRequest{CN: commonName, CA: &csr.CAConfig{}}
	csrPEM, err := csr.Generate(key, req)
	if err != nil {
		return nil, fmt.Errorf("new CA %q: creating CSR: %w", commonName, err)
	}
	policy := &config.Signing{
		Profiles: map[string]*config.SigningProfile{},
		Default: &config.SigningProfile{
			// kubeadm's CAs carry digitalSignature+keyEncipherment+keyCertSign; the
			// CRL bit costs nothing and lets the CA sign a CRL should one be needed.
			Usage:        []string{"cert sign", "crl sign", "digital signature"},
			Expiry:       validity,
			CAConstraint: config.CAConstraint{IsCA: true},
		},
	}
	// A nil CA certificate makes cfssl's signer self-sign with key.
	s, err := local.NewSigner(key, nil, signer.DefaultSigAlgo(key), policy)
	if err != nil {
		return nil, fmt.Errorf("new CA %q: %w", commonName, err)
	}
	certPEM, err := s.Sign(signer.SignRequest{
		Request:   string(csrPEM),
		NotBefore: now.Add(-Backdate).UTC(),
		NotAfter:  now.Add(validity).UTC(),
	})
	if err != nil {
		return nil, fmt.Errorf("new CA %q: signing: %w", commonName, err)
	}
	keyPEM, err := MarshalKeyPEM(key)
	if err != nil {
		return nil, err
	}
	return ParseCA(certPEM, keyPEM)
}

// ParseCA builds a CA from PEM bytes. keyPEM may be nil for an external CA. The
// certificate must be a CA and the key must belong to it.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := ParseCertPEM(certPEM)
	if err != nil {
		return nil, err
	}
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return nil, fmt.Errorf("certificate %q is not a CA (basic constraints CA:FALSE or missing)", cert.Subject.CommonName)
	}
	ca := &CA{Cert: cert, CertPEM: certPEM}
	if keyPEM == nil {
		return ca, nil
	}
	key, err := ParseKeyPEM(keyPEM)
	if err != nil {
		return nil, err
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, errors.New("private key does not match the CA certificate")
	}
	ca.Key, ca.KeyPEM = key, keyPEM
	return ca, nil
}

// LoadCA reads a CA from certPath and keyPath through fsys. A missing key file
// gives a CA that cannot sign (external CA); a missing certificate is an error for
// which errors.Is(err, fs.ErrNotExist) holds. Errors name the file.
func LoadCA(fsys FS, certPath, keyPath string) (*CA, error) {
	certPEM, err := fsys.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", certPath, err)
	}
	keyPEM, err := fsys.ReadFile(keyPath)
	if err != nil {
		if !isNotExist(err) {
			return nil, fmt.Errorf("reading %s: %w", keyPath, err)
		}
		keyPEM = nil
	}
	return parseCAFiles(certPath, certPEM, keyPath, keyPEM)
}

// Verify checks that cert was signed by this CA, is valid at now and allows every
// usage in usages.
func (ca *CA) Verify(cert *x509.Certificate, now time.Time, usages ...x509.ExtKeyUsage) error {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	if len(usages) == 0 {
		usages = []x509.ExtKeyUsage{x509.ExtKeyUsageAny}
	}
	// x509.Verify accepts a chain if ANY of the requested usages is allowed; we need
	// all of them (etcd peers use one certificate as server and client).
	for _, u := range usages {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
			return err
		}
	}
	return nil
}

// subjectString renders CN and O for messages.
func subjectString(n pkix.Name) string {
	s := "CN=" + n.CommonName
	for _, o := range n.Organization {
		s += ",O=" + o
	}
	return s
}
