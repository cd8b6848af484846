package cmd

import (
	"bytes"
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	"k8s.io/cluster-bootstrap/token/jws"

	"github.com/kubeforge/kubeforge/components/bootstraptoken"
)

func clusterInfoCM() *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: bootstrapapi.ConfigMapClusterInfo, Namespace: metav1.NamespacePublic},
		Data:       map[string]string{bootstrapapi.KubeConfigKey: "apiVersion: v1\nkind: Config\n"},
	}
}

// TestTokenCreateWaitsForTheSignature plays the bootstrap signer: it signs
// cluster-info only when the token's Secret is created, from another goroutine.
// token create must not return before the signature is there.
func TestTokenCreateWaitsForTheSignature(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientset(clusterInfoCM())
	tok, err := bootstraptoken.Generate(time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	var signing atomic.Bool // set before the signature is written
	c.PrependReactor("create", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		go func() {
			cm, err := c.CoreV1().ConfigMaps(metav1.NamespacePublic).Get(ctx, bootstrapapi.ConfigMapClusterInfo, metav1.GetOptions{})
			if err != nil {
				t.Error(err)
				return
			}
			cm.Data[bootstrapapi.JWSSignatureKeyPrefix+tok.ID], _ = jws.ComputeDetachedSignature(cm.Data[bootstrapapi.KubeConfigKey], tok.ID, tok.Secret)
			signing.Store(true)
			if _, err := c.CoreV1().ConfigMaps(metav1.NamespacePublic).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
				t.Error(err)
			}
		}()
		return false, nil, nil // the tracker stores the Secret
	})
	if err := createSignedToken(ctx, c, tok, time.Minute, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if !signing.Load() {
		t.Fatal("createSignedToken returned before the signer had signed cluster-info")
	}
	if _, err := bootstraptoken.Get(ctx, c, tok.ID); err != nil {
		t.Errorf("the signed token is gone: %v", err)
	}
}

// TestTokenCreateDeletesAnUnsignedToken: no signer runs; the token whose
// secret was never shown must not stay behind.
func TestTokenCreateDeletesAnUnsignedToken(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientset(clusterInfoCM())
	tok, _ := bootstraptoken.Generate(time.Hour, "")
	err := createSignedToken(ctx, c, tok, 300*time.Millisecond, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "not signed for token "+tok.ID) || !strings.Contains(err.Error(), "deleted again") {
		t.Fatalf("err = %v", err)
	}
	if _, err := bootstraptoken.Get(ctx, c, tok.ID); err == nil {
		t.Error("the unsigned token is still there")
	}
}
