// Package oci packs static programs into OCI image-layout tarballs and reads the
// image names such tarballs (or docker-save ones) carry. It is deliberately free of
// the containerd client, so the bundle build can use it cheaply.
package oci

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// AnnotationImageName is the index annotation containerd's importer reads the
// image's full reference from (registry/repository:tag). Without it an OCI
// archive imports under its bare tag, which the kubelet would never match.
const AnnotationImageName = "io.containerd.image.name"

// ImageFile is one entry of an image's single layer: a regular file, or, for
// images made from a whole root file system (the conformance suite's test images
// built from Debian packages), a directory or a symbolic link.
type ImageFile struct {
	// Path inside the image, absolute ("/pause").
	Path string
	Mode int64 // permission bits, 0755 for executables
	Data []byte
	// Link, if set, makes the entry a symbolic link to Link (Data unused).
	Link string
	// Dir makes the entry a directory with Mode (an empty /tmp, say).
	Dir bool
}

// ImageSpec describes a one-layer image built from files on disk: what the bundle
// needs for a static program (pause, the test server) without a registry or a
// Docker daemon.
type ImageSpec struct {
	// Name is the full reference the image is imported as, e.g.
	// "registry.k8s.io/pause:3.10".
	Name       string
	Files      []ImageFile
	Entrypoint []string
	Cmd        []string
	// User is the numeric "uid:gid" the process runs as ("" = root). Static
	// programs have no /etc/passwd to resolve names with.
	User         string
	ExposedPorts []string // "8080/tcp"
	// Env is the image's environment; nil means PATH with the usual directories.
	Env    []string
	Labels map[string]string
	// GzipLevel compresses the layer (compress/gzip levels); 0 means
	// gzip.BestCompression, the bundle's choice for its small images. Large root
	// file systems pack several times faster at gzip.DefaultCompression.
	GzipLevel int
	// Created is the image's creation time; the zero value means the Unix epoch,
	// so the same inputs always produce byte-identical archives (and digests).
	Created time.Time
}

// Validate reports the first problem of s, naming the field.
func (s ImageSpec) Validate() error {
	if _, _, err := SplitReference(s.Name); err != nil {
		return err
	}
	if len(s.Files) == 0 {
		return fmt.Errorf("image %s: no files", s.Name)
	}
	seen := map[string]bool{}
	for i, f := range s.Files {
		if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || f.Path == "/" {
			return fmt.Errorf("image %s: files[%d].path %q must be a clean absolute file path", s.Name, i, f.Path)
		}
		if seen[f.Path] {
			return fmt.Errorf("image %s: files[%d].path %q is listed twice", s.Name, i, f.Path)
		}
		seen[f.Path] = true
		if f.Dir && (f.Link != "" || len(f.Data) > 0) {
			return fmt.Errorf("image %s: files[%d] %q is a directory with a link or data", s.Name, i, f.Path)
		}
	}
	if len(s.Entrypoint) == 0 && len(s.Cmd) == 0 {
		return fmt.Errorf("image %s: neither entrypoint nor cmd is set; the container would have nothing to run", s.Name)
	}
	return nil
}

// SplitReference splits "registry/repo:tag" into its name and tag. Only tagged
// references are accepted: an image imported without a tag cannot be named by
// a pod spec that never pulls.
func SplitReference(ref string) (name, tag string, err error) {
	i := strings.LastIndex(ref, ":")
	if i <= 0 || i == len(ref)-1 || strings.Contains(ref[i:], "/") || strings.Contains(ref, "@") {
		return "", "", fmt.Errorf("image reference %q: want registry/repository:tag", ref)
	}
	name, tag = ref[:i], ref[i+1:]
	if !strings.Contains(name, "/") || strings.ContainsAny(ref, " \t\n") || strings.ToLower(name) != name {
		return "", "", fmt.Errorf("image reference %q: want a lower-case registry/repository:tag", ref)
	}
	return name, tag, nil
}

