package images_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubeforge/kubeforge/bootstrap/bundle"
	"github.com/kubeforge/kubeforge/components/containerd/containerdtest"
	"github.com/kubeforge/kubeforge/components/images"
	"github.com/kubeforge/kubeforge/components/images/oci"
)

func realBundle(t *testing.T) *bundle.Bundle {
	t.Helper()
	dir := containerdtest.BundleDir()
	if dir == "" {
		t.Skip("no bundle")
	}
	b, err := bundle.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := b.Lookup("images/pause.tar"); !ok {
		t.Skip("bundle has no images/pause.tar yet")
	}
	return b
}

// TestEnsureBundleWithRealContainerd imports the bundle's images into a real
// containerd, checks them by name, digest and unpacked state, and imports
// nothing the second time.
func TestEnsureBundleWithRealContainerd(t *testing.T) {
	b := realBundle(t)
	d := containerdtest.Start(t)
	ctx := context.Background()
	var logged []string
	res, err := images.EnsureBundle(ctx, d.Client, b, d.Snapshotter, func(f string, a ...any) { logged = append(logged, f) })
	if err != nil {
		t.Fatalf("%v\n%s", err, d.Log())
	}
	// Every image archive the bundle lists, whatever their number.
	want := 0
	for _, f := range b.Manifest.Files {
		if strings.HasPrefix(f.Path, "images/") && strings.HasSuffix(f.Path, ".tar") {
			want++
		}
	}
	if len(res.Imported) != want || len(res.Unchanged) != 0 || len(logged) != want {
		t.Fatalf("first run, %d images in the bundle: %+v", want, res)
	}
	list, err := images.List(ctx, d.Client, d.Snapshotter)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]images.Image{}
	for _, i := range list {
		got[i.Name] = i
	}
	for _, name := range []string{images.PauseImage, images.TestServerImage} {
		i, ok := got[name]
		if !ok || !i.Unpacked || i.Size == 0 || i.Digest == "" {
			t.Errorf("%s: %+v (listed: %v)", name, i, list)
		}
	}
	data, _ := os.ReadFile(b.Path("images/pause.tar"))
	named, _ := oci.ReadArchiveIndex(bytes.NewReader(data))
	if got[images.PauseImage].Digest != named[0].Digest {
		t.Errorf("pause digest %s, archive %s", got[images.PauseImage].Digest, named[0].Digest)
	}

	res, err = images.EnsureBundle(ctx, d.Client, b, d.Snapshotter, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Changed() || len(res.Unchanged) != want {
		t.Errorf("second run: %+v", res)
	}

	// An image removed behind kubeforge's back is imported again.
	if err := d.Client.ImageService().Delete(ctx, images.TestServerImage); err != nil {
		t.Fatal(err)
	}
	res, err = images.EnsureBundle(ctx, d.Client, b, d.Snapshotter, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Imported) != 1 || res.Imported[0].Name != images.TestServerImage {
		t.Errorf("after a delete: %+v", res)
	}
	if err := images.Check(ctx, d.Client, "kubeforge.local/nothing:1", "", d.Snapshotter); err == nil || !strings.Contains(err.Error(), "not in containerd") {
		t.Errorf("missing image: %v", err)
	}
}

// dockerArchive repackages an OCI archive of the bundle as `docker save` would
// have written it, with the given RepoTags.
func dockerArchive(t *testing.T, ociTar []byte, tags []string) []byte {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(ociTar))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name], _ = io.ReadAll(tr)
	}
	var idx struct{ Manifests []struct{ Digest string } }
	json.Unmarshal(files["index.json"], &idx)
	var m struct {
		Config struct{ Digest string }
		Layers []struct{ Digest string }
	}
	json.Unmarshal(files["blobs/sha256/"+strings.TrimPrefix(idx.Manifests[0].Digest, "sha256:")], &m)
	cfg := "blobs/sha256/" + strings.TrimPrefix(m.Config.Digest, "sha256:")
	layer := "blobs/sha256/" + strings.TrimPrefix(m.Layers[0].Digest, "sha256:")
	manifest, _ := json.Marshal([]map[string]any{{"Config": cfg, "RepoTags": tags, "Layers": []string{layer}}})
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for _, name := range []string{cfg, layer} {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(files[name])), Typeflag: tar.TypeReg})
		tw.Write(files[name])
	}
	tw.WriteHeader(&tar.Header{Name: "manifest.json", Mode: 0o644, Size: int64(len(manifest)), Typeflag: tar.TypeReg})
	tw.Write(manifest)
	tw.Close()
	return out.Bytes()
}

// TestImportDockerArchiveWithRealContainerd: `kubeforge images import` takes
// docker-save tarballs too, under docker's normalised names.
func TestImportDockerArchiveWithRealContainerd(t *testing.T) {
	b := realBundle(t)
	d := containerdtest.Start(t)
	ctx := context.Background()
	ociTar, err := os.ReadFile(b.Path("images/httpecho.tar"))
	if err != nil {
		t.Fatal(err)
	}
	imgs, err := images.Import(ctx, d.Client, bytes.NewReader(dockerArchive(t, ociTar, []string{"httpecho:docker"})), d.Snapshotter)
	if err != nil {
		t.Fatalf("%v\n%s", err, d.Log())
	}
	if len(imgs) != 1 || imgs[0].Name != "docker.io/library/httpecho:docker" || !imgs[0].Unpacked {
		t.Fatalf("imported %+v", imgs)
	}
	if err := images.Check(ctx, d.Client, "docker.io/library/httpecho:docker", imgs[0].Digest, d.Snapshotter); err != nil {
		t.Error(err)
	}

	// An archive that names no image is refused and stores nothing named.
	before, _ := images.List(ctx, d.Client, "")
	_, err = images.Import(ctx, d.Client, bytes.NewReader(dockerArchive(t, ociTar, nil)), d.Snapshotter)
	if err == nil || !strings.Contains(err.Error(), "names no image") {
		t.Errorf("unnamed archive: %v", err)
	}
	after, _ := images.List(ctx, d.Client, "")
	if len(after) != len(before) {
		t.Errorf("images before %v, after %v", before, after)
	}
}

func TestBundleArchivesNeedsTheSandbox(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
	os.WriteFile(filepath.Join(dir, "bin/kubelet"), []byte("x"), 0o755)
	bundle.WriteManifest(dir, "v1.34.4", "v3.6.16", map[string]string{"bin/kubelet": "v1.34.4"})
	b, err := bundle.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := images.BundleArchives(b); err == nil || !strings.Contains(err.Error(), images.PauseImage) {
		t.Errorf("bundle without images: %v", err)
	}
}
