package kubeclient

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
)

type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (l *logSink) logf(f string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(f, a...))
}

func (l *logSink) String() string { return strings.Join(l.lines, "\n") }

// TestDryRunOffline: no apiserver at all (a fresh host): nothing exists, writes
// are printed with Secret values hidden, and answered like the apiserver would.
func TestDryRunOffline(t *testing.T) {
	ctx := context.Background()
	// A port on loopback that nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var log logSink
	c, err := NewForConfig(&rest.Config{Host: "https://" + addr, TLSClientConfig: rest.TLSClientConfig{Insecure: true}}, Options{DryRun: true, Logf: log.logf})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Offline {
		t.Fatal("no apiserver, but not offline")
	}
	_, err = c.CoreV1().Secrets("kube-system").Get(ctx, "x", metav1.GetOptions{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("get: %v", err)
	}
	list, err := c.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{})
	if err != nil || len(list.Items) != 0 {
		t.Errorf("list: %v %v", list, err)
	}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "bootstrap-token-abcdef", Namespace: "kube-system"},
		Data: map[string][]byte{"token-secret": []byte("0123456789abcdef")}}
	got, err := c.CoreV1().Secrets("kube-system").Create(ctx, s, metav1.CreateOptions{})
	if err != nil || got.Name != s.Name || got.UID == "" {
		t.Fatalf("create: %+v %v", got, err)
	}
	if strings.Contains(log.String(), "0123456789abcdef") || strings.Contains(log.String(), "MDEyMzQ1Njc4OWFiY2RlZg") {
		t.Errorf("the dry run printed a secret:\n%s", log.String())
	}
	if !strings.Contains(log.String(), "would create Secret kube-system/bootstrap-token-abcdef") || !strings.Contains(log.String(), "token-secret: '<secret: 16 bytes>'") {
		t.Errorf("log:\n%s", log.String())
	}
	if w := c.Writes(); len(w) != 1 || w[0] != "create Secret kube-system/bootstrap-token-abcdef" {
		t.Errorf("writes %v", w)
	}
}

// TestDryRunOnline: with an apiserver, reads are real and writes never arrive.
func TestDryRunOnline(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	var methods []string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		methods = append(methods, r.Method+" "+r.URL.Path)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/readyz":
			fmt.Fprint(w, "ok")
		case "/api/v1/namespaces/kube-public/configmaps/cluster-info":
			fmt.Fprint(w, `{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"cluster-info","namespace":"kube-public"},"data":{"kubeconfig":"real"}}`)
		default:
			w.WriteHeader(http.StatusTeapot)
		}
	}))
	defer srv.Close()
	c, err := NewForConfig(&rest.Config{Host: srv.URL, TLSClientConfig: rest.TLSClientConfig{Insecure: true}}, Options{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if c.Offline {
		t.Fatal("apiserver answers, but offline")
	}
	cm, err := c.CoreV1().ConfigMaps("kube-public").Get(ctx, "cluster-info", metav1.GetOptions{})
	if err != nil || cm.Data["kubeconfig"] != "real" {
		t.Fatalf("get: %+v %v", cm, err)
	}
	cm.Data["kubeconfig"] = "changed"
	if _, err := c.CoreV1().ConfigMaps("kube-public").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.CoreV1().ConfigMaps("kube-public").Delete(ctx, "cluster-info", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, m := range methods {
		if !strings.HasPrefix(m, "GET ") {
			t.Errorf("a dry run sent %s to the apiserver", m)
		}
	}
}

func TestApply(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientset()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "ns"}, Data: map[string]string{"a": "1"}}
	for i, want := range []bool{true, false} {
		ch, err := Apply(ctx, c.CoreV1().ConfigMaps("ns"), cm.DeepCopy(), ConfigMapData)
		if err != nil || ch != want {
			t.Fatalf("apply %d: changed=%v err=%v", i, ch, err)
		}
	}
	cm.Data["a"] = "2"
	if ch, err := Apply(ctx, c.CoreV1().ConfigMaps("ns"), cm.DeepCopy(), ConfigMapData); err != nil || !ch {
		t.Fatalf("changed value: %v %v", ch, err)
	}
	got, _ := c.CoreV1().ConfigMaps("ns").Get(ctx, "x", metav1.GetOptions{})
	if got.Data["a"] != "2" {
		t.Errorf("data %v", got.Data)
	}
}
