// Package clusterinfo is what the first control-plane host publishes in the
// cluster for the hosts that join later, and what those hosts read back:
//
//   - kube-public/cluster-info: the endpoint and CA certificate, signed per
//     bootstrap token by the controller-manager's bootstrapsigner (token
//     discovery, as kubeadm);
//   - kube-system/kubeforge-config: the cluster configuration, so a joining host
//     needs nothing but the join command;
//   - kube-system/kubeforge-certs: the CA keys, service-account key pair and
//     encryption configuration a joining control-plane or etcd host needs,
//     AES-GCM encrypted under a certificate key that never enters the cluster,
//     and deleted with a two-hour bootstrap token it is owned by;
//   - the kubeadm:cluster-admins binding that gives admin.conf its rights.
package clusterinfo

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	"k8s.io/cluster-bootstrap/token/jws"

	"github.com/kubeforge/kubeforge/components/bootstraptoken"
	"github.com/kubeforge/kubeforge/components/component"
	"github.com/kubeforge/kubeforge/components/kubeclient"
)

// ClusterInfoRole is kubeadm's Role that lets discovery read cluster-info.
const ClusterInfoRole = "kubeadm:bootstrap-signer-clusterinfo"

// Kubeconfig is cluster-info's kubeconfig: one unnamed cluster with the server
// and the CA, no credentials (kubeadm's shape, so `kubeadm join` reads it too).
func Kubeconfig(server string, caPEM []byte) ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[""] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	return clientcmd.Write(*cfg)
}

// EnsureClusterInfo creates or corrects the cluster-info ConfigMap and the RBAC
// that makes it readable before a joining host has credentials: anonymously (the
// apiserver's authentication config allows anonymous requests on exactly this
// path) and with a join token. It reports what it changed.
func EnsureClusterInfo(ctx context.Context, c kubernetes.Interface, server string, caPEM []byte) ([]string, error) {
	kc, err := Kubeconfig(server, caPEM)
	if err != nil {
		return nil, err
	}
	var changed []string
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: bootstrapapi.ConfigMapClusterInfo, Namespace: metav1.NamespacePublic},
		Data:       map[string]string{bootstrapapi.KubeConfigKey: string(kc)},
	}
	ch, err := kubeclient.Apply(ctx, c.CoreV1().ConfigMaps(metav1.NamespacePublic), cm, kubeclient.ConfigMapData)
	if err != nil {
		return nil, fmt.Errorf("ConfigMap kube-public/cluster-info: %w", err)
	}
	if ch {
		changed = append(changed, "ConfigMap kube-public/cluster-info")
	}
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: ClusterInfoRole, Namespace: metav1.NamespacePublic},
		Rules: []rbacv1.PolicyRule{{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"configmaps"},
			ResourceNames: []string{bootstrapapi.ConfigMapClusterInfo}}},
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: ClusterInfoRole, Namespace: metav1.NamespacePublic},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: ClusterInfoRole},
		Subjects: []rbacv1.Subject{
			{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "system:anonymous"},
			{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:bootstrappers"},
		},
	}
	more, err := applyRole(ctx, c, role, binding)
	return append(changed, more...), err
}

// applyRole applies a Role and its RoleBinding.
func applyRole(ctx context.Context, c kubernetes.Interface, role *rbacv1.Role, binding *rbacv1.RoleBinding) ([]string, error) {
	var changed []string
	ns := role.Namespace
	ch, err := kubeclient.Apply(ctx, c.RbacV1().Roles(ns), role, kubeclient.RoleRules)
	if err != nil {
		return nil, fmt.Errorf("Role %s/%s: %w", ns, role.Name, err)
	}
	if ch {
		changed = append(changed, "Role "+ns+"/"+role.Name)
	}
	ch, err = kubeclient.Apply(ctx, c.RbacV1().RoleBindings(ns), binding, kubeclient.RoleBindingSubjects)
	if err != nil {
		return changed, fmt.Errorf("RoleBinding %s/%s: %w", ns, binding.Name, err)
	}
	if ch {
		changed = append(changed, "RoleBinding "+ns+"/"+binding.Name)
	}
	return changed, nil
}

// Signed reports whether cluster-info carries a valid JWS signature of its
// kubeconfig for token t.
func Signed(cm *corev1.ConfigMap, t bootstraptoken.Token) bool {
	sig, ok := cm.Data[bootstrapapi.JWSSignatureKeyPrefix+t.ID]
	return ok && jws.DetachedTokenIsValid(sig, cm.Data[bootstrapapi.KubeConfigKey], t.ID, t.Secret)
}

// WaitSigned waits until the bootstrapsigner has signed cluster-info for token t
// (it does so for every token with the signing usage) and checks the signature:
// a joining host verifies exactly this, so a missing or wrong signature would
// only surface on the first join.
func WaitSigned(ctx context.Context, c kubernetes.Interface, t bootstraptoken.Token, timeout time.Duration, logf func(string, ...any)) (time.Duration, error) {
	start := time.Now()
	last := start
	var lastErr error
	err := component.Poll(ctx, 250*time.Millisecond, timeout, func(ctx context.Context) (bool, error) {
		cm, err := c.CoreV1().ConfigMaps(metav1.NamespacePublic).Get(ctx, bootstrapapi.ConfigMapClusterInfo, metav1.GetOptions{})
		switch {
		case err != nil:
			lastErr = err
		case Signed(cm, t):
			return true, nil
		case cm.Data[bootstrapapi.JWSSignatureKeyPrefix+t.ID] != "":
			lastErr = fmt.Errorf("the signature for token %s does not verify", t.ID)
		default:
			lastErr = fmt.Errorf("no signature for token %s yet", t.ID)
		}
		if time.Since(last) >= 5*time.Second && logf != nil {
			last = time.Now()
			logf("waiting for the bootstrap signer to sign cluster-info (%v)", lastErr)
		}
		return false, nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return time.Since(start), ctx.Err()
		}
		return time.Since(start), fmt.Errorf("cluster-info was not signed for token %s within %s: %v (the bootstrapsigner controller of kube-controller-manager signs it: check `systemctl status kube-controller-manager` on the control-plane hosts)", t.ID, timeout, lastErr)
	}
	return time.Since(start), nil
}

// ClusterAdminsGroup is the group admin.conf's certificate is in (kubeadm 1.29+);
// it has rights only through this binding, unlike system:masters which RBAC can
// never take away.
const ClusterAdminsGroup = "kubeadm:cluster-admins"

// EnsureClusterAdmins makes sure the kubeadm:cluster-admins ClusterRoleBinding
// exists, so admin.conf works. The admin client is tried first; only when it is
// not allowed to (the binding does not exist yet) is the break-glass
// super-admin client (system:masters) used, as kubeadm does.
func EnsureClusterAdmins(ctx context.Context, admin kubernetes.Interface, superAdmin func() (kubernetes.Interface, error)) (bool, error) {
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: ClusterAdminsGroup},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: ClusterAdminsGroup}},
	}
	ch, err := kubeclient.Apply(ctx, admin.RbacV1().ClusterRoleBindings(), crb, kubeclient.ClusterRoleBindingSubjects)
	if err == nil || !apierrors.IsForbidden(err) || superAdmin == nil {
		return ch, err
	}
	sa, err := superAdmin()
	if err != nil {
		return false, err
	}
	return kubeclient.Apply(ctx, sa.RbacV1().ClusterRoleBindings(), crb, kubeclient.ClusterRoleBindingSubjects)
}
