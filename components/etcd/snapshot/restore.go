package snapshot

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/yaml"

	etcdutl "go.etcd.io/etcd/etcdutl/v3/snapshot"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/components/etcd"
)

// RevisionBump is how far a restore moves etcd's revision past the snapshot's,
// with the restored revision marked compacted (what etcd's and Kubernetes'
// restore guides do, etcdutl --bump-revision --mark-compacted): every watcher
// that saw a newer revision before the disaster (kubelets, controllers, the
// overlay agents) gets "compacted" and lists again instead of waiting for a
// revision the restored data reaches only much later, or never.
const RevisionBump = 1_000_000_000

// TokenPrefix starts the cluster token of a restored cluster.
const TokenPrefix = "kubeforge-restore-"

// RestoreToken is the cluster token for a restore from the snapshot with the
// given sha256: new (no member of the cluster before has it) and the same on
// every member that restores the same file, so the members agree without being
// told, and a member restored from another file has another token and cannot
// join them.
func RestoreToken(sum string) string {
	if len(sum) > 16 {
		sum = sum[:16]
	}
	return TokenPrefix + sum
}

// LocalMember is this host's etcd member as its config file describes it.
type LocalMember struct {
	Name      string
	DataDir   string
	PeerURL   string
	ClientURL string
}

// ReadLocalMember reads the member config file (etcd.ConfigPath) on h.
func ReadLocalMember(ctx context.Context, h host.Host, configPath string) (LocalMember, error) {
	data, err := h.ReadFile(ctx, configPath)
	if err != nil {
		if host.IsNotExist(err) {
			return LocalMember{}, fmt.Errorf("%s: no etcd member config %s: this host runs no etcd member kubeforge set up", h.Name(), configPath)
		}
		return LocalMember{}, err
	}
	var v struct {
		Name      string `json:"name"`
		DataDir   string `json:"data-dir"`
		PeerURLs  string `json:"initial-advertise-peer-urls"`
		ClientURL string `json:"advertise-client-urls"`
	}
	if err := yaml.Unmarshal(data, &v); err != nil {
		return LocalMember{}, fmt.Errorf("%s: %s: %w", h.Name(), configPath, err)
	}
	m := LocalMember{Name: v.Name, DataDir: v.DataDir, PeerURL: first(v.PeerURLs), ClientURL: first(v.ClientURL)}
	if m.Name == "" || m.DataDir == "" || m.PeerURL == "" || m.ClientURL == "" {
		return LocalMember{}, fmt.Errorf("%s: %s lacks name, data-dir, initial-advertise-peer-urls or advertise-client-urls", h.Name(), configPath)
	}
	return m, nil
}

func first(csv string) string {
	f, _, _ := strings.Cut(csv, ",")
	return strings.TrimSpace(f)
}

// InitialClusterOf is the restored cluster's membership from a snapshot's
// sidecar: every voting member at the time of the snapshot, with its peer URL.
// A learner is left out: it had not caught up, and a restored cluster starts
// with voters only.
func InitialClusterOf(sc *Sidecar) ([]etcd.Peer, error) {
	var peers []etcd.Peer
	for _, m := range sc.Members {
		if m.IsLearner {
			continue
		}
		if m.Name == "" || len(m.PeerURLs) == 0 {
			return nil, fmt.Errorf("the sidecar's member %s has no name or peer URL (a member that never started); give --initial-cluster", m.ID)
		}
		peers = append(peers, etcd.Peer{Name: m.Name, PeerURL: m.PeerURLs[0]})
	}
	if len(peers) == 0 {
		return nil, fmt.Errorf("the sidecar lists no voting member; give --initial-cluster")
	}
	slices.SortFunc(peers, func(a, b etcd.Peer) int { return strings.Compare(a.Name, b.Name) })
	return peers, nil
}

