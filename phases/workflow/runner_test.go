package workflow

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// trace records which phases ran, in order.
type trace struct{ ran []string }

func (t *trace) run(name string) func(RunData) error {
	return func(RunData) error { t.ran = append(t.ran, name); return nil }
}

func (t *trace) got() string { return strings.Join(t.ran, " ") }

// testTree is a small init-like workflow: a leaf, a group with its own Run and two
// children (one of them a nested group), and a last leaf.
func testTree(t *trace) []Phase {
	return []Phase{
		{Name: "preflight", Run: t.run("preflight")},
		{Name: "certs", Run: t.run("certs"), Phases: []Phase{
			{Name: "ca", Run: t.run("certs/ca")},
			{Name: "apiserver", Aliases: []string{"api"}, Run: t.run("certs/apiserver")},
			{Name: "etcd", Phases: []Phase{
				{Name: "server", Run: t.run("certs/etcd/server")},
				{Name: "peer", Run: t.run("certs/etcd/peer")},
			}},
		}},
		{Name: "overlay", Run: t.run("overlay")},
	}
}

func newTestRunner(phases []Phase) (*Runner, *bytes.Buffer) {
	r := NewRunner()
	for _, p := range phases {
		r.AppendPhase(p)
	}
	out := &bytes.Buffer{}
	r.SetOutput(out)
	return r, out
}

func TestRunOrderNested(t *testing.T) {
	tr := &trace{}
	r, out := newTestRunner(testTree(tr))
	if err := r.Run(nil); err != nil {
		t.Fatal(err)
	}
	want := "preflight certs certs/ca certs/apiserver certs/etcd/server certs/etcd/peer overlay"
	if tr.got() != want {
		t.Errorf("order:\n got %s\nwant %s", tr.got(), want)
	}
	// Every phase reports, and a group reports after its nested phases.
	var order []string
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if !strings.Contains(line, "] done in ") {
			t.Errorf("unexpected progress line %q", line)
		}
		order = append(order, strings.TrimPrefix(line[:strings.Index(line, "]")], "["))
	}
	wantLines := "preflight certs/ca certs/apiserver certs/etcd/server certs/etcd/peer certs/etcd certs overlay"
	if got := strings.Join(order, " "); got != wantLines {
		t.Errorf("progress lines:\n got %s\nwant %s", got, wantLines)
	}
}

func TestRunIfSkipsSubtree(t *testing.T) {
	tr := &trace{}
	phases := testTree(tr)
	var sawData RunData
	phases[1].RunIf = func(d RunData) (bool, error) { sawData = d; return false, nil }
	r, out := newTestRunner(phases)
	r.SetDataInitializer(func(*cobra.Command, []string) (RunData, error) { return "the-data", nil })
	if err := r.Run(nil); err != nil {
		t.Fatal(err)
	}
	if tr.got() != "preflight overlay" {
		t.Errorf("ran %q, want the certs group and all its children vetoed", tr.got())
	}
	if sawData != "the-data" {
		t.Errorf("RunIf got %v, want the run data", sawData)
	}
	if !strings.Contains(out.String(), "[certs] skipped (not needed here)") {
		t.Errorf("output does not say certs was not needed:\n%s", out)
	}
	if st := timingOf(t, r, "certs").Status; st != StatusNotNeeded {
		t.Errorf("certs status %q, want %q", st, StatusNotNeeded)
	}
}

func TestRunIfErrorIsWrapped(t *testing.T) {
	tr := &trace{}
	phases := testTree(tr)
	cause := errors.New("cannot read config")
	phases[2].RunIf = func(RunData) (bool, error) { return false, cause }
	r, _ := newTestRunner(phases)
	err := r.Run(nil)
	if !errors.Is(err, cause) || !strings.Contains(err.Error(), "run condition for phase overlay") {
		t.Fatalf("got %v, want wrapped cause naming the phase", err)
	}
}

func TestAncestorRunIfAppliesToFilteredPhase(t *testing.T) {
	tr := &trace{}
	phases := testTree(tr)
	phases[1].Phases[2].RunIf = func(RunData) (bool, error) { return false, nil } // certs/etcd
	r, _ := newTestRunner(phases)
	r.Options.FilterPhases = []string{"certs/etcd/peer"}
	if err := r.Run(nil); err != nil {
		t.Fatal(err)
	}
	if tr.got() != "" {
		t.Errorf("ran %q, but the certs/etcd group said no", tr.got())
	}
}

