package snapshot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/components/component"
)

// The scheduled backup's units. The binary is the one the overlay phase also
// installs (components/overlay.BinaryPath).
const (
	ServiceName = "kubeforge-etcd-backup.service"
	TimerName   = "kubeforge-etcd-backup.timer"
	BinaryPath  = "/usr/local/bin/kubeforge"
)

// Service is kubeforge-etcd-backup.service: one `kubeforge etcd snapshot
// backup` (save, verify, prune) per start. Every directive loads on systemd 219
// (the unit test runs it through etcd.LintUnit).
//
//   - Type=oneshot: the run is the unit's start, so `systemctl start` waits for
//     it and a failed verify leaves the unit "failed" with the exit status and
//     the error in the journal.
//   - No [Install]: the timer starts it.
//   - After=etcd.service: on an etcd host that just booted, the member first.
//   - Nice/IOSchedulingClass: a backup must not slow the member it copies.
func Service(b config.EtcdBackup) []byte {
	return []byte(`# etcd snapshot, verify and prune, written by kubeforge. Schedule: ` + TimerName + `
[Unit]
Description=kubeforge etcd backup: snapshot, verify it restores, keep the newest ` + strconv.Itoa(b.Keep) + `
Documentation=https://github.com/kubeforge/kubeforge
After=etcd.service

[Service]
Type=oneshot
ExecStart=` + BinaryPath + ` etcd snapshot backup --dir ` + b.Dir + ` --keep ` + strconv.Itoa(b.Keep) + `
Nice=10
IOSchedulingClass=best-effort
IOSchedulingPriority=7
`)
}

// Timer is kubeforge-etcd-backup.timer. An interval schedule becomes
// OnActiveSec= (the first run one interval after the timer starts, i.e. after
// boot or install) plus OnUnitActiveSec= (then one interval after each run); a
// calendar shorthand becomes OnCalendar= with Persistent=true, so a run missed
// while the host was off happens at boot. systemd 219 knows all of them.
func Timer(b config.EtcdBackup) ([]byte, error) {
	when, err := TimerDirectives("spec.etcd.backup.schedule", b.Schedule)
	if err != nil {
		return nil, err
	}
	return []byte(`# etcd backup schedule, written by kubeforge (spec.etcd.backup.schedule: ` + b.Schedule + `)
[Unit]
Description=kubeforge etcd backup schedule

[Timer]
` + when + `AccuracySec=1s

[Install]
WantedBy=timers.target
`), nil
}

// TimerDirectives are the [Timer] lines of a schedule (see Timer); field names
// the schedule's configuration field in an error.
func TimerDirectives(field, schedule string) (string, error) {
	if slices.Contains(config.BackupCalendarShorthands, schedule) {
		return "OnCalendar=" + schedule + "\nPersistent=true\n", nil
	}
	d, err := time.ParseDuration(schedule)
	if err != nil || d < time.Second {
		return "", fmt.Errorf("%s %q: not an interval or one of %s", field, schedule, strings.Join(config.BackupCalendarShorthands, ", "))
	}
	s := strconv.FormatInt(int64(d/time.Second), 10) + "s"
	return "OnActiveSec=" + s + "\nOnUnitActiveSec=" + s + "\n", nil
}

// InstallOptions are what Install needs.
type InstallOptions struct {
	Host   host.Host
	Backup config.EtcdBackup
	// Executable is the kubeforge binary to install as BinaryPath when it is
	// not there already (the overlay phase may have been skipped); "" means the
	// running one.
	Executable string
	Logf       func(string, ...any)
}

// Install writes the service and timer, creates the snapshot dir (0700) and
// enables and starts the timer; it restarts the timer when its schedule
// changed. It installs BinaryPath when it is missing or differs. A converged
// host reports unchanged.
func Install(ctx context.Context, o InstallOptions) (changed bool, err error) {
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	h := o.Host
	if installed, err := EnsureBinary(ctx, h, o.Executable); err != nil {
		return false, err
	} else if installed {
		o.Logf("installed %s", BinaryPath)
		changed = true
	}
	timer, err := Timer(o.Backup)
	if err != nil {
		return false, err
	}
	if fi, err := h.Stat(ctx, o.Backup.Dir); host.IsNotExist(err) {
		if err := h.MkdirAll(ctx, o.Backup.Dir, DirMode); err != nil {
			return false, err
		}
		o.Logf("created %s (0700)", o.Backup.Dir)
		changed = true
	} else if err != nil {
		return false, err
	} else if !fi.IsDir() {
		return false, fmt.Errorf("%s: spec.etcd.backup.dir %s is not a directory", h.Name(), o.Backup.Dir)
	}
	c, err := scheduled.Ensure(ctx, h, Service(o.Backup), timer,
		fmt.Sprintf("schedule %s, keep %d, dir %s", o.Backup.Schedule, o.Backup.Keep, o.Backup.Dir), o.Logf)
	return changed || c, err
}

// scheduled is the backup's service and timer.
var scheduled = component.Scheduled{Service: ServiceName, Timer: TimerName}

// EnsureBinary copies exe (default: the running binary) to BinaryPath on h
// unless the same bytes are there, as the overlay phase does.
func EnsureBinary(ctx context.Context, h host.Host, exe string) (bool, error) {
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return false, fmt.Errorf("finding the kubeforge binary to install: %w", err)
		}
	}
	data, err := os.ReadFile(exe)
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", exe, err)
	}
	sum := sha256.Sum256(data)
	if fi, err := h.Stat(ctx, BinaryPath); err == nil && fi.Size == int64(len(data)) {
		c := host.Cmd{Argv: []string{"sha256sum", BinaryPath}, ReadOnly: true}
		if r, err := h.Run(ctx, c); err == nil && r.OK() {
			if got, _, _ := strings.Cut(strings.TrimSpace(string(r.Stdout)), " "); got == hex.EncodeToString(sum[:]) {
				return false, nil
			}
		}
	} else if err != nil && !host.IsNotExist(err) {
		return false, err
	}
	if err := h.WriteFile(ctx, BinaryPath, data, host.WriteOptions{Mode: 0o755}); err != nil {
		return false, err
	}
	return true, nil
}

// Present reports whether h has the backup units.
func Present(ctx context.Context, h host.Host) (bool, error) {
	return scheduled.Present(ctx, h)
}

// Remove stops, disables and deletes the timer and the service, and nothing
// else: the snapshots stay, they are what a reset host may need to be rebuilt
// from.
func Remove(ctx context.Context, h host.Host, logf func(string, ...any)) (bool, error) {
	return scheduled.Remove(ctx, h, logf)
}
