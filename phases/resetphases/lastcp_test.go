package resetphases

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kubeforge/kubeforge/components/containerd/fakehost"
)

// TestCheckNotLastControlPlane: a host running kubeforge's apiserver may be
// reset without --force only while another apiserver's address is in the
// kubernetes EndpointSlice; alone in it, or when the slice cannot be read, the
// reset is refused with ErrLastControlPlane; a worker is never refused.
func TestCheckNotLastControlPlane(t *testing.T) {
	var addrs atomic.Pointer[[]string]
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path != "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes" {
			w.WriteHeader(404)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
			"metadata":  map[string]any{"name": "kubernetes", "namespace": "default"},
			"endpoints": []any{map[string]any{"addresses": *addrs.Load()}}})
	}))
	defer srv.Close()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["c"] = &clientcmdapi.Cluster{Server: srv.URL, CertificateAuthorityData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})}
	kc.AuthInfos["a"] = &clientcmdapi.AuthInfo{Token: "x"}
	kc.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "a"}
	kc.CurrentContext = "c"
	admin, err := clientcmd.Write(*kc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	worker := fakehost.New("node01")
	if err := CheckNotLastControlPlane(ctx, worker, "/etc/kubernetes"); err != nil {
		t.Errorf("a worker: %v", err)
	}
	h := fakehost.New("master02")
	h.SetFile("/etc/systemd/system/kube-apiserver.service", "# written by kubeforge\nExecStart=/usr/local/bin/kube-apiserver --advertise-address=192.168.161.150 \\\n", 0o644)
	if err := CheckNotLastControlPlane(ctx, h, "/etc/kubernetes"); !errors.Is(err, ErrLastControlPlane) || !strings.Contains(err.Error(), "admin.conf") {
		t.Errorf("no admin.conf: %v", err)
	}
	h.SetFile("/etc/kubernetes/admin.conf", string(admin), 0o600)
	addrs.Store(&[]string{"192.168.161.150", "192.168.161.151"})
	if err := CheckNotLastControlPlane(ctx, h, "/etc/kubernetes"); err != nil {
		t.Errorf("with master01 serving too: %v", err)
	}
	addrs.Store(&[]string{"192.168.161.150"})
	err = CheckNotLastControlPlane(ctx, h, "/etc/kubernetes")
	if !errors.Is(err, ErrLastControlPlane) || !strings.Contains(err.Error(), "--force") || !strings.Contains(err.Error(), "192.168.161.150") {
		t.Errorf("alone: %v", err)
	}
	srv.Close()
	if err := CheckNotLastControlPlane(ctx, h, "/etc/kubernetes"); !errors.Is(err, ErrLastControlPlane) || !strings.Contains(err.Error(), "cannot be checked") {
		t.Errorf("API down: %v", err)
	}
}