// WriteOCIArchive writes spec as an OCI image-layout tarball (oci-layout,
// index.json, blobs/sha256/...) that `ctr images import` and containerd's Go
// client import. The output is a pure function of spec: timestamps are fixed and
// gzip carries no name or time, so rebuilding the bundle keeps the image's digest.
// It returns the manifest digest.
func WriteOCIArchive(w io.Writer, spec ImageSpec) (digest.Digest, error) {
	if err := spec.Validate(); err != nil {
		return "", err
	}
	_, tag, _ := SplitReference(spec.Name)
	created := spec.Created
	if created.IsZero() {
		created = time.Unix(0, 0)
	}
	created = created.UTC()

	layerTar, err := layerTar(spec.Files, created)
	if err != nil {
		return "", err
	}
	layer, err := gzipLayer(spec, layerTar)
	if err != nil {
		return "", err
	}

	cfgJSON, err := imageConfig(spec, created, layerTar)
	if err != nil {
		return "", err
	}
	manifest := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    descriptor(ocispec.MediaTypeImageConfig, cfgJSON),
		Layers:    []ocispec.Descriptor{descriptor(ocispec.MediaTypeImageLayerGzip, layer)},
	}
	manifestJSON, err := json.Marshal(manifest)
	if err != nil {
		return "", err
	}
	md := descriptor(ocispec.MediaTypeImageManifest, manifestJSON)
	md.Platform = &ocispec.Platform{Architecture: runtime.GOARCH, OS: "linux"}
	md.Annotations = map[string]string{
		AnnotationImageName:       spec.Name,
		ocispec.AnnotationRefName: tag,
	}
	index := ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{md},
	}
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return "", err
	}
	layout, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})

	err = writeLayout(w, created, []layoutEntry{
		{ocispec.ImageLayoutFile, layout},
		{"index.json", indexJSON},
		{blobPath(cfgJSON), cfgJSON},
		{blobPath(layer), layer},
		{blobPath(manifestJSON), manifestJSON},
	})
	if err != nil {
		return "", err
	}
	return md.Digest, nil
}

// gzipLayer compresses the layer at spec's level (best by default); gzip
// carries no name or time, so the bytes depend on the layer alone.
func gzipLayer(spec ImageSpec, layerTar []byte) ([]byte, error) {
	var gz bytes.Buffer
	level := spec.GzipLevel
	if level == 0 {
		level = gzip.BestCompression
	}
	zw, err := gzip.NewWriterLevel(&gz, level)
	if err != nil {
		return nil, fmt.Errorf("image %s: gzip level %d: %w", spec.Name, spec.GzipLevel, err)
	}
	if _, err := zw.Write(layerTar); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return gz.Bytes(), nil
}

// imageConfig is the image's config blob: its platform, entrypoint, command,
// environment (a default PATH), user, labels, ports and the one layer's diff ID.
func imageConfig(spec ImageSpec, created time.Time, layerTar []byte) ([]byte, error) {
	env := spec.Env
	if env == nil {
		env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	}
	cfg := ocispec.Image{
		Created:  &created,
		Platform: ocispec.Platform{Architecture: runtime.GOARCH, OS: "linux"},
		Config: ocispec.ImageConfig{
			User:       spec.User,
			Entrypoint: spec.Entrypoint,
			Cmd:        spec.Cmd,
			Env:        env,
			Labels:     spec.Labels,
			WorkingDir: "/",
		},
		RootFS:  ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(layerTar)}},
		History: []ocispec.History{{Created: &created, CreatedBy: "kubeforge images pack", Comment: spec.Name}},
	}
	if len(spec.ExposedPorts) > 0 {
		cfg.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range spec.ExposedPorts {
			cfg.Config.ExposedPorts[p] = struct{}{}
		}
	}
	return json.Marshal(cfg)
}

// layoutEntry is one regular file of the image layout.
type layoutEntry struct {
	name string
	data []byte
}

// writeLayout writes the layout's directories and entries as a tar stream,
// every entry with the same fixed time.
func writeLayout(w io.Writer, created time.Time, entries []layoutEntry) error {
	tw := tar.NewWriter(w)
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: created, Format: tar.FormatPAX}); err != nil {
			return err
		}
	}
	for _, e := range entries {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: e.name, Mode: 0o644, Size: int64(len(e.data)), ModTime: created, Format: tar.FormatPAX}); err != nil {
			return err
		}
		if _, err := tw.Write(e.data); err != nil {
			return err
		}
	}
	return tw.Close()
}

