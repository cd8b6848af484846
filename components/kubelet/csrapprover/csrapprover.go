// Package csrapprover approves the certificate signing requests nodes make for
// themselves that Kubernetes leaves to someone else:
//
//   - kubelet serving certificates (signer kubernetes.io/kubelet-serving), which
//     every kubelet with serverTLSBootstrap requests at start and on rotation.
//     kube-controller-manager signs them once approved but never approves them:
//     the node chooses the names in the certificate, and nothing checks them.
//     kubeadm leaves approval to the operator; kubeforge runs this approver on
//     control-plane hosts (kubeforge-csr-approver.service) so joins finish
//     unattended and rotations never lapse;
//   - kube-proxy's client certificate (signer kubernetes.io/kube-apiserver-client,
//     CN system:kube-proxy), requested by a joined node for its kube-proxy.
//     The identity can only read services, endpoints and nodes (ClusterRole
//     system:node-proxier), which a node can read already, so approving it for a
//     node grants nothing new.
//
// What is checked before approving, and why:
//   - the requester is a node identity (system:node:<name>, group system:nodes)
//     of a Node that exists: a bootstrap token holder or any other user gets
//     nothing from this approver;
//   - the CSR's signature verifies and its subject is exactly what the signer
//     expects (CN = the requester for serving certificates, O = system:nodes;
//     CN system:kube-proxy and nothing else for kube-proxy);
//   - key usages are those of a TLS server (or client) certificate, nothing more;
//   - a serving certificate names only the requesting node's own name and the
//     address(es) the control plane recorded for its host in the uploaded
//     cluster configuration (kube-system/kubeforge-config), never what the node
//     wrote into its own status; and never a name or IP of the API server, the
//     service network, the control-plane endpoint, or another host or Node
//     (see Policy). The controller-manager signs what is approved with the
//     kubelet-serving CA, which only kube-apiserver trusts, and only for
//     kubelets.
//
// A CSR that fails a check is left pending (an operator may still approve it by
// hand) and the reason is logged once; it is never denied automatically.
package csrapprover

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Identity and RBAC names of the approver.
const (
	// User is the CN of the approver's client certificate.
	User = "kubeforge:csr-approver"
	// ClusterRole and ClusterRoleBinding name.
	RoleName = "kubeforge:csr-approver"
	// KubeProxyUser is the identity kube-proxy's certificate carries; the
	// apiserver's RBAC bootstrap binds it to system:node-proxier.
	KubeProxyUser = "system:kube-proxy"
	// ApprovalReason marks approvals made by this package.
	ApprovalReason = "KubeforgeCSRApprover"
	// RemovalAnnotation on a Node asks for its deletion. `kubeforge reset` on a
	// worker sets it: a node identity may change its own Node (and, through the
	// NodeRestriction admission plugin, no other), but may not delete it.
	RemovalAnnotation = "kubeforge.io/reset-requested"
)

const nodeUserPrefix = "system:node:"

// Kind says what a CSR asks for, as far as this approver is concerned.
type Kind string

const (
	KindKubeletServing Kind = "kubelet-serving"
	KindKubeProxy      Kind = "kube-proxy-client"
	KindOther          Kind = ""
)

// Decision is the verdict on one CSR.
type Decision struct {
	Kind    Kind
	Node    string
	Approve bool
	// Reason says why not (or what was approved).
	Reason string
}

// Nodes is what Check knows about the cluster's Nodes.
type Nodes map[string]*corev1.Node

