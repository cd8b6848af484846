package certs

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"path/filepath"
	"slices"
)

// Certificate names, kubeadm's (`kubeadm init phase certs <name>`), plus the
// overlay agent's etcd client which is kubeforge's own.
const (
	CertCA                     = "ca"
	CertAPIServer              = "apiserver"
	CertAPIServerKubeletClient = "apiserver-kubelet-client"
	CertFrontProxyCA           = "front-proxy-ca"
	CertFrontProxyClient       = "front-proxy-client"
	CertEtcdCA                 = "etcd-ca"
	CertEtcdServer             = "etcd-server"
	CertEtcdPeer               = "etcd-peer"
	CertEtcdHealthcheckClient  = "etcd-healthcheck-client"
	CertAPIServerEtcdClient    = "apiserver-etcd-client"
	CertEtcdOverlayClient      = "etcd-overlay-client"
	CertServiceAccount         = "sa"
	// CertKubeletServingCA signs the kubelets' serving certificates (the
	// controller-manager's kubernetes.io/kubelet-serving signer) and nothing
	// else. It is a CA of its own so that a node, which chooses the names in its
	// serving CSR, can never obtain a certificate a client trusts for the API
	// server: only kube-apiserver trusts this CA (--kubelet-certificate-authority),
	// and only to verify kubelets.
	CertKubeletServingCA = "kubelet-serving-ca"
)

// Subjects the components expect. Since kubeadm 1.29 the apiserver's kubelet client
// and admin.conf are in the kubeadm:cluster-admins group (bound to cluster-admin by
// a ClusterRoleBinding created at init) instead of system:masters, which RBAC cannot
// revoke; super-admin.conf keeps system:masters as the break-glass credential.
const (
	ClusterAdminsGroup = "kubeadm:cluster-admins"
	MastersGroup       = "system:masters"
	NodesGroup         = "system:nodes"
)

// certDef is one entry of the catalog.
type certDef struct {
	name     string
	baseName string // path below the cert dir without extension
	caName   string // "" for a CA (and for sa)
	long     string
	// leaf builds the certificate's spec; nil for CAs and the SA key pair.
	leaf func(s *Spec, h Host) LeafSpec
	// perEtcdHost marks certificates that differ per etcd member.
	perEtcdHost bool
}

var catalog = []certDef{
	{name: CertCA, baseName: "ca", long: "self-signed Kubernetes CA"},
	{name: CertAPIServer, baseName: "apiserver", caName: CertCA, long: "kube-apiserver serving certificate", leaf: apiserverLeaf},
	{name: CertAPIServerKubeletClient, baseName: "apiserver-kubelet-client", caName: CertCA, long: "kube-apiserver client certificate for kubelets",
		leaf: client("kube-apiserver-kubelet-client", ClusterAdminsGroup)},
	{name: CertFrontProxyCA, baseName: "front-proxy-ca", long: "self-signed front-proxy (aggregation layer) CA"},
	{name: CertFrontProxyClient, baseName: "front-proxy-client", caName: CertFrontProxyCA, long: "front-proxy client certificate",
		leaf: client("front-proxy-client")},
	{name: CertEtcdCA, baseName: "etcd/ca", long: "self-signed etcd CA"},
	{name: CertEtcdServer, baseName: "etcd/server", caName: CertEtcdCA, long: "etcd serving certificate", leaf: etcdMemberLeaf, perEtcdHost: true},
	{name: CertEtcdPeer, baseName: "etcd/peer", caName: CertEtcdCA, long: "etcd peer certificate", leaf: etcdMemberLeaf, perEtcdHost: true},
	{name: CertEtcdHealthcheckClient, baseName: "etcd/healthcheck-client", caName: CertEtcdCA, long: "etcd health-check client certificate",
		leaf: client("kube-etcd-healthcheck-client")},
	{name: CertAPIServerEtcdClient, baseName: "apiserver-etcd-client", caName: CertEtcdCA, long: "kube-apiserver client certificate for etcd",
		leaf: client("kube-apiserver-etcd-client")},
	{name: CertEtcdOverlayClient, baseName: "etcd/overlay-client", caName: CertEtcdCA, long: "overlay agent client certificate for etcd",
		leaf: func(s *Spec, _ Host) LeafSpec { return client(s.OverlayClientCN)(s, Host{}) }},
	{name: CertServiceAccount, baseName: "sa", long: "service-account token signing key pair"},
	{name: CertKubeletServingCA, baseName: "kubelet-serving-ca", long: "self-signed CA of the kubelets' serving certificates"},
}

// CertNames lists the certificates in the order they are created.
func CertNames() []string {
	out := make([]string, len(catalog))
	for i, d := range catalog {
		out[i] = d.name
	}
	return out
}

// caNames lists the CAs.
func caNames() []string { return []string{CertCA, CertFrontProxyCA, CertEtcdCA, CertKubeletServingCA} }

func lookupCert(name string) (certDef, bool) {
	for _, d := range catalog {
		if d.name == name {
			return d, true
		}
	}
	return certDef{}, false
}

// CertPaths returns the certificate and key file of a named certificate under
// certDir (for "sa": sa.pub and sa.key).
func CertPaths(certDir, name string) (cert, key string, err error) {
	d, ok := lookupCert(name)
	if !ok {
		return "", "", unknownCert(name)
	}
	return d.paths(certDir)
}

