// Package etcdtest runs a real etcd (the bundle's binary) on loopback for the
// overlay's tests.
package etcdtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Binary finds etcd: $KUBEFORGE_BUNDLE/bin/etcd, else the default bundle cache.
// "" when there is none.
func Binary() string {
	dirs := []string{}
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
	return ""
}

// Server is one etcd member on 127.0.0.1.
type Server struct {
	Endpoint string
	cmd      *exec.Cmd
	done     chan struct{}
	bin      string
	args     []string
	log      string
}

// Start runs etcd in a temp dir, waits until it serves and stops it at cleanup.
// The test is skipped when no etcd binary exists.
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin := Binary()
	if bin == "" {
		tb.Skip("no etcd binary: set KUBEFORGE_BUNDLE to a bundle with bin/etcd, or build one with hack/build-bundle.sh")
	}
	dir := tb.TempDir()
	cport, pport := freePort(tb), freePort(tb)
	client := fmt.Sprintf("http://127.0.0.1:%d", cport)
	peer := fmt.Sprintf("http://127.0.0.1:%d", pport)
	s := &Server{Endpoint: client, bin: bin, log: filepath.Join(dir, "etcd.log"), args: []string{
		"--name=test", "--data-dir=" + filepath.Join(dir, "data"),
		"--listen-client-urls=" + client, "--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer, "--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=test=" + peer, "--log-level=error"}}
	s.start(tb)
	tb.Cleanup(s.stop)
	return s
}

// Restart kills etcd and starts it again on the same data and ports, so clients
// see their connections break and come back.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	s.stop()
	s.start(tb)
}

func (s *Server) start(tb testing.TB) {
	tb.Helper()
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(s.bin, s.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", s.bin, err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	done := s.done
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		tb.Fatal(err)
	}
	defer cli.Close()
	client := s.Endpoint
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Get(ctx, "health")
		cancel()
		if err == nil {
			break
		}
		select {
		case <-done:
			log, _ := os.ReadFile(s.log)
			tb.Fatalf("etcd exited: %s", strings.TrimSpace(string(log)))
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("etcd at %s not serving after 30s: %v", client, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *Server) stop() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

// Client returns a client for the server, closed at cleanup.
func (s *Server) Client(tb testing.TB) *clientv3.Client {
	tb.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cli.Close() })
	return cli
}

func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
