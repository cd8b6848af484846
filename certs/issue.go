package certs

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/cloudflare/cfssl/config"
	"github.com/cloudflare/cfssl/csr"
	"github.com/cloudflare/cfssl/signer"
	"github.com/cloudflare/cfssl/signer/local"
)

// LeafSpec describes one end-entity certificate.
type LeafSpec struct {
	// Subject of the certificate. Kubernetes reads CN as the user name and O as
	// the groups of a client certificate.
	Subject     pkix.Name
	DNSNames    []string
	IPAddresses []net.IP
	// Usages are the extended key usages (server auth, client auth).
	Usages []x509.ExtKeyUsage
	// KeyAlgorithm of the new key; ignored when Key is set.
	KeyAlgorithm KeyAlgorithm
	// Key, when set, is used instead of generating a new key.
	Key crypto.Signer
	// Validity is counted from Now (not from the back-dated NotBefore).
	Validity time.Duration
	// Now is the issuing time; zero means time.Now().
	Now time.Time
}

// hosts is the SAN list in cfssl's terms (IPs and DNS names in one list).
func (l LeafSpec) hosts() []string {
	var h []string
	h = append(h, l.DNSNames...)
	for _, ip := range l.IPAddresses {
		h = append(h, ip.String())
	}
	return h
}

// Issue signs a new certificate for leaf with ca and returns the certificate and
// private key as PEM. The certificate is valid from Now-Backdate to Now+Validity,
// cut at the CA's own NotAfter: a chain is only as valid as its CA, and a leaf
// claiming more would only hide when the real expiry comes.
func Issue(ca *CA, leaf LeafSpec) (certPEM, keyPEM []byte, err error) {
	if !ca.CanSign() {
		return nil, nil, fmt.Errorf("CA %q has no private key; it cannot sign %q", ca.Cert.Subject.CommonName, leaf.Subject.CommonName)
	}
	if leaf.Subject.CommonName == "" {
		return nil, nil, errors.New("leaf certificate without a common name")
	}
	if len(leaf.Usages) == 0 {
		return nil, nil, fmt.Errorf("leaf %q: no extended key usage", leaf.Subject.CommonName)
	}
	if leaf.Validity <= 0 {
		return nil, nil, fmt.Errorf("leaf %q: validity must be positive", leaf.Subject.CommonName)
	}
	now := leaf.Now
	if now.IsZero() {
		now = time.Now()
	}
	notBefore := now.Add(-Backdate).UTC()
	notAfter := now.Add(leaf.Validity).UTC()
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	if !notAfter.After(now) {
		return nil, nil, fmt.Errorf("CA %q expired at %s; it cannot issue %q", ca.Cert.Subject.CommonName, ca.Cert.NotAfter.Format(time.RFC3339), leaf.Subject.CommonName)
	}

	key := leaf.Key
	if key == nil {
		if key, err = GenerateKey(leaf.KeyAlgorithm); err != nil {
			return nil, nil, err
		}
	}
	csrPEM, err := csr.Generate(key, &csr.CertificateRequest{CN: leaf.Subject.CommonName, Names: csrNames(leaf.Subject), Hosts: leaf.hosts()})
	if err != nil {
		return nil, nil, fmt.Errorf("leaf %q: creating CSR: %w", leaf.Subject.CommonName, err)
	}

	usage := []string{"digital signature"}
	if isRSAKey(key) {
		// keyEncipherment only means something for RSA key transport; RFC 5480
		// forbids it on ECDSA keys, so it is set for RSA keys only.
		usage = append(usage, "key encipherment")
	}
	for _, u := range leaf.Usages {
		name, ok := extUsageName[u]
		if !ok {
			return nil, nil, fmt.Errorf("leaf %q: unsupported extended key usage %v", leaf.Subject.CommonName, u)
		}
		usage = append(usage, name)
	}
	policy := &config.Signing{
		Profiles: map[string]*config.SigningProfile{},
		Default:  &config.SigningProfile{Usage: usage, Expiry: leaf.Validity},
	}
	s, err := local.NewSigner(ca.Key, ca.Cert, signer.DefaultSigAlgo(ca.Key), policy)
	if err != nil {
		return nil, nil, fmt.Errorf("leaf %q: %w", leaf.Subject.CommonName, err)
	}
	// Hosts is passed explicitly (even when empty) so the SANs are exactly ours and
	// never whatever a CSR happened to carry.
	hosts := leaf.hosts()
	if hosts == nil {
		hosts = []string{}
	}
	certPEM, err = s.Sign(signer.SignRequest{
		Request:   string(csrPEM),
		Hosts:     hosts,
		NotBefore: notBefore,
		NotAfter:  notAfter,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("leaf %q: signing: %w", leaf.Subject.CommonName, err)
	}
	keyPEM, err = MarshalKeyPEM(key)
	if err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}

func isRSAKey(k crypto.Signer) bool {
	alg, err := AlgorithmOf(k.Public())
	return err == nil && alg.IsRSA()
}

var extUsageName = map[x509.ExtKeyUsage]string{
	x509.ExtKeyUsageServerAuth: "server auth",
	x509.ExtKeyUsageClientAuth: "client auth",
}

// csrNames spreads a pkix.Name over cfssl's Names list; cfssl appends each entry's
// attributes in order, so one attribute per entry reproduces the subject.
func csrNames(n pkix.Name) []csr.Name {
	var out []csr.Name
	for _, v := range n.Country {
		out = append(out, csr.Name{C: v})
	}
	for _, v := range n.Province {
		out = append(out, csr.Name{ST: v})
	}
	for _, v := range n.Locality {
		out = append(out, csr.Name{L: v})
	}
	for _, v := range n.Organization {
		out = append(out, csr.Name{O: v})
	}
	for _, v := range n.OrganizationalUnit {
		out = append(out, csr.Name{OU: v})
	}
	return out
}