func (d certDef) paths(certDir string) (cert, key string, err error) {
	base := filepath.Join(certDir, filepath.FromSlash(d.baseName))
	if d.name == CertServiceAccount {
		return base + ".pub", base + ".key", nil
	}
	return base + ".crt", base + ".key", nil
}

func (d certDef) isCA() bool { return d.caName == "" && d.name != CertServiceAccount }

func unknownCert(name string) error {
	return fmt.Errorf("unknown certificate %q (known: %v)", name, CertNames())
}

// LeafSpecFor returns the spec of the named leaf certificate. For per-member etcd
// certificates (etcd-server, etcd-peer) member names the etcd host; it is ignored
// otherwise. The spec gets the spec's key algorithm and validity.
func LeafSpecFor(spec Spec, name, member string) (LeafSpec, error) {
	s, err := spec.complete()
	if err != nil {
		return LeafSpec{}, err
	}
	d, ok := lookupCert(name)
	if !ok {
		return LeafSpec{}, unknownCert(name)
	}
	if d.leaf == nil {
		return LeafSpec{}, fmt.Errorf("%q is not a leaf certificate", name)
	}
	var h Host
	if d.perEtcdHost {
		if h, ok = s.etcdHost(member); !ok {
			return LeafSpec{}, fmt.Errorf("%s: %q is not one of the etcd hosts %v", name, member, hostNames(s.EtcdHosts))
		}
	}
	return s.leafSpec(d, h), nil
}

func (s *Spec) leafSpec(d certDef, h Host) LeafSpec {
	l := d.leaf(s, h)
	l.KeyAlgorithm = s.KeyAlgorithm
	l.Validity = s.Validity
	return l
}

func hostNames(hs []Host) []string {
	var out []string
	for _, h := range hs {
		out = append(out, h.Name)
	}
	return out
}

func client(cn string, orgs ...string) func(*Spec, Host) LeafSpec {
	return func(*Spec, Host) LeafSpec {
		return LeafSpec{
			Subject: pkix.Name{CommonName: cn, Organization: orgs},
			Usages:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
	}
}

// apiserverLeaf has every name the apiserver is reached by: in-cluster service
// names, the service IP, this node, every control-plane host (so one certificate
// works behind a load balancer), the control-plane endpoint and loopback.
func apiserverLeaf(s *Spec, _ Host) LeafSpec {
	var sans sanSet
	sans.add(s.NodeName, "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc."+s.DNSDomain)
	if ip, err := s.APIServerServiceIP(); err == nil {
		sans.add(ip.String())
	}
	sans.add(s.AdvertiseAddress)
	if h, _, err := net.SplitHostPort(s.ControlPlaneEndpoint); err == nil {
		sans.add(h)
	}
	for _, h := range s.ControlPlaneHosts {
		sans.add(h.Name, h.Address)
	}
	sans.add("127.0.0.1")
	sans.add(s.ExtraAPIServerSANs...)
	return LeafSpec{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		DNSNames:    sans.dns,
		IPAddresses: sans.ips,
		Usages:      []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
}

// etcdMemberLeaf is kubeadm's etcd server/peer certificate: CN is the member name,
// and both usages because etcd uses the peer certificate as a client of the other
// members and (since 3.2) checks client auth on the server certificate too.
func etcdMemberLeaf(_ *Spec, h Host) LeafSpec {
	var sans sanSet
	sans.add(h.Name, "localhost", h.Address, "127.0.0.1", "::1")
	return LeafSpec{
		Subject:     pkix.Name{CommonName: h.Name},
		DNSNames:    sans.dns,
		IPAddresses: sans.ips,
		Usages:      []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
}

// sanSet collects SANs without duplicates, keeping their order.
type sanSet struct {
	dns []string
	ips []net.IP
}

func (s *sanSet) add(names ...string) {
	for _, n := range names {
		if n == "" {
			continue
		}
		if ip := net.ParseIP(n); ip != nil {
			if !slices.ContainsFunc(s.ips, ip.Equal) {
				s.ips = append(s.ips, ip)
			}
		} else if !slices.Contains(s.dns, n) {
			s.dns = append(s.dns, n)
		}
	}
}

// CertInfo describes one catalog entry for callers that list or run them (the
// `init phase certs <name>` subphases).
type CertInfo struct {
	Name        string // e.g. "etcd-peer"
	BaseName    string // path below the cert dir without extension, e.g. "etcd/peer"
	CAName      string // signing CA; empty for CAs and the SA key pair
	Description string
}

// Catalog lists every certificate kubeforge manages, CAs before what they sign.
func Catalog() []CertInfo {
	out := make([]CertInfo, len(catalog))
	for i, d := range catalog {
		out[i] = CertInfo{Name: d.name, BaseName: d.baseName, CAName: d.caName, Description: d.long}
	}
	return out
}

// KnownFiles lists every file the PKI writes below the cert dir, relative to
// it (what `kubeforge reset` removes from a cert dir kubeforge did not create).
func KnownFiles() []string {
	var out []string
	for _, d := range catalog {
		if d.name == CertServiceAccount {
			out = append(out, d.baseName+".key", d.baseName+".pub")
			continue
		}
		out = append(out, d.baseName+".crt", d.baseName+".key")
	}
	return out
}
