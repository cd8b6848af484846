package apply

import (
	"context"
	"fmt"
	"io"
	"path"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
)

// ResetAll runs `kubeforge reset` on every host of o.Cluster in parallel, then
// removes what apply wrote there (its copy of the configuration). Every host is
// reached first: an unreachable one stops it before any host is reset, naming
// it. A host without kubeforge has nothing of ours and is skipped.
func ResetAll(ctx context.Context, o Options) ([]HostResult, error) {
	if o.Out == nil {
		o.Out = io.Discard
	}
	r := &run{o: o, start: time.Now(), hosts: map[string]host.Host{}, results: map[string]*HostResult{}}
	for _, h := range o.Cluster.Spec.Hosts {
		r.results[h.Name] = &HostResult{Name: h.Name, Roles: h.Roles, Outcome: Skipped, Action: "reset"}
	}
	var err error
	if r.logs, err = openLogs(o.RunDir); err != nil {
		return nil, err
	}
	defer r.logs.Close()
	defer r.closeHosts()
	err = r.connect(ctx)
	if err == nil {
		err = r.eachHost(ctx, "reset", r.reset)
	}
	res := r.summary()
	printSummary(o.Out, res, time.Since(r.start))
	return res, err
}

func (r *run) reset(ctx context.Context, n config.Host, h host.Host) error {
	res := r.result(n.Name)
	if _, err := h.Stat(ctx, RemoteBinary); host.IsNotExist(err) {
		r.logs.printf(n.Name, "[apply] no %s: nothing of kubeforge's to reset", RemoteBinary)
		return nil
	} else if err != nil {
		return err
	}
	t := time.Now()
	args := []string{"reset", "--force", "--node-name", n.Name}
	if _, err := h.Stat(ctx, RemoteConfig); err == nil {
		args = append(args, "--config", RemoteConfig)
	}
	out, err := r.kubeforge(ctx, n.Name, h, nil, args...)
	res.Elapsed = time.Since(t)
	if err != nil {
		return err
	}
	if err := h.Remove(ctx, path.Dir(RemoteConfig)); err != nil {
		return fmt.Errorf("removing %s: %w", path.Dir(RemoteConfig), err)
	}
	res.Outcome = outcome(out)
	r.printf("%s: reset %s in %s", n.Name, res.Outcome, res.Elapsed.Round(100*time.Millisecond))
	return nil
}
