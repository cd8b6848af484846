package snapshot

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	etcdutl "go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubeforge/kubeforge/components/etcd"
)

// VerifyOptions are what Verify needs.
type VerifyOptions struct {
	// File is the snapshot.
	File string
	// NoSidecar verifies a snapshot without a sidecar (one etcdctl saved): only
	// etcd's own appended hash is checked before the restore.
	NoSidecar bool
	// EtcdBinary runs the throwaway member; "" means the installed etcd.
	EtcdBinary string
	// TmpDir is where the restored data dir goes, removed afterwards; "" means
	// the snapshot's own directory, which is private and has room for a copy.
	TmpDir string
	// Timeout bounds the throwaway member's start; 0 means 2 minutes.
	Timeout time.Duration
	Logf    func(string, ...any)
}

// Result is what a verified snapshot holds.
type Result struct {
	File     string `json:"file"`
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256"`
	Keys     int64  `json:"keys"`
	Revision int64  `json:"revision"`
	// Took is how long the whole verification took.
	Took time.Duration `json:"took"`
}

// Verify checks the snapshot's hashes, restores it with etcd's restore library
// into a temporary data dir, serves that with a throwaway etcd on loopback and
// counts its keys. Every error names the file. The temporary data is removed.
func Verify(ctx context.Context, o VerifyOptions) (*Result, error) {
	start := time.Now()
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.EtcdBinary == "" {
		o.EtcdBinary = etcd.BinaryPath
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Minute
	}
	file := o.File
	fail := func(format string, args ...any) error {
		return fmt.Errorf("snapshot %s: %s", file, fmt.Sprintf(format, args...))
	}

	var sc *Sidecar
	if !o.NoSidecar {
		var err error
		if sc, err = ReadSidecar(file); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fail("no sidecar %s (verify a snapshot saved without kubeforge with --no-sidecar)", file+SidecarSuffix)
			}
			return nil, fail("sidecar: %v", err)
		}
	}

	// 1. The bytes: size and sha256 against the sidecar, etcd's own hash.
	size, sum, err := checkBytes(file, sc)
	if err != nil {
		return nil, fail("%v", err)
	}
	o.Logf("%s: %d bytes, sha256 %s matches%s and etcd's integrity hash", file, size, sum, map[bool]string{true: " the sidecar", false: ""}[sc != nil])

	// 2. Restore with etcd's own library into a private temporary directory.
	tmpParent := o.TmpDir
	if tmpParent == "" {
		tmpParent = filepath.Dir(file)
	}
	tmp, err := os.MkdirTemp(tmpParent, ".kubeforge-verify-*")
	if err != nil {
		return nil, fail("temporary directory: %v", err)
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o700); err != nil {
		return nil, err
	}
	m, err := restoreInto(file, tmp)
	if err != nil {
		return nil, fail("%v", err)
	}
	o.Logf("restored into %s", m.dataDir)

	// 3. Serve it with a throwaway member and count what it holds.
	keys, rev, err := m.serve(ctx, o)
	if err != nil {
		return nil, fail("%v", err)
	}
	if sc != nil && rev < sc.Revision {
		return nil, fail("the restored member is at revision %d, the sidecar says %d", rev, sc.Revision)
	}
	return &Result{File: file, Size: size, SHA256: sum, Keys: keys, Revision: rev, Took: time.Since(start)}, nil
}

// checkBytes reads file once and checks its size and sha256 against the
// sidecar (when there is one) and etcd's own appended sha256.
func checkBytes(file string, sc *Sidecar) (int64, string, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, "", err
	}
	whole := sha256.New()
	inner := newTrailerHash(sha256.New(), sha256.Size)
	size, err := io.Copy(io.MultiWriter(whole, inner), f)
	f.Close()
	if err != nil {
		return 0, "", fmt.Errorf("reading: %v", err)
	}
	sum := hex.EncodeToString(whole.Sum(nil))
	if sc != nil {
		switch {
		case size < sc.Size:
			return 0, "", fmt.Errorf("truncated: %d bytes, the sidecar says %d", size, sc.Size)
		case size != sc.Size:
			return 0, "", fmt.Errorf("%d bytes, the sidecar says %d", size, sc.Size)
		case sum != sc.SHA256:
			return 0, "", fmt.Errorf("corrupt: sha256 %s, the sidecar says %s", sum, sc.SHA256)
		}
	}
	if !hasChecksum(size) {
		return 0, "", fmt.Errorf("%d bytes: not an etcd database followed by etcd's sha256 (truncated?)", size)
	}
	if !inner.matches() {
		return 0, "", errors.New("corrupt: the database does not match the sha256 etcd appended to it")
	}
	return size, sum, nil
}

// restored is a snapshot restored into a private directory, with the loopback
// URLs its throwaway member will use.
type restored struct {
	tmp, dataDir       string
	clientURL, peerURL string
}

// restoreInto restores file with etcd's own restore library into tmp/data, as
// a one-member cluster on two free loopback ports.
func restoreInto(file, tmp string) (*restored, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	r := &restored{
		tmp:       tmp,
		dataDir:   filepath.Join(tmp, "data"),
		clientURL: "https://127.0.0.1:" + strconv.Itoa(ports[0]),
		peerURL:   "https://127.0.0.1:" + strconv.Itoa(ports[1]),
	}
	err = etcdutl.NewV3(zap.NewNop()).Restore(etcdutl.RestoreConfig{
		SnapshotPath:        file,
		Name:                "verify",
		OutputDataDir:       r.dataDir,
		PeerURLs:            []string{r.peerURL},
		InitialCluster:      "verify=" + r.peerURL,
		InitialClusterToken: "kubeforge-verify",
	})
	if err != nil {
		return nil, fmt.Errorf("etcd restore: %v", err)
	}
	return r, nil
}

