// Package kubeproxy runs kube-proxy on a node as kube-proxy.service in iptables
// mode, with its own client identity (system:kube-proxy, bound to
// system:node-proxier by the apiserver's default RBAC).
//
// Where the identity comes from depends on the host: a control-plane host holds
// the cluster CA and issues kube-proxy.conf itself (certs package); a joined
// node has no CA key, so it asks for the certificate with a CSR under its own
// node identity, which kubeforge's CSR approver grants (see
// components/kubelet/csrapprover for why that grants nothing new).
package kubeproxy

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	certv1 "k8s.io/api/certificates/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/certificate/csr"
	"sigs.k8s.io/yaml"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/component"
	"github.com/kubeforge/kubeforge/components/hostenv"
	"github.com/kubeforge/kubeforge/components/install"
)

// Paths and names on the host.
const (
	UnitName   = "kube-proxy.service"
	ConfigDir  = "/var/lib/kube-proxy"
	ConfigPath = ConfigDir + "/config.yaml"
	// User is the identity in kube-proxy's client certificate.
	User = "system:kube-proxy"
)

// ConfigOptions are the inputs of the KubeProxyConfiguration.
type ConfigOptions struct {
	Kubeconfig  string
	ClusterCIDR string
	NodeName    string
	// KeepConntrackMax leaves the host's conntrack table size alone: in a
	// container (or any network namespace but the first) nf_conntrack_max is
	// read-only and kube-proxy would fail setting it.
	KeepConntrackMax bool
}

