// Package install puts release binaries from a kubeforge bundle onto a host, the
// one way every component (control plane, etcd, kubelet, kube-proxy) gets its
// executable.
//
// The bundle is the trust boundary (see bootstrap/bundle): every binary asked for
// is checked against the manifest before the first one is written, so a bundle
// with one bad checksum changes nothing on the host. A binary whose installed copy
// already has the manifest's sha256 is left alone, which keeps a rerun cheap and
// keeps a running daemon's executable untouched. Writes go through host.Host, so
// they are atomic (temporary file and rename: a running process keeps its old
// inode, a reader never sees half a binary) and a dry run only records them.
package install

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"github.com/kubeforge/kubeforge/bootstrap/bundle"
	"github.com/kubeforge/kubeforge/bootstrap/host"
)

// DefaultBinDir is where binaries are installed: on PATH on every supported
// distribution, and outside what the package manager owns.
const DefaultBinDir = "/usr/local/bin"

// Binary names as they appear in the bundle's bin/ directory.
const (
	KubeAPIServer         = "kube-apiserver"
	KubeControllerManager = "kube-controller-manager"
	KubeScheduler         = "kube-scheduler"
	Kubectl               = "kubectl"
	Kubelet               = "kubelet"
	KubeProxy             = "kube-proxy"
	Etcd                  = "etcd"
	Etcdctl               = "etcdctl"
)

// Options say where binaries come from and go to.
type Options struct {
	// Host is the machine to install on (local, SSH or dry-run).
	Host host.Host
	// BundleDir is the bundle directory (bin/ and manifest.json), read where
	// kubeforge runs.
	BundleDir string
	// BinDir is the target directory; DefaultBinDir when empty.
	BinDir string
	// Logf receives one line per binary written; nil discards.
	Logf func(format string, a ...any)
}

func (o Options) binDir() string {
	if o.BinDir == "" {
		return DefaultBinDir
	}
	return o.BinDir
}

func (o Options) logf(format string, a ...any) {
	if o.Logf != nil {
		o.Logf(format, a...)
	}
}

// Result says what Binaries did.
type Result struct {
	// Installed are the binaries written (new or replaced), Unchanged the ones
	// already in place, both in the order they were asked for.
	Installed []string
	Unchanged []string
}

// Changed reports whether anything was written.
func (r Result) Changed() bool { return len(r.Installed) > 0 }

// Path is where a named binary is installed.
func (o Options) Path(name string) string { return path.Join(o.binDir(), name) }

