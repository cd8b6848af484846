package overlay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/components/etcd"
	"github.com/kubeforge/kubeforge/components/noderuntime"
	"github.com/kubeforge/kubeforge/components/overlay/cni"
	"github.com/kubeforge/kubeforge/components/overlay/iptables"
	"github.com/kubeforge/kubeforge/components/overlay/subnet"
)

// hostClient connects to cfg's etcd with the TLS files read through h (they live
// on the node, which may be reached over SSH).
func hostClient(ctx context.Context, h host.Host, cfg *Config) (*clientv3.Client, error) {
	if len(cfg.Etcd.Endpoints) == 0 {
		return nil, errNoEtcd
	}
	var tlsCfg *tls.Config
	if cfg.Etcd.CAFile != "" {
		var err error
		tlsCfg, err = etcd.TLSFiles{CA: cfg.Etcd.CAFile, Cert: cfg.Etcd.CertFile, Key: cfg.Etcd.KeyFile}.Config(etcd.HostRead(ctx, h))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", h.Name(), err)
		}
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: cfg.Etcd.Endpoints, TLS: tlsCfg, DialTimeout: etcd.DialTimeout, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("etcd client for %v: %w", cfg.Etcd.Endpoints, err)
	}
	return cli, nil
}

// ResetOptions are what Reset needs.
type ResetOptions struct {
	Host host.Host
	// NodeName is the node whose lease is released.
	NodeName string
	// Cluster and CertDir locate etcd when the agent's config file is gone; both
	// optional.
	Cluster *config.Cluster
	CertDir string
	DryRun  bool
	Logf    func(string, ...any)
}

// Reset removes the overlay from a node: stops and removes the unit, with the
// etcd backend releases the node's lease in etcd (so peers drop its routes now
// rather than in 24 h; with the kube backend the Node's deletion does that),
// deletes the VXLAN device (the kernel takes its routes, neighbour and FDB
// entries with it) and the cni0 bridge, removes the iptables chains, the CNI
// config, subnet.env, host-local's allocations and the agent's config. Each step
// skips what is already gone; an unreachable etcd is reported and the lease is
// left to expire, everything local is still removed. The steps are listed in
// one function, in the order they must run, as reset's own record of it.
func Reset(ctx context.Context, o ResetOptions) (Result, error) {
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	h := o.Host
	var done []string
	var errs []error

	cfg := readAgentConfig(ctx, h, o.Logf)
	if cfg == nil && o.Cluster != nil {
		if node, ok := o.Cluster.Host(o.NodeName); ok {
			cfg, _ = AgentConfigFor(o.Cluster, *node, o.CertDir)
		}
	}
	node := o.NodeName
	if cfg != nil && cfg.NodeName != "" {
		node = cfg.NodeName
	}

	// The agent first, so it cannot put anything back: it runs inside the
	// node runtime (and, on a host not upgraded yet, in its own unit), which
	// goes whole; reset takes the other features away too.
	removed, err := noderuntime.Remove(ctx, h, func(string, ...any) {})
	for _, u := range removed {
		done = append(done, "stopped and removed "+u)
	}
	if err != nil {
		errs = append(errs, err)
	}

	switch {
	case cfg != nil && cfg.Backend == BackendKube:
		// The subnet is the Node's spec.podCIDR: deleting the Node (reset asks
		// the control plane to; kubeforge node remove does it) releases it, and
		// every peer's informer removes the route, FDB and neighbour entries.
		o.Logf("node %s's subnet is its Node's podCIDR: it is released when the Node is deleted", node)
	case cfg == nil:
		o.Logf("no %s and no cluster configuration: cannot reach etcd; node %s's lease (if any) expires on its own within %s", ConfigPath, node, defaultTTL)
	case o.DryRun:
		o.Logf("would release node %s's subnet lease in etcd", node)
	default:
		released, err := releaseLease(ctx, h, cfg, node)
		if err != nil {
			o.Logf("warning: could not release node %s's lease in etcd (%v); it expires on its own within %s", node, err, cfg.TTL())
		}
		for _, l := range released {
			done = append(done, fmt.Sprintf("released lease %s", l.Subnet))
		}
	}

	links, err := overlayLinks(ctx, h)
	if err != nil {
		errs = append(errs, err)
	}
	for _, name := range links {
		if _, err := host.MustRun(ctx, h, "ip", "link", "del", name); err != nil {
			errs = append(errs, err)
			continue
		}
		done = append(done, "deleted "+name)
	}

	changes, err := iptables.New(iptables.OnHost(h), "").Remove(ctx)
	if err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", h.Name(), err))
	}
	for _, c := range changes {
		done = append(done, "iptables: "+c)
	}

	files := []string{cni.DefaultConfPath, cni.DefaultSubnetEnvPath, cni.IPAMDataDir, ConfigPath}
	if cfg != nil {
		files = append(files, cfg.CNIConfFile, cfg.SubnetFile)
	}
	seen := map[string]bool{}
	for _, f := range files {
		if seen[f] {
			continue
		}
		seen[f] = true
		if _, err := h.Stat(ctx, f); host.IsNotExist(err) {
			continue
		}
		if err := h.Remove(ctx, f); err != nil {
			errs = append(errs, err)
			continue
		}
		done = append(done, "removed "+f)
	}
	for _, d := range done {
		o.Logf("%s", d)
	}
	if err := errors.Join(errs...); err != nil {
		return Result{Changed: len(done) > 0, Detail: strings.Join(done, "; ")}, err
	}
	if len(done) == 0 {
		return Result{Detail: "no overlay on this node"}, nil
	}
	return Result{Changed: true, Detail: fmt.Sprintf("overlay removed (%d steps)", len(done))}, nil
}

