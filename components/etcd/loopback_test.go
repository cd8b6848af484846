package etcd

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host/local"
	"github.com/kubeforge/kubeforge/certs"
)

// The tests in this file run real etcd v3.6 processes on loopback addresses
// (127.0.0.2-4) with certificates from the certs package: the membership logic
// against the real server, without systemd. They need bin/etcd of a bundle.

func etcdBinary(t testing.TB) string {
	t.Helper()
	var dirs []string
	if d := os.Getenv("KUBEFORGE_BUNDLE"); d != "" {
		dirs = append(dirs, d)
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, ".cache/kubeforge/bundles/v1.34.4-v3.6.16"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, "bin", "etcd")
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	t.Skipf("no etcd binary: set KUBEFORGE_BUNDLE to a bundle with bin/etcd (hack/build-bundle.sh builds one); looked in %v", dirs)
	return ""
}

// loopCluster is a test cluster of etcd processes on 127.0.0.x.
type loopCluster struct {
	t       testing.TB
	bin     string
	dir     string
	cfg     *config.Cluster
	members map[string]*procMember
	tls     *tls.Config // health-check client of member "a"
}

func newLoopCluster(t testing.TB, names ...string) *loopCluster {
	t.Helper()
	lc := &loopCluster{t: t, bin: etcdBinary(t), dir: t.TempDir(), members: map[string]*procMember{}}
	c := config.Default()
	c.Spec.Hosts = nil
	for i, n := range names {
		c.Spec.Hosts = append(c.Spec.Hosts, config.Host{Name: n, Address: fmt.Sprintf("127.0.0.%d", i+2), Roles: []config.Role{config.RoleEtcd, config.RoleControlPlane}})
	}
	c.Spec.ControlPlaneEndpoint = "127.0.0.2:6443"
	// Elections in a few hundred milliseconds keep the test short; the ratio is
	// what production uses.
	c.Spec.Etcd.HeartbeatInterval, c.Spec.Etcd.ElectionTimeout = "50ms", "500ms"
	c.Spec.Etcd.QuotaBackendBytes = 256 << 20
	lc.cfg = c
	lh := local.New(local.Options{Name: "loopback"})
	t.Cleanup(func() { lh.Close() })
	ctx := context.Background()
	for i, h := range c.Spec.Hosts {
		certDir := filepath.Join(lc.dir, h.Name, "pki")
		if i > 0 {
			// Hand the etcd CA over, as the tests of the join phase do.
			for _, f := range []string{"ca.crt", "ca.key"} {
				data, err := os.ReadFile(filepath.Join(lc.dir, names[0], "pki/etcd", f))
				if err != nil {
					t.Fatal(err)
				}
				if err := (certs.LocalFS{}).WriteFile(filepath.Join(certDir, "etcd", f), data, certs.FileMode(f)); err != nil {
					t.Fatal(err)
				}
			}
		}
		if _, err := EnsureCerts(ctx, lh, c, h, certDir, i == 0, t.Logf); err != nil {
			t.Fatalf("certs for %s: %v", h.Name, err)
		}
		m := MemberOf(h)
		m.ClientPort, m.PeerPort, m.MetricsPort = freePort(t, h.Address), freePort(t, h.Address), -1
		pm := &procMember{t: t, bin: lc.bin, dir: filepath.Join(lc.dir, h.Name), cfg: MemberConfig{
			Member:              m,
			DataDir:             filepath.Join(lc.dir, h.Name, "data"),
			PKIDir:              PKIDir(certDir),
			InitialClusterToken: c.Metadata.Name,
			Settings:            c.Spec.Etcd,
		}}
		lc.members[h.Name] = pm
		t.Cleanup(pm.kill)
	}
	tlsCfg, err := ClientTLSFiles(filepath.Join(lc.dir, names[0], "pki")).Config(LocalRead)
	if err != nil {
		t.Fatal(err)
	}
	lc.tls = tlsCfg
	return lc
}

