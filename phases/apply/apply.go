// Package apply makes a whole cluster from one machine: it reaches every host of
// a cluster configuration over SSH, stages kubeforge, the configuration and the
// bundle on each, runs preflight everywhere in parallel, `kubeforge init` on the
// first control-plane host and `kubeforge join` on the others, and reports one
// line per host. It drives the kubeforge binary on each host (as k0sctl drives
// k0s): the host runs its own phases, with their own idempotence, so a second
// apply finds everything in place and an interrupted one converges when run
// again.
//
// Secrets (the join token, the certificate keys) travel from init's output to
// the joining hosts over stdin only; they are never in an argv, an environment
// of a child, or a log written here.
package apply

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
)

// Paths on every host.
const (
	// RemoteBinary is where apply installs kubeforge.
	RemoteBinary = "/usr/local/bin/kubeforge"
	// RemoteConfig is apply's copy of the cluster configuration (0600: it names
	// every host and its SSH key path). init keeps its own copy elsewhere.
	RemoteConfig = "/var/lib/kubeforge/apply/cluster.yaml"
	// RemoteBundle is where the phases look for the bundle by default.
	RemoteBundle = "/opt/kubeforge/bundle"
)

// Options say what to apply and how to reach the hosts.
type Options struct {
	Cluster *config.Cluster
	// ConfigYAML is the configuration file as the user wrote it; it is what each
	// host gets.
	ConfigYAML []byte
	// Binary is the local kubeforge executable installed on every host.
	Binary string
	// BundleDir is a local bundle to copy to hosts that miss files of it; ""
	// means every host must have the bundle at RemoteBundle already.
	BundleDir string
	// Fix lets preflight apply its fixes.
	Fix bool
	// RunDir receives one log per host ("" = no logs).
	RunDir string
	// Out gets the progress lines and the summary.
	Out io.Writer
	// Dial opens a host. Every host is dialled before anything changes.
	Dial func(ctx context.Context, h config.Host) (host.Host, error)
}

// Outcome of one host.
type Outcome string

const (
	Done      Outcome = "done"
	Unchanged Outcome = "unchanged"
	Failed    Outcome = "failed"
	Skipped   Outcome = "skipped"
)

// HostResult is one row of the summary.
type HostResult struct {
	Name    string
	Roles   []config.Role
	Action  string // init or join ...
	Outcome Outcome
	Phase   string // the step that failed
	Elapsed time.Duration
	Err     error
}

// run is one apply.
type run struct {
	o     Options
	start time.Time
	hosts map[string]host.Host
	logs  *logs

	mu      sync.Mutex
	results map[string]*HostResult
	// forceEtcd: reset --all found no host able to remove etcd members.
	forceEtcd bool
	// first is the host init runs on.
	first string
	// strayNodes are Nodes of the cluster that are not hosts of the file.
	strayNodes []string
}

// Apply makes the cluster of o.Cluster. It returns the per-host results (also
// printed) and an error naming the first host that failed and where.
func Apply(ctx context.Context, o Options) ([]HostResult, error) {
	return execute(ctx, o, "", (*run).steps)
}

// execute is what Apply and ResetAll share: the per-host results, the run
// directory's logs, the hosts closed at the end and the summary table.
func execute(ctx context.Context, o Options, action string, body func(*run, context.Context) error) ([]HostResult, error) {
	if o.Cluster == nil || len(o.Cluster.Spec.Hosts) == 0 {
		return nil, errors.New("apply: the configuration has no hosts")
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	r := &run{o: o, start: time.Now(), hosts: map[string]host.Host{}, results: map[string]*HostResult{}}
	for _, h := range o.Cluster.Spec.Hosts {
		r.results[h.Name] = &HostResult{Name: h.Name, Roles: h.Roles, Outcome: Skipped, Action: action}
	}
	var err error
	if r.logs, err = openLogs(o.RunDir); err != nil {
		return nil, err
	}
	defer r.logs.Close()
	defer r.closeHosts()

	err = body(r, ctx)
	res := r.summary()
	printSummary(o.Out, res, time.Since(r.start))
	if o.RunDir != "" {
		fmt.Fprintf(o.Out, "[apply] logs: %s\n", o.RunDir)
	}
	return res, err
}

func (r *run) steps(ctx context.Context) error {
	if err := r.connect(ctx); err != nil {
		return err
	}
	if err := r.eachHost(ctx, "stage", r.stage); err != nil {
		return err
	}
	if err := r.eachHost(ctx, "preflight", r.preflight); err != nil {
		return err
	}
	first, err := initHost(r.o.Cluster)
	if err != nil {
		return err
	}
	join, err := r.init(ctx, first)
	if err != nil {
		return err
	}
	if err := r.joins(ctx, first, join); err != nil {
		return err
	}
	r.strays(ctx, first)
	return nil
}

// strays reports the Nodes of the cluster no host of the file stands for: a
// host removed from the file is said, never reset behind the operator's back.
func (r *run) strays(ctx context.Context, first config.Host) {
	cmd := host.Cmd{Argv: []string{"kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf", "get", "nodes", "-o", "jsonpath={.items[*].metadata.name}"}, ReadOnly: true, Timeout: time.Minute}
	res, err := r.hosts[first.Name].Run(ctx, cmd)
	if err != nil || !res.OK() {
		r.printf("WARNING: could not list the cluster's Nodes on %s to find hosts missing from the file: %v %s", first.Name, err, strings.TrimSpace(string(res.Stderr)))
		return
	}
	for _, n := range strings.Fields(string(res.Stdout)) {
		if _, ok := r.o.Cluster.Host(n); !ok {
			r.mu.Lock()
			r.strayNodes = append(r.strayNodes, n)
			r.mu.Unlock()
			r.printf("%s is a Node of the cluster but not a host of the file: left as it is (`kubeforge node remove %s` on %s removes it)", n, n, first.Name)
		}
	}
}

// initHost is the host init runs on: the first control-plane host.
func initHost(c *config.Cluster) (config.Host, error) {
	cps := c.HostsWithRole(config.RoleControlPlane)
	if len(cps) == 0 {
		return config.Host{}, errors.New("apply: no host has the control-plane role")
	}
	return cps[0], nil
}

func (r *run) printf(format string, a ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.o.Out, "[apply] "+format+" (+%s)\n", append(a, time.Since(r.start).Round(100*time.Millisecond))...)
}