// Verify opens the bundle and checks the named binaries against its manifest
// (listed, size, sha256) without touching any host. It is the check that lets a
// caller refuse a bad bundle before the first change.
func Verify(bundleDir string, names ...string) (*bundle.Bundle, error) {
	b, err := bundle.Open(bundleDir)
	if err != nil {
		return nil, fmt.Errorf("%w (pass --bundle with the directory that holds bin/ and %s)", err, bundle.ManifestName)
	}
	for _, n := range names {
		if err := checkName(n); err != nil {
			return nil, err
		}
		rel := "bin/" + n
		if _, ok := b.Lookup(rel); !ok {
			return nil, fmt.Errorf("bundle %s: its manifest lists no %s, which this host needs", bundleDir, rel)
		}
		if err := b.VerifyFile(rel); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func checkName(n string) error {
	if n == "" || strings.ContainsAny(n, "/\x00") || n == "." || n == ".." {
		return fmt.Errorf("install: %q is not a binary name", n)
	}
	return nil
}

// Plan is what Binaries would do: the binaries that differ from the bundle's
// (verified against the manifest, ready to be written) and the ones already in
// place.
type Plan struct {
	o         Options
	b         *bundle.Bundle
	names     []string
	install   map[string]bool
	Install   []string
	Unchanged []string
}

// NewPlan compares the installed binaries with the bundle's manifest and
// verifies the bundle file of every binary that has to be (re)installed. Binaries
// already in place are not read from the bundle at all, which keeps a rerun cheap;
// everything that will be written is checked before the first write.
func NewPlan(ctx context.Context, o Options, names ...string) (*Plan, error) {
	if o.Host == nil {
		return nil, errors.New("install: no host")
	}
	b, err := bundle.Open(o.BundleDir)
	if err != nil {
		return nil, fmt.Errorf("%w (pass --bundle with the directory that holds bin/ and %s)", err, bundle.ManifestName)
	}
	p := &Plan{o: o, b: b, names: names, install: map[string]bool{}}
	for _, n := range names {
		if err := checkName(n); err != nil {
			return nil, err
		}
		f, ok := b.Lookup("bin/" + n)
		if !ok {
			return nil, fmt.Errorf("bundle %s: its manifest lists no bin/%s, which this host needs", o.BundleDir, n)
		}
		same, err := Matches(ctx, o.Host, o.Path(n), f.SHA256, f.Size)
		if err != nil {
			return nil, err
		}
		if same {
			p.Unchanged = append(p.Unchanged, n)
			continue
		}
		if err := b.VerifyFile("bin/" + n); err != nil {
			return nil, err
		}
		p.install[n] = true
		p.Install = append(p.Install, n)
	}
	return p, nil
}

// Apply writes the planned binaries with mode 0755. An error leaves the binaries
// written so far in place: each is a complete, verified file, and a rerun only
// writes the rest.
func (p *Plan) Apply(ctx context.Context) (Result, error) {
	res := Result{Unchanged: p.Unchanged}
	for _, n := range p.names {
		if !p.install[n] {
			continue
		}
		rel := "bin/" + n
		f, _ := p.b.Lookup(rel)
		data, err := os.ReadFile(p.b.Path(rel))
		if err != nil {
			return res, fmt.Errorf("bundle %s: %w", p.o.BundleDir, err)
		}
		// The file could have changed since it was verified; what is written is
		// what is checked.
		if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != f.SHA256 {
			return res, &bundle.MismatchError{Bundle: p.o.BundleDir, Path: rel, Reason: "changed while it was being read"}
		}
		dst := p.o.Path(n)
		if err := p.o.Host.WriteFile(ctx, dst, data, host.WriteOptions{Mode: 0o755}); err != nil {
			return res, fmt.Errorf("%s: installing %s: %w", p.o.Host.Name(), dst, err)
		}
		p.o.logf("installed %s (%s, sha256 %s)", dst, f.Version, f.SHA256[:12])
		res.Installed = append(res.Installed, n)
	}
	return res, nil
}

// Binaries installs the named binaries from the bundle: NewPlan, then Apply.
func Binaries(ctx context.Context, o Options, names ...string) (Result, error) {
	p, err := NewPlan(ctx, o, names...)
	if err != nil {
		return Result{}, err
	}
	return p.Apply(ctx)
}

// Matches reports whether the executable at p on h has the given sha256 (hex)
// and size. A missing file, a different size or a file without execute bits is
// simply "no".
func Matches(ctx context.Context, h host.Host, p, sha string, size int64) (bool, error) {
	fi, err := h.Stat(ctx, p)
	if host.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if fi.IsDir() {
		return false, fmt.Errorf("%s: %s is a directory, not a binary", h.Name(), p)
	}
	if fi.Size != size || fi.Mode.Perm()&0o111 == 0 {
		return false, nil
	}
	sum, err := SHA256(ctx, h, p)
	if err != nil {
		return false, err
	}
	return sum == sha, nil
}

// SHA256 is the hex sha256 of a file on h. sha256sum on the host spares copying a
// 100 MB binary back over SSH; reading the file is the fallback for hosts without
// coreutils' sha256sum, and for files a dry run only planned.
func SHA256(ctx context.Context, h host.Host, p string) (string, error) {
	c := host.Cmd{Argv: []string{"sha256sum", "--", p}, ReadOnly: true}
	if r, err := h.Run(ctx, c); err == nil && r.OK() {
		if sum, _, ok := strings.Cut(strings.TrimSpace(string(r.Stdout)), " "); ok && len(sum) == 64 {
			return sum, nil
		}
	}
	data, err := h.ReadFile(ctx, p)
	if err != nil {
		return "", err
	}
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:]), nil
}
