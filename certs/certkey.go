package certs

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
)

// CertificateKeySize is the size of a certificate key in bytes: an AES-256 key.
const CertificateKeySize = 32

// Errors of the encrypted hand-over.
var (
	// ErrWrongCertificateKey means the bundle was encrypted with another key.
	ErrWrongCertificateKey = errors.New("the certificate key does not match the one the bundle was encrypted with")
	// ErrCorruptBundle means the key is right but the bundle was altered or truncated.
	ErrCorruptBundle = errors.New("encrypted certificate bundle is corrupt or was tampered with")
)

// bundleMagic starts every bundle; it is also the AEAD's additional data, binding
// the format version to the ciphertext.
var bundleMagic = []byte("KFCB1")

// keyIDSize is the length of the key fingerprint stored in the bundle header.
const keyIDSize = 8

// NewCertificateKey returns a random AES-256 key, hex encoded (64 characters): the
// shape of kubeadm's --certificate-key, so it can be passed the same way.
func NewCertificateKey() (string, error) {
	k := make([]byte, CertificateKeySize)
	if _, err := rand.Read(k); err != nil {
		return "", fmt.Errorf("reading random bytes: %w", err)
	}
	return hex.EncodeToString(k), nil
}

func decodeCertificateKey(key string) ([]byte, error) {
	k, err := hex.DecodeString(key)
	if err != nil || len(k) != CertificateKeySize {
		// Never echo the key itself.
		return nil, fmt.Errorf("certificate key must be %d hex characters (%d random bytes)", 2*CertificateKeySize, CertificateKeySize)
	}
	return k, nil
}

// keyID is a fingerprint of the key, so a wrong key is told apart from a damaged
// bundle. A SHA-256 prefix of a 256-bit random key reveals nothing usable.
func keyID(k []byte) []byte {
	sum := sha256.Sum256(append([]byte("kubeforge certificate key id\x00"), k...))
	return sum[:keyIDSize]
}

// EncryptBundle encrypts files (name -> content, e.g. "ca.key") with AES-256-GCM
// under key. Layout: magic | key id | 12-byte random nonce | ciphertext+tag.
func EncryptBundle(key string, files map[string][]byte) ([]byte, error) {
	k, err := decodeCertificateKey(key)
	if err != nil {
		return nil, err
	}
	plain, err := json.Marshal(files)
	if err != nil {
		return nil, err
	}
	aead, err := newGCM(k)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out := bytes.Clone(bundleMagic)
	out = append(out, keyID(k)...)
	out = append(out, nonce...)
	return aead.Seal(out, nonce, plain, bundleMagic), nil
}

// DecryptBundle reverses EncryptBundle. A bundle encrypted with another key gives
// ErrWrongCertificateKey; a damaged one ErrCorruptBundle.
func DecryptBundle(key string, data []byte) (map[string][]byte, error) {
	k, err := decodeCertificateKey(key)
	if err != nil {
		return nil, err
	}
	aead, err := newGCM(k)
	if err != nil {
		return nil, err
	}
	hdr := len(bundleMagic) + keyIDSize + aead.NonceSize()
	if len(data) < hdr+aead.Overhead() || !bytes.Equal(data[:len(bundleMagic)], bundleMagic) {
		return nil, fmt.Errorf("%w: not a kubeforge certificate bundle", ErrCorruptBundle)
	}
	id := data[len(bundleMagic) : len(bundleMagic)+keyIDSize]
	if subtle.ConstantTimeCompare(id, keyID(k)) != 1 {
		return nil, ErrWrongCertificateKey
	}
	nonce := data[len(bundleMagic)+keyIDSize : hdr]
	plain, err := aead.Open(nil, nonce, data[hdr:], bundleMagic)
	if err != nil {
		return nil, ErrCorruptBundle
	}
	var files map[string][]byte
	if err := json.Unmarshal(plain, &files); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorruptBundle, err)
	}
	return files, nil
}

func newGCM(k []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
