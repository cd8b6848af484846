package preflight

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
)

// Checker is one preflight check. Name is stable: it is what operators pass to
// --ignore-preflight-errors and what scripts match in the JSON output.
//
// Check reports problems that may be tolerated as warnings and problems that make
// the host unfit as errors. An error that says what to do is worth more than a
// precise one: messages end with the action to take.
type Checker interface {
	Name() string
	Check(ctx context.Context, h host.Host) (warnings, errs []error)
}

// Fixer is implemented by checks that can put right what they find. Fix must be
// idempotent and leave nothing half-applied that a second run would not finish;
// it is only called after Check reported a problem. FixDescription says in one
// line what Fix does ("stop and disable firewalld.service"); an empty description
// means the check cannot fix what it found in the current configuration (for
// example SELinux with security.selinux=enforcing-keep).
type Fixer interface {
	Fix(ctx context.Context, h host.Host) error
	FixDescription() string
}

// Severity is how bad a check's outcome is before --ignore-preflight-errors.
type Severity string

// Status is a check's outcome after --ignore-preflight-errors.
type Status string

const (
	SeverityNone    Severity = "none"
	SeverityWarning Severity = "warning"
	SeverityError   Severity = "error"

	StatusPass    Status = "pass"
	StatusWarning Status = "warning"
	StatusFail    Status = "fail"
	// StatusIgnored is an error the operator chose to ignore.
	StatusIgnored Status = "ignored"
)

// Result is the outcome of one check.
type Result struct {
	Name     string   `json:"name"`
	Severity Severity `json:"severity"`
	Status   Status   `json:"status"`
	// Message joins the findings with "; " (empty when the check passed).
	Message string `json:"message"`
	// Fixable says whether --fix has something to apply for this check.
	Fixable bool `json:"fixable"`
	// FixDescription is what --fix would do (empty when not fixable).
	FixDescription string `json:"fixDescription,omitempty"`

	Warnings []string `json:"-"`
	Errors   []string `json:"-"`
}

// needsAttention reports whether --fix should act on the check: it failed or
// warned, and the operator did not ignore it.
func (r Result) needsAttention() bool { return r.Status == StatusFail || r.Status == StatusWarning }

// FixOutcome is what happened to one fix.
type FixOutcome struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Planned is set in a dry run: the fix was recorded, not applied.
	Planned bool   `json:"planned,omitempty"`
	Error   string `json:"error,omitempty"`
}

// Report is the outcome of a preflight run.
type Report struct {
	Host string `json:"host"`
	// OS is the detected distribution ("" when unknown).
	OS     string `json:"os,omitempty"`
	Family string `json:"family,omitempty"`
	// Results is the final state: after the fixes when fixes were applied.
	Results []Result `json:"results"`
	// Before is the state before the fixes; nil when no fix was applied.
	Before []Result `json:"before,omitempty"`
	// Fixes are the fixes applied (or planned, in a dry run), in order.
	Fixes []FixOutcome `json:"fixes,omitempty"`
	// FixRequested is set when the run was asked to fix (--fix).
	FixRequested bool `json:"fixRequested,omitempty"`
	DryRun       bool `json:"dryRun,omitempty"`
	// FixHint is Options.FixHint: how the text output says to apply fixes.
	FixHint string `json:"-"`
}

// DefaultFixHint is how `kubeforge preflight` applies fixes.
const DefaultFixHint = "`kubeforge preflight --fix`"

// Failed lists the checks whose errors were not ignored, in check order.
func (r Report) Failed() []string {
	var names []string
	for _, res := range r.Results {
		if res.Status == StatusFail {
			names = append(names, res.Name)
		}
	}
	return names
}

// FailedError is returned by Run when checks failed (errors not ignored).
type FailedError struct {
	Host   string
	Checks []string
}

func (e *FailedError) Error() string {
	return fmt.Sprintf("preflight on %s: %d check(s) failed: %s (fix them, run with --fix, or ignore them with --ignore-preflight-errors=NAME,...)",
		e.Host, len(e.Checks), strings.Join(e.Checks, ", "))
}

