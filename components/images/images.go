// Package images puts container images into a node's containerd without a
// registry: image archives (OCI image layouts or `docker save` tarballs) are
// imported through containerd's Go client into the k8s.io namespace, the one the
// CRI plugin and so the kubelet see, and unpacked into the snapshotter pods use.
//
// The bundle carries the images every node needs (images/*.tar): the pod sandbox
// ("pause"), which containerd's config pins so it is never pulled, and the e2e's
// test server. EnsureBundle imports them and then verifies them — present under
// their names, with the archive's manifest digest, unpacked — because a kubelet
// that finds no sandbox image would try to pull it and fail on a host without
// registry access.
package images

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"

	"github.com/kubeforge/kubeforge/bootstrap/bundle"
	"github.com/kubeforge/kubeforge/components/images/oci"
)

// Images in the bundle. The sandbox image is what containerd's config pins.
const (
	PauseImage      = "kubeforge.local/pause:3.10"
	TestServerImage = "kubeforge.local/httpecho:1.0"
)

// labelCRIManaged marks images the CRI plugin manages, as it does for images it
// pulls itself; kubelet image GC treats them like pulled images (except the
// pinned sandbox).
const labelCRIManaged = "io.cri-containerd.image"

// Image is one image in containerd's store.
type Image struct {
	Name     string
	Digest   digest.Digest
	Size     int64
	Unpacked bool
}