func TestSkipPhases(t *testing.T) {
	tr := &trace{}
	r, out := newTestRunner(testTree(tr))
	r.Options.SkipPhases = []string{"certs/etcd", "certs/apiserver", "overlay"}
	if err := r.Run(nil); err != nil {
		t.Fatal(err)
	}
	if want := "preflight certs certs/ca"; tr.got() != want {
		t.Errorf("ran %q, want %q", tr.got(), want)
	}
	for _, name := range []string{"certs/etcd", "certs/apiserver", "overlay"} {
		if !strings.Contains(out.String(), "["+name+"] skipped (--skip-phases)") {
			t.Errorf("no skip line for %s in:\n%s", name, out)
		}
	}
	// The nested phases of a skipped group are not reported one by one.
	if strings.Contains(out.String(), "certs/etcd/peer") {
		t.Errorf("skipped group's children reported:\n%s", out)
	}
}

func TestSkipPhasesUnknownName(t *testing.T) {
	tr := &trace{}
	r, _ := newTestRunner(testTree(tr))
	initCalled := false
	r.SetDataInitializer(func(*cobra.Command, []string) (RunData, error) { initCalled = true; return nil, nil })
	r.Options.SkipPhases = []string{"certs/apiserverr"}
	err := r.Run(nil)
	if err == nil {
		t.Fatal("unknown phase accepted")
	}
	for _, want := range []string{`"certs/apiserverr"`, "--skip-phases", "preflight, certs, certs/ca, certs/apiserver, certs/etcd, certs/etcd/server, certs/etcd/peer, overlay"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if initCalled || len(tr.ran) > 0 {
		t.Error("a bad --skip-phases must be rejected before anything is set up or run")
	}
}

func TestErrorWrappingStopsRun(t *testing.T) {
	tr := &trace{}
	phases := testTree(tr)
	cause := errors.New("disk full")
	phases[1].Phases[1].Run = func(RunData) error { return cause }
	r, out := newTestRunner(phases)
	err := r.Run(nil)
	if !errors.Is(err, cause) {
		t.Fatalf("error %v does not wrap the cause", err)
	}
	if want := "error execution phase certs/apiserver: disk full"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if want := "preflight certs certs/ca"; tr.got() != want {
		t.Errorf("ran %q, want the run to stop at the failure (%q)", tr.got(), want)
	}
	if !strings.Contains(out.String(), "[certs/apiserver] failed after") {
		t.Errorf("no failure line:\n%s", out)
	}
	for _, name := range []string{"certs/apiserver", "certs"} {
		if st := timingOf(t, r, name).Status; st != StatusFailed {
			t.Errorf("%s status %q, want failed", name, st)
		}
	}
}

func TestNotImplementedFails(t *testing.T) {
	r, out := newTestRunner([]Phase{{Name: "etcd", Run: NotImplemented}, {Name: "after", Run: func(RunData) error {
		t.Error("phase after a not-implemented one ran")
		return nil
	}}})
	err := r.Run(nil)
	if !errors.Is(err, ErrNotImplemented) {
		t.Fatalf("got %v, want ErrNotImplemented", err)
	}
	if err.Error() != "error execution phase etcd: not implemented yet" {
		t.Errorf("message %q", err)
	}
	if strings.Contains(out.String(), "done") {
		t.Errorf("output claims success:\n%s", out)
	}
}

func TestTimingsRecorded(t *testing.T) {
	clock := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	work := func(d time.Duration) func(RunData) error {
		return func(RunData) error { clock = clock.Add(d); return nil }
	}
	r, out := newTestRunner([]Phase{
		{Name: "preflight", Run: work(250 * time.Millisecond)},
		{Name: "certs", Run: work(time.Second), Phases: []Phase{
			{Name: "ca", Run: work(2 * time.Second)},
			{Name: "apiserver", Run: work(1500 * time.Millisecond)},
		}},
	})
	r.now = func() time.Time { return clock }
	if err := r.Run(nil); err != nil {
		t.Fatal(err)
	}
	want := []PhaseTiming{
		{Name: "preflight", Status: StatusDone, Duration: 250 * time.Millisecond},
		{Name: "certs", Group: true, Status: StatusDone, Duration: 4500 * time.Millisecond},
		{Name: "certs/ca", Status: StatusDone, Duration: 2 * time.Second},
		{Name: "certs/apiserver", Status: StatusDone, Duration: 1500 * time.Millisecond},
	}
	got := r.Timings()
	if len(got) != len(want) {
		t.Fatalf("timings %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("timing %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	for _, line := range []string{"[preflight] done in 250ms", "[certs/ca] done in 2.00s", "[certs] done in 4.50s"} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("missing %q in:\n%s", line, out)
		}
	}
	var table bytes.Buffer
	if err := WriteTimings(&table, got); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"PHASE", "  certs/apiserver", "1.50s", "total", "4.75s"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, table.String())
		}
	}
}