// Check decides on one CSR. It does not look at the CSR's status: callers only
// pass pending requests.
func Check(csr *certv1.CertificateSigningRequest, in Inputs) Decision {
	d := Decision{}
	switch csr.Spec.SignerName {
	case certv1.KubeletServingSignerName:
		d.Kind = KindKubeletServing
	case certv1.KubeAPIServerClientSignerName:
		d.Kind = KindKubeProxy
	default:
		d.Reason = "signer " + csr.Spec.SignerName + " is not one this approver handles"
		return d
	}
	deny := func(format string, a ...any) Decision {
		d.Reason = fmt.Sprintf(format, a...)
		return d
	}
	if !strings.HasPrefix(csr.Spec.Username, nodeUserPrefix) || !slices.Contains(csr.Spec.Groups, "system:nodes") {
		if d.Kind == KindKubeProxy {
			d.Kind = KindOther // someone else's client certificate: not ours to judge
		}
		return deny("requested by %q, not by a node identity", csr.Spec.Username)
	}
	d.Node = strings.TrimPrefix(csr.Spec.Username, nodeUserPrefix)
	if _, ok := in.Nodes[d.Node]; !ok {
		return deny("node %s does not exist (yet)", d.Node)
	}
	req, err := parseCSR(csr.Spec.Request)
	if err != nil {
		return deny("%v", err)
	}
	if len(req.EmailAddresses) > 0 || len(req.URIs) > 0 {
		return deny("asks for email or URI names")
	}
	switch d.Kind {
	case KindKubeletServing:
		if req.Subject.CommonName != csr.Spec.Username || !slices.Equal(req.Subject.Organization, []string{"system:nodes"}) || extraSubject(req) {
			return deny("subject %q is not CN=%s, O=system:nodes", req.Subject.String(), csr.Spec.Username)
		}
		if err := usages(csr.Spec.Usages, certv1.UsageServerAuth); err != nil {
			return deny("%v", err)
		}
		if len(req.DNSNames)+len(req.IPAddresses) == 0 {
			return deny("names no DNS name or IP address")
		}
		if err := sansOfNode(req, d.Node, in); err != nil {
			return deny("%v", err)
		}
		d.Approve, d.Reason = true, fmt.Sprintf("kubelet serving certificate of node %s for %s", d.Node, sanList(req))
	case KindKubeProxy:
		if req.Subject.CommonName != KubeProxyUser || len(req.Subject.Organization) > 0 || extraSubject(req) {
			return deny("subject %q is not CN=%s alone", req.Subject.String(), KubeProxyUser)
		}
		if len(req.DNSNames)+len(req.IPAddresses) > 0 {
			return deny("a client certificate with subject alternative names")
		}
		if err := usages(csr.Spec.Usages, certv1.UsageClientAuth); err != nil {
			return deny("%v", err)
		}
		d.Approve, d.Reason = true, fmt.Sprintf("kube-proxy client certificate requested by node %s", d.Node)
	}
	return d
}

func parseCSR(data []byte) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("request is not a PEM CERTIFICATE REQUEST")
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("request does not parse: %w", err)
	}
	if err := req.CheckSignature(); err != nil {
		return nil, fmt.Errorf("request signature does not verify: %w", err)
	}
	return req, nil
}

// extraSubject reports subject fields beyond CN and O.
func extraSubject(r *x509.CertificateRequest) bool {
	s := r.Subject
	return len(s.OrganizationalUnit)+len(s.Country)+len(s.Province)+len(s.Locality)+len(s.StreetAddress)+len(s.PostalCode) > 0 || s.SerialNumber != ""
}

// usages allows exactly what a TLS certificate of the given kind needs: the
// required usage, plus digital signature and (for RSA keys) key encipherment.
func usages(got []certv1.KeyUsage, required certv1.KeyUsage) error {
	allowed := map[certv1.KeyUsage]bool{certv1.UsageDigitalSignature: true, certv1.UsageKeyEncipherment: true, required: true}
	has := false
	for _, u := range got {
		if !allowed[u] {
			return fmt.Errorf("usage %q is not allowed (only %s, digital signature, key encipherment)", u, required)
		}
		has = has || u == required
	}
	if !has {
		return fmt.Errorf("usages %v lack %q", got, required)
	}
	return nil
}

func sanList(r *x509.CertificateRequest) string {
	var out []string
	out = append(out, r.DNSNames...)
	for _, ip := range r.IPAddresses {
		out = append(out, ip.String())
	}
	return strings.Join(out, ", ")
}

func pending(csr *certv1.CertificateSigningRequest) bool {
	for _, c := range csr.Status.Conditions {
		if c.Type == certv1.CertificateApproved || c.Type == certv1.CertificateDenied || c.Type == certv1.CertificateFailed {
			return false
		}
	}
	return true
}

