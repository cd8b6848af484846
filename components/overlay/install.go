package overlay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/etcd"
	"github.com/kubeforge/kubeforge/components/overlay/subnet"
	"github.com/kubeforge/kubeforge/components/overlay/vxlan"
)

// AgentConfigFor is the agent's config for node of cluster c, with the network
// from spec.networking. With the kube backend (the default) the agent acts as
// the node through the kubelet's kubeconfig (under certs.DefaultKubeconfigDir;
// Install puts it under its KubeconfigDir) and needs nothing else. With the
// etcd backend: every etcd member as an endpoint and the overlay client
// certificate under certDir; a node without the etcd role is refused.
func AgentConfigFor(c *config.Cluster, node config.Host, certDir string) (*Config, error) {
	n := c.Spec.Networking
	cfg := &Config{
		NodeName:          node.Name,
		PublicIP:          node.Address,
		Backend:           BackendKube,
		Kubeconfig:        filepath.Join(certs.DefaultKubeconfigDir, "kubelet.conf"),
		Network:           &subnet.Config{Network: n.PodCIDR, SubnetLen: n.NodeSubnetSize, VNI: n.Overlay.VNI, Port: n.Overlay.Port, MTU: n.Overlay.MTU},
		TxChecksumOffload: string(n.Overlay.TxChecksumOffload),
	}
	if n.Overlay.Backend == config.OverlayBackendEtcd {
		if !node.HasRole(config.RoleEtcd) {
			return nil, fmt.Errorf("host %s has no etcd role, but spec.networking.overlay.backend is etcd, which needs an etcd client certificate on every node; use backend kube (the default) or join it with the etcd role", node.Name)
		}
		members := c.HostsWithRole(config.RoleEtcd)
		var eps []string
		for _, m := range members {
			eps = append(eps, "https://"+net.JoinHostPort(m.Address, strconv.Itoa(etcd.DefaultClientPort)))
		}
		crt, key, err := certs.CertPaths(certDir, certs.CertEtcdOverlayClient)
		if err != nil {
			return nil, err
		}
		cfg.Backend, cfg.Kubeconfig = BackendEtcd, ""
		cfg.Etcd = Etcd{Endpoints: eps, CAFile: filepath.Join(etcd.PKIDir(certDir), "ca.crt"), CertFile: crt, KeyFile: key}
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("overlay config for %s: %w", node.Name, err)
	}
	return cfg, nil
}

// InstallOptions are what Install needs.
type InstallOptions struct {
	Host    host.Host
	Cluster *config.Cluster
	Node    config.Host
	CertDir string
	// KubeconfigDir holds kubelet.conf, the node's own credential the kube
	// backend uses; "" means certs.DefaultKubeconfigDir.
	KubeconfigDir string
	// Admin, when set (init, on the control plane), applies the RBAC that lets
	// nodes read every Node (kube backend).
	Admin kubernetes.Interface
	// StoreNetwork writes the network configuration to etcd now (init, etcd
	// backend), so a mismatch is the phase's error rather than an agent's
	// restart loop.
	StoreNetwork bool
	DryRun       bool
	Logf         func(string, ...any)
}

// Result says what Install or Reset did.
type Result struct {
	Changed bool
	Detail  string
}

