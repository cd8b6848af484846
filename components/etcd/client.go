package etcd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/kubeforge/kubeforge/bootstrap/host"
)

// TLSFiles are the CA, certificate and key a client presents to etcd.
type TLSFiles struct {
	CA, Cert, Key string
}

// ReadFunc reads a file; host.Host's ReadFile and os.ReadFile both fit.
type ReadFunc func(path string) ([]byte, error)

// LocalRead reads from this machine.
func LocalRead(p string) ([]byte, error) { return os.ReadFile(p) }

// HostRead reads through h, so a client driven from another machine uses the
// credentials that live on the host.
func HostRead(ctx context.Context, h host.Host) ReadFunc {
	return func(p string) ([]byte, error) { return h.ReadFile(ctx, p) }
}

// Config builds the client TLS configuration: the etcd CA as the only root and
// the client certificate. Errors name the file.
func (f TLSFiles) Config(read ReadFunc) (*tls.Config, error) {
	caPEM, err := read(f.CA)
	if err != nil {
		return nil, fmt.Errorf("etcd CA %s: %w", f.CA, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("etcd CA %s: no PEM certificate in it", f.CA)
	}
	certPEM, err := read(f.Cert)
	if err != nil {
		return nil, fmt.Errorf("etcd client certificate %s: %w", f.Cert, err)
	}
	keyPEM, err := read(f.Key)
	if err != nil {
		return nil, fmt.Errorf("etcd client key %s: %w", f.Key, err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("etcd client certificate %s with key %s: %w", f.Cert, f.Key, err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}

// DialTimeout bounds connecting to one endpoint.
const DialTimeout = 5 * time.Second

// NewClient connects to endpoints (https URLs) with tlsCfg. The connection is
// made lazily, so an unreachable endpoint shows up as the first call's error.
func NewClient(endpoints []string, tlsCfg *tls.Config) (*clientv3.Client, error) {
	if len(endpoints) == 0 {
		return nil, errors.New("no etcd endpoints to connect to")
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		TLS:         tlsCfg.Clone(),
		DialTimeout: DialTimeout,
		// Keepalives notice a member that went away mid-join instead of waiting
		// on a dead TCP connection.
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		// The client's own zap logging would interleave with kubeforge's progress
		// lines; its errors reach us as return values anyway.
		Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client for %v: %w", endpoints, err)
	}
	return cli, nil
}

// withEndpoint runs fn with a client that talks to one endpoint only, which is
// what per-member questions (is this member healthy, how far is its raft log)
// need: a client over several endpoints answers from whichever it likes.
func withEndpoint(tlsCfg *tls.Config, endpoint string, fn func(*clientv3.Client) error) error {
	cli, err := NewClient([]string{endpoint}, tlsCfg)
	if err != nil {
		return err
	}
	defer cli.Close()
	return fn(cli)
}
