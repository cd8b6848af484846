package apply

import (
	"context"
	"fmt"
	"path"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
)

// ResetAll tears the cluster of o.Cluster down: the first control-plane host
// removes the other etcd members one at a time (only it holds etcd's
// administrator credential, and a member host's reset refuses while it is
// still a member), then every other host is reset in parallel, the first
// control-plane host last; apply's copy of the configuration goes with each.
// Every host is reached first: an unreachable one stops it before any host is
// reset, naming it. A host without kubeforge has nothing of ours and is
// skipped.
func ResetAll(ctx context.Context, o Options) ([]HostResult, error) {
	return execute(ctx, o, "reset", (*run).resetAll)
}

func (r *run) resetAll(ctx context.Context) error {
	if err := r.connect(ctx); err != nil {
		return err
	}
	first, err := initHost(r.o.Cluster)
	if err != nil {
		return err
	}
	r.first = first.Name
	fh := r.hosts[first.Name]
	for _, m := range r.o.Cluster.HostsWithRole(config.RoleEtcd) {
		if m.Name == first.Name || r.forceEtcd {
			continue
		}
		r.printf("%s: kubeforge etcd remove-member %s", first.Name, m.Name)
		if _, err := r.kubeforge(ctx, first.Name, fh, nil, "etcd", "remove-member", m.Name); err != nil {
			// The first host's etcd is gone already (an earlier reset --all
			// stopped half-way): nobody can remove members any more, and the
			// cluster is going as a whole, so each member drops its own.
			r.printf("WARNING: %s could not remove etcd member %s (%v): each member host removes its local member without leaving", first.Name, m.Name, err)
			r.forceEtcd = true
		}
	}
	others := *r.o.Cluster
	others.Spec.Hosts = nil
	for _, h := range r.o.Cluster.Spec.Hosts {
		if h.Name != first.Name {
			others.Spec.Hosts = append(others.Spec.Hosts, h)
		}
	}
	if err := r.eachHostOf(ctx, others.Spec.Hosts, "reset", r.reset); err != nil {
		return err
	}
	return r.eachHostOf(ctx, []config.Host{first}, "reset", r.reset)
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
	var cfg []string
	if _, err := h.Stat(ctx, RemoteConfig); err == nil {
		cfg = []string{"--config", RemoteConfig}
	}
	// The first control-plane host goes last and is then etcd's last voting
	// member, which its reset keeps unless told: the cluster goes as a whole.
	if n.HasRole(config.RoleEtcd) && (r.forceEtcd || n.Name == r.first) {
		args := append([]string{"reset", "phase", "etcd", "--force", "--force-etcd-removal", "--node-name", n.Name}, cfg...)
		if _, err := r.kubeforge(ctx, n.Name, h, nil, args...); err != nil {
			return err
		}
	}
	out, err := r.kubeforge(ctx, n.Name, h, nil, append([]string{"reset", "--force", "--node-name", n.Name}, cfg...)...)
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
