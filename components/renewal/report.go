package renewal

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kubeforge/kubeforge/certs"
)

// Report is what `kubeforge certs renew` did on a host: the renewal, the units
// that read the renewed files, and what became of each (reloaded by itself, or
// restarted).
type Report struct {
	Renewal *certs.RenewResult `json:"renewal"`
	Plan    Plan               `json:"plan"`
	// NoRestart: the restarts and checks were not asked for (--no-restart).
	NoRestart bool    `json:"noRestart,omitempty"`
	Restart   *Result `json:"restart,omitempty"`
	// Total is the wall time of the renewal and the restarts.
	Total time.Duration `json:"total,omitempty"`
}

// WriteText prints the report for people.
func (r *Report) WriteText(w io.Writer) error {
	dry := r.Renewal != nil && r.Renewal.DryRun
	if r.Renewal != nil {
		verb := "renewed"
		if dry {
			verb = "would renew"
		}
		tw := tabwriter.NewWriter(w, 10, 4, 3, ' ', 0)
		for _, c := range r.Renewal.Certificates {
			if c.Skipped != "" {
				fmt.Fprintf(tw, "%s\tskipped: %s\n", c.Name, c.Skipped)
				continue
			}
			fmt.Fprintf(tw, "%s\t%s: %s, expires %s (was %s)\n", c.Name, verb, c.Path, stamp(c.NewNotAfter), stamp(c.OldNotAfter))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if b := r.Renewal.BackupDir; b != "" {
			if dry {
				fmt.Fprintf(w, "The replaced files would be backed up to %s.\n", b)
			} else {
				fmt.Fprintf(w, "The replaced files are backed up in %s.\n", b)
			}
		}
	}
	restarted := map[string]Restarted{}
	reloaded := map[string]Reloaded{}
	if r.Restart != nil {
		for _, rs := range r.Restart.Restarted {
			restarted[rs.Unit] = rs
		}
		for _, rl := range r.Restart.Reloaded {
			reloaded[rl.Unit] = rl
		}
	}
	if len(r.Plan.Steps) == 0 {
		fmt.Fprintln(w, "No running unit reads a renewed file: nothing to restart.")
	}
	var pending []string
	for _, s := range r.Plan.Steps {
		reads := strings.Join(s.Reads, ", ")
		rs, ok := restarted[s.Unit]
		rl, reloadedOK := reloaded[s.Unit]
		switch {
		case s.Skip != "":
			fmt.Fprintf(w, "%s (reads %s): not restarted: %s\n", s.Unit, reads, s.Skip)
		case dry && s.Reload:
			fmt.Fprintf(w, "%s (reads %s): would not restart: it reloads them by itself; would check that it serves the renewed certificates and is healthy\n", s.Unit, reads)
		case dry:
			fmt.Fprintf(w, "%s (reads %s): would restart, then wait until it is healthy\n", s.Unit, reads)
		case reloadedOK:
			fmt.Fprintf(w, "%s (reads %s): not restarted: reloaded them by itself, healthy after %s (pid %d%s)%s\n",
				s.Unit, reads, rl.Took.Round(10*time.Millisecond), rl.PID, pidChange(rl), servedText(rl))
		case ok:
			fmt.Fprintf(w, "%s (reads %s): %s, healthy after %s (pid %d -> %d)\n", s.Unit, reads, rs.How, rs.Took.Round(10*time.Millisecond), rs.OldPID, rs.NewPID)
		case s.Reload && r.NoRestart:
			fmt.Fprintf(w, "%s (reads %s): not restarted: it reloads them by itself (not checked: --no-restart)\n", s.Unit, reads)
		case s.Reload:
			fmt.Fprintf(w, "%s (reads %s): not checked\n", s.Unit, reads)
		default:
			pending = append(pending, s.Unit)
			fmt.Fprintf(w, "%s (reads %s): not restarted\n", s.Unit, reads)
		}
	}
	if r.NoRestart && len(pending) > 0 {
		fmt.Fprintf(w, "Restarts skipped (--no-restart): restart %s one at a time, in this order, to load the new files.\n", strings.Join(pending, ", "))
	}
	if !dry && r.Total > 0 {
		fmt.Fprintf(w, "Renewal and restarts took %s.\n", r.Total.Round(10*time.Millisecond))
	}
	return nil
}

// pidChange notes a main process that changed although kubeforge did not
// restart the unit.
func pidChange(rl Reloaded) string {
	if rl.NewPID == rl.PID {
		return ", unchanged"
	}
	return fmt.Sprintf(" -> %d: restarted by something else meanwhile", rl.NewPID)
}

// servedText says what a reloaded unit was seen serving and which renewed
// files it re-reads per connection.
func servedText(rl Reloaded) string {
	var b strings.Builder
	for _, sv := range rl.Served {
		fmt.Fprintf(&b, "; serves the renewed %s (serial %s) at %s", sv.Name, sv.Serial, sv.URL)
	}
	if len(rl.PerConnection) > 0 {
		fmt.Fprintf(&b, "; reads %s again for each new connection", strings.Join(rl.PerConnection, ", "))
	}
	return b.String()
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