// RenderConfig returns the KubeProxyConfiguration: iptables mode (every
// supported distribution has iptables; the kernel's nft or legacy backend is
// whatever the host's iptables command uses, the same one the overlay uses),
// metrics on loopback only, health checks on the node.
func RenderConfig(o ConfigOptions) ([]byte, error) {
	if !strings.HasPrefix(o.Kubeconfig, "/") || o.ClusterCIDR == "" || o.NodeName == "" {
		return nil, fmt.Errorf("kube-proxy config: kubeconfig path, cluster CIDR and node name are required (got %+v)", o)
	}
	cfg := map[string]any{
		"apiVersion":         "kubeproxy.config.k8s.io/v1alpha1",
		"kind":               "KubeProxyConfiguration",
		"mode":               "iptables",
		"clientConnection":   map[string]any{"kubeconfig": o.Kubeconfig},
		"clusterCIDR":        o.ClusterCIDR,
		"hostnameOverride":   o.NodeName,
		"bindAddress":        "0.0.0.0",
		"healthzBindAddress": "0.0.0.0:10256",
		"metricsBindAddress": "127.0.0.1:10249",
	}
	if o.KeepConntrackMax {
		cfg["conntrack"] = map[string]any{"maxPerCore": 0}
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	return append([]byte("# KubeProxyConfiguration, written by kubeforge; changes are overwritten.\n"), out...), nil
}

// Unit is kube-proxy.service (loads on systemd 219).
func Unit(binDir string, extra map[string]string) ([]byte, error) {
	flags, err := component.FlagArgs("kube-proxy", extra)
	if err != nil {
		return nil, err
	}
	exec := component.ExecStart(binDir+"/kube-proxy", append([]string{"--config=" + ConfigPath}, flags...))
	return []byte(`# kube-proxy, written by kubeforge. Settings: ` + ConfigPath + `
[Unit]
Description=Kubernetes network proxy (kube-proxy)
Documentation=https://kubernetes.io/docs/reference/command-line-tools-reference/kube-proxy/
Wants=network-online.target
After=network-online.target

[Service]
` + exec + `
Restart=always
RestartSec=5
StartLimitInterval=0
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
`), nil
}

// Credentials produces kube-proxy.conf when the host has none that is valid.
type Credentials interface {
	// Kubeconfig returns a new kube-proxy kubeconfig.
	Kubeconfig(ctx context.Context) ([]byte, error)
	// Describe says where the identity comes from, for the log.
	Describe() string
}

// Options are what Ensure works on.
type Options struct {
	Host          host.Host
	Cluster       *config.Cluster
	Node          config.Host
	BundleDir     string
	BinDir        string
	CertDir       string
	KubeconfigDir string
	Credentials   Credentials
	DryRun        bool
	Timeout       time.Duration // bounds waiting for the first rules; 1 minute when zero
	Logf          func(format string, a ...any)
	Now           func() time.Time
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
		o.Timeout = time.Minute
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// KubeconfigPath is kube-proxy.conf in dir.
func KubeconfigPath(dir string) string { return path.Join(dir, "kube-proxy.conf") }

// Result says what Ensure did.
type Result struct {
	Changed bool
	Detail  string
}

// Ensure installs and starts kube-proxy and waits until it has programmed its
// first rules (the KUBE-SERVICES chain exists in the nat table).
func Ensure(ctx context.Context, o Options) (Result, error) {
	o.defaults()
	h := o.Host
	if h == nil || o.Cluster == nil || o.Credentials == nil {
		return Result{}, errors.New("kube-proxy: no host, cluster configuration or credentials")
	}
	env, err := hostenv.Detect(ctx, h)
	if err != nil {
		return Result{}, err
	}
	kcPath := KubeconfigPath(o.KubeconfigDir)
	cfg, err := RenderConfig(ConfigOptions{Kubeconfig: kcPath, ClusterCIDR: o.Cluster.Spec.Networking.PodCIDR, NodeName: o.Node.Name, KeepConntrackMax: env.Container != ""})
	if err != nil {
		return Result{}, err
	}
	if env.Container != "" {
		o.Logf("adjusted for this host: conntrack maxPerCore 0 (leave nf_conntrack_max as it is): the host is a %s container, where the conntrack table size is read-only", env.Container)
	}
	unit, err := Unit(o.BinDir, o.Cluster.Spec.Components.KubeProxy.ExtraArgs)
	if err != nil {
		return Result{}, fmt.Errorf("spec.components.kubeProxy.extraArgs: %w", err)
	}
	if _, err := install.Verify(o.BundleDir, Footprint.Binaries...); err != nil {
		return Result{}, err
	}
	caPEM, err := h.ReadFile(ctx, path.Join(o.CertDir, "ca.crt"))
	if err != nil {
		return Result{}, fmt.Errorf("%s: the cluster CA: %w", h.Name(), err)
	}
	ca, err := certs.ParseCertPEM(caPEM)
	if err != nil {
		return Result{}, fmt.Errorf("%s: %s/ca.crt: %w", h.Name(), o.CertDir, err)
	}
	cur, err := h.ReadFile(ctx, kcPath)
	if err != nil && !host.IsNotExist(err) {
		return Result{}, err
	}
	var kc []byte
	if !ValidKubeconfig(cur, ca, o.Now()) {
		if kc, err = o.Credentials.Kubeconfig(ctx); err != nil {
			return Result{}, fmt.Errorf("kube-proxy identity (%s): %w", o.Credentials.Describe(), err)
		}
		if !ValidKubeconfig(kc, ca, o.Now()) {
			return Result{}, fmt.Errorf("kube-proxy identity (%s): the new kubeconfig is not a valid %s client of the cluster CA", o.Credentials.Describe(), User)
		}
	}

	bins, err := install.Binaries(ctx, install.Options{Host: h, BundleDir: o.BundleDir, BinDir: o.BinDir, Logf: o.Logf}, Footprint.Binaries...)
	if err != nil {
		return Result{}, err
	}
	changed := bins.Changed()
	if kc != nil {
		if err := h.WriteFile(ctx, kcPath, kc, host.WriteOptions{Mode: 0o600, Secret: true}); err != nil {
			return Result{}, err
		}
		o.Logf("wrote %s (%s)", kcPath, o.Credentials.Describe())
		changed = true
	}
	cfgChanged, err := component.WriteIfChanged(ctx, h, ConfigPath, cfg, 0o600, false)
	if err != nil {
		return Result{}, err
	}
	unitChanged, started, err := component.RunUnit(ctx, h, UnitName, unit, changed || cfgChanged)
	if err != nil {
		return Result{}, err
	}
	changed = changed || unitChanged || started
	if o.DryRun {
		return Result{Changed: changed, Detail: "dry run"}, nil
	}
	took, err := waitRules(ctx, h, o.Timeout)
	if err != nil {
		return Result{}, err
	}
	if !changed {
		return Result{Detail: "kube-proxy already configured and running"}, nil
	}
	return Result{Changed: true, Detail: fmt.Sprintf("kube-proxy running in iptables mode, service rules in place after %s", took.Round(10*time.Millisecond))}, nil
}

// waitRules waits for kube-proxy's KUBE-SERVICES chain in the nat table, the sign
// that it reached the apiserver and synced the services once.
func waitRules(ctx context.Context, h host.Host, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	c := host.Cmd{Argv: []string{"iptables", "-w", "5", "-t", "nat", "-S", "KUBE-SERVICES"}, ReadOnly: true}
	var last string
	err := component.Poll(ctx, 250*time.Millisecond, timeout, func(ctx context.Context) (bool, error) {
		r, err := h.Run(ctx, c)
		switch {
		case err == nil && r.OK():
			return true, nil
		case err != nil:
			last = err.Error()
		default:
			last = strings.TrimSpace(string(r.Stderr))
		}
		return false, nil
	})
	switch {
	case ctx.Err() != nil:
		return 0, ctx.Err()
	case err != nil:
		return 0, fmt.Errorf("%s: kube-proxy programmed no rules within %s (%s)%s", h.Name(), timeout, last, component.JournalTail(ctx, h, UnitName, 8))
	}
	return time.Since(start), nil
}

// ValidKubeconfig reports whether data is a kube-proxy kubeconfig whose client
// certificate (embedded) is issued by ca for User and has a third of its life
// left, so it is kept instead of asking for a new one.
func ValidKubeconfig(data []byte, ca *x509.Certificate, now time.Time) bool {
	if len(data) == 0 {
		return false
	}
	cfg, err := clientcmd.Load(data)
	if err != nil {
		return false
	}
	kctx := cfg.Contexts[cfg.CurrentContext]
	if kctx == nil || cfg.AuthInfos[kctx.AuthInfo] == nil || cfg.Clusters[kctx.Cluster] == nil {
		return false
	}
	crt, err := certs.ParseCertPEM(cfg.AuthInfos[kctx.AuthInfo].ClientCertificateData)
	if err != nil || crt.Subject.CommonName != User || crt.CheckSignatureFrom(ca) != nil {
		return false
	}
	if now.Before(crt.NotBefore) || !now.Before(crt.NotAfter) {
		return false
	}
	return crt.NotAfter.Sub(now) > crt.NotAfter.Sub(crt.NotBefore)/3
}

// Kubeconfig assembles a kube-proxy kubeconfig from its parts.
func Kubeconfig(clusterName, server string, caPEM, certPEM, keyPEM []byte) ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[clusterName] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos[User] = &clientcmdapi.AuthInfo{ClientCertificateData: certPEM, ClientKeyData: keyPEM}
	cfg.Contexts[User+"@"+clusterName] = &clientcmdapi.Context{Cluster: clusterName, AuthInfo: User}
	cfg.CurrentContext = User + "@" + clusterName
	return clientcmd.Write(*cfg)
}

// CSRCredentials asks the cluster for a kube-proxy certificate with a CSR made
// under the node's own identity (its kubelet.conf), and waits until it is
// approved and signed.
type CSRCredentials struct {
	// Client acts as the node (system:node:<name>).
	Client      kubernetes.Interface
	NodeName    string
	ClusterName string
	Server      string
	CAPEM       []byte
	KeyAlg      certs.KeyAlgorithm
	Timeout     time.Duration // 2 minutes when zero
}

func (c *CSRCredentials) Describe() string {
	return "client certificate requested by node " + c.NodeName + " with a CSR"
}

func (c *CSRCredentials) Kubeconfig(ctx context.Context) ([]byte, error) {
	alg := c.KeyAlg
	if alg == "" {
		alg = certs.ECDSAP256
	}
	key, err := certs.GenerateKey(alg)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: User}}, key)
	if err != nil {
		return nil, err
	}
	csrPEM := pemBlock("CERTIFICATE REQUEST", der)
	usages := []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageClientAuth}
	if alg.IsRSA() {
		usages = append(usages, certv1.UsageKeyEncipherment)
	}
	name := "kubeforge-kube-proxy-" + c.NodeName + "-" + fmt.Sprintf("%d", time.Now().Unix())
	// Client may carry no request timeout (a timeout would cut the watch below
	// every 30s); the create gets its own bound.
	cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
	reqName, uid, err := csr.RequestCertificateWithContext(cctx, c.Client, csrPEM, name, certv1.KubeAPIServerClientSignerName, nil, usages, key)
	ccancel()
	if err != nil {
		return nil, fmt.Errorf("creating CSR %s: %w", name, err)
	}
	timeout := c.Timeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	certPEM, err := csr.WaitForCertificate(wctx, c.Client, reqName, uid)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("waiting for CSR %s: %w", reqName, ctx.Err())
		}
		return nil, fmt.Errorf("CSR %s got no certificate (waited up to %s): %s", reqName, timeout, c.whatWasSeen(ctx, reqName, err))
	}
	keyPEM, err := certs.MarshalKeyPEM(key)
	if err != nil {
		return nil, err
	}
	return Kubeconfig(c.ClusterName, c.Server, c.CAPEM, certPEM, keyPEM)
}

