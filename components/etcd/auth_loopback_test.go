package etcd

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kubeforge/kubeforge/certs"
)

// TestLoopbackAuth runs EnsureAuth on a real etcd and plays every identity: only
// the administrator and the apiserver read the cluster's keys, the overlay only
// its prefix, a member's own certificates nothing, and the one-join credential
// adds and promotes exactly one member and is powerless once it deleted its user.
func TestLoopbackAuth(t *testing.T) {
	lc := newLoopCluster(t, "a", "b", "c")
	if err := lc.members["a"].startNew(); err != nil {
		t.Fatal(err)
	}
	lc.waitHealthy("a")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pkiA := filepath.Join(lc.dir, "a", "pki")
	admin, err := AdminTLS(LocalRead, pkiA)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, _ := os.ReadFile(filepath.Join(pkiA, "etcd/ca.crt"))
	caKey, _ := os.ReadFile(filepath.Join(pkiA, "etcd/ca.key"))
	ca, err := certs.ParseCA(caPEM, caKey)
	if err != nil {
		t.Fatal(err)
	}
	as := func(user string) *tls.Config {
		crt, key, err := IssueClient(ca, user, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := TLSConfigFromPEM(caPEM, crt, key)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	fileTLS := func(dir, name string) *tls.Config {
		cfg, err := TLSFiles{CA: filepath.Join(dir, "etcd/ca.crt"), Cert: filepath.Join(dir, "etcd", name+".crt"), Key: filepath.Join(dir, "etcd", name+".key")}.Config(LocalRead)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	ep := lc.members["a"].cfg.Member.ClientURL()
	cli := func(cfg *tls.Config) *clientv3.Client {
		c, err := NewClient([]string{ep}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	plan, err := AuthPlanFor(lc.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli(admin).Put(ctx, "/registry/secrets/default/s", "secret"); err != nil {
		t.Fatal(err)
	}
	changed, err := EnsureAuth(ctx, cli(admin), plan)
	if err != nil || len(changed) == 0 {
		t.Fatalf("EnsureAuth: %v %v", changed, err)
	}
	t.Logf("EnsureAuth: %v", changed)
	if changed, err := EnsureAuth(ctx, cli(admin), plan); err != nil || len(changed) != 0 {
		t.Errorf("EnsureAuth again: %v %v, want no change", changed, err)
	}

	read := func(cfg *tls.Config, key string) error {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		var opts []clientv3.OpOption
		if strings.HasSuffix(key, "/") {
			opts = append(opts, clientv3.WithPrefix())
		}
		_, err := cli(cfg).Get(rctx, key, opts...)
		return err
	}
	write := func(cfg *tls.Config, key string) error {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := cli(cfg).Put(rctx, key, "x")
		return err
	}
	health := fileTLS(pkiA, "healthcheck-client")
	server, peer := fileTLS(pkiA, "server"), fileTLS(pkiA, "peer")
	overlay := as(plan.OverlayUser)
	apiserver := as(plan.APIServerUser)
	for _, c := range []struct {
		who             string
		cfg             *tls.Config
		key             string
		readOK, writeOK bool
	}{
		{"administrator", admin, "/registry/secrets/", true, true},
		{"apiserver", apiserver, "/registry/secrets/", true, true},
		{"apiserver", apiserver, "compact_rev_key", true, true},
		{"health check", health, HealthKey, true, false},
		{"health check", health, "/registry/secrets/", false, false},
		{"overlay", overlay, "/kubeforge/network/subnets/", true, true},
		{"overlay", overlay, "/registry/secrets/", false, false},
		{"member server certificate", server, "/registry/secrets/", false, false},
		{"member peer certificate", peer, "/registry/secrets/", false, false},
		{"member peer certificate", peer, "\x00", false, false},
	} {
		if err := read(c.cfg, c.key); (err == nil) != c.readOK || (err != nil && !IsAuthRefusal(err)) {
			t.Errorf("%s reading %q: %v, want allowed=%t", c.who, c.key, err, c.readOK)
		}
		if err := write(c.cfg, c.key); (err == nil) != c.writeOK || (err != nil && !IsAuthRefusal(err)) {
			t.Errorf("%s writing %q: %v, want allowed=%t", c.who, c.key, err, c.writeOK)
		}
	}
	// kube-apiserver's compactor calls Compact, which etcd 3.6 allows only
	// to root: refused, every continue token lives forever (the conformance
	// run's API chunking failure). The overlay and health identities may not.
	resp, err := cli(admin).Get(ctx, HealthKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		who string
		cfg *tls.Config
		ok  bool
	}{{"overlay", overlay, false}, {"health check", health, false}, {"apiserver", apiserver, true}} {
		_, err := cli(c.cfg).Compact(ctx, resp.Header.Revision)
		if (err == nil) != c.ok || (err != nil && !IsAuthRefusal(err)) {
			t.Errorf("%s compacting: %v, want allowed=%t", c.who, err, c.ok)
		}
	}

	// A member's certificates add no member.
	if _, err := cli(peer).MemberAddAsLearner(ctx, []string{"https://127.0.0.9:2380"}); err == nil || !IsAuthRefusal(err) {
		t.Errorf("member add with a peer certificate: %v", err)
	}

	// Status with the health check's certificate: healthy, details withheld.
	st, err := GetClusterStatus(ctx, cli(health), health)
	if err != nil || len(st.Members) != 1 || !st.Members[0].Healthy {
		t.Errorf("status as the health check: %+v %v", st, err)
	}
	st, err = GetClusterStatus(ctx, cli(admin), admin)
	if err != nil || len(st.Members) != 1 || !st.Members[0].Healthy || st.Members[0].RaftIndex == 0 || st.Leader == "" {
		t.Errorf("status as the administrator: %+v %v", st, err)
	}

	// b joins with a one-join credential, then deletes its user.
	if err := EnsureJoinUser(ctx, cli(admin), "b"); err != nil {
		t.Fatal(err)
	}
	join := as(JoinUser("b"))
	jc := cli(join)
	res, err := JoinMember(ctx, JoinRequest{Client: jc, TLS: join, Member: lc.members["b"].cfg.Member, Runner: lc.members["b"], Timeout: time.Minute, Logf: t.Logf})
	if err != nil || !res.Promoted {
		t.Fatalf("join b with the one-join credential: %+v %v", res, err)
	}
	if deleted, err := DeleteOwnUser(ctx, jc, JoinUser("b")); err != nil || !deleted {
		t.Fatalf("deleting the join user: %t %v", deleted, err)
	}
	if err := read(join, "/registry/secrets/"); err == nil || !IsAuthRefusal(err) {
		t.Errorf("the spent join credential still reads: %v", err)
	}
	if _, err := jc.MemberAddAsLearner(ctx, []string{"https://127.0.0.9:2380"}); err == nil || !IsAuthRefusal(err) {
		t.Errorf("the spent join credential still adds members: %v", err)
	}
	if deleted, err := DeleteOwnUser(ctx, jc, JoinUser("b")); err != nil || deleted {
		t.Errorf("deleting the spent user again: %t %v", deleted, err)
	}
	st, err = GetClusterStatus(ctx, cli(admin), admin)
	if err != nil || summary(st) != "a:voter b:voter" {
		t.Errorf("after the join: %v %v", st, err)
	}

	// c joins through a client of a follower: the promotion must still reach
	// the leader with c's identity (etcd 3.6 forwards it without).
	if err := EnsureJoinUser(ctx, cli(admin), "c"); err != nil {
		t.Fatal(err)
	}
	joinC := as(JoinUser("c"))
	follower := lc.members["a"].cfg.Member.ClientURL()
	for _, m := range st.Members {
		if !m.IsLeader && len(m.ClientURLs) > 0 {
			follower = m.ClientURLs[0]
		}
	}
	fc, err := NewClient([]string{follower}, joinC)
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	res, err = JoinMember(ctx, JoinRequest{Client: fc, TLS: joinC, Member: lc.members["c"].cfg.Member, Runner: lc.members["c"], Timeout: time.Minute, Logf: t.Logf})
	if err != nil || !res.Promoted {
		t.Fatalf("join c through follower %s: %+v %v", follower, res, err)
	}
	if st, err = GetClusterStatus(ctx, cli(admin), admin); err != nil || summary(st) != "a:voter b:voter c:voter" {
		t.Errorf("after joining c: %v %v", st, err)
	}
}
