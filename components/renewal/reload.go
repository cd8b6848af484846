package renewal

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/kubeforge/kubeforge/components/component"
)

// servedCert is a renewable certificate a daemon serves, and where: the check
// that a daemon which reloads its certificates (Step.Reload) picked the
// renewed one up.
type servedCert struct {
	// name as in certs.RenewableNames; file is the certificate on the host.
	name, file string
	// url is requested over TLS; any HTTP answer will do, only the leaf the
	// daemon presents in the handshake counts.
	url string
	// tlsConfig gives the roots that verify the daemon and the client
	// certificate it asks for, read anew for each check.
	tlsConfig func(ctx context.Context) (*tls.Config, error)
}

// Served is a renewed certificate a daemon was seen serving.
type Served struct {
	Name string `json:"name"`
	// URL is where it was asked for.
	URL string `json:"url"`
	// Serial is the certificate's serial number in hex, as openssl prints it.
	Serial string `json:"serial"`
}

// Reloaded is one unit that loaded the renewed files by itself: not
// restarted, healthy, and (where that can be seen) serving them.
type Reloaded struct {
	Unit string `json:"unit"`
	// PID is the unit's main process before the check; NewPID after it
	// (the same, unless something else restarted it meanwhile).
	PID    int `json:"pid"`
	NewPID int `json:"newPID"`
	// Served are the renewed certificates the unit was seen presenting.
	Served []Served `json:"served,omitempty"`
	// PerConnection are the renewed client certificates the unit reads
	// again for each new connection it opens (to etcd, the kubelets, an
	// aggregated API): nothing outside the daemon can see them, the upstream
	// code is the evidence (see readers).
	PerConnection []string      `json:"perConnection,omitempty"`
	Took          time.Duration `json:"took"`
}

// errStale is a daemon that still serves the certificate the renewal replaced.
var errStale = errors.New("still serves the replaced certificate")

// servedNow asks sc.url once and compares the leaf certificate the daemon
// presents with sc.file on the host.
func (r *Restarter) servedNow(ctx context.Context, sc servedCert) (Served, error) {
	data, err := r.o.Host.ReadFile(ctx, sc.file)
	if err != nil {
		return Served{}, fmt.Errorf("%s: %w", sc.name, err)
	}
	want, err := firstCert(data)
	if err != nil {
		return Served{}, fmt.Errorf("%s: %s: %w", sc.name, sc.file, err)
	}
	cfg, err := sc.tlsConfig(ctx)
	if err != nil {
		return Served{}, fmt.Errorf("%s: %w", sc.name, err)
	}
	cfg = cfg.Clone()
	var leaf *x509.Certificate
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) > 0 {
			leaf = cs.PeerCertificates[0]
		}
		return nil
	}
	client := &http.Client{
		Transport: &http.Transport{DialContext: r.o.Dial, TLSClientConfig: cfg, DisableKeepAlives: true, Proxy: nil},
		Timeout:   probeTimeout,
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, sc.url, nil)
	if err != nil {
		return Served{}, err
	}
	resp, err := client.Do(req)
	if err == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
	}
	if leaf == nil {
		if err == nil {
			err = errors.New("no certificate in the handshake")
		}
		return Served{}, fmt.Errorf("%s: %s: %w", sc.name, sc.url, unwrapURL(err))
	}
	s := Served{Name: sc.name, URL: sc.url, Serial: serialHex(leaf)}
	if !bytes.Equal(leaf.Raw, want.Raw) {
		return s, fmt.Errorf("%s at %s %w (serial %s, expires %s); the renewed %s has serial %s",
			sc.name, sc.url, errStale, s.Serial, leaf.NotAfter.UTC().Format(time.RFC3339), sc.file, serialHex(want))
	}
	return s, nil
}

// waitServed polls until the daemon serves every one of scs, for at most
// timeout.
func (r *Restarter) waitServed(ctx context.Context, u string, scs []servedCert, timeout time.Duration) ([]Served, error) {
	var (
		out      []Served
		lastErr  error
		progress = time.Now()
	)
	err := component.Poll(ctx, r.o.Interval, timeout, func(ctx context.Context) (bool, error) {
		out = out[:0]
		for _, sc := range scs {
			s, err := r.servedNow(ctx, sc)
			if err != nil && ctx.Err() != nil {
				// The wait's own deadline cut this request: keep the
				// answer before, which says more.
				return false, nil
			}
			if err != nil {
				lastErr = err
				if time.Since(progress) >= 5*time.Second {
					progress = time.Now()
					r.o.Logf("still waiting for %s to serve the renewed certificate: %v", u, err)
				}
				return false, nil
			}
			out = append(out, s)
		}
		return true, nil
	})
	if err := component.PollError(ctx, err, func() error { return fmt.Errorf("not within %s: %w", timeout, lastErr) }); err != nil {
		return nil, err
	}
	return out, nil
}

