package joinphases

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/components/bootstraptoken"
	"github.com/kubeforge/kubeforge/components/discovery"
	"github.com/kubeforge/kubeforge/phases/rundata"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

// Environment variables that keep the secrets of the join command out of the
// process list (`ps` shows every argument to every user of the host).
const (
	TokenEnv          = bootstraptoken.TokenEnv
	CertificateKeyEnv = bootstraptoken.CertificateKeyEnv
)

// TakeSecrets returns the token and certificate key, from the flags or else
// from $KUBEFORGE_TOKEN and $KUBEFORGE_CERTIFICATE_KEY, and removes both
// variables from this process's environment: every command kubeforge starts
// (ip, iptables, systemctl, ...) would otherwise inherit them.
func TakeSecrets(token, certificateKey string) (string, string) {
	if token == "" {
		token = os.Getenv(TokenEnv)
	}
	if certificateKey == "" {
		certificateKey = os.Getenv(CertificateKeyEnv)
	}
	_ = os.Unsetenv(TokenEnv)
	_ = os.Unsetenv(CertificateKeyEnv)
	return token, certificateKey
}

// Flags are join's own flags; the endpoint is its argument.
type Flags struct {
	Endpoint       string
	Token          string
	CAHashes       []string
	Etcd           bool
	ControlPlane   bool
	CertificateKey string
	Timeout        time.Duration
	// IgnorePreflightErrors and FixPreflight are the preflight phase's
	// --ignore-preflight-errors and --fix.
	IgnorePreflightErrors []string
	FixPreflight          bool
}

// AddFlags registers the flags on fs.
func (f *Flags) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.Token, "token", "", "Bootstrap token <id>.<secret> (or $"+TokenEnv+", which keeps it out of the process list)")
	fs.StringSliceVar(&f.CAHashes, "discovery-token-ca-cert-hash", nil, "Public-key pin of the cluster CA, sha256:<hex> (repeatable: any one must match)")
	fs.BoolVar(&f.Etcd, "etcd", false, "Also run an etcd member on this host (needs --certificate-key)")
	fs.BoolVar(&f.ControlPlane, "control-plane", false, "Join as a control-plane host (needs --certificate-key)")
	fs.StringVar(&f.CertificateKey, "certificate-key", "", "Key that decrypts the uploaded certificates: with --etcd this host's etcd member certificates, with --control-plane the CA keys (or $"+CertificateKeyEnv+")")
	fs.StringSliceVar(&f.IgnorePreflightErrors, "ignore-preflight-errors", nil, "Preflight checks whose errors are only warnings, e.g. Swap,Mem; 'all' ignores every error")
	fs.BoolVar(&f.FixPreflight, "fix", false, "Apply the fixes of failed preflight checks (as 'kubeforge preflight --fix', with the cluster's configuration from discovery), then check again")
	fs.DurationVar(&f.Timeout, "discovery-timeout", discovery.DefaultTimeout, "How long discovery waits for the API server and for cluster-info to be signed for the token")
}

// Data is join's run data: the common run data plus discovery, which supplies
// the cluster configuration and this host's entry when --config is not given.
type Data struct {
	base  *rundata.Node
	flags Flags

	once sync.Once
	res  *discovery.Result
	err  error
	cfg  *config.Cluster
	node *config.Host
}

// NewData wraps n. Flags missing a value take it from the environment.
func NewData(n *rundata.Node, f Flags) (*Data, error) {
	f.Token, f.CertificateKey = TakeSecrets(f.Token, f.CertificateKey)
	if (f.Etcd || f.ControlPlane) && f.CertificateKey == "" {
		return nil, fmt.Errorf("%w: --etcd and --control-plane need --certificate-key (or $%s): the certificates they need are uploaded encrypted with it",
			discovery.ErrBadInput, CertificateKeyEnv)
	}
	if f.Endpoint == "" {
		if n.Config() == nil {
			return nil, fmt.Errorf("%w: the API server endpoint (host:port) is required: kubeforge join ENDPOINT --token ... --discovery-token-ca-cert-hash ...", discovery.ErrBadInput)
		}
		// --config alone: the phases that work from the configuration run;
		// those that need what only discovery brings say so.
		return &Data{base: n, flags: f}, nil
	}
	// Check the formats now, before any phase and without the network.
	if _, _, err := (discovery.Options{Endpoint: f.Endpoint, Token: f.Token, CAHashes: f.CAHashes, CertificateKey: f.CertificateKey}).Check(); err != nil {
		return nil, err
	}
	return &Data{base: n, flags: f}, nil
}

