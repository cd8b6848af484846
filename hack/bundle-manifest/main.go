// Command bundle-manifest seals a freshly built bundle directory: it checks that each
// executable (bin/, cni/bin/) is statically linked and reports the version it was
// built as, that each image archive (images/) names the image it should, then writes
// manifest.json with every file's version and sha256. Used by hack/build-bundle.sh.
//
//	bundle-manifest --dir D --kubernetes V --etcd V [--containerd V --runc V --cni V --image name=V ...]
//	bundle-manifest pack-image --name REF --binary FILE --version V --out FILE [--port 8080/tcp] [--user U]
//
// pack-image wraps one static program into an OCI image-layout tarball with
// kubeforge's own packer (components/images), so no Docker or registry is involved.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"github.com/kubeforge/kubeforge/bootstrap/bundle"
	"github.com/kubeforge/kubeforge/components/images/oci"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	var err error
	if len(os.Args) > 1 && os.Args[1] == "pack-image" {
		err = packImage(os.Args[2:])
	} else {
		err = seal(os.Args[1:])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bundle-manifest:", err)
		os.Exit(1)
	}
}

// versionArgs says how each binary reports its version; the default is --version.
var versionArgs = map[string][]string{
	"etcd":                    {"--version"},
	"etcdctl":                 {"version"},
	"kubectl":                 {"version", "--client"},
	"containerd-shim-runc-v2": {"-v"},
}

// versions says which version each file of the bundle must report.
type versions struct {
	k8s, etcd, containerd, runc, cni string
	images                           map[string]string // image file base name -> version
}

// of returns the version a bundle file (bundle-relative path) is built from, or ""
// for a file the bundle does not know.
func (v versions) of(rel string) string {
	name := path.Base(rel)
	switch {
	case strings.HasPrefix(rel, "cni/bin/"):
		return v.cni
	case strings.HasPrefix(rel, "images/"):
		return v.images[strings.TrimSuffix(name, ".tar")]
	case name == "etcd" || name == "etcdctl":
		return v.etcd
	case name == "containerd" || name == "containerd-shim-runc-v2":
		return v.containerd
	case name == "runc":
		return v.runc
	}
	return v.k8s
}

func seal(args []string) error {
	fs := flag.NewFlagSet("bundle-manifest", flag.ContinueOnError)
	dir := fs.String("dir", "", "bundle directory")
	var v versions
	fs.StringVar(&v.k8s, "kubernetes", "", "Kubernetes version the k8s binaries were built from")
	fs.StringVar(&v.etcd, "etcd", "", "etcd version etcd and etcdctl were built from")
	fs.StringVar(&v.containerd, "containerd", "", "containerd version (containerd, containerd-shim-runc-v2)")
	fs.StringVar(&v.runc, "runc", "", "runc version")
	fs.StringVar(&v.cni, "cni", "", "CNI plugins version (cni/bin/*)")
	var imgs multi
	fs.Var(&imgs, "image", "NAME=VERSION of images/NAME.tar (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || v.k8s == "" || v.etcd == "" {
		return fmt.Errorf("--dir, --kubernetes and --etcd are required")
	}
	v.images = map[string]string{}
	for _, i := range imgs {
		n, ver, ok := strings.Cut(i, "=")
		if !ok || n == "" || ver == "" {
			return fmt.Errorf("--image %q: want NAME=VERSION", i)
		}
		v.images[n] = ver
	}
	out := map[string]string{}
	for _, sub := range []string{"bin", "cni/bin", "images"} {
		entries, err := os.ReadDir(filepath.Join(*dir, sub))
		if os.IsNotExist(err) && sub != "bin" {
			continue
		}
		if err != nil {
			return err
		}
		for _, e := range entries {
			name := e.Name()
			if strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".tmp") || e.IsDir() {
				continue
			}
			rel := sub + "/" + name
			want := v.of(rel)
			if want == "" {
				return fmt.Errorf("%s: no version given for it (pass --containerd, --runc, --cni or --image %s=V)", rel, strings.TrimSuffix(name, ".tar"))
			}
			p := filepath.Join(*dir, filepath.FromSlash(rel))
			if sub == "images" {
				if err := checkImage(p, want); err != nil {
					return err
				}
			} else if err := checkBinary(p, name, want); err != nil {
				return err
			}
			out[rel] = want
		}
	}
	m, err := bundle.WriteManifest(*dir, v.k8s, v.etcd, out)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "[bundle] manifest: %d files, kubernetes %s, etcd %s, containerd %s, runc %s, cni %s\n",
		len(m.Files), v.k8s, v.etcd, v.containerd, v.runc, v.cni)
	return nil
}