// serve starts a throwaway member on the restored data and returns its key
// count and revision once it answers. The snapshot holds every Secret, so the
// member gets mutual TLS with a key that exists only in the private directory.
func (r *restored) serve(ctx context.Context, o VerifyOptions) (keys, rev int64, err error) {
	tlsFiles, clientTLS, err := throwawayPKI(r.tmp)
	if err != nil {
		return 0, 0, err
	}
	m, err := startMember(o.EtcdBinary, []string{
		"--name=verify", "--data-dir=" + r.dataDir,
		"--listen-client-urls=" + r.clientURL, "--advertise-client-urls=" + r.clientURL,
		"--listen-peer-urls=" + r.peerURL, "--initial-advertise-peer-urls=" + r.peerURL,
		"--initial-cluster=verify=" + r.peerURL, "--initial-cluster-token=kubeforge-verify",
		"--cert-file=" + tlsFiles.Cert, "--key-file=" + tlsFiles.Key, "--trusted-ca-file=" + tlsFiles.CA, "--client-cert-auth",
		"--peer-cert-file=" + tlsFiles.Cert, "--peer-key-file=" + tlsFiles.Key, "--peer-trusted-ca-file=" + tlsFiles.CA, "--peer-client-cert-auth",
		"--log-level=error",
	})
	if err != nil {
		return 0, 0, fmt.Errorf("starting %s: %v", o.EtcdBinary, err)
	}
	defer m.stop()
	o.Logf("started a throwaway etcd (%s) on %s", o.EtcdBinary, r.clientURL)

	cli, err := connectTLS(r.clientURL, clientTLS)
	if err != nil {
		return 0, 0, err
	}
	defer cli.Close()
	var lastErr error
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, o.Timeout, true, func(ctx context.Context) (bool, error) {
		if m.exited() {
			return false, fmt.Errorf("the throwaway etcd exited: %s", m.logTail())
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		resp, err := cli.Get(cctx, "\x00", clientv3.WithFromKey(), clientv3.WithCountOnly())
		if err != nil {
			lastErr = err
			return false, nil
		}
		keys, rev = resp.Count, resp.Header.Revision
		return true, nil
	})
	if err != nil {
		if lastErr != nil && !m.exited() {
			err = fmt.Errorf("%w (last answer: %v; its log: %s)", err, lastErr, m.logTail())
		}
		return 0, 0, fmt.Errorf("serving the restored data: %v", err)
	}
	return keys, rev, nil
}

// freePorts asks the kernel for n free loopback ports.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

// throwawayPKI writes a self-signed certificate (CA, server and client at
// once) and its key into dir and returns the files and a client config for it.
func throwawayPKI(dir string) (etcd.TLSFiles, *tls.Config, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return etcd.TLSFiles{}, nil, err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	tpl := &x509.Certificate{
		SerialNumber: serial,
		// CN root: a snapshot of a cluster with etcd authentication on carries
		// its auth store, and the throwaway etcd then checks every request
		// against it; the client certificate's CN is the etcd user, and only
		// root may read every key. The certificate is trusted by this
		// throwaway member alone (its own one-time CA), never by the cluster.
		Subject:               pkix.Name{CommonName: "root"},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		return etcd.TLSFiles{}, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return etcd.TLSFiles{}, nil, err
	}
	files := etcd.TLSFiles{CA: filepath.Join(dir, "ca.crt"), Cert: filepath.Join(dir, "ca.crt"), Key: filepath.Join(dir, "ca.key")}
	if err := os.WriteFile(files.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return etcd.TLSFiles{}, nil, err
	}
	if err := os.WriteFile(files.Key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return etcd.TLSFiles{}, nil, err
	}
	cfg, err := files.Config(etcd.LocalRead)
	return files, cfg, err
}

// member is the throwaway etcd process.
type member struct {
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	log  bytes.Buffer
}

func (m *member) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.log.Write(p)
	if m.log.Len() > 64<<10 { // keep the tail only
		b := m.log.Bytes()
		rest := append([]byte(nil), b[len(b)-32<<10:]...)
		m.log.Reset()
		m.log.Write(rest)
	}
	return len(p), nil
}

func (m *member) logTail() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(m.log.String()), "\n")
	if len(lines) > 8 {
		lines = lines[len(lines)-8:]
	}
	return strings.Join(lines, "\n  ")
}

func (m *member) exited() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

func startMember(binary string, args []string) (*member, error) {
	m := &member{done: make(chan struct{})}
	m.cmd = exec.Command(binary, args...)
	// No inherited environment: etcd reads ETCD_* variables as flags, and the
	// child needs nothing from ours.
	m.cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	m.cmd.Stdout, m.cmd.Stderr = m, m
	// The member dies with kubeforge, whatever kills it.
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := m.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { m.cmd.Wait(); close(m.done) }()
	return m, nil
}

func (m *member) stop() {
	if m.exited() {
		return
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(15 * time.Second):
		m.cmd.Process.Kill()
		<-m.done
	}
}
