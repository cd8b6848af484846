// Package cleanup is what `kubeforge reset` does to a node besides leaving etcd
// and the overlay (those belong to their components): an ordered list of named
// steps, each undoing one thing init or join did, k0s's pkg/cleanup shape.
//
// Two lists, for reset's two phases:
//
//   - UnitSteps stop what runs: first the kubelet (so nothing recreates pods),
//     the other Kubernetes and kubeforge units, then every container and pod
//     sandbox in containerd's k8s.io namespace through the containerd client,
//     then containerd itself, and finally disable every kubeforge unit;
//   - CleanupSteps remove what is left: the Node object (while the API still
//     answers and the kubelet can no longer re-register it), kubelet and
//     runtime mounts, kube-proxy's and the CNI plugins' iptables chains (only
//     those; rules that were there before kubeforge stay), files and
//     directories, installed binaries and the unit files with their drop-ins.
//
// Every step skips what is already gone and says what it did; a failing step
// does not stop the others (a half-reset host is worse than one with a
// reported leftover), and the errors are returned together.
package cleanup

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/install"
)

// Env is what the steps act on.
type Env struct {
	Host host.Host
	// Cluster may be nil: reset works from what is on the host.
	Cluster       *config.Cluster
	NodeName      string
	CertDir       string
	KubeconfigDir string
	BinDir        string
	DryRun        bool
	Logf          func(format string, a ...any)
}

func (e *Env) defaults() {
	if e.CertDir == "" {
		e.CertDir = certs.DefaultCertDir
	}
	if e.KubeconfigDir == "" {
		e.KubeconfigDir = certs.DefaultKubeconfigDir
	}
	if e.BinDir == "" {
		e.BinDir = install.DefaultBinDir
	}
	if e.Logf == nil {
		e.Logf = func(string, ...any) {}
	}
}

// Step is one named undo.
type Step struct {
	Name string
	// Run returns one line per thing it changed; none means nothing was there.
	Run func(ctx context.Context, e *Env) ([]string, error)
}

// Result is what a list of steps did.
type Result struct {
	Done []string
}

// Changed reports whether any step changed anything.
func (r Result) Changed() bool { return len(r.Done) > 0 }

// Run runs every step in order, logging what each did, and returns all errors
// joined, each naming its step.
func Run(ctx context.Context, e *Env, steps []Step) (Result, error) {
	e.defaults()
	var res Result
	var errs []error
	for _, s := range steps {
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
		done, err := s.Run(ctx, e)
		for _, d := range done {
			e.Logf("%s: %s", s.Name, d)
			res.Done = append(res.Done, s.Name+": "+d)
		}
		if err != nil {
			e.Logf("%s: %v", s.Name, err)
			errs = append(errs, fmt.Errorf("%s: %w", s.Name, err))
		}
	}
	return res, errors.Join(errs...)
}

// summary joins a step's lines for a one-line detail.
func summary(done []string) string { return strings.Join(done, "; ") }