// FileSHA256 is the hex sha256 of the file at p.
func FileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("reading %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// RestoreMemberOptions are what RestoreMember needs.
type RestoreMemberOptions struct {
	// Host is this machine (the data dir is written by this process).
	Host host.Host
	// File is the verified snapshot.
	File   string
	Member LocalMember
	// InitialCluster is every member of the restored cluster; Member must be one
	// of them with the same peer URL.
	InitialCluster []etcd.Peer
	Token          string
	// Now names the set-aside data dir; nil means time.Now.
	Now  func() time.Time
	Logf func(string, ...any)
}

// RestoreMember stops etcd.service, moves the member's data dir aside
// (<data-dir>.before-restore-<time>, never deleted: it is the way back) and
// restores the snapshot into the data dir with etcd's restore library as a
// member of InitialCluster with Token, the revision bumped and compacted. A
// failed restore moves the old data dir back. It does not start etcd. It
// returns the set-aside directory.
func RestoreMember(ctx context.Context, o RestoreMemberOptions) (string, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	m := o.Member
	if err := config.CheckOwnDir("etcd data dir", m.DataDir); err != nil {
		return "", fmt.Errorf("%s: %w; nothing changed", o.Host.Name(), err)
	}
	in := false
	for _, p := range o.InitialCluster {
		if p.Name == m.Name {
			if p.PeerURL != m.PeerURL {
				return "", fmt.Errorf("%s: the initial cluster gives member %s the peer URL %s, its config %s says %s; nothing changed", o.Host.Name(), m.Name, p.PeerURL, etcd.ConfigPath, m.PeerURL)
			}
			in = true
		}
	}
	if !in {
		return "", fmt.Errorf("%s: member %s is not in the initial cluster %s; nothing changed", o.Host.Name(), m.Name, etcd.FormatInitialCluster(o.InitialCluster))
	}
	if err := o.Host.Units().Stop(ctx, etcd.UnitName); err != nil {
		return "", fmt.Errorf("%s: stopping %s: %w", o.Host.Name(), etcd.UnitName, err)
	}
	o.Logf("stopped %s", etcd.UnitName)
	dataDir := filepath.Clean(m.DataDir)
	aside := ""
	if _, err := os.Stat(dataDir); err == nil {
		aside = dataDir + ".before-restore-" + o.Now().UTC().Format(timeLayout)
		if err := os.Rename(dataDir, aside); err != nil {
			return "", fmt.Errorf("%s: moving the data dir aside: %w", o.Host.Name(), err)
		}
		o.Logf("moved the old data dir %s to %s (remove it once the cluster is good)", dataDir, aside)
	} else if !os.IsNotExist(err) {
		return "", err
	}
	t0 := time.Now()
	err := etcdutl.NewV3(zap.NewNop()).Restore(etcdutl.RestoreConfig{
		SnapshotPath:        o.File,
		Name:                m.Name,
		OutputDataDir:       dataDir,
		PeerURLs:            []string{m.PeerURL},
		InitialCluster:      etcd.FormatInitialCluster(o.InitialCluster),
		InitialClusterToken: o.Token,
		RevisionBump:        RevisionBump,
		MarkCompacted:       true,
	})
	if err == nil {
		err = os.Chmod(dataDir, 0o700)
	}
	if err != nil {
		_ = os.RemoveAll(dataDir)
		if aside != "" {
			if rerr := os.Rename(aside, dataDir); rerr != nil {
				return "", fmt.Errorf("%s: etcd restore of %s: %v; and moving %s back failed too: %v", o.Host.Name(), o.File, err, aside, rerr)
			}
		}
		return "", fmt.Errorf("%s: etcd restore of %s: %w (the old data dir is back in place; etcd is stopped)", o.Host.Name(), o.File, err)
	}
	o.Logf("restored %s into %s as member %s of %s (token %s, revision +%d, compacted) in %s",
		filepath.Base(o.File), dataDir, m.Name, etcd.FormatInitialCluster(o.InitialCluster), o.Token, RevisionBump, time.Since(t0).Round(time.Millisecond))
	return aside, nil
}

// WaitMembersOptions are what WaitMembers needs.
type WaitMembersOptions struct {
	// Endpoint is the local member's client URL; TLS a credential that may read
	// the member list and `health` (the health-check client will do).
	Endpoint string
	TLS      *tls.Config
	// Members are the names that must all be started and healthy.
	Members  []string
	Timeout  time.Duration
	Interval time.Duration
	Logf     func(string, ...any)
}

// WaitMembers polls the cluster through the local member until every member
// named is started and healthy, saying which ones it still waits for whenever
// that changes.
func WaitMembers(ctx context.Context, o WaitMembersOptions) (*etcd.ClusterStatus, error) {
	if o.Interval == 0 {
		o.Interval = 2 * time.Second
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	var (
		last    *etcd.ClusterStatus
		lastErr error
		said    string
	)
	err := wait.PollUntilContextTimeout(ctx, o.Interval, o.Timeout, true, func(ctx context.Context) (bool, error) {
		cli, err := etcd.NewClient([]string{o.Endpoint}, o.TLS)
		if err != nil {
			lastErr = err
			return false, nil
		}
		defer cli.Close()
		st, err := etcd.GetClusterStatus(ctx, cli, o.TLS)
		if err != nil {
			lastErr = err
			return false, nil
		}
		last, lastErr = st, nil
		var missing []string
		for _, n := range o.Members {
			ok := false
			for _, m := range st.Members {
				if m.Name == n && m.Healthy && !m.IsLearner {
					ok = true
				}
			}
			if !ok {
				missing = append(missing, n)
			}
		}
		if len(missing) == 0 {
			return true, nil
		}
		if s := strings.Join(missing, ", "); s != said {
			o.Logf("waiting for member(s) %s to be restored and healthy", s)
			said = s
		}
		return false, nil
	})
	if err != nil {
		why := ""
		if lastErr != nil {
			why = fmt.Sprintf(" (last answer: %v)", lastErr)
		} else if said != "" {
			why = " (still not healthy: " + said + ")"
		}
		return last, fmt.Errorf("waiting for the restored etcd cluster at %s: %w%s", o.Endpoint, err, why)
	}
	return last, nil
}
