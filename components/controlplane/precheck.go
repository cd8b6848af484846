package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/components/component"
)

// ListeningPorts returns the TCP ports something listens on, from
// /proc/net/tcp and /proc/net/tcp6 (present on every Linux host, readable
// without tools, and through any host.Host).
func ListeningPorts(ctx context.Context, h host.Host) (map[int]bool, error) {
	out := map[int]bool{}
	for _, p := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := h.ReadFile(ctx, p)
		if host.IsNotExist(err) {
			continue // no IPv6
		}
		if err != nil {
			return nil, err
		}
		for i, l := range strings.Split(string(data), "\n") {
			f := strings.Fields(l)
			if i == 0 || len(f) < 4 || f[3] != "0A" { // 0A is TCP_LISTEN
				continue
			}
			_, hexPort, ok := strings.Cut(f[1], ":")
			if port, err := strconv.ParseInt(hexPort, 16, 32); ok && err == nil {
				out[int(port)] = true
			}
		}
	}
	return out, nil
}

// portOwner asks ss who listens on port, for the error message; "" when unknown.
func portOwner(ctx context.Context, h host.Host, port int) string {
	r, err := h.Run(ctx, host.Cmd{Argv: []string{"ss", "-ltnpH", "sport", "=", ":" + strconv.Itoa(port)}, ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil || !r.OK() {
		return ""
	}
	s := string(r.Stdout)
	i := strings.Index(s, `(("`)
	if i < 0 {
		return ""
	}
	name, _, _ := strings.Cut(s[i+3:], `"`)
	return name
}

// CheckPortFree fails when the component's secure port is taken on h. Ensure
// calls it only while the component's own unit is not running, so a rerun on a
// converged host does not trip over its own daemon.
func CheckPortFree(ctx context.Context, h host.Host, c Component) error {
	port, err := c.Port()
	if err != nil {
		return err
	}
	busy, err := ListeningPorts(ctx, h)
	if err != nil {
		return err
	}
	if !busy[port] {
		return nil
	}
	by := "something else"
	if o := portOwner(ctx, h, port); o != "" {
		by = o
	}
	return fmt.Errorf("%s: port %d/tcp, which %s needs, is already in use by %s (and %s is not running): stop it, or run `kubeforge reset` if it is a previous installation",
		h.Name(), port, c.Name, by, c.UnitName())
}

// Dialer opens a TCP connection; tests substitute it.
type Dialer func(ctx context.Context, network, address string) (net.Conn, error)

// LocalAddresses lists the host's IP addresses (`ip -o addr show`), loopback
// included.
func LocalAddresses(ctx context.Context, h host.Host) ([]net.IP, error) {
	r, err := h.Run(ctx, host.Cmd{Argv: []string{"ip", "-o", "addr", "show"}, ReadOnly: true, Timeout: 10 * time.Second})
	if err != nil {
		return nil, err
	}
	if !r.OK() {
		return nil, r.Err(h.Name(), host.Cmd{Argv: []string{"ip", "-o", "addr", "show"}})
	}
	var out []net.IP
	for _, l := range strings.Split(string(r.Stdout), "\n") {
		f := strings.Fields(l)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "inet" || f[i] == "inet6" {
				if ip, _, err := net.ParseCIDR(f[i+1]); err == nil {
					out = append(out, ip)
				}
			}
		}
	}
	return out, nil
}

// CheckEndpoint verifies, before anything is installed, that
// spec.controlPlaneEndpoint can work for the first control-plane host: either it
// is one of the host's own addresses (the apiserver about to start will serve
// it), or something (a load balancer, a VIP holder) already accepts TCP
// connections there. Otherwise every kubeconfig kubeforge writes would point at
// nothing and init would only find out when waiting for the API.
//
// The connection is made from where kubeforge runs, which for init is the host
// itself.
func CheckEndpoint(ctx context.Context, h host.Host, c *config.Cluster, node config.Host, dial Dialer) error {
	epHost, port, err := c.ControlPlaneEndpointHostPort()
	if err != nil {
		return err
	}
	local, err := LocalAddresses(ctx, h)
	if err != nil {
		// Without the address list the configured address of the node still counts.
		local = nil
	}
	if ip := net.ParseIP(node.Address); ip != nil {
		local = append(local, ip)
	}
	var ips []net.IP
	if ip := net.ParseIP(epHost); ip != nil {
		ips = []net.IP{ip}
	} else {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		addrs, err := net.DefaultResolver.LookupIPAddr(rctx, epHost)
		cancel()
		if err != nil {
			return fmt.Errorf("spec.controlPlaneEndpoint %s: the name %q does not resolve: %v", c.Spec.ControlPlaneEndpoint, epHost, err)
		}
		for _, a := range addrs {
			ips = append(ips, a.IP)
		}
	}
	for _, ip := range ips {
		for _, l := range local {
			if ip.Equal(l) {
				return nil
			}
		}
	}
	if dial == nil {
		d := &net.Dialer{}
		dial = d.DialContext
	}
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := dial(dctx, "tcp", net.JoinHostPort(epHost, strconv.Itoa(port)))
	if err == nil {
		conn.Close()
		return nil
	}
	why := err.Error()
	if errors.Is(err, context.DeadlineExceeded) {
		why = "no answer within 3s"
	}
	return fmt.Errorf("spec.controlPlaneEndpoint %s is unreachable from %s (%s) and is not one of its addresses: "+
		"point it at %s:%d, or bring up the load balancer or VIP in front of the control plane first",
		c.Spec.ControlPlaneEndpoint, h.Name(), why, node.Address, port)
}

// Precheck is what must hold before init changes anything on a control-plane
// host: the endpoint can work (CheckEndpoint) and every component's port is free
// unless its own unit already runs (a rerun). It is meant to run before the
// first write, so bad input leaves the host untouched.
func Precheck(ctx context.Context, h host.Host, o Options, dial Dialer) error {
	if err := o.check(); err != nil {
		return err
	}
	if err := CheckEndpoint(ctx, h, o.Cluster, o.Node, dial); err != nil {
		return err
	}
	for _, name := range Names {
		// The encryption config does not matter for the port; the real one is
		// only read (and, on a fresh host, created) by the control-plane phase.
		c, err := o.Component(name, []byte("-"))
		if err != nil {
			return err
		}
		st, err := h.Units().Status(ctx, c.UnitName())
		if err != nil {
			return err
		}
		if component.Running(st) {
			continue
		}
		if err := CheckPortFree(ctx, h, c); err != nil {
			return err
		}
	}
	return nil
}
