package preflight

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/bootstrap/host/dryrun"
)

// brokenHost is a converged node01 broken the way the end-to-end test breaks a
// lab host: firewalld running, a swap line, wrong hostname, no hosts entries,
// sysctls off, chrony not configured for the cluster.
func brokenHost(t *testing.T) (*config.Cluster, *config.Host, *fakeHost) {
	env, f := convergedHost(t, "node01")
	f.unit(firewalldUnit, "active", "disabled")
	f.put(fstab, "UUID=abc / ext4 defaults 0 1\n/swapfile none swap sw 0 0\n")
	f.put("/proc/sys/kernel/hostname", "wrong-name\n")
	f.put("/etc/hostname", "wrong-name\n")
	f.put(hostsFile, "127.0.0.1 localhost\n")
	f.put(procSysPath("net.ipv4.ip_forward"), "0\n")
	f.put("/etc/chrony/chrony.conf", "#pool 2.debian.pool.ntp.org iburst\n")
	return env.Cluster, env.Node, f
}

var brokenChecks = []string{"Firewalld", "Swap", "Sysctls", "Hostname", "HostsFile", "TimeSync"}

func testOptions(o Options) Options {
	o.Now = func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }
	return o
}

// run is Run with a fake chronyd that settles at once (see checks_test.go).
func run(t *testing.T, h host.Host, c *config.Cluster, n *config.Host, o Options) (Report, error) {
	t.Helper()
	o = testOptions(o)
	if o.Checks == nil {
		o.Checks = func(e *Env) []Checker { e.syncWait = 0; return Checks(e) }
	}
	return Run(context.Background(), h, c, n, o)
}

func TestRunReportsFailuresByName(t *testing.T) {
	c, n, f := brokenHost(t)
	var log bytes.Buffer
	rep, err := run(t, f, c, n, Options{Log: &log})
	var fe *FailedError
	if !errors.As(err, &fe) {
		t.Fatalf("err = %v, want *FailedError", err)
	}
	if !reflect.DeepEqual(fe.Checks, brokenChecks) || !reflect.DeepEqual(rep.Failed(), brokenChecks) {
		t.Fatalf("failed %v, want %v", fe.Checks, brokenChecks)
	}
	if rep.OS != "Debian GNU/Linux 12 (bookworm)" || rep.Family != FamilyDebian || rep.Host != "node01" {
		t.Errorf("report header %+v", rep)
	}
	if !strings.Contains(log.String(), "[preflight] Running pre-flight checks on node01 (Debian GNU/Linux 12 (bookworm), debian family)") {
		t.Errorf("log %q", log.String())
	}
	var out bytes.Buffer
	if err := rep.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, name := range brokenChecks {
		if !strings.Contains(text, "\t[ERROR "+name+"]: ") {
			t.Errorf("text lacks [ERROR %s]:\n%s", name, text)
		}
	}
	for _, want := range []string{"[preflight] Some fatal errors occurred:", "--ignore-preflight-errors=Firewalld,Swap,Sysctls,Hostname,HostsFile,TimeSync", "`kubeforge preflight --fix` can fix: Firewalld, Swap"} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
	if len(f.ran) != 0 {
		t.Errorf("a run without --fix changed the host: %q", f.ran)
	}
	// join runs the same checks and says how to fix them its own way: the
	// report must not send a host that is not in the hosts table to
	// `kubeforge preflight`, which refuses it.
	rep.FixHint = "re-running the join command with `--fix`"
	out.Reset()
	if err := rep.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	if text := out.String(); !strings.Contains(text, "re-running the join command with `--fix` can fix: Firewalld, Swap") || strings.Contains(text, "kubeforge preflight") {
		t.Errorf("join's text:\n%s", text)
	}
}

