package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kubeforge/kubeforge/bootstrap/config"
)

// seedRoles mirrors the seed plan: master01 runs the control plane and etcd, node01
// and node02 are workers and etcd members, master02 is the second control-plane
// host. Any other lab host is a worker.
var seedRoles = map[string][]config.Role{
	"master01": {config.RoleControlPlane, config.RoleEtcd},
	"master02": {config.RoleControlPlane},
	"node01":   {config.RoleWorker, config.RoleEtcd},
	"node02":   {config.RoleWorker, config.RoleEtcd},
}

// ClusterConfig is a cluster configuration for the lab's hosts, so `kubeforge init`
// and `join` can be run against the lab as it is.
func (s *State) ClusterConfig() (*config.Cluster, error) {
	c := config.Default()
	c.Spec.Hosts = nil
	c.Spec.ControlPlaneEndpoint = ""
	c.Spec.TimeSync.Server = ""
	c.Spec.Addons.CoreDNS.Replicas = 0 // one per lab host, at most the default
	keyPath := filepath.Join(s.Dir, "id_ed25519")
	for _, h := range s.Hosts {
		roles, ok := seedRoles[h.Name]
		if !ok {
			roles = []config.Role{config.RoleWorker}
		}
		c.Spec.Hosts = append(c.Spec.Hosts, config.Host{Name: h.Name, Address: h.Address, Roles: roles,
			SSH: &config.SSH{User: "root", Port: 22, KeyPath: keyPath}})
	}
	// A lab without the seed names still needs a control plane and an etcd member:
	// the first host gets whichever is missing.
	if len(c.Spec.Hosts) > 0 {
		first := &c.Spec.Hosts[0]
		if len(c.HostsWithRole(config.RoleControlPlane)) == 0 {
			first.Roles = append([]config.Role{config.RoleControlPlane}, first.Roles...)
		}
		if len(c.HostsWithRole(config.RoleEtcd)) == 0 {
			first.Roles = append(first.Roles, config.RoleEtcd)
		}
	}
	config.SetDefaults(c)
	if _, err := c.Validate(); err != nil {
		return nil, fmt.Errorf("lab cluster config: %w", err)
	}
	return c, nil
}

const clusterConfigHeader = "# Cluster configuration for the kubeforge lab"

// writeClusterConfig writes <dir>/cluster.yaml for the current hosts. A file the user
// put there instead (without the lab's header line) is kept: it may hold their own
// settings.
func writeClusterConfig(s *State) error {
	p := filepath.Join(s.Dir, "cluster.yaml")
	if data, err := os.ReadFile(p); err == nil && !strings.HasPrefix(string(data), clusterConfigHeader) {
		return nil
	}
	c, err := s.ClusterConfig()
	if err != nil {
		return err
	}
	data, err := config.Marshal(c)
	if err != nil {
		return err
	}
	header := fmt.Sprintf(clusterConfigHeader+" at %s (written by `kubeforge lab up`).\n# Lab subnet %s; ssh with: ssh -F %s <host>\n", s.Dir, s.Subnet, filepath.Join(s.Dir, "ssh_config"))
	return os.WriteFile(p, append([]byte(header), data...), 0o644)
}