// Options tunes a run.
type Options struct {
	// Fix applies the fixes of the checks that failed or warned (except ignored
	// ones), then runs every check again.
	Fix bool
	// DryRun says that h records changes instead of making them (bootstrap/host/
	// dryrun): fixes are planned, and checks are not run again, because nothing
	// changed on the host.
	DryRun bool
	// IgnoreErrors are check names whose errors become warnings ("all" for every
	// check). Names are case-insensitive; an unknown name is an error, because a
	// misspelt ignore that silently ignores nothing surprises later.
	IgnoreErrors []string
	// Firewall and SELinux override spec.security of the config ("" keeps it).
	Firewall config.FirewallMode
	SELinux  config.SELinuxMode
	// Log receives progress lines ("[preflight] ...", "[fix Name] ..."); nil
	// discards them. The report itself is printed by the caller (WriteText/JSON).
	Log io.Writer
	// Checks replaces the standard list (tests).
	Checks func(*Env) []Checker
	// FixHint says how the operator applies the fixes, in the report's text
	// ("`kubeforge preflight --fix`" when empty): join says to re-run the join
	// command with --fix, which works on a host the hosts table does not list.
	FixHint string
	// Now is the clock for backup file names; nil means time.Now.
	Now func() time.Time
}

// Run checks host h, which is node of cluster, and fixes what it can when asked.
// The error is a *FailedError when errors remain that were not ignored; other
// errors mean the run itself could not happen (bad options).
//
// init and join call it as their first phase.
func Run(ctx context.Context, h host.Host, cluster *config.Cluster, node *config.Host, opts Options) (Report, error) {
	if h == nil || cluster == nil || node == nil {
		return Report{}, errors.New("preflight: host, cluster and node are required")
	}
	if _, ok := cluster.Host(node.Name); !ok {
		return Report{}, fmt.Errorf("preflight: node %q is not a host of cluster %q", node.Name, cluster.Metadata.Name)
	}
	log := opts.Log
	if log == nil {
		log = io.Discard
	}
	env, err := NewEnv(cluster, node, opts)
	if err != nil {
		return Report{}, err
	}
	build := opts.Checks
	if build == nil {
		build = Checks
	}
	checks := build(env)
	ignore, err := parseIgnore(opts.IgnoreErrors, checks)
	if err != nil {
		return Report{}, err
	}

	rep := Report{Host: h.Name(), FixRequested: opts.Fix, DryRun: opts.DryRun, FixHint: opts.FixHint}
	env.Detect(ctx, h)
	if env.OS != nil {
		rep.OS, rep.Family = env.OS.OS().String(), env.OS.Family()
	}
	fmt.Fprintf(log, "[preflight] Running pre-flight checks on %s%s\n", h.Name(), osSuffix(rep))
	rep.Results = runChecks(ctx, h, checks, ignore)
	if !opts.Fix {
		return rep, rep.err()
	}

	var todo []Checker
	for i, c := range checks {
		if rep.Results[i].needsAttention() && rep.Results[i].Fixable {
			todo = append(todo, c)
		}
	}
	if len(todo) == 0 {
		return rep, rep.err() // WriteText says that nothing was changed
	}
	verb := "Fixing"
	if opts.DryRun {
		verb = "Planning fixes for"
	}
	fmt.Fprintf(log, "[preflight] %s %d check(s) on %s\n", verb, len(todo), h.Name())
	for _, c := range todo {
		f := c.(Fixer)
		out := FixOutcome{Name: c.Name(), Description: f.FixDescription(), Planned: opts.DryRun}
		if err := f.Fix(ctx, h); err != nil {
			out.Error = err.Error()
			fmt.Fprintf(log, "[fix %s] %s: FAILED: %v\n", out.Name, out.Description, err)
		} else if opts.DryRun {
			fmt.Fprintf(log, "[fix %s] would %s\n", out.Name, out.Description)
		} else {
			fmt.Fprintf(log, "[fix %s] %s: done\n", out.Name, out.Description)
		}
		rep.Fixes = append(rep.Fixes, out)
	}
	if opts.DryRun {
		// Nothing changed, so the checks would only say the same again.
		return rep, rep.dryRunErr()
	}
	fmt.Fprintf(log, "[preflight] Running pre-flight checks again on %s\n", h.Name())
	rep.Before = rep.Results
	env.Detect(ctx, h)
	rep.Results = runChecks(ctx, h, checks, ignore)
	return rep, rep.err()
}

