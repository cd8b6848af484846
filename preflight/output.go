package preflight

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// WriteText prints the report the way kubeadm does ("[WARNING Name]: ...",
// "[ERROR Name]: ..."), with before/after and the fixes when fixes ran.
func (r Report) WriteText(w io.Writer) error {
	ew := &errWriter{w: w}
	switch {
	case r.Before != nil:
		fmt.Fprintln(ew, "[preflight] Before the fixes:")
		writeFindings(ew, r.Before, "")
		writeFailedFixes(ew, r.Fixes)
		fmt.Fprintln(ew, "[preflight] Before -> after:")
		for i, after := range r.Results {
			if i >= len(r.Before) {
				break
			}
			before := r.Before[i]
			if before.Status != StatusPass || after.Status != StatusPass {
				fmt.Fprintf(ew, "\t%-18s %-8s -> %s\n", after.Name, before.Status, after.Status)
			}
		}
		fmt.Fprintln(ew, "[preflight] After the fixes:")
		writeFindings(ew, r.Results, r.fixHint())
	case r.DryRun && len(r.Fixes) > 0:
		writeFindings(ew, r.Results, r.fixHint())
		writeFailedFixes(ew, r.Fixes)
		fmt.Fprintf(ew, "[preflight] Dry run: %d fix(es) planned; nothing was changed on %s\n", len(r.Fixes), r.Host)
	default:
		writeFindings(ew, r.Results, r.fixHint())
		if r.FixRequested {
			if len(r.Failed()) == 0 && !hasFixable(r.Results) {
				fmt.Fprintf(ew, "[preflight] Nothing to fix on %s: no changes made\n", r.Host)
			} else {
				fmt.Fprintf(ew, "[preflight] None of the problems on %s can be fixed automatically: no changes made\n", r.Host)
			}
		}
	}
	writeSummary(ew, r)
	return ew.err
}

func hasFixable(rs []Result) bool {
	for _, r := range rs {
		if r.Fixable && r.needsAttention() {
			return true
		}
	}
	return false
}

// writeFailedFixes lists the fixes that failed; the ones that worked are in the
// progress log (Options.Log) and in the before/after table.
func writeFailedFixes(w io.Writer, fixes []FixOutcome) {
	for _, f := range fixes {
		if f.Error != "" {
			fmt.Fprintf(w, "\t[FIX %s]: %s: FAILED: %s\n", f.Name, f.Description, f.Error)
		}
	}
}

// fixHint is how the operator applies the fixes ("" when hints are off).
func (r Report) fixHint() string {
	if r.FixHint != "" {
		return r.FixHint
	}
	return DefaultFixHint
}

// writeFindings prints warnings first, then the fatal errors, as kubeadm does,
// and with fixHint set how to fix or ignore them.
func writeFindings(w io.Writer, results []Result, fixHint string) {
	var fatal []Result
	for _, r := range results {
		for _, m := range r.Warnings {
			fmt.Fprintf(w, "\t[WARNING %s]: %s\n", r.Name, m)
		}
		if r.Status == StatusIgnored {
			for _, m := range r.Errors {
				fmt.Fprintf(w, "\t[WARNING %s]: %s (error ignored)\n", r.Name, m)
			}
		}
		if r.Status == StatusFail {
			fatal = append(fatal, r)
		}
	}
	if len(fatal) == 0 {
		return
	}
	fmt.Fprintln(w, "[preflight] Some fatal errors occurred:")
	var names, fixable []string
	for _, r := range fatal {
		for _, m := range r.Errors {
			fmt.Fprintf(w, "\t[ERROR %s]: %s\n", r.Name, m)
		}
		names = append(names, r.Name)
		if r.Fixable {
			fixable = append(fixable, r.Name)
		}
	}
	if fixHint == "" {
		return
	}
	if len(fixable) > 0 {
		fmt.Fprintf(w, "[preflight] %s can fix: %s\n", fixHint, strings.Join(fixable, ", "))
	}
	fmt.Fprintf(w, "[preflight] If you know what you are doing, you can make a check non-fatal with `--ignore-preflight-errors=%s`\n", strings.Join(names, ","))
}

func writeSummary(w io.Writer, r Report) {
	failed := r.Failed()
	warned := 0
	for _, res := range r.Results {
		if res.Status == StatusWarning || res.Status == StatusIgnored {
			warned++
		}
	}
	switch {
	case len(failed) > 0 && r.DryRun && len(r.Fixes) > 0:
		fmt.Fprintf(w, "[preflight] %s: %d check(s) fail now; the plan addresses those with a fix\n", r.Host, len(failed))
	case len(failed) > 0:
		fmt.Fprintf(w, "[preflight] %s: %d of %d checks failed: %s\n", r.Host, len(failed), len(r.Results), strings.Join(failed, ", "))
	case warned > 0:
		fmt.Fprintf(w, "[preflight] %s: all %d checks passed, %d with warnings\n", r.Host, len(r.Results), warned)
	default:
		fmt.Fprintf(w, "[preflight] %s: all %d checks passed\n", r.Host, len(r.Results))
	}
}

// JSONResult is one element of the JSON output.
type JSONResult struct {
	Name     string   `json:"name"`
	Severity Severity `json:"severity"`
	Status   Status   `json:"status"`
	Message  string   `json:"message"`
	Fixable  bool     `json:"fixable"`
	// With --fix: the status before the fixes, and the fix applied (or planned in
	// a dry run) for this check, with its error if it failed.
	Before   Status `json:"before,omitempty"`
	Fix      string `json:"fix,omitempty"`
	FixError string `json:"fixError,omitempty"`
	Planned  bool   `json:"planned,omitempty"`
}

// JSON is the report as the list `--output json` prints: one element per check,
// in check order, for the final state.
func (r Report) JSON() []JSONResult {
	fixes := map[string]FixOutcome{}
	for _, f := range r.Fixes {
		fixes[f.Name] = f
	}
	out := make([]JSONResult, 0, len(r.Results))
	for i, res := range r.Results {
		j := JSONResult{Name: res.Name, Severity: res.Severity, Status: res.Status, Message: res.Message, Fixable: res.Fixable}
		if i < len(r.Before) {
			j.Before = r.Before[i].Status
		}
		if f, ok := fixes[res.Name]; ok {
			j.Fix, j.FixError, j.Planned = f.Description, f.Error, f.Planned
		}
		out = append(out, j)
	}
	return out
}

// WriteJSON prints JSON() indented.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r.JSON())
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return len(p), nil
	}
	_, e.err = e.w.Write(p)
	return len(p), nil
}
