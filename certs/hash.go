package certs

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
)

// CAHash is kubeadm's public-key pin of a CA ("--discovery-token-ca-cert-hash"):
// "sha256:" and the hex SHA-256 of the certificate's DER SubjectPublicKeyInfo. It
// pins the key, not the certificate, so it survives re-issuing the CA certificate
// with the same key.
func CAHash(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:])
}
