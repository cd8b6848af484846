package snapshot

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubeforge/kubeforge/components/containerd/fakehost"
	"github.com/kubeforge/kubeforge/components/etcd"
)

func TestRestoreTokenAndInitialCluster(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	if got := RestoreToken(sum); got != "kubeforge-restore-abababababababab" {
		t.Errorf("token %q", got)
	}
	if RestoreToken(sum) == RestoreToken(strings.Repeat("cd", 32)) {
		t.Error("two files, one token")
	}
	sc := &Sidecar{Members: []Member{
		{ID: "3", Name: "node02", PeerURLs: []string{"https://10.0.0.3:2380"}},
		{ID: "1", Name: "master01", PeerURLs: []string{"https://10.0.0.1:2380"}},
		{ID: "4", Name: "node03", PeerURLs: []string{"https://10.0.0.4:2380"}, IsLearner: true},
	}}
	peers, err := InitialClusterOf(sc)
	if err != nil {
		t.Fatal(err)
	}
	if got := etcd.FormatInitialCluster(peers); got != "master01=https://10.0.0.1:2380,node02=https://10.0.0.3:2380" {
		t.Errorf("initial cluster %s (voters only, sorted)", got)
	}
	if _, err := InitialClusterOf(&Sidecar{Members: []Member{{ID: "9"}}}); err == nil || !strings.Contains(err.Error(), "--initial-cluster") {
		t.Errorf("member without name: %v", err)
	}
}

// TestRestoreMember restores a real snapshot with RestoreMember into a data
// dir that held other data and serves it with the real etcd: the keys are
// there, the revision is bumped, the old data is set aside, and a member that
// is not in the initial cluster is refused with nothing changed.
func TestRestoreMember(t *testing.T) {
	bin := etcdBinary(t)
	dir := t.TempDir()
	files, tlsCfg, err := throwawayPKI(dir)
	if err != nil {
		t.Fatal(err)
	}
	ports, err := freePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	cu, pu := fmt.Sprintf("https://127.0.0.1:%d", ports[0]), fmt.Sprintf("https://127.0.0.1:%d", ports[1])
	args := func(dataDir, cluster, token string) []string {
		return []string{"--name=m1", "--data-dir=" + dataDir,
			"--listen-client-urls=" + cu, "--advertise-client-urls=" + cu, "--listen-peer-urls=" + pu,
			"--initial-advertise-peer-urls=" + pu, "--initial-cluster=" + cluster, "--initial-cluster-token=" + token,
			"--cert-file=" + files.Cert, "--key-file=" + files.Key, "--trusted-ca-file=" + files.CA, "--client-cert-auth",
			"--peer-cert-file=" + files.Cert, "--peer-key-file=" + files.Key, "--peer-trusted-ca-file=" + files.CA, "--peer-client-cert-auth"}
	}
	ctx := context.Background()
	serve := func(dataDir string) (*member, *clientv3.Client) {
		t.Helper()
		m, err := startMember(bin, args(dataDir, "m1="+pu, "src"))
		if err != nil {
			t.Fatal(err)
		}
		cli, err := connectTLS(cu, tlsCfg)
		if err != nil {
			t.Fatal(err)
		}
		err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			_, err := cli.Get(ctx, "probe")
			return err == nil, nil
		})
		if err != nil {
			t.Fatalf("waiting for etcd on %s: %v; log: %s", dataDir, err, m.logTail())
		}
		return m, cli
	}

	data := filepath.Join(dir, "etcd")
	m, cli := serve(data)
	for i := range 50 {
		if _, err := cli.Put(ctx, fmt.Sprintf("/registry/k%02d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "snapshots")
	file, sc, err := Save(ctx, SaveOptions{Client: cli, Endpoint: cu, Dir: out, Cluster: "kubernetes"})
	if err != nil {
		t.Fatal(err)
	}
	// Written after the snapshot: gone after the restore.
	if _, err := cli.Put(ctx, "/registry/after", "x"); err != nil {
		t.Fatal(err)
	}
	cli.Close()
	m.stop()

	h := fakehost.New("m1")
	lm := LocalMember{Name: "m1", DataDir: data, PeerURL: pu, ClientURL: cu}
	peers, err := InitialClusterOf(sc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := RestoreMember(ctx, RestoreMemberOptions{Host: h, File: file, Member: LocalMember{Name: "other", DataDir: data, PeerURL: pu}, InitialCluster: peers, Token: "t"}); err == nil || !strings.Contains(err.Error(), "nothing changed") {
		t.Errorf("a member outside the initial cluster: %v", err)
	}
	if len(h.Changes()) != 0 {
		t.Errorf("the refused restore changed %v", h.Changes())
	}
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	aside, err := RestoreMember(ctx, RestoreMemberOptions{Host: h, File: file, Member: lm, InitialCluster: peers, Token: RestoreToken(sc.SHA256),
		Now: func() time.Time { return now }, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if aside != data+".before-restore-20261203T120000Z" {
		t.Errorf("set aside to %s", aside)
	}
	if _, err := os.Stat(filepath.Join(aside, "member", "wal")); err != nil {
		t.Errorf("the old data is not in %s: %v", aside, err)
	}
	if fi, err := os.Stat(data); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("restored data dir: %v %v", err, fi)
	}

	m, cli = serve(data)
	defer m.stop()
	defer cli.Close()
	resp, err := cli.Get(ctx, "/registry/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 50 {
		t.Errorf("%d keys under /registry/ after the restore, want the snapshot's 50", resp.Count)
	}
	if resp.Header.Revision < sc.Revision+RevisionBump {
		t.Errorf("revision %d after the restore, want at least %d + %d", resp.Header.Revision, sc.Revision, RevisionBump)
	}
	if _, err := cli.Get(ctx, "/registry/k00", clientv3.WithRev(sc.Revision)); err == nil || !strings.Contains(err.Error(), "compacted") {
		t.Errorf("reading at the snapshot's revision: %v, want compacted", err)
	}
}
