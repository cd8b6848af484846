package renewal

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/etcd"
	"github.com/kubeforge/kubeforge/components/kubelet"
	"github.com/kubeforge/kubeforge/components/kubeproxy"
	"github.com/kubeforge/kubeforge/components/overlay"
)

// probeTimeout bounds one health request.
const probeTimeout = 3 * time.Second

// etcdOps restarts etcd and waits until this member answers healthy through the
// client API, asked at its own client URL with the health-check client
// certificate: a member that serves its status and a linearizable read is in a
// quorum with a leader, which is what "healthy" has to mean before the
// apiserver is restarted against it.
func (r *Restarter) etcdOps() (unitOps, error) {
	o, h := r.o, r.o.Host
	if !o.Node.HasRole(config.RoleEtcd) {
		return unitOps{}, fmt.Errorf("etcd.service runs here but host %s does not have the etcd role in the cluster configuration", o.Node.Name)
	}
	member := etcd.MemberOf(*o.Node)
	files := etcd.ClientTLSFiles(o.CertDir)
	serverCert, _, err := certs.CertPaths(o.CertDir, certs.CertEtcdServer)
	if err != nil {
		return unitOps{}, err
	}
	peerCert, peerKey, err := certs.CertPaths(o.CertDir, certs.CertEtcdPeer)
	if err != nil {
		return unitOps{}, err
	}
	// The peer port checks that a client certificate names the address it
	// comes from; the member's own peer certificate does (and is what its
	// peers present).
	peerFiles := etcd.TLSFiles{CA: files.CA, Cert: peerCert, Key: peerKey}
	tlsOf := func(f etcd.TLSFiles) func(context.Context) (*tls.Config, error) {
		return func(ctx context.Context) (*tls.Config, error) { return f.Config(etcd.HostRead(ctx, h)) }
	}
	return unitOps{
		serves: map[string]servedCert{
			certs.CertEtcdServer: {name: certs.CertEtcdServer, file: serverCert, url: member.ClientURL() + "/version", tlsConfig: tlsOf(files)},
			certs.CertEtcdPeer:   {name: certs.CertEtcdPeer, file: peerCert, url: member.PeerURL() + "/version", tlsConfig: tlsOf(peerFiles)},
		},
		trigger: plainRestart(h, UnitEtcd),
		probe: func(ctx context.Context) error {
			// Read at every probe: the health-check client certificate may be
			// one of the renewed files, and the old one may have expired.
			tlsCfg, err := files.Config(etcd.HostRead(ctx, h))
			if err != nil {
				return err
			}
			cli, err := etcd.NewClient([]string{member.ClientURL()}, tlsCfg)
			if err != nil {
				return err
			}
			defer cli.Close()
			st, err := etcd.GetClusterStatus(ctx, cli, tlsCfg)
			if err != nil {
				return err
			}
			for _, m := range st.Members {
				if m.Name != member.Name {
					continue
				}
				if !m.Healthy {
					return fmt.Errorf("member %s at %s is not healthy: %s", m.Name, member.ClientURL(), m.Error)
				}
				return nil
			}
			return fmt.Errorf("no member named %s in the cluster's member list", member.Name)
		},
	}, nil
}

// kubeletOps probes the kubelet's /healthz where its configuration puts it.
func (r *Restarter) kubeletOps(ctx context.Context) (unitOps, error) {
	h := r.o.Host
	var cfg struct {
		HealthzBindAddress string `json:"healthzBindAddress"`
		HealthzPort        *int   `json:"healthzPort"`
	}
	if err := readYAML(ctx, h, kubelet.ConfigPath, &cfg); err != nil {
		return unitOps{}, err
	}
	port := 10248 // the kubelet's default
	if cfg.HealthzPort != nil {
		port = *cfg.HealthzPort
	}
	ops := unitOps{trigger: plainRestart(h, UnitKubelet)}
	if port == 0 {
		// No health endpoint configured: a new process that stays up is all
		// there is to see.
		ops.probe = func(context.Context) error { return nil }
		return ops, nil
	}
	ops.probe = r.httpProbe("http://" + net.JoinHostPort(loopbackFor(cfg.HealthzBindAddress), strconv.Itoa(port)) + "/healthz")
	return ops, nil
}

