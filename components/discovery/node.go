package discovery

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
)

// SourceAddress is the address h uses to reach server (an https:// URL or
// host:port): the node's address on the cluster network, which the kubelet
// advertises and etcd and the overlay use, when the configuration does not list
// the host.
func SourceAddress(ctx context.Context, h host.Host, server string) (string, error) {
	hostPart := server
	if u, err := url.Parse(server); err == nil && u.Host != "" {
		hostPart = u.Host
	}
	if hp, _, err := net.SplitHostPort(hostPart); err == nil {
		hostPart = hp
	}
	ip := net.ParseIP(hostPart)
	if ip == nil {
		addrs, err := net.DefaultResolver.LookupIP(ctx, "ip", hostPart)
		if err != nil || len(addrs) == 0 {
			return "", fmt.Errorf("resolving %s: %v", hostPart, err)
		}
		ip = addrs[0]
	}
	c := host.Cmd{Argv: []string{"ip", "-o", "route", "get", ip.String()}, ReadOnly: true}
	r, err := h.Run(ctx, c)
	if err != nil {
		return "", err
	}
	if err := r.Err(h.Name(), c); err != nil {
		return "", err
	}
	f := strings.Fields(string(r.Stdout))
	if i := slices.Index(f, "src"); i >= 0 && i+1 < len(f) && net.ParseIP(f[i+1]) != nil {
		return f[i+1], nil
	}
	return "", fmt.Errorf("%s: no source address in %q", h.Name(), strings.TrimSpace(string(r.Stdout)))
}

// JoinRoles are the roles the join command asks for.
type JoinRoles struct {
	Etcd, ControlPlane bool
}

// ResolveNode finds this host in the downloaded configuration (by name, else by
// address) and reconciles its roles with the join flags:
//   - a host the configuration does not list joins as a worker (plus what the
//     flags add), with the address it reaches the API server from;
//   - the flags may add roles, never silently drop them: a host the
//     configuration makes an etcd member must be joined with --etcd (and the
//     certificate key), or its etcd member would never exist.
//
// The returned configuration is a copy with the host's entry as resolved, so
// phases that read roles from it (the etcd join) see the same picture.
func ResolveNode(cfg *config.Cluster, name, address string, want JoinRoles) (*config.Cluster, *config.Host, error) {
	// A copy: the hosts list and roles change, the caller's value must not.
	cp := *cfg
	c := &cp
	c.Spec.Hosts = make([]config.Host, len(cfg.Spec.Hosts))
	for i, h := range cfg.Spec.Hosts {
		h.Roles = slices.Clone(h.Roles)
		c.Spec.Hosts[i] = h
	}
	var node *config.Host
	if h, ok := c.Host(name); ok {
		node = h
	} else {
		for i := range c.Spec.Hosts {
			if c.Spec.Hosts[i].Address == address && address != "" {
				node = &c.Spec.Hosts[i]
			}
		}
	}
	if node == nil {
		if address == "" {
			return nil, nil, fmt.Errorf("host %s is not in the cluster configuration and its address is unknown", name)
		}
		c.Spec.Hosts = append(c.Spec.Hosts, config.Host{Name: name, Address: address, Roles: []config.Role{config.RoleWorker}})
		node = &c.Spec.Hosts[len(c.Spec.Hosts)-1]
	}
	if node.HasRole(config.RoleEtcd) && !want.Etcd {
		return nil, nil, fmt.Errorf("%w: the cluster configuration makes %s an etcd member: join it with --etcd --certificate-key <key>", ErrBadInput, node.Name)
	}
	if node.HasRole(config.RoleControlPlane) && !want.ControlPlane {
		return nil, nil, fmt.Errorf("%w: the cluster configuration makes %s a control-plane host: join it with --control-plane --certificate-key <key>", ErrBadInput, node.Name)
	}
	add := func(r config.Role) {
		if !node.HasRole(r) {
			node.Roles = append(node.Roles, r)
		}
	}
	if want.Etcd {
		add(config.RoleEtcd)
	}
	if want.ControlPlane {
		add(config.RoleControlPlane)
	}
	if !node.HasRole(config.RoleControlPlane) {
		add(config.RoleWorker)
	}
	return c, node, nil
}
