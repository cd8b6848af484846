package renewal

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"path"
	"strings"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/component"
	"github.com/kubeforge/kubeforge/components/controlplane"
	"github.com/kubeforge/kubeforge/components/install"
)

// Options say where the files are and how long to wait.
type Options struct {
	Host host.Host
	// Cluster and Node are the configuration this host was set up with; needed
	// when etcd or a control-plane unit is restarted (Plan.NeedConfig).
	Cluster *config.Cluster
	Node    *config.Host
	// CertDir, KubeconfigDir and BinDir default to kubeadm's /etc/kubernetes/pki,
	// /etc/kubernetes and /usr/local/bin, as for init.
	CertDir, KubeconfigDir, BinDir string
	// BackupDir is where the renewal copied the replaced files; a failure names
	// it so the operator can roll back.
	BackupDir string
	// Timeout bounds the wait for each unit (4 minutes when zero); Interval is
	// the poll period (500ms).
	Timeout, Interval time.Duration
	// ReloadTimeout bounds the wait for a unit that reloads the renewed files
	// by itself to serve them (90s when zero; etcd reads them on the next
	// handshake, kube-apiserver as soon as inotify reports the write); after
	// it the unit is restarted after all.
	ReloadTimeout time.Duration
	// Dial opens the connections of the HTTP health probes of endpoints the
	// daemons serve on the host's loopback (controller-manager, scheduler,
	// kubelet, kube-proxy, overlay agent). Nil means a Host that has a
	// DialContext method (a tunnel), or else a plain dial from this process,
	// which is right when kubeforge runs on the host itself.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	Logf func(format string, a ...any)

	// ownDial: Dial was given or comes from the host, so the control plane's
	// probes must use it too instead of controlplane.Wait's own transport.
	ownDial bool
}

