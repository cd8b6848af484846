// Package joinphases is the phase tree of `kubeforge join`, which adds this host to
// an existing cluster.
//
// Phases get their inputs by asserting the run data to rundata.Data; join's run
// data (Data) also carries token discovery, which supplies the cluster
// configuration and this host's entry in it.
package joinphases

import (
	"github.com/kubeforge/kubeforge/phases/initphases"
	"github.com/kubeforge/kubeforge/phases/nodephases"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

// Phases returns the join workflow in execution order. Discovery comes first:
// every other phase, preflight included, needs the configuration and CA it
// establishes, and it only reads, so bad join input fails before any change.
//
// A control-plane host (--control-plane) also runs init's control-plane phases
// (initphases.ForControlPlaneJoin): its own certificates and kubeconfigs issued
// from the handed-over CAs, the three control-plane units, the wait for them,
// then the node phases as on any joining host, the CSR approver and the
// control-plane label and taint.
func Phases() []workflow.Phase {
	cp := initphases.ForControlPlaneJoin()
	return []workflow.Phase{
		discoveryPhase(),
		preflightPhase(),
		installPhase(),
		certsPhase(),
		cp.Certs,
		cp.Kubeconfig,
		etcdPhase(),
		cp.ControlPlane,
		cp.Wait,
		recordControlPlanePhase(),
		nodephases.ContainerdPhase(),
		nodephases.ImagesPhase(),
		nodephases.KubeletPhase(),
		nodephases.KubeProxyPhase(),
		cp.CSRApprover,
		overlayPhase(),
		nodephases.NodeRuntimePhase(),
		nodephases.EtcdBackupPhase(),
		nodephases.CertRenewPhase(),
		cp.MarkControlPlane,
		nodephases.WaitNodePhase(),
	}
}
