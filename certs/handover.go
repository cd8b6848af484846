package certs

import (
	"bytes"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// SharedFiles are the files every control-plane host must hold identically
// (kubeadm's "copy certs" list): the CAs with their keys and the service-account
// key pair. They are what a joining control-plane host receives, encrypted with a
// certificate key; it then issues its own leaf certificates from them.
var SharedFiles = []string{
	"ca.crt", "ca.key",
	"sa.key", "sa.pub",
	"front-proxy-ca.crt", "front-proxy-ca.key",
	"etcd/ca.crt", "etcd/ca.key",
	"kubelet-serving-ca.crt", "kubelet-serving-ca.key",
}

// ReadSharedFiles reads SharedFiles from certDir, keyed by their relative path. Every
// file must exist.
func ReadSharedFiles(fsys FS, certDir string) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, rel := range SharedFiles {
		p := filepath.Join(certDir, filepath.FromSlash(rel))
		data, err := fsys.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", p, err)
		}
		out[rel] = data
	}
	return out, nil
}

// IssueFiles issues the named leaf certificate (for member, when it is an etcd
// member certificate) with ca and returns its files keyed by path relative to the
// cert dir, e.g. "etcd/peer.crt" and "etcd/peer.key". This is how the host holding
// a CA issues certificates for another host.
func IssueFiles(ca *CA, spec Spec, name, member string) (map[string][]byte, error) {
	l, err := LeafSpecFor(spec, name, member)
	if err != nil {
		return nil, err
	}
	d, _ := lookupCert(name)
	certPEM, keyPEM, err := Issue(ca, l)
	if err != nil {
		return nil, fmt.Errorf("%s for %s: %w", name, member, err)
	}
	return map[string][]byte{d.baseName + ".crt": certPEM, d.baseName + ".key": keyPEM}, nil
}

// IssueEtcdMemberFiles issues everything an etcd member needs from the etcd CA:
// etcd/ca.crt, etcd/server.{crt,key} and etcd/peer.{crt,key} for member.
func IssueEtcdMemberFiles(etcdCA *CA, spec Spec, member string) (map[string][]byte, error) {
	out := map[string][]byte{"etcd/ca.crt": etcdCA.CertPEM}
	for _, n := range []string{CertEtcdServer, CertEtcdPeer} {
		files, err := IssueFiles(etcdCA, spec, n, member)
		if err != nil {
			return nil, err
		}
		for k, v := range files {
			out[k] = v
		}
	}
	return out, nil
}

// EtcdMemberHandoverFiles are the files an etcd member host that is not a
// control-plane host receives from the control plane: the etcd CA certificate
// (no key), its own server and peer certificates, the health-check client and
// the overlay agent's client certificate. No CA key, no service-account key, no
// encryption configuration: with etcd authentication on, none of these
// certificates reads a key the member does not need.
var EtcdMemberHandoverFiles = []string{
	"etcd/ca.crt",
	"etcd/server.crt", "etcd/server.key",
	"etcd/peer.crt", "etcd/peer.key",
	"etcd/healthcheck-client.crt", "etcd/healthcheck-client.key",
	"etcd/overlay-client.crt", "etcd/overlay-client.key",
}

// IssueEtcdMemberHandover issues EtcdMemberHandoverFiles for member with etcdCA,
// on the host that holds the CA key, for the names the configuration records
// for member (spec's etcd hosts table), never names the member reports itself.
func IssueEtcdMemberHandover(etcdCA *CA, spec Spec, member string) (map[string][]byte, error) {
	out, err := IssueEtcdMemberFiles(etcdCA, spec, member)
	if err != nil {
		return nil, err
	}
	for _, n := range []string{CertEtcdHealthcheckClient, CertEtcdOverlayClient} {
		files, err := IssueFiles(etcdCA, spec, n, member)
		if err != nil {
			return nil, err
		}
		for k, v := range files {
			out[k] = v
		}
	}
	return out, nil
}

// FileMode is the mode a file of the PKI gets, by its name: keys, the SA public key
// and kubeconfigs 0600, certificates 0644 (see CertMode).
func FileMode(name string) fs.FileMode {
	switch {
	case strings.HasSuffix(name, ".key"):
		return KeyMode
	case strings.HasSuffix(name, ".pub"):
		return PublicKeyMode
	case strings.HasSuffix(name, ".conf"):
		return KubeconfigMode
	}
	return CertMode
}

// WriteFiles writes files (relative path -> content) below dir with FileMode modes.
// A file that already exists with the same content is kept; one with different
// content is an error naming it, and in that case nothing at all is written.
func WriteFiles(fsys FS, dir string, files map[string][]byte) error {
	names := make([]string, 0, len(files))
	for rel := range files {
		clean := path.Clean(rel)
		if rel == "" || path.IsAbs(rel) || clean != rel || clean == ".." || strings.HasPrefix(clean, "../") {
			return fmt.Errorf("refusing file name %q: must be a clean relative path inside %s", rel, dir)
		}
		names = append(names, rel)
	}
	slices.Sort(names)
	var todo []string
	for _, rel := range names {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		old, ok, err := readOptional(fsys, p)
		if err != nil {
			return err
		}
		if !ok {
			todo = append(todo, rel)
			continue
		}
		if !bytes.Equal(old, files[rel]) {
			return fmt.Errorf("%s already exists with different content; not overwriting it", p)
		}
	}
	for _, rel := range todo {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := fsys.WriteFile(p, files[rel], FileMode(rel)); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
	}
	return nil
}
