// Package features wires the node runtime's features — the overlay agent, the
// CSR approver and the node-local API load balancer, plus the runtime's own
// status server — into one noderuntime.Supervisor: what `kubeforge node run`
// starts. Each feature builds its own client from its own kubeconfig, so no
// feature acts with another's identity, and none waits for another: the
// overlay's informer starts as soon as the process does.
package features

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/components/apilb"
	"github.com/kubeforge/kubeforge/components/kubeclient"
	"github.com/kubeforge/kubeforge/components/kubelet/csrapprover"
	"github.com/kubeforge/kubeforge/components/noderuntime"
	"github.com/kubeforge/kubeforge/components/overlay"
)

// ApproverResync is how often the approver looks at every pending CSR besides
// watching.
const ApproverResync = 30 * time.Second

// Run runs the features o's roles choose until ctx ends. It fails only when
// it cannot start at all (options that name no roles or files); a feature
// that fails is restarted by the supervisor.
func Run(ctx context.Context, o noderuntime.RunOptions, logf func(string, ...any)) error {
	if err := validate(o); err != nil {
		return err
	}
	lb := &balancer{kubeconfig: o.APILBKubeconfig, listen: o.APILBListen, logf: logf}
	var feats []noderuntime.Feature
	for _, name := range o.Features() {
		switch name {
		case noderuntime.FeatureOverlay:
			feats = append(feats, overlayFeature(o.OverlayConfig, logf))
		case noderuntime.FeatureCSRApprover:
			feats = append(feats, approverFeature(o.ApproverKubeconfig, o.APIServerCert, logf))
		case noderuntime.FeatureAPILB:
			feats = append(feats, noderuntime.Feature{Name: name, Run: lb.run})
		}
	}
	var sup *noderuntime.Supervisor
	status := func() noderuntime.Status {
		return noderuntime.Status{Features: sup.Status(), APILB: lb.status()}
	}
	feats = append(feats, statusFeature(o.StatusAddress, status))
	sup = noderuntime.New(feats, noderuntime.Options{
		Logf:    logf,
		OnReady: func() { _, _ = daemon.SdNotify(false, daemon.SdNotifyReady) },
	})
	names := make([]string, len(feats))
	for i, f := range feats {
		names[i] = f.Name
	}
	logf("[node] kubeforge node runtime: roles %v, features %v", o.Roles, names)
	return sup.Run(ctx)
}

func validate(o noderuntime.RunOptions) error {
	var errs []error
	if len(o.Roles) == 0 {
		errs = append(errs, errors.New("--roles: at least one role"))
	}
	for _, r := range o.Roles {
		if !slices.Contains(config.Roles, r) {
			errs = append(errs, fmt.Errorf("--roles: unknown role %q", r))
		}
	}
	need := map[string]string{"--apilb-kubeconfig": o.APILBKubeconfig, "--apilb-listen": o.APILBListen, "--status-address": o.StatusAddress}
	if slices.Contains(o.Roles, config.RoleControlPlane) {
		need["--approver-kubeconfig"] = o.ApproverKubeconfig
	}
	for flag, v := range need {
		if v == "" {
			errs = append(errs, fmt.Errorf("%s is required", flag))
		}
	}
	return errors.Join(errs...)
}

func prefixed(logf func(string, ...any), p string) func(string, ...any) {
	return func(f string, a ...any) { logf(p+f, a...) }
}

// overlayFeature is the overlay agent, with the credential its config names
// (the node's kubelet.conf, or its etcd client certificate). It gates the
// runtime's readiness.
func overlayFeature(path string, logf func(string, ...any)) noderuntime.Feature {
	return noderuntime.Feature{
		Name:       noderuntime.FeatureOverlay,
		GatesReady: true,
		Run: func(ctx context.Context, ready func()) error {
			cfg, err := overlay.LoadConfig(path)
			if err != nil {
				return err
			}
			a, err := overlay.New(cfg, overlay.Options{Logf: prefixed(logf, "[overlay] "), Ready: ready})
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			return a.Run(ctx)
		},
	}
}

