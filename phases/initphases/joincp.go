package initphases

import (
	"slices"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

// ControlPlaneJoin are init's phases that `kubeforge join --control-plane`
// runs on the joining host, the same code as on the first control-plane host:
// once the shared CAs and keys of the hand-over are on the host, the host's own
// certificates and kubeconfigs are issued from them exactly as init issues
// master01's, and its units are written by the same control-plane phases.
type ControlPlaneJoin struct {
	// Certs issues this host's certificates (apiserver with its own SANs,
	// apiserver-kubelet-client, front-proxy-client, apiserver-etcd-client, and
	// with the etcd role its member certificates); the CAs the hand-over wrote are
	// checked and kept. Named control-plane-certs: join's certs phase writes the
	// hand-over.
	Certs workflow.Phase
	// Kubeconfig writes admin.conf, controller-manager.conf and scheduler.conf
	// (the latter two talk to this host's own apiserver). The kubelet and
	// kube-proxy get theirs through CSRs as on any joining node; the break-glass
	// super-admin.conf stays on the first host, as with kubeadm.
	Kubeconfig workflow.Phase
	// ControlPlane writes and starts the three units; Wait waits for them to be
	// healthy and for both leader leases to be held (by any host).
	ControlPlane, Wait workflow.Phase
	// CSRApprover installs kubeforge's approver on this host too, and
	// MarkControlPlane labels and taints its Node once the kubelet registered it.
	CSRApprover, MarkControlPlane workflow.Phase
}

// JoinKubeconfigs are the kubeconfigs a joining control-plane host writes.
var JoinKubeconfigs = []string{certs.KubeconfigAdmin, certs.KubeconfigControllerManager, certs.KubeconfigScheduler}

// ForControlPlaneJoin returns init's phases for a joining control-plane host,
// each run only on a host with the control-plane role.
func ForControlPlaneJoin() ControlPlaneJoin {
	r := &run{}
	cp := hasRole(config.RoleControlPlane)
	j := ControlPlaneJoin{
		Certs:            r.certsPhase(),
		Kubeconfig:       r.kubeconfigPhase(),
		ControlPlane:     r.controlPlanePhase(),
		Wait:             r.waitPhase(),
		CSRApprover:      r.csrApproverPhase(),
		MarkControlPlane: r.markControlPlanePhase(),
	}
	j.Certs.Name = "control-plane-certs"
	j.Certs.Short = "Issue this control-plane host's own certificates from the handed-over CAs"
	j.Certs.RunIf = cp
	var subs []workflow.Phase
	for _, p := range j.Kubeconfig.Phases {
		if slices.Contains(JoinKubeconfigs, p.Name+".conf") {
			subs = append(subs, p)
		}
	}
	j.Kubeconfig.Phases = subs
	j.Kubeconfig.RunIf = cp
	return j
}
