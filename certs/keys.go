package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/cloudflare/cfssl/csr"
	"github.com/cloudflare/cfssl/helpers"
)

// KeyAlgorithm names the algorithm and size of a private key.
type KeyAlgorithm string

// The supported key algorithms. RSA-2048 is the default because it is what kubeadm
// issues and what every client (including old ones on CentOS 7) accepts.
const (
	RSA2048   KeyAlgorithm = "rsa-2048"
	RSA3072   KeyAlgorithm = "rsa-3072"
	RSA4096   KeyAlgorithm = "rsa-4096"
	ECDSAP256 KeyAlgorithm = "ecdsa-p256"
)

// KeyAlgorithms lists the supported algorithms.
var KeyAlgorithms = []KeyAlgorithm{RSA2048, RSA3072, RSA4096, ECDSAP256}

// keyRequest translates the algorithm into cfssl's terms.
func (k KeyAlgorithm) keyRequest() (*csr.KeyRequest, error) {
	switch k {
	case RSA2048:
		return &csr.KeyRequest{A: "rsa", S: 2048}, nil
	case RSA3072:
		return &csr.KeyRequest{A: "rsa", S: 3072}, nil
	case RSA4096:
		return &csr.KeyRequest{A: "rsa", S: 4096}, nil
	case ECDSAP256:
		return &csr.KeyRequest{A: "ecdsa", S: 256}, nil
	}
	return nil, fmt.Errorf("unsupported key algorithm %q (supported: %v)", string(k), KeyAlgorithms)
}

// IsRSA reports whether keys of this algorithm are RSA keys.
func (k KeyAlgorithm) IsRSA() bool { return k == RSA2048 || k == RSA3072 || k == RSA4096 }

// AlgorithmOf reports the KeyAlgorithm of an existing public key, so renewal can
// create a new key of the same kind as the one it replaces.
func AlgorithmOf(pub crypto.PublicKey) (KeyAlgorithm, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		switch k.N.BitLen() {
		case 2048:
			return RSA2048, nil
		case 3072:
			return RSA3072, nil
		case 4096:
			return RSA4096, nil
		}
		return "", fmt.Errorf("unsupported RSA key size %d", k.N.BitLen())
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			return ECDSAP256, nil
		}
		return "", fmt.Errorf("unsupported ECDSA curve %s", k.Curve.Params().Name)
	}
	return "", fmt.Errorf("unsupported public key type %T", pub)
}

// GenerateKey creates a private key with cfssl's key generator.
func GenerateKey(alg KeyAlgorithm) (crypto.Signer, error) {
	kr, err := alg.keyRequest()
	if err != nil {
		return nil, err
	}
	k, err := kr.Generate()
	if err != nil {
		return nil, fmt.Errorf("generating %s key: %w", alg, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("generating %s key: %T is not a signer", alg, k)
	}
	return s, nil
}

// MarshalKeyPEM encodes a private key the way kubeadm (client-go's keyutil) does:
// PKCS#1 "RSA PRIVATE KEY" for RSA and SEC 1 "EC PRIVATE KEY" for ECDSA. Keeping the
// same encoding means files written by kubeforge and by kubeadm are interchangeable.
func MarshalKeyPEM(key crypto.Signer) ([]byte, error) {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}), nil
	case *ecdsa.PrivateKey:
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			return nil, err
		}
		return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
	}
	return nil, fmt.Errorf("unsupported private key type %T", key)
}

// ParseKeyPEM parses a PEM private key (PKCS#1, SEC 1 or PKCS#8). The error never
// contains key material.
func ParseKeyPEM(data []byte) (crypto.Signer, error) {
	if len(data) == 0 {
		return nil, errors.New("empty file, expected a PEM private key")
	}
	k, err := helpers.ParsePrivateKeyPEM(data)
	if err != nil {
		// cfssl's error wraps a generic "failed to parse" — say what was expected.
		return nil, errors.New("not a valid PEM-encoded RSA or ECDSA private key")
	}
	return k, nil
}

// MarshalPublicKeyPEM encodes a public key as PKIX "PUBLIC KEY", the format
// kube-apiserver's --service-account-key-file expects.
func MarshalPublicKeyPEM(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParseCertPEM parses the first certificate of a PEM file.
func ParseCertPEM(data []byte) (*x509.Certificate, error) {
	if len(data) == 0 {
		return nil, errors.New("empty file, expected a PEM certificate")
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("not a PEM-encoded certificate")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("not a valid certificate: %w", err)
	}
	return c, nil
}

// EncodeCertPEM encodes a certificate as PEM.
func EncodeCertPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// publicKeysEqual reports whether a and b are the same public key.
func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	ea, ok := a.(equaler)
	return ok && ea.Equal(b)
}

// parsePublicKeyPEM parses a PKIX "PUBLIC KEY" PEM block.
func parsePublicKeyPEM(data []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, errors.New("not a PEM-encoded public key")
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("not a valid public key: %w", err)
	}
	return pub, nil
}
