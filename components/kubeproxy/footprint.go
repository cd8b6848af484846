package kubeproxy

import (
	"github.com/kubeforge/kubeforge/components/component"
	"github.com/kubeforge/kubeforge/components/install"
)

// Footprint: every node runs kube-proxy; its configuration and kubeconfig
// live in ConfigDir. Its rules are removed by `kube-proxy --cleanup` first,
// then whatever KUBE- chain is left is swept.
var Footprint = component.Footprint{
	Name:          "kube-proxy",
	Binaries:      []string{install.KubeProxy},
	Units:         []string{UnitName},
	Paths:         []string{ConfigDir},
	ChainPrefixes: []string{"KUBE-"},
}