func freePort(t testing.TB, addr string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		t.Fatalf("no free port on %s: %v", addr, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// client talks to the given members.
func (lc *loopCluster) client(names ...string) *clientv3.Client {
	lc.t.Helper()
	var eps []string
	for _, n := range names {
		eps = append(eps, lc.members[n].cfg.Member.ClientURL())
	}
	cli, err := NewClient(eps, lc.tls)
	if err != nil {
		lc.t.Fatal(err)
	}
	lc.t.Cleanup(func() { cli.Close() })
	return cli
}

// procMember runs one etcd process; it is the Runner of these tests.
type procMember struct {
	t   testing.TB
	bin string
	dir string
	cfg MemberConfig

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	log  bytes.Buffer
}

func (p *procMember) Start(ctx context.Context, peers []Peer) error {
	p.cfg.InitialCluster, p.cfg.InitialClusterState = peers, ClusterStateExisting
	return p.run()
}

func (p *procMember) startNew() error {
	p.cfg.InitialCluster = []Peer{{p.cfg.Member.Name, p.cfg.Member.PeerURL()}}
	p.cfg.InitialClusterState = ClusterStateNew
	return p.run()
}

// run writes the rendered config (the same bytes the unit would use) and starts
// etcd on it.
func (p *procMember) run() error {
	content, err := p.cfg.Render()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(p.cfg.DataDir, 0o700); err != nil {
		return err
	}
	cfgPath := filepath.Join(p.dir, "etcd.conf.yml")
	if err := os.WriteFile(cfgPath, content, 0o600); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log.Reset()
	cmd := exec.Command(p.bin, "--config-file="+cfgPath)
	cmd.Stdout, cmd.Stderr = &lockedWriter{mu: &p.mu, w: &p.log}, &lockedWriter{mu: &p.mu, w: &p.log}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	p.cmd, p.done, p.err = cmd, make(chan struct{}), nil
	done := p.done
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

func (p *procMember) Failed(context.Context) error {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return errors.New("not started")
	}
	select {
	case <-done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return fmt.Errorf("etcd exited (%v): %s", p.err, lastLines(p.log.String(), 3))
	default:
		return nil
	}
}

func (p *procMember) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// stop ends etcd the way systemd does, with SIGTERM.
func (p *procMember) stop() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		p.kill()
	}
}

