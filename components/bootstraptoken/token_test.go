package bootstraptoken

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
)

func TestTokenSecretRoundTrip(t *testing.T) {
	tok, err := Generate(2*time.Hour, "for node07")
	if err != nil {
		t.Fatal(err)
	}
	if len(tok.ID) != 6 || len(tok.Secret) != 16 || !strings.Contains(tok.String(), ".") {
		t.Fatalf("token %q", tok)
	}
	s := tok.ToSecret()
	if s.Name != "bootstrap-token-"+tok.ID || s.Namespace != "kube-system" || s.Type != bootstrapapi.SecretTypeBootstrapToken {
		t.Fatalf("secret %s/%s type %s", s.Namespace, s.Name, s.Type)
	}
	for _, k := range []string{"usage-bootstrap-authentication", "usage-bootstrap-signing", "auth-extra-groups", "expiration", "description"} {
		if len(s.Data[k]) == 0 {
			t.Errorf("secret lacks %s", k)
		}
	}
	back, err := FromSecret(s)
	if err != nil {
		t.Fatal(err)
	}
	if back.String() != tok.String() || !back.Expires.Equal(tok.Expires) || back.Description != "for node07" ||
		!slices.Equal(back.Usages, []string{"authentication", "signing"}) || !slices.Equal(back.Groups, []string{NodeGroup}) {
		t.Errorf("round trip: %+v, want %+v", back, tok)
	}
	if back.Expired(time.Now()) || !back.Expired(tok.Expires) {
		t.Error("Expired is wrong")
	}
	if never, _ := Generate(0, ""); !never.Expires.IsZero() {
		t.Error("ttl 0 should never expire")
	}
}

func TestParseNeverEchoesTheInput(t *testing.T) {
	for _, bad := range []string{"", "abcdef", "abcdef.0123456789abcdeF", "abcdef:0123456789abcdef", "abcdefg.0123456789abcdef"} {
		_, err := Parse(bad)
		if err == nil {
			t.Errorf("Parse(%q) accepted", bad)
			continue
		}
		if bad != "" && strings.Contains(err.Error(), bad) {
			t.Errorf("error echoes the token: %v", err)
		}
	}
	if tok, err := Parse("abcdef.0123456789abcdef"); err != nil || tok.ID != "abcdef" || tok.Secret != "0123456789abcdef" {
		t.Errorf("valid token: %+v %v", tok, err)
	}
}

func TestCreateListDelete(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientset()
	a, _ := Generate(time.Hour, "a")
	b, _ := Generate(0, "b")
	for _, tok := range []Token{a, b} {
		if _, err := Create(ctx, c, tok); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Create(ctx, c, a); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("duplicate ID: %v", err)
	}
	l, err := List(ctx, c)
	if err != nil || len(l) != 2 {
		t.Fatalf("list: %v %v", l, err)
	}
	if err := Delete(ctx, c, a.String()); err != nil {
		t.Fatalf("delete by token: %v", err)
	}
	if err := Delete(ctx, c, b.ID); err != nil {
		t.Fatalf("delete by id: %v", err)
	}
	if err := Delete(ctx, c, b.ID); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("delete twice: %v", err)
	}
	if err := Delete(ctx, c, "../etc"); err == nil {
		t.Error("delete accepted a non-ID")
	}
	if l, _ := List(ctx, c); len(l) != 0 {
		t.Errorf("left: %v", l)
	}
	bad := a
	bad.Groups = []string{"system:masters"}
	if _, err := Create(ctx, c, bad); err == nil {
		t.Error("a token in system:masters was accepted")
	}
}

func TestEnsureInitTokenReusesAValidOne(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientset()
	first, created, err := EnsureInitToken(ctx, c, DefaultTTL, time.Hour)
	if err != nil || !created {
		t.Fatalf("first: %v %v", created, err)
	}
	again, created, err := EnsureInitToken(ctx, c, DefaultTTL, time.Hour)
	if err != nil || created || again.String() != first.String() {
		t.Fatalf("rerun made a new token: %v %v", created, err)
	}
	// A token about to expire is not handed out for joins.
	_ = Delete(ctx, c, first.ID)
	short := first
	short.Expires = time.Now().Add(10 * time.Minute).UTC().Truncate(time.Second)
	if _, err := Create(ctx, c, short); err != nil {
		t.Fatal(err)
	}
	fresh, created, err := EnsureInitToken(ctx, c, DefaultTTL, time.Hour)
	if err != nil || !created || fresh.ID == short.ID {
		t.Fatalf("short-lived token reused: %v %v", created, err)
	}
}

