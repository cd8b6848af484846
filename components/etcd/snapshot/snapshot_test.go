package snapshot

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/components/etcd"
)

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
	t.Skipf("no etcd binary: set KUBEFORGE_BUNDLE to a bundle with bin/etcd; looked in %v", dirs)
	return ""
}

// TestSaveListVerifyPrune runs the whole cycle against a real etcd on loopback:
// keys in, snapshots out, a good one verifies with the right key count, a
// flipped byte and a truncation fail naming the file, prune keeps exactly N and
// never touches files that are not kubeforge's.
func TestSaveListVerifyPrune(t *testing.T) {
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
	m, err := startMember(bin, []string{"--name=src", "--data-dir=" + filepath.Join(dir, "src"),
		"--listen-client-urls=" + cu, "--advertise-client-urls=" + cu, "--listen-peer-urls=" + pu,
		"--initial-advertise-peer-urls=" + pu, "--initial-cluster=src=" + pu,
		"--cert-file=" + files.Cert, "--key-file=" + files.Key, "--trusted-ca-file=" + files.CA, "--client-cert-auth",
		"--peer-cert-file=" + files.Cert, "--peer-key-file=" + files.Key, "--peer-trusted-ca-file=" + files.CA, "--peer-client-cert-auth"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.stop)
	cli, err := connectTLS(cu, tlsCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()
	const n = 300
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := cli.Put(ctx, "/registry/probe", "x")
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("waiting for the source etcd to accept writes: %v; log: %s", err, m.logTail())
	}
	for i := range n {
		if _, err := cli.Put(ctx, "/registry/configmaps/default/cm-"+strconv.Itoa(i), strings.Repeat("v", 100)); err != nil {
			t.Fatal(err)
		}
	}

	out := filepath.Join(dir, "snapshots")
	foreign := filepath.Join(out, "kubernetes-etcd-20200101T000000Z-rev1.db") // our name, no sidecar
	other := filepath.Join(out, "notes.txt")
	if err := os.MkdirAll(out, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{foreign, other} {
		if err := os.WriteFile(p, []byte("not ours"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var saved []string
	clock := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	for i := range 3 {
		p, sc, err := Save(ctx, SaveOptions{Client: cli, Endpoint: cu, Dir: out, Cluster: "kubernetes",
			KubernetesVersion: config.DefaultKubernetesVersion, Now: func() time.Time { return clock.Add(time.Duration(i) * time.Minute) }})
		if err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != FileMode {
			t.Fatalf("%s: %v, mode %v", p, err, fi.Mode())
		}
		if sc.Revision < n || len(sc.Members) != 1 || sc.Members[0].Name != "src" || sc.EtcdVersion == "" {
			t.Fatalf("sidecar: %+v", sc)
		}
		saved = append(saved, p)
	}
	ents, err := List(out)
	if err != nil || len(ents) != 3 || ents[0].Path != saved[2] {
		t.Fatalf("List: %v, %+v", err, ents)
	}

	r, err := Verify(ctx, VerifyOptions{File: saved[0], EtcdBinary: bin, TmpDir: dir, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if r.Keys < n+1 || r.Revision < ents[2].Sidecar.Revision {
		t.Fatalf("verify: %d keys at revision %d, want >= %d keys", r.Keys, r.Revision, n+1)
	}

	data, err := os.ReadFile(saved[0])
	if err != nil {
		t.Fatal(err)
	}
	sc, _ := os.ReadFile(saved[0] + SidecarSuffix)
	bad := map[string][]byte{"flipped.db": flip(data, len(data)/2), "truncated.db": data[:len(data)-4096]}
	for name, b := range bad {
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o600)
		os.WriteFile(p+SidecarSuffix, sc, 0o600)
		_, err := Verify(ctx, VerifyOptions{File: p, EtcdBinary: bin, TmpDir: dir})
		if err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: want an error naming the file, got %v", name, err)
		} else {
			t.Logf("%s: %v", name, err)
		}
		// Without the sidecar etcd's own appended hash still catches it.
		_, err = Verify(ctx, VerifyOptions{File: p, NoSidecar: true, EtcdBinary: bin, TmpDir: dir})
		if err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s without sidecar: want an error naming the file, got %v", name, err)
		} else {
			t.Logf("%s without sidecar: %v", name, err)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".kubeforge-verify-*")); len(left) != 0 {
		t.Errorf("verify left %v behind", left)
	}

	removed, err := Prune(out, 2)
	if err != nil || len(removed) != 1 || removed[0] != saved[0] {
		t.Fatalf("Prune: %v, removed %v", err, removed)
	}
	for _, p := range []string{foreign, other, saved[1], saved[2], saved[2] + SidecarSuffix} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("prune removed %s: %v", p, err)
		}
	}
	for _, p := range []string{saved[0], saved[0] + SidecarSuffix} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s still there after prune", p)
		}
	}
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 0x01
	return c
}

func TestUnitsLoadOnSystemd219(t *testing.T) {
	for _, sched := range []string{"1h", "minutely", "daily"} {
		b := config.EtcdBackup{Schedule: sched, Keep: 3, Dir: "/var/lib/kubeforge/etcd-snapshots"}
		timer, err := Timer(b)
		if err != nil {
			t.Fatal(err)
		}
		for name, u := range map[string][]byte{ServiceName: Service(b), TimerName: timer} {
			if err := etcd.LintUnit(u); err != nil {
				t.Errorf("%s (%s): %v", name, sched, err)
			}
		}
	}
	timer, _ := Timer(config.EtcdBackup{Schedule: "90m", Keep: 1, Dir: "/x"})
	if !strings.Contains(string(timer), "OnActiveSec=5400s\nOnUnitActiveSec=5400s\n") {
		t.Errorf("interval timer:\n%s", timer)
	}
	if !strings.Contains(string(Service(config.EtcdBackup{Keep: 4, Dir: "/x"})), "etcd snapshot backup --dir /x --keep 4\n") {
		t.Error("service does not run backup with the configured dir and keep")
	}
}

func TestTrailerHash(t *testing.T) {
	body := []byte("abcdefg")
	sum := sha256.Sum256(body)
	all := append(append([]byte(nil), body...), sum[:]...)
	h := newTrailerHash(sha256.New(), sha256.Size)
	for len(all) > 0 { // odd chunk sizes, across the body/trailer border
		k := min(5, len(all))
		h.Write(all[:k])
		all = all[k:]
	}
	if !h.matches() {
		t.Fatal("body + its sha256 does not match")
	}
	h.Write([]byte("x"))
	if h.matches() {
		t.Fatal("one more byte still matches")
	}
}
