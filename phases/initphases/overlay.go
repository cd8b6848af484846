package initphases

import (
	"k8s.io/client-go/kubernetes"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/components/overlay"
	"github.com/kubeforge/kubeforge/phases/rundata"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

// overlayPhase stores the pod network in etcd and starts this node's overlay agent.
func (r *run) overlayPhase() workflow.Phase {
	return workflow.Phase{
		Name:  "overlay",
		Short: "Set up the VXLAN overlay on this node",
		Long: `Configure the overlay agent on this host: /etc/kubeforge/overlay.yaml (the
agent runs inside ` + overlay.UnitName + `, which the node-runtime phase starts). With the kube backend (spec.networking.overlay.backend, the default)
the agent acts as this node (kubelet.conf): it waits for the Node the kubelet
registered to get its spec.podCIDR from kube-controller-manager, publishes its
VTEP MAC and address as annotations on it, and follows every Node. With the etcd
backend the phase first stores the pod network in etcd under
/kubeforge/network/config (a different one there is an error: the pod network of a
running cluster cannot change) and issues the agent's etcd client certificate
(etcd/overlay-client). It runs after the kubelet phase, which registers the Node;
the node-runtime phase after it ends when the agent holds its subnet and has
programmed every peer.
On a control-plane host it first applies ClusterRole and ClusterRoleBinding
` + overlay.NodeReaderName + `: nodes may read (not write) every Node, which the
Node authorizer of Kubernetes 1.32+ leaves to RBAC.`,
		Run: func(d workflow.RunData) error {
			data, err := rundata.From(d, "overlay")
			if err != nil {
				return err
			}
			var admin kubernetes.Interface
			// The node-reader RBAC is the kube backend's; the etcd backend
			// needs no API client here.
			if data.Node().HasRole(config.RoleControlPlane) && data.Config().Spec.Networking.Overlay.Backend != config.OverlayBackendEtcd {
				cli, err := r.client(data)
				if err != nil {
					return err
				}
				admin = cli
			}
			return runOverlay(data, admin, true)
		},
	}
}

func runOverlay(data rundata.Data, admin kubernetes.Interface, storeNetwork bool) error {
	res, err := overlay.Install(data.Context(), overlay.InstallOptions{
		Host:          data.Host(),
		Cluster:       data.Config(),
		Node:          *data.Node(),
		CertDir:       data.CertDir(),
		KubeconfigDir: data.KubeconfigDir(),
		Admin:         admin,
		StoreNetwork:  storeNetwork,
		DryRun:        data.DryRun(),
		Logf:          data.Logger().Printf,
	})
	if err != nil {
		return err
	}
	return workflow.Outcome(data.Logger(), res.Changed, res.Detail)
}
