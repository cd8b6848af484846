package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	sshhost "github.com/kubeforge/kubeforge/bootstrap/host/ssh"
	"github.com/kubeforge/kubeforge/bootstrap/lab"
	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/etcd"
)

// etcdLab is the lab of TestEtcd with the helpers its steps share.
type etcdLab struct {
	t     *testing.T
	s     *lab.State
	addr  map[string]string
	tls   *tls.Config // health-check client credentials of master01
	times map[string]time.Duration
}

// ssh runs a shell command on a lab host and returns its combined output.
func (l *etcdLab) ssh(host, cmd string, stdin []byte) (string, error) {
	c := labSSH(l.s, host, cmd)
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	if stdin != nil {
		c.Stdin = bytes.NewReader(stdin)
	}
	err := c.Run()
	return out.String(), err
}

func (l *etcdLab) must(host, cmd string) string {
	l.t.Helper()
	out, err := l.ssh(host, cmd, nil)
	if err != nil {
		l.t.Fatalf("%s: %s: %v\n%s", host, cmd, err, out)
	}
	return strings.TrimSpace(out)
}

// kf runs kubeforge on a host with the lab's cluster config; it returns the
// output and how long the command took.
func (l *etcdLab) kf(host string, args ...string) (string, time.Duration, error) {
	t0 := time.Now()
	out, err := l.ssh(host, "kubeforge "+strings.Join(args, " ")+" --config /etc/kubeforge/cluster.yaml --node-name "+host, nil)
	return out, time.Since(t0), err
}

func (l *etcdLab) ep(host string) string { return "https://" + l.addr[host] + ":2379" }

// clientOf is an etcd client for one member, from the machine.
func (l *etcdLab) clientOf(cfg *tls.Config, hosts ...string) *clientv3.Client {
	l.t.Helper()
	var eps []string
	for _, h := range hosts {
		eps = append(eps, l.ep(h))
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, TLS: cfg, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { cli.Close() })
	return cli
}

// status is `kubeforge etcd status -o json` on master01, against every host.
func (l *etcdLab) status(hosts ...string) (etcd.ClusterStatus, string) {
	l.t.Helper()
	var eps []string
	for _, h := range hosts {
		eps = append(eps, l.ep(h))
	}
	out, _ := l.ssh("master01", "kubeforge etcd status -o json --endpoints "+strings.Join(eps, ","), nil)
	var st etcd.ClusterStatus
	js := out
	if i := strings.Index(js, "{"); i >= 0 {
		js = js[i:]
	}
	if j := strings.LastIndex(js, "}"); j >= 0 {
		js = js[:j+1]
	}
	if err := json.Unmarshal([]byte(js), &st); err != nil {
		l.t.Fatalf("etcd status -o json: %v\n%s", err, out)
	}
	return st, out
}

// members renders the membership as "master01:voter node01:learner ...".
func members(st etcd.ClusterStatus) string {
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

// waitFor polls cond for up to a minute; cond returns "" when satisfied, or
// what it is still waiting for.
func (l *etcdLab) waitFor(what string, cond func() string) {
	l.t.Helper()
	var last string
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if last = cond(); last == "" {
			return
		}
	}
	l.t.Fatalf("%s: %s", what, last)
}

// tlsRefusal connects to addr with cfg and returns the TLS error: with TLS 1.3 the
// server's verdict on the client certificate arrives after the handshake, as an
// alert on the first read.
func tlsRefusal(addr string, cfg *tls.Config) error {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Read(make([]byte, 1))
	return err
}