// Present reports whether any trace of the overlay's installation is on h: its
// config, unit file, CNI config or subnet.env. Reset removes these last, so a host
// without any of them has nothing left to reset (and reset can skip it without
// asking systemd, which may not even run there).
func Present(ctx context.Context, h host.Host) (bool, error) {
	for _, p := range []string{ConfigPath, "/etc/systemd/system/" + UnitName, "/etc/systemd/system/" + noderuntime.LegacyUnits[0], cni.DefaultConfPath, cni.DefaultSubnetEnvPath} {
		_, err := h.Stat(ctx, p)
		if err == nil {
			return true, nil
		}
		if !host.IsNotExist(err) {
			return false, err
		}
	}
	return false, nil
}

// readAgentConfig reads the agent's config from the host; nil when missing or
// unreadable (reset goes on without it).
func readAgentConfig(ctx context.Context, h host.Host, logf func(string, ...any)) *Config {
	data, err := h.ReadFile(ctx, ConfigPath)
	if err != nil {
		if !host.IsNotExist(err) {
			logf("warning: %s: %v", ConfigPath, err)
		}
		return nil
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		logf("warning: %s: %v", ConfigPath, err)
		return nil
	}
	return cfg
}

func releaseLease(ctx context.Context, h host.Host, cfg *Config, node string) ([]subnet.Lease, error) {
	cli, err := hostClient(ctx, h, cfg)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	return subnet.New(cli, cfg.Etcd.Prefix).Release(cctx, node)
}

// overlayLinks lists the overlay's VXLAN devices and the CNI bridge on h.
func overlayLinks(ctx context.Context, h host.Host) ([]string, error) {
	c := host.Cmd{Argv: []string{"ip", "-o", "-d", "link", "show"}, ReadOnly: true}
	r, err := h.Run(ctx, c)
	if err != nil {
		return nil, err
	}
	if err := r.Err(h.Name(), c); err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(r.Stdout), "\n") {
		// "7: kubeforge.1: <BROADCAST,...> ..." ; veths show as "name@peer".
		f := strings.SplitN(line, ": ", 3)
		if len(f) < 3 {
			continue
		}
		name, _, _ := strings.Cut(f[1], "@")
		if isOverlayDevice(name) && strings.Contains(line, "vxlan") || name == cni.BridgeName {
			out = append(out, name)
		}
	}
	return out, nil
}
