package kubelet

import (
	"github.com/kubeforge/kubeforge/components/component"
	"github.com/kubeforge/kubeforge/components/install"
)

// Footprint: every node runs a kubelet (a control-plane host's is tainted).
// Its data dir holds its configuration, certificates and pod volumes; the pod
// logs under /var/log are its too. KUBE- chains: the kubelet's KUBE-FIREWALL
// and friends (kube-proxy's share the prefix).
var Footprint = component.Footprint{
	Name:          "kubelet",
	Binaries:      []string{install.Kubelet},
	Units:         []string{UnitName},
	Paths:         []string{DataDir, "/var/log/pods", "/var/log/containers"},
	MountRoots:    []string{DataDir + "/"},
	ChainPrefixes: []string{"KUBE-"},
}
