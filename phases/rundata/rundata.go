// Package rundata is the run data shared by the phases of `kubeforge init`, `join`
// and `reset`: the flags every one of them takes, the host the phases act on, the
// logger and the context.
//
// Phases do not import the concrete type. Like kubeadm's phases they assert the
// workflow.RunData they receive to the interface they need, usually Data (or a
// narrower one of their own), which keeps phases testable with a small fake.
package rundata

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/bootstrap/host/dryrun"
	"github.com/kubeforge/kubeforge/bootstrap/host/local"
	"github.com/kubeforge/kubeforge/bootstrap/host/owndirs"
	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/discovery"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

// Defaults of the common flags.
const (
	DefaultBundleDir     = "/opt/kubeforge/bundle"
	DefaultCertDir       = certs.DefaultCertDir
	DefaultKubeconfigDir = certs.DefaultKubeconfigDir
)

// Flags are the options common to init, join and reset.
type Flags struct {
	ConfigPath    string
	NodeName      string
	BundleDir     string
	CertDir       string
	KubeconfigDir string
	DryRun        bool
}

// AddFlags registers the common flags on fs. Commands register them as persistent
// flags so every generated `phase` subcommand accepts them too.
func (f *Flags) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.ConfigPath, "config", "", "Path to the kubeforge cluster configuration file")
	fs.StringVar(&f.NodeName, "node-name", "", "Name of this node in the cluster configuration (default: the hostname)")
	fs.StringVar(&f.BundleDir, "bundle", DefaultBundleDir, "Directory holding the release bundle (bin/ with the upstream binaries)")
	fs.StringVar(&f.CertDir, "cert-dir", DefaultCertDir, "Directory for certificates and keys")
	fs.StringVar(&f.KubeconfigDir, "kubeconfig-dir", DefaultKubeconfigDir, "Directory for kubeconfig files")
	fs.BoolVar(&f.DryRun, "dry-run", false, "Print what would change on the host without changing anything")
}

// Data is what every init, join and reset phase may rely on.
type Data interface {
	workflow.LoggerProvider
	workflow.ContextProvider
	// Host is the machine the phases act on; in a dry run it records changes
	// instead of making them (and the plan is printed when the run ends).
	Host() host.Host
	// Config is the loaded, validated cluster configuration; nil only for commands
	// that do not require one (reset) when --config was not given.
	Config() *config.Cluster
	// Node is this machine's entry in Config (nil when Config is nil).
	Node() *config.Host
	// NodeName is this node's name: Node().Name, or without a config the
	// --node-name flag or the lowercased hostname.
	NodeName() string
	DryRun() bool
	// ConfigPath is the absolute path of the --config file ("" when none was given).
	ConfigPath() string
	BundleDir() string
	CertDir() string
	KubeconfigDir() string
	// Discovered is what join's token discovery found: the CA, the token, the
	// handed-over certificates. Init and reset work from the host's own files
	// and return nil, nil; join without ENDPOINT returns an error saying what
	// the phase lacks.
	Discovered() (*discovery.Result, error)
}

// Resolver is run data whose configuration and node come from a step of its
// own rather than from --config alone: join's token discovery. From calls
// Resolve before handing the data to a phase, so the step runs once, before
// the first phase that needs it, and its error fails that phase by name;
// Config and Node are plain getters with no side effect.
type Resolver interface {
	Resolve() error
}

// From asserts a phase's run data to Data and, for a Resolver, runs its step
// (once per run). The assertion error only fires when a phase is wired into a
// workflow whose data initializer builds something else.
func From(d workflow.RunData, phase string) (Data, error) {
	data, ok := d.(Data)
	if !ok {
		return nil, fmt.Errorf("phase %s: run data is %T, which does not implement rundata.Data", phase, d)
	}
	if r, ok := d.(Resolver); ok {
		if err := r.Resolve(); err != nil {
			return nil, err
		}
	}
	return data, nil
}

// Options are what New needs besides the flags.
type Options struct {
	// Out receives progress lines and the dry-run plan; nil means stdout.
	Out io.Writer
	// RequireConfig makes --config mandatory (init and join act on the cluster it
	// describes; reset can clean up without one).
	RequireConfig bool
	// OpenHost opens the machine the phases act on, given the resolved node name;
	// nil means this machine (bootstrap/host/local).
	OpenHost func(nodeName string) (host.Host, error)
	// Identity reports this machine's hostname and addresses, used to find it in
	// the config when --node-name is not given; nil means config.LocalIdentity.
	Identity func() (hostname string, addrs []net.IP, err error)
}

// Node is the run data of one init, join or reset on this node.
type Node struct {
	flags  Flags
	cfg    *config.Cluster
	node   *config.Host
	log    *workflow.Logger
	ctx    context.Context
	stop   context.CancelFunc
	host   host.Host
	dryRun *dryrun.Host // the same host, when it records instead of acting

	closeOnce sync.Once
	closeErr  error
}

var _ Data = (*Node)(nil)

