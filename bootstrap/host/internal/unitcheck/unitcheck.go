// Package unitcheck is the end-to-end unit life cycle that every Host implementation
// must get right against a real systemd: the same checks run for the local host
// (inside a lab machine) and for the SSH host (from outside).
package unitcheck

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/bootstrap/lab"
)

// Lifecycle writes, enables, starts, inspects, breaks, stops, disables and removes
// throwaway units on h, whose systemd must be real, and cleans up after itself.
func Lifecycle(t *testing.T, h host.Host) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	u := h.Units()
	b := make([]byte, 4)
	rand.Read(b)
	id := hex.EncodeToString(b)
	name := "kubeforge-e2e-" + id + ".service"
	broken := "kubeforge-e2e-broken-" + id + ".service"
	gate := "kubeforge-e2e-gate-" + id + ".service"
	waiter := "kubeforge-e2e-waiter-" + id + ".service"
	t.Cleanup(func() {
		ctx := context.Background()
		for _, n := range []string{name, broken, gate, waiter} {
			u.Stop(ctx, n)
			u.Disable(ctx, n)
			u.RemoveUnit(ctx, n)
		}
		// The broken unit's failure outlives its file: without this the host
		// stays "degraded" after the test.
		h.Run(ctx, host.Cmd{Argv: []string{"systemctl", "reset-failed", broken}})
	})

	// The shell lingers before it execs sleep, so "running" (systemd has forked)
	// and "MainPID is sleep" are always apart in time: a check that reads the
	// MainPID's command once, right after start, fails every time instead of only
	// on a loaded machine (the flake this replaced).
	unit := "[Unit]\nDescription=kubeforge e2e " + id + "\n[Service]\n" +
		"ExecStart=/bin/sh -c 'echo hello-" + id + "; sleep 0.5; exec sleep 3600'\n" +
		"[Install]\nWantedBy=multi-user.target\n"
	changed, err := u.WriteUnit(ctx, name, []byte(unit))
	if err != nil || !changed {
		t.Fatalf("WriteUnit: changed=%v err=%v", changed, err)
	}
	if changed, err := u.WriteUnit(ctx, name, []byte(unit)); err != nil || changed {
		t.Fatalf("identical WriteUnit: changed=%v err=%v", changed, err)
	}
	st, err := u.Status(ctx, name)
	if err != nil || st.LoadState != "loaded" || st.Active() || st.Enabled != "disabled" {
		t.Fatalf("status of a new unit = %+v, %v (want loaded, inactive, disabled: WriteUnit must reload)", st, err)
	}

	if err := u.Enable(ctx, name); err != nil {
		t.Fatal(err)
	}
	if err := u.Start(ctx, name); err != nil {
		t.Fatal(err)
	}
	st, err = u.Status(ctx, name)
	if err != nil || !st.Active() || st.SubState != "running" || st.Enabled != "enabled" || st.MainPID <= 0 {
		t.Fatalf("status after enable+start = %+v, %v", st, err)
	}
	// systemctl must agree with what D-Bus told us.
	r, err := h.Run(ctx, host.Cmd{Argv: []string{"systemctl", "is-active", name}, ReadOnly: true})
	if err != nil || strings.TrimSpace(string(r.Stdout)) != "active" {
		t.Fatalf("systemctl is-active = %q, %v", r.Stdout, err)
	}
	// The MainPID systemd reports is the unit's process from the moment it forks;
	// it becomes the sleep once the shell has exec'd, which takes as long as the
	// scheduler says. Wait for that (bounded), and insist the PID stays the same:
	// exec keeps it, a wrong MainPID would not.
	var comm []byte
	if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		comm, err = h.ReadFile(ctx, "/proc/"+strconv.Itoa(st.MainPID)+"/comm")
		return err == nil && strings.TrimSpace(string(comm)) == "sleep", nil
	}); err != nil {
		t.Fatalf("MainPID %d is still %q (last error %v) after 30s; want the unit's sleep", st.MainPID, comm, err)
	}

	// The journal has the unit's output (journald may lag a little behind).
	var lines []string
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		lines, err = u.Journal(ctx, name, 10)
		return err == nil && strings.Contains(strings.Join(lines, "\n"), "hello-"+id), nil
	}); err != nil {
		t.Fatalf("journal of %s = %q (last error %v) after 30s; want hello-%s", name, lines, err, id)
	}

	oldPID := st.MainPID
	if err := u.Restart(ctx, name); err != nil {
		t.Fatal(err)
	}
	if st, _ = u.Status(ctx, name); !st.Active() || st.MainPID == oldPID {
		t.Fatalf("after restart: %+v (old pid %d)", st, oldPID)
	}

	// A unit that fails to start: the job result is an error with the journal.
	if _, err := u.WriteUnit(ctx, broken, []byte("[Service]\nType=oneshot\nExecStart=/bin/sh -c 'echo broken-"+id+" >&2; exit 3'\n")); err != nil {
		t.Fatal(err)
	}
	err = u.Start(ctx, broken)
	if err == nil || !strings.Contains(err.Error(), broken) || !strings.Contains(err.Error(), `"failed"`) {
		t.Fatalf("start of a failing unit: %v", err)
	}
	t.Logf("failing unit error: %v", err)
	if err := u.Enable(ctx, broken); err == nil || !strings.Contains(err.Error(), "[Install]") {
		t.Fatalf("enable without [Install]: %v", err)
	}

	if err := u.Stop(ctx, name); err != nil {
		t.Fatal(err)
	}
	if err := u.Stop(ctx, name); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	if err := u.Disable(ctx, name); err != nil {
		t.Fatal(err)
	}
	if st, _ = u.Status(ctx, name); st.Active() || st.Enabled != "disabled" || st.MainPID != 0 {
		t.Fatalf("after stop+disable: %+v", st)
	}
	for _, n := range []string{name, broken} {
		if err := u.RemoveUnit(ctx, n); err != nil {
			t.Fatal(err)
		}
		if st, err = u.Status(ctx, n); err != nil || st.LoadState != "not-found" {
			t.Fatalf("after RemoveUnit(%s): %+v, %v", n, st, err)
		}
	}
	queuedJob(ctx, t, u, gate, waiter)

	if err := u.Stop(ctx, "kubeforge-e2e-never-"+id+".service"); err != nil {
		t.Fatalf("stop of a unit that never existed: %v", err)
	}
	if err := u.Disable(ctx, "kubeforge-e2e-never-"+id+".service"); err != nil {
		t.Fatalf("disable of a unit that never existed: %v", err)
	}
}