func TestUnchangedConvention(t *testing.T) {
	for _, tc := range []struct {
		name      string
		caResult  error
		wantGroup Status
	}{
		{"all unchanged", Unchanged("ca.crt valid until 2035"), StatusUnchanged},
		{"one changed", nil, StatusDone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, out := newTestRunner([]Phase{{Name: "certs", Phases: []Phase{
				{Name: "ca", Run: func(RunData) error { return tc.caResult }},
				{Name: "apiserver", Run: func(RunData) error { return ErrUnchanged }},
			}}})
			if err := r.Run(nil); err != nil {
				t.Fatalf("unchanged must count as success, got %v", err)
			}
			if st := timingOf(t, r, "certs/apiserver").Status; st != StatusUnchanged {
				t.Errorf("apiserver status %q", st)
			}
			if st := timingOf(t, r, "certs").Status; st != tc.wantGroup {
				t.Errorf("group status %q, want %q", st, tc.wantGroup)
			}
			if !strings.Contains(out.String(), "[certs/apiserver] unchanged in ") {
				t.Errorf("no unchanged line:\n%s", out)
			}
			reason := regexp.MustCompile(`(?m)^\[certs/ca\] unchanged in [0-9.µnms]+: ca.crt valid until 2035$`)
			if tc.caResult != nil && !reason.MatchString(out.String()) {
				t.Errorf("reason not printed:\n%s", out)
			}
		})
	}
	if err := Unchanged("x"); !errors.Is(err, ErrUnchanged) {
		t.Error("Unchanged does not match ErrUnchanged")
	}
}

// fullData exercises every opt-in capability of run data.
type fullData struct {
	log    *Logger
	ctx    context.Context
	closed int
}

func (d *fullData) Logger() *Logger          { return d.log }
func (d *fullData) Context() context.Context { return d.ctx }
func (d *fullData) Close() error             { d.closed++; return errors.New("close failed") }

func TestRunDataCapabilities(t *testing.T) {
	var out bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := &fullData{log: NewLogger(&out), ctx: ctx}
	inits := 0
	r := NewRunner()
	r.AppendPhase(Phase{Name: "certs", Phases: []Phase{{Name: "ca", Run: func(rd RunData) error {
		rd.(*fullData).Logger().Printf("generating %s\nwith a second line", "ca")
		return nil
	}}}})
	r.AppendPhase(Phase{Name: "interrupt", Run: func(RunData) error { cancel(); return nil }})
	r.AppendPhase(Phase{Name: "never", Run: func(RunData) error { t.Error("ran after cancel"); return nil }})
	r.SetDataInitializer(func(*cobra.Command, []string) (RunData, error) { inits++; return d, nil })

	if got, _ := r.InitData(nil); got != d {
		t.Fatal("InitData did not return the initializer's data")
	}
	err := r.Run(nil)
	if inits != 1 {
		t.Errorf("initializer called %d times, want once", inits)
	}
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "phase never") {
		t.Errorf("got %v, want the run stopped before phase never", err)
	}
	if d.closed != 1 || !strings.Contains(err.Error(), "close failed") {
		t.Errorf("data closed %d times, err %v: want one Close with its error reported", d.closed, err)
	}
	for _, want := range []string{"[certs/ca] generating ca\n[certs/ca] with a second line\n", "[certs/ca] done in"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("logger output lacks %q:\n%s", want, out.String())
		}
	}
	if d.log.Phase() != "" {
		t.Errorf("logger still tagged %q after the run", d.log.Phase())
	}
}

