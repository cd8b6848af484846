package etcd

import (
	"context"
	"path"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/components/component"
	"github.com/kubeforge/kubeforge/components/install"
)

// Footprint: etcd and etcdctl, installed by the etcd phase with the member's
// configuration. The member itself (config, certificates, data) is removed by
// reset's etcd phase, which first takes it out of its cluster; until then
// (ConfigPath still there) reset keeps binaries and unit, so `kubeforge reset
// phase etcd` can still do that.
var Footprint = component.Footprint{
	Name:       "etcd",
	Roles:      []config.Role{config.RoleEtcd},
	Binaries:   []string{install.Etcd, install.Etcdctl},
	OwnInstall: true,
	Units:      []string{UnitName},
	EmptyDirs:  []string{path.Dir(ConfigPath)},
	InUse:      StillMember,
}

// StillMember reports whether the host still has a member configuration, that
// is: it was not removed from its cluster yet.
func StillMember(ctx context.Context, h host.Host) bool {
	_, err := h.Stat(ctx, ConfigPath)
	return err == nil
}
