package controlplane_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/bootstraptoken"
	"github.com/kubeforge/kubeforge/components/clusterinfo"
	"github.com/kubeforge/kubeforge/components/controlplane"
	"github.com/kubeforge/kubeforge/components/kubeclient"
)

// The loopback integration test runs the real etcd, kube-apiserver,
// kube-controller-manager and kube-scheduler from the bundle with exactly the
// flags and files the units get, as plain processes. All traffic goes to
// 127.0.0.1. The advertise address is 192.0.2.10 (TEST-NET-1): the apiserver
// refuses a loopback one for the "kubernetes" Endpoints, and it only publishes
// the address, it never connects to it.

const advertise = "192.0.2.10"

func bundleBin(t *testing.T, names ...string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real control-plane daemons")
	}
	dir := os.Getenv("KUBEFORGE_BUNDLE")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache", "kubeforge", "bundles", "v1.34.4-v3.6.16")
	}
	bin := filepath.Join(dir, "bin")
	for _, n := range names {
		if fi, err := os.Stat(filepath.Join(bin, n)); err != nil || fi.Mode()&0o111 == 0 {
			t.Skipf("%s not found in %s (set KUBEFORGE_BUNDLE to a bundle directory with bin/)", n, bin)
		}
	}
	return bin
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type daemon struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func start(t *testing.T, logDir, bin string, args ...string) *daemon {
	t.Helper()
	name := filepath.Base(bin)
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemon{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(d.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-d.done
		}
	})
	return d
}