func (o *Options) defaults() {
	if o.CertDir == "" {
		o.CertDir = certs.DefaultCertDir
	}
	if o.KubeconfigDir == "" {
		o.KubeconfigDir = certs.DefaultKubeconfigDir
	}
	if o.BinDir == "" {
		o.BinDir = install.DefaultBinDir
	}
	if o.Timeout == 0 {
		o.Timeout = 4 * time.Minute
	}
	if o.Interval == 0 {
		o.Interval = 500 * time.Millisecond
	}
	if o.ReloadTimeout == 0 {
		o.ReloadTimeout = 90 * time.Second
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	o.ownDial = o.Dial != nil
	if o.Dial == nil {
		if d, ok := o.Host.(interface {
			DialContext(ctx context.Context, network, addr string) (net.Conn, error)
		}); ok {
			o.Dial, o.ownDial = d.DialContext, true
		} else {
			var nd net.Dialer
			o.Dial = nd.DialContext
		}
	}
}

// unitOps is how one unit is restarted and found healthy.
type unitOps struct {
	// trigger starts the restart. It returns how ("re-ensured", "restarted")
	// and, when the restart job runs on, a channel with its outcome.
	trigger func(ctx context.Context) (how string, job <-chan error, err error)
	// probe asks for the unit's health once; it runs only once the unit has a
	// new main process.
	probe func(ctx context.Context) error
	// wait, when set, replaces probing: it waits for health itself (the control
	// plane's controlplane.Wait) once the new process is up.
	wait func(ctx context.Context) error
	// serves are the renewable certificates the unit presents to whoever
	// connects, by name: how a unit that reloads them is seen to have done so.
	serves map[string]servedCert
}

// Restarter checks or restarts the units of a plan. Prepare builds it before
// any file is renewed, so a configuration that cannot rebuild a unit fails
// while nothing has changed yet.
type Restarter struct {
	o    Options
	plan Plan
	ops  map[string]unitOps
}

// Prepare checks that every unit of the plan can be restarted (a unit that
// reloads by itself too: that is the fallback) and health-checked with the
// options given, reading what it needs from the host now (the configuration
// files of the daemons, which a renewal does not touch).
func Prepare(ctx context.Context, o Options, p Plan) (*Restarter, error) {
	if o.Host == nil {
		return nil, errors.New("renewal: no host")
	}
	o.defaults()
	if need := p.NeedConfig(); len(need) > 0 && (o.Cluster == nil || o.Node == nil) {
		return nil, fmt.Errorf("%s: %s read the renewed files and run here; checking or restarting them needs the cluster configuration", o.Host.Name(), strings.Join(need, ", "))
	}
	r := &Restarter{o: o, plan: p, ops: map[string]unitOps{}}
	for _, u := range p.Units() {
		var (
			ops unitOps
			err error
		)
		switch {
		case u == UnitEtcd:
			ops, err = r.etcdOps()
		case controlPlaneName(u) != "":
			ops, err = r.controlPlaneOps(ctx, controlPlaneName(u))
		case u == UnitKubelet:
			ops, err = r.kubeletOps(ctx)
		case u == UnitKubeProxy:
			ops, err = r.kubeProxyOps(ctx)
		case u == UnitOverlay:
			ops, err = r.overlayOps(ctx)
		default:
			err = fmt.Errorf("no health check known for %s", u)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: preparing the restart of %s: %w", o.Host.Name(), u, err)
		}
		r.ops[u] = ops
	}
	return r, nil
}

// Restarted is one unit that was restarted and is healthy again.
type Restarted struct {
	Unit   string        `json:"unit"`
	How    string        `json:"how"`
	OldPID int           `json:"oldPID"`
	NewPID int           `json:"newPID"`
	Took   time.Duration `json:"took"`
}

// Result is what Run did.
type Result struct {
	Restarted []Restarted `json:"restarted"`
	// Reloaded are the units that loaded the renewed files by themselves.
	Reloaded []Reloaded    `json:"reloaded,omitempty"`
	Total    time.Duration `json:"total"`
}

// Error is a unit that did not come back healthy; the units after it were not
// checked or restarted.
type Error struct {
	Host, Unit string
	Err        error
	// Done are the units restarted or reloaded (and healthy) before; Pending
	// those not checked or restarted because of this failure.
	Done, Pending []string
	BackupDir     string
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s on %s did not come back healthy after the certificate renewal: %v", e.Unit, e.Host, e.Err)
	if len(e.Done) > 0 {
		fmt.Fprintf(&b, "\non the new certificates and healthy before it: %s", strings.Join(e.Done, ", "))
	}
	if len(e.Pending) > 0 {
		fmt.Fprintf(&b, "\nnot checked or restarted (the sequence stopped here): %s", strings.Join(e.Pending, ", "))
	}
	if e.BackupDir != "" {
		fmt.Fprintf(&b, "\nthe replaced files are in %s (pki/ and kubeconfig/): to roll back, copy them over the renewed ones and restart %s", e.BackupDir, e.Unit)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Run goes through the units one at a time, in order, each only once the one
// before it is healthy: a unit that reloads the renewed files by itself is
// checked (Restarter.reload), the others restarted. The first unit that does
// not get healthy stops the sequence with an *Error.
func (r *Restarter) Run(ctx context.Context) (Result, error) {
	start := time.Now()
	var (
		res  Result
		done []string
	)
	units := r.plan.Units()
	for i, u := range units {
		var err error
		if s := r.plan.step(u); s.Reload {
			var (
				rl *Reloaded
				rs *Restarted
			)
			if rl, rs, err = r.reload(ctx, s); rl != nil {
				res.Reloaded = append(res.Reloaded, *rl)
			} else if rs != nil {
				res.Restarted = append(res.Restarted, *rs)
			}
		} else {
			var rs Restarted
			if rs, err = r.restart(ctx, u); err == nil {
				res.Restarted = append(res.Restarted, rs)
			}
		}
		if err != nil {
			res.Total = time.Since(start)
			return res, &Error{Host: r.o.Host.Name(), Unit: u, Err: err, Done: done, Pending: units[i+1:], BackupDir: r.o.BackupDir}
		}
		done = append(done, u)
	}
	res.Total = time.Since(start)
	return res, nil
}

func (r *Restarter) restart(ctx context.Context, u string) (Restarted, error) {
	h, ops := r.o.Host, r.ops[u]
	t0 := time.Now()
	before, err := h.Units().Status(ctx, u)
	if err != nil {
		return Restarted{}, err
	}
	r.o.Logf("restarting %s (pid %d)", u, before.MainPID)
	how, job, err := ops.trigger(ctx)
	if err != nil {
		return Restarted{}, err
	}
	probe := ops.probe
	if ops.wait != nil {
		probe = nil
	}
	newPID, err := r.waitUp(ctx, u, before.MainPID, job, probe)
	if err != nil {
		return Restarted{}, err
	}
	if ops.wait != nil {
		if err := ops.wait(ctx); err != nil {
			return Restarted{}, err
		}
		if st, err := h.Units().Status(ctx, u); err == nil && st.MainPID != 0 {
			newPID = st.MainPID
		}
	}
	rs := Restarted{Unit: u, How: how, OldPID: before.MainPID, NewPID: newPID, Took: time.Since(t0)}
	r.o.Logf("%s %s and healthy after %s (pid %d -> %d)", u, how, rs.Took.Round(10*time.Millisecond), rs.OldPID, rs.NewPID)
	return rs, nil
}

// crashLimit is how many entries into systemd's auto-restart state end a wait
// early: a daemon that keeps exiting will not get healthy by waiting, and its
// journal says why.
const crashLimit = 3

// waitUp waits until the unit runs a new main process (not oldPID) and, when
// probe is set, that probe passes. It fails early when the restart job fails,
// the unit stops, or it keeps crashing, with the unit's journal tail.
func (r *Restarter) waitUp(ctx context.Context, u string, oldPID int, job <-chan error, probe func(context.Context) error) (int, error) {
	h := r.o.Host
	var (
		lastErr  error
		lastSub  string
		crashes  int
		newPID   int
		jobDone  bool
		progress = time.Now()
	)
	err := component.Poll(ctx, r.o.Interval, r.o.Timeout, func(ctx context.Context) (bool, error) {
		if job != nil {
			select {
			case err := <-job:
				if err != nil {
					return false, fmt.Errorf("restart job: %w%s", err, component.JournalTail(ctx, h, u, 25))
				}
				job, jobDone = nil, true
			default:
			}
		}
		st, err := h.Units().Status(ctx, u)
		if err == nil && newPID == 0 {
			// Daemons with a graceful shutdown take a while to go; say so
			// rather than look stuck.
			lastErr = fmt.Errorf("no new process yet (%s/%s, main pid %d)", st.ActiveState, st.SubState, st.MainPID)
		}
		if err == nil {
			if st.SubState == "auto-restart" && lastSub != "auto-restart" {
				crashes++
			}
			lastSub = st.SubState
			switch {
			case crashes >= crashLimit:
				return false, fmt.Errorf("it exited %d times since the restart (last health check: %v)%s", crashes, lastErr, component.JournalTail(ctx, h, u, 25))
			// Inactive is a passing state during a restart; only once the new
			// process existed, or the job ended, does it mean the unit stopped.
			case st.ActiveState == "failed" || (newPID != 0 || jobDone) && st.ActiveState == "inactive" && st.SubState != "auto-restart":
				return false, fmt.Errorf("it is %s (%s) after the restart%s", st.ActiveState, st.SubState, component.JournalTail(ctx, h, u, 25))
			case st.MainPID != 0 && st.MainPID != oldPID && (component.Running(st)):
				newPID = st.MainPID
			}
		}
		if newPID != 0 {
			if probe == nil {
				return true, nil
			}
			if lastErr = probe(ctx); lastErr == nil {
				return true, nil
			}
		} else if lastErr == nil {
			lastErr = errors.New("no new process yet (systemd does not answer)")
		}
		if time.Since(progress) >= 5*time.Second {
			progress = time.Now()
			r.o.Logf("still waiting for %s: %v", u, lastErr)
		}
		return false, nil
	})
	if err := component.PollError(ctx, err, func() error {
		return fmt.Errorf("not healthy within %s: %v%s", r.o.Timeout, lastErr, component.JournalTail(ctx, h, u, 25))
	}); err != nil {
		return 0, err
	}
	return newPID, nil
}

// restartAsync asks systemd to restart u and returns the job's outcome on a
// channel: for a Type=notify unit the job only ends once the daemon reports
// ready, and waitUp watches the unit meanwhile.
func restartAsync(ctx context.Context, h host.Host, u string) <-chan error {
	done := make(chan error, 1)
	go func() { done <- h.Units().Restart(ctx, u) }()
	return done
}

// plainRestart is the trigger of units kubeforge restarts directly.
func plainRestart(h host.Host, u string) func(context.Context) (string, <-chan error, error) {
	return func(ctx context.Context) (string, <-chan error, error) {
		return "restarted", restartAsync(ctx, h, u), nil
	}
}

// controlPlaneOps re-ensures the component: its unit is rewritten with the
// digest of the renewed inputs, which restarts it, exactly as a rerun of init
// would; a unit that is already current (an earlier run wrote it but was
// interrupted before the restart) is restarted directly.
func (r *Restarter) controlPlaneOps(ctx context.Context, name string) (unitOps, error) {
	o, h := r.o, r.o.Host
	cpo := controlplane.Options{Cluster: o.Cluster, Node: *o.Node, CertDir: o.CertDir, KubeconfigDir: o.KubeconfigDir, BinDir: o.BinDir}
	var enc []byte
	if name == controlplane.APIServer {
		if _, own := o.Cluster.Spec.Components.APIServer.ExtraArgs["encryption-provider-config"]; !own {
			// Never a new key here: the running apiserver encrypts Secrets with
			// the one in this file, and a new one would make them unreadable.
			p := cpo.EncryptionConfigPath()
			data, err := h.ReadFile(ctx, p)
			if err != nil {
				return unitOps{}, fmt.Errorf("the apiserver's encryption configuration %s: %w", p, err)
			}
			if err := controlplane.CheckEncryptionConfig(data); err != nil {
				return unitOps{}, fmt.Errorf("%s: %w", p, err)
			}
			enc = data
		}
	}
	c, err := cpo.Component(name, enc)
	if err != nil {
		return unitOps{}, err
	}
	caPath := path.Join(o.CertDir, "ca.crt")
	ca, err := h.ReadFile(ctx, caPath)
	if err != nil {
		return unitOps{}, fmt.Errorf("the cluster CA %s: %w", caPath, err)
	}
	var serves map[string]servedCert
	if name == controlplane.APIServer {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(ca) {
			return unitOps{}, fmt.Errorf("the cluster CA %s: no PEM certificate in it", caPath)
		}
		// The secure port, where the health check asks too: /readyz answers
		// anyone, so the handshake needs no client certificate.
		serves = map[string]servedCert{certs.CertAPIServer: {
			name: certs.CertAPIServer, file: c.Args["tls-cert-file"], url: c.HealthURL,
			tlsConfig: func(context.Context) (*tls.Config, error) {
				return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
			},
		}}
	}
	return unitOps{
		serves: serves,
		trigger: func(ctx context.Context) (string, <-chan error, error) {
			res, err := controlplane.Ensure(ctx, h, c, o.Logf)
			if err != nil {
				return "", nil, err
			}
			if res.Action == "" {
				return "restarted (its unit was current already)", restartAsync(ctx, h, c.UnitName()), nil
			}
			return "re-ensured (unit " + res.Action + " with the new input digest)", nil, nil
		},
		wait: func(ctx context.Context) error {
			wo := controlplane.WaitOptions{Host: h, Components: []controlplane.Component{c}, CACert: ca, Timeout: o.Timeout, Logf: o.Logf}
			if o.ownDial {
				tr, err := probeTransport(o.Dial, c.HealthCA, ca)
				if err != nil {
					return err
				}
				wo.Transport = tr
			}
			_, err := controlplane.Wait(ctx, wo)
			return err
		},
	}, nil
}
