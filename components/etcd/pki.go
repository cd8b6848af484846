package etcd

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/certs"
)

// PKIDir is where a member's certificates live below the cert dir (kubeadm's layout).
func PKIDir(certDir string) string { return filepath.Join(certDir, "etcd") }

// ClientTLSFiles are the files kubeforge's own etcd client uses: the etcd CA and
// the health-check client certificate, as kubeadm's etcd probes do.
func ClientTLSFiles(certDir string) TLSFiles {
	d := PKIDir(certDir)
	return TLSFiles{
		CA:   filepath.Join(d, "ca.crt"),
		Cert: filepath.Join(d, "healthcheck-client.crt"),
		Key:  filepath.Join(d, "healthcheck-client.key"),
	}
}

// certSpec maps the cluster config onto the certs package's Spec for node, the same
// mapping every other user of the PKI gets.
func certSpec(c *config.Cluster, node config.Host) (certs.Spec, error) {
	return certs.SpecFromConfig(c, node.Name)
}

// memberCertNames are the certificates a member needs; the CA comes first when
// this run may create it.
func memberCertNames(createCA bool) []string {
	names := []string{certs.CertEtcdServer, certs.CertEtcdPeer, certs.CertEtcdHealthcheckClient}
	if createCA {
		names = append([]string{certs.CertEtcdCA}, names...)
	}
	return names
}

// EnsureCerts makes sure node has its etcd server, peer and health-check client
// certificates under certDir on h, issuing missing ones from the etcd CA there.
// With createCA the etcd CA itself is created when it does not exist yet (the
// first member of a new cluster); otherwise it must already be on the host (a
// joining member gets it handed over). Existing valid files are kept; an invalid
// one is an error naming it, and then nothing is written. It reports whether any
// file was written.
func EnsureCerts(ctx context.Context, h host.Host, c *config.Cluster, node config.Host, certDir string, createCA bool, logf func(string, ...any)) (bool, error) {
	names := memberCertNames(createCA)
	before, err := existingFiles(ctx, h, certDir, names)
	if err != nil {
		return false, err
	}
	spec, err := certSpec(c, node)
	if err != nil {
		return false, err
	}
	p := &certs.PKI{
		Spec:    spec,
		CertDir: certDir,
		FS:      certs.HostFS{Ctx: ctx, Host: h},
		Out:     lineWriter(logf),
	}
	if err := p.CreateCerts(names...); err != nil {
		return false, fmt.Errorf("%s: etcd certificates: %w", h.Name(), err)
	}
	return before < 2*len(names), nil
}

// existingFiles counts which of the certificate and key files already exist.
func existingFiles(ctx context.Context, h host.Host, certDir string, names []string) (int, error) {
	n := 0
	for _, name := range names {
		crt, key, err := certs.CertPaths(certDir, name)
		if err != nil {
			return 0, err
		}
		for _, p := range []string{crt, key} {
			_, err := h.Stat(ctx, p)
			switch {
			case err == nil:
				n++
			case !host.IsNotExist(err):
				return 0, err
			}
		}
	}
	return n, nil
}

// lineWriter turns writes (one or more lines) into logf calls.
func lineWriter(logf func(string, ...any)) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		for _, l := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
			if l != "" {
				logf("%s", l)
			}
		}
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
