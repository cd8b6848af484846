// Package loopbacktest runs a real control plane for tests: etcd,
// kube-apiserver, kube-controller-manager and kube-scheduler from the bundle,
// with exactly the flags and files the units get, as plain processes on
// 127.0.0.1. Tests and benchmarks of several packages (controlplane, the CSR
// approver, the overlay ...) need the real API server's behaviour (watches,
// resource versions, admission) that no fake has.
package loopbacktest

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/controlplane"
)

// The advertise address is 192.0.2.10 (TEST-NET-1): the apiserver
// refuses a loopback one for the "kubernetes" Endpoints, and it only publishes
// the address, it never connects to it.

// Advertise is the API server's advertise address.
const Advertise = "192.0.2.10"

// BundleBin returns the bundle's bin/ directory, skipping the test when one of
// names is missing (or under -short).
func BundleBin(t testing.TB, names ...string) string {
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

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Daemon is one running process; its output goes to Log.
type Daemon struct {
	Name string
	Cmd  *exec.Cmd
	Log  string
	Done chan struct{}
}

// Start runs bin with args until the test ends (SIGTERM, then SIGKILL after 20s).
func Start(t testing.TB, logDir, bin string, args ...string) *Daemon {
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
	d := &Daemon{Name: name, Cmd: cmd, Log: logPath, Done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(d.Done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.Done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-d.Done
		}
	})
	return d
}

// Tail is the last 25 lines of the daemon's output.
func (d *Daemon) Tail() string {
	b, _ := os.ReadFile(d.Log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 25 {
		lines = lines[len(lines)-25:]
	}
	return strings.Join(lines, "\n")
}

// Cluster is a running etcd and control plane started by Run, with the files
// and clients a test needs.
type Cluster struct {
	Cfg                    *config.Cluster
	Endpoint               string
	EtcdPort               int
	CertDir, KcDir, LogDir string
	CAPEM                  []byte
	Comps                  []controlplane.Component
	Daemons                []*Daemon // in controlplane.Names order
	Etcd                   *Daemon
}

// Run starts etcd and the three control-plane daemons with the
// generated flags plus extra (per component name, merged over the
// configuration's extraArgs), and waits until all are healthy. One function,
// top to bottom in start order (PKI, etcd, apiserver, the other two), because
// each step reads the files the one before it wrote.
func Run(t testing.TB, ctx context.Context, extra map[string]map[string]string) *Cluster {
	t.Helper()
	bin := BundleBin(t, "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
	root := t.TempDir()
	certDir, kcDir, logDir := filepath.Join(root, "pki"), filepath.Join(root, "etc"), filepath.Join(root, "log")
	for _, d := range []string{certDir, kcDir, logDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	etcdPort, peerPort, apiPort, cmPort, schedPort := FreePort(t), FreePort(t), FreePort(t), FreePort(t), FreePort(t)
	endpoint := net.JoinHostPort("127.0.0.1", strconv.Itoa(apiPort))

	// The cluster as an operator would configure it, with extraArgs moving every
	// listener to loopback ports.
	cfg := config.Default()
	cfg.Spec.Hosts = []config.Host{{Name: "master01", Address: Advertise, Roles: []config.Role{config.RoleControlPlane, config.RoleEtcd}}}
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
	etcd := Start(t, logDir, filepath.Join(bin, "etcd"),
		"--name=master01", "--data-dir="+filepath.Join(root, "etcd"),
		"--listen-client-urls=https://127.0.0.1:"+strconv.Itoa(etcdPort), "--advertise-client-urls=https://127.0.0.1:"+strconv.Itoa(etcdPort),
		"--listen-peer-urls=https://127.0.0.1:"+strconv.Itoa(peerPort), "--initial-advertise-peer-urls=https://127.0.0.1:"+strconv.Itoa(peerPort),
		"--initial-cluster=master01=https://127.0.0.1:"+strconv.Itoa(peerPort),
		"--cert-file="+pki("etcd/server.crt"), "--key-file="+pki("etcd/server.key"), "--client-cert-auth", "--trusted-ca-file="+pki("etcd/ca.crt"),
		"--peer-cert-file="+pki("etcd/peer.crt"), "--peer-key-file="+pki("etcd/peer.key"), "--peer-client-cert-auth", "--peer-trusted-ca-file="+pki("etcd/ca.crt"),
		"--listen-metrics-urls=http://127.0.0.1:"+strconv.Itoa(FreePort(t)))

	o := controlplane.Options{Cluster: cfg, Node: node, CertDir: certDir, KubeconfigDir: kcDir, BinDir: bin}
	enc, err := controlplane.NewEncryptionConfig()
	if err != nil {
		t.Fatal(err)
	}
	var comps []controlplane.Component
	var daemons []*Daemon
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
		daemons = append(daemons, Start(t, logDir, c.Binary, c.Args.Flags()...))
	}
	caPEM, _ := os.ReadFile(pki("ca.crt"))
	res, err := controlplane.Wait(ctx, controlplane.WaitOptions{Components: comps, CACert: caPEM, Logf: t.Logf, Timeout: 2 * time.Minute})
	if err != nil {
		for _, d := range append(daemons, etcd) {
			t.Logf("%s:\n%s", d.Name, d.Tail())
		}
		t.Fatal(err)
	}
	t.Logf("healthy: %v (total %s)", res.Ready, res.Total)
	return &Cluster{Cfg: cfg, Endpoint: endpoint, EtcdPort: etcdPort, CertDir: certDir, KcDir: kcDir, LogDir: logDir,
		CAPEM: caPEM, Comps: comps, Daemons: daemons, Etcd: etcd}
}
