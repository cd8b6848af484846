package controlplane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/components/component"
)

// WaitOptions configure Wait.
type WaitOptions struct {
	Host       host.Host
	Components []Component
	// CACert (PEM) verifies the apiserver's serving certificate.
	CACert []byte
	// Timeout bounds the whole wait (4 minutes when zero); Interval is the poll
	// period (500ms) and Progress how often a still-waiting line is logged (5s).
	Timeout, Interval, Progress time.Duration
	// CrashLimit is how many restarts of a unit (systemd's auto-restart) end the
	// wait early; 3 when zero. A daemon that keeps exiting will not get healthy by
	// waiting longer, and its journal says why.
	CrashLimit int
	// DownGrace is how long a unit may be inactive before the wait gives up
	// on it (15s when zero; longer than the units' RestartSec of 5s).
	DownGrace time.Duration
	Logf      func(format string, a ...any)
	// Transport replaces the HTTP transport (tests).
	Transport http.RoundTripper
}

// WaitResult holds how long each component took to get healthy, from the start
// of Wait.
type WaitResult struct {
	Ready map[string]time.Duration
	Total time.Duration
}

type probe struct {
	c       Component
	client  *http.Client
	ready   bool
	lastErr error
	crashes int
	lastSub string
	// downSince is when the unit was first seen inactive or failed in a row.
	downSince time.Time
}

// Wait polls every component's health endpoint (the apiserver's /readyz,
// the others' /healthz) until all answer 200 "ok". It logs progress while it
// waits; on timeout, or when a unit keeps crashing, it fails with the last probe
// error and the last journal lines of each component that is not healthy.
func Wait(ctx context.Context, o WaitOptions) (WaitResult, error) {
	if o.Timeout == 0 {
		o.Timeout = 4 * time.Minute
	}
	if o.Interval == 0 {
		o.Interval = 500 * time.Millisecond
	}
	if o.Progress == 0 {
		o.Progress = 5 * time.Second
	}
	if o.CrashLimit == 0 {
		o.CrashLimit = 3
	}
	if o.DownGrace == 0 {
		o.DownGrace = 15 * time.Second
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	probes, err := newProbes(o)
	if err != nil {
		return WaitResult{}, err
	}

	start := time.Now()
	res := WaitResult{Ready: map[string]time.Duration{}}
	lastProgress := start
	var crashed error
	err = wait.PollUntilContextTimeout(ctx, o.Interval, o.Timeout, true, func(pctx context.Context) (bool, error) {
		pending := 0
		for _, p := range probes {
			if p.ready {
				continue
			}
			// The parent context: the probe has its own timeout, and its last
			// error must be what the endpoint said, not the wait's deadline.
			if err := p.check(ctx); err == nil {
				p.ready = true
				res.Ready[p.c.Name] = time.Since(start)
				o.Logf("%s is healthy (%s) after %s", p.c.Name, p.c.HealthURL, round(res.Ready[p.c.Name]))
				continue
			} else {
				p.lastErr = err
			}
			pending++
			if err := p.watchUnit(pctx, o.Host, o.CrashLimit, o.DownGrace); err != nil {
				crashed = fmt.Errorf("%w%s", err, component.JournalTail(ctx, o.Host, p.c.UnitName(), 25))
				return false, crashed
			}
		}
		if pending == 0 {
			return true, nil
		}
		if time.Since(lastProgress) >= o.Progress {
			lastProgress = time.Now()
			var waiting []string
			for _, p := range probes {
				if !p.ready {
					waiting = append(waiting, fmt.Sprintf("%s (%v)", p.c.Name, p.lastErr))
				}
			}
			o.Logf("still waiting after %s for %s", round(time.Since(start)), strings.Join(waiting, ", "))
		}
		return false, nil
	})
	res.Total = time.Since(start)
	switch {
	case err == nil:
		return res, nil
	case crashed != nil:
		return res, crashed
	case ctx.Err() != nil:
		return res, ctx.Err()
	}
	var errs []error
	for _, p := range probes {
		if !p.ready {
			errs = append(errs, fmt.Errorf("%s did not get healthy within %s: %s: %v%s",
				p.c.Name, o.Timeout, p.c.HealthURL, p.lastErr, component.JournalTail(ctx, o.Host, p.c.UnitName(), 25)))
		}
	}
	return res, errors.Join(errs...)
}

// newProbes makes one health probe per component. The apiserver's is
// verified against the cluster CA; the controller-manager and scheduler serve
// a self-signed certificate they generate in memory, with nothing to verify it
// against, and /healthz is only read, never trusted with a credential.
func newProbes(o WaitOptions) ([]*probe, error) {
	pool := x509.NewCertPool()
	if len(o.CACert) > 0 && !pool.AppendCertsFromPEM(o.CACert) {
		return nil, errors.New("wait: the CA certificate is not PEM")
	}
	var probes []*probe
	for _, c := range o.Components {
		tr := o.Transport
		if tr == nil {
			tlsCfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
			if !c.HealthCA {
				tlsCfg = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12} //nolint:gosec // see above
			}
			tr = &http.Transport{TLSClientConfig: tlsCfg, DisableKeepAlives: true, Proxy: nil}
		}
		probes = append(probes, &probe{c: c, client: &http.Client{Transport: tr, Timeout: 3 * time.Second}})
	}
	return probes, nil
}