func TestEtcd(t *testing.T) {
	requireE2E(t)
	t.Parallel()
	bdir := requireBundle(t, "bin/etcd")
	hosts := []string{"master01", "node01", "node02"}
	s := labFor(t, "etcd", "192.168.173.0/24", bdir, hosts...)
	l := &etcdLab{t: t, s: s, addr: map[string]string{}, times: map[string]time.Duration{}}
	for _, h := range s.Hosts {
		l.addr[h.Name] = h.Address
	}
	cluster, err := os.ReadFile(s.Paths().ClusterConfig)
	if err != nil {
		t.Fatalf("lab cluster config: %v", err)
	}
	bin, err := os.ReadFile(kubeforgeBin)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		if out, err := l.ssh(h, "cat > /usr/local/bin/kubeforge.tmp && chmod 0755 /usr/local/bin/kubeforge.tmp && mv /usr/local/bin/kubeforge.tmp /usr/local/bin/kubeforge", bin); err != nil {
			t.Fatalf("copying kubeforge to %s: %v\n%s", h, err, out)
		}
		if out, err := l.ssh(h, "mkdir -p /etc/kubeforge && cat > /etc/kubeforge/cluster.yaml", cluster); err != nil {
			t.Fatalf("copying the cluster config to %s: %v\n%s", h, err, out)
		}
	}

	// --- a dry run first: the plan, and nothing changed ---------------------------------
	out, _, err := l.kf("master01", "init", "phase", "etcd", "--dry-run")
	if err != nil {
		t.Fatalf("init phase etcd --dry-run: %v\n%s", err, out)
	}
	for _, want := range []string{"write /usr/local/bin/etcd", "write /etc/etcd/etcd.conf.yml", "etcd.service", "/var/lib/etcd"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry-run plan lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "BEGIN RSA PRIVATE KEY") || strings.Contains(out, "BEGIN PRIVATE KEY") || strings.Contains(out, "BEGIN EC PRIVATE KEY") {
		t.Errorf("dry-run plan shows private key material:\n%s", out)
	}
	if left := l.must("master01", "ls -d /usr/local/bin/etcd /etc/etcd /etc/kubernetes/pki/etcd /var/lib/etcd /etc/systemd/system/etcd.service 2>&1; true"); strings.Count(left, "No such file") != 5 {
		t.Errorf("the dry run changed master01:\n%s", left)
	}

	// --- init on master01 -----------------------------------------------------------
	out, took, err := l.kf("master01", "init", "phase", "etcd")
	if err != nil {
		t.Fatalf("init phase etcd on master01: %v\n%s", err, out)
	}
	t.Logf("init phase etcd on master01 (%s):\n%s", took, out)
	l.times["init to healthy"] = took
	if !strings.Contains(out, "is healthy") || !strings.Contains(out, "[etcd] done in") || !strings.Contains(out, "authentication enabled") {
		t.Errorf("init output lacks progress, the healthy line or etcd authentication:\n%s", out)
	}
	// The etcd CA, for this test's own clients: with authentication on, they
	// are etcd's administrator, as kubeforge is on a host with the CA key.
	var pemFiles = map[string][]byte{}
	for _, f := range []string{"ca.crt", "ca.key", "healthcheck-client.crt", "healthcheck-client.key"} {
		pemFiles[f] = []byte(l.must("master01", "cat /etc/kubernetes/pki/etcd/"+f) + "\n")
	}
	etcdCA, err := certs.ParseCA(pemFiles["ca.crt"], pemFiles["ca.key"])
	if err != nil {
		t.Fatal(err)
	}
	adminCrt, adminKey, err := etcd.IssueClient(etcdCA, etcd.AdminUser, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if l.tls, err = etcd.TLSConfigFromPEM(pemFiles["ca.crt"], adminCrt, adminKey); err != nil {
		t.Fatal(err)
	}
	pool := l.tls.RootCAs
	healthTLS, err := etcd.TLSConfigFromPEM(pemFiles["ca.crt"], pemFiles["healthcheck-client.crt"], pemFiles["healthcheck-client.key"])
	if err != nil {
		t.Fatal(err)
	}
	t.Run("authentication: the health-check certificate reads no cluster key", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := l.clientOf(l.tls, "master01").Put(ctx, "/registry/secrets/default/e2e", "s"); err != nil {
			t.Fatalf("administrator write: %v", err)
		}
		_, err := l.clientOf(healthTLS, "master01").Get(ctx, "/registry/secrets/", clientv3.WithPrefix())
		if err == nil || !etcd.IsAuthRefusal(err) {
			t.Errorf("health-check certificate reading /registry/secrets/: %v, want permission denied", err)
		}
	})

	// --- hand the etcd CA over and join node01, node02 --------------------------------
	for _, h := range []string{"node01", "node02"} {
		for _, f := range []string{"ca.crt", "ca.key"} {
			if out, err := l.ssh(h, "umask 077; mkdir -p /etc/kubernetes/pki/etcd && cat > /etc/kubernetes/pki/etcd/"+f, pemFiles[f]); err != nil {
				t.Fatalf("CA to %s: %v\n%s", h, err, out)
			}
		}
		out, took, err := l.kf(h, "join", "phase", "etcd")
		if err != nil {
			t.Fatalf("join phase etcd on %s: %v\n%s", h, err, out)
		}
		t.Logf("join phase etcd on %s (%s):\n%s", h, took, out)
		l.times["join "+h+" to promoted"] = took
		for _, want := range []string{"as learner", "promoted " + h, "joined as voting member"} {
			if !strings.Contains(out, want) {
				t.Errorf("join output on %s lacks %q", h, want)
			}
		}
	}

	t.Run("three healthy voting members with one leader", func(t *testing.T) {
		st, raw := l.status(hosts...)
		if got := members(st); got != "master01:voter node01:voter node02:voter" {
			t.Fatalf("members %s\n%s", got, raw)
		}
		leaders := 0
		for _, m := range st.Members {
			if !m.Healthy {
				t.Errorf("%s unhealthy: %s", m.Name, m.Error)
			}
			if m.IsLeader {
				leaders++
			}
			if m.RaftIndex == 0 || m.DBSize == 0 || m.Version != "3.6.16" {
				t.Errorf("%s: status %+v", m.Name, m)
			}
		}
		if leaders != 1 || st.Leader == "" {
			t.Errorf("%d leaders, leader %q", leaders, st.Leader)
		}
		table := l.must("master01", "kubeforge etcd status")
		for _, want := range []string{"LEARNER", "LEADER", "RAFT INDEX", "DB SIZE", "master01", "node02"} {
			if !strings.Contains(table, want) {
				t.Errorf("status table lacks %q:\n%s", want, table)
			}
		}
		t.Logf("kubeforge etcd status:\n%s", table)
	})

	t.Run("a key written on one member is read on the others", func(t *testing.T) {
		ctx := context.Background()
		if _, err := l.clientOf(l.tls, "node01").Put(ctx, "/kubeforge/e2e", "written-on-node01"); err != nil {
			t.Fatal(err)
		}
		for _, h := range []string{"master01", "node02"} {
			r, err := l.clientOf(l.tls, h).Get(ctx, "/kubeforge/e2e")
			if err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "written-on-node01" {
				t.Errorf("read on %s: %v %v", h, r, err)
			}
		}
	})

	t.Run("member certificates and file modes", func(t *testing.T) {
		ca, err := certs.ParseCA(pemFiles["ca.crt"], nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hosts {
			for _, f := range []string{"server", "peer"} {
				c, err := certs.ParseCertPEM([]byte(l.must(h, "cat /etc/kubernetes/pki/etcd/"+f+".crt")))
				if err != nil {
					t.Fatalf("%s %s.crt: %v", h, f, err)
				}
				if err := ca.Verify(c, time.Now(), x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth); err != nil {
					t.Errorf("%s %s.crt: %v", h, f, err)
				}
				if c.Subject.CommonName != h || c.VerifyHostname(l.addr[h]) != nil || c.VerifyHostname("127.0.0.1") != nil {
					t.Errorf("%s %s.crt: CN %q, IPs %v", h, f, c.Subject.CommonName, c.IPAddresses)
				}
			}
			modes := l.must(h, "stat -c '%a %n' /etc/kubernetes/pki/etcd/server.key /etc/kubernetes/pki/etcd/peer.key /etc/etcd/etcd.conf.yml /var/lib/etcd")
			for _, want := range []string{"600 /etc/kubernetes/pki/etcd/server.key", "600 /etc/kubernetes/pki/etcd/peer.key", "600 /etc/etcd/etcd.conf.yml", "700 /var/lib/etcd"} {
				if !strings.Contains(modes, want) {
					t.Errorf("%s: modes\n%s\nlack %q", h, modes, want)
				}
			}
			if unit := l.must(h, "systemctl cat etcd.service"); strings.Contains(unit, ".key") {
				t.Errorf("%s: the unit names key files:\n%s", h, unit)
			}
			if argv := l.must(h, "tr '\\0' ' ' < /proc/$(systemctl show -p MainPID --value etcd)/cmdline"); strings.TrimSpace(argv) != "/usr/local/bin/etcd --config-file=/etc/etcd/etcd.conf.yml" {
				t.Errorf("%s: etcd argv %q", h, argv)
			}
		}
	})

	t.Run("clients without a certificate of the etcd CA are refused by every member", func(t *testing.T) {
		noCert := &tls.Config{RootCAs: pool}
		other, err := certs.NewCA("intruder-ca", certs.RSA2048, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		crt, key, err := certs.Issue(other, certs.LeafSpec{Subject: pkix.Name{CommonName: "kube-etcd-healthcheck-client"}, Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyAlgorithm: certs.RSA2048, Validity: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		otherPair, err := tls.X509KeyPair(crt, key)
		if err != nil {
			t.Fatal(err)
		}
		otherCA := &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{otherPair}}
		for _, h := range hosts {
			for name, cfg := range map[string]*tls.Config{"no certificate": noCert, "another CA": otherCA} {
				// The handshake itself is refused, with a TLS alert about the
				// client certificate (not a timeout or a network error).
				err := tlsRefusal(l.addr[h]+":2379", cfg)
				if err == nil || !strings.Contains(err.Error(), "remote error: tls:") || !strings.Contains(err.Error(), "certificate") {
					t.Errorf("%s, client with %s: TLS error %v, want a refusal of the client certificate", h, name, err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_, err = l.clientOf(cfg, h).Put(ctx, "/kubeforge/intruder", "x")
				cancel()
				if err == nil {
					t.Errorf("%s accepted a write from a client with %s", h, name)
				}
			}
		}
		r, err := l.clientOf(l.tls, "master01").Get(context.Background(), "/kubeforge/intruder")
		if err != nil || len(r.Kvs) != 0 {
			t.Errorf("intruder key: %v %v", r, err)
		}
	})

	t.Run("one member down: writes go on, it catches up when back", func(t *testing.T) {
		l.must("node01", "systemctl stop etcd")
		ctx := context.Background()
		cli := l.clientOf(l.tls, "master01", "node02")
		for i := 0; i < 50; i++ {
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := cli.Put(wctx, "/kubeforge/while-down/"+strconv.Itoa(i), "v")
			cancel()
			if err != nil {
				t.Fatalf("write %d with node01 down: %v", i, err)
			}
		}
		last, err := cli.Put(ctx, "/kubeforge/e2e", "written-while-node01-was-down")
		if err != nil {
			t.Fatal(err)
		}
		st, _ := l.status(hosts...)
		for _, m := range st.Members {
			if m.Name == "node01" && m.Healthy {
				t.Errorf("node01 reported healthy while stopped")
			}
		}
		l.must("node01", "systemctl start etcd")
		l.waitFor("node01 catching up", func() string {
			ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			r, err := l.clientOf(l.tls, "node01").Get(ctx, "/kubeforge/e2e", clientv3.WithSerializable())
			switch {
			case err != nil:
				return err.Error()
			case len(r.Kvs) != 1 || r.Kvs[0].ModRevision < last.Header.Revision:
				return fmt.Sprintf("node01 at revision %d, the write was %d", r.Header.Revision, last.Header.Revision)
			}
			return ""
		})
	})

	t.Run("reset refuses to break quorum", func(t *testing.T) {
		l.must("node01", "systemctl stop etcd")
		out, _, err := l.kf("node02", "reset", "phase", "etcd", "--force")
		l.must("node01", "systemctl start etcd")
		if err == nil {
			t.Fatalf("reset of node02 with node01 down succeeded:\n%s", out)
		}
		if !strings.Contains(out, "would break quorum") || !strings.Contains(out, "--force-etcd-removal") {
			t.Errorf("refusal does not explain itself:\n%s", out)
		}
		if active := l.must("node02", "systemctl is-active etcd"); active != "active" {
			t.Errorf("refused reset still stopped etcd on node02: %s", active)
		}
		l.waitFor("node01 healthy again", func() string {
			st, _ := l.status(hosts...)
			if st.HealthyVoters() != 3 {
				return members(st) + fmt.Sprintf(", %d healthy", st.HealthyVoters())
			}
			return ""
		})
	})

	t.Run("reset node02: the cluster continues with two", func(t *testing.T) {
		out, _, err := l.kf("node02", "reset", "phase", "etcd", "--force")
		if err != nil {
			t.Fatalf("reset phase etcd on node02: %v\n%s", err, out)
		}
		st, raw := l.status("master01", "node01")
		if got := members(st); got != "master01:voter node01:voter" || st.HealthyVoters() != 2 {
			t.Fatalf("after reset: %s\n%s", got, raw)
		}
		if _, err := l.clientOf(l.tls, "master01", "node01").Put(context.Background(), "/kubeforge/e2e", "after-reset"); err != nil {
			t.Errorf("write after reset: %v", err)
		}
		left := l.must("node02", "ls -d /etc/systemd/system/etcd.service /etc/systemd/system/multi-user.target.wants/etcd.service /etc/etcd/etcd.conf.yml /var/lib/etcd 2>&1; true")
		if strings.Count(left, "No such file") != 4 {
			t.Errorf("reset left files on node02:\n%s", left)
		}
		if st := l.must("node02", "systemctl is-active etcd; true"); st != "inactive" {
			t.Errorf("etcd on node02 after reset: %s", st)
		}
		out, _, err = l.kf("node02", "reset", "phase", "etcd", "--force")
		if err != nil || !strings.Contains(out, "unchanged") {
			t.Errorf("second reset: %v\n%s", err, out)
		}
	})

	t.Run("a join whose etcd cannot start leaves the cluster as it was", func(t *testing.T) {
		l.must("node02", "systemd-run --unit kf-squat socat TCP-LISTEN:2380,fork,reuseaddr - && sleep 0.5 && ss -ltn | grep -q ':2380 '")
		out, took, err := l.kf("node02", "join", "phase", "etcd")
		l.must("node02", "systemctl stop kf-squat")
		if err == nil {
			t.Fatalf("join with port 2380 taken succeeded:\n%s", out)
		}
		t.Logf("failed join (%s):\n%s", took, out)
		for _, want := range []string{"address already in use", "removing it again", "removed again"} {
			if !strings.Contains(out, want) {
				t.Errorf("failed join output lacks %q", want)
			}
		}
		st, raw := l.status("master01", "node01")
		if got := members(st); got != "master01:voter node01:voter" || st.HealthyVoters() != 2 {
			t.Fatalf("after the failed join: %s (want the old voters, no learner)\n%s", got, raw)
		}
		if left := l.must("node02", "systemctl is-active etcd 2>&1; ls /var/lib/etcd 2>&1; true"); !strings.Contains(left, "No such file") {
			t.Errorf("the failed join left etcd on node02:\n%s", left)
		}
	})

	t.Run("node02 joins again cleanly", func(t *testing.T) {
		out, took, err := l.kf("node02", "join", "phase", "etcd")
		if err != nil {
			t.Fatalf("join after reset: %v\n%s", err, out)
		}
		l.times["rejoin node02 to promoted"] = took
		st, raw := l.status(hosts...)
		if got := members(st); got != "master01:voter node01:voter node02:voter" || st.HealthyVoters() != 3 {
			t.Fatalf("after rejoin: %s\n%s", got, raw)
		}
		r, err := l.clientOf(l.tls, "node02").Get(context.Background(), "/kubeforge/e2e")
		if err != nil || string(r.Kvs[0].Value) != "after-reset" {
			t.Errorf("node02 after rejoin: %v %v", r, err)
		}
	})

	t.Run("running the phases again changes nothing", func(t *testing.T) {
		for _, tc := range []struct{ host, cmd string }{{"master01", "init"}, {"node01", "join"}} {
			pid := l.must(tc.host, "systemctl show -p MainPID --value etcd")
			out, _, err := l.kf(tc.host, tc.cmd, "phase", "etcd")
			if err != nil {
				t.Fatalf("%s phase etcd again on %s: %v\n%s", tc.cmd, tc.host, err, out)
			}
			if !strings.Contains(out, "[etcd] unchanged") {
				t.Errorf("%s phase etcd again on %s did not report unchanged:\n%s", tc.cmd, tc.host, out)
			}
			if again := l.must(tc.host, "systemctl show -p MainPID --value etcd"); again != pid {
				t.Errorf("%s: etcd restarted (pid %s -> %s)", tc.host, pid, again)
			}
		}
		out, _, err := l.kf("node01", "init", "phase", "etcd")
		if err == nil || !strings.Contains(out, "not the first etcd host") {
			t.Errorf("init on node01: %v\n%s", err, out)
		}
	})

	t.Run("reset down to the last member, then a static bootstrap over SSH", func(t *testing.T) {
		for _, h := range []string{"node02", "node01"} {
			if out, _, err := l.kf(h, "reset", "phase", "etcd", "--force"); err != nil {
				t.Fatalf("reset %s: %v\n%s", h, err, out)
			}
		}
		out, _, err := l.kf("master01", "reset", "phase", "etcd", "--force")
		if err == nil || !strings.Contains(out, "only voting member") {
			t.Fatalf("reset of the last member was not refused: %v\n%s", err, out)
		}
		if active := l.must("master01", "systemctl is-active etcd"); active != "active" {
			t.Fatalf("refused reset stopped the last member: %s", active)
		}
		if out, _, err := l.kf("master01", "reset", "phase", "etcd", "--force", "--force-etcd-removal"); err != nil {
			t.Fatalf("forced reset of the last member: %v\n%s", err, out)
		}
		// node01 and node02 lose their etcd certificates and CA; the bootstrap hands
		// out new ones without the CA key.
		l.must("node01", "rm -rf /etc/kubernetes/pki/etcd")
		l.must("node02", "rm -rf /etc/kubernetes/pki/etcd")

		cfg, err := s.ClusterConfig()
		if err != nil {
			t.Fatal(err)
		}
		var targets []etcd.Target
		for _, n := range cfg.Spec.Hosts {
			h, err := sshhost.New(sshhost.Config{Name: n.Name, Address: n.Address, KeyFiles: []string{s.Paths().IdentityFile}, KnownHostsPath: s.Paths().KnownHosts})
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			targets = append(targets, etcd.Target{Host: h, Node: n})
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		opts := etcd.BootstrapOptions{Cluster: cfg, Targets: targets, CertDir: "/etc/kubernetes/pki", BundleDir: bdir, Logf: t.Logf}
		t0 := time.Now()
		res, err := etcd.Bootstrap(ctx, opts)
		if err != nil {
			t.Fatalf("bootstrap: %v", err)
		}
		l.times["static bootstrap of 3 members over ssh"] = time.Since(t0)
		if !res.Changed {
			t.Errorf("first bootstrap reported no change: %+v", res)
		}
		st, raw := l.status(hosts...)
		if got := members(st); got != "master01:voter node01:voter node02:voter" || st.HealthyVoters() != 3 || st.Leader == "" {
			t.Fatalf("after bootstrap: %s, leader %q\n%s", got, st.Leader, raw)
		}
		for _, h := range []string{"node01", "node02"} {
			if out := l.must(h, "ls /etc/kubernetes/pki/etcd"); strings.Contains(out, "ca.key") || !strings.Contains(out, "peer.key") {
				t.Errorf("%s: etcd pki after bootstrap: %s", h, out)
			}
		}
		// Without the CA key, node01's own certificates read nothing and change
		// no membership; etcd status there still works, without the details.
		for _, f := range []string{"peer", "server", "healthcheck-client"} {
			ctl := "ETCDCTL_API=3 /opt/kubeforge/bundle/bin/etcdctl --endpoints " + l.ep("master01") + " --cacert /etc/kubernetes/pki/etcd/ca.crt --cert /etc/kubernetes/pki/etcd/" + f + ".crt --key /etc/kubernetes/pki/etcd/" + f + ".key "
			if out, err := l.ssh("node01", ctl+"get '' --from-key --keys-only --limit 1", nil); err == nil || !strings.Contains(out, "permission denied") {
				t.Errorf("node01 with its %s certificate read keys: %v\n%s", f, err, out)
			}
			if out, err := l.ssh("node01", ctl+"member add intruder --learner --peer-urls https://192.0.2.1:2380", nil); err == nil || !strings.Contains(out, "user name not found") && !strings.Contains(out, "permission denied") {
				t.Errorf("node01 with its %s certificate added a member: %v\n%s", f, err, out)
			}
		}
		if out, err := l.ssh("node01", "kubeforge etcd status --endpoints "+l.ep("master01"), nil); err != nil || !strings.Contains(out, "node02") {
			t.Errorf("etcd status on node01: %v\n%s", err, out)
		}
		if _, err := l.clientOf(l.tls, "node02").Put(ctx, "/kubeforge/bootstrap", "ok"); err != nil {
			t.Errorf("write after bootstrap: %v", err)
		}
		res, err = etcd.Bootstrap(ctx, opts)
		if err != nil || res.Changed {
			t.Errorf("second bootstrap: %+v %v, want unchanged", res, err)
		}
	})

	for _, k := range []string{"init to healthy", "join node01 to promoted", "join node02 to promoted", "rejoin node02 to promoted", "static bootstrap of 3 members over ssh"} {
		t.Logf("BENCH etcd %s: %s", k, l.times[k].Round(10*time.Millisecond))
	}
}
