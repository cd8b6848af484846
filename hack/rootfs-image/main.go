// Command rootfs-image packs a directory tree (a root file system assembled from a
// static program and Debian packages) into a one-layer OCI image archive that
// `kubeforge images import` loads. hack/conformance.sh builds the upstream
// conformance suite's test images with it, under their upstream names.
//
//	go run ./hack/rootfs-image --dir ROOT --name registry.k8s.io/e2e-test-images/agnhost:2.56 \
//	    --entrypoint /agnhost --cmd pause --port 80/tcp --out agnhost.tar
package main

import (
	"compress/gzip"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/kubeforge/kubeforge/components/images/oci"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "rootfs-image:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fl := flag.NewFlagSet("rootfs-image", flag.ContinueOnError)
	dir := fl.String("dir", "", "root file system to pack")
	name := fl.String("name", "", "image reference, registry/repository:tag")
	out := fl.String("out", "", "output archive")
	user := fl.String("user", "", "numeric uid:gid the entrypoint runs as")
	var entry, cmd, ports, env multi
	fl.Var(&entry, "entrypoint", "entrypoint argument (repeatable, in order)")
	fl.Var(&cmd, "cmd", "default command argument (repeatable, in order)")
	fl.Var(&ports, "port", "exposed port, e.g. 80/tcp (repeatable)")
	fl.Var(&env, "env", "environment variable NAME=VALUE (repeatable; default PATH only)")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *dir == "" || *name == "" || *out == "" {
		return fmt.Errorf("--dir, --name and --out are required")
	}
	files, err := collect(*dir)
	if err != nil {
		return err
	}
	spec := oci.ImageSpec{
		Name: *name, Files: files, Entrypoint: entry, Cmd: cmd, User: *user,
		ExposedPorts: ports,
		GzipLevel:    gzip.DefaultCompression,
		Labels:       map[string]string{"org.opencontainers.image.vendor": "kubeforge (conformance test image)"},
	}
	if len(env) > 0 {
		spec.Env = env
	}
	tmp := *out + ".tmp"
	fh, err := os.Create(tmp)
	if err != nil {
		return err
	}
	dgst, err := oci.WriteOCIArchive(fh, spec)
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, *out); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "[conformance] image %s: %d entries, manifest %s\n", *name, len(files), dgst)
	return nil
}

// collect reads every directory, regular file and symbolic link under root.
// Anything else (a device node, a socket) has no place in an image and is an error.
func collect(root string) ([]oci.ImageFile, error) {
	var files []oci.ImageFile
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		ip := "/" + filepath.ToSlash(rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		mode := int64(info.Mode().Perm())
		if info.Mode()&fs.ModeSticky != 0 {
			mode |= 0o1000
		}
		if info.Mode()&fs.ModeSetuid != 0 {
			mode |= 0o4000
		}
		if info.Mode()&fs.ModeSetgid != 0 {
			mode |= 0o2000
		}
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			files = append(files, oci.ImageFile{Path: ip, Link: target})
		case info.IsDir():
			files = append(files, oci.ImageFile{Path: ip, Mode: mode, Dir: true})
		case info.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			files = append(files, oci.ImageFile{Path: ip, Mode: mode, Data: data})
		default:
			return fmt.Errorf("%s: %s is neither a file, a directory nor a symbolic link", root, ip)
		}
		return nil
	})
	return files, err
}
