package apply

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// summary is the results in configuration order.
func (r *run) summary() []HostResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]HostResult, 0, len(r.results))
	for _, h := range r.o.Cluster.Spec.Hosts {
		out = append(out, *r.results[h.Name])
	}
	return out
}

// printSummary writes the table apply ends with, and under it each failure:
// host, step and error.
func printSummary(w io.Writer, res []HostResult, total time.Duration) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tROLES\tACTION\tRESULT\tTIME")
	for _, r := range res {
		roles := make([]string, len(r.Roles))
		for i, ro := range r.Roles {
			roles[i] = string(ro)
		}
		action := r.Action
		if action == "" {
			action = "-"
		}
		elapsed := "-"
		if r.Elapsed > 0 {
			elapsed = r.Elapsed.Round(100 * time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, strings.Join(roles, ","), action, r.Outcome, elapsed)
	}
	fmt.Fprintf(tw, "total\t\t\t\t%s\n", total.Round(100*time.Millisecond))
	tw.Flush()
	for _, r := range res {
		if r.Outcome == Failed {
			fmt.Fprintf(w, "%s failed in %s: %v\n", r.Name, r.Phase, r.Err)
		}
	}
}
