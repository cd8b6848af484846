package controlplane_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/bootstraptoken"
	"github.com/kubeforge/kubeforge/components/clusterinfo"
	"github.com/kubeforge/kubeforge/components/controlplane/loopbacktest"
	"github.com/kubeforge/kubeforge/components/kubeclient"
)

func TestLoopbackControlPlane(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	lc := loopbacktest.Run(t, ctx, nil)
	cfg, endpoint, etcdPort, certDir, kcDir, logDir, caPEM, daemons := lc.Cfg, lc.Endpoint, lc.EtcdPort, lc.CertDir, lc.KcDir, lc.LogDir, lc.CAPEM, lc.Daemons

	adminConf, _ := os.ReadFile(filepath.Join(kcDir, certs.KubeconfigAdmin))
	admin, err := kubeclient.New(adminConf, kubeclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	superConf, _ := os.ReadFile(filepath.Join(kcDir, certs.KubeconfigSuperAdmin))
	if _, err := admin.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err == nil {
		t.Fatal("admin.conf has rights before kubeadm:cluster-admins is bound: it is not in the group RBAC can revoke")
	}
	if _, err := clusterinfo.EnsureClusterAdmins(ctx, admin, func() (kubernetes.Interface, error) { return kubeclient.New(superConf, kubeclient.Options{}) }); err != nil {
		t.Fatal(err)
	}

	t.Run("advertise address in the kubernetes endpoints", func(t *testing.T) {
		// The apiserver's endpoint reconciler writes the object shortly after /readyz
		// turns ok (and later still on a loaded machine): poll for it.
		var ep *corev1.Endpoints
		var err error
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
			ep, err = admin.CoreV1().Endpoints("default").Get(ctx, "kubernetes", metav1.GetOptions{})
			if err == nil && len(ep.Subsets) > 0 {
				break
			}
		}
		if err != nil || len(ep.Subsets) == 0 || ep.Subsets[0].Addresses[0].IP != loopbacktest.Advertise {
			t.Errorf("kubernetes endpoints %+v %v", ep, err)
		}
	})

	t.Run("anonymous only on health and cluster-info", func(t *testing.T) {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
		for path, want := range map[string]int{"/readyz": 200, "/livez": 200, "/healthz": 200, "/api": 401, "/version": 401,
			"/api/v1/namespaces/kube-system/secrets": 401, "/api/v1/namespaces/kube-public/configmaps": 401} {
			resp, err := hc.Get("https://" + endpoint + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("anonymous GET %s: %d, want %d", path, resp.StatusCode, want)
			}
		}
	})

	t.Run("join material", func(t *testing.T) {
		if _, err := bootstraptoken.EnsureNodeBootstrapRBAC(ctx, admin); err != nil {
			t.Fatal(err)
		}
		tok, _, err := bootstraptoken.EnsureInitToken(ctx, admin, time.Hour, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := clusterinfo.EnsureClusterInfo(ctx, admin, "https://"+endpoint, caPEM); err != nil {
			t.Fatal(err)
		}
		took, err := clusterinfo.WaitSigned(ctx, admin, tok, time.Minute, t.Logf)
		if err != nil {
			t.Fatalf("%v\n%s", err, daemons[1].Tail())
		}
		t.Logf("bootstrapsigner signed cluster-info after %s", took)

		// A joining host reads cluster-info with no credentials at all...
		anon, err := kubeclient.NewForConfig(anonymousConfig(endpoint, caPEM), kubeclient.Options{})
		if err != nil {
			t.Fatal(err)
		}
		cm, err := anon.CoreV1().ConfigMaps("kube-public").Get(ctx, "cluster-info", metav1.GetOptions{})
		if err != nil || !clusterinfo.Signed(cm, tok) {
			t.Fatalf("anonymous cluster-info: signed=%v err=%v", cm != nil && clusterinfo.Signed(cm, tok), err)
		}
		// ...then, with the token, the uploaded certificates and the config.
		key, _ := certs.NewCertificateKey()
		files, err := certs.ReadSharedFiles(certs.LocalFS{}, certDir)
		if err != nil {
			t.Fatal(err)
		}
		if err := clusterinfo.UploadCerts(ctx, admin, key, files); err != nil {
			t.Fatal(err)
		}
		if _, err := clusterinfo.UploadConfig(ctx, admin, cfg); err != nil {
			t.Fatal(err)
		}
		tc := anonymousConfig(endpoint, caPEM)
		tc.BearerToken = tok.String()
		joiner, err := kubeclient.NewForConfig(tc, kubeclient.Options{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := clusterinfo.DownloadCerts(ctx, joiner, key)
		if err != nil || !bytes.Equal(got["ca.key"], files["ca.key"]) {
			t.Fatalf("download with the join token: %v", err)
		}
		if _, err := clusterinfo.DownloadConfig(ctx, joiner); err != nil {
			t.Fatalf("config with the join token: %v", err)
		}
		// A join token is no admin credential.
		if _, err := joiner.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{}); err == nil {
			t.Error("a join token may list kube-system secrets")
		}
	})

	t.Run("secrets encrypted at rest", func(t *testing.T) {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "enc-check", Namespace: "default"}, StringData: map[string]string{"password": "plaintext-canary"}}
		if _, err := admin.CoreV1().Secrets("default").Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		raw := etcdGet(t, ctx, etcdPort, certDir, "/registry/secrets/default/enc-check")
		if !bytes.HasPrefix(raw, []byte("k8s:enc:secretbox:v1:key1:")) || bytes.Contains(raw, []byte("plaintext-canary")) {
			t.Errorf("stored secret starts %q", raw[:min(len(raw), 40)])
		}
	})

	t.Run("leaders and audit log", func(t *testing.T) {
		for _, n := range []string{"kube-controller-manager", "kube-scheduler"} {
			deadline := time.Now().Add(time.Minute)
			for {
				l, err := admin.CoordinationV1().Leases("kube-system").Get(ctx, n, metav1.GetOptions{})
				if err == nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no leader for %s: %v", n, err)
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
		audit, err := os.ReadFile(filepath.Join(logDir, "audit", "audit.log"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(audit, []byte(`"verb":"create"`)) || !bytes.Contains(audit, []byte(`"objectRef":{"resource":"secrets","namespace":"default","name":"enc-check"`)) || bytes.Contains(audit, []byte("plaintext-canary")) {
			t.Errorf("audit log: the secret's creation is missing or its content is logged:\n%s", audit[max(0, len(audit)-3000):])
		}
		if fi, _ := os.Stat(filepath.Join(logDir, "audit", "audit.log")); fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("audit log mode %v", fi.Mode())
		}
	})
}

// anonymousConfig is a client config without credentials, trusting the CA.
func anonymousConfig(endpoint string, caPEM []byte) *rest.Config {
	return &rest.Config{Host: "https://" + endpoint, TLSClientConfig: rest.TLSClientConfig{CAData: caPEM}}
}

func etcdGet(t *testing.T, ctx context.Context, port int, certDir, key string) []byte {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(certDir, "etcd/healthcheck-client.crt"), filepath.Join(certDir, "etcd/healthcheck-client.key"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, _ := os.ReadFile(filepath.Join(certDir, "etcd/ca.crt"))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: []string{fmt.Sprintf("https://127.0.0.1:%d", port)}, DialTimeout: 5 * time.Second,
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool}, Logger: zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	resp, err := cli.Get(ctx, key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("etcd get %s: %v", key, err)
	}
	return resp.Kvs[0].Value
}
