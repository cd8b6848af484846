package certs

import (
	"errors"
	"fmt"
	"math/big"
	"net"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Defaults, all kubeadm's except OverlayClientCN which is kubeforge's own.
const (
	DefaultClusterName     = "kubernetes"
	DefaultAPIServerPort   = 6443
	DefaultServiceCIDR     = "10.96.0.0/12"
	DefaultDNSDomain       = "cluster.local"
	DefaultKeyAlgorithm    = RSA2048
	DefaultCAValidity      = 10 * 365 * 24 * time.Hour
	DefaultValidity        = 365 * 24 * time.Hour
	DefaultOverlayClientCN = "kubeforge-overlay"

	// Backdate is how far NotBefore lies in the past. A host whose clock is a few
	// minutes behind the issuer's would otherwise reject a fresh certificate as
	// "not yet valid" (kubeadm's CertificateBackdate is the same 5 minutes).
	Backdate = 5 * time.Minute
)

// Host is a machine that gets host-specific certificates (etcd members).
type Host struct {
	Name    string
	Address string
}

// Spec is everything the PKI depends on. It is deliberately independent of the
// cluster configuration package; SpecFromConfig maps one onto the other.
type Spec struct {
	// ClusterName names the cluster in kubeconfigs (cluster and context names).
	ClusterName string
	// NodeName is the host the files are created for (this host).
	NodeName string
	// AdvertiseAddress is this host's cluster IP; the local kube-apiserver listens
	// on it and controller-manager/scheduler kubeconfigs point at it.
	AdvertiseAddress string
	// APIServerPort is the local kube-apiserver's port (default 6443).
	APIServerPort int
	// ControlPlaneEndpoint (host:port) is where every other client reaches the
	// apiserver: admin, kubelet and kube-proxy kubeconfigs point at it. Default:
	// AdvertiseAddress:APIServerPort.
	ControlPlaneEndpoint string
	// ServiceCIDR's first address is the "kubernetes" service IP, a SAN of the
	// apiserver certificate.
	ServiceCIDR string
	// DNSDomain is the cluster DNS suffix (kubernetes.default.svc.<DNSDomain>).
	DNSDomain string
	// ExtraAPIServerSANs are additional DNS names or IPs for the apiserver cert.
	ExtraAPIServerSANs []string
	// KeyAlgorithm for every key created.
	KeyAlgorithm KeyAlgorithm
	// CAValidity and Validity bound CAs and leaf certificates.
	CAValidity time.Duration
	Validity   time.Duration
	// EtcdHosts are the etcd members. Empty means one member on this node
	// (stacked etcd, as kubeadm does by default).
	EtcdHosts []Host
	// ControlPlaneHosts are the hosts running kube-apiserver. Their names and
	// addresses are added to the apiserver certificate so that one certificate is
	// valid on each of them.
	ControlPlaneHosts []Host
	// OverlayClientCN is the common name of the overlay agent's etcd client
	// certificate (what etcd RBAC, if enabled, would see).
	OverlayClientCN string
}

// WithDefaults returns a copy of s with empty fields defaulted.
func (s Spec) WithDefaults() Spec {
	if s.ClusterName == "" {
		s.ClusterName = DefaultClusterName
	}
	if s.APIServerPort == 0 {
		s.APIServerPort = DefaultAPIServerPort
	}
	if s.ControlPlaneEndpoint == "" && s.AdvertiseAddress != "" {
		s.ControlPlaneEndpoint = net.JoinHostPort(s.AdvertiseAddress, strconv.Itoa(s.APIServerPort))
	}
	if s.ServiceCIDR == "" {
		s.ServiceCIDR = DefaultServiceCIDR
	}
	if s.DNSDomain == "" {
		s.DNSDomain = DefaultDNSDomain
	}
	if s.KeyAlgorithm == "" {
		s.KeyAlgorithm = DefaultKeyAlgorithm
	}
	if s.CAValidity == 0 {
		s.CAValidity = DefaultCAValidity
	}
	if s.Validity == 0 {
		s.Validity = DefaultValidity
	}
	if s.OverlayClientCN == "" {
		s.OverlayClientCN = DefaultOverlayClientCN
	}
	if len(s.EtcdHosts) == 0 && s.NodeName != "" && s.AdvertiseAddress != "" {
		s.EtcdHosts = []Host{{Name: s.NodeName, Address: s.AdvertiseAddress}}
	}
	return s
}

// Validate checks a defaulted spec and reports every problem, each naming its field.
func (s Spec) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("certs spec: %s: %s", field, fmt.Sprintf(format, a...)))
	}
	if s.NodeName == "" {
		bad("NodeName", "must not be empty")
	} else if msgs := validation.IsDNS1123Subdomain(s.NodeName); len(msgs) > 0 {
		bad("NodeName", "%q is not a valid node name: %s", s.NodeName, strings.Join(msgs, "; "))
	}
	if net.ParseIP(s.AdvertiseAddress) == nil {
		bad("AdvertiseAddress", "%q is not an IP address", s.AdvertiseAddress)
	}
	if s.APIServerPort < 1 || s.APIServerPort > 65535 {
		bad("APIServerPort", "%d is not a TCP port", s.APIServerPort)
	}
	if h, p, err := net.SplitHostPort(s.ControlPlaneEndpoint); err != nil {
		bad("ControlPlaneEndpoint", "%q is not host:port: %v", s.ControlPlaneEndpoint, err)
	} else {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			bad("ControlPlaneEndpoint", "%q: port %q is not a TCP port", s.ControlPlaneEndpoint, p)
		}
		if err := validSAN(h); err != nil {
			bad("ControlPlaneEndpoint", "%q: %v", s.ControlPlaneEndpoint, err)
		}
	}
	if _, err := s.APIServerServiceIP(); err != nil {
		bad("ServiceCIDR", "%v", err)
	}
	if msgs := validation.IsDNS1123Subdomain(s.DNSDomain); len(msgs) > 0 {
		bad("DNSDomain", "%q: %s", s.DNSDomain, strings.Join(msgs, "; "))
	}
	for i, san := range s.ExtraAPIServerSANs {
		if err := validSAN(san); err != nil {
			bad(fmt.Sprintf("ExtraAPIServerSANs[%d]", i), "%v", err)
		}
	}
	if _, err := s.KeyAlgorithm.keyRequest(); err != nil {
		bad("KeyAlgorithm", "%v", err)
	}
	if s.CAValidity <= 0 {
		bad("CAValidity", "must be positive, got %s", s.CAValidity)
	}
	if s.Validity <= 0 {
		bad("Validity", "must be positive, got %s", s.Validity)
	} else if s.CAValidity > 0 && s.Validity > s.CAValidity {
		bad("Validity", "%s is longer than CAValidity %s; a certificate cannot outlive its CA", s.Validity, s.CAValidity)
	}
	if s.OverlayClientCN == "" {
		bad("OverlayClientCN", "must not be empty")
	}
	for field, hosts := range map[string][]Host{"EtcdHosts": s.EtcdHosts, "ControlPlaneHosts": s.ControlPlaneHosts} {
		seen := map[string]bool{}
		for i, h := range hosts {
			f := fmt.Sprintf("%s[%d]", field, i)
			if h.Name == "" {
				bad(f+".Name", "must not be empty")
			} else if msgs := validation.IsDNS1123Subdomain(h.Name); len(msgs) > 0 {
				bad(f+".Name", "%q: %s", h.Name, strings.Join(msgs, "; "))
			} else if seen[h.Name] {
				bad(f+".Name", "%q is listed twice", h.Name)
			}
			seen[h.Name] = true
			if net.ParseIP(h.Address) == nil {
				bad(f+".Address", "%q is not an IP address", h.Address)
			}
		}
	}
	return errors.Join(errs...)
}