// queuedJob: a unit whose start job waits behind the unit it is ordered after
// is inactive (dead) with a job queued, and Status says so (JobQueued), so
// that health waits can tell "on its way" from "stopped for good".
func queuedJob(ctx context.Context, t *testing.T, u host.Units, gate, waiter string) {
	t.Helper()
	// The gate's start job lasts until the gate is stopped: a oneshot whose
	// ExecStart does not end.
	if _, err := u.WriteUnit(ctx, gate, []byte("[Service]\nType=oneshot\nExecStart=/bin/sleep 3600\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := u.WriteUnit(ctx, waiter, []byte("[Unit]\nAfter="+gate+"\n[Service]\nExecStart=/bin/sleep 3600\n")); err != nil {
		t.Fatal(err)
	}
	gateDone, waiterDone := make(chan error, 1), make(chan error, 1)
	go func() { gateDone <- u.Start(ctx, gate) }()
	var st host.UnitStatus
	if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		st, _ = u.Status(ctx, gate)
		return st.ActiveState == "activating", nil
	}); err != nil {
		t.Fatalf("%s did not start activating within 30s: %+v", gate, st)
	}
	go func() { waiterDone <- u.Start(ctx, waiter) }()
	if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		st, _ = u.Status(ctx, waiter)
		return st.JobQueued, nil
	}); err != nil {
		t.Fatalf("status of %s, whose start waits behind %s: %+v; want JobQueued", waiter, gate, st)
	}
	if st.Active() {
		t.Fatalf("%s is active while its start job waits: %+v", waiter, st)
	}
	if err := u.Stop(ctx, gate); err != nil {
		t.Fatal(err)
	}
	<-gateDone // cancelled by the stop: its result does not matter
	if err := <-waiterDone; err != nil {
		t.Fatalf("start of %s after %s stopped: %v", waiter, gate, err)
	}
	if st, _ = u.Status(ctx, waiter); !st.Active() || st.JobQueued {
		t.Fatalf("%s after its start job ran: %+v", waiter, st)
	}
	for _, n := range []string{waiter, gate} {
		u.Stop(ctx, n)
		if err := u.RemoveUnit(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
}

// LabDir returns the lab directory for e2e tests: $KUBEFORGE_LAB_DIR, or with
// KUBEFORGE_E2E=1 (what hack/test.sh sets) the default lab if one is up. Otherwise
// the test is skipped.
func LabDir(t *testing.T) string {
	if dir := os.Getenv(lab.DirEnv); dir != "" {
		return dir
	}
	if os.Getenv("KUBEFORGE_E2E") != "" {
		if _, err := os.Stat(filepath.Join(lab.DefaultDir, "state.json")); err == nil {
			return lab.DefaultDir
		}
	}
	t.Skip("no lab hosts to test against: set " + lab.DirEnv + " (kubeforge lab up), or KUBEFORGE_E2E=1 with a lab at " + lab.DefaultDir)
	return ""
}
