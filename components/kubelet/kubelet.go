// Package kubelet installs and starts the node agent: binary from the bundle,
// KubeletConfiguration, kubelet.service, and on a joining node the bootstrap
// kubeconfig with which the kubelet obtains its own client certificate through a
// CSR (TLS bootstrap). The serving certificate comes through a CSR as well
// (serverTLSBootstrap); package csrapprover approves those.
package kubelet

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/component"
	"github.com/kubeforge/kubeforge/components/containerd"
	"github.com/kubeforge/kubeforge/components/hostenv"
	"github.com/kubeforge/kubeforge/components/install"
)

// Paths and names on the host (kubeadm's, so operators find them where they
// expect; the kubeconfigs follow --kubeconfig-dir).
const (
	UnitName   = "kubelet.service"
	ConfigPath = "/var/lib/kubelet/config.yaml"
	DataDir    = "/var/lib/kubelet"
	// ClientCertPath is where the kubelet keeps its rotated client certificate;
	// kubelet.conf points at it once TLS bootstrap is done.
	ClientCertPath = "/var/lib/kubelet/pki/kubelet-client-current.pem"
	// ServingCertPath is the serving certificate issued through a CSR.
	ServingCertPath = "/var/lib/kubelet/pki/kubelet-server-current.pem"
)

// ControlPlaneTaint keeps ordinary workloads off control-plane nodes, as kubeadm.
const ControlPlaneTaint = "node-role.kubernetes.io/control-plane:NoSchedule"

// Bootstrap is how a joining node gets its first credential.
type Bootstrap struct {
	// Server is the apiserver URL from the verified cluster-info.
	Server string
	// CAPEM is the cluster CA, pinned by discovery.
	CAPEM []byte
	// Token is the join token ("<id>.<secret>"). Never logged.
	Token string
}

// Options are what Ensure works on.
type Options struct {
	Host    host.Host
	Cluster *config.Cluster
	Node    config.Host
	// BundleDir holds bin/kubelet; BinDir is where it goes.
	BundleDir, BinDir string
	CertDir           string
	KubeconfigDir     string
	// Bootstrap is set on a joining node; without it kubelet.conf must exist (init
	// writes it from the CA).
	Bootstrap *Bootstrap
	// CgroupDriver is containerd's; Ensure detects it when empty.
	CgroupDriver string
	// Taints to register the Node with (ControlPlaneTaint on control-plane hosts).
	Taints  []string
	DryRun  bool
	Timeout time.Duration // bounds waiting for TLS bootstrap; 2 minutes when zero
	Logf    func(format string, a ...any)
}

// Result says what Ensure did.
type Result struct {
	Changed bool
	Detail  string
}

