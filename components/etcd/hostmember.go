package etcd

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/components/component"
)

// hostMember is one member's files and systemd unit on a host. It is the Runner
// the phases give JoinMember.
type hostMember struct {
	h    host.Host
	cfg  MemberConfig
	logf func(string, ...any)

	startCancel context.CancelFunc
	startDone   chan error
	startErr    error
	crashes     int
	lastSub     string
}

var _ Runner = (*hostMember)(nil)

// writeFiles lays down the data dir (0700), the config file (0600: it is the
// member's whole configuration and only root has business reading it) and the
// unit, and enables the unit. It reports whether anything changed.
func (r *hostMember) writeFiles(ctx context.Context) (bool, error) {
	content, err := r.cfg.Render()
	if err != nil {
		return false, fmt.Errorf("%s: %w", r.h.Name(), err)
	}
	if err := LintUnit(Unit()); err != nil {
		return false, fmt.Errorf("etcd unit: %w", err)
	}
	changed := false
	fi, err := r.h.Stat(ctx, r.cfg.DataDir)
	switch {
	case host.IsNotExist(err) || (err == nil && fi.Mode.Perm() != 0o700):
		if err := r.h.MkdirAll(ctx, r.cfg.DataDir, 0o700); err != nil {
			return false, err
		}
		changed = true
	case err != nil:
		return false, err
	case !fi.IsDir():
		return false, fmt.Errorf("%s: etcd data dir %s exists and is not a directory", r.h.Name(), r.cfg.DataDir)
	}
	old, err := r.h.ReadFile(ctx, ConfigPath)
	if err != nil && !host.IsNotExist(err) {
		return false, err
	}
	ofi, serr := r.h.Stat(ctx, ConfigPath)
	if err != nil || !bytes.Equal(old, content) || serr != nil || ofi.Mode.Perm() != 0o600 {
		if err := r.h.WriteFile(ctx, ConfigPath, content, host.WriteOptions{Mode: 0o600}); err != nil {
			return false, err
		}
		changed = true
	}
	uc, err := r.h.Units().WriteUnit(ctx, UnitName, Unit())
	if err != nil {
		return false, err
	}
	changed = changed || uc
	st, err := r.h.Units().Status(ctx, UnitName)
	if err != nil {
		return false, err
	}
	if st.Enabled != "enabled" {
		if err := r.h.Units().Enable(ctx, UnitName); err != nil {
			return false, err
		}
		changed = true
	}
	return changed, nil
}

// hasData reports whether the data dir holds a member's data (etcd keeps it in
// <data-dir>/member).
func (r *hostMember) hasData(ctx context.Context) (bool, error) {
	_, err := r.h.Stat(ctx, path.Join(r.cfg.DataDir, "member"))
	if host.IsNotExist(err) {
		return false, nil
	}
	return err == nil, err
}

// currentConfig is the member's config file as it is on the host (nil if none).
func (r *hostMember) currentConfig(ctx context.Context) ([]byte, error) {
	b, err := r.h.ReadFile(ctx, ConfigPath)
	if host.IsNotExist(err) {
		return nil, nil
	}
	return b, err
}

// Start implements Runner for a joining member.
func (r *hostMember) Start(ctx context.Context, peers []Peer) error {
	r.cfg.InitialCluster, r.cfg.InitialClusterState = peers, ClusterStateExisting
	if _, err := r.writeFiles(ctx); err != nil {
		return err
	}
	r.startAsync(ctx, false)
	return nil
}

// startAsync asks systemd to (re)start the unit without waiting for the job:
// with Type=notify the job only ends once etcd is ready, and how the member is
// doing is watched through the etcd API and Failed instead.
func (r *hostMember) startAsync(ctx context.Context, restart bool) {
	sctx, cancel := context.WithCancel(ctx)
	r.startCancel, r.startDone, r.startErr, r.crashes, r.lastSub = cancel, make(chan error, 1), nil, 0, ""
	go func() {
		if restart {
			r.startDone <- r.h.Units().Restart(sctx, UnitName)
		} else {
			r.startDone <- r.h.Units().Start(sctx, UnitName)
		}
	}()
}

// Failed implements Runner: the unit's start job failed, or etcd exited twice
// (systemd's auto-restart state), which for etcd means a fault that a restart
// does not fix: a taken port, a bad certificate, data of another cluster.
func (r *hostMember) Failed(ctx context.Context) error {
	if r.startDone != nil && r.startErr == nil {
		select {
		case err := <-r.startDone:
			if err != nil {
				r.startErr = err
			}
			r.startDone = nil
		default:
		}
	}
	if r.startErr != nil {
		// systemd's own error already carries raw journal lines; the summary
		// below says the same more readably.
		msg, _, _ := strings.Cut(r.startErr.Error(), "; last journal lines:")
		return fmt.Errorf("%s%s", msg, r.journal(ctx))
	}
	st, err := r.h.Units().Status(ctx, UnitName)
	if err != nil {
		return nil // the host being briefly unreachable is not the member failing
	}
	if st.SubState == "auto-restart" && r.lastSub != "auto-restart" || st.ActiveState == "failed" && r.lastSub != "failed" {
		r.crashes++
	}
	r.lastSub = st.SubState
	if st.ActiveState == "failed" {
		r.lastSub = "failed"
	}
	if r.crashes >= 2 {
		return fmt.Errorf("%s on %s exited %d times while starting%s", UnitName, r.h.Name(), r.crashes, r.journal(ctx))
	}
	return nil
}