// New checks the flags, loads the config, works out which host of it this machine
// is and opens the host, in that order, so bad input fails before any phase runs.
// ctx is the parent context; an interrupt (SIGINT/SIGTERM) cancels the run's
// context so the runner stops at the next phase boundary. Close releases
// everything New acquired.
func New(ctx context.Context, f Flags, opts Options) (*Node, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if opts.Out == nil {
		opts.Out = os.Stdout
	}
	if opts.Identity == nil {
		opts.Identity = config.LocalIdentity
	}
	if opts.OpenHost == nil {
		opts.OpenHost = func(name string) (host.Host, error) { return local.New(local.Options{Name: name}), nil }
	}
	f, err := normalize(f)
	if err != nil {
		return nil, err
	}
	n := &Node{flags: f, log: workflow.NewLogger(opts.Out)}
	if err := n.resolve(opts); err != nil {
		return nil, err
	}

	h, err := opts.OpenHost(n.flags.NodeName)
	if err != nil {
		return nil, fmt.Errorf("node %s: open host: %w", n.flags.NodeName, err)
	}
	n.host = h
	if f.DryRun {
		n.dryRun = dryrun.New(h, dryrun.Options{})
		n.host = n.dryRun
	}
	// The cert and kubeconfig dirs that kubeforge creates carry a marker, so
	// that reset removes them whole only then (see owndirs).
	n.host = owndirs.Wrap(n.host, f.KubeconfigDir, f.CertDir)
	n.ctx, n.stop = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	return n, nil
}

// resolve loads the config and settles the node name.
func (n *Node) resolve(opts Options) error {
	f := &n.flags
	switch {
	case f.ConfigPath != "":
		cfg, err := config.Load(f.ConfigPath)
		if err != nil {
			return err
		}
		var hostname string
		var addrs []net.IP
		if f.NodeName == "" {
			if hostname, addrs, err = opts.Identity(); err != nil {
				return fmt.Errorf("--node-name not given and this machine's identity is unknown: %w", err)
			}
		}
		node, err := cfg.ResolveNode(f.NodeName, hostname, addrs)
		if err != nil {
			return fmt.Errorf("%s: %w", f.ConfigPath, err)
		}
		n.cfg, n.node, f.NodeName = cfg, node, node.Name
	case opts.RequireConfig:
		return errors.New("--config is required: this command acts on the cluster the configuration file describes")
	case f.NodeName == "":
		hostname, _, err := opts.Identity()
		if err != nil {
			return fmt.Errorf("--node-name not given and the hostname is unknown: %w", err)
		}
		// Kubernetes node names are lowercase; hostnames often are not.
		f.NodeName = strings.ToLower(strings.TrimSpace(hostname))
	}
	if errs := validation.IsDNS1123Subdomain(f.NodeName); len(errs) > 0 {
		return fmt.Errorf("--node-name %q is not a valid node name: %s", f.NodeName, strings.Join(errs, "; "))
	}
	return nil
}

// normalize fills in defaults and rejects paths that would otherwise surface as
// confusing failures deep inside a phase.
func normalize(f Flags) (Flags, error) {
	dirs := []struct {
		flag string
		val  *string
		def  string
	}{
		{"--bundle", &f.BundleDir, DefaultBundleDir},
		{"--cert-dir", &f.CertDir, DefaultCertDir},
		{"--kubeconfig-dir", &f.KubeconfigDir, DefaultKubeconfigDir},
	}
	for _, d := range dirs {
		if *d.val == "" {
			*d.val = d.def
		}
		// Paths end up in unit files and kubeconfigs on the host, where a relative
		// path would depend on whatever directory kubeforge happened to run from.
		if !filepath.IsAbs(*d.val) {
			return f, fmt.Errorf("%s %q: must be an absolute path", d.flag, *d.val)
		}
		*d.val = filepath.Clean(*d.val)
		// kubeforge's own files go there, and reset removes what it put there:
		// never a system directory.
		if d.flag != "--bundle" {
			if err := config.CheckOwnDir(d.flag, *d.val); err != nil {
				return f, err
			}
		}
	}
	if f.ConfigPath != "" {
		abs, err := filepath.Abs(f.ConfigPath)
		if err != nil {
			return f, fmt.Errorf("--config %q: %w", f.ConfigPath, err)
		}
		f.ConfigPath = abs
	}
	return f, nil
}

func (n *Node) Logger() *workflow.Logger { return n.log }
func (n *Node) Context() context.Context { return n.ctx }
func (n *Node) Host() host.Host          { return n.host }
func (n *Node) Config() *config.Cluster  { return n.cfg }
func (n *Node) Node() *config.Host       { return n.node }
func (n *Node) NodeName() string         { return n.flags.NodeName }
func (n *Node) DryRun() bool             { return n.flags.DryRun }
func (n *Node) ConfigPath() string       { return n.flags.ConfigPath }
func (n *Node) BundleDir() string        { return n.flags.BundleDir }
func (n *Node) CertDir() string          { return n.flags.CertDir }
func (n *Node) KubeconfigDir() string    { return n.flags.KubeconfigDir }
func (n *Node) Flags() Flags             { return n.flags }

// Discovered is nil for init and reset: their phases work from the host's files.
func (n *Node) Discovered() (*discovery.Result, error) { return nil, nil }

// Close prints the dry-run plan, if any, and releases the host and the signal
// handler. The runner calls it once the run ends, also after a failure, so a dry
// run shows what it planned up to the failing phase. Calling it again returns the
// first result.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		if n.stop != nil {
			n.stop()
		}
		if n.dryRun != nil {
			if err := n.dryRun.PrintPlan(n.log.Writer()); err != nil {
				n.closeErr = fmt.Errorf("printing the dry-run plan: %w", err)
			}
		}
		if n.host != nil {
			if err := n.host.Close(); err != nil {
				n.closeErr = errors.Join(n.closeErr, fmt.Errorf("node %s: close host: %w", n.flags.NodeName, err))
			}
		}
	})
	return n.closeErr
}