// checkBinary insists on a static executable that reports the version it was built
// from. CNI plugins are asked through the CNI protocol's own VERSION command, which
// prints the plugin's build version on stderr-less stdout as "CNI <name> plugin vX".
func checkBinary(p, name, want string) error {
	static, err := bundle.IsStatic(p)
	if err != nil {
		return err
	}
	if !static {
		return fmt.Errorf("%s is dynamically linked; bundle binaries must be static (CentOS 7 has glibc 2.17)", p)
	}
	args, ok := versionArgs[name]
	if !ok {
		args = []string{"--version"}
	}
	cmd := exec.Command(p, args...)
	if strings.Contains(filepath.ToSlash(p), "/cni/bin/") {
		// A CNI plugin run without CNI_COMMAND prints its "about" line with the
		// build version and exits non-zero.
		cmd = exec.Command(p)
		cmd.Env = []string{"PATH=/usr/bin:/bin"}
	}
	outb, err := cmd.CombinedOutput()
	if err != nil && !strings.Contains(filepath.ToSlash(p), "/cni/bin/") {
		return fmt.Errorf("%s %s: %v: %s", p, strings.Join(args, " "), err, outb)
	}
	if !strings.Contains(string(outb), strings.TrimPrefix(want, "v")) {
		return fmt.Errorf("%s reports %q, want version %s", p, strings.TrimSpace(string(outb)), want)
	}
	return nil
}

// checkImage insists on an image archive that names exactly one image, tagged
// with the version.
func checkImage(p, want string) error {
	fh, err := os.Open(p)
	if err != nil {
		return err
	}
	defer fh.Close()
	imgs, err := oci.ReadArchiveIndex(fh)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	if len(imgs) != 1 || !strings.HasSuffix(imgs[0].Name, ":"+want) {
		return fmt.Errorf("%s names %v, want one image tagged %s", p, imgs, want)
	}
	return nil
}

func packImage(args []string) error {
	fs := flag.NewFlagSet("pack-image", flag.ContinueOnError)
	name := fs.String("name", "", "image reference, registry/repository:tag")
	bin := fs.String("binary", "", "static program to pack as the image's entrypoint")
	version := fs.String("version", "", "version label")
	out := fs.String("out", "", "output tarball")
	user := fs.String("user", "", "numeric uid:gid the program runs as")
	var ports multi
	fs.Var(&ports, "port", "exposed port, e.g. 8080/tcp (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *name == "" || *bin == "" || *out == "" {
		return fmt.Errorf("pack-image: --name, --binary and --out are required")
	}
	static, err := bundle.IsStatic(*bin)
	if err != nil {
		return err
	}
	if !static {
		return fmt.Errorf("pack-image: %s is dynamically linked; an image without a libc needs a static program", *bin)
	}
	data, err := os.ReadFile(*bin)
	if err != nil {
		return err
	}
	entry := "/" + filepath.Base(*bin)
	spec := oci.ImageSpec{
		Name:         *name,
		Files:        []oci.ImageFile{{Path: entry, Mode: 0o755, Data: data}},
		Entrypoint:   []string{entry},
		User:         *user,
		ExposedPorts: ports,
		Labels:       map[string]string{"org.opencontainers.image.version": *version, "org.opencontainers.image.vendor": "kubeforge"},
	}
	fh, err := os.Create(*out)
	if err != nil {
		return err
	}
	dgst, err := oci.WriteOCIArchive(fh, spec)
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(*out)
		return err
	}
	fmt.Fprintf(os.Stderr, "[bundle] image %s: manifest %s\n", *name, dgst)
	return nil
}
