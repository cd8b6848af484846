package clusterinfo

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/cluster-bootstrap/token/jws"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/bootstraptoken"
)

const caPEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

func TestClusterInfoKeepsSignatures(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientset()
	changed, err := EnsureClusterInfo(ctx, c, "https://192.168.175.151:6443", []byte(caPEM))
	if err != nil || len(changed) != 3 {
		t.Fatalf("first: %v %v", changed, err)
	}
	cm, err := c.CoreV1().ConfigMaps("kube-public").Get(ctx, "cluster-info", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kc, err := clientcmd.Load([]byte(cm.Data["kubeconfig"]))
	if err != nil || kc.Clusters[""] == nil || kc.Clusters[""].Server != "https://192.168.175.151:6443" || string(kc.Clusters[""].CertificateAuthorityData) != caPEM {
		t.Fatalf("cluster-info kubeconfig: %+v %v", kc, err)
	}
	if len(kc.AuthInfos) != 0 {
		t.Error("cluster-info carries credentials")
	}
	if changed, err := EnsureClusterInfo(ctx, c, "https://192.168.175.151:6443", []byte(caPEM)); err != nil || len(changed) != 0 {
		t.Errorf("rerun changed %v %v", changed, err)
	}
	// The bootstrapsigner's signatures are not kubeforge's to remove.
	cm.Data["jws-kubeconfig-abcdef"] = "sig"
	if _, err := c.CoreV1().ConfigMaps("kube-public").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if changed, err := EnsureClusterInfo(ctx, c, "https://lb.example:6443", []byte(caPEM)); err != nil || len(changed) != 1 {
		t.Fatalf("endpoint change: %v %v", changed, err)
	}
	cm, _ = c.CoreV1().ConfigMaps("kube-public").Get(ctx, "cluster-info", metav1.GetOptions{})
	if cm.Data["jws-kubeconfig-abcdef"] != "sig" || !strings.Contains(cm.Data["kubeconfig"], "lb.example") {
		t.Errorf("after update: %v", cm.Data)
	}
	rb, err := c.RbacV1().RoleBindings("kube-public").Get(ctx, ClusterInfoRole, metav1.GetOptions{})
	if err != nil || len(rb.Subjects) != 2 || rb.Subjects[0].Name != "system:anonymous" {
		t.Errorf("cluster-info binding %+v %v", rb, err)
	}
}

func TestWaitSignedVerifiesTheSignature(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientset()
	if _, err := EnsureClusterInfo(ctx, c, "https://192.168.175.151:6443", []byte(caPEM)); err != nil {
		t.Fatal(err)
	}
	tok, _ := bootstraptoken.Generate(time.Hour, "")
	other, _ := bootstraptoken.Generate(time.Hour, "")
	// Play the bootstrapsigner: the third read finds a signature, first a wrong
	// one (made with another token's secret), then the right one.
	gets := 0
	c.PrependReactor("get", "configmaps", func(a k8stesting.Action) (bool, runtime.Object, error) {
		gets++
		cm, err := c.Tracker().Get(schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}, "kube-public", "cluster-info")
		if err != nil {
			return true, nil, err
		}
		cm = cm.DeepCopyObject()
		data := cm.(*corev1.ConfigMap).Data
		switch {
		case gets >= 4:
			data["jws-kubeconfig-"+tok.ID], _ = jws.ComputeDetachedSignature(data["kubeconfig"], tok.ID, tok.Secret)
		case gets >= 2:
			data["jws-kubeconfig-"+tok.ID], _ = jws.ComputeDetachedSignature(data["kubeconfig"], tok.ID, other.Secret)
		}
		return true, cm, nil
	})
	if _, err := WaitSigned(ctx, c, tok, time.Minute, nil); err != nil {
		t.Fatal(err)
	}
	if gets != 4 {
		t.Errorf("accepted the signature after %d reads, want 4 (a wrong signature must not count)", gets)
	}
	cm, _ := c.CoreV1().ConfigMaps("kube-public").Get(ctx, "cluster-info", metav1.GetOptions{})
	if !Signed(cm, tok) || Signed(cm, other) {
		t.Error("Signed misjudges")
	}
}

func TestWaitSignedTimesOut(t *testing.T) {
	c := fake.NewClientset()
	tok, _ := bootstraptoken.Generate(time.Hour, "")
	_, err := WaitSigned(context.Background(), c, tok, time.Millisecond, nil)
	if err == nil || !strings.Contains(err.Error(), "bootstrapsigner") {
		t.Errorf("err = %v", err)
	}
}