// journal is the unit's recent warnings and errors for an error message.
func (r *hostMember) journal(ctx context.Context) string {
	lines, err := r.h.Units().Journal(ctx, UnitName, 40)
	if err != nil || len(lines) == 0 {
		return ""
	}
	lines = summarizeLog(lines, 6)
	if len(lines) == 0 {
		return ""
	}
	return "; etcd's log:\n  " + strings.Join(lines, "\n  ")
}

// summarizeLog reduces etcd's JSON log lines to "level: msg: error" and keeps the
// warnings and errors (systemd's own lines too), the last max of them: the stack
// traces and info lines that fill etcd's log hide the one line that matters.
func summarizeLog(lines []string, max int) []string {
	var out []string
	for _, l := range lines {
		var e struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
			Error string `json:"error"`
		}
		if strings.HasPrefix(l, "{") && json.Unmarshal([]byte(l), &e) == nil && e.Msg != "" {
			if e.Level == "info" || e.Level == "debug" {
				continue
			}
			l = e.Level + ": " + e.Msg
			if e.Error != "" {
				l += ": " + e.Error
			}
		}
		if len(out) > 0 && out[len(out)-1] == l {
			continue
		}
		out = append(out, l)
	}
	if len(out) > max {
		out = out[len(out)-max:]
	}
	return out
}

// stopPendingStart gives up the start job, if one is pending.
func (r *hostMember) stopPendingStart() {
	if r.startCancel != nil {
		r.startCancel()
		r.startCancel = nil
	}
}

// Remove implements Runner: stop the unit and delete it, the config file and the
// data dir.
func (r *hostMember) Remove(ctx context.Context) error {
	r.stopPendingStart()
	u := r.h.Units()
	var errs []error
	if err := u.Stop(ctx, UnitName); err != nil {
		errs = append(errs, err)
	}
	if err := u.Disable(ctx, UnitName); err != nil {
		errs = append(errs, err)
	}
	if err := u.RemoveUnit(ctx, UnitName); err != nil {
		errs = append(errs, err)
	}
	if err := r.h.Remove(ctx, ConfigPath); err != nil {
		errs = append(errs, err)
	}
	// etcd's data only, and the dir when that leaves it empty.
	if _, err := RemoveDataDir(ctx, r.h, r.cfg.DataDir); err != nil {
		errs = append(errs, err)
	}
	// systemd keeps a failed unit's state around; clear it so a later join starts
	// from "not found" instead of a stale failure.
	_, _ = r.h.Run(ctx, host.Cmd{Argv: []string{"systemctl", "reset-failed", UnitName}})
	return errors.Join(errs...)
}

// waitHealthy waits until the member at endpoint answers a linearizable read,
// printing progress, and gives up when the unit keeps failing or timeout passes.
func (r *hostMember) waitHealthy(ctx context.Context, tlsCfg *tls.Config, timeout time.Duration) error {
	ep := r.cfg.Member.ClientURL()
	t0 := time.Now()
	var lastReport time.Time
	var lastErr error
	err := component.Poll(ctx, 500*time.Millisecond, timeout, func(ctx context.Context) (bool, error) {
		err := withEndpoint(tlsCfg, ep, func(cli *clientv3.Client) error {
			gctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			_, err := cli.Get(gctx, HealthKey)
			if IsAuthRefusal(err) {
				// Refused by authorization after the read index: the member
				// is in a quorum with a leader, which is all this asks.
				return nil
			}
			return err
		})
		if err == nil {
			r.logf("etcd member %s is healthy at %s after %s", r.cfg.Member.Name, ep, time.Since(t0).Round(10*time.Millisecond))
			return true, nil
		}
		lastErr = err
		if ferr := r.Failed(ctx); ferr != nil {
			return false, ferr
		}
		if time.Since(lastReport) >= 3*time.Second {
			r.logf("waiting for etcd member %s to become healthy at %s (%s)", r.cfg.Member.Name, ep, time.Since(t0).Round(time.Second))
			lastReport = time.Now()
		}
		return false, nil
	})
	return component.PollError(ctx, err, func() error {
		return fmt.Errorf("etcd member %s not healthy at %s after %s: %v%s", r.cfg.Member.Name, ep, timeout, lastErr, r.journal(ctx))
	})
}
