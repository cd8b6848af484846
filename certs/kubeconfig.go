package certs

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"path/filepath"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Kubeconfig file names, kubeadm's, plus kube-proxy.conf (kubeadm hands kube-proxy a
// service-account token instead; a binary install runs kube-proxy as a systemd unit
// before any service account exists, so it gets a client certificate).
const (
	KubeconfigAdmin             = "admin.conf"
	KubeconfigSuperAdmin        = "super-admin.conf"
	KubeconfigControllerManager = "controller-manager.conf"
	KubeconfigScheduler         = "scheduler.conf"
	KubeconfigKubelet           = "kubelet.conf"
	KubeconfigKubeProxy         = "kube-proxy.conf"
)

type kubeconfigDef struct {
	name    string
	subject func(s *Spec) pkix.Name
	// local kubeconfigs talk to the apiserver on this node, as kubeadm does for
	// controller-manager and scheduler: they then keep working when the
	// load-balanced endpoint is down, and only ever depend on their own node.
	local bool
}

var kubeconfigCatalog = []kubeconfigDef{
	{name: KubeconfigAdmin, subject: fixedSubject("kubernetes-admin", ClusterAdminsGroup)},
	{name: KubeconfigSuperAdmin, subject: fixedSubject("kubernetes-super-admin", MastersGroup)},
	{name: KubeconfigControllerManager, subject: fixedSubject("system:kube-controller-manager"), local: true},
	{name: KubeconfigScheduler, subject: fixedSubject("system:kube-scheduler"), local: true},
	{name: KubeconfigKubelet, subject: func(s *Spec) pkix.Name {
		return pkix.Name{CommonName: "system:node:" + s.NodeName, Organization: []string{NodesGroup}}
	}},
	{name: KubeconfigKubeProxy, subject: fixedSubject("system:kube-proxy")},
}

func fixedSubject(cn string, orgs ...string) func(*Spec) pkix.Name {
	return func(*Spec) pkix.Name { return pkix.Name{CommonName: cn, Organization: orgs} }
}

// KubeconfigNames lists the kubeconfigs of a control-plane node.
func KubeconfigNames() []string {
	out := make([]string, len(kubeconfigCatalog))
	for i, d := range kubeconfigCatalog {
		out[i] = d.name
	}
	return out
}

func lookupKubeconfig(name string) (kubeconfigDef, bool) {
	for _, d := range kubeconfigCatalog {
		if d.name == name {
			return d, true
		}
	}
	return kubeconfigDef{}, false
}

func unknownKubeconfig(name string) error {
	return fmt.Errorf("unknown kubeconfig %q (known: %v)", name, KubeconfigNames())
}

// KubeconfigSpec is one kubeconfig with an embedded client certificate.
type KubeconfigSpec struct {
	ClusterName string
	Server      string // https://host:port
	Client      LeafSpec
}

// KubeconfigSpecFor returns the spec of the named kubeconfig for spec.NodeName.
// With nodeName set, kubelet.conf is for that node instead, which is how the host
// holding the CA issues a worker's kubelet.conf.
func KubeconfigSpecFor(spec Spec, name, nodeName string) (KubeconfigSpec, error) {
	s, err := spec.complete()
	if err != nil {
		return KubeconfigSpec{}, err
	}
	d, ok := lookupKubeconfig(name)
	if !ok {
		return KubeconfigSpec{}, unknownKubeconfig(name)
	}
	if nodeName != "" {
		s.NodeName = nodeName
	}
	return s.kubeconfigSpec(d), nil
}

func (s *Spec) kubeconfigSpec(d kubeconfigDef) KubeconfigSpec {
	server := s.endpointURL()
	if d.local {
		server = s.localAPIServerURL()
	}
	return KubeconfigSpec{
		ClusterName: s.ClusterName,
		Server:      server,
		Client: LeafSpec{
			Subject:      d.subject(s),
			Usages:       []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			KeyAlgorithm: s.KeyAlgorithm,
			Validity:     s.Validity,
		},
	}
}

// BuildKubeconfig issues the client certificate with ca and returns the kubeconfig
// with CA, certificate and key embedded, serialized by clientcmd.
func BuildKubeconfig(ca *CA, ks KubeconfigSpec) ([]byte, error) {
	certPEM, keyPEM, err := Issue(ca, ks.Client)
	if err != nil {
		return nil, err
	}
	return kubeconfigBytes(ks.ClusterName, ks.Server, ks.Client.Subject.CommonName, ca.CertPEM, certPEM, keyPEM)
}

func kubeconfigBytes(clusterName, server, user string, caPEM, certPEM, keyPEM []byte) ([]byte, error) {
	ctxName := user + "@" + clusterName
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[clusterName] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: certPEM, ClientKeyData: keyPEM}
	cfg.Contexts[ctxName] = &clientcmdapi.Context{Cluster: clusterName, AuthInfo: user}
	cfg.CurrentContext = ctxName
	return clientcmd.Write(*cfg)
}

func (pl *planner) planKubeconfigs(names []string) error {
	if len(names) == 0 {
		names = KubeconfigNames()
	}
	for _, n := range names {
		if _, ok := lookupKubeconfig(n); !ok {
			return unknownKubeconfig(n)
		}
	}
	for _, n := range names {
		d, _ := lookupKubeconfig(n)
		if err := pl.ensureKubeconfig(d); err != nil {
			return err
		}
	}
	return nil
}

