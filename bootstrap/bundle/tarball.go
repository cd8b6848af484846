package bundle

import (
	"archive/tar"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Unpack extracts a bundle tarball (.tar.gz holding one top-level directory) into
// destDir, verifies it, and returns it opened. Entries that would land outside destDir,
// links, and device files are refused: a tarball is input from outside.
func Unpack(tgz, destDir string) (*Bundle, error) {
	fh, err := os.Open(tgz)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", tgz, err)
	}
	defer fh.Close()
	zr, err := gzip.NewReader(fh)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", tgz, err)
	}
	tr := tar.NewReader(zr)
	root := ""
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("bundle %s: %w", tgz, err)
		}
		name := filepath.Clean(hdr.Name)
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return nil, fmt.Errorf("bundle %s: entry %q escapes the bundle", tgz, hdr.Name)
		}
		top := strings.SplitN(name, "/", 2)[0]
		if root == "" {
			root = top
		} else if top != root {
			return nil, fmt.Errorf("bundle %s: entry %q is outside the bundle directory %q", tgz, hdr.Name, root)
		}
		target := filepath.Join(destDir, name)
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return nil, err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return nil, err
			}
			out, err := os.OpenFile(target, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, os.FileMode(hdr.Mode).Perm())
			if err != nil {
				return nil, err
			}
			if _, err := io.Copy(out, tr); err != nil {
				out.Close()
				return nil, fmt.Errorf("bundle %s: %s: %w", tgz, hdr.Name, err)
			}
			if err := out.Close(); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("bundle %s: entry %q has unsupported type %q", tgz, hdr.Name, hdr.Typeflag)
		}
	}
	if root == "" {
		return nil, fmt.Errorf("bundle %s: empty archive", tgz)
	}
	b, err := Open(filepath.Join(destDir, root))
	if err != nil {
		return nil, err
	}
	return b, b.Verify()
}

// Resolve opens the bundle at path, unpacking it under cacheDir when path is a
// tarball, and verifies it.
func Resolve(path, cacheDir string) (*Bundle, error) {
	if strings.HasSuffix(path, ".tar.gz") || strings.HasSuffix(path, ".tgz") {
		return Unpack(path, cacheDir)
	}
	b, err := Open(path)
	if err != nil {
		return nil, err
	}
	return b, b.Verify()
}