func descriptor(mediaType string, data []byte) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
}

func blobPath(data []byte) string {
	return fmt.Sprintf("blobs/sha256/%x", sha256.Sum256(data))
}

// layerTar is the uncompressed layer: the parent directories, then the files, in
// sorted order with fixed owners and times.
func layerTar(files []ImageFile, mtime time.Time) ([]byte, error) {
	sorted := append([]ImageFile(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, f := range sorted {
		rel := strings.TrimPrefix(f.Path, "/")
		var parents []string
		for d := path.Dir(rel); d != "."; d = path.Dir(d) {
			parents = append([]string{d}, parents...)
		}
		for _, d := range parents {
			if dirs[d] {
				continue
			}
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: mtime, Format: tar.FormatPAX}); err != nil {
				return nil, err
			}
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		if mode&^0o7777 != 0 {
			return nil, fmt.Errorf("image file %s: mode %o has bits beyond permissions", f.Path, mode)
		}
		if f.Dir {
			if !dirs[rel] {
				dirs[rel] = true
				if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: rel + "/", Mode: mode, ModTime: mtime, Format: tar.FormatPAX}); err != nil {
					return nil, err
				}
			}
			continue
		}
		if f.Link != "" {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: rel, Linkname: f.Link, Mode: 0o777, ModTime: mtime, Format: tar.FormatPAX}); err != nil {
				return nil, err
			}
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: rel, Mode: mode, Size: int64(len(f.Data)), ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ArchiveImage is what ReadArchiveIndex finds in an archive.
type ArchiveImage struct {
	Name   string // the io.containerd.image.name annotation (or docker RepoTags entry)
	Digest digest.Digest
}

// ReadArchiveIndex lists the images an OCI layout or docker-save tarball names,
// without importing it, so a caller can verify afterwards that exactly these are
// present. A tarball naming no image is an error: containerd would import its
// content unnamed, where nothing can use it.
func ReadArchiveIndex(r io.Reader) ([]ArchiveImage, error) {
	tr := tar.NewReader(r)
	var index *ocispec.Index
	var dockerManifest []struct {
		RepoTags []string `json:"RepoTags"`
	}
	isDocker := false
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading the archive: %w", err)
		}
		switch path.Clean(hdr.Name) {
		case "index.json":
			data, err := io.ReadAll(io.LimitReader(tr, 4<<20))
			if err != nil {
				return nil, err
			}
			index = &ocispec.Index{}
			if err := json.Unmarshal(data, index); err != nil {
				return nil, fmt.Errorf("index.json: %w", err)
			}
		case "manifest.json":
			data, err := io.ReadAll(io.LimitReader(tr, 4<<20))
			if err != nil {
				return nil, err
			}
			if err := json.Unmarshal(data, &dockerManifest); err != nil {
				return nil, fmt.Errorf("manifest.json: %w", err)
			}
			isDocker = true
		}
	}
	var out []ArchiveImage
	if index != nil {
		for _, m := range index.Manifests {
			if n := m.Annotations[AnnotationImageName]; n != "" {
				out = append(out, ArchiveImage{Name: n, Digest: m.Digest})
			}
		}
	}
	if len(out) == 0 && isDocker {
		for _, m := range dockerManifest {
			for _, t := range m.RepoTags {
				out = append(out, ArchiveImage{Name: normalizeDockerRef(t)})
			}
		}
	}
	if index == nil && !isDocker {
		return nil, errors.New("not an image archive: it has neither index.json (OCI layout) nor manifest.json (docker save)")
	}
	if len(out) == 0 {
		return nil, errors.New("the archive names no image (no io.containerd.image.name annotation, no RepoTags)")
	}
	return out, nil
}

// normalizeDockerRef expands docker's short names the way containerd's importer
// does ("busybox:1" is docker.io/library/busybox:1).
func normalizeDockerRef(ref string) string {
	first, _, hasSlash := strings.Cut(ref, "/")
	switch {
	case !hasSlash:
		return "docker.io/library/" + ref
	case !strings.ContainsAny(first, ".:") && first != "localhost":
		return "docker.io/" + ref
	}
	return ref
}
