package containerd

import (
	"path"

	"github.com/kubeforge/kubeforge/components/component"
)

// Footprint: containerd, its shim and runc, the CNI plugins, their
// configuration and state. The CNI plugins' own leftovers (/var/lib/cni, the
// bridge plugin's CNI- chains, pod network namespaces) are here too: it is
// containerd's CRI plugin that runs them.
var Footprint = component.Footprint{
	Name:          "containerd",
	Binaries:      append(append([]string{}, Binaries...), cniPluginPaths()...),
	OwnInstall:    true,
	Units:         []string{UnitName},
	Paths:         []string{path.Dir(ConfigPath), RootDir, StateDir, CNIConfDir, "/var/lib/cni"},
	EmptyDirs:     []string{path.Dir(CNIConfDir), CNIBinDir, path.Dir(CNIBinDir)},
	MountRoots:    []string{StateDir + "/", RootDir + "/", "/run/netns/cni-"},
	ChainPrefixes: []string{"CNI-"},
}

func cniPluginPaths() []string {
	out := make([]string, len(CNIPlugins))
	for i, p := range CNIPlugins {
		out[i] = path.Join(CNIBinDir, p)
	}
	return out
}
