package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// The tests in this file run the real upstream binaries from a kubeforge bundle
// against the PKI, and skip when the bundle is absent. All traffic goes to
// loopback addresses: the three etcd members listen on 127.0.0.1, 127.0.0.2 and
// 127.0.0.3, kube-apiserver binds 127.0.0.1. Only --advertise-address names a
// non-loopback address (kube-apiserver refuses a loopback one); nothing is sent
// to it.

func bundleBin(t *testing.T, names ...string) string {
	t.Helper()
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

// advertiseIP returns an IPv4 address of a non-loopback interface that is up.
func advertiseIP(t *testing.T) string {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifs {
		if i.Flags&net.FlagUp == 0 || i.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := i.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
				return n.IP.String()
			}
		}
	}
	t.Skip("no non-loopback IPv4 address for kube-apiserver's --advertise-address")
	return ""
}

// freePort returns a TCP port that was free on ip a moment ago.
func freePort(t *testing.T, ip string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("listening on %s: %v", ip, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// daemon is a process the test started; Stop ends exactly that process.
type daemon struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func startDaemon(t *testing.T, name, logDir, bin string, args ...string) *daemon {
	t.Helper()
	logPath := filepath.Join(logDir, name+".log")
	lf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	d := &daemon{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { cmd.Wait(); lf.Close(); close(d.done) }()
	t.Cleanup(d.Stop)
	return d
}

func (d *daemon) Stop() {
	select {
	case <-d.done:
		return
	default:
	}
	d.cmd.Process.Signal(os.Interrupt)
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
	}
}

func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

func (d *daemon) tail() string {
	b, _ := os.ReadFile(d.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// waitFor polls check until it succeeds, the daemon dies or the deadline passes.
// The deadline bounds a start-up, it is not what the test asserts.
func waitFor(t *testing.T, d *daemon, what string, deadline time.Duration, check func() error) {
	t.Helper()
	end := time.Now().Add(deadline)
	var last error
	for time.Now().Before(end) {
		if last = check(); last == nil {
			return
		}
		if d != nil && d.exited() {
			t.Fatalf("%s exited while waiting for %s: %v\n%s", d.name, what, last, d.tail())
		}
		time.Sleep(500 * time.Millisecond)
	}
	msg := ""
	if d != nil {
		msg = d.tail()
	}
	t.Fatalf("%s not ready after %s: %v\n%s", what, deadline, last, msg)
}

type etcdMember struct {
	Host
	dir                  string // its cert dir
	clientPort, peerPort int
}

func (m etcdMember) clientURL() string {
	return "https://" + net.JoinHostPort(m.Address, strconv.Itoa(m.clientPort))
}
func (m etcdMember) peerURL() string {
	return "https://" + net.JoinHostPort(m.Address, strconv.Itoa(m.peerPort))
}

func etcdTLS(t *testing.T, caFile, certFile, keyFile string) *tls.Config {
	t.Helper()
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg
}

func etcdClient(t *testing.T, endpoints []string, tc *tls.Config) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, TLS: tc, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestRealBinaries runs a three-member etcd cluster (each member with certificates
// issued for its own host), then kube-apiserver on it, and drives both with the
// issued client certificates and kubeconfigs; then renews everything and checks
// the running processes still accept the renewed credentials and restart on them.
func TestRealBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver")
	}
	bin := bundleBin(t, "etcd")
	now := time.Now()
	root := t.TempDir()
	apiPort := freePort(t, "127.0.0.1")
	adv := advertiseIP(t)

	members := []etcdMember{
		{Host: Host{Name: "master01", Address: "127.0.0.1"}},
		{Host: Host{Name: "node01", Address: "127.0.0.2"}},
		{Host: Host{Name: "node02", Address: "127.0.0.3"}},
	}
	spec := Spec{
		ClusterName:          "kubeforge",
		NodeName:             "master01",
		AdvertiseAddress:     adv,
		APIServerPort:        apiPort,
		ControlPlaneEndpoint: net.JoinHostPort("127.0.0.1", strconv.Itoa(apiPort)),
		KeyAlgorithm:         ECDSAP256,
		// Short leaves, so the renewal below visibly extends them.
		Validity: time.Hour,
	}
	for i := range members {
		members[i].clientPort = freePort(t, members[i].Address)
		members[i].peerPort = freePort(t, members[i].Address)
		spec.EtcdHosts = append(spec.EtcdHosts, members[i].Host)
	}
	p := &PKI{Spec: spec, CertDir: filepath.Join(root, "pki"), KubeconfigDir: root, Now: func() time.Time { return now }}
	if err := p.CreateAll(); err != nil {
		t.Fatal(err)
	}
	// master01 uses the tree CreateAll wrote; node01 and node02 get their member
	// certificates issued on master01 and laid down in their own directories.
	etcdCA := loadTestCA(t, p.CertDir, "etcd/ca")
	members[0].dir = p.CertDir
	for i := 1; i < len(members); i++ {
		files, err := IssueEtcdMemberFiles(etcdCA, spec, members[i].Name)
		if err != nil {
			t.Fatal(err)
		}
		members[i].dir = filepath.Join(root, members[i].Name, "pki")
		if err := WriteFiles(LocalFS{}, members[i].dir, files); err != nil {
			t.Fatal(err)
		}
	}

	var initial, endpoints []string
	for _, m := range members {
		initial = append(initial, m.Name+"="+m.peerURL())
		endpoints = append(endpoints, m.clientURL())
	}
	startEtcd := func(m etcdMember) *daemon {
		e := filepath.Join(m.dir, "etcd")
		return startDaemon(t, "etcd-"+m.Name, root, filepath.Join(bin, "etcd"),
			"--name="+m.Name,
			"--data-dir="+filepath.Join(root, "etcd-data-"+m.Name),
			"--listen-client-urls="+m.clientURL(),
			"--advertise-client-urls="+m.clientURL(),
			"--listen-peer-urls="+m.peerURL(),
			"--initial-advertise-peer-urls="+m.peerURL(),
			"--initial-cluster="+strings.Join(initial, ","),
			"--initial-cluster-state=new",
			"--initial-cluster-token=kubeforge-certs-test",
			"--client-cert-auth=true",
			"--trusted-ca-file="+filepath.Join(e, "ca.crt"),
			"--cert-file="+filepath.Join(e, "server.crt"),
			"--key-file="+filepath.Join(e, "server.key"),
			"--peer-client-cert-auth=true",
			"--peer-trusted-ca-file="+filepath.Join(e, "ca.crt"),
			"--peer-cert-file="+filepath.Join(e, "peer.crt"),
			"--peer-key-file="+filepath.Join(e, "peer.key"),
			"--listen-metrics-urls=http://"+net.JoinHostPort(m.Address, strconv.Itoa(freePort(t, m.Address))),
			"--log-level=warn",
		)
	}
	var etcds []*daemon
	for _, m := range members {
		etcds = append(etcds, startEtcd(m))
	}

	pki := p.CertDir
	etcdCAFile := filepath.Join(pki, "etcd", "ca.crt")
	apiClient := etcdClient(t, endpoints, etcdTLS(t, etcdCAFile, filepath.Join(pki, "apiserver-etcd-client.crt"), filepath.Join(pki, "apiserver-etcd-client.key")))

	t.Run("etcd", func(t *testing.T) {
		// Every member serves with its own certificate and has joined the others
		// over mutually authenticated peer TLS.
		for i, m := range members {
			c := etcdClient(t, []string{m.clientURL()}, etcdTLS(t, etcdCAFile, filepath.Join(pki, "etcd", "healthcheck-client.crt"), filepath.Join(pki, "etcd", "healthcheck-client.key")))
			waitFor(t, etcds[i], "etcd member "+m.Name, 2*time.Minute, func() error {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				defer cancel()
				_, err := c.Get(ctx, "health")
				return err
			})
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ml, err := apiClient.MemberList(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(ml.Members) != 3 {
			t.Fatalf("cluster has %d members, want 3", len(ml.Members))
		}
		for _, mm := range ml.Members {
			if mm.Name == "" || len(mm.ClientURLs) == 0 {
				t.Errorf("member %x has not started (name %q)", mm.ID, mm.Name)
			}
		}
		if _, err := apiClient.Put(ctx, "/kubeforge/probe", "certs"); err != nil {
			t.Fatalf("apiserver-etcd-client Put: %v", err)
		}
		// Read through another member to see the write replicated.
		other := etcdClient(t, []string{members[2].clientURL()}, etcdTLS(t, etcdCAFile, filepath.Join(pki, "etcd", "overlay-client.crt"), filepath.Join(pki, "etcd", "overlay-client.key")))
		resp, err := other.Get(ctx, "/kubeforge/probe", clientv3.WithSerializable())
		if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "certs" {
			// A serializable read may trail the leader briefly; a linearizable one may not.
			resp, err = other.Get(ctx, "/kubeforge/probe")
		}
		if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "certs" {
			t.Fatalf("overlay-client Get via node02: %v %v", err, resp)
		}

		// No client certificate, or one from another CA: refused.
		otherPKI := &PKI{Spec: spec, CertDir: filepath.Join(root, "other", "pki"), KubeconfigDir: filepath.Join(root, "other"), Now: func() time.Time { return now }}
		if err := otherPKI.CreateCerts(); err != nil {
			t.Fatal(err)
		}
		for name, tc := range map[string]*tls.Config{
			"no client certificate":          etcdTLS(t, etcdCAFile, "", ""),
			"client certificate of other CA": etcdTLS(t, etcdCAFile, filepath.Join(otherPKI.CertDir, "apiserver-etcd-client.crt"), filepath.Join(otherPKI.CertDir, "apiserver-etcd-client.key")),
		} {
			c := etcdClient(t, endpoints[:1], tc)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := c.Put(ctx, "/kubeforge/intruder", "x")
			cancel()
			if err == nil {
				t.Errorf("%s: etcd accepted a write", name)
			}
			// Where the refusal comes from: etcd's TLS layer alerts the client.
			if alert := tlsAlert(t, members[0].Address, members[0].clientPort, tc); !strings.Contains(alert, "certificate") {
				t.Errorf("%s: TLS alert %q, want a certificate error", name, alert)
			} else {
				t.Logf("%s: refused with %q", name, alert)
			}
		}
		// The server must also be unacceptable to a client trusting another CA.
		c := etcdClient(t, endpoints[:1], etcdTLS(t, filepath.Join(otherPKI.CertDir, "etcd", "ca.crt"), filepath.Join(otherPKI.CertDir, "apiserver-etcd-client.crt"), filepath.Join(otherPKI.CertDir, "apiserver-etcd-client.key")))
		ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = c.Get(ctx2, "/kubeforge/probe")
		cancel2()
		if err == nil {
			t.Error("a client trusting another CA accepted etcd's serving certificate")
		}
		ctx3, cancel3 := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel3()
		resp, err = apiClient.Get(ctx3, "/kubeforge/intruder")
		if err != nil || len(resp.Kvs) != 0 {
			t.Errorf("intruder key present (%v)", err)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("kube-apiserver", func(t *testing.T) {
		bin := bundleBin(t, "kube-apiserver", "kubectl")
		apiArgs := []string{
			"--advertise-address=" + adv,
			"--bind-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(apiPort),
			"--etcd-servers=" + strings.Join(endpoints, ","),
			"--etcd-cafile=" + etcdCAFile,
			"--etcd-certfile=" + filepath.Join(pki, "apiserver-etcd-client.crt"),
			"--etcd-keyfile=" + filepath.Join(pki, "apiserver-etcd-client.key"),
			"--client-ca-file=" + filepath.Join(pki, "ca.crt"),
			"--tls-cert-file=" + filepath.Join(pki, "apiserver.crt"),
			"--tls-private-key-file=" + filepath.Join(pki, "apiserver.key"),
			"--kubelet-client-certificate=" + filepath.Join(pki, "apiserver-kubelet-client.crt"),
			"--kubelet-client-key=" + filepath.Join(pki, "apiserver-kubelet-client.key"),
			"--service-account-key-file=" + filepath.Join(pki, "sa.pub"),
			"--service-account-signing-key-file=" + filepath.Join(pki, "sa.key"),
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-cluster-ip-range=10.96.0.0/12",
			"--requestheader-client-ca-file=" + filepath.Join(pki, "front-proxy-ca.crt"),
			"--requestheader-allowed-names=front-proxy-client",
			"--requestheader-username-headers=X-Remote-User",
			"--requestheader-group-headers=X-Remote-Group",
			"--requestheader-extra-headers-prefix=X-Remote-Extra-",
			"--proxy-client-cert-file=" + filepath.Join(pki, "front-proxy-client.crt"),
			"--proxy-client-key-file=" + filepath.Join(pki, "front-proxy-client.key"),
			"--authorization-mode=Node,RBAC",
			"--enable-admission-plugins=NodeRestriction",
			"--allow-privileged=true",
			"--enable-bootstrap-token-auth=true",
			"--cert-dir=" + filepath.Join(root, "apiserver-generated"),
		}
		api := startDaemon(t, "kube-apiserver", root, filepath.Join(bin, "kube-apiserver"), apiArgs...)
		// --server pins every request to loopback: controller-manager.conf and
		// scheduler.conf name the advertise address, which nothing listens on here
		// and which the test must not send to.
		loopback := "https://" + spec.ControlPlaneEndpoint
		kubectl := func(kubeconfig string, args ...string) (string, error) {
			cmd := exec.Command(filepath.Join(bin, "kubectl"), append([]string{"--kubeconfig=" + kubeconfig, "--server=" + loopback, "--request-timeout=10s"}, args...)...)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			return strings.TrimSpace(out.String()), err
		}
		admin := filepath.Join(root, "admin.conf")
		superAdmin := filepath.Join(root, "super-admin.conf")
		waitReady := func(api *daemon) {
			waitFor(t, api, "kube-apiserver /readyz", 4*time.Minute, func() error {
				out, err := kubectl(admin, "get", "--raw", "/readyz")
				if err != nil || out != "ok" {
					return fmt.Errorf("%v: %s", err, out)
				}
				return nil
			})
		}
		waitReady(api)

		// Identities as the apiserver sees them (SelfSubjectReview).
		whoami := func(kubeconfig string, extra ...string) (user string, groups []string) {
			t.Helper()
			out, err := kubectl(kubeconfig, append([]string{"auth", "whoami", "-o", "json"}, extra...)...)
			if err != nil {
				t.Fatalf("kubectl auth whoami with %s: %v\n%s", filepath.Base(kubeconfig), err, out)
			}
			var r struct {
				Status struct {
					UserInfo struct {
						Username string   `json:"username"`
						Groups   []string `json:"groups"`
					} `json:"userInfo"`
				} `json:"status"`
			}
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				t.Fatalf("whoami output: %v\n%s", err, out)
			}
			return r.Status.UserInfo.Username, r.Status.UserInfo.Groups
		}
		for _, w := range seedKubeconfigIdentities() {
			user, groups := whoami(filepath.Join(root, w.file))
			if user != w.user || !containsAll(groups, w.groups) {
				t.Errorf("%s authenticates as %q %v, want %q with %v", w.file, user, groups, w.user, w.groups)
			}
		}

		// kubeadm 1.29 semantics: admin.conf's group has no rights until the
		// kubeadm:cluster-admins binding exists; super-admin.conf creates it.
		if out, err := kubectl(admin, "get", "namespaces"); err == nil || !strings.Contains(out, "forbidden") {
			t.Errorf("admin.conf listed namespaces before the cluster-admins binding: %v %s", err, out)
		}
		if out, err := kubectl(superAdmin, "create", "clusterrolebinding", "kubeadm:cluster-admins", "--clusterrole=cluster-admin", "--group=kubeadm:cluster-admins"); err != nil {
			t.Fatalf("super-admin.conf creating the binding: %v %s", err, out)
		}
		waitFor(t, api, "RBAC to see the cluster-admins binding", time.Minute, func() error {
			out, err := kubectl(admin, "get", "namespaces", "-o", "name")
			if err != nil || !strings.Contains(out, "namespace/default") {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		})

		// Service-account tokens are signed with sa.key and verified with sa.pub.
		if out, err := kubectl(admin, "create", "serviceaccount", "probe", "-n", "default"); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		token, err := kubectl(admin, "create", "token", "probe", "-n", "default")
		if err != nil {
			t.Fatalf("create token: %v %s", err, token)
		}
		empty := filepath.Join(root, "empty.conf")
		os.WriteFile(empty, nil, 0o600)
		if user, _ := whoami(empty, "--token="+token, "--certificate-authority="+filepath.Join(pki, "ca.crt")); user != "system:serviceaccount:default:probe" {
			t.Errorf("service-account token authenticates as %q", user)
		}

		// The front proxy: front-proxy-client plus X-Remote-* headers is trusted
		// through the front-proxy CA; the same headers with a ca-signed client
		// certificate are not.
		frontProxy := func(certBase string) (string, int) {
			tc := etcdTLS(t, filepath.Join(pki, "ca.crt"), filepath.Join(pki, certBase+".crt"), filepath.Join(pki, certBase+".key"))
			hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 10 * time.Second}
			body := `{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`
			req, _ := http.NewRequest("POST", "https://"+spec.ControlPlaneEndpoint+"/apis/authentication.k8s.io/v1/selfsubjectreviews", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Remote-User", "alice")
			req.Header.Set("X-Remote-Group", "developers")
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatalf("front-proxy request: %v", err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return string(b), resp.StatusCode
		}
		if body, code := frontProxy("front-proxy-client"); code != 201 || !strings.Contains(body, `"username":"alice"`) || !strings.Contains(body, "developers") {
			t.Errorf("front-proxy-client with X-Remote-User alice: %d %s", code, body)
		}
		if body, _ := frontProxy("apiserver-kubelet-client"); strings.Contains(body, `"username":"alice"`) {
			t.Errorf("a certificate outside the front-proxy CA could impersonate: %s", body)
		}

		t.Run("renew", func(t *testing.T) {
			oldAdmin, _ := os.ReadFile(admin)
			oldNotAfter := mustReadCert(t, filepath.Join(pki, "apiserver.crt")).NotAfter
			res, err := Renew(RenewOptions{CertDir: pki, KubeconfigDir: root, Now: time.Now}, "all")
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range res.Certificates {
				if c.Skipped != "" || !c.NewNotAfter.After(c.OldNotAfter) {
					t.Errorf("%s: skipped %q, NotAfter %s -> %s", c.Name, c.Skipped, c.OldNotAfter, c.NewNotAfter)
				}
			}
			if got, _ := os.ReadFile(filepath.Join(res.BackupDir, "kubeconfig", "admin.conf")); !bytes.Equal(got, oldAdmin) {
				t.Error("admin.conf backup missing or different")
			}
			newCert := mustReadCert(t, filepath.Join(pki, "apiserver.crt"))
			if !newCert.NotAfter.After(oldNotAfter) {
				t.Errorf("apiserver.crt NotAfter %s, was %s", newCert.NotAfter, oldNotAfter)
			}
			// The running apiserver accepts every renewed kubeconfig.
			for _, w := range seedKubeconfigIdentities() {
				if user, _ := whoami(filepath.Join(root, w.file)); user != w.user {
					t.Errorf("renewed %s authenticates as %q", w.file, user)
				}
			}
			// The running etcd accepts the renewed etcd client certificate.
			c := etcdClient(t, endpoints, etcdTLS(t, etcdCAFile, filepath.Join(pki, "apiserver-etcd-client.crt"), filepath.Join(pki, "apiserver-etcd-client.key")))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := c.Put(ctx, "/kubeforge/renewed", "yes"); err != nil {
				t.Errorf("renewed apiserver-etcd-client refused: %v", err)
			}
			// Restart on the renewed files (what the control-plane units will do):
			// the new serving, etcd-client, front-proxy and kubelet-client
			// certificates must all load, and admin.conf must reach /readyz.
			api.Stop()
			api2 := startDaemon(t, "kube-apiserver-renewed", root, filepath.Join(bin, "kube-apiserver"), apiArgs...)
			waitReady(api2)
			conn, err := tls.Dial("tcp", spec.ControlPlaneEndpoint, etcdTLS(t, filepath.Join(pki, "ca.crt"), "", ""))
			if err != nil {
				t.Fatalf("TLS to the restarted apiserver: %v", err)
			}
			served := conn.ConnectionState().PeerCertificates[0]
			conn.Close()
			if served.SerialNumber.Cmp(newCert.SerialNumber) != 0 {
				t.Errorf("restarted apiserver serves serial %s, want the renewed %s", served.SerialNumber, newCert.SerialNumber)
			}
		})
	})
}

// tlsAlert connects with tc, sends a byte and returns the error the server's TLS
// layer answers with ("" when it accepted the connection).
func tlsAlert(t *testing.T, ip string, port int, tc *tls.Config) string {
	t.Helper()
	conn, err := tls.Dial("tcp", net.JoinHostPort(ip, strconv.Itoa(port)), tc)
	if err != nil {
		return err.Error()
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	// TLS 1.3 verifies the client certificate after the client's handshake is
	// done; the alert arrives on the first read.
	conn.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
	if _, err := conn.Read(make([]byte, 1)); err != nil {
		return err.Error()
	}
	return ""
}

type kubeconfigIdentity struct {
	file, user string
	groups     []string
}

func seedKubeconfigIdentities() []kubeconfigIdentity {
	return []kubeconfigIdentity{
		{"admin.conf", "kubernetes-admin", []string{"kubeadm:cluster-admins", "system:authenticated"}},
		{"super-admin.conf", "kubernetes-super-admin", []string{"system:masters", "system:authenticated"}},
		{"controller-manager.conf", "system:kube-controller-manager", []string{"system:authenticated"}},
		{"scheduler.conf", "system:kube-scheduler", []string{"system:authenticated"}},
		{"kubelet.conf", "system:node:master01", []string{"system:nodes", "system:authenticated"}},
		{"kube-proxy.conf", "system:kube-proxy", []string{"system:authenticated"}},
	}
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			found = found || h == w
		}
		if !found {
			return false
		}
	}
	return true
}
