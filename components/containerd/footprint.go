package containerd

import (
	"path"

	"github.com/kubeforge/kubeforge/components/component"
)

// Footprint: containerd, its shim and runc, the CNI plugins, their
// configuration and state. The CNI plugins' own leftovers (/var/lib/cni, the
// bridge plugin's CNI- chains, pod network namespaces) are here too: it is
// containerd's CRI plugin that runs them. So are the directories containerd
// 2.x creates outside its root and state whatever its configuration says:
// OptDir (its opt plugin), NRIDir (the NRI socket) and NetnsDir (where the
// CRI plugin mounts pod network namespaces; emptied by reset's netns step).
var Footprint = component.Footprint{
	Name:          "containerd",
	Binaries:      append(append([]string{}, Binaries...), cniPluginPaths()...),
	OwnInstall:    true,
	Units:         []string{UnitName},
	Paths:         []string{path.Dir(ConfigPath), RootDir, StateDir, CNIConfDir, "/var/lib/cni", OptDir, NRIDir},
	EmptyDirs:     []string{path.Dir(CNIConfDir), CNIBinDir, path.Dir(CNIBinDir), NetnsDir},
	MountRoots:    []string{StateDir + "/", RootDir + "/", "/run/netns/cni-"},
	ChainPrefixes: []string{"CNI-"},
}

// Directories containerd creates on its own (see Footprint).
const (
	// OptDir is the opt plugin's directory (io.containerd.internal.v1.opt),
	// created at start.
	OptDir = "/opt/containerd"
	// NRIDir holds the NRI socket (io.containerd.nri.v1.nri socket_path
	// /var/run/nri/nri.sock; /var/run is /run).
	NRIDir = "/run/nri"
	// NetnsDir is where the CRI plugin bind-mounts each pod sandbox's network
	// namespace (fixed in containerd 2.x).
	NetnsDir = "/run/netns"
)

func cniPluginPaths() []string {
	out := make([]string, len(CNIPlugins))
	for i, p := range CNIPlugins {
		out[i] = path.Join(CNIBinDir, p)
	}
	return out
}