func (p *procMember) Remove(context.Context) error {
	p.kill()
	return errors.Join(os.RemoveAll(p.cfg.DataDir), os.Remove(filepath.Join(p.dir, "etcd.conf.yml")))
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitHealthy waits for a member to answer a linearizable read; it fails the
// test with the member's log if it exits or does not answer.
func (lc *loopCluster) waitHealthy(name string) {
	lc.t.Helper()
	p := lc.members[name]
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := withEndpoint(lc.tls, p.cfg.Member.ClientURL(), func(c *clientv3.Client) error {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_, err := c.Get(ctx, "health")
			return err
		})
		if err == nil {
			return
		}
		if ferr := p.Failed(context.Background()); ferr != nil {
			lc.t.Fatalf("%s: %v", name, ferr)
		}
		if time.Now().After(deadline) {
			lc.t.Fatalf("%s not healthy: %v\n%s", name, err, lastLines(p.log.String(), 10))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (lc *loopCluster) join(name string, via ...string) (JoinResult, error) {
	lc.t.Helper()
	return JoinMember(context.Background(), JoinRequest{
		Client:  lc.client(via...),
		TLS:     lc.tls,
		Member:  lc.members[name].cfg.Member,
		Runner:  lc.members[name],
		Timeout: 60 * time.Second,
		Logf:    lc.t.Logf,
	})
}

func (lc *loopCluster) status(via ...string) *ClusterStatus {
	lc.t.Helper()
	st, err := GetClusterStatus(context.Background(), lc.client(via...), lc.tls)
	if err != nil {
		lc.t.Fatal(err)
	}
	return st
}

// summary renders the membership as "a:voter b:learner", sorted by name.
func summary(st *ClusterStatus) string {
	var parts []string
	for _, m := range st.Members {
		kind := "voter"
		if m.IsLearner {
			kind = "learner"
		}
		name := m.Name
		if name == "" {
			name = "(unstarted)"
		}
		parts = append(parts, name+":"+kind)
	}
	return strings.Join(parts, " ")
}

func TestLoopbackMembership(t *testing.T) {
	lc := newLoopCluster(t, "a", "b", "c")
	a, c := lc.members["a"], lc.members["c"]
	if err := a.startNew(); err != nil {
		t.Fatal(err)
	}
	lc.waitHealthy("a")

	// Learner add, catch up, promote.
	res, err := lc.join("b", "a")
	if err != nil {
		t.Fatalf("join b: %v", err)
	}
	if !res.AddedLearner || !res.Promoted || res.AlreadyVoter {
		t.Errorf("join b result %+v", res)
	}
	if got := summary(lc.status("a")); got != "a:voter b:voter" {
		t.Fatalf("after joining b: %s", got)
	}
	kv := lc.client("a", "b")
	if _, err := kv.Put(context.Background(), "/kubeforge/test", "before-c"); err != nil {
		t.Fatal(err)
	}

	// A member that cannot start (its peer port is taken) is rolled back: the
	// cluster keeps its two voters and has no stale learner.
	squatter, err := net.Listen("tcp", net.JoinHostPort(c.cfg.Member.Address, strconv.Itoa(c.cfg.Member.PeerPort)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = lc.join("c", "a", "b")
	squatter.Close()
	if err == nil {
		t.Fatal("join of c with its peer port taken succeeded")
	}
	if !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), "removed again") {
		t.Errorf("join error does not say what happened: %v", err)
	}
	st := lc.status("a", "b")
	if got := summary(st); got != "a:voter b:voter" {
		t.Fatalf("after the failed join: %s, want the two old voters and no learner", got)
	}
	if st.HealthyVoters() != 2 || st.Leader == "" {
		t.Errorf("cluster after the failed join: %d healthy voters, leader %q", st.HealthyVoters(), st.Leader)
	}
	if _, err := os.Stat(c.cfg.DataDir); !os.IsNotExist(err) {
		t.Errorf("rollback left c's data dir (%v)", err)
	}
	if _, err := kv.Put(context.Background(), "/kubeforge/test", "after-failed-join"); err != nil {
		t.Fatalf("write after the failed join: %v", err)
	}

	// With the port free, c joins cleanly.
	if _, err := lc.join("c", "a", "b"); err != nil {
		t.Fatalf("join c: %v", err)
	}
	st = lc.status("a")
	if got := summary(st); got != "a:voter b:voter c:voter" || st.HealthyVoters() != 3 || st.Leader == "" {
		t.Fatalf("three members: %s, %d healthy, leader %q", got, st.HealthyVoters(), st.Leader)
	}
	leaders := 0
	for _, m := range st.Members {
		if m.IsLeader {
			leaders++
		}
		if m.RaftIndex == 0 || m.DBSize == 0 || m.Version == "" {
			t.Errorf("status of %s incomplete: %+v", m.Name, m)
		}
	}
	if leaders != 1 {
		t.Errorf("%d leaders", leaders)
	}
	// c has the data written before it joined.
	cc := lc.client("c")
	if r, err := cc.Get(context.Background(), "/kubeforge/test"); err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "after-failed-join" {
		t.Errorf("read on c: %v %v", r, err)
	}

	// Joining again is a no-op.
	res, err = lc.join("c", "a")
	if err != nil || !res.AlreadyVoter {
		t.Errorf("second join of c: %+v %v", res, err)
	}

	// Quorum safety: with b down, removing c would leave a alone of two.
	lc.members["b"].stop()
	st = lc.status("a", "c")
	cid := memberID(t, st, "c")
	if err := CheckRemoval(st, cid); !errors.Is(err, ErrQuorum) {
		t.Errorf("removal of c with b down: %v, want a quorum refusal", err)
	}
	// b comes back with its data and catches up with writes it missed.
	if _, err := lc.client("a", "c").Put(context.Background(), "/kubeforge/test", "while-b-was-down"); err != nil {
		t.Fatalf("write with b down: %v", err)
	}
	if err := lc.members["b"].run(); err != nil {
		t.Fatal(err)
	}
	lc.waitHealthy("b")
	if r, err := lc.client("b").Get(context.Background(), "/kubeforge/test"); err != nil || string(r.Kvs[0].Value) != "while-b-was-down" {
		t.Errorf("b after restart: %v %v", r, err)
	}
	st = lc.status("a")
	if err := CheckRemoval(st, cid); err != nil {
		t.Fatalf("removal of c from a healthy cluster refused: %v", err)
	}
	if err := RemoveMember(context.Background(), lc.client("a", "b"), lc.tls, st, cid, t.Logf); err != nil {
		t.Fatal(err)
	}
	if got := summary(lc.status("a", "b")); got != "a:voter b:voter" {
		t.Errorf("after removing c: %s", got)
	}
}

func memberID(t testing.TB, st *ClusterStatus, name string) uint64 {
	t.Helper()
	for _, m := range st.Members {
		if m.Name == name {
			return m.ID
		}
	}
	t.Fatalf("no member %s in %s", name, summary(st))
	return 0
}

func TestLoopbackMutualTLS(t *testing.T) {
	lc := newLoopCluster(t, "a")
	if err := lc.members["a"].startNew(); err != nil {
		t.Fatal(err)
	}
	lc.waitHealthy("a")
	ep := lc.members["a"].cfg.Member.ClientURL()

	noCert := lc.tls.Clone()
	noCert.Certificates = nil
	other, err := certs.NewCA("other-ca", certs.RSA2048, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	crt, key, err := certs.Issue(other, certs.LeafSpec{Subject: pkix.Name{CommonName: "kube-etcd-healthcheck-client"}, Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyAlgorithm: certs.RSA2048, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	otherCA := lc.tls.Clone()
	otherCA.Certificates = []tls.Certificate{pair}
	for name, cfg := range map[string]*tls.Config{"no client certificate": noCert, "certificate of another CA": otherCA} {
		err := withEndpoint(cfg, ep, func(c *clientv3.Client) error {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			_, err := c.Put(ctx, "/kubeforge/intruder", "x")
			return err
		})
		if err == nil {
			t.Errorf("%s: write accepted", name)
		}
	}
	// Plain HTTP on the client port is no way in either.
	hc := &http.Client{Timeout: 3 * time.Second}
	if resp, err := hc.Get(strings.Replace(ep, "https://", "http://", 1) + "/version"); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK || strings.Contains(string(body), "etcdserver") {
			t.Errorf("plain HTTP answered %d: %s", resp.StatusCode, body)
		}
	}
}

// BenchmarkLoopbackJoin measures a join from the first API call to a healthy
// voting member: learner add, etcd start, catch-up and promotion, with real etcd
// processes on loopback. Removing the member again between iterations is not
// timed.
func BenchmarkLoopbackJoin(b *testing.B) {
	lc := newLoopCluster(b, "a", "b")
	if err := lc.members["a"].startNew(); err != nil {
		b.Fatal(err)
	}
	lc.waitHealthy("a")
	cli := lc.client("a")
	var started time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := lc.join("b", "a")
		if err != nil {
			b.Fatal(err)
		}
		started += res.StartedAfter
		b.StopTimer()
		st := lc.status("a")
		if err := RemoveMember(context.Background(), cli, lc.tls, st, res.ID, b.Logf); err != nil {
			b.Fatal(err)
		}
		if err := lc.members["b"].Remove(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(started.Milliseconds())/float64(b.N), "ms-to-started/op")
}