// whatWasSeen says where a CSR that got no certificate is stuck, from a fresh
// look at it and at the requesting Node, so the message points at the part of
// the control plane that did not do its job.
func (c *CSRCredentials) whatWasSeen(ctx context.Context, name string, waitErr error) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r, err := c.Client.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Sprintf("the wait ended with %v and reading the CSR failed: %v", waitErr, err)
	}
	var approvedBy string
	for _, cond := range r.Status.Conditions {
		switch cond.Type {
		case certv1.CertificateDenied:
			return fmt.Sprintf("it was denied (%s: %s)", cond.Reason, cond.Message)
		case certv1.CertificateFailed:
			return fmt.Sprintf("signing failed (%s: %s); see kube-controller-manager's journal on a control-plane host", cond.Reason, cond.Message)
		case certv1.CertificateApproved:
			approvedBy = fmt.Sprintf("%s at %s", cond.Reason, cond.LastUpdateTime.UTC().Format(time.RFC3339))
		}
	}
	if approvedBy != "" {
		return fmt.Sprintf("it was approved (%s) but never signed: kube-controller-manager signs approved CSRs; is it running and leading (journalctl -u kube-controller-manager on a control-plane host)?", approvedBy)
	}
	node := "exists"
	if _, err := c.Client.CoreV1().Nodes().Get(ctx, c.NodeName, metav1.GetOptions{}); err != nil {
		node = "could not be read: " + err.Error()
		if apierrors.IsNotFound(err) {
			node = "does not exist, and the approver approves CSRs of registered nodes only (is the kubelet running here? journalctl -u kubelet)"
		}
	}
	return fmt.Sprintf("it is still pending, never approved; Node %s %s; the approver is kubeforge-csr-approver.service on the control-plane hosts (journalctl -u kubeforge-csr-approver says why it left a CSR pending)", c.NodeName, node)
}

// StaticCredentials issues kube-proxy.conf from the cluster CA on a host that
// holds its key (a control-plane host), like the other component kubeconfigs.
type StaticCredentials struct {
	Issue func(ctx context.Context) ([]byte, error)
}

func (s StaticCredentials) Kubeconfig(ctx context.Context) ([]byte, error) { return s.Issue(ctx) }
func (s StaticCredentials) Describe() string                               { return "issued from the cluster CA on this host" }

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
