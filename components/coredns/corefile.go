package coredns

import (
	"bufio"
	"bytes"
	"fmt"
	"math/big"
	"net/netip"
	"strings"

	"github.com/kubeforge/kubeforge/bootstrap/config"
)

// Forward says where CoreDNS sends names that are not the cluster's.
type Forward int

const (
	// ForwardResolvConf forwards to the nameservers of the resolver file the
	// CoreDNS pod inherits from its node (dnsPolicy: Default, so the kubelet's
	// resolvConf, which already skips systemd-resolved's 127.0.0.53 stub).
	ForwardResolvConf Forward = iota
	// ForwardNone answers cluster names only: for a site whose hosts have no
	// resolver CoreDNS can use (none listed, or only a loopback one, which
	// inside the pod would be CoreDNS itself and trip the loop plugin).
	ForwardNone
)

// CorefileOptions are the inputs of the Corefile.
type CorefileOptions struct {
	Networking config.Networking
	CoreDNS    config.CoreDNS
	// Forward applies when CoreDNS.Upstreams is empty; configured upstreams
	// always win.
	Forward Forward
}

// Corefile renders CoreDNS's configuration, in the shape kubeadm v1.34 deploys:
// the kubernetes plugin is authoritative for the cluster domain and for the
// reverse zones of the pod and service CIDRs (PTR records of Services and
// pods), everything else goes to the upstreams. health (:8080) and ready
// (:8181) back the probes, prometheus serves :9153, loop stops a CoreDNS
// that forwards to itself instead of letting it spin, reload picks up a
// changed ConfigMap.
func Corefile(o CorefileOptions) (string, error) {
	n := o.Networking
	zones := []string{n.DNSDomain}
	for _, c := range []struct{ name, cidr string }{{"podCIDR", n.PodCIDR}, {"serviceCIDR", n.ServiceCIDR}} {
		rz, err := ReverseZones(c.cidr)
		if err != nil {
			return "", fmt.Errorf("spec.networking.%s: %w", c.name, err)
		}
		for _, z := range rz {
			if !contains(zones, z) {
				zones = append(zones, z)
			}
		}
	}
	upstreams, err := servers("spec.addons.coreDNS.upstreams", o.CoreDNS.Upstreams)
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	w := func(indent int, format string, a ...any) {
		b.WriteString(strings.Repeat("    ", indent))
		fmt.Fprintf(&b, format, a...)
		b.WriteByte('\n')
	}
	w(0, ".:53 {")
	w(1, "errors")
	w(1, "health {")
	w(2, "lameduck 5s")
	w(1, "}")
	w(1, "ready")
	w(1, "kubernetes %s {", strings.Join(zones, " "))
	w(2, "pods insecure")
	w(2, "fallthrough in-addr.arpa ip6.arpa")
	w(2, "ttl 30")
	w(1, "}")
	w(1, "prometheus :9153")
	switch {
	case len(upstreams) > 0:
		w(1, "forward . %s {", strings.Join(upstreams, " "))
		w(2, "max_concurrent 1000")
		w(1, "}")
	case o.Forward == ForwardResolvConf:
		w(1, "forward . /etc/resolv.conf {")
		w(2, "max_concurrent 1000")
		w(1, "}")
	}
	w(1, "cache 30 {")
	w(2, "disable success %s", n.DNSDomain)
	w(2, "disable denial %s", n.DNSDomain)
	w(1, "}")
	w(1, "loop")
	w(1, "reload")
	w(1, "loadbalance")
	w(0, "}")
	for i, sd := range o.CoreDNS.StubDomains {
		s, err := servers(fmt.Sprintf("spec.addons.coreDNS.stubDomains[%d].servers", i), sd.Servers)
		if err != nil {
			return "", err
		}
		w(0, "%s:53 {", strings.TrimSuffix(strings.ToLower(sd.Domain), "."))
		w(1, "errors")
		w(1, "cache 30")
		w(1, "forward . %s", strings.Join(s, " "))
		w(0, "}")
	}
	return b.String(), nil
}