// Import reads one archive and imports every image it names, unpacked into
// snapshotter. Images the archive does not name are refused before anything is
// stored: unnamed content could never be used by a pod.
func Import(ctx context.Context, c *client.Client, archive io.Reader, snapshotter string) ([]Image, error) {
	// The archive is read twice (names, then import); image archives of the
	// bundle are a few MB, so a buffer is simpler than a temp file.
	data, err := io.ReadAll(archive)
	if err != nil {
		return nil, err
	}
	named, err := oci.ReadArchiveIndex(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	imgs, err := c.Import(ctx, bytes.NewReader(data),
		client.WithImportPlatform(platforms.Default()),
		client.WithImageLabels(map[string]string{labelCRIManaged: "managed"}))
	if err != nil {
		return nil, fmt.Errorf("containerd import: %w", err)
	}
	var out []Image
	for _, m := range imgs {
		img := client.NewImage(c, m)
		if err := img.Unpack(ctx, snapshotter); err != nil {
			return out, fmt.Errorf("unpacking %s into %s: %w", m.Name, snapshotter, err)
		}
		size, _ := img.Size(ctx)
		out = append(out, Image{Name: m.Name, Digest: m.Target.Digest, Size: size, Unpacked: true})
	}
	for _, n := range named {
		if !hasImage(out, n.Name) {
			return out, fmt.Errorf("the archive names %s, but containerd imported %v", n.Name, names(out))
		}
	}
	return out, nil
}

func hasImage(list []Image, name string) bool {
	for _, i := range list {
		if i.Name == name {
			return true
		}
	}
	return false
}

func names(list []Image) []string {
	var out []string
	for _, i := range list {
		out = append(out, i.Name)
	}
	return out
}

// List returns the images in the client's namespace, sorted by name, with
// whether each is unpacked in snapshotter. The CRI plugin adds an alias named by
// the image ID ("sha256:<config digest>") for every image it knows; those are
// left out, as crictl folds them into the named image too.
func List(ctx context.Context, c *client.Client, snapshotter string) ([]Image, error) {
	imgs, err := c.ListImages(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing images: %w", err)
	}
	out := make([]Image, 0, len(imgs))
	for _, img := range imgs {
		if strings.HasPrefix(img.Name(), "sha256:") {
			continue
		}
		i := Image{Name: img.Name(), Digest: img.Target().Digest}
		i.Size, _ = img.Size(ctx)
		if snapshotter != "" {
			i.Unpacked, _ = img.IsUnpacked(ctx, snapshotter)
		}
		out = append(out, i)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out, nil
}

// Check reports whether name is in the store with the given manifest digest
// (any digest when want is "") and unpacked in snapshotter.
func Check(ctx context.Context, c *client.Client, name string, want digest.Digest, snapshotter string) error {
	img, err := c.GetImage(ctx, name)
	if errdefs.IsNotFound(err) {
		return fmt.Errorf("image %s is not in containerd's %s namespace", name, "k8s.io")
	}
	if err != nil {
		return err
	}
	if want != "" && img.Target().Digest != want {
		return fmt.Errorf("image %s has manifest %s, the bundle's archive has %s", name, img.Target().Digest, want)
	}
	ok, err := img.IsUnpacked(ctx, snapshotter)
	if err != nil {
		return fmt.Errorf("image %s: %w", name, err)
	}
	if !ok {
		return fmt.Errorf("image %s is not unpacked in the %s snapshotter", name, snapshotter)
	}
	return nil
}

// BundleResult says what EnsureBundle did per image.
type BundleResult struct {
	Imported  []Image // newly imported (or re-imported) images
	Unchanged []Image // already present, same digest, unpacked
}

// Changed reports whether anything was imported.
func (r BundleResult) Changed() bool { return len(r.Imported) > 0 }

// BundleArchives lists the bundle's image archives (images/*.tar), verified
// against the manifest.
func BundleArchives(b *bundle.Bundle) ([]string, error) {
	var out []string
	for _, f := range b.Manifest.Files {
		if strings.HasPrefix(f.Path, "images/") && strings.HasSuffix(f.Path, ".tar") {
			if err := b.VerifyFile(f.Path); err != nil {
				return nil, err
			}
			out = append(out, f.Path)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("bundle %s: its manifest lists no images/*.tar; nodes need at least the sandbox image %s", b.Dir, PauseImage)
	}
	return out, nil
}

// EnsureBundle imports every image archive of the bundle that is not already
// present and unpacked, then checks each image by name and digest. It fails
// when the sandbox image is not among them, since pods could not start.
func EnsureBundle(ctx context.Context, c *client.Client, b *bundle.Bundle, snapshotter string, logf func(string, ...any)) (BundleResult, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	var res BundleResult
	archives, err := BundleArchives(b)
	if err != nil {
		return res, err
	}
	sandbox := false
	for _, rel := range archives {
		data, err := os.ReadFile(b.Path(rel))
		if err != nil {
			return res, fmt.Errorf("bundle %s: %w", b.Dir, err)
		}
		named, err := oci.ReadArchiveIndex(bytes.NewReader(data))
		if err != nil {
			return res, fmt.Errorf("bundle %s: %s: %w", b.Dir, rel, err)
		}
		present := true
		for _, n := range named {
			if Check(ctx, c, n.Name, n.Digest, snapshotter) != nil {
				present = false
			}
			sandbox = sandbox || n.Name == PauseImage
		}
		if present {
			for _, n := range named {
				res.Unchanged = append(res.Unchanged, Image{Name: n.Name, Digest: n.Digest, Unpacked: true})
			}
			continue
		}
		imgs, err := Import(ctx, c, bytes.NewReader(data), snapshotter)
		if err != nil {
			return res, fmt.Errorf("importing %s from bundle %s: %w", rel, b.Dir, err)
		}
		for _, n := range named {
			if err := Check(ctx, c, n.Name, n.Digest, snapshotter); err != nil {
				return res, fmt.Errorf("after importing %s: %w", rel, err)
			}
		}
		for _, i := range imgs {
			logf("imported %s (%s, %s)", i.Name, i.Digest, rel)
		}
		res.Imported = append(res.Imported, imgs...)
	}
	if !sandbox {
		return res, fmt.Errorf("bundle %s: no archive holds the sandbox image %s", b.Dir, PauseImage)
	}
	return res, nil
}
