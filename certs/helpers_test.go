package certs

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// seedSpec is the seed topology: master01 is the control plane and one of three
// etcd members.
func seedSpec(alg KeyAlgorithm) Spec {
	return Spec{
		ClusterName:          "kubeforge",
		NodeName:             "master01",
		AdvertiseAddress:     "192.168.161.151",
		ControlPlaneEndpoint: "k8s-api.kubeforge.test:6443",
		ServiceCIDR:          "10.96.0.0/12",
		DNSDomain:            "cluster.local",
		ExtraAPIServerSANs:   []string{"api.example.com", "10.0.0.100"},
		KeyAlgorithm:         alg,
		EtcdHosts: []Host{
			{Name: "master01", Address: "192.168.161.151"},
			{Name: "node01", Address: "192.168.161.152"},
			{Name: "node02", Address: "192.168.161.153"},
		},
		ControlPlaneHosts: []Host{{Name: "master01", Address: "192.168.161.151"}},
	}
}

// fixedNow is a whole second, as x509 times are.
func fixedNow() time.Time { return time.Now().UTC().Truncate(time.Second) }

type testPKI struct {
	*PKI
	root string
	out  *bytes.Buffer
}

func newTestPKI(t testing.TB, spec Spec, now time.Time) *testPKI {
	t.Helper()
	root := t.TempDir()
	out := &bytes.Buffer{}
	return &testPKI{
		PKI: &PKI{
			Spec: spec, CertDir: filepath.Join(root, "pki"), KubeconfigDir: root,
			Out: out, Now: func() time.Time { return now },
		},
		root: root, out: out,
	}
}

// fileState is what a snapshot remembers of one path.
type fileState struct {
	mode fs.FileMode
	sum  string
}

// snapshot records every file and directory below root with its mode and content
// hash, to prove that a failed run wrote nothing.
func snapshot(t testing.TB, root string) map[string]fileState {
	t.Helper()
	out := map[string]fileState{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fileState{mode: fi.Mode()}
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s := sha256.Sum256(b)
			st.sum = hex.EncodeToString(s[:])
		}
		rel, _ := filepath.Rel(root, p)
		out[rel] = st
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func diffSnapshots(a, b map[string]fileState) []string {
	var d []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			d = append(d, "removed "+k)
		} else if v != w {
			d = append(d, "changed "+k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			d = append(d, "added "+k)
		}
	}
	slices.Sort(d)
	return d
}

func assertUnchanged(t testing.TB, before map[string]fileState, root string) {
	t.Helper()
	if d := diffSnapshots(before, snapshot(t, root)); len(d) > 0 {
		t.Fatalf("a failed run changed the directory: %v", d)
	}
}

func mustReadCert(t testing.TB, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseCertPEM(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

// opensslVerify runs `openssl verify` with the given purpose ("sslserver",
// "sslclient") and fails the test unless it prints OK.
func opensslVerify(t testing.TB, caFile, certFile, purpose string) {
	t.Helper()
	if _, err := os.Stat("/usr/bin/openssl"); err != nil {
		t.Skip("openssl not installed at /usr/bin/openssl")
	}
	out, err := exec.Command("/usr/bin/openssl", "verify", "-x509_strict", "-purpose", purpose, "-CAfile", caFile, certFile).CombinedOutput()
	if err != nil || !strings.Contains(string(out), ": OK") {
		t.Fatalf("openssl verify -purpose %s -CAfile %s %s: %v\n%s", purpose, caFile, certFile, err, out)
	}
}

// opensslRejects runs `openssl verify` and fails the test if it accepts.
func opensslRejects(t testing.TB, caFile, certFile, purpose string) {
	t.Helper()
	out, err := exec.Command("/usr/bin/openssl", "verify", "-purpose", purpose, "-CAfile", caFile, certFile).CombinedOutput()
	if err == nil {
		t.Fatalf("openssl verify accepted %s against %s for %s:\n%s", certFile, caFile, purpose, out)
	}
}

func ipStrings(ips []net.IP) []string {
	var out []string
	for _, ip := range ips {
		out = append(out, ip.String())
	}
	slices.Sort(out)
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
