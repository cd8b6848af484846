package bundle

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func makeBundle(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bundle")
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"etcd": "etcd binary", "kubelet": "kubelet binary"} {
		if err := os.WriteFile(filepath.Join(dir, "bin", name), []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := WriteManifest(dir, "v1.34.4", "v3.6.16", map[string]string{"bin/etcd": "v3.6.16", "bin/kubelet": "v1.34.4"}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func flipByte(t *testing.T, path string, at int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, at); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
}

func wantMismatch(t *testing.T, err error, path, reason string) {
	t.Helper()
	var me *MismatchError
	if !errors.As(err, &me) {
		t.Fatalf("want a *MismatchError for %s, got %v", path, err)
	}
	if me.Path != path || !strings.Contains(err.Error(), path) || !strings.Contains(me.Reason, reason) {
		t.Fatalf("error %q: want it to name %s (%s)", err, path, reason)
	}
}

func TestVerify(t *testing.T) {
	dir := makeBundle(t)
	b, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Verify(); err != nil {
		t.Fatalf("intact bundle: %v", err)
	}
	if f, ok := b.Lookup("bin/kubelet"); !ok || f.Version != "v1.34.4" || f.Mode != "0755" {
		t.Fatalf("manifest entry: %+v %v", f, ok)
	}

	flipByte(t, filepath.Join(dir, "bin/kubelet"), 3)
	wantMismatch(t, b.Verify(), "bin/kubelet", "sha256")
	flipByte(t, filepath.Join(dir, "bin/kubelet"), 3)

	if err := os.WriteFile(filepath.Join(dir, "bin/etcd"), []byte("etcd binary!"), 0o755); err != nil {
		t.Fatal(err)
	}
	wantMismatch(t, b.Verify(), "bin/etcd", "size")
	if err := os.WriteFile(filepath.Join(dir, "bin/etcd"), []byte("etcd binary"), 0o755); err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(filepath.Join(dir, "bin/kubeadm"), []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	wantMismatch(t, b.Verify(), "bin/kubeadm", "not listed")
	os.Remove(filepath.Join(dir, "bin/kubeadm"))
	os.MkdirAll(filepath.Join(dir, "cni/bin"), 0o755)
	os.WriteFile(filepath.Join(dir, "cni/bin/evil"), []byte("x"), 0o755)
	wantMismatch(t, b.Verify(), "cni/bin/evil", "not listed")
	os.Remove(filepath.Join(dir, "cni/bin/evil"))
	os.WriteFile(filepath.Join(dir, "bin/.etcd.version"), []byte("v3.6.16"), 0o644)
	if err := b.Verify(); err != nil {
		t.Fatalf("a build stamp must not count as an unlisted file: %v", err)
	}

	os.Remove(filepath.Join(dir, "bin/etcd"))
	wantMismatch(t, b.Verify(), "bin/etcd", "missing")
}

func TestOpenRejectsBadManifests(t *testing.T) {
	cases := map[string]string{
		"unknown field": `{"apiVersion":"kubeforge.io/v1alpha1","kind":"Bundle","files":[],"extra":1}`,
		"wrong kind":    `{"apiVersion":"kubeforge.io/v1alpha1","kind":"Cluster","files":[]}`,
		"escaping path": `{"apiVersion":"kubeforge.io/v1alpha1","kind":"Bundle","files":[{"path":"../etc/passwd","sha256":"` + strings.Repeat("0", 64) + `"}]}`,
		"bad digest":    `{"apiVersion":"kubeforge.io/v1alpha1","kind":"Bundle","files":[{"path":"bin/x","sha256":"abc"}]}`,
		"not json":      `nope`,
	}
	for name, m := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, ManifestName), []byte(m), 0o644)
			_, err := Open(dir)
			if err == nil || !strings.Contains(err.Error(), ManifestName) {
				t.Fatalf("want an error naming the manifest, got %v", err)
			}
		})
	}
}

func TestUnpack(t *testing.T) {
	dir := makeBundle(t)
	tgz := filepath.Join(t.TempDir(), "b.tar.gz")
	writeTarGz(t, tgz, filepath.Dir(dir), "bundle", nil)
	b, err := Resolve(tgz, t.TempDir())
	if err != nil {
		t.Fatalf("unpack: %v", err)
	}
	if _, ok := b.Lookup("bin/etcd"); !ok {
		t.Fatal("unpacked bundle lacks bin/etcd")
	}

	evil := filepath.Join(t.TempDir(), "evil.tar.gz")
	writeTarGz(t, evil, filepath.Dir(dir), "bundle", &tar.Header{Name: "bundle/../../escape", Mode: 0o644, Typeflag: tar.TypeReg})
	if _, err := Unpack(evil, t.TempDir()); err == nil || !strings.Contains(err.Error(), "escape") {
		t.Fatalf("a tarball entry escaping the bundle must be refused, got %v", err)
	}
}

