// Package containerd installs, configures and starts the container runtime of a
// node — containerd 2.x with runc and the CNI plugins, all from the bundle — and
// checks its health through containerd's own API.
//
// The configuration is derived from the host (Detect → SettingsFor): the cgroup
// driver the kubelet must share, and the few settings a host that is itself a
// container needs. Each such adjustment is written into the config file as a
// comment and printed by the phase, so what kubeforge changed for a host is never
// hidden.
package containerd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path"
	"strings"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/bundle"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/components/component"
	"github.com/kubeforge/kubeforge/components/install"
)

// Paths and names on the host.
const (
	UnitName   = "containerd.service"
	ConfigPath = "/etc/containerd/config.toml"
	Socket     = "/run/containerd/containerd.sock"
	RootDir    = "/var/lib/containerd"
	StateDir   = "/run/containerd"
	// Namespace is the containerd namespace the CRI plugin (and so the kubelet)
	// uses; images must be imported there to be visible to pods.
	Namespace  = "k8s.io"
	CNIBinDir  = "/opt/cni/bin"
	CNIConfDir = "/etc/cni/net.d"
)

// Binaries are installed from the bundle's bin/ into the bin dir.
var Binaries = []string{"containerd", "containerd-shim-runc-v2", "runc"}

// CNIPlugins are installed from the bundle's cni/bin/ into CNIBinDir.
var CNIPlugins = []string{"bridge", "host-local", "loopback", "portmap"}

// Options say what Ensure works on.
type Options struct {
	Host      host.Host
	BundleDir string
	// BinDir is where containerd, the shim and runc go; install.DefaultBinDir
	// when empty.
	BinDir string
	// SandboxImage is the pinned pause image (imported by the images phase).
	SandboxImage string
	DryRun       bool
	// Timeout bounds waiting for a healthy daemon; 1 minute when zero.
	Timeout time.Duration
	Logf    func(format string, a ...any)
}

// Result says what Ensure did.
type Result struct {
	Changed  bool
	Detail   string
	Settings Settings
	Health   Health
}

func (o *Options) defaults() {
	if o.BinDir == "" {
		o.BinDir = install.DefaultBinDir
	}
	if o.Timeout == 0 {
		o.Timeout = time.Minute
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
}

// Ensure brings containerd on the host to the desired state: binaries and CNI
// plugins installed, config and unit written, the unit enabled and running with
// them, the daemon healthy. It restarts a running containerd only when one of
// those changed; with KillMode=process that leaves running containers alone.
func Ensure(ctx context.Context, o Options) (Result, error) {
	o.defaults()
	h := o.Host
	if h == nil || o.SandboxImage == "" {
		return Result{}, fmt.Errorf("containerd: no host or no sandbox image")
	}
	env, err := Detect(ctx, h)
	if err != nil {
		return Result{}, err
	}
	s := SettingsFor(env, o.SandboxImage, o.BinDir)
	cfg, err := RenderConfig(s)
	if err != nil {
		return Result{}, err
	}
	o.Logf("cgroup v%d, cgroup driver %s, snapshotter %s", env.CgroupVersion, s.CgroupDriver, s.Snapshotter)
	for _, a := range s.Adjustments {
		o.Logf("adjusted for this host: %s", a)
	}
	// Check the whole bundle part before the first write, so a bad bundle
	// changes nothing.
	if _, err := install.Verify(o.BundleDir, Binaries...); err != nil {
		return Result{}, err
	}
	if err := verifyCNI(o.BundleDir); err != nil {
		return Result{}, err
	}

	bins, err := install.Binaries(ctx, install.Options{Host: h, BundleDir: o.BundleDir, BinDir: o.BinDir, Logf: o.Logf}, Binaries...)
	if err != nil {
		return Result{}, err
	}
	cniChanged, err := installCNI(ctx, h, o.BundleDir, o.Logf)
	if err != nil {
		return Result{}, err
	}
	cfgChanged, err := component.WriteIfChanged(ctx, h, ConfigPath, cfg, 0o600, false)
	if err != nil {
		return Result{}, err
	}
	if err := h.MkdirAll(ctx, CNIConfDir, 0o755); err != nil {
		return Result{}, err
	}
	// The shim and runc are run per container and are picked up without a
	// restart; only the daemon itself, its config and unit need one.
	unitChanged, started, err := component.RunUnit(ctx, h, UnitName, Unit(o.BinDir), cfgChanged || contains(bins.Installed, "containerd"))
	if err != nil {
		return Result{}, err
	}
	res := Result{Settings: s, Changed: bins.Changed() || cniChanged || cfgChanged || unitChanged || started}
	if o.DryRun {
		res.Detail = "dry run: containerd would be " + map[bool]string{true: "(re)started", false: "left running"}[started]
		return res, nil
	}
	c, err := Connect(h, Socket)
	if err != nil {
		return res, err
	}
	defer c.Close()
	res.Health, err = WaitHealthy(ctx, c, s.Snapshotter, o.Timeout)
	if err != nil {
		return res, fmt.Errorf("%s: %w", h.Name(), err)
	}
	verb := "running"
	if started {
		verb = "started"
	}
	res.Detail = fmt.Sprintf("containerd %s %s, CRI and %s snapshotter loaded", res.Health.Version, verb, s.Snapshotter)
	if !res.Changed {
		res.Detail = fmt.Sprintf("containerd %s already installed, configured and healthy", res.Health.Version)
	}
	return res, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func verifyCNI(bundleDir string) error {
	b, err := bundle.Open(bundleDir)
	if err != nil {
		return err
	}
	for _, p := range CNIPlugins {
		if err := b.VerifyFile("cni/bin/" + p); err != nil {
			return err
		}
	}
	return nil
}

// installCNI copies the bundle's CNI plugins to CNIBinDir, skipping those already
// in place.
func installCNI(ctx context.Context, h host.Host, bundleDir string, logf func(string, ...any)) (bool, error) {
	b, err := bundle.Open(bundleDir)
	if err != nil {
		return false, err
	}
	changed := false
	for _, p := range CNIPlugins {
		rel := "cni/bin/" + p
		f, _ := b.Lookup(rel)
		dst := path.Join(CNIBinDir, p)
		same, err := install.Matches(ctx, h, dst, f.SHA256, f.Size)
		if err != nil {
			return changed, err
		}
		if same {
			continue
		}
		data, err := os.ReadFile(b.Path(rel))
		if err != nil {
			return changed, fmt.Errorf("bundle %s: %w", bundleDir, err)
		}
		// What is written is what is checked, even if the bundle changed since.
		if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != f.SHA256 {
			return changed, &bundle.MismatchError{Bundle: bundleDir, Path: rel, Reason: "changed while it was being read"}
		}
		if err := h.WriteFile(ctx, dst, data, host.WriteOptions{Mode: 0o755}); err != nil {
			return changed, fmt.Errorf("%s: installing %s: %w", h.Name(), dst, err)
		}
		logf("installed %s (%s)", dst, f.Version)
		changed = true
	}
	return changed, nil
}

// HasCNIConfig reports whether CNIConfDir holds any network configuration.
// Without one no pod sandbox gets a network and no Node becomes Ready, so a
// wait for Ready would only time out. The Host interface lists no
// directories, hence find (read-only, so it runs in a dry run too).
func HasCNIConfig(ctx context.Context, h host.Host) bool {
	r, err := h.Run(ctx, host.Cmd{Argv: []string{"find", CNIConfDir, "-maxdepth", "1", "-name", "*.conf*"}, ReadOnly: true})
	return err != nil || strings.TrimSpace(string(r.Stdout)) != ""
}
