package csrapprover

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/clusterinfo"
)

// Inputs is what Check judges a CSR against.
type Inputs struct {
	// Nodes are the registered Nodes by name. A CSR from a node identity whose
	// Node does not exist is left pending; the other Nodes' names are never
	// approved for a node.
	Nodes Nodes
	// Policy says which names and addresses a kubelet serving certificate may
	// carry, from what the control plane recorded. Nil means no serving CSR is
	// approved; PolicyErr then says why.
	Policy    *Policy
	PolicyErr error
}

// Policy is what a kubelet serving certificate may name. It comes from the
// cluster configuration as the control plane uploaded it (kube-system/
// kubeforge-config), never from a Node's status, which the node writes itself:
//
//   - a node gets its own name and the address(es) recorded for it in the hosts
//     table, nothing else; a node that is not in the table gets nothing;
//   - never a name or address of the API server: kubernetes,
//     kubernetes.default, kubernetes.default.svc, kubernetes.default.svc.<domain>,
//     any service-network IP, the controlPlaneEndpoint, spec.certificates.certSANs
//     and every SAN of the apiserver certificate;
//   - never another host's name or address, nor another Node's name;
//   - never loopback, unspecified, link-local or multicast IPs, nor pod-network ones.
//
// The one exception: a control-plane host's own name and recorded address are
// SANs of the apiserver certificate (and its address may be the endpoint)
// because the apiserver runs on that host, and that host's kubelet must serve
// under them too. They are allowed for that host's own kubelet only; the
// certificate comes from the kubelet-serving CA, which only kube-apiserver
// trusts, and only for kubelets.
type Policy struct {
	hosts     map[string]recordedHost
	names     map[string]forbidden // lower-case DNS name
	wildcards map[string]forbidden // "*.example.com" -> matches one label before ".example.com"
	ips       map[netip.Addr]forbidden
	nets      []forbiddenNet
}

type recordedHost struct {
	addrs        []netip.Addr
	controlPlane bool
}

// forbidden says why a name or IP is refused. ownCP marks entries that a
// control-plane host may still have for itself (see Policy).
type forbidden struct {
	why   string
	ownCP bool
}

type forbiddenNet struct {
	prefix netip.Prefix
	why    string
}

// NewPolicy builds the policy from the cluster configuration and the
// apiserver certificates in use (their SANs are refused too, beyond those the
// configuration implies).
func NewPolicy(cfg *config.Cluster, apiserverCerts ...*x509.Certificate) (*Policy, error) {
	p := &Policy{
		hosts:     map[string]recordedHost{},
		names:     map[string]forbidden{},
		wildcards: map[string]forbidden{},
		ips:       map[netip.Addr]forbidden{},
	}
	n := cfg.Spec.Networking
	// Never exempt: the in-cluster names and the service network.
	for _, name := range []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc." + n.DNSDomain} {
		p.forbidName(name, forbidden{why: "a name of the API server"})
	}
	ranges := []string{n.ServiceCIDR}
	if r := cfg.Spec.Components.APIServer.ExtraArgs["service-cluster-ip-range"]; r != "" {
		ranges = append(ranges, strings.Split(r, ",")...)
	}
	for _, r := range ranges {
		pfx, err := netip.ParsePrefix(strings.TrimSpace(r))
		if err != nil {
			return nil, fmt.Errorf("service network %q: %w", r, err)
		}
		p.nets = append(p.nets, forbiddenNet{pfx.Masked(), "in the service network " + pfx.Masked().String()})
	}
	if n.PodCIDR != "" {
		pfx, err := netip.ParsePrefix(n.PodCIDR)
		if err != nil {
			return nil, fmt.Errorf("pod network %q: %w", n.PodCIDR, err)
		}
		p.nets = append(p.nets, forbiddenNet{pfx.Masked(), "in the pod network " + pfx.Masked().String()})
	}

	// Other hosts' names and addresses: refused for everyone but the host
	// itself (checked per request), and never exempt.
	for _, h := range cfg.Spec.Hosts {
		a, err := netip.ParseAddr(h.Address)
		if err != nil {
			return nil, fmt.Errorf("spec.hosts %s: address %q: %w", h.Name, h.Address, err)
		}
		r := p.hosts[h.Name]
		r.addrs = append(r.addrs, a.Unmap())
		r.controlPlane = r.controlPlane || h.HasRole(config.RoleControlPlane)
		p.hosts[h.Name] = r
	}

	// The apiserver's names: the endpoint, certSANs, what its certificate is
	// issued for on each control-plane host, and the certificates in use.
	ep, _, err := cfg.ControlPlaneEndpointHostPort()
	if err != nil {
		return nil, err
	}
	p.forbid(ep, forbidden{why: "the control-plane endpoint", ownCP: true})
	for _, san := range cfg.Spec.Certificates.CertSANs {
		p.forbid(san, forbidden{why: "a SAN of the API server (spec.certificates.certSANs)", ownCP: true})
	}
	for _, cp := range cfg.HostsWithRole(config.RoleControlPlane) {
		spec, err := certs.SpecFromConfig(cfg, cp.Name)
		if err != nil {
			return nil, err
		}
		l, err := certs.LeafSpecFor(spec, certs.CertAPIServer, "")
		if err != nil {
			return nil, err
		}
		for _, d := range l.DNSNames {
			p.forbid(d, forbidden{why: "a SAN of the API server certificate", ownCP: true})
		}
		for _, ip := range l.IPAddresses {
			p.forbid(ip.String(), forbidden{why: "a SAN of the API server certificate", ownCP: true})
		}
	}
	for _, c := range apiserverCerts {
		for _, d := range c.DNSNames {
			p.forbid(d, forbidden{why: "a SAN of the API server certificate in use", ownCP: true})
		}
		for _, ip := range c.IPAddresses {
			p.forbid(ip.String(), forbidden{why: "a SAN of the API server certificate in use", ownCP: true})
		}
	}
	return p, nil
}