// kubeProxyOps probes kube-proxy's /healthz, which answers 200 once its rules
// are in sync.
func (r *Restarter) kubeProxyOps(ctx context.Context) (unitOps, error) {
	h := r.o.Host
	var cfg struct {
		HealthzBindAddress string `json:"healthzBindAddress"`
	}
	if err := readYAML(ctx, h, kubeproxy.ConfigPath, &cfg); err != nil {
		return unitOps{}, err
	}
	addr := cfg.HealthzBindAddress
	if addr == "" {
		addr = "0.0.0.0:10256" // kube-proxy's default
	}
	hp, port, err := net.SplitHostPort(addr)
	if err != nil {
		return unitOps{}, fmt.Errorf("%s: healthzBindAddress %q: %w", kubeproxy.ConfigPath, addr, err)
	}
	return unitOps{
		trigger: plainRestart(h, UnitKubeProxy),
		probe:   r.httpProbe("http://" + net.JoinHostPort(loopbackFor(hp), port) + "/healthz"),
	}, nil
}

// overlayOps probes the overlay agent's /healthz, which answers 200 once the
// agent holds its lease and has programmed its peers.
func (r *Restarter) overlayOps(ctx context.Context) (unitOps, error) {
	h := r.o.Host
	data, err := h.ReadFile(ctx, overlay.ConfigPath)
	if err != nil {
		return unitOps{}, fmt.Errorf("the overlay agent's configuration: %w", err)
	}
	cfg, err := overlay.ParseConfig(data)
	if err != nil {
		return unitOps{}, fmt.Errorf("%s: %w", overlay.ConfigPath, err)
	}
	hp, port, err := net.SplitHostPort(cfg.HealthAddress)
	if err != nil {
		return unitOps{}, fmt.Errorf("%s: healthAddress %q: %w", overlay.ConfigPath, cfg.HealthAddress, err)
	}
	return unitOps{
		trigger: plainRestart(h, UnitOverlay),
		probe:   r.httpProbe("http://" + net.JoinHostPort(loopbackFor(hp), port) + "/healthz"),
	}, nil
}

// readYAML decodes a daemon's configuration file on h into v (unknown fields
// ignored: only the health settings matter here).
func readYAML(ctx context.Context, h host.Host, p string, v any) error {
	data, err := h.ReadFile(ctx, p)
	if err != nil {
		return fmt.Errorf("reading %s: %w", p, err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	return nil
}

// loopbackFor is where an endpoint bound to addr is reached from its own host.
func loopbackFor(addr string) string {
	ip := net.ParseIP(addr)
	switch {
	case addr == "" || ip != nil && ip.IsUnspecified() && ip.To4() != nil:
		return "127.0.0.1"
	case ip != nil && ip.IsUnspecified():
		return "::1"
	}
	return addr
}

// httpProbe GETs url once through the options' dialer; 200 is healthy.
func (r *Restarter) httpProbe(url string) func(context.Context) error {
	client := &http.Client{
		Transport: &http.Transport{DialContext: r.o.Dial, DisableKeepAlives: true, Proxy: nil},
		Timeout:   probeTimeout,
	}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("%s: %w", url, unwrapURL(err))
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: HTTP %d: %s", url, resp.StatusCode, strings.TrimSpace(string(body)))
		}
		return nil
	}
}

// unwrapURL drops the *url.Error wrapper whose URL the message names already.
func unwrapURL(err error) error {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) && ue.Unwrap() != nil {
		return ue.Unwrap()
	}
	return err
}

// probeTransport is controlplane.Wait's transport with another dialer: the CA
// verifies the apiserver; the controller-manager and scheduler serve a
// certificate they generate in memory, which nothing can verify, and /healthz
// is only read, never trusted with a credential.
func probeTransport(dial func(context.Context, string, string) (net.Conn, error), verify bool, caPEM []byte) (http.RoundTripper, error) {
	tlsCfg := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12} //nolint:gosec // see above
	if verify {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, errors.New("the cluster CA certificate is not PEM")
		}
		tlsCfg = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Transport{DialContext: dial, TLSClientConfig: tlsCfg, DisableKeepAlives: true, Proxy: nil}, nil
}