func (r *run) result(name string) *HostResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.results[name]
}

// fail records that name failed in phase and returns an error naming both.
func (r *run) fail(name, phase string, err error) error {
	res := r.result(name)
	r.mu.Lock()
	res.Outcome, res.Phase, res.Err = Failed, phase, err
	r.mu.Unlock()
	return fmt.Errorf("%s: %s: %w", name, phase, err)
}

// connect dials every host and runs a command on it: a wrong key, a changed
// host key or an unreachable host stops apply before anything changed.
func (r *run) connect(ctx context.Context) error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for _, h := range r.o.Cluster.Spec.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hh, err := r.o.Dial(ctx, h)
			if err == nil {
				var res host.Result
				cmd := host.Cmd{Argv: []string{"uname", "-n"}, Timeout: 30 * time.Second, ReadOnly: true}
				res, err = hh.Run(ctx, cmd)
				if err == nil && !res.OK() {
					err = res.Err(h.Name, cmd)
				}
				mu.Lock()
				r.hosts[h.Name] = hh
				mu.Unlock()
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, r.fail(h.Name, "connect", err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
		return fmt.Errorf("no host was changed: %w", errors.Join(errs...))
	}
	r.printf("connected to %d hosts", len(r.hosts))
	return nil
}

func (r *run) closeHosts() {
	for _, h := range r.hosts {
		h.Close()
	}
}

// eachHost runs step on every host in parallel and waits for all: a failure on
// one host does not cut another's step short (its log stays whole), but stops
// apply before the next step.
func (r *run) eachHost(ctx context.Context, name string, step func(context.Context, config.Host, host.Host) error) error {
	return r.eachHostOf(ctx, r.o.Cluster.Spec.Hosts, name, step)
}

func (r *run) eachHostOf(ctx context.Context, hosts []config.Host, name string, step func(context.Context, config.Host, host.Host) error) error {
	var g errgroup.Group
	var mu sync.Mutex
	var errs []error
	for _, h := range hosts {
		g.Go(func() error {
			t := time.Now()
			if err := step(ctx, h, r.hosts[h.Name]); err != nil {
				mu.Lock()
				errs = append(errs, r.fail(h.Name, name, err))
				mu.Unlock()
				return nil
			}
			r.logs.printf(h.Name, "[apply] %s done in %s", name, time.Since(t).Round(time.Millisecond))
			return nil
		})
	}
	_ = g.Wait()
	if len(errs) > 0 {
		sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
		return errors.Join(errs...)
	}
	r.printf("%s: %d hosts", name, len(hosts))
	return nil
}

// kubeforge runs the installed kubeforge on h with args, logging its output
// (secrets redacted). The output comes back for parsing.
func (r *run) kubeforge(ctx context.Context, name string, h host.Host, stdin []byte, args ...string) (string, error) {
	argv := append([]string{RemoteBinary}, args...)
	cmd := host.Cmd{Argv: argv}
	if stdin != nil {
		// Secrets come on stdin; a shell reads them into the environment of
		// kubeforge alone (never its argv).
		cmd = host.Cmd{Argv: []string{"sh", "-c", secretEnvScript + " && exec " + host.QuoteArgv(argv)}, Stdin: stdin, Secret: true}
	}
	r.logs.printf(name, "$ %s", host.QuoteArgv(argv))
	res, err := h.Run(ctx, cmd)
	out := string(res.Stdout) + string(res.Stderr)
	r.logs.write(name, out)
	if err != nil {
		return out, err
	}
	if !res.OK() {
		return out, fmt.Errorf("kubeforge %s exited with status %d: %s", args[0], res.ExitCode, lastError(out))
	}
	return out, nil
}

// secretEnvScript reads the token and the certificate key, one per line, from
// stdin into kubeforge's environment variables.
const secretEnvScript = `read -r KUBEFORGE_TOKEN && read -r KUBEFORGE_CERTIFICATE_KEY && export KUBEFORGE_TOKEN KUBEFORGE_CERTIFICATE_KEY && if [ -z "$KUBEFORGE_CERTIFICATE_KEY" ]; then unset KUBEFORGE_CERTIFICATE_KEY; fi`

// lastError is the line of out that says what failed, for the summary.
func lastError(out string) string {
	lines := strings.Split(strings.TrimSpace(redact(out)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "Error:") {
			return strings.TrimSpace(strings.TrimPrefix(lines[i], "Error:"))
		}
	}
	if len(lines) > 0 {
		return lines[len(lines)-1]
	}
	return "no output"
}

// outcome reads a kubeforge run's phase lines: done when any phase did
// something, unchanged when all found their work done.
func outcome(out string) Outcome {
	changed := false
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if !strings.HasPrefix(l, "[") {
			continue
		}
		if _, rest, ok := strings.Cut(l, "] "); ok && (strings.HasPrefix(rest, "done") || strings.HasPrefix(rest, "fixed")) {
			changed = true
		}
	}
	if changed {
		return Done
	}
	return Unchanged
}
