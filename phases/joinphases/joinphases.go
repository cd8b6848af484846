// Package joinphases is the phase tree of `kubeforge join`, which adds this host to
// an existing cluster.
//
// Phases get their inputs by asserting the run data to rundata.Data; join's run
// data (Data) also carries token discovery, which supplies the cluster
// configuration and this host's entry in it.
package joinphases

import (
	"github.com/kubeforge/kubeforge/phases/nodephases"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

// Phases returns the join workflow in execution order. Discovery comes first:
// every other phase, preflight included, needs the configuration and CA it
// establishes, and it only reads, so bad join input fails before any change.
func Phases() []workflow.Phase {
	return []workflow.Phase{
		discoveryPhase(),
		preflightPhase(),
		installPhase(),
		certsPhase(),
		etcdPhase(),
		nodephases.ContainerdPhase(),
		nodephases.ImagesPhase(),
		nodephases.KubeletPhase(),
		nodephases.KubeProxyPhase(),
		overlayPhase(),
		nodephases.NodeRuntimePhase(),
		nodephases.EtcdBackupPhase(),
		nodephases.CertRenewPhase(),
		nodephases.WaitNodePhase(),
	}
}
