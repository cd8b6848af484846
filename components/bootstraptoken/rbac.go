package bootstraptoken

import (
	"context"
	"fmt"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubeforge/kubeforge/components/kubeclient"
)

// Names of the RBAC objects, kubeadm's.
const (
	KubeletBootstrapBinding         = "kubeadm:kubelet-bootstrap"
	NodeAutoApproveBootstrapBinding = "kubeadm:node-autoapprove-bootstrap"
	NodeAutoApproveRotationBinding  = "kubeadm:node-autoapprove-certificate-rotation"
	GetNodesRole                    = "kubeadm:get-nodes"
	NodesGroup                      = "system:nodes"
)

// Built-in ClusterRoles the bindings point at (created by the apiserver's RBAC
// bootstrap). The csrapproving controller approves a node CSR when its requester
// may "create" the matching certificatesigningrequests subresource.
const (
	nodeBootstrapperRole = "system:node-bootstrapper"
	nodeClientRole       = "system:certificates.k8s.io:certificatesigningrequests:nodeclient"
	selfNodeClientRole   = "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient"
)

func clusterRoleBinding(name, role, group string) *rbacv1.ClusterRoleBinding {
	return &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: group}},
	}
}

// NodeBootstrapRBAC are the objects that let a kubelet with a join token
// bootstrap itself:
//   - kubelet-bootstrap: token holders may create CSRs;
//   - node-autoapprove-bootstrap: their node-client CSRs are approved automatically;
//   - node-autoapprove-certificate-rotation: nodes' renewals of their own client
//     certificate are approved automatically;
//   - get-nodes: a joining node may check whether a node of its name exists.
func NodeBootstrapRBAC() (*rbacv1.ClusterRole, []*rbacv1.ClusterRoleBinding) {
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: GetNodesRole},
		Rules:      []rbacv1.PolicyRule{{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"nodes"}}},
	}
	return role, []*rbacv1.ClusterRoleBinding{
		clusterRoleBinding(KubeletBootstrapBinding, nodeBootstrapperRole, NodeGroup),
		clusterRoleBinding(NodeAutoApproveBootstrapBinding, nodeClientRole, NodeGroup),
		clusterRoleBinding(NodeAutoApproveRotationBinding, selfNodeClientRole, NodesGroup),
		clusterRoleBinding(GetNodesRole, GetNodesRole, NodeGroup),
	}
}

// EnsureNodeBootstrapRBAC creates or corrects NodeBootstrapRBAC. It reports the
// objects it changed.
func EnsureNodeBootstrapRBAC(ctx context.Context, c kubernetes.Interface) ([]string, error) {
	var changed []string
	role, bindings := NodeBootstrapRBAC()
	ch, err := kubeclient.Apply(ctx, c.RbacV1().ClusterRoles(), role, kubeclient.ClusterRoleRules)
	if err != nil {
		return changed, fmt.Errorf("ClusterRole %s: %w", role.Name, err)
	}
	if ch {
		changed = append(changed, "ClusterRole "+role.Name)
	}
	for _, b := range bindings {
		ch, err := kubeclient.Apply(ctx, c.RbacV1().ClusterRoleBindings(), b, kubeclient.ClusterRoleBindingSubjects)
		if err != nil {
			return changed, fmt.Errorf("ClusterRoleBinding %s: %w", b.Name, err)
		}
		if ch {
			changed = append(changed, "ClusterRoleBinding "+b.Name)
		}
	}
	return changed, nil
}
