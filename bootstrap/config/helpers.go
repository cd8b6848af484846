package config

import (
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"slices"
	"strconv"
)

// HasRole reports whether the host has role.
func (h Host) HasRole(role Role) bool {
	for _, r := range h.Roles {
		if r == role {
			return true
		}
	}
	return false
}

// IP is the host's address, nil when it does not parse (never after Validate).
func (h Host) IP() net.IP { return net.ParseIP(h.Address) }

// SSHUser, SSHPort and SSHKeyPath give the login for a host, with defaults when
// the host has no ssh section.
func (h Host) SSHUser() string {
	if h.SSH == nil || h.SSH.User == "" {
		return DefaultSSHUser
	}
	return h.SSH.User
}

// SSHPort is the host's SSH port, 22 by default.
func (h Host) SSHPort() int {
	if h.SSH == nil || h.SSH.Port == 0 {
		return DefaultSSHPort
	}
	return h.SSH.Port
}

// HostsWithRole returns the hosts that have role, in config order. The order is
// meaningful: the first control-plane host is the default endpoint and time server,
// and the first etcd host bootstraps the etcd cluster.
func (c *Cluster) HostsWithRole(role Role) []Host {
	var out []Host
	for _, h := range c.Spec.Hosts {
		if h.HasRole(role) {
			out = append(out, h)
		}
	}
	return out
}

// Host returns the host called name.
func (c *Cluster) Host(name string) (*Host, bool) {
	for i := range c.Spec.Hosts {
		if c.Spec.Hosts[i].Name == name {
			return &c.Spec.Hosts[i], true
		}
	}
	return nil, false
}

// HostNames lists the distinct host names in config order.
func (c *Cluster) HostNames() []string {
	names := make([]string, 0, len(c.Spec.Hosts))
	for _, h := range c.Spec.Hosts {
		if !slices.Contains(names, h.Name) {
			names = append(names, h.Name)
		}
	}
	return names
}

// ControlPlaneEndpointHostPort splits spec.controlPlaneEndpoint.
func (c *Cluster) ControlPlaneEndpointHostPort() (host string, port int, err error) {
	h, p, err := net.SplitHostPort(c.Spec.ControlPlaneEndpoint)
	if err != nil {
		return "", 0, fmt.Errorf("spec.controlPlaneEndpoint %q: %w", c.Spec.ControlPlaneEndpoint, err)
	}
	port, err = strconv.Atoi(p)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("spec.controlPlaneEndpoint %q: port %q is not a number in 1..65535", c.Spec.ControlPlaneEndpoint, p)
	}
	return h, port, nil
}

// APIServerURL is https://<controlPlaneEndpoint>, the server of every kubeconfig.
func (c *Cluster) APIServerURL() string { return "https://" + c.Spec.ControlPlaneEndpoint }

// APIServerServiceIP is the ClusterIP of the "kubernetes" service: the first address
// of the service CIDR. It must be a SAN of the apiserver certificate.
func (n Networking) APIServerServiceIP() (net.IP, error) { return nthIP(n.ServiceCIDR, 1) }

// ClusterDNSIP is the ClusterIP kubeforge gives the cluster DNS service (the tenth
// address of the service CIDR, as kubeadm does); kubelets point --cluster-dns at it.
func (n Networking) ClusterDNSIP() (net.IP, error) { return nthIP(n.ServiceCIDR, 10) }

// nthIP returns the n-th address after the network address of cidr.
func nthIP(cidr string, n int64) (net.IP, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return nil, fmt.Errorf("CIDR %q: %w", cidr, err)
	}
	p = p.Masked()
	hostBits := p.Addr().BitLen() - p.Bits()
	size := new(big.Int).Lsh(big.NewInt(1), uint(hostBits))
	if big.NewInt(n).Cmp(size) >= 0 {
		return nil, fmt.Errorf("CIDR %q has no address number %d", cidr, n)
	}
	base := new(big.Int).SetBytes(p.Addr().AsSlice())
	v := base.Add(base, big.NewInt(n)).Bytes()
	out := make([]byte, p.Addr().BitLen()/8)
	copy(out[len(out)-len(v):], v)
	return net.IP(out), nil
}

// named pairs each component with its YAML name, for loops over them.
func (cs *Components) named() []struct {
	name string
	c    *Component
} {
	return []struct {
		name string
		c    *Component
	}{
		{"apiServer", &cs.APIServer},
		{"controllerManager", &cs.ControllerManager},
		{"scheduler", &cs.Scheduler},
		{"kubelet", &cs.Kubelet},
		{"kubeProxy", &cs.KubeProxy},
	}
}
