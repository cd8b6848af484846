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
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

// Defaults of the common flags.
const (
	DefaultBundleDir     = "/opt/kubeforge/bundle"
	DefaultCertDir       = "/etc/kubernetes/pki"
	DefaultKubeconfigDir = "/etc/kubernetes"
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
	// instead of making them.
	Host() host.Host
	// NodeName is this node's name in the cluster configuration.
	NodeName() string
	DryRun() bool
	// ConfigPath is the --config file ("" when none was given).
	// TODO(config): add Config() *config.Cluster and Node() once bootstrap/config
	// (Load, ResolveNode) is committed; New will load and resolve it up front so a
	// bad file fails before any phase runs.
	ConfigPath() string
	BundleDir() string
	CertDir() string
	KubeconfigDir() string
}

// From asserts a phase's run data to Data. The error only fires when a phase is
// wired into a workflow whose data initializer builds something else.
func From(d workflow.RunData, phase string) (Data, error) {
	data, ok := d.(Data)
	if !ok {
		return nil, fmt.Errorf("phase %s: run data is %T, which does not implement rundata.Data", phase, d)
	}
	return data, nil
}

// Options are what New needs besides the flags.
type Options struct {
	// Out receives progress lines; nil means stdout.
	Out io.Writer
	// OpenHost opens the machine the phases act on. It is given the resolved node
	// name.
	// TODO(host/local): default to bootstrap/host/local once that package is
	// committed; until then a nil OpenHost leaves Host() nil and phases that need
	// it must not be implemented yet.
	OpenHost func(nodeName string) (host.Host, error)
	// Hostname replaces os.Hostname (tests).
	Hostname func() (string, error)
}

// Node is the run data of one init, join or reset on this node.
type Node struct {
	flags Flags
	log   *workflow.Logger
	ctx   context.Context
	stop  context.CancelFunc
	host  host.Host

	closeOnce sync.Once
	closeErr  error
}

var _ Data = (*Node)(nil)

// New checks the flags and builds the run data. ctx is the parent context; an
// interrupt (SIGINT/SIGTERM) cancels the run's context so the runner stops at the
// next phase boundary. Close releases everything New acquired.
func New(ctx context.Context, f Flags, opts Options) (*Node, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if opts.Hostname == nil {
		opts.Hostname = os.Hostname
	}
	if opts.Out == nil {
		opts.Out = os.Stdout
	}
	f, err := normalize(f, opts.Hostname)
	if err != nil {
		return nil, err
	}

	n := &Node{flags: f, log: workflow.NewLogger(opts.Out)}
	if opts.OpenHost != nil {
		h, err := opts.OpenHost(f.NodeName)
		if err != nil {
			return nil, fmt.Errorf("node %s: open host: %w", f.NodeName, err)
		}
		// TODO(host/dryrun): with f.DryRun, wrap h in the dry-run host
		// (bootstrap/host/dryrun) here and print its plan from Close.
		n.host = h
	}
	n.ctx, n.stop = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	return n, nil
}

// normalize fills in defaults and rejects values that would otherwise surface as
// confusing failures deep inside a phase.
func normalize(f Flags, hostname func() (string, error)) (Flags, error) {
	if f.NodeName == "" {
		h, err := hostname()
		if err != nil {
			return f, fmt.Errorf("--node-name not given and the hostname is unknown: %w", err)
		}
		// Kubernetes node names are lowercase; hostnames often are not.
		f.NodeName = strings.ToLower(strings.TrimSpace(h))
	}
	if errs := validation.IsDNS1123Subdomain(f.NodeName); len(errs) > 0 {
		return f, fmt.Errorf("--node-name %q is not a valid node name: %s", f.NodeName, strings.Join(errs, "; "))
	}
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
func (n *Node) NodeName() string         { return n.flags.NodeName }
func (n *Node) DryRun() bool             { return n.flags.DryRun }
func (n *Node) ConfigPath() string       { return n.flags.ConfigPath }
func (n *Node) BundleDir() string        { return n.flags.BundleDir }
func (n *Node) CertDir() string          { return n.flags.CertDir }
func (n *Node) KubeconfigDir() string    { return n.flags.KubeconfigDir }
func (n *Node) Flags() Flags             { return n.flags }

// Close releases the host and the signal handler. The runner calls it once the run
// ends; calling it again returns the first result.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		if n.stop != nil {
			n.stop()
		}
		if n.host != nil {
			if err := n.host.Close(); err != nil {
				n.closeErr = errors.Join(n.closeErr, fmt.Errorf("node %s: close host: %w", n.flags.NodeName, err))
			}
		}
	})
	return n.closeErr
}