func writeTarGz(t *testing.T, out, base, top string, extra *tar.Header) {
	t.Helper()
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	err = filepath.Walk(filepath.Join(base, top), func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(base, p)
		hdr, _ := tar.FileInfoHeader(fi, "")
		hdr.Name = rel
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			data, _ := os.ReadFile(p)
			_, err = tw.Write(data)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if extra != nil {
		tw.WriteHeader(extra)
	}
	tw.Close()
	zw.Close()
}

// realBundle is the bundle hack/build-bundle.sh built, when present.
func realBundle(t *testing.T) *Bundle {
	t.Helper()
	dir := os.Getenv("KUBEFORGE_BUNDLE")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache/kubeforge/bundles/v1.34.4-v3.6.16")
	}
	if _, err := os.Stat(filepath.Join(dir, ManifestName)); err != nil {
		t.Skipf("no built bundle at %s (run hack/build-bundle.sh)", dir)
	}
	b, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRealBundle checks the built upstream bundle: intact, complete, every binary
// static (so it starts on CentOS 7's glibc 2.17) — and that one flipped byte in a
// copy of one of its binaries is refused by name.
func TestRealBundle(t *testing.T) {
	b := realBundle(t)
	if err := b.Verify(); err != nil {
		t.Fatalf("built bundle: %v", err)
	}
	for _, name := range []string{"etcd", "etcdctl", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl"} {
		f, ok := b.Lookup("bin/" + name)
		if !ok {
			t.Errorf("bundle lacks bin/%s", name)
			continue
		}
		want := b.Manifest.KubernetesVersion
		if strings.HasPrefix(name, "etcd") {
			want = b.Manifest.EtcdVersion
		}
		if f.Version != want {
			t.Errorf("bin/%s: version %s, want %s", name, f.Version, want)
		}
		static, err := IsStatic(b.Path(f.Path))
		if err != nil || !static {
			t.Errorf("bin/%s is not statically linked (%v)", name, err)
		}
	}

	// The container runtime, CNI plugins and images that nodes install: present,
	// every executable static, versions consistent within each component.
	runtime := map[string][]string{
		"containerd": {"bin/containerd", "bin/containerd-shim-runc-v2"},
		"runc":       {"bin/runc"},
		"cni":        {"cni/bin/bridge", "cni/bin/host-local", "cni/bin/loopback", "cni/bin/portmap"},
	}
	for component, paths := range runtime {
		version := ""
		for _, p := range paths {
			f, ok := b.Lookup(p)
			if !ok {
				t.Errorf("bundle lacks %s (%s)", p, component)
				continue
			}
			if version == "" {
				version = f.Version
			} else if f.Version != version {
				t.Errorf("%s: version %s, but %s is %s", p, f.Version, paths[0], version)
			}
			if static, err := IsStatic(b.Path(p)); err != nil || !static {
				t.Errorf("%s is not statically linked (%v)", p, err)
			}
			if f.Mode != "0755" {
				t.Errorf("%s: mode %s, want 0755", p, f.Mode)
			}
		}
	}
	for _, p := range []string{"images/pause.tar", "images/httpecho.tar"} {
		if f, ok := b.Lookup(p); !ok || f.Size < 1024 || f.Version == "" {
			t.Errorf("bundle image %s: %+v (listed %v)", p, f, ok)
		}
	}

	// A copy of the bundle: links to every file but one real copy of etcdctl.
	cp := filepath.Join(t.TempDir(), "bundle")
	os.MkdirAll(filepath.Join(cp, "bin"), 0o755)
	data, _ := os.ReadFile(filepath.Join(b.Dir, ManifestName))
	os.WriteFile(filepath.Join(cp, ManifestName), data, 0o644)
	for _, f := range b.Manifest.Files {
		if f.Path == "bin/etcdctl" {
			bin, err := os.ReadFile(b.Path(f.Path))
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(cp, f.Path), bin, 0o755)
			continue
		}
		os.MkdirAll(filepath.Dir(filepath.Join(cp, f.Path)), 0o755)
		os.Symlink(b.Path(f.Path), filepath.Join(cp, f.Path))
	}
	cb, err := Open(cp)
	if err != nil {
		t.Fatal(err)
	}
	if err := cb.Verify(); err != nil {
		t.Fatalf("faithful copy: %v", err)
	}
	flipByte(t, filepath.Join(cp, "bin/etcdctl"), 4096)
	wantMismatch(t, cb.Verify(), "bin/etcdctl", "sha256")
}

// TestRealBundleTarball unpacks the built bundle's .tar.gz and verifies it.
func TestRealBundleTarball(t *testing.T) {
	b := realBundle(t)
	tgz := b.Dir + ".tar.gz"
	if _, err := os.Stat(tgz); err != nil {
		t.Skipf("no tarball %s", tgz)
	}
	u, err := Resolve(tgz, t.TempDir())
	if err != nil {
		t.Fatalf("unpack %s: %v", tgz, err)
	}
	if len(u.Manifest.Files) != len(b.Manifest.Files) {
		t.Fatalf("tarball has %d files, directory %d", len(u.Manifest.Files), len(b.Manifest.Files))
	}
}

func BenchmarkVerifyRealBundle(b *testing.B) {
	dir := os.Getenv("KUBEFORGE_BUNDLE")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache/kubeforge/bundles/v1.34.4-v3.6.16")
	}
	bu, err := Open(dir)
	if err != nil {
		b.Skip(err)
	}
	var size int64
	for _, f := range bu.Manifest.Files {
		size += f.Size
	}
	b.SetBytes(size)
	for i := 0; i < b.N; i++ {
		if err := bu.Verify(); err != nil {
			b.Fatal(err)
		}
	}
}