func (o *Options) defaults() {
	if o.BinDir == "" {
		o.BinDir = install.DefaultBinDir
	}
	if o.CertDir == "" {
		o.CertDir = certs.DefaultCertDir
	}
	if o.KubeconfigDir == "" {
		o.KubeconfigDir = certs.DefaultKubeconfigDir
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Minute
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
}

func (o *Options) kubeconfig() string { return path.Join(o.KubeconfigDir, "kubelet.conf") }
func (o *Options) bootstrapKubeconfig() string {
	return path.Join(o.KubeconfigDir, "bootstrap-kubelet.conf")
}
func (o *Options) caFile() string { return path.Join(o.CertDir, "ca.crt") }

// BootstrapKubeconfig renders the bootstrap kubeconfig: the pinned CA, the
// server, and the token as bearer credential (mode 0600 on disk).
func BootstrapKubeconfig(b Bootstrap, clusterName string) ([]byte, error) {
	if b.Server == "" || len(b.CAPEM) == 0 || b.Token == "" {
		return nil, errors.New("bootstrap kubeconfig: server, CA and token are all required")
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[clusterName] = &clientcmdapi.Cluster{Server: b.Server, CertificateAuthorityData: b.CAPEM}
	cfg.AuthInfos["tls-bootstrap-token-user"] = &clientcmdapi.AuthInfo{Token: b.Token}
	cfg.Contexts["tls-bootstrap-token-user@"+clusterName] = &clientcmdapi.Context{Cluster: clusterName, AuthInfo: "tls-bootstrap-token-user"}
	cfg.CurrentContext = "tls-bootstrap-token-user@" + clusterName
	return clientcmd.Write(*cfg)
}

// ResolvConf picks the resolver file for pods: on hosts whose /etc/resolv.conf
// points at systemd-resolved's stub (127.0.0.53, Ubuntu's default) pods would
// get an address that means their own loopback, so the kubelet is given the
// real upstream list systemd-resolved keeps, as kubeadm does.
func ResolvConf(ctx context.Context, h host.Host) string {
	data, err := h.ReadFile(ctx, "/etc/resolv.conf")
	if err == nil && strings.Contains(string(data), "nameserver 127.0.0.53") {
		if _, err := h.Stat(ctx, "/run/systemd/resolve/resolv.conf"); err == nil {
			return "/run/systemd/resolve/resolv.conf"
		}
	}
	return "/etc/resolv.conf"
}

// Ensure brings the kubelet to the desired state and, when it (re)started it,
// waits until the kubelet holds a client certificate (TLS bootstrap done).
// Every input is checked before the first change.
func Ensure(ctx context.Context, o Options) (Result, error) {
	o.defaults()
	h := o.Host
	if h == nil || o.Cluster == nil {
		return Result{}, errors.New("kubelet: no host or no cluster configuration")
	}
	if o.Node.Name == "" || o.Node.Address == "" {
		return Result{}, fmt.Errorf("kubelet: node name and address are required (got %q, %q)", o.Node.Name, o.Node.Address)
	}
	if o.CgroupDriver == "" {
		env, err := hostenv.Detect(ctx, h)
		if err != nil {
			return Result{}, err
		}
		o.CgroupDriver = env.CgroupDriver()
	}
	// The same helper places Service kube-dns (components/coredns).
	dns, err := o.Cluster.Spec.Networking.ClusterDNSIP()
	if err != nil {
		return Result{}, fmt.Errorf("spec.networking.serviceCIDR: %w", err)
	}
	cfg, err := RenderConfig(ConfigOptions{
		CgroupDriver:    o.CgroupDriver,
		ClusterDNS:      dns.String(),
		ClusterDomain:   o.Cluster.Spec.Networking.DNSDomain,
		ClientCAFile:    o.caFile(),
		ResolvConf:      ResolvConf(ctx, h),
		RuntimeEndpoint: "unix://" + containerd.Socket,
	})
	if err != nil {
		return Result{}, err
	}
	unit, err := Unit(UnitOptions{BinDir: o.BinDir, NodeName: o.Node.Name, NodeIP: o.Node.Address, Taints: o.Taints,
		Kubeconfig: o.kubeconfig(), BootstrapKubeconfig: o.bootstrapKubeconfig(), ExtraArgs: o.Cluster.Spec.Components.Kubelet.ExtraArgs})
	if err != nil {
		return Result{}, fmt.Errorf("spec.components.kubelet.extraArgs: %w", err)
	}
	if _, err := install.Verify(o.BundleDir, Footprint.Binaries...); err != nil {
		return Result{}, err
	}
	creds, err := o.planCredentials(ctx)
	if err != nil {
		return Result{}, err
	}

	// Changes from here on.
	changed := false
	bins, err := install.Binaries(ctx, install.Options{Host: h, BundleDir: o.BundleDir, BinDir: o.BinDir, Logf: o.Logf}, Footprint.Binaries...)
	if err != nil {
		return Result{}, err
	}
	changed = bins.Changed()
	for _, f := range creds {
		ch, err := component.WriteIfChanged(ctx, h, f.path, f.data, f.mode, f.secret)
		if err != nil {
			return Result{}, err
		}
		if ch {
			o.Logf("wrote %s", f.path)
		}
		changed = changed || ch
	}
	// 0600 (CIS 4.1.9): only the kubelet, which runs as root, reads it.
	cfgChanged, err := component.WriteIfChanged(ctx, h, ConfigPath, cfg, 0o600, false)
	if err != nil {
		return Result{}, err
	}
	unitChanged, started, err := component.RunUnit(ctx, h, UnitName, unit, cfgChanged || bins.Changed())
	if err != nil {
		return Result{}, err
	}
	changed = changed || cfgChanged || unitChanged || started
	if o.DryRun {
		return Result{Changed: changed, Detail: "dry run"}, nil
	}
	if !changed {
		return Result{Detail: fmt.Sprintf("kubelet of %s already configured and running", o.Node.Name)}, nil
	}
	took, err := o.waitClientCert(ctx)
	if err != nil {
		return Result{}, err
	}
	return Result{Changed: true, Detail: fmt.Sprintf("kubelet of %s running (cgroup driver %s, cluster DNS %s), client certificate in place after %s",
		o.Node.Name, o.CgroupDriver, dns, took.Round(10*time.Millisecond))}, nil
}

type file struct {
	path   string
	data   []byte
	mode   fs.FileMode
	secret bool
}

// planCredentials decides what credential files the kubelet needs and checks
// that what is on the host belongs to this cluster. A kubelet.conf of another
// cluster (a host that was not reset) is an error, not something to overwrite.
func (o *Options) planCredentials(ctx context.Context) ([]file, error) {
	h := o.Host
	kc, err := h.ReadFile(ctx, o.kubeconfig())
	haveKC := err == nil
	if err != nil && !host.IsNotExist(err) {
		return nil, err
	}
	if o.Bootstrap == nil {
		if !haveKC {
			return nil, fmt.Errorf("%s: %s is missing; on the first control-plane host `kubeforge init phase kubeconfig kubelet` writes it", h.Name(), o.kubeconfig())
		}
		return nil, nil
	}
	ca, err := certs.ParseCertPEM(o.Bootstrap.CAPEM)
	if err != nil {
		return nil, fmt.Errorf("cluster CA from discovery: %w", err)
	}
	files := []file{}
	cur, err := h.ReadFile(ctx, o.caFile())
	switch {
	case host.IsNotExist(err):
		files = append(files, file{path: o.caFile(), data: o.Bootstrap.CAPEM, mode: 0o644})
	case err != nil:
		return nil, err
	default:
		have, perr := certs.ParseCertPEM(cur)
		if perr != nil || !have.Equal(ca) {
			return nil, fmt.Errorf("%s: %s holds a different CA than the cluster's (%s): the host belongs to another cluster; run `kubeforge reset` on it first",
				h.Name(), o.caFile(), certs.CAHash(ca))
		}
	}
	if haveKC {
		if err := sameCluster(kc, ca); err != nil {
			return nil, fmt.Errorf("%s: %s: %w; run `kubeforge reset` on it first", h.Name(), o.kubeconfig(), err)
		}
		// Bootstrapped already: the token is not needed (and may have expired).
		return files, nil
	}
	bk, err := BootstrapKubeconfig(*o.Bootstrap, o.Cluster.Metadata.Name)
	if err != nil {
		return nil, err
	}
	return append(files, file{path: o.bootstrapKubeconfig(), data: bk, mode: 0o600, secret: true}), nil
}

// sameCluster checks that a kubeconfig trusts ca.
func sameCluster(kubeconfig []byte, ca *x509.Certificate) error {
	cfg, err := clientcmd.Load(kubeconfig)
	if err != nil {
		return fmt.Errorf("not a kubeconfig: %w", err)
	}
	for _, c := range cfg.Clusters {
		have, err := certs.ParseCertPEM(c.CertificateAuthorityData)
		if err == nil && have.Equal(ca) {
			return nil
		}
	}
	return errors.New("it trusts a different CA than the cluster's: the host belongs to another cluster")
}

// waitClientCert waits for TLS bootstrap: kubelet.conf written and pointing at
// a client certificate on disk.
func (o *Options) waitClientCert(ctx context.Context) (time.Duration, error) {
	h := o.Host
	start := time.Now()
	err := component.Poll(ctx, 200*time.Millisecond, o.Timeout, func(ctx context.Context) (bool, error) {
		_, kcErr := h.Stat(ctx, o.kubeconfig())
		_, certErr := h.Stat(ctx, ClientCertPath)
		return kcErr == nil && (o.Bootstrap == nil || certErr == nil), nil
	})
	switch {
	case ctx.Err() != nil:
		return 0, ctx.Err()
	case err != nil:
		return 0, fmt.Errorf("%s: the kubelet has no client certificate after %s (TLS bootstrap did not complete; is the join token valid and the controller-manager's CSR approval running?)%s",
			h.Name(), o.Timeout, component.JournalTail(ctx, h, UnitName, 8))
	}
	return time.Since(start), nil
}
