package initphases

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/components/component"
	"github.com/kubeforge/kubeforge/components/kubelet/csrapprover"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

func (r *run) csrApproverPhase() workflow.Phase {
	return workflow.Phase{
		Name:  "csr-approver",
		Short: "Set up kubeforge's approver of kubelet serving and kube-proxy CSRs (its identity and RBAC)",
		Long: `Kubernetes signs kubelet serving certificates once approved but never approves
them. This gives the approver its identity on the control-plane host (RBAC and
` + csrapprover.KubeconfigName + `); it runs inside the node runtime, which the node-runtime
phase starts. It
approves a kubelet serving CSR only from the node identity of an existing Node
and only for that node's own name and the address the cluster configuration
records for it (never the API server's names, the service network, the
endpoint or another host's names), and a node's request for a kube-proxy
client certificate; anything else stays pending for a human. The
controller-manager signs serving certificates with the kubelet-serving CA. It runs with its own
client certificate (CN ` + csrapprover.User + `) and narrow RBAC. It also deletes
the Node of a worker whose 'kubeforge reset' asked for it.`,
		RunIf: hasRole(config.RoleControlPlane),
		Run: func(d workflow.RunData) error {
			data, err := r.data(d, "csr-approver")
			if err != nil {
				return err
			}
			cli, err := r.client(data)
			if err != nil {
				return err
			}
			changed, err := csrapprover.Install(data.Context(), csrapprover.InstallOptions{
				Host: data.Host(), Cluster: data.Config(), Node: *data.Node(), CertDir: data.CertDir(), KubeconfigDir: data.KubeconfigDir(),
				Admin: cli, DryRun: data.DryRun(), Logf: data.Logger().Printf,
			})
			if err != nil {
				return err
			}
			if !changed {
				return workflow.Unchanged("%s and the approver's RBAC are current", csrapprover.KubeconfigName)
			}
			data.Logger().Printf("%s and the approver's RBAC are in place", csrapprover.KubeconfigName)
			return nil
		},
	}
}

// ControlPlaneLabel marks control-plane Nodes (kubeadm's label). The kubelet may
// not set it itself: NodeRestriction keeps node-role labels out of kubelets' hands.
const ControlPlaneLabel = "node-role.kubernetes.io/control-plane"

func (r *run) markControlPlanePhase() workflow.Phase {
	return workflow.Phase{
		Name:  "mark-control-plane",
		Short: "Label (and, unless it is also a worker, taint) the control-plane Node",
		Long: `Label this host's Node ` + ControlPlaneLabel + `="" and make sure it carries
the ` + ControlPlaneLabel + `:NoSchedule taint unless the host also has the worker role,
as kubeadm does.`,
		RunIf: hasRole(config.RoleControlPlane),
		Run: func(d workflow.RunData) error {
			data, err := r.data(d, "mark-control-plane")
			if err != nil {
				return err
			}
			cli, err := r.client(data)
			if err != nil {
				return err
			}
			ctx, name := data.Context(), data.Node().Name
			if data.DryRun() {
				data.Logger().Printf("dry run: would label Node %s %s", name, ControlPlaneLabel)
				return nil
			}
			var n *corev1.Node
			var getErr error
			err = component.Poll(ctx, 250*time.Millisecond, 2*time.Minute, func(ctx context.Context) (bool, error) {
				n, getErr = cli.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
				return getErr == nil || !apierrors.IsNotFound(getErr), nil
			})
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case getErr != nil:
				return fmt.Errorf("Node %s: %w (is the kubelet running?)", name, getErr)
			}
			wantTaint := !data.Node().HasRole(config.RoleWorker)
			_, labelled := n.Labels[ControlPlaneLabel]
			tainted := false
			for _, t := range n.Spec.Taints {
				if t.Key == ControlPlaneLabel && t.Effect == corev1.TaintEffectNoSchedule {
					tainted = true
				}
			}
			if labelled && tainted == wantTaint {
				return workflow.Unchanged("Node %s is labelled%s", name, map[bool]string{true: " and tainted", false: ""}[wantTaint])
			}
			patch := fmt.Sprintf(`{"metadata":{"labels":{%q:""}}}`, ControlPlaneLabel)
			if _, err := cli.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
				return fmt.Errorf("labelling Node %s: %w", name, err)
			}
			if wantTaint && !tainted {
				n, err := cli.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					return err
				}
				n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: ControlPlaneLabel, Effect: corev1.TaintEffectNoSchedule})
				if _, err := cli.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
					return fmt.Errorf("tainting Node %s: %w", name, err)
				}
			}
			data.Logger().Printf("Node %s labelled %s%s", name, ControlPlaneLabel, map[bool]string{true: " and tainted NoSchedule", false: ""}[wantTaint])
			return nil
		},
	}
}