func TestUploadConfigRoundTrip(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientset()
	cfg := config.Default()
	if changed, err := UploadConfig(ctx, c, cfg); err != nil || len(changed) != 4 {
		t.Fatalf("upload: %v %v", changed, err)
	}
	if changed, err := UploadConfig(ctx, c, cfg); err != nil || len(changed) != 0 {
		t.Fatalf("rerun: %v %v", changed, err)
	}
	back, err := DownloadConfig(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if back.Spec.ControlPlaneEndpoint != cfg.Spec.ControlPlaneEndpoint || len(back.Spec.Hosts) != 3 {
		t.Errorf("download: %+v", back.Spec)
	}
}

func TestUploadCerts(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientset()
	key, _ := certs.NewCertificateKey()
	files := map[string][]byte{"ca.key": []byte("secret-ca-key"), "ca.crt": []byte("cert"), EncryptionConfigKey: []byte("enc")}
	if cur, err := UploadCurrent(ctx, c, key, files); err != nil || cur {
		t.Fatalf("before upload: %v %v", cur, err)
	}
	if err := UploadCerts(ctx, c, key, files); err != nil {
		t.Fatal(err)
	}
	s, err := c.CoreV1().Secrets("kube-system").Get(ctx, CertsSecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(s.Data[CertsKey]), "secret-ca-key") {
		t.Fatal("the CA key is stored in clear")
	}
	if len(s.OwnerReferences) != 1 || !strings.HasPrefix(s.OwnerReferences[0].Name, "bootstrap-token-") {
		t.Fatalf("owner %+v", s.OwnerReferences)
	}
	owner, err := c.CoreV1().Secrets("kube-system").Get(ctx, s.OwnerReferences[0].Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := bootstraptoken.FromSecret(owner)
	if err != nil || len(tok.Usages) != 0 || time.Until(tok.Expires) > CertsTTL || time.Until(tok.Expires) < CertsTTL-time.Minute {
		t.Errorf("owner token %+v %v: want no usages and a %s TTL", tok, err, CertsTTL)
	}
	got, err := DownloadCerts(ctx, c, key)
	if err != nil || string(got["ca.key"]) != "secret-ca-key" || string(got[EncryptionConfigKey]) != "enc" {
		t.Fatalf("download: %v %v", got, err)
	}
	if cur, err := UploadCurrent(ctx, c, key, files); err != nil || !cur {
		t.Errorf("current upload not recognised: %v %v", cur, err)
	}
	other, _ := certs.NewCertificateKey()
	if _, err := DownloadCerts(ctx, c, other); !errors.Is(err, certs.ErrWrongCertificateKey) {
		t.Errorf("wrong key: %v", err)
	}
	if cur, _ := UploadCurrent(ctx, c, other, files); cur {
		t.Error("an upload under another key counts as current")
	}
	files["ca.crt"] = []byte("renewed")
	if cur, _ := UploadCurrent(ctx, c, key, files); cur {
		t.Error("an upload of old files counts as current")
	}
	// A new upload replaces the old one and drops the old TTL token.
	if err := UploadCerts(ctx, c, other, files); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CoreV1().Secrets("kube-system").Get(ctx, owner.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the superseded upload token still exists: %v", err)
	}
	if cur, _ := UploadCurrent(ctx, c, other, files); !cur {
		t.Error("the new upload is not current")
	}
	// An upload close to its expiry is not kept: after a cluster restart the
	// token cleaner deletes it seconds after init looked (make lab failed so).
	s, _ = c.CoreV1().Secrets("kube-system").Get(ctx, CertsSecretName, metav1.GetOptions{})
	carrier, _ := c.CoreV1().Secrets("kube-system").Get(ctx, s.OwnerReferences[0].Name, metav1.GetOptions{})
	carrier.Data["expiration"] = []byte(time.Now().Add(MinUploadLife - time.Minute).UTC().Format(time.RFC3339))
	if _, err := c.CoreV1().Secrets("kube-system").Update(ctx, carrier, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if cur, err := UploadCurrent(ctx, c, other, files); err != nil || cur {
		t.Errorf("an upload expiring within %s counts as current: %v %v", MinUploadLife, cur, err)
	}
	_ = c.CoreV1().Secrets("kube-system").Delete(ctx, CertsSecretName, metav1.DeleteOptions{})
	if _, err := DownloadCerts(ctx, c, key); !errors.Is(err, ErrNoUpload) {
		t.Errorf("no upload: %v", err)
	}
}

func TestEnsureClusterAdminsFallsBackToSuperAdmin(t *testing.T) {
	ctx := context.Background()
	admin := fake.NewClientset()
	forbid := func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "rbac.authorization.k8s.io", Resource: "clusterrolebindings"}, "kubeadm:cluster-admins", errors.New("no rights yet"))
	}
	admin.PrependReactor("*", "clusterrolebindings", forbid)
	super := fake.NewClientset()
	used := false
	changed, err := EnsureClusterAdmins(ctx, admin, func() (kubernetes.Interface, error) { used = true; return super, nil })
	if err != nil || !changed || !used {
		t.Fatalf("changed=%v used=%v err=%v", changed, used, err)
	}
	crb, err := super.RbacV1().ClusterRoleBindings().Get(ctx, ClusterAdminsGroup, metav1.GetOptions{})
	if err != nil || crb.RoleRef.Name != "cluster-admin" || crb.Subjects[0].Name != ClusterAdminsGroup {
		t.Errorf("binding %+v %v", crb, err)
	}
	// Once admin.conf has its rights, super-admin.conf is not touched.
	used = false
	if changed, err := EnsureClusterAdmins(ctx, super, func() (kubernetes.Interface, error) { used = true; return nil, errors.New("x") }); err != nil || changed || used {
		t.Errorf("second run: changed=%v used=%v err=%v", changed, used, err)
	}
}