// ErrNoEndpoint is Discovery's error when join runs without ENDPOINT (from
// --config alone): there is nothing to discover.
var ErrNoEndpoint = errors.New("this phase needs what discovery brings (the cluster CA, the token, the uploaded certificates): run `kubeforge join ENDPOINT --token ... --discovery-token-ca-cert-hash ...`")

// JoinFlags returns the flags as resolved.
func (d *Data) JoinFlags() Flags { return d.flags }

// Discovered runs token discovery once and resolves this host in the cluster's
// configuration (rundata.Data). It only reads (network, and the host's route to
// the API server), so a failure leaves the host unchanged. Without ENDPOINT it
// returns ErrNoEndpoint.
func (d *Data) Discovered() (*discovery.Result, error) {
	d.once.Do(func() { d.res, d.err = d.discover(d.Context()) })
	return d.res, d.err
}

func (d *Data) discover(ctx context.Context) (*discovery.Result, error) {
	if d.flags.Endpoint == "" {
		// No ENDPOINT: the configuration and this host come from --config;
		// a phase that needs what only discovery brings (the CA, the
		// token, the uploaded certificates) gets ErrNoEndpoint.
		d.cfg, d.node = d.base.Config(), d.base.Node()
		return nil, ErrNoEndpoint
	}
	o := discovery.Options{Endpoint: d.flags.Endpoint, Token: d.flags.Token, CAHashes: d.flags.CAHashes,
		CertificateKey: d.flags.CertificateKey, Timeout: d.flags.Timeout, Logf: d.Logger().Printf}
	if d.flags.Etcd && !d.flags.ControlPlane {
		// An etcd member host gets its own member certificates, never CA keys.
		o.EtcdMember = d.base.NodeName()
	}
	res, err := discovery.Discover(ctx, o)
	if err != nil {
		return nil, err
	}
	cfg := res.Config
	if local := d.base.Config(); local != nil {
		cfg = local // --config: the operator's file wins over the uploaded one
	}
	if cfg == nil {
		return nil, errors.New("discovery found no cluster configuration")
	}
	addr := ""
	if h, ok := cfg.Host(d.NodeName()); ok {
		addr = h.Address
	} else if addr, err = discovery.SourceAddress(ctx, d.Host(), res.Server); err != nil {
		return nil, fmt.Errorf("%s is not in the cluster configuration and its address towards %s is unknown: %w", d.NodeName(), res.Server, err)
	}
	d.cfg, d.node, err = discovery.ResolveNode(cfg, d.NodeName(), addr, discovery.JoinRoles{Etcd: d.flags.Etcd, ControlPlane: d.flags.ControlPlane})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// Resolve runs discovery (rundata.Resolver): rundata.From calls it before
// every phase, so the first phase to run, the discovery phase in a full join,
// finds the cluster; later phases reuse what it found. Join from --config
// alone has nothing to discover and resolves to the file's configuration.
func (d *Data) Resolve() error {
	if _, err := d.Discovered(); err != nil && !errors.Is(err, ErrNoEndpoint) {
		return err
	}
	return nil
}

// Config is the cluster configuration, with this host's entry as resolved: nil
// until Resolve succeeded.
func (d *Data) Config() *config.Cluster { return d.cfg }

// Node is this host's entry: nil until Resolve succeeded.
func (d *Data) Node() *config.Host { return d.node }

// NodeName is the resolved node's name once known.
func (d *Data) NodeName() string {
	if d.node != nil {
		return d.node.Name
	}
	return d.base.NodeName()
}

var (
	_ rundata.Data     = (*Data)(nil)
	_ rundata.Resolver = (*Data)(nil)
)

// The rest of rundata.Data, and Close for the runner, come from the common data.
func (d *Data) Logger() *workflow.Logger { return d.base.Logger() }
func (d *Data) Context() context.Context { return d.base.Context() }
func (d *Data) Host() host.Host          { return d.base.Host() }
func (d *Data) DryRun() bool             { return d.base.DryRun() }
func (d *Data) ConfigPath() string       { return d.base.ConfigPath() }
func (d *Data) BundleDir() string        { return d.base.BundleDir() }
func (d *Data) CertDir() string          { return d.base.CertDir() }
func (d *Data) KubeconfigDir() string    { return d.base.KubeconfigDir() }
func (d *Data) Close() error             { return d.base.Close() }