func servers(path string, list []string) ([]string, error) {
	var out []string
	for i, s := range list {
		ap, err := config.ParseDNSServer(s)
		if err != nil {
			return nil, fmt.Errorf("%s[%d] %q: %w", path, i, s, err)
		}
		out = append(out, ap.String())
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// ReverseZones returns the reverse DNS zones that cover cidr exactly: for a
// prefix on an octet (IPv4) or nibble (IPv6) boundary one zone, otherwise one
// zone per octet/nibble value the prefix spans (10.96.0.0/12 is
// 96.10.in-addr.arpa ... 111.10.in-addr.arpa), so CoreDNS answers PTR
// queries for the cluster's addresses and nothing else.
func ReverseZones(cidr string) ([]string, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", cidr, err)
	}
	p = p.Masked()
	unit, suffix := 8, "in-addr.arpa"
	if p.Addr().Is6() {
		unit, suffix = 4, "ip6.arpa"
	}
	zbits := (p.Bits() + unit - 1) / unit * unit
	if zbits-p.Bits() > 7 {
		return nil, fmt.Errorf("%s: too many reverse zones", cidr)
	}
	var out []string
	size := len(p.Addr().AsSlice())
	base := new(big.Int).SetBytes(p.Addr().AsSlice())
	for i := int64(0); i < 1<<(zbits-p.Bits()); i++ {
		v := new(big.Int).Add(base, new(big.Int).Lsh(big.NewInt(i), uint(size*8-zbits)))
		a := make([]byte, size)
		v.FillBytes(a)
		out = append(out, reverseName(a, zbits, unit, suffix))
	}
	return out, nil
}

func reverseName(a []byte, bits, unit int, suffix string) string {
	var labels []string
	if unit == 8 {
		for i := 0; i < bits/8; i++ {
			labels = append([]string{fmt.Sprint(a[i])}, labels...)
		}
	} else {
		for i := 0; i < bits/4; i++ {
			nib := a[i/2] >> 4
			if i%2 == 1 {
				nib = a[i/2] & 0x0f
			}
			labels = append([]string{fmt.Sprintf("%x", nib)}, labels...)
		}
	}
	return strings.Join(append(labels, suffix), ".")
}

// ResolverNameservers lists the nameserver addresses of a resolv.conf.
func ResolverNameservers(data []byte) []netip.Addr {
	var out []netip.Addr
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "nameserver" {
			if a, err := netip.ParseAddr(f[1]); err == nil {
				out = append(out, a)
			}
		}
	}
	return out
}

// ForwardFor decides where names outside the cluster go, given the resolver
// file CoreDNS pods will inherit: to its nameservers when at least one is a
// real (non-loopback) resolver, nowhere otherwise. The reason is for the log.
func ForwardFor(resolvConfPath string, data []byte) (Forward, string) {
	ns := ResolverNameservers(data)
	var usable []string
	for _, a := range ns {
		if !a.IsLoopback() && !a.IsUnspecified() {
			usable = append(usable, a.String())
		}
	}
	switch {
	case len(usable) > 0:
		return ForwardResolvConf, fmt.Sprintf("names outside the cluster go to the nameservers of %s (%s)", resolvConfPath, strings.Join(usable, ", "))
	case len(ns) == 0:
		return ForwardNone, fmt.Sprintf("%s lists no nameserver: CoreDNS answers cluster names only (set spec.addons.coreDNS.upstreams to resolve other names)", resolvConfPath)
	default:
		return ForwardNone, fmt.Sprintf("%s lists only loopback nameservers, which inside the CoreDNS pod would be CoreDNS itself: CoreDNS answers cluster names only (set spec.addons.coreDNS.upstreams to resolve other names)", resolvConfPath)
	}
}