func (d *daemon) tail() string {
	b, _ := os.ReadFile(d.log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 25 {
		lines = lines[len(lines)-25:]
	}
	return strings.Join(lines, "\n")
}

// argv renders a component's flags as its unit's ExecStart would pass them.
func argv(c controlplane.Component) []string { return c.Args.Flags() }

// loopbackCluster is a running etcd and control plane started by
// startLoopback, with the files and clients a test needs.
type loopbackCluster struct {
	cfg                    *config.Cluster
	endpoint               string
	etcdPort               int
	certDir, kcDir, logDir string
	caPEM                  []byte
	comps                  []controlplane.Component
	daemons                []*daemon // in controlplane.Names order
	etcd                   *daemon
}

// startLoopback starts etcd and the three control-plane daemons with the
// generated flags plus extra (per component name, merged over the
// configuration's extraArgs), and waits until all are healthy.
func startLoopback(t *testing.T, ctx context.Context, extra map[string]map[string]string) *loopbackCluster {
	t.Helper()
	bin := bundleBin(t, "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
	root := t.TempDir()
	certDir, kcDir, logDir := filepath.Join(root, "pki"), filepath.Join(root, "etc"), filepath.Join(root, "log")
	for _, d := range []string{certDir, kcDir, logDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	etcdPort, peerPort, apiPort, cmPort, schedPort := freePort(t), freePort(t), freePort(t), freePort(t), freePort(t)
	endpoint := net.JoinHostPort("127.0.0.1", strconv.Itoa(apiPort))

	// The cluster as an operator would configure it, with extraArgs moving every
	// listener to loopback ports.
	cfg := config.Default()
	cfg.Spec.Hosts = []config.Host{{Name: "master01", Address: advertise, Roles: []config.Role{config.RoleControlPlane, config.RoleEtcd}}}
	cfg.Spec.ControlPlaneEndpoint = endpoint
	cfg.Spec.Components.APIServer.ExtraArgs = map[string]string{
		"bind-address": "127.0.0.1", "secure-port": strconv.Itoa(apiPort),
		"etcd-servers":   "https://127.0.0.1:" + strconv.Itoa(etcdPort),
		"audit-log-path": filepath.Join(logDir, "audit", "audit.log"),
	}
	cfg.Spec.Components.ControllerManager.ExtraArgs = map[string]string{"secure-port": strconv.Itoa(cmPort)}
	cfg.Spec.Components.Scheduler.ExtraArgs = map[string]string{"secure-port": strconv.Itoa(schedPort)}
	for name, args := range extra {
		var m map[string]string
		switch name {
		case controlplane.APIServer:
			m = cfg.Spec.Components.APIServer.ExtraArgs
		case controlplane.ControllerManager:
			m = cfg.Spec.Components.ControllerManager.ExtraArgs
		case controlplane.Scheduler:
			m = cfg.Spec.Components.Scheduler.ExtraArgs
		default:
			t.Fatalf("extra args for unknown component %q", name)
		}
		for k, v := range args {
			m[k] = v
		}
	}
	if _, err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	node := cfg.Spec.Hosts[0]

	spec, err := certs.SpecFromConfig(cfg, "master01")
	if err != nil {
		t.Fatal(err)
	}
	p := &certs.PKI{Spec: spec, CertDir: certDir, KubeconfigDir: kcDir}
	if err := p.CreateAll(); err != nil {
		t.Fatal(err)
	}
	// The local kubeconfigs point at the advertise address, which nothing here
	// may be sent to: give controller-manager and scheduler loopback ones.
	ca, err := certs.LoadCA(certs.LocalFS{}, filepath.Join(certDir, "ca.crt"), filepath.Join(certDir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{certs.KubeconfigControllerManager, certs.KubeconfigScheduler} {
		ks, err := certs.KubeconfigSpecFor(spec, n, "")
		if err != nil {
			t.Fatal(err)
		}
		ks.Server = "https://" + endpoint
		data, err := certs.BuildKubeconfig(ca, ks)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(kcDir, n), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	pki := func(n string) string { return filepath.Join(certDir, n) }
	etcd := start(t, logDir, filepath.Join(bin, "etcd"),
		"--name=master01", "--data-dir="+filepath.Join(root, "etcd"),
		"--listen-client-urls=https://127.0.0.1:"+strconv.Itoa(etcdPort), "--advertise-client-urls=https://127.0.0.1:"+strconv.Itoa(etcdPort),
		"--listen-peer-urls=https://127.0.0.1:"+strconv.Itoa(peerPort), "--initial-advertise-peer-urls=https://127.0.0.1:"+strconv.Itoa(peerPort),
		"--initial-cluster=master01=https://127.0.0.1:"+strconv.Itoa(peerPort),
		"--cert-file="+pki("etcd/server.crt"), "--key-file="+pki("etcd/server.key"), "--client-cert-auth", "--trusted-ca-file="+pki("etcd/ca.crt"),
		"--peer-cert-file="+pki("etcd/peer.crt"), "--peer-key-file="+pki("etcd/peer.key"), "--peer-client-cert-auth", "--peer-trusted-ca-file="+pki("etcd/ca.crt"),
		"--listen-metrics-urls=http://127.0.0.1:"+strconv.Itoa(freePort(t)))

	o := controlplane.Options{Cluster: cfg, Node: node, CertDir: certDir, KubeconfigDir: kcDir, BinDir: bin}
	enc, err := controlplane.NewEncryptionConfig()
	if err != nil {
		t.Fatal(err)
	}
	var comps []controlplane.Component
	var daemons []*daemon
	for _, n := range controlplane.Names {
		c, err := o.Component(n, enc)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range c.Files {
			if err := os.WriteFile(f.Path, f.Data, f.Mode); err != nil {
				t.Fatal(err)
			}
		}
		for _, d := range c.Dirs {
			if err := os.MkdirAll(d.Path, d.Mode); err != nil {
				t.Fatal(err)
			}
		}
		comps = append(comps, c)
		daemons = append(daemons, start(t, logDir, c.Binary, argv(c)...))
	}
	caPEM, _ := os.ReadFile(pki("ca.crt"))
	res, err := controlplane.Wait(ctx, controlplane.WaitOptions{Components: comps, CACert: caPEM, Logf: t.Logf, Timeout: 2 * time.Minute})
	if err != nil {
		for _, d := range append(daemons, etcd) {
			t.Logf("%s:\n%s", d.name, d.tail())
		}
		t.Fatal(err)
	}
	t.Logf("healthy: %v (total %s)", res.Ready, res.Total)
	return &loopbackCluster{cfg: cfg, endpoint: endpoint, etcdPort: etcdPort, certDir: certDir, kcDir: kcDir, logDir: logDir,
		caPEM: caPEM, comps: comps, daemons: daemons, etcd: etcd}
}

func TestLoopbackControlPlane(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	lc := startLoopback(t, ctx, nil)
	cfg, endpoint, etcdPort, certDir, kcDir, logDir, caPEM, daemons := lc.cfg, lc.endpoint, lc.etcdPort, lc.certDir, lc.kcDir, lc.logDir, lc.caPEM, lc.daemons

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
		if err != nil || len(ep.Subsets) == 0 || ep.Subsets[0].Addresses[0].IP != advertise {
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
			t.Fatalf("%v\n%s", err, daemons[1].tail())
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
