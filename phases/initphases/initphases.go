// Package initphases is the phase tree of `kubeforge init`, which turns this host
// into the first control-plane node.
//
// Each phase is a thin wrapper: it asserts the run data to rundata.Data and calls
// the package that does the work (certs, components/install, controlplane,
// bootstraptoken, clusterinfo, etcd, preflight). Phases that are wired before
// their code exists run workflow.NotImplemented, so an unfinished workflow can
// never look like it succeeded.
package initphases

import (
	"github.com/kubeforge/kubeforge/phases/nodephases"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

// Phases returns the init workflow in execution order. The phases of one call
// share a little state (the API client, the token and certificate key for the
// join command), so build the tree once per command.
func Phases() []workflow.Phase {
	r := &run{}
	return []workflow.Phase{
		r.preflightPhase(),
		r.installPhase(),
		r.certsPhase(),
		r.kubeconfigPhase(),
		etcdPhase(),
		r.controlPlanePhase(),
		r.waitPhase(),
		r.uploadConfigPhase(),
		r.uploadCertsPhase(),
		r.bootstrapTokenPhase(),
		// The node part (node.go, phases/nodephases): the control-plane host is a
		// node too, tainted unless it is also a worker.
		nodephases.ContainerdPhase(),
		nodephases.ImagesPhase(),
		nodephases.KubeletPhase(),
		nodephases.KubeProxyPhase(),
		r.csrApproverPhase(),
		r.overlayPhase(),
		nodephases.NodeRuntimePhase(),
		nodephases.EtcdBackupPhase(),
		nodephases.CertRenewPhase(),
		r.markControlPlanePhase(),
		nodephases.WaitNodePhase(),
		// Add-ons need a Ready node to run on.
		r.addonPhase(),
		r.showJoinPhase(),
	}
}
