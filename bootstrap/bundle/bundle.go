// Package bundle reads and verifies a kubeforge bundle: the directory (or .tar.gz of
// it) that carries everything a node installs — upstream binaries today, container
// runtime, CNI plugins and images later — with a manifest of each file's version and
// sha256.
//
// A host never downloads anything while kubeforge runs; it installs from a bundle.
// So the bundle is the trust boundary: every file is checked against the manifest
// before it is used, and a file that does not match is refused by name.
package bundle

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// ManifestName is the manifest's file name at the bundle's root.
const ManifestName = "manifest.json"

// DefaultPath is where kubeforge looks for a bundle when none is given: lab hosts see
// the machine's bundle there, and an operator unpacks one there on a real host.
const DefaultPath = "/opt/kubeforge/bundle"

// Manifest lists a bundle's content.
type Manifest struct {
	APIVersion        string `json:"apiVersion"`
	Kind              string `json:"kind"`
	KubernetesVersion string `json:"kubernetesVersion"`
	EtcdVersion       string `json:"etcdVersion"`
	Files             []File `json:"files"`
}

// File is one entry of the manifest.
type File struct {
	// Path is relative to the bundle root, slash-separated (bin/etcd).
	Path    string `json:"path"`
	Version string `json:"version"`
	SHA256  string `json:"sha256"`
	Size    int64  `json:"size"`
	Mode    string `json:"mode"` // octal, e.g. "0755"
}

const (
	manifestAPIVersion = "kubeforge.io/v1alpha1"
	manifestKind       = "Bundle"
)

// Bundle is an opened bundle directory.
type Bundle struct {
	Dir      string
	Manifest Manifest
}

// Open reads the manifest of the bundle at path without verifying file contents.
// path may be the bundle directory or a .tar.gz of it; a tarball is unpacked into
// unpackDir first (see Unpack).
func Open(path string) (*Bundle, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", path, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("bundle %s: not a directory (unpack a bundle tarball with Unpack first)", path)
	}
	mpath := filepath.Join(path, ManifestName)
	data, err := os.ReadFile(mpath)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", path, err)
	}
	var m Manifest
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("bundle manifest %s: %w", mpath, err)
	}
	if m.APIVersion != manifestAPIVersion || m.Kind != manifestKind {
		return nil, fmt.Errorf("bundle manifest %s: apiVersion/kind %q/%q, want %q/%q", mpath, m.APIVersion, m.Kind, manifestAPIVersion, manifestKind)
	}
	seen := map[string]bool{}
	for i, f := range m.Files {
		if f.Path == "" || strings.HasPrefix(f.Path, "/") || strings.Contains("/"+f.Path+"/", "/../") {
			return nil, fmt.Errorf("bundle manifest %s: files[%d].path %q must be a relative path inside the bundle", mpath, i, f.Path)
		}
		if seen[f.Path] {
			return nil, fmt.Errorf("bundle manifest %s: files[%d].path %q is listed twice", mpath, i, f.Path)
		}
		seen[f.Path] = true
		if len(f.SHA256) != 64 {
			return nil, fmt.Errorf("bundle manifest %s: files[%d] (%s): sha256 %q is not a sha256 hex digest", mpath, i, f.Path, f.SHA256)
		}
	}
	return &Bundle{Dir: path, Manifest: m}, nil
}

// Lookup returns the manifest entry for a relative path such as "bin/etcd".
func (b *Bundle) Lookup(rel string) (File, bool) {
	for _, f := range b.Manifest.Files {
		if f.Path == rel {
			return f, true
		}
	}
	return File{}, false
}

// Path returns the absolute path of a bundle file.
func (b *Bundle) Path(rel string) string { return filepath.Join(b.Dir, filepath.FromSlash(rel)) }

// MismatchError names the bundle file that does not match its manifest.
type MismatchError struct {
	Bundle string
	Path   string
	Reason string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("bundle %s: %s does not match the manifest: %s", e.Bundle, e.Path, e.Reason)
}

// Verify checks every listed file (present, size, sha256) and that bin/ holds no file
// the manifest does not list. It returns the first mismatch as a *MismatchError.
func (b *Bundle) Verify() error {
	for _, f := range b.Manifest.Files {
		if err := b.VerifyFile(f.Path); err != nil {
			return err
		}
	}
	// An unlisted file is as suspicious as a changed one, wherever it sits:
	// bin/, cni/bin/ and images/ are all installed onto hosts. Dot files are the
	// build script's version stamps.
	err := filepath.WalkDir(b.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(b.Dir, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() || rel == ManifestName || strings.HasPrefix(d.Name(), ".") {
			return nil
		}
		if _, ok := b.Lookup(rel); !ok {
			return &MismatchError{Bundle: b.Dir, Path: rel, Reason: "not listed in the manifest"}
		}
		return nil
	})
	var me *MismatchError
	if errors.As(err, &me) {
		return me
	}
	if err != nil {
		return fmt.Errorf("bundle %s: %w", b.Dir, err)
	}
	return nil
}

// VerifyFile checks one listed file against the manifest.
func (b *Bundle) VerifyFile(rel string) error {
	f, ok := b.Lookup(rel)
	if !ok {
		return &MismatchError{Bundle: b.Dir, Path: rel, Reason: "not listed in the manifest"}
	}
	p := b.Path(rel)
	fi, err := os.Stat(p)
	if err != nil {
		return &MismatchError{Bundle: b.Dir, Path: rel, Reason: "missing: " + err.Error()}
	}
	if fi.Size() != f.Size {
		return &MismatchError{Bundle: b.Dir, Path: rel, Reason: fmt.Sprintf("size %d, manifest says %d", fi.Size(), f.Size)}
	}
	sum, err := FileSHA256(p)
	if err != nil {
		return fmt.Errorf("bundle %s: %s: %w", b.Dir, rel, err)
	}
	if sum != f.SHA256 {
		return &MismatchError{Bundle: b.Dir, Path: rel, Reason: fmt.Sprintf("sha256 %s, manifest says %s", sum, f.SHA256)}
	}
	return nil
}

// FileSHA256 returns the hex sha256 of a file.
func FileSHA256(path string) (string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	h := sha256.New()
	if _, err := io.Copy(h, fh); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// WriteManifest hashes the given files under dir and writes dir/manifest.json.
// versions maps a relative path to the version it was built from.
func WriteManifest(dir, k8sVersion, etcdVersion string, versions map[string]string) (*Manifest, error) {
	m := &Manifest{APIVersion: manifestAPIVersion, Kind: manifestKind, KubernetesVersion: k8sVersion, EtcdVersion: etcdVersion}
	paths := make([]string, 0, len(versions))
	for p := range versions {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, rel := range paths {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("bundle %s: %w", dir, err)
		}
		sum, err := FileSHA256(p)
		if err != nil {
			return nil, fmt.Errorf("bundle %s: %w", dir, err)
		}
		m.Files = append(m.Files, File{Path: rel, Version: versions[rel], SHA256: sum, Size: fi.Size(), Mode: fmt.Sprintf("%04o", fi.Mode().Perm())})
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	data = append(data, '\n')
	final := filepath.Join(dir, ManifestName)
	if old, err := os.ReadFile(final); err == nil && string(old) == string(data) {
		return m, nil // unchanged: keep the mtime, so the tarball built from it stays current
	}
	tmp := filepath.Join(dir, "."+ManifestName+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return nil, err
	}
	return m, os.Rename(tmp, final)
}
