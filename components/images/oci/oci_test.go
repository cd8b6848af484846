package oci

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func testSpec() ImageSpec {
	return ImageSpec{
		Name:         "kubeforge.local/pause:3.10",
		Files:        []ImageFile{{Path: "/pause", Mode: 0o755, Data: []byte("\x7fELF not really")}, {Path: "/etc/motd", Data: []byte("hi\n")}},
		Entrypoint:   []string{"/pause"},
		User:         "65534:65534",
		ExposedPorts: []string{"8080/tcp"},
	}
}

// readArchive returns the tarball's files by name.
func readArchive(t *testing.T, data []byte) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		out[hdr.Name] = b
	}
}

func blob(t *testing.T, files map[string][]byte, d digest.Digest) []byte {
	t.Helper()
	b, ok := files["blobs/sha256/"+d.Encoded()]
	if !ok {
		t.Fatalf("blob %s missing", d)
	}
	if digest.FromBytes(b) != d {
		t.Fatalf("blob %s has digest %s", d, digest.FromBytes(b))
	}
	return b
}

// TestWriteOCIArchiveIsAValidLayout walks the archive the way an importer does:
// index → manifest → config and layer, every digest checked, and the layer's
// content and the config's diff ID match the files that went in.
func TestWriteOCIArchiveIsAValidLayout(t *testing.T) {
	var buf bytes.Buffer
	md, err := WriteOCIArchive(&buf, testSpec())
	if err != nil {
		t.Fatal(err)
	}
	files := readArchive(t, buf.Bytes())
	if string(files["oci-layout"]) != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout = %s", files["oci-layout"])
	}
	var idx ocispec.Index
	if err := json.Unmarshal(files["index.json"], &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 1 || idx.Manifests[0].Digest != md {
		t.Fatalf("index manifests %+v, want one with digest %s", idx.Manifests, md)
	}
	if a := idx.Manifests[0].Annotations; a[AnnotationImageName] != "kubeforge.local/pause:3.10" || a[ocispec.AnnotationRefName] != "3.10" {
		t.Errorf("annotations %v", a)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(blob(t, files, md), &m); err != nil {
		t.Fatal(err)
	}
	if m.MediaType != ocispec.MediaTypeImageManifest || m.Config.MediaType != ocispec.MediaTypeImageConfig || len(m.Layers) != 1 || m.Layers[0].MediaType != ocispec.MediaTypeImageLayerGzip {
		t.Fatalf("manifest %+v", m)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(blob(t, files, m.Config.Digest), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.OS != "linux" || cfg.Config.Entrypoint[0] != "/pause" || cfg.Config.User != "65534:65534" {
		t.Errorf("config %+v", cfg)
	}
	if _, ok := cfg.Config.ExposedPorts["8080/tcp"]; !ok {
		t.Errorf("exposed ports %v", cfg.Config.ExposedPorts)
	}
	zr, err := gzip.NewReader(bytes.NewReader(blob(t, files, m.Layers[0].Digest)))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(zr)
	if len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != digest.FromBytes(raw) {
		t.Errorf("diff IDs %v, layer tar is %s", cfg.RootFS.DiffIDs, digest.FromBytes(raw))
	}
	layer := map[string]*tar.Header{}
	tr := tar.NewReader(bytes.NewReader(raw))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		layer[hdr.Name] = hdr
		if hdr.Name == "pause" {
			b, _ := io.ReadAll(tr)
			if string(b) != "\x7fELF not really" {
				t.Errorf("pause content %q", b)
			}
		}
	}
	if h := layer["pause"]; h == nil || h.Mode != 0o755 || h.Uid != 0 {
		t.Errorf("pause entry %+v", h)
	}
	if layer["etc/"] == nil || layer["etc/motd"] == nil || layer["etc/motd"].Mode != 0o644 {
		t.Errorf("layer entries %v", layer)
	}
}

// TestWriteOCIArchiveIsReproducible: the bundle's cache and its manifest rely on
// identical inputs giving identical bytes.
func TestWriteOCIArchiveIsReproducible(t *testing.T) {
	var a, b bytes.Buffer
	da, err := WriteOCIArchive(&a, testSpec())
	if err != nil {
		t.Fatal(err)
	}
	spec := testSpec()
	spec.Files[0], spec.Files[1] = spec.Files[1], spec.Files[0] // order must not matter
	db, err := WriteOCIArchive(&b, spec)
	if err != nil {
		t.Fatal(err)
	}
	if da != db || sha256.Sum256(a.Bytes()) != sha256.Sum256(b.Bytes()) {
		t.Errorf("two builds differ: %s vs %s", da, db)
	}
	spec.Files[0].Data = []byte("changed")
	var c bytes.Buffer
	dc, _ := WriteOCIArchive(&c, spec)
	if dc == da {
		t.Error("different content, same manifest digest")
	}
}

func TestImageSpecValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*ImageSpec)
		want string
	}{
		{"no registry", func(s *ImageSpec) { s.Name = "pause:3.10" }, "registry/repository:tag"},
		{"no tag", func(s *ImageSpec) { s.Name = "kubeforge.local/pause" }, "registry/repository:tag"},
		{"upper-case repository", func(s *ImageSpec) { s.Name = "kubeforge.local/Pause:1" }, "lower-case"},
		{"digest instead of tag", func(s *ImageSpec) { s.Name = "kubeforge.local/pause@sha256:00" }, "registry/repository:tag"},
		{"no files", func(s *ImageSpec) { s.Files = nil }, "no files"},
		{"relative path", func(s *ImageSpec) { s.Files[0].Path = "pause" }, "files[0].path"},
		{"path with dot-dot", func(s *ImageSpec) { s.Files[1].Path = "/a/../etc/motd" }, "files[1].path"},
		{"duplicate path", func(s *ImageSpec) { s.Files[1].Path = "/pause" }, "listed twice"},
		{"no entrypoint", func(s *ImageSpec) { s.Entrypoint = nil }, "nothing to run"},
		{"mode beyond permissions", func(s *ImageSpec) { s.Files[0].Mode = 0o100755 }, "beyond permissions"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testSpec()
			tc.mod(&s)
			var buf bytes.Buffer
			_, err := WriteOCIArchive(&buf, s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%+v: error %v, want %q", s, err, tc.want)
			}
		})
	}
}

