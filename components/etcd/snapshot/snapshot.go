// Package snapshot saves, lists, prunes and verifies etcd snapshots, and installs
// the timer that takes them on a schedule.
//
// A snapshot is the member's bbolt database streamed through the Maintenance API
// (the same call `etcdctl snapshot save` makes), with etcd's own sha256 of the
// database appended by the server. kubeforge writes it atomically, 0600, as
//
//	<cluster>-etcd-<YYYYMMDDTHHMMSSZ>-rev<revision>.db
//
// next to a sidecar <file>.json holding the file's sha256 and size, the revision,
// the member list and the Kubernetes and etcd versions. Only a file with that name
// and a sidecar that names it is kubeforge's: list and prune never touch
// anything else in the directory.
//
// Verify proves a snapshot restores: hashes, then etcd's own restore library
// (go.etcd.io/etcd/etcdutl/v3/snapshot) into a temporary directory, then a
// throwaway etcd (the installed binary, mutual TLS on loopback) serving it, which
// must answer with the snapshot's revision.
package snapshot

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kubeforge/kubeforge/components/etcd"
)

// SidecarKind marks a sidecar as kubeforge's.
const SidecarKind = "kubeforge-etcd-snapshot"

// SidecarSuffix is appended to the snapshot's file name to name its sidecar.
const SidecarSuffix = ".json"

// DirMode is the mode of a snapshot directory kubeforge creates: snapshots hold
// every Secret of the cluster.
const DirMode = 0o700

// FileMode is the mode of snapshots and sidecars.
const FileMode = 0o600

// nameRE matches kubeforge's snapshot names; cluster names are DNS labels.
var nameRE = regexp.MustCompile(`^([a-z0-9]([-a-z0-9]*[a-z0-9])?)-etcd-([0-9]{8}T[0-9]{6}Z)-rev([0-9]+)\.db$`)

const timeLayout = "20060102T150405Z"

// FileName is the snapshot's file name for cluster, time t and revision.
func FileName(cluster string, t time.Time, rev int64) string {
	return fmt.Sprintf("%s-etcd-%s-rev%d.db", cluster, t.UTC().Format(timeLayout), rev)
}

// Member is one etcd member as the sidecar records it.
type Member struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs"`
	IsLearner  bool     `json:"isLearner,omitempty"`
}

// Sidecar describes a snapshot file.
type Sidecar struct {
	Kind     string    `json:"kind"`
	File     string    `json:"file"`
	Cluster  string    `json:"cluster"`
	Time     time.Time `json:"time"`
	Size     int64     `json:"size"`
	SHA256   string    `json:"sha256"`
	Revision int64     `json:"revision"`
	// EtcdVersion is the member's server version; StorageVersion the data
	// format version etcd reports with the snapshot.
	EtcdVersion       string   `json:"etcdVersion"`
	StorageVersion    string   `json:"storageVersion"`
	KubernetesVersion string   `json:"kubernetesVersion"`
	Endpoint          string   `json:"endpoint"`
	Members           []Member `json:"members"`
}

// SaveOptions are what Save needs.
type SaveOptions struct {
	// Client talks to exactly one member: a snapshot is that member's state.
	Client            *clientv3.Client
	Endpoint          string
	Dir               string
	Cluster           string
	KubernetesVersion string
	// Now is the clock; nil means time.Now.
	Now  func() time.Time
	Logf func(string, ...any)
}

// Save streams a snapshot from the member into Dir (created 0700 when missing):
// a temporary file in Dir, fsynced, renamed to its final name, then the sidecar,
// written the same way. A failed save leaves nothing behind.
func Save(ctx context.Context, o SaveOptions) (string, *Sidecar, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if !nameRE.MatchString(FileName(o.Cluster, time.Unix(0, 0), 0)) {
		return "", nil, fmt.Errorf("cluster name %q cannot name a snapshot file: want a DNS label", o.Cluster)
	}
	if err := os.MkdirAll(o.Dir, DirMode); err != nil {
		return "", nil, fmt.Errorf("snapshot dir: %w", err)
	}
	started := o.Now()

	mctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	ml, err := o.Client.MemberList(mctx)
	if err != nil {
		cancel()
		return "", nil, fmt.Errorf("etcd member list from %s: %w", o.Endpoint, err)
	}
	st, err := o.Client.Status(mctx, o.Endpoint)
	cancel()
	if err != nil {
		return "", nil, fmt.Errorf("etcd status of %s: %w", o.Endpoint, err)
	}

	tmp, err := os.CreateTemp(o.Dir, ".kubeforge-snapshot-*.part")
	if err != nil {
		return "", nil, fmt.Errorf("snapshot dir: %w", err)
	}
	tmpName := tmp.Name()
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmpName)
		}
	}()
	if err := tmp.Chmod(FileMode); err != nil {
		return "", nil, err
	}

	o.Logf("streaming a snapshot from %s into %s", o.Endpoint, o.Dir)
	size, sum, storageVersion, err := stream(ctx, o, tmp)
	if err != nil {
		return "", nil, err
	}
	rev, err := fileRevision(tmpName)
	if err != nil {
		return "", nil, err
	}

	name := FileName(o.Cluster, started, rev)
	final := filepath.Join(o.Dir, name)
	if _, err := os.Lstat(final); err == nil {
		return "", nil, fmt.Errorf("%s exists already: a snapshot of the same second and revision", final)
	}
	sc := &Sidecar{
		Kind: SidecarKind, File: name, Cluster: o.Cluster, Time: started.UTC().Truncate(time.Second),
		Size: size, SHA256: sum, Revision: rev,
		EtcdVersion: st.Version, StorageVersion: storageVersion, KubernetesVersion: o.KubernetesVersion, Endpoint: o.Endpoint,
	}
	for _, m := range ml.Members {
		sc.Members = append(sc.Members, Member{ID: strconv.FormatUint(m.ID, 16), Name: m.Name,
			PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs, IsLearner: m.IsLearner})
	}
	// The database first, then its sidecar: a crash in between leaves a file
	// without a sidecar, which is not listed (and never pruned) as a snapshot.
	if err := os.Rename(tmpName, final); err != nil {
		return "", nil, err
	}
	done = true
	if err := writeSidecar(final, sc); err != nil {
		os.Remove(final)
		return "", nil, err
	}
	if err := syncDir(o.Dir); err != nil {
		return "", nil, err
	}
	return final, sc, nil
}