func (pl *planner) ensureKubeconfig(d kubeconfigDef) error {
	ca, err := pl.ensureCA(CertCA, false)
	if err != nil {
		return fmt.Errorf("%s: %w", d.name, err)
	}
	caCertPath, caKeyPath, _ := CertPaths(pl.p.certDir(), CertCA)
	ks := pl.s.kubeconfigSpec(d)
	ks.Client.Now = pl.now
	path := filepath.Join(pl.p.kubeconfigDir(), d.name)
	data, ok, err := readOptional(pl.fsys, path)
	if err != nil {
		return err
	}
	if ok {
		if err := checkKubeconfig(pl.fsys, path, data, ca, caCertPath, ks, pl.now); err != nil {
			return err
		}
		pl.say("[kubeconfig] Using existing kubeconfig file: %q", path)
		return nil
	}
	if !ca.CanSign() {
		return fmt.Errorf("cannot create %s: the CA key %s is missing (externally managed CA), so the kubeconfig must be provided", path, caKeyPath)
	}
	data, err = BuildKubeconfig(ca, ks)
	if err != nil {
		return fmt.Errorf("%s: %w", d.name, err)
	}
	pl.say("[kubeconfig] Writing %q kubeconfig file", d.name)
	pl.write(path, data, KubeconfigMode)
	return nil
}

// loadedKubeconfig is the part of a kubeconfig the PKI cares about: its current
// context's cluster and user.
type loadedKubeconfig struct {
	cfg      *clientcmdapi.Config
	cluster  *clientcmdapi.Cluster
	authInfo *clientcmdapi.AuthInfo
	userName string
}

func loadKubeconfig(path string, data []byte) (*loadedKubeconfig, error) {
	cfg, err := clientcmd.Load(data)
	if err != nil {
		return nil, fmt.Errorf("%s: not a valid kubeconfig: %v", path, err)
	}
	ctx, ok := cfg.Contexts[cfg.CurrentContext]
	if !ok {
		return nil, fmt.Errorf("%s: current context %q does not exist", path, cfg.CurrentContext)
	}
	cluster, ok := cfg.Clusters[ctx.Cluster]
	if !ok {
		return nil, fmt.Errorf("%s: context %q names cluster %q, which does not exist", path, cfg.CurrentContext, ctx.Cluster)
	}
	ai, ok := cfg.AuthInfos[ctx.AuthInfo]
	if !ok {
		return nil, fmt.Errorf("%s: context %q names user %q, which does not exist", path, cfg.CurrentContext, ctx.AuthInfo)
	}
	return &loadedKubeconfig{cfg: cfg, cluster: cluster, authInfo: ai, userName: ctx.AuthInfo}, nil
}

// embedsClientCert reports whether the user's certificate is embedded (as kubeforge
// writes it) rather than a file reference (as the kubelet's rotated
// kubelet-client-current.pem is).
func (k *loadedKubeconfig) embedsClientCert() bool { return len(k.authInfo.ClientCertificateData) > 0 }

// clientCert returns the user's certificate, reading a referenced file through fsys.
func (k *loadedKubeconfig) clientCert(fsys FS, path string) (*x509.Certificate, error) {
	data := k.authInfo.ClientCertificateData
	if len(data) == 0 {
		if k.authInfo.ClientCertificate == "" {
			return nil, fmt.Errorf("%s: user %q has no client certificate", path, k.userName)
		}
		var err error
		if data, err = fsys.ReadFile(k.authInfo.ClientCertificate); err != nil {
			return nil, fmt.Errorf("%s: reading client certificate %s: %w", path, k.authInfo.ClientCertificate, err)
		}
	}
	c, err := ParseCertPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s: client certificate of user %q: %w", path, k.userName, err)
	}
	return c, nil
}

// checkKubeconfig verifies an existing kubeconfig against the CA and the spec:
// same CA, same server, client certificate signed by the CA with the expected
// subject, matching key, not expired.
func checkKubeconfig(fsys FS, path string, data []byte, ca *CA, caCertPath string, ks KubeconfigSpec, now time.Time) error {
	k, err := loadKubeconfig(path, data)
	if err != nil {
		return err
	}
	caData := k.cluster.CertificateAuthorityData
	if len(caData) == 0 {
		return fmt.Errorf("%s: cluster has no embedded certificate-authority-data", path)
	}
	kcCA, err := ParseCertPEM(caData)
	if err != nil {
		return fmt.Errorf("%s: certificate-authority-data: %w", path, err)
	}
	if !kcCA.Equal(ca.Cert) {
		return fmt.Errorf("%s: embeds a different CA (%q) than %s; it belongs to another PKI", path, kcCA.Subject.CommonName, caCertPath)
	}
	if k.cluster.Server != ks.Server {
		return fmt.Errorf("%s: server is %q, expected %q", path, k.cluster.Server, ks.Server)
	}
	if !k.embedsClientCert() && k.authInfo.ClientCertificate != "" {
		// Rotated by its owner (the kubelet); its files are not ours to judge.
		return nil
	}
	cert, err := k.clientCert(fsys, path)
	if err != nil {
		return err
	}
	key, err := ParseKeyPEM(k.authInfo.ClientKeyData)
	if err != nil {
		return fmt.Errorf("%s: client key of user %q: %w", path, k.userName, err)
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return fmt.Errorf("%s: client key of user %q does not belong to its client certificate", path, k.userName)
	}
	return checkCert(path, cert, ca, caCertPath, ks.Client, now)
}