func TestDataInitError(t *testing.T) {
	r, _ := newTestRunner([]Phase{{Name: "a", Run: func(RunData) error { t.Error("ran without data"); return nil }}})
	r.SetDataInitializer(func(*cobra.Command, []string) (RunData, error) { return nil, errors.New("config: no such file") })
	if err := r.Run(nil); err == nil || err.Error() != "config: no such file" {
		t.Errorf("got %v", err)
	}
}

func TestInvalidTrees(t *testing.T) {
	ok := func(RunData) error { return nil }
	for _, tc := range []struct {
		phases []Phase
		want   string
	}{
		{[]Phase{{Name: "a", Run: ok}, {Name: "a", Run: ok}}, `name or alias "a" is already used by phase "a"`},
		{[]Phase{{Name: "a", Run: ok}, {Name: "b", Aliases: []string{"a"}, Run: ok}}, `alias "a" is already used`},
		{[]Phase{{Name: "g", Phases: []Phase{{Name: "all", Run: ok}}}}, `phase "g/all": the name "all" is reserved`},
		{[]Phase{{Name: "Certs", Run: ok}}, `invalid name or alias "Certs"`},
		{[]Phase{{Name: "a/b", Run: ok}}, `invalid name`},
		{[]Phase{{Name: "g", Phases: []Phase{{Name: "leaf"}}}}, `phase "g/leaf" has neither a Run func nor nested phases`},
	} {
		t.Run(tc.want, func(t *testing.T) {
			r, _ := newTestRunner(tc.phases)
			err := r.Run(nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%+v: got %v, want %q", tc.phases, err, tc.want)
			}
		})
	}
}

func TestPhaseNamesAndHelp(t *testing.T) {
	phases := testTree(&trace{})
	phases[2].Hidden = true
	r, _ := newTestRunner(phases)
	names, err := r.PhaseNames()
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 8 || names[6] != "certs/etcd/peer" || names[7] != "overlay" {
		t.Errorf("names %v", names)
	}
	help := r.Help("init")
	if !strings.Contains(help, "\n      server") || strings.Contains(help, "overlay") {
		t.Errorf("help should indent nested phases and omit hidden ones:\n%s", help)
	}
}

func timingOf(t *testing.T, r *Runner, name string) PhaseTiming {
	t.Helper()
	for _, pt := range r.Timings() {
		if pt.Name == name {
			return pt
		}
	}
	t.Fatalf("no timing for %s in %+v", name, r.Timings())
	return PhaseTiming{}
}

// BenchmarkRunnerOverhead measures what the runner itself adds per run of an
// init-sized tree (about 40 phases) whose phases do nothing.
func BenchmarkRunnerOverhead(b *testing.B) {
	var phases []Phase
	for g := 0; g < 8; g++ {
		group := Phase{Name: fmt.Sprintf("group%d", g)}
		for l := 0; l < 5; l++ {
			group.Phases = append(group.Phases, Phase{Name: fmt.Sprintf("leaf%d", l), Run: func(RunData) error { return nil }})
		}
		phases = append(phases, group)
	}
	r, _ := newTestRunner(phases)
	r.SetOutput(io.Discard)
	b.ReportAllocs()
	for b.Loop() {
		if err := r.Run(nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(r.Timings())), "phases/run")
}

func TestOutcome(t *testing.T) {
	var buf bytes.Buffer
	log := NewLogger(&buf)
	if err := Outcome(log, false, "etcd.service is running"); !errors.Is(err, ErrUnchanged) || err.Error() != "etcd.service is running" {
		t.Fatalf("unchanged outcome: %v", err)
	}
	if buf.Len() != 0 {
		t.Fatalf("an unchanged outcome must not be logged as work done: %q", buf.String())
	}
	if err := Outcome(log, true, "etcd.service started"); err != nil || !strings.Contains(buf.String(), "etcd.service started") {
		t.Fatalf("changed outcome: %v, log %q", err, buf.String())
	}
}