// Install writes the agent's config (and, with the etcd backend only, the
// overlay's etcd client certificate, issued from the etcd CA when the host
// holds its key). The agent itself runs inside the node runtime
// (components/noderuntime, UnitName), whose phase starts it, or restarts it
// when the config changed. With the kube backend the node's kubelet.conf must
// exist: the kubelet phase writes it, and the agent waits for the Node the
// kubelet registers. Every step compares before it writes, so a rerun on a
// converged node changes nothing. The compare-before-write steps stay in one
// function so their order (certificate, then config) reads top to bottom.
func Install(ctx context.Context, o InstallOptions) (Result, error) {
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	h := o.Host
	cfg, err := AgentConfigFor(o.Cluster, o.Node, o.CertDir)
	if err != nil {
		return Result{}, err
	}
	var changed []string

	switch cfg.Backend {
	case BackendKube:
		if o.Admin != nil {
			rbac, err := EnsureNodeReaderRBAC(ctx, o.Admin)
			if err != nil {
				return Result{}, err
			}
			for _, r := range rbac {
				o.Logf("applied %s", r)
			}
			if len(rbac) > 0 {
				changed = append(changed, "RBAC")
			}
		}
		if o.KubeconfigDir != "" {
			cfg.Kubeconfig = filepath.Join(o.KubeconfigDir, "kubelet.conf")
		}
		if _, err := h.Stat(ctx, cfg.Kubeconfig); err != nil && !o.DryRun {
			return Result{}, fmt.Errorf("%s: %s, the node's own credential the overlay agent uses: %w (the kubelet phase writes it)", h.Name(), cfg.Kubeconfig, err)
		}
	case BackendEtcd:
		// The overlay's own etcd client certificate: never the apiserver's.
		before, err := h.Stat(ctx, cfg.Etcd.CertFile)
		if err != nil && !host.IsNotExist(err) {
			return Result{}, err
		}
		spec, err := certs.SpecFromConfig(o.Cluster, o.Node.Name)
		if err != nil {
			return Result{}, err
		}
		p := &certs.PKI{Spec: spec, CertDir: o.CertDir, FS: certs.HostFS{Ctx: ctx, Host: h}, Out: logWriter(o.Logf)}
		if err := p.CreateCerts(certs.CertEtcdOverlayClient); err != nil {
			return Result{}, fmt.Errorf("%s: overlay etcd client certificate: %w", h.Name(), err)
		}
		if before.Path == "" {
			changed = append(changed, "client certificate")
		}
	}

	data, err := cfg.Marshal()
	if err != nil {
		return Result{}, err
	}
	data = append([]byte("# kubeforge overlay agent configuration, written by kubeforge.\n"), data...)
	cur, err := h.ReadFile(ctx, ConfigPath)
	if err != nil && !host.IsNotExist(err) {
		return Result{}, err
	}
	mode := fs.FileMode(0)
	if fi, err := h.Stat(ctx, ConfigPath); err == nil {
		mode = fi.Mode.Perm()
	}
	if !bytes.Equal(cur, data) || mode != 0o600 {
		// 0600: the agent runs as root, and the file names its credentials.
		if err := h.WriteFile(ctx, ConfigPath, data, host.WriteOptions{Mode: 0o600}); err != nil {
			return Result{}, err
		}
		changed = append(changed, "config")
		o.Logf("wrote %s", ConfigPath)
	}
	if o.StoreNetwork && cfg.Backend == BackendEtcd {
		if o.DryRun {
			o.Logf("would store the network config in etcd: %s, /%d per node, vni %d, port %d", cfg.Network.Network, cfg.Network.SubnetLen, cfg.Network.VNI, cfg.Network.Port)
		} else {
			created, err := storeNetwork(ctx, h, cfg)
			if err != nil {
				return Result{}, err
			}
			if created {
				changed = append(changed, "network config in etcd")
				o.Logf("stored the network config in etcd: %s, /%d per node, vni %d, port %d", cfg.Network.Network, cfg.Network.SubnetLen, cfg.Network.VNI, cfg.Network.Port)
			}
		}
	}

	detail := "overlay agent configured: " + ConfigPath
	if len(changed) == 0 {
		return Result{Detail: detail + " (unchanged)"}, nil
	}
	return Result{Changed: true, Detail: detail + " (" + strings.Join(changed, ", ") + ")"}, nil
}

// storeNetwork writes the network config to etcd, reading the client
// credentials where they live (on h).
func storeNetwork(ctx context.Context, h host.Host, cfg *Config) (bool, error) {
	cli, err := hostClient(ctx, h, cfg)
	if err != nil {
		return false, err
	}
	defer cli.Close()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	created, err := subnet.New(cli, cfg.Etcd.Prefix).EnsureConfig(cctx, *cfg.Network)
	if err != nil {
		return false, fmt.Errorf("%s: %w", h.Name(), err)
	}
	return created, nil
}

// RemoteStatus asks the agent on h for its status through the installed
// binary, which works the same over SSH as locally.
func RemoteStatus(ctx context.Context, h host.Host) (*Status, error) {
	c := host.Cmd{Argv: []string{BinaryPath, "overlay", "status", "-o", "json"}, ReadOnly: true}
	r, err := h.Run(ctx, c)
	if err != nil {
		return nil, err
	}
	if err := r.Err(h.Name(), c); err != nil {
		return nil, withJournal(ctx, h, err)
	}
	var s Status
	if err := json.Unmarshal(r.Stdout, &s); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", h.Name(), c, err)
	}
	return &s, nil
}

func withJournal(ctx context.Context, h host.Host, err error) error {
	lines, jerr := h.Units().Journal(ctx, UnitName, 15)
	if jerr != nil || len(lines) == 0 {
		return err
	}
	return fmt.Errorf("%w\nlast lines of %s on %s:\n  %s", err, UnitName, h.Name(), strings.Join(lines, "\n  "))
}

func logWriter(logf func(string, ...any)) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		for _, l := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
			if l != "" {
				logf("%s", l)
			}
		}
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

var errNoEtcd = errors.New("no etcd endpoint")

// DeviceNames lists what reset looks for: kubeforge.<vni> and kf.<vni>.
func isOverlayDevice(name string) bool {
	return strings.HasPrefix(name, "kubeforge.") || (strings.HasPrefix(name, "kf.") && name == vxlan.DeviceName(atoiOr(strings.TrimPrefix(name, "kf."), -1)))
}

func atoiOr(s string, def int) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return def
	}
	return n
}
