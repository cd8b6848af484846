package component

import (
	"context"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
)

// Footprint is what one component puts on a host: what install puts there and
// what reset takes away. Each component package declares its own, next to the
// code that writes those files, so it can be read alone; components/inventory
// lists them all and components/cleanup only orders the removal.
//
// Only what kubeforge itself writes belongs here: reset removes exactly these
// paths (a directory that is a mount point is emptied and kept), never a
// directory's siblings.
type Footprint struct {
	// Name is the component's name in messages.
	Name string
	// Roles are the roles of the hosts it runs on; none means every node.
	Roles []config.Role
	// Binaries are installed from the bundle's bin/ into the bin dir (bare
	// names) or are absolute paths of other executables it installs.
	Binaries []string
	// OwnInstall: its own phase installs the binaries together with their
	// configuration (etcd, containerd), not the install-binaries phase.
	OwnInstall bool
	// Units are the unit files it writes in /etc/systemd/system; reset also
	// removes their drop-in directories (an operator's drop-in for a
	// kubeforge unit is part of it).
	Units []string
	// Paths are the files and directories reset removes.
	Paths []string
	// EmptyDirs are parents reset removes once nothing else is left in them,
	// deepest first.
	EmptyDirs []string
	// MountRoots are the trees under which it creates mounts (pod volumes,
	// container root filesystems); reset unmounts below them, never the root.
	MountRoots []string
	// ChainPrefixes are the iptables chains it (or the upstream daemon it runs)
	// creates; reset sweeps them.
	ChainPrefixes []string
	// InUse, when set, says the component must keep its binaries and units for
	// now (an etcd member not yet removed from its cluster).
	InUse func(ctx context.Context, h host.Host) bool
}

// RunsOn reports whether a host with these roles runs the component.
func (f Footprint) RunsOn(roles []config.Role) bool {
	if len(f.Roles) == 0 {
		return true
	}
	for _, r := range roles {
		for _, w := range f.Roles {
			if r == w {
				return true
			}
		}
	}
	return false
}