// waitHealthy waits for a unit that was not restarted to answer its health
// check, as a restarted one must (ops.wait, or ops.probe until it passes).
func (r *Restarter) waitHealthy(ctx context.Context, u string, ops unitOps) error {
	if ops.wait != nil {
		return ops.wait(ctx)
	}
	if ops.probe == nil {
		return nil
	}
	var lastErr error
	err := component.Poll(ctx, r.o.Interval, r.o.Timeout, func(ctx context.Context) (bool, error) {
		st, err := r.o.Host.Units().Status(ctx, u)
		if err == nil && (st.ActiveState == "failed" || st.ActiveState == "inactive") {
			return false, fmt.Errorf("it is %s (%s)%s", st.ActiveState, st.SubState, component.JournalTail(ctx, r.o.Host, u, 25))
		}
		lastErr = ops.probe(ctx)
		return lastErr == nil, nil
	})
	return component.PollError(ctx, err, func() error {
		return fmt.Errorf("not healthy within %s: %v%s", r.o.Timeout, lastErr, component.JournalTail(ctx, r.o.Host, u, 25))
	})
}

// reload is the step of a unit that re-reads the renewed files by itself: it
// waits until the unit serves each renewed certificate it serves (up to
// Options.ReloadTimeout) and is healthy, without restarting it. A unit that
// does not serve them in time is restarted after all (the restart returned is
// then non-nil, its How saying why) and checked again.
func (r *Restarter) reload(ctx context.Context, s Step) (*Reloaded, *Restarted, error) {
	h, u, ops := r.o.Host, s.Unit, r.ops[s.Unit]
	t0 := time.Now()
	before, err := h.Units().Status(ctx, u)
	if err != nil {
		return nil, nil, err
	}
	var scs []servedCert
	var perConn []string
	for _, n := range s.Reads {
		if sc, ok := ops.serves[n]; ok {
			scs = append(scs, sc)
		} else {
			perConn = append(perConn, n)
		}
	}
	r.o.Logf("%s reloads %s by itself (pid %d): not restarted; checking that it serves the renewed certificates", u, strings.Join(s.Reads, ", "), before.MainPID)
	served, err := r.waitServed(ctx, u, scs, r.o.ReloadTimeout)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		why := fmt.Sprintf("it did not load the renewed certificate by itself: %v", err)
		r.o.Logf("%s: %s; restarting it", u, why)
		rs, err := r.restart(ctx, u)
		if err != nil {
			return nil, nil, fmt.Errorf("%s; the restart after that: %w", why, err)
		}
		if _, err := r.waitServed(ctx, u, scs, r.o.Timeout); err != nil {
			return nil, nil, fmt.Errorf("%s; restarted, it still does not serve it: %w", why, err)
		}
		rs.How = rs.How + ", because " + why
		rs.Took = time.Since(t0)
		return nil, &rs, nil
	}
	if err := r.waitHealthy(ctx, u, ops); err != nil {
		return nil, nil, err
	}
	rl := &Reloaded{Unit: u, PID: before.MainPID, NewPID: before.MainPID, Served: served, PerConnection: perConn, Took: time.Since(t0)}
	if st, err := h.Units().Status(ctx, u); err == nil {
		rl.NewPID = st.MainPID
	}
	var seen []string
	for _, sv := range served {
		seen = append(seen, fmt.Sprintf("%s serial %s", sv.Name, sv.Serial))
	}
	if len(seen) == 0 {
		seen = append(seen, "nothing it serves was renewed")
	}
	r.o.Logf("%s reloaded by itself and healthy after %s (pid %d -> %d): serves %s", u, rl.Took.Round(10*time.Millisecond), rl.PID, rl.NewPID, strings.Join(seen, ", "))
	if rl.NewPID != rl.PID {
		r.o.Logf("%s: its main process changed meanwhile (pid %d -> %d); kubeforge did not restart it", u, rl.PID, rl.NewPID)
	}
	return rl, nil, nil
}

// firstCert parses the first certificate of a PEM file.
func firstCert(data []byte) (*x509.Certificate, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("no PEM certificate in it")
		}
		if b.Type == "CERTIFICATE" {
			return x509.ParseCertificate(b.Bytes)
		}
	}
}

// serialHex is a certificate's serial number as `openssl x509 -serial`
// prints it: upper-case hex, an even number of digits.
func serialHex(c *x509.Certificate) string {
	s := strings.ToUpper(c.SerialNumber.Text(16))
	if len(s)%2 == 1 {
		s = "0" + s
	}
	return s
}
