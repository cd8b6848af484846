package overlay

import (
	"context"
	"fmt"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubeforge/kubeforge/components/kubeclient"
)

// NodeReaderName names the ClusterRole and ClusterRoleBinding that let every node
// read (never write) all Nodes.
const NodeReaderName = "kubeforge:overlay-node-reader"

// NodeReaderRBAC lets the group system:nodes get, list and watch Nodes. Since
// Kubernetes 1.32 the Node authorizer lets a node read only its own Node
// (AuthorizeNodeWithSelectors) and gives no opinion on the rest, so RBAC decides;
// the overlay agent, which acts as its node, must see every Node to route to its
// podCIDR. Writing stays with the Node authorizer and NodeRestriction: a node
// changes only its own Node.
func NodeReaderRBAC() (*rbacv1.ClusterRole, *rbacv1.ClusterRoleBinding) {
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: NodeReaderName},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}}},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: NodeReaderName},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: NodeReaderName},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:nodes"}},
	}
	return role, binding
}

// EnsureNodeReaderRBAC applies NodeReaderRBAC with an admin client; it reports
// what changed.
func EnsureNodeReaderRBAC(ctx context.Context, c kubernetes.Interface) ([]string, error) {
	role, binding := NodeReaderRBAC()
	var changed []string
	ch, err := kubeclient.Apply(ctx, c.RbacV1().ClusterRoles(), role, kubeclient.ClusterRoleRules)
	if err != nil {
		return nil, fmt.Errorf("ClusterRole %s: %w", role.Name, err)
	}
	if ch {
		changed = append(changed, "ClusterRole "+role.Name)
	}
	ch, err = kubeclient.Apply(ctx, c.RbacV1().ClusterRoleBindings(), binding, kubeclient.ClusterRoleBindingSubjects)
	if err != nil {
		return changed, fmt.Errorf("ClusterRoleBinding %s: %w", binding.Name, err)
	}
	if ch {
		changed = append(changed, "ClusterRoleBinding "+binding.Name)
	}
	return changed, nil
}