// forbid records a DNS name (wildcards included) or an IP; the first reason
// recorded for a value wins unless a later one may not be exempted.
func (p *Policy) forbid(v string, f forbidden) {
	if a, err := netip.ParseAddr(v); err == nil {
		a = a.Unmap()
		if old, ok := p.ips[a]; !ok || (old.ownCP && !f.ownCP) {
			p.ips[a] = f
		}
		return
	}
	p.forbidName(v, f)
}

func (p *Policy) forbidName(v string, f forbidden) {
	v = canonicalName(v)
	m := p.names
	if strings.HasPrefix(v, "*.") {
		m = p.wildcards
	}
	if old, ok := m[v]; !ok || (old.ownCP && !f.ownCP) {
		m[v] = f
	}
}

func canonicalName(s string) string { return strings.TrimSuffix(strings.ToLower(s), ".") }

// sansOfNode checks a serving certificate's names for node. An error says
// which name is refused and why.
func sansOfNode(req *x509.CertificateRequest, node string, in Inputs) error {
	p := in.Policy
	if p == nil {
		return fmt.Errorf("cannot check its names against the cluster configuration: %v", in.PolicyErr)
	}
	self, recorded := p.hosts[node]
	if !recorded {
		return fmt.Errorf("node %s is not in the hosts table of the cluster configuration (kube-system/%s): a serving certificate names only addresses the control plane recorded for its host", node, clusterinfo.ConfigMapName)
	}
	ownName := canonicalName(node)
	for _, raw := range req.DNSNames {
		n := canonicalName(raw)
		exempt := self.controlPlane && n == ownName
		if f, ok := p.names[n]; ok && !(f.ownCP && exempt) {
			return fmt.Errorf("DNS name %q is %s", raw, f.why)
		}
		if i := strings.IndexByte(n, '.'); i > 0 {
			if f, ok := p.wildcards["*"+n[i:]]; ok && !(f.ownCP && exempt) {
				return fmt.Errorf("DNS name %q is covered by %s", raw, f.why)
			}
		}
		if n != ownName {
			if _, ok := p.hosts[n]; ok {
				return fmt.Errorf("DNS name %q is the name of another host", raw)
			}
			if _, ok := in.Nodes[n]; ok {
				return fmt.Errorf("DNS name %q is the name of another Node", raw)
			}
			return fmt.Errorf("DNS name %q is not node %s's own name", raw, node)
		}
	}
	for _, ip := range req.IPAddresses {
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			return fmt.Errorf("IP %v does not parse", ip)
		}
		a = a.Unmap()
		if a.IsLoopback() || a.IsUnspecified() || a.IsMulticast() || a.IsLinkLocalUnicast() || a.IsInterfaceLocalMulticast() {
			return fmt.Errorf("IP %s is a loopback, unspecified, link-local or multicast address", a)
		}
		for _, r := range p.nets {
			if r.prefix.Contains(a) {
				return fmt.Errorf("IP %s is %s", a, r.why)
			}
		}
		own := false
		for _, o := range self.addrs {
			own = own || o == a
		}
		if f, ok := p.ips[a]; ok && !(f.ownCP && own && self.controlPlane) {
			return fmt.Errorf("IP %s is %s", a, f.why)
		}
		for name, h := range p.hosts {
			for _, o := range h.addrs {
				if name != node && o == a {
					return fmt.Errorf("IP %s is the recorded address of host %s", a, name)
				}
			}
		}
		if !own {
			return fmt.Errorf("IP %s is not an address recorded for node %s (kube-system/%s has %s)", a, node, clusterinfo.ConfigMapName, addrList(self.addrs))
		}
	}
	return nil
}

func addrList(as []netip.Addr) string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return strings.Join(out, ", ")
}

// inputs gathers what Check needs beyond the Nodes: the uploaded cluster
// configuration, and the apiserver certificate in use when APIServerCert is
// set. A failure leaves every serving CSR pending (PolicyErr), never approved.
func (a *Approver) inputs(ctx context.Context, nodes Nodes) Inputs {
	in := Inputs{Nodes: nodes}
	in.Policy, in.PolicyErr = a.policy(ctx)
	return in
}

func (a *Approver) policy(ctx context.Context) (*Policy, error) {
	cfg, err := clusterinfo.DownloadConfig(ctx, a.Client)
	if err != nil {
		return nil, err
	}
	var in []*x509.Certificate
	if a.APIServerCert != "" {
		data, err := os.ReadFile(a.APIServerCert)
		if err != nil {
			return nil, fmt.Errorf("reading the apiserver certificate: %w", err)
		}
		c, err := certs.ParseCertPEM(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", a.APIServerCert, err)
		}
		in = append(in, c)
	}
	return NewPolicy(cfg, in...)
}