func TestNodeBootstrapRBAC(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientset()
	changed, err := EnsureNodeBootstrapRBAC(ctx, c)
	if err != nil || len(changed) != 5 {
		t.Fatalf("first: %v %v", changed, err)
	}
	crb, err := c.RbacV1().ClusterRoleBindings().Get(ctx, NodeAutoApproveBootstrapBinding, metav1.GetOptions{})
	if err != nil || crb.RoleRef.Name != "system:certificates.k8s.io:certificatesigningrequests:nodeclient" || crb.Subjects[0].Name != NodeGroup {
		t.Fatalf("autoapprove binding %+v %v", crb, err)
	}
	rot, _ := c.RbacV1().ClusterRoleBindings().Get(ctx, NodeAutoApproveRotationBinding, metav1.GetOptions{})
	if rot.RoleRef.Name != "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient" || rot.Subjects[0].Name != "system:nodes" {
		t.Errorf("rotation binding %+v", rot)
	}
	if changed, err := EnsureNodeBootstrapRBAC(ctx, c); err != nil || len(changed) != 0 {
		t.Errorf("rerun changed %v %v", changed, err)
	}
	// Someone widened a binding: the next run puts it back.
	crb.Subjects = append(crb.Subjects, rbacv1.Subject{Kind: "Group", Name: "system:unauthenticated"})
	if _, err := c.RbacV1().ClusterRoleBindings().Update(ctx, crb, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if changed, err := EnsureNodeBootstrapRBAC(ctx, c); err != nil || !slices.Equal(changed, []string{"ClusterRoleBinding " + NodeAutoApproveBootstrapBinding}) {
		t.Errorf("tampered binding: %v %v", changed, err)
	}
	crb, _ = c.RbacV1().ClusterRoleBindings().Get(ctx, NodeAutoApproveBootstrapBinding, metav1.GetOptions{})
	if len(crb.Subjects) != 1 {
		t.Errorf("subjects after repair: %v", crb.Subjects)
	}
}

func TestJoinCommands(t *testing.T) {
	j := JoinCommand{Endpoint: "192.168.175.151:6443", Token: "abcdef.0123456789abcdef", CAHash: "sha256:00ff", CertificateKey: "k3y", EtcdCertificateKey: "e7cd"}
	if got, want := j.Worker(), "KUBEFORGE_TOKEN=abcdef.0123456789abcdef kubeforge join 192.168.175.151:6443 --discovery-token-ca-cert-hash sha256:00ff"; got != want {
		t.Errorf("worker %q", got)
	}
	if got, want := j.WorkerEtcd(), "KUBEFORGE_TOKEN=abcdef.0123456789abcdef KUBEFORGE_CERTIFICATE_KEY=e7cd kubeforge join 192.168.175.151:6443 --discovery-token-ca-cert-hash sha256:00ff --etcd"; got != want {
		t.Errorf("etcd worker %q", got)
	}
	if got, want := j.ControlPlane(), "KUBEFORGE_TOKEN=abcdef.0123456789abcdef KUBEFORGE_CERTIFICATE_KEY=k3y kubeforge join 192.168.175.151:6443 --discovery-token-ca-cert-hash sha256:00ff --control-plane"; got != want {
		t.Errorf("control plane %q", got)
	}
	// No secret in what would become kubeforge's argv.
	for _, c := range []string{j.Worker(), j.WorkerEtcd(), j.ControlPlane()} {
		_, argv, _ := strings.Cut(c, " kubeforge ")
		if strings.Contains(argv, "0123456789abcdef") || strings.Contains(argv, "k3y") || strings.Contains(argv, "e7cd") || strings.Contains(argv, "--token") || strings.Contains(argv, "--certificate-key") {
			t.Errorf("secret in the arguments: %q", c)
		}
	}
	j.CertificateKey = ""
	if !strings.Contains(j.Text(), "upload-certs") || !strings.Contains(j.ControlPlane(), "upload-certs") {
		t.Errorf("without a key the text must say how to get one:\n%s", j.Text())
	}
}
