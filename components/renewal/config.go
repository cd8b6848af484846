package renewal

import (
	"context"
	"fmt"
	"net"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
)

// ConfigSource says where the configuration for the restarts comes from.
type ConfigSource struct {
	// Path is a local file given by the operator (--config); read first.
	Path string
	// HostCopy is the copy init keeps on the host, read through the host when
	// Path is empty; a missing copy is not an error (there is no configuration).
	HostCopy string
	// NodeName picks the host in the configuration; empty means the one whose
	// name or address Identity reports.
	NodeName string
	Identity func() (hostname string, addrs []net.IP, err error)
}

// LoadConfig returns the configuration and this host's entry in it, and the file
// it came from; all nil when neither file exists. A file that exists but is not a
// valid configuration, or does not name this host, is an error naming it.
func LoadConfig(ctx context.Context, h host.Host, s ConfigSource) (*config.Cluster, *config.Host, string, error) {
	var (
		cfg  *config.Cluster
		from string
		err  error
	)
	switch {
	case s.Path != "":
		if cfg, err = config.Load(s.Path); err != nil {
			return nil, nil, "", err
		}
		from = s.Path
	case s.HostCopy != "":
		data, err := h.ReadFile(ctx, s.HostCopy)
		if host.IsNotExist(err) {
			return nil, nil, "", nil
		}
		if err != nil {
			return nil, nil, "", fmt.Errorf("%s: %w", h.Name(), err)
		}
		if cfg, err = config.Decode(data); err != nil {
			return nil, nil, "", fmt.Errorf("%s: %s: %w", h.Name(), s.HostCopy, err)
		}
		from = h.Name() + ":" + s.HostCopy
	default:
		return nil, nil, "", nil
	}
	var hostname string
	var addrs []net.IP
	if s.NodeName == "" {
		if s.Identity == nil {
			s.Identity = config.LocalIdentity
		}
		if hostname, addrs, err = s.Identity(); err != nil {
			return nil, nil, "", fmt.Errorf("--node-name not given and this machine's identity is unknown: %w", err)
		}
	}
	node, err := cfg.ResolveNode(s.NodeName, hostname, addrs)
	if err != nil {
		return nil, nil, "", fmt.Errorf("%s: %w", from, err)
	}
	return cfg, node, from, nil
}