// Approver approves what Check allows.
type Approver struct {
	Client kubernetes.Interface
	Logf   func(format string, a ...any)
	// APIServerCert is the apiserver's serving certificate file on this host;
	// its SANs are refused in kubelet serving certificates. Empty: only those
	// the cluster configuration implies.
	APIServerCert string

	mu     sync.Mutex
	logged map[string]string // CSR name -> last reason logged, so a pending CSR is reported once
}

func (a *Approver) logf(format string, args ...any) {
	if a.Logf != nil {
		a.Logf(format, args...)
	}
}

// RemoveRequested deletes the Nodes that asked for it (RemovalAnnotation). Only
// the node itself or an admin can have set the annotation, so the request is
// the node's own. It returns the names it deleted.
func (a *Approver) RemoveRequested(ctx context.Context) ([]string, error) {
	nl, err := a.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	var deleted []string
	var errs []error
	for i := range nl.Items {
		ok, err := a.removeIfAsked(ctx, &nl.Items[i])
		if err != nil {
			errs = append(errs, err)
		}
		if ok {
			deleted = append(deleted, nl.Items[i].Name)
		}
	}
	return deleted, errors.Join(errs...)
}

// removeIfAsked deletes n if it carries RemovalAnnotation, and reports whether
// it did.
func (a *Approver) removeIfAsked(ctx context.Context, n *corev1.Node) (bool, error) {
	if _, ok := n.Annotations[RemovalAnnotation]; !ok {
		return false, nil
	}
	// Preconditions: delete exactly the object that carried the request, not a
	// Node of the same name registered again since.
	uid := n.UID
	err := a.Client.CoreV1().Nodes().Delete(ctx, n.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("deleting Node %s: %w", n.Name, err)
	}
	a.logf("deleted Node %s: its kubeforge reset asked for it (%s)", n.Name, n.Annotations[RemovalAnnotation])
	return true, nil
}

// Sync looks at every pending CSR once and approves those Check allows. It
// returns the names it approved. Run does the same continuously from its
// informers; Sync serves one-off passes and tests.
func (a *Approver) Sync(ctx context.Context) ([]string, error) {
	list, err := a.Client.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing CSRs: %w", err)
	}
	var todo []*certv1.CertificateSigningRequest
	for i := range list.Items {
		if pending(&list.Items[i]) {
			todo = append(todo, &list.Items[i])
		}
	}
	if len(todo) == 0 {
		return nil, nil
	}
	nl, err := a.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	nodes := Nodes{}
	for i := range nl.Items {
		nodes[nl.Items[i].Name] = &nl.Items[i]
	}
	in := a.inputs(ctx, nodes)
	var approved []string
	var errs []error
	for _, csr := range todo {
		ok, err := a.judge(ctx, csr, in)
		if err != nil {
			errs = append(errs, err)
		}
		if ok {
			approved = append(approved, csr.Name)
		}
	}
	return approved, errors.Join(errs...)
}

// judge approves csr if Check allows it, and logs a refusal once per reason. It
// reports whether it approved; a conflict or a CSR deleted meanwhile is neither
// an approval nor an error (the caller sees the CSR's new state next).
func (a *Approver) judge(ctx context.Context, csr *certv1.CertificateSigningRequest, in Inputs) (bool, error) {
	d := Check(csr, in)
	if d.Kind == KindOther {
		return false, nil
	}
	if !d.Approve {
		a.mu.Lock()
		if a.logged == nil {
			a.logged = map[string]string{}
		}
		if a.logged[csr.Name] != d.Reason {
			a.logged[csr.Name] = d.Reason
			a.logf("leaving CSR %s pending: %s", csr.Name, d.Reason)
		}
		a.mu.Unlock()
		return false, nil
	}
	csr = csr.DeepCopy()
	csr.Status.Conditions = append(csr.Status.Conditions, certv1.CertificateSigningRequestCondition{
		Type: certv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: ApprovalReason,
		Message: "approved by kubeforge: " + d.Reason, LastUpdateTime: metav1.Now(),
	})
	_, err := a.Client.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("approving CSR %s: %w", csr.Name, err)
	}
	a.mu.Lock()
	delete(a.logged, csr.Name)
	a.mu.Unlock()
	a.logf("approved CSR %s: %s", csr.Name, d.Reason)
	return true, nil
}