// approverFeature is the CSR approver with its own identity.
func approverFeature(kubeconfig, apiserverCert string, logf func(string, ...any)) noderuntime.Feature {
	return noderuntime.Feature{
		Name: noderuntime.FeatureCSRApprover,
		Run: func(ctx context.Context, ready func()) error {
			data, err := os.ReadFile(kubeconfig)
			if err != nil {
				return err
			}
			// No request timeout: it would cut every watch.
			cli, err := kubeclient.New(data, kubeclient.Options{Timeout: kubeclient.NoTimeout})
			if err != nil {
				return fmt.Errorf("%s: %w", kubeconfig, err)
			}
			l := prefixed(logf, "[csr-approver] ")
			l("watching CSRs and Nodes as %s", csrapprover.User)
			ready()
			a := &csrapprover.Approver{Client: cli, Logf: l, APIServerCert: apiserverCert}
			return a.Run(ctx, ApproverResync)
		},
	}
}

// balancer is the node-local API load balancer feature: a loopback listener
// in front of every apiserver, the pool from the `kubernetes` EndpointSlices,
// read with kube-proxy's identity (system:node-proxier lists and watches
// EndpointSlices already; nothing is widened) through the balancer itself.
type balancer struct {
	kubeconfig, listen string
	logf               func(string, ...any)

	mu sync.Mutex
	b  *apilb.Balancer
}

func (l *balancer) run(ctx context.Context, ready func()) error {
	data, err := os.ReadFile(l.kubeconfig)
	if err != nil {
		return err
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(data)
	if err != nil {
		return fmt.Errorf("%s: %w", l.kubeconfig, err)
	}
	u, err := url.Parse(cfg.Host)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%s: server %q is not a URL", l.kubeconfig, cfg.Host)
	}
	first := u.Host
	if u.Port() == "" {
		first = net.JoinHostPort(u.Hostname(), "443")
	}
	caPEM := cfg.CAData
	if len(caPEM) == 0 && cfg.CAFile != "" {
		if caPEM, err = os.ReadFile(cfg.CAFile); err != nil {
			return fmt.Errorf("%s: certificate-authority: %w", l.kubeconfig, err)
		}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("%s: no CA certificate to check the apiservers' /readyz with", l.kubeconfig)
	}
	b := apilb.New(apilb.Options{Listen: l.listen, Backends: []string{first}, CA: pool, Logf: l.logf})
	l.mu.Lock()
	l.b = b
	l.mu.Unlock()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return b.Run(gctx) })
	g.Go(func() error {
		select {
		case <-b.Ready():
		case <-gctx.Done():
			return nil
		}
		ready()
		// The watch goes through the balancer, so it survives the loss of any
		// one apiserver; the certificate is still checked for the
		// kubeconfig's server name.
		rc := rest.CopyConfig(cfg)
		rc.Host = "https://" + b.Addr().String()
		rc.TLSClientConfig.ServerName = u.Hostname()
		cli, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return fmt.Errorf("%s: %w", l.kubeconfig, err)
		}
		l.logf("[apilb] listening on %s, pool from the kubernetes EndpointSlices (as %s)", b.Addr(), "system:kube-proxy")
		return apilb.WatchAPIServers(gctx, cli, b)
	})
	return g.Wait()
}

func (l *balancer) status() *noderuntime.APILBStatus {
	l.mu.Lock()
	b := l.b
	l.mu.Unlock()
	if b == nil {
		return nil
	}
	st := &noderuntime.APILBStatus{Listen: l.listen, Backends: []noderuntime.BackendStatus{}}
	for _, be := range b.Status() {
		st.Backends = append(st.Backends, noderuntime.BackendStatus{Address: be.Address, Healthy: be.Healthy, Checked: be.Checked, Conns: be.Conns, Error: be.Error})
	}
	return st
}

// statusFeature serves /status on loopback.
func statusFeature(addr string, status func() noderuntime.Status) noderuntime.Feature {
	return noderuntime.Feature{
		Name: "status",
		Run: func(ctx context.Context, ready func()) error {
			ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
			if err != nil {
				return fmt.Errorf("status server: %w", err)
			}
			mux := http.NewServeMux()
			mux.HandleFunc("/status", func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_ = json.NewEncoder(w).Encode(status())
			})
			srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
			ready()
			go func() {
				<-ctx.Done()
				sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				_ = srv.Shutdown(sctx)
			}()
			err = srv.Serve(ln)
			if ctx.Err() != nil {
				return nil
			}
			return err
		},
	}
}
