package config

import (
	"fmt"
	"net"
	"os"
	"strings"
)

// ResolveNode decides which host of the config "this" machine is.
//
// An explicit nodeName (the --node-name flag) wins and must name a host. Otherwise
// a host matches when its name equals hostname (or hostname's first label, so
// "master01.example.com" finds master01) or its address is one of localAddrs. The
// match must be exactly one host: none, or name and address pointing at different
// hosts, is an error that tells the operator to pass --node-name, because guessing
// would run the wrong role's phases on a machine.
func (c *Cluster) ResolveNode(nodeName string, hostname string, localAddrs []net.IP) (*Host, error) {
	known := strings.Join(c.HostNames(), ", ")
	if nodeName != "" {
		if h, ok := c.Host(nodeName); ok {
			return h, nil
		}
		return nil, fmt.Errorf("--node-name %q is not a host of cluster %q (hosts: %s)", nodeName, c.Metadata.Name, known)
	}

	short, _, _ := strings.Cut(hostname, ".")
	type match struct {
		idx int
		why string
	}
	var matches []match
	for i, h := range c.Spec.Hosts {
		var why []string
		if hostname != "" && (strings.EqualFold(h.Name, hostname) || strings.EqualFold(h.Name, short)) {
			why = append(why, fmt.Sprintf("hostname %q", hostname))
		}
		if ip := h.IP(); ip != nil {
			for _, a := range localAddrs {
				if a.Equal(ip) {
					why = append(why, "local address "+h.Address)
					break
				}
			}
		}
		if len(why) > 0 {
			matches = append(matches, match{i, strings.Join(why, " and ")})
		}
	}

	switch len(matches) {
	case 1:
		return &c.Spec.Hosts[matches[0].idx], nil
	case 0:
		return nil, fmt.Errorf("this machine (hostname %q, addresses %s) matches no host of cluster %q by name or address; pass --node-name (hosts: %s)",
			hostname, formatIPs(localAddrs), c.Metadata.Name, known)
	}
	parts := make([]string, len(matches))
	for i, m := range matches {
		parts[i] = fmt.Sprintf("%s (by %s)", c.Spec.Hosts[m.idx].Name, m.why)
	}
	return nil, fmt.Errorf("this machine matches several hosts of cluster %q: %s; pass --node-name to say which one it is",
		c.Metadata.Name, strings.Join(parts, ", "))
}

// LocalIdentity returns this machine's hostname and the IP addresses of its
// interfaces, the inputs ResolveNode needs.
func LocalIdentity() (hostname string, addrs []net.IP, err error) {
	hostname, err = os.Hostname()
	if err != nil {
		return "", nil, fmt.Errorf("reading the hostname: %w", err)
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		return "", nil, fmt.Errorf("listing network interfaces: %w", err)
	}
	for _, ifc := range ifaces {
		ias, err := ifc.Addrs()
		if err != nil {
			return "", nil, fmt.Errorf("addresses of interface %s: %w", ifc.Name, err)
		}
		for _, a := range ias {
			if n, ok := a.(*net.IPNet); ok {
				addrs = append(addrs, n.IP)
			}
		}
	}
	return hostname, addrs, nil
}

func formatIPs(ips []net.IP) string {
	if len(ips) == 0 {
		return "none"
	}
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	return strings.Join(s, ", ")
}