// stream copies the member's snapshot into tmp, checks etcd's appended sha256
// and syncs and closes tmp; it returns the size, the sha256 of the whole file
// and the storage version etcd reported.
func stream(ctx context.Context, o SaveOptions, tmp *os.File) (int64, string, string, error) {
	resp, err := o.Client.SnapshotWithVersion(ctx)
	if err != nil {
		return 0, "", "", fmt.Errorf("etcd snapshot from %s: %w", o.Endpoint, err)
	}
	defer resp.Snapshot.Close()
	whole := sha256.New()
	inner := newTrailerHash(sha256.New(), sha256.Size)
	size, err := io.Copy(io.MultiWriter(tmp, whole, inner), resp.Snapshot)
	if err != nil {
		return 0, "", "", fmt.Errorf("etcd snapshot from %s: after %d bytes: %w", o.Endpoint, size, err)
	}
	if !hasChecksum(size) {
		return 0, "", "", fmt.Errorf("etcd snapshot from %s: %d bytes, not a database followed by etcd's sha256: the stream was cut short", o.Endpoint, size)
	}
	if !inner.matches() {
		return 0, "", "", fmt.Errorf("etcd snapshot from %s: the database does not match the sha256 etcd appended to it", o.Endpoint)
	}
	if err := tmp.Sync(); err != nil {
		return 0, "", "", fmt.Errorf("fsync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return 0, "", "", err
	}
	return size, hex.EncodeToString(whole.Sum(nil)), resp.Version, nil
}

// Connect is the one place this package builds an etcd client: one endpoint,
// with tlsCfg, which must be an etcd user with the root role (with etcd
// authentication on, only the administrator may take a snapshot).
func Connect(endpoint string, tlsCfg *tls.Config) (*clientv3.Client, error) {
	return connectTLS(endpoint, tlsCfg)
}

func connectTLS(endpoint string, tlsCfg *tls.Config) (*clientv3.Client, error) {
	return etcd.NewClient([]string{endpoint}, tlsCfg)
}

func writeSidecar(dbPath string, sc *Sidecar) error {
	data, err := json.MarshalIndent(sc, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(dbPath+SidecarSuffix, append(data, '\n'))
}

func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".kubeforge-sidecar-*.part")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(FileMode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// ReadSidecar reads the sidecar of the snapshot at dbPath.
func ReadSidecar(dbPath string) (*Sidecar, error) {
	data, err := os.ReadFile(dbPath + SidecarSuffix)
	if err != nil {
		return nil, err
	}
	var sc Sidecar
	if err := json.Unmarshal(data, &sc); err != nil {
		return nil, fmt.Errorf("%s: %w", dbPath+SidecarSuffix, err)
	}
	if sc.Kind != SidecarKind {
		return nil, fmt.Errorf("%s: kind %q, not %q", dbPath+SidecarSuffix, sc.Kind, SidecarKind)
	}
	return &sc, nil
}

// hasChecksum reports whether a snapshot of n bytes ends in etcd's sha256: the
// database is a whole number of 512-byte sectors, so the remainder is the hash.
// (The same rule etcd's own snapshot code uses.)
func hasChecksum(n int64) bool { return n%512 == sha256.Size }

// trailerHash hashes everything written to it except the last n bytes, which it
// keeps: a snapshot's body and the hash etcd appended to it, in one pass.
type trailerHash struct {
	h    hash.Hash
	n    int
	tail []byte
}

func newTrailerHash(h hash.Hash, n int) *trailerHash { return &trailerHash{h: h, n: n} }

func (t *trailerHash) Write(p []byte) (int, error) {
	t.tail = append(t.tail, p...)
	if over := len(t.tail) - t.n; over > 0 {
		t.h.Write(t.tail[:over])
		t.tail = append(t.tail[:0], t.tail[over:]...)
	}
	return len(p), nil
}

func (t *trailerHash) matches() bool {
	return len(t.tail) == t.n && hex.EncodeToString(t.h.Sum(nil)) == hex.EncodeToString(t.tail)
}

// fileRevision reads the newest revision in a snapshot: the last key of etcd's
// "key" bucket, whose first 8 bytes are the main revision, big-endian.
func fileRevision(path string) (int64, error) {
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return 0, fmt.Errorf("%s: not an etcd database: %w", path, err)
	}
	defer db.Close()
	var rev int64
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("key"))
		if b == nil {
			return errors.New(`no "key" bucket`)
		}
		k, _ := b.Cursor().Last()
		if k == nil {
			return nil // a database without keys: revision 0... or compacted to nothing
		}
		if len(k) < 8 {
			return fmt.Errorf("malformed revision key %x", k)
		}
		rev = int64(binary.BigEndian.Uint64(k[:8]))
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return rev, nil
}
