package preflight

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/kubeforge/kubeforge/bootstrap/config"
)

// PortRange is a port or range of ports of one protocol.
type PortRange struct {
	From, To int
	Proto    string // "tcp" or "udp"
}

// String is firewalld's spelling: "6443/tcp", "2379-2380/tcp".
func (p PortRange) String() string {
	if p.From == p.To {
		return fmt.Sprintf("%d/%s", p.From, p.Proto)
	}
	return fmt.Sprintf("%d-%d/%s", p.From, p.To, p.Proto)
}

// covers reports whether p includes all of q.
func (p PortRange) covers(q PortRange) bool {
	return p.Proto == q.Proto && p.From <= q.From && q.To <= p.To
}

// ParsePortRange reads "6443/tcp", "2379-2380/tcp" and ufw's "30000:32767/tcp".
func ParsePortRange(s string) (PortRange, error) {
	num, proto, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok || (proto != "tcp" && proto != "udp") {
		return PortRange{}, fmt.Errorf("port %q: want PORT[-PORT]/tcp|udp", s)
	}
	lo, hi, isRange := strings.Cut(num, "-")
	if !isRange {
		lo, hi, isRange = strings.Cut(num, ":")
	}
	if !isRange {
		hi = lo
	}
	from, err1 := strconv.Atoi(lo)
	to, err2 := strconv.Atoi(hi)
	if err1 != nil || err2 != nil || from < 1 || to > 65535 || from > to {
		return PortRange{}, fmt.Errorf("port %q: not a port or range in 1..65535", s)
	}
	return PortRange{From: from, To: to, Proto: proto}, nil
}

// RolePort is a port a host needs open and why.
type RolePort struct {
	Port PortRange
	// Listen is set for ports a component of this host binds, which must be free
	// before installation (the Ports check); NodePort ranges and the VXLAN socket
	// are opened by the kernel or kube-proxy, not a listener kubeforge starts.
	Listen bool
	Who    string
}

// NeededPorts lists the ports node's roles need reachable from the other hosts,
// in a stable order. It is the one table both the firewall (open-ports) and the
// port-availability check use.
func NeededPorts(c *config.Cluster, node *config.Host) []RolePort {
	tcp := func(p int) PortRange { return PortRange{p, p, "tcp"} }
	var out []RolePort
	if node.HasRole(config.RoleControlPlane) {
		out = append(out,
			RolePort{tcp(config.DefaultAPIServerPort), true, "kube-apiserver"},
			RolePort{tcp(10257), true, "kube-controller-manager"},
			RolePort{tcp(10259), true, "kube-scheduler"},
		)
	}
	if node.HasRole(config.RoleEtcd) {
		out = append(out,
			RolePort{tcp(2379), true, "etcd clients"},
			RolePort{tcp(2380), true, "etcd peers"},
		)
	}
	// Every host is a node: it runs a kubelet and carries the overlay.
	vxlan := c.Spec.Networking.Overlay.Port
	if vxlan == 0 {
		vxlan = config.DefaultVXLANPort
	}
	out = append(out,
		RolePort{tcp(10250), true, "kubelet"},
		RolePort{PortRange{vxlan, vxlan, "udp"}, false, "VXLAN overlay"},
		RolePort{PortRange{30000, 32767, "tcp"}, false, "NodePort services"},
	)
	if node.HasRole(config.RoleWorker) {
		out = append(out, RolePort{tcp(10256), true, "kube-proxy health check"})
	}
	if c.Spec.TimeSync.Server == node.Name {
		out = append(out, RolePort{PortRange{123, 123, "udp"}, false, "chrony (cluster time server)"})
	}
	return out
}
