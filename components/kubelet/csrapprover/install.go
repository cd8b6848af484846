package csrapprover

import (
	"bytes"
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"path"
	"time"

	certv1 "k8s.io/api/certificates/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/clusterinfo"
	"github.com/kubeforge/kubeforge/components/kubeclient"
)

// KubeconfigName is the approver's kubeconfig in the --kubeconfig-dir of a
// control-plane host. The approver runs inside the node runtime
// (components/noderuntime) with this identity.
const KubeconfigName = "csr-approver.conf"

// RBAC is the least the approver needs: read CSRs and Nodes, approve for the two
// signers it handles and no other, and delete Nodes that asked for it. It also
// reads one ConfigMap (ConfigRBAC).
func RBAC() (*rbacv1.ClusterRole, *rbacv1.ClusterRoleBinding) {
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: RoleName},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"certificatesigningrequests"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"certificatesigningrequests/approval"}, Verbs: []string{"update"}},
			{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"signers"}, Verbs: []string{"approve"},
				ResourceNames: []string{certv1.KubeletServingSignerName, certv1.KubeAPIServerClientSignerName}},
			// delete: Nodes whose reset asked for their removal (RemovalAnnotation).
			{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch", "delete"}},
		},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: RoleName},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: RoleName},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: User}},
	}
	return role, binding
}

// ConfigRBAC lets the approver read the uploaded cluster configuration, whose
// hosts table says what a kubelet serving certificate may name (get on that
// one ConfigMap in kube-system), and keep the record of joined hosts (get and
// update on kubeforge-joined-hosts, which upload-config creates). It may not
// change kubeforge-config: the settings every joining host trusts stay the
// administrator's.
func ConfigRBAC() (*rbacv1.Role, *rbacv1.RoleBinding) {
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: RoleName, Namespace: metav1.NamespaceSystem},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"},
				ResourceNames: []string{clusterinfo.ConfigMapName}},
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "update"},
				ResourceNames: []string{clusterinfo.JoinedHostsConfigMapName}},
		},
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: RoleName, Namespace: metav1.NamespaceSystem},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: RoleName},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: User}},
	}
	return role, binding
}

// EnsureRBAC applies RBAC with an admin client; it reports what changed.
func EnsureRBAC(ctx context.Context, c kubernetes.Interface) ([]string, error) {
	role, binding := RBAC()
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
	nsRole, nsBinding := ConfigRBAC()
	ns := nsRole.Namespace
	ch, err = kubeclient.Apply(ctx, c.RbacV1().Roles(ns), nsRole, kubeclient.RoleRules)
	if err != nil {
		return changed, fmt.Errorf("Role %s/%s: %w", ns, nsRole.Name, err)
	}
	if ch {
		changed = append(changed, "Role "+ns+"/"+nsRole.Name)
	}
	ch, err = kubeclient.Apply(ctx, c.RbacV1().RoleBindings(ns), nsBinding, kubeclient.RoleBindingSubjects)
	if err != nil {
		return changed, fmt.Errorf("RoleBinding %s/%s: %w", ns, nsBinding.Name, err)
	}
	if ch {
		changed = append(changed, "RoleBinding "+ns+"/"+nsBinding.Name)
	}
	return changed, nil
}

// InstallOptions are what Install needs.
type InstallOptions struct {
	Host          host.Host
	Cluster       *config.Cluster
	Node          config.Host
	CertDir       string
	KubeconfigDir string
	// Admin applies the RBAC.
	Admin  kubernetes.Interface
	DryRun bool
	Logf   func(format string, a ...any)
	Now    func() time.Time
}

// Install sets the approver up on a control-plane host holding the cluster CA:
// RBAC and a client certificate of its own (csr-approver.conf, renewed when
// less than a third of its validity is left). The node runtime's phase starts
// it (or restarts it when the kubeconfig changed). It reports whether anything
// changed.
func Install(ctx context.Context, o InstallOptions) (bool, error) {
	h := o.Host
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	kcPath := path.Join(o.KubeconfigDir, KubeconfigName)
	spec, err := certs.SpecFromConfig(o.Cluster, o.Node.Name)
	if err != nil {
		return false, err
	}
	ks, err := certs.KubeconfigSpecFor(spec, certs.KubeconfigControllerManager, "")
	if err != nil {
		return false, err
	}
	ks.Client.Subject = pkix.Name{CommonName: User}
	ca, err := certs.LoadCA(certs.HostFS{Ctx: ctx, Host: h}, path.Join(o.CertDir, "ca.crt"), path.Join(o.CertDir, "ca.key"))
	if err != nil {
		return false, fmt.Errorf("%s: the CSR approver's certificate is issued from the cluster CA: %w", h.Name(), err)
	}
	changed := false
	rbac, err := EnsureRBAC(ctx, o.Admin)
	if err != nil {
		return false, err
	}
	for _, r := range rbac {
		o.Logf("applied %s", r)
		changed = true
	}
	cur, err := h.ReadFile(ctx, kcPath)
	if err != nil && !host.IsNotExist(err) {
		return false, err
	}
	if !validKubeconfig(cur, ca, ks.Server, o.Now()) {
		kc, err := certs.BuildKubeconfig(ca, ks)
		if err != nil {
			return false, err
		}
		if err := h.WriteFile(ctx, kcPath, kc, host.WriteOptions{Mode: 0o600, Secret: true}); err != nil {
			return false, err
		}
		o.Logf("issued %s (CN %s)", kcPath, User)
		changed = true
	}
	return changed, nil
}

// validKubeconfig reports whether an existing approver kubeconfig can stay: same
// server, a client certificate of ca for User, with a third of its life left.
func validKubeconfig(data []byte, ca *certs.CA, server string, now time.Time) bool {
	if len(data) == 0 {
		return false
	}
	cfg, err := clientcmd.Load(data)
	if err != nil {
		return false
	}
	ctx, ok := cfg.Contexts[cfg.CurrentContext]
	if !ok {
		return false
	}
	cl, auth := cfg.Clusters[ctx.Cluster], cfg.AuthInfos[ctx.AuthInfo]
	if cl == nil || auth == nil || cl.Server != server || !bytes.Equal(cl.CertificateAuthorityData, ca.CertPEM) {
		return false
	}
	crt, err := certs.ParseCertPEM(auth.ClientCertificateData)
	if err != nil || crt.Subject.CommonName != User {
		return false
	}
	if ca.Verify(crt, now, x509.ExtKeyUsageClientAuth) != nil {
		return false
	}
	life := crt.NotAfter.Sub(crt.NotBefore)
	return crt.NotAfter.Sub(now) > life/3
}