func TestRunFixThenNothingToFix(t *testing.T) {
	c, n, f := brokenHost(t)
	var log bytes.Buffer
	rep, err := run(t, f, c, n, Options{Fix: true, Log: &log})
	if err != nil {
		var out bytes.Buffer
		_ = rep.WriteText(&out)
		t.Fatalf("fix: %v\n%s", err, out.String())
	}
	if len(rep.Fixes) != len(brokenChecks) {
		t.Errorf("fixes %+v", rep.Fixes)
	}
	for i, name := range brokenChecks {
		if rep.Fixes[i].Name != name || rep.Fixes[i].Error != "" {
			t.Errorf("fix %d: %+v", i, rep.Fixes[i])
		}
	}
	var out bytes.Buffer
	_ = rep.WriteText(&out)
	text := out.String()
	for _, want := range []string{"[preflight] Before the fixes:", "\t[ERROR Swap]: ", "[preflight] Before -> after:", "Swap               fail     -> pass", "all 15 checks passed"} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
	if !strings.Contains(log.String(), "[fix Firewalld] stop and disable") || !strings.Contains(log.String(), "Running pre-flight checks again") {
		t.Errorf("log %q", log.String())
	}

	snap := f.snapshot()
	ran := len(f.ran)
	rep, err = run(t, f, c, n, Options{Fix: true})
	if err != nil || len(rep.Fixes) != 0 || rep.Before != nil {
		t.Fatalf("second --fix: %v, fixes %+v", err, rep.Fixes)
	}
	if f.snapshot() != snap || len(f.ran) != ran {
		t.Fatalf("second --fix changed the host: %q", f.ran[ran:])
	}
	out.Reset()
	_ = rep.WriteText(&out)
	if !strings.Contains(out.String(), "[preflight] Nothing to fix on node01: no changes made") {
		t.Errorf("second --fix text:\n%s", out.String())
	}
}

func TestRunDryRunChangesNothing(t *testing.T) {
	c, n, f := brokenHost(t)
	snap := f.snapshot()
	d := dryrun.New(f, dryrun.Options{})
	rep, err := run(t, d, c, n, Options{Fix: true, DryRun: true})
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if f.snapshot() != snap || len(f.ran) != 0 {
		t.Fatalf("dry run changed the host; ran %q", f.ran)
	}
	if len(rep.Fixes) != len(brokenChecks) || !rep.Fixes[0].Planned || rep.Before != nil {
		t.Fatalf("fixes %+v", rep.Fixes)
	}
	var plan bytes.Buffer
	if err := d.PrintPlan(&plan); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"stop unit firewalld.service", "write /etc/fstab", "write /etc/sysctl.d/99-kubeforge.conf", "hostnamectl set-hostname node01", "write /etc/hosts", "write /etc/chrony/chrony.conf", "restart unit chrony.service"} {
		if !strings.Contains(plan.String(), want) {
			t.Errorf("plan lacks %q:\n%s", want, plan.String())
		}
	}
	var out bytes.Buffer
	_ = rep.WriteText(&out)
	if !strings.Contains(out.String(), "Dry run: 6 fix(es) planned; nothing was changed on node01") {
		t.Errorf("text:\n%s", out.String())
	}
}

func TestIgnorePreflightErrors(t *testing.T) {
	c, n, f := brokenHost(t)
	rep, err := run(t, f, c, n, Options{IgnoreErrors: []string{"firewalld,SWAP", "sysctls", "Hostname,HostsFile"}})
	var fe *FailedError
	if !errors.As(err, &fe) || !reflect.DeepEqual(fe.Checks, []string{"TimeSync"}) {
		t.Fatalf("err %v", err)
	}
	if rep.Results[7].Name != "Swap" || rep.Results[7].Status != StatusIgnored || rep.Results[7].Severity != SeverityError {
		t.Errorf("swap result %+v", rep.Results[7])
	}
	var out bytes.Buffer
	_ = rep.WriteText(&out)
	if !strings.Contains(out.String(), "\t[WARNING Swap]: ") || !strings.Contains(out.String(), "(error ignored)") {
		t.Errorf("text:\n%s", out.String())
	}

	if _, err := run(t, f, c, n, Options{IgnoreErrors: []string{"all"}}); err != nil {
		t.Errorf("all: %v", err)
	}
	if _, err := run(t, f, c, n, Options{IgnoreErrors: []string{"Swapp"}}); err == nil || !strings.Contains(err.Error(), `unknown check "swapp"`) || !strings.Contains(err.Error(), "Swap") {
		t.Errorf("misspelt: %v", err)
	}
	if _, err := run(t, f, c, n, Options{IgnoreErrors: []string{"all,Swap"}}); err == nil {
		t.Error("all with names accepted")
	}

	// Ignored checks are left alone by --fix.
	rep, err = run(t, f, c, n, Options{Fix: true, IgnoreErrors: []string{"Swap"}})
	if err != nil {
		t.Fatalf("fix with Swap ignored: %v", err)
	}
	for _, fx := range rep.Fixes {
		if fx.Name == "Swap" {
			t.Errorf("ignored Swap was fixed")
		}
	}
	if !strings.Contains(f.file(fstab), "\n/swapfile none swap") {
		t.Errorf("fstab changed: %q", f.file(fstab))
	}
}

