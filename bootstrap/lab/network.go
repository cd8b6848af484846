package lab

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
)

// The lab network: a "hub" namespace holds a bridge; each host's namespace has an
// eth0 veth into it with a fixed address and MAC; the machine gets one veth into the
// bridge with the subnet's .1, which installs a route for the lab /24 only, so tests
// and users can ssh in. The hub owns .254 and is every host's default gateway (the
// Kubernetes components want a default route) but forwards nothing: ip_forward is
// off there and it has no route out, so no packet from a host can leave the machine.

func run(argv ...string) error {
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func output(argv ...string) (string, error) {
	var stderr bytes.Buffer
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

func netnsExists(name string) bool {
	_, err := os.Stat("/run/netns/" + name)
	return err == nil
}

func linkExists(netns, name string) bool {
	argv := []string{"ip"}
	if netns != "" {
		argv = append(argv, "-n", netns)
	}
	argv = append(argv, "link", "show", "dev", name)
	return exec.Command(argv[0], argv[1:]...).Run() == nil
}

func hubNetns(id string) string           { return "kf-" + id + "-hub" }
func hostNetns(id, host string) string    { return "kf-" + id + "-" + host }
func machineLink(id string) string        { return "kf" + id }
func hostMAC(subnetHost byte) string      { return fmt.Sprintf("02:4b:46:00:00:%02x", subnetHost) }
func hubLinkName(subnetHost byte) string  { return fmt.Sprintf("v%d", subnetHost) }
func nthIP(n *net.IPNet, i byte) net.IP   { b := n.IP.To4(); return net.IPv4(b[0], b[1], b[2], i) }
func prefixLen(n *net.IPNet) int          { o, _ := n.Mask.Size(); return o }
func cidr(ip net.IP, n *net.IPNet) string { return fmt.Sprintf("%s/%d", ip, prefixLen(n)) }

// checkSubnetFree refuses a subnet that overlaps an address or route the machine
// already has, unless it is this lab's own link.
func checkSubnetFree(subnet *net.IPNet, ownLink string) error {
	out, err := output("ip", "-o", "-4", "addr", "show")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || f[1] == ownLink {
			continue
		}
		ip, n, err := net.ParseCIDR(f[3])
		if err != nil {
			continue
		}
		if subnet.Contains(ip) || n.Contains(subnet.IP) {
			return fmt.Errorf("lab subnet %s is taken on this machine: %s has %s (choose another with --subnet)", subnet, f[1], f[3])
		}
	}
	routes, err := output("ip", "-o", "-4", "route", "show")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(routes, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] == "default" || strings.Contains(line, " dev "+ownLink+" ") {
			continue
		}
		_, n, err := net.ParseCIDR(f[0])
		if err != nil {
			if ip := net.ParseIP(f[0]); ip != nil && subnet.Contains(ip) {
				return fmt.Errorf("lab subnet %s is taken on this machine: route %q", subnet, line)
			}
			continue
		}
		if n.Contains(subnet.IP) || subnet.Contains(n.IP) {
			return fmt.Errorf("lab subnet %s is taken on this machine: route %q (choose another with --subnet)", subnet, line)
		}
	}
	return nil
}

// ensureHub creates the hub namespace, its bridge and the machine's veth into it.
func ensureHub(id string, subnet *net.IPNet) error {
	hub := hubNetns(id)
	if !netnsExists(hub) {
		if err := run("ip", "netns", "add", hub); err != nil {
			return err
		}
	}
	steps := [][]string{}
	if !linkExists(hub, "br0") {
		steps = append(steps,
			[]string{"ip", "-n", hub, "link", "add", "br0", "type", "bridge"},
			[]string{"ip", "-n", hub, "addr", "add", cidr(nthIP(subnet, 254), subnet), "dev", "br0"},
		)
	}
	steps = append(steps,
		[]string{"ip", "netns", "exec", hub, "sysctl", "-qw", "net.ipv4.ip_forward=0"},
		[]string{"ip", "-n", hub, "link", "set", "lo", "up"},
		[]string{"ip", "-n", hub, "link", "set", "br0", "up"},
	)
	ml := machineLink(id)
	if !linkExists("", ml) {
		steps = append(steps,
			[]string{"ip", "link", "add", ml, "type", "veth", "peer", "name", "up0", "netns", hub},
			[]string{"ip", "-n", hub, "link", "set", "up0", "master", "br0", "up"},
			[]string{"ip", "addr", "add", cidr(nthIP(subnet, 1), subnet), "dev", ml},
			[]string{"ip", "link", "set", ml, "up"},
		)
	}
	for _, s := range steps {
		if err := run(s...); err != nil {
			return err
		}
	}
	return nil
}

// ensureHostNet creates a host's namespace and its eth0 on the hub bridge.
func ensureHostNet(id string, subnet *net.IPNet, h *HostState) error {
	ns := h.Netns
	if !netnsExists(ns) {
		if err := run("ip", "netns", "add", ns); err != nil {
			return err
		}
	}
	hub := hubNetns(id)
	if !linkExists(ns, "eth0") {
		_ = run("ip", "-n", hub, "link", "del", h.HubLink) // a half-made pair from a crash
		steps := [][]string{
			{"ip", "-n", hub, "link", "add", h.HubLink, "type", "veth", "peer", "name", "eth0", "netns", ns},
			{"ip", "-n", ns, "link", "set", "eth0", "address", h.MAC},
			{"ip", "-n", ns, "addr", "add", cidr(net.ParseIP(h.Address), subnet), "dev", "eth0"},
			{"ip", "-n", hub, "link", "set", h.HubLink, "master", "br0", "up"},
		}
		for _, s := range steps {
			if err := run(s...); err != nil {
				return fmt.Errorf("host %s network: %w", h.Name, err)
			}
		}
	}
	for _, s := range [][]string{
		{"ip", "-n", ns, "link", "set", "lo", "up"},
		{"ip", "-n", ns, "link", "set", "eth0", "up"},
		{"ip", "-n", ns, "route", "replace", "default", "via", nthIP(subnet, 254).String(), "dev", "eth0"},
	} {
		if err := run(s...); err != nil {
			return fmt.Errorf("host %s network: %w", h.Name, err)
		}
	}
	return nil
}

func deleteNetns(name string) error {
	if !netnsExists(name) {
		return nil
	}
	return run("ip", "netns", "del", name)
}