// complete defaults and validates s, the first thing every entry point does.
func (s Spec) complete() (Spec, error) {
	s = s.WithDefaults()
	return s, s.Validate()
}

// APIServerServiceIP is the first address of the service CIDR, the ClusterIP of the
// "kubernetes" service through which pods reach the apiserver.
func (s Spec) APIServerServiceIP() (net.IP, error) {
	_, n, err := net.ParseCIDR(s.ServiceCIDR)
	if err != nil {
		return nil, fmt.Errorf("%q is not a CIDR", s.ServiceCIDR)
	}
	ones, bits := n.Mask.Size()
	if bits-ones < 2 {
		return nil, fmt.Errorf("%q is too small for a service range", s.ServiceCIDR)
	}
	ip := new(big.Int).SetBytes(n.IP)
	ip.Add(ip, big.NewInt(1))
	out := make(net.IP, len(n.IP))
	ip.FillBytes(out)
	return out, nil
}

// etcdHost returns the etcd member named name.
func (s Spec) etcdHost(name string) (Host, bool) {
	for _, h := range s.EtcdHosts {
		if h.Name == name {
			return h, true
		}
	}
	return Host{}, false
}

// localAPIServerURL is the apiserver on this node (kubeadm's LocalAPIEndpoint).
// LocalAPIServerURL is this node's own apiserver (its advertise address), which
// the controller-manager, the scheduler and a control-plane host's kubelet use.
func (s Spec) LocalAPIServerURL() string { return s.localAPIServerURL() }

func (s Spec) localAPIServerURL() string {
	return "https://" + net.JoinHostPort(s.AdvertiseAddress, strconv.Itoa(s.APIServerPort))
}

// endpointURL is the cluster-wide apiserver URL.
func (s Spec) endpointURL() string { return "https://" + s.ControlPlaneEndpoint }

// validSAN accepts an IP address or a DNS name (wildcards allowed, as in kubeadm's
// certSANs).
func validSAN(s string) error {
	if net.ParseIP(s) != nil {
		return nil
	}
	if strings.HasPrefix(s, "*.") {
		if msgs := validation.IsWildcardDNS1123Subdomain(s); len(msgs) > 0 {
			return fmt.Errorf("%q is neither an IP nor a DNS name: %s", s, strings.Join(msgs, "; "))
		}
		return nil
	}
	if msgs := validation.IsDNS1123Subdomain(s); len(msgs) > 0 {
		return fmt.Errorf("%q is neither an IP nor a DNS name: %s", s, strings.Join(msgs, "; "))
	}
	return nil
}