func TestJSONOutput(t *testing.T) {
	c, n, f := brokenHost(t)
	rep, _ := run(t, f, c, n, Options{})
	var out bytes.Buffer
	if err := rep.WriteJSON(&out); err != nil {
		t.Fatal(err)
	}
	var list []map[string]any
	if err := json.Unmarshal(out.Bytes(), &list); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if len(list) != 15 {
		t.Fatalf("%d elements", len(list))
	}
	byName := map[string]map[string]any{}
	for _, e := range list {
		for _, k := range []string{"name", "severity", "status", "message", "fixable"} {
			if _, ok := e[k]; !ok {
				t.Errorf("element %v lacks %q", e, k)
			}
		}
		byName[e["name"].(string)] = e
	}
	sw := byName["Swap"]
	if sw["severity"] != "error" || sw["status"] != "fail" || sw["fixable"] != true || !strings.Contains(sw["message"].(string), "/swapfile") {
		t.Errorf("Swap %v", sw)
	}
	if p := byName["Ports"]; p["status"] != "pass" || p["severity"] != "none" || p["fixable"] != false {
		t.Errorf("Ports %v", p)
	}

	rep, _ = run(t, f, c, n, Options{Fix: true})
	out.Reset()
	_ = rep.WriteJSON(&out)
	list = nil
	_ = json.Unmarshal(out.Bytes(), &list)
	for _, e := range list {
		if e["name"] == "Swap" && (e["before"] != "fail" || e["status"] != "pass" || !strings.Contains(e["fix"].(string), "swapoff")) {
			t.Errorf("Swap after fix %v", e)
		}
	}
}

type panicCheck struct{}

func (panicCheck) Name() string { return "Boom" }
func (panicCheck) Check(context.Context, host.Host) ([]error, []error) {
	var m map[string]int
	m["x"]++
	return nil, nil
}

type failingFix struct{}

func (failingFix) Name() string { return "Stubborn" }
func (failingFix) Check(context.Context, host.Host) ([]error, []error) {
	return nil, []error{errors.New("still wrong")}
}
func (failingFix) FixDescription() string               { return "try" }
func (failingFix) Fix(context.Context, host.Host) error { return errors.New("cannot") }

func TestRunSurvivesBrokenChecksAndFixes(t *testing.T) {
	c, n, f := brokenHost(t)
	rep, err := run(t, f, c, n, Options{Fix: true, Checks: func(*Env) []Checker { return []Checker{panicCheck{}, failingFix{}} }})
	var fe *FailedError
	if !errors.As(err, &fe) || !reflect.DeepEqual(fe.Checks, []string{"Boom", "Stubborn"}) {
		t.Fatalf("err %v", err)
	}
	if !strings.Contains(rep.Results[0].Message, "check crashed") {
		t.Errorf("panic result %+v", rep.Results[0])
	}
	if len(rep.Fixes) != 1 || rep.Fixes[0].Error != "cannot" {
		t.Errorf("fixes %+v", rep.Fixes)
	}
	var out bytes.Buffer
	_ = rep.WriteText(&out)
	if !strings.Contains(out.String(), "[FIX Stubborn]: try: FAILED: cannot") || !strings.Contains(out.String(), "Stubborn           fail     -> fail") {
		t.Errorf("text:\n%s", out.String())
	}
}

func TestRunRejectsBadInput(t *testing.T) {
	c, n, f := brokenHost(t)
	if _, err := Run(context.Background(), f, c, &config.Host{Name: "ghost"}, Options{}); err == nil || !strings.Contains(err.Error(), `"ghost"`) {
		t.Errorf("unknown node: %v", err)
	}
	if _, err := Run(context.Background(), f, c, n, Options{Firewall: "off"}); err == nil || !strings.Contains(err.Error(), `firewall mode "off"`) {
		t.Errorf("bad firewall mode: %v", err)
	}
	if _, err := Run(context.Background(), nil, c, n, Options{}); err == nil {
		t.Error("nil host accepted")
	}
}

// BenchmarkRunConverged measures one full check pass, the cost init and join pay
// before their first phase (against the fake host: the checks' own work).
func BenchmarkRunConverged(b *testing.B) {
	env, f := convergedHost(b, "node01")
	o := testOptions(Options{})
	for b.Loop() {
		if _, err := Run(context.Background(), f, env.Cluster, env.Node, o); err != nil {
			b.Fatal(err)
		}
	}
}