func round(d time.Duration) time.Duration { return d.Round(10 * time.Millisecond) }

// check asks the health endpoint once.
func (p *probe) check(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.c.HealthURL, nil)
	if err != nil {
		return err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		// Strip the URL net/http puts in front: the messages name it already.
		var ue interface{ Unwrap() error }
		if errors.As(err, &ue) && ue.Unwrap() != nil {
			return ue.Unwrap()
		}
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(body))
		if i := strings.LastIndex(msg, "\n"); len(msg) > 200 && i >= 0 {
			msg = msg[i+1:]
		}
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, msg)
	}
	return nil
}

// watchUnit counts the unit's crashes (entries into systemd's auto-restart state)
// and fails once there are too many, or when the unit has stopped for good.
//
// "Stopped for good" means inactive (or failed), with no job queued, for longer
// than grace: between a crash and systemd's automatic restart a Restart=always
// unit passes through inactive (dead) while its restart job runs (the journal
// says "Scheduled restart job", "Stopped", "Started"), and a start job can wait
// behind the units it is ordered after (the controller-manager after a slow
// apiserver); on a loaded host a poll can land in either. A kube-controller-manager that lost its leader lease to a slow
// apiserver exits by design and restarts that way; reading that moment as
// "not starting" failed init on a busy CI machine.
func (p *probe) watchUnit(ctx context.Context, h host.Host, limit int, grace time.Duration) error {
	if h == nil {
		return nil
	}
	st, err := h.Units().Status(ctx, p.c.UnitName())
	if err != nil {
		return nil // a host briefly unreachable is not the daemon failing
	}
	if st.SubState == "auto-restart" && p.lastSub != "auto-restart" {
		p.crashes++
	}
	p.lastSub = st.SubState
	switch {
	case p.crashes >= limit:
		return fmt.Errorf("%s exited %d times while starting (last health check: %v)", p.c.UnitName(), p.crashes, p.lastErr)
	case st.LoadState == "not-found":
		return fmt.Errorf("%s does not exist on %s (run `kubeforge init phase control-plane`)", p.c.UnitName(), h.Name())
	case (st.ActiveState == "inactive" || st.ActiveState == "failed") && !st.JobQueued:
		if p.downSince.IsZero() {
			p.downSince = time.Now()
		}
		if down := time.Since(p.downSince); down >= grace {
			return fmt.Errorf("%s is %s (%s) and has not restarted for %s, not starting", p.c.UnitName(), st.ActiveState, st.SubState, round(down))
		}
		return nil
	}
	p.downSince = time.Time{}
	return nil
}