func osSuffix(rep Report) string {
	if rep.OS == "" {
		return ""
	}
	return fmt.Sprintf(" (%s, %s family)", rep.OS, rep.Family)
}

func (r Report) err() error {
	if failed := r.Failed(); len(failed) > 0 {
		return &FailedError{Host: r.Host, Checks: failed}
	}
	return nil
}

// dryRunErr fails a dry run only for errors the plan does not address: a check
// that cannot be fixed, or whose fix could not even be planned.
func (r Report) dryRunErr() error {
	planned := map[string]bool{}
	for _, f := range r.Fixes {
		if f.Error == "" {
			planned[f.Name] = true
		}
	}
	var left []string
	for _, name := range r.Failed() {
		if !planned[name] {
			left = append(left, name)
		}
	}
	if len(left) > 0 {
		return &FailedError{Host: r.Host, Checks: left}
	}
	return nil
}

// runChecks runs every check in order. A panic in one check must not hide the
// results of the others, so it is turned into that check's error.
func runChecks(ctx context.Context, h host.Host, checks []Checker, ignore func(string) bool) []Result {
	out := make([]Result, 0, len(checks))
	for _, c := range checks {
		warns, errs := safeCheck(ctx, h, c)
		r := Result{Name: c.Name(), Severity: SeverityNone, Status: StatusPass}
		for _, w := range warns {
			r.Warnings = append(r.Warnings, w.Error())
		}
		for _, e := range errs {
			r.Errors = append(r.Errors, e.Error())
		}
		switch {
		case len(errs) > 0:
			r.Severity, r.Status = SeverityError, StatusFail
			if ignore(r.Name) {
				r.Status = StatusIgnored
			}
		case len(warns) > 0:
			r.Severity, r.Status = SeverityWarning, StatusWarning
		}
		r.Message = strings.Join(append(slices.Clone(r.Errors), r.Warnings...), "; ")
		if f, ok := c.(Fixer); ok && r.Status != StatusPass {
			if d := f.FixDescription(); d != "" {
				r.Fixable, r.FixDescription = true, d
			}
		}
		out = append(out, r)
	}
	return out
}

func safeCheck(ctx context.Context, h host.Host, c Checker) (warns, errs []error) {
	defer func() {
		if p := recover(); p != nil {
			warns, errs = nil, []error{fmt.Errorf("check crashed: %v", p)}
		}
	}()
	return c.Check(ctx, h)
}

// parseIgnore accepts check names (any case) and "all"; values may hold commas.
func parseIgnore(values []string, checks []Checker) (func(string) bool, error) {
	known := map[string]string{}
	for _, c := range checks {
		known[strings.ToLower(c.Name())] = c.Name()
	}
	set := map[string]bool{}
	all := false
	for _, v := range values {
		for _, n := range strings.Split(v, ",") {
			n = strings.ToLower(strings.TrimSpace(n))
			switch {
			case n == "":
			case n == "all":
				all = true
			case known[n] != "":
				set[n] = true
			default:
				names := make([]string, 0, len(known))
				for _, v := range known {
					names = append(names, v)
				}
				sort.Strings(names)
				return nil, fmt.Errorf("--ignore-preflight-errors: unknown check %q (checks: %s, or all)", n, strings.Join(names, ", "))
			}
		}
	}
	if all && len(set) > 0 {
		return nil, errors.New("--ignore-preflight-errors: \"all\" cannot be combined with check names")
	}
	return func(name string) bool { return all || set[strings.ToLower(name)] }, nil
}
