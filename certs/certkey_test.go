package certs

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestCertificateKeyRoundTrip(t *testing.T) {
	key, err := NewCertificateKey()
	if err != nil {
		t.Fatal(err)
	}
	if len(key) != 64 || strings.Trim(key, "0123456789abcdef") != "" {
		t.Fatalf("certificate key %q is not 64 lowercase hex characters", key)
	}
	other, _ := NewCertificateKey()
	if other == key {
		t.Fatal("two certificate keys are equal")
	}
	files := map[string][]byte{"ca.key": []byte("secret ca key"), "etcd/ca.key": []byte("etcd key"), "empty": {}}
	enc, err := EncryptBundle(key, files)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(enc, []byte("secret ca key")) || bytes.Contains(enc, []byte("ca.key")) {
		t.Fatal("bundle contains plaintext")
	}
	// Same input, fresh nonce: two encryptions differ.
	enc2, _ := EncryptBundle(key, files)
	if bytes.Equal(enc, enc2) {
		t.Fatal("two encryptions of the same bundle are identical (nonce reuse)")
	}
	got, err := DecryptBundle(key, enc)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(files) {
		t.Fatalf("got %d files, want %d", len(got), len(files))
	}
	for k, v := range files {
		if !bytes.Equal(got[k], v) {
			t.Errorf("%s: got %q, want %q", k, got[k], v)
		}
	}

	if _, err := DecryptBundle(other, enc); !errors.Is(err, ErrWrongCertificateKey) {
		t.Errorf("wrong key: got %v, want ErrWrongCertificateKey", err)
	}
	tampered := bytes.Clone(enc)
	tampered[len(tampered)-1] ^= 1
	if _, err := DecryptBundle(key, tampered); !errors.Is(err, ErrCorruptBundle) {
		t.Errorf("tampered bundle: got %v, want ErrCorruptBundle", err)
	}
	if _, err := DecryptBundle(key, enc[:20]); !errors.Is(err, ErrCorruptBundle) {
		t.Errorf("truncated bundle: got %v, want ErrCorruptBundle", err)
	}
	for _, bad := range []string{"", "abc", strings.Repeat("zz", 32), key[:62]} {
		_, err := DecryptBundle(bad, enc)
		if err == nil || errors.Is(err, ErrWrongCertificateKey) || !strings.Contains(err.Error(), "64 hex characters") {
			t.Errorf("malformed key %q: got %v", bad, err)
		}
		if bad != "" && strings.Contains(err.Error(), bad) {
			t.Errorf("error echoes the key: %v", err)
		}
	}
}