func TestReadArchiveIndex(t *testing.T) {
	var buf bytes.Buffer
	md, err := WriteOCIArchive(&buf, testSpec())
	if err != nil {
		t.Fatal(err)
	}
	imgs, err := ReadArchiveIndex(bytes.NewReader(buf.Bytes()))
	if err != nil || len(imgs) != 1 || imgs[0].Name != "kubeforge.local/pause:3.10" || imgs[0].Digest != md {
		t.Fatalf("got %v, %v", imgs, err)
	}

	docker := func(manifest string) []byte {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		tw.WriteHeader(&tar.Header{Name: "manifest.json", Mode: 0o644, Size: int64(len(manifest)), Typeflag: tar.TypeReg})
		tw.Write([]byte(manifest))
		tw.Close()
		return b.Bytes()
	}
	imgs, err = ReadArchiveIndex(bytes.NewReader(docker(`[{"RepoTags":["busybox:1.36","ghcr.io/x/y:2","me/app:3"]}]`)))
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(imgs)
	for _, want := range []string{"docker.io/library/busybox:1.36", "ghcr.io/x/y:2", "docker.io/me/app:3"} {
		if !strings.Contains(got, want) {
			t.Errorf("docker archive names %s, want %s", got, want)
		}
	}
	if _, err := ReadArchiveIndex(bytes.NewReader(docker(`[{"RepoTags":[]}]`))); err == nil || !strings.Contains(err.Error(), "names no image") {
		t.Errorf("untagged archive: %v", err)
	}
	if _, err := ReadArchiveIndex(strings.NewReader("not a tar at all, just text that is long enough for a header block")); err == nil {
		t.Error("garbage accepted")
	}
}

// BenchmarkWriteOCIArchive packs a 2 MiB program, about the bundle's test server.
func BenchmarkWriteOCIArchive(b *testing.B) {
	spec := testSpec()
	spec.Files[0].Data = bytes.Repeat([]byte("kubeforge"), 2<<20/9)
	b.SetBytes(int64(len(spec.Files[0].Data)))
	for i := 0; i < b.N; i++ {
		if _, err := WriteOCIArchive(io.Discard, spec); err != nil {
			b.Fatal(err)
		}
	}
}

// TestWriteOCIArchiveRootFS: an image made from a whole root file system keeps its
// symbolic links (merged /usr, busybox applets), its empty sticky /tmp and the
// environment it was given.
func TestWriteOCIArchiveRootFS(t *testing.T) {
	spec := ImageSpec{
		Name: "registry.k8s.io/e2e-test-images/busybox:1.37.0-1",
		Files: []ImageFile{
			{Path: "/bin/busybox", Mode: 0o755, Data: []byte("\x7fELF")},
			{Path: "/bin/sh", Link: "busybox"},
			{Path: "/tmp", Mode: 0o1777, Dir: true},
			{Path: "/usr", Mode: 0o755, Dir: true},
			{Path: "/usr/bin/env", Mode: 0o755, Data: []byte("\x7fELF")},
		},
		Cmd: []string{"sh"},
		Env: []string{"PATH=/bin"},
	}
	var buf bytes.Buffer
	md, err := WriteOCIArchive(&buf, spec)
	if err != nil {
		t.Fatal(err)
	}
	files := readArchive(t, buf.Bytes())
	var m ocispec.Manifest
	if err := json.Unmarshal(blob(t, files, md), &m); err != nil {
		t.Fatal(err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(blob(t, files, m.Config.Digest), &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Config.Env) != 1 || cfg.Config.Env[0] != "PATH=/bin" {
		t.Errorf("env %v, want [PATH=/bin]", cfg.Config.Env)
	}
	zr, err := gzip.NewReader(bytes.NewReader(blob(t, files, m.Layers[0].Digest)))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	layer := map[string]*tar.Header{}
	var order []string
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		layer[hdr.Name] = hdr
		order = append(order, hdr.Name)
	}
	if h := layer["bin/sh"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "busybox" {
		t.Errorf("bin/sh entry %+v, want a symlink to busybox", h)
	}
	if h := layer["tmp/"]; h == nil || h.Typeflag != tar.TypeDir || h.Mode != 0o1777 {
		t.Errorf("tmp/ entry %+v, want a directory with mode 1777", h)
	}
	if got := strings.Join(order, " "); got != "bin/ bin/busybox bin/sh tmp/ usr/ usr/bin/ usr/bin/env" {
		t.Errorf("layer entries %q: each directory once, before what it holds", got)
	}
	bad := spec
	bad.Files = []ImageFile{{Path: "/tmp", Dir: true, Data: []byte("x")}}
	if _, err := WriteOCIArchive(io.Discard, bad); err == nil || !strings.Contains(err.Error(), "files[0]") {
		t.Errorf("a directory with data: error %v, want one naming files[0]", err)
	}
}
