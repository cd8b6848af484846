package status

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
)

// WriteText prints one host's report for a person.
func (r *Report) WriteText(w io.Writer, now time.Time) error {
	var b strings.Builder
	roles := strings.Join(r.Roles, ", ")
	if roles == "" {
		roles = "not in the configuration"
	}
	fmt.Fprintf(&b, "host %s (%s), kubeforge %s", r.Host, roles, r.Kubeforge)
	if len(r.Versions) > 0 {
		var vs []string
		for k, v := range r.Versions {
			vs = append(vs, k+" "+v)
		}
		sort.Strings(vs)
		fmt.Fprintf(&b, "; %s", strings.Join(vs, ", "))
	}
	b.WriteString("\nunits:\n")
	tw := tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
	for _, u := range r.Units {
		ok := "ok"
		if !u.OK {
			ok = "PROBLEM"
		}
		fmt.Fprintf(tw, "  %s\t%s/%s\t%s\t%s\n", u.Name, u.Active, u.Sub, u.Enabled, ok)
	}
	if len(r.Units) == 0 {
		fmt.Fprintf(tw, "  (no kubeforge unit on this host)\n")
	}
	tw.Flush()
	if c := r.Certificates; c != nil {
		fmt.Fprintf(&b, "certificates: soonest %s in %s (%s); %d within the renewal window of %s\n",
			c.Soonest, days(c.NotAfter.Sub(now)), c.NotAfter.UTC().Format(time.RFC3339), len(c.Expiring), c.Window)
	}
	if e := r.Etcd; e != nil {
		if e.Error != "" {
			fmt.Fprintf(&b, "etcd: %s\n", e.Error)
		} else {
			fmt.Fprintf(&b, "etcd: %d/%d members healthy, leader %s\n", e.Healthy, e.Members, orNone(e.Leader))
		}
	}
	if n := r.Node; n != nil {
		switch {
		case n.Error != "":
			fmt.Fprintf(&b, "node: %s\n", n.Error)
		case n.Nodes > 0:
			fmt.Fprintf(&b, "node: %s %s; %d Nodes, %d not Ready\n", n.Name, readyWord(n.Ready), n.Nodes, len(n.NotReady))
		default:
			fmt.Fprintf(&b, "node: %s %s\n", n.Name, readyWord(n.Ready))
		}
	}
	if o := r.Overlay; o != nil {
		if o.Error != "" {
			fmt.Fprintf(&b, "overlay: %s\n", o.Error)
		} else {
			fmt.Fprintf(&b, "overlay: subnet %s, %d peers programmed\n", o.Subnet, o.Peers)
		}
	}
	if k := r.Backup; k != nil {
		last := "ok"
		if !k.LastRunOK {
			last = "FAILED"
		}
		newest := "none"
		if k.Newest != "" {
			newest = fmt.Sprintf("%s (%s ago)", k.Newest, now.Sub(k.NewestAt).Round(time.Second))
		}
		fmt.Fprintf(&b, "etcd backup: %d snapshots in %s, newest %s, last run %s\n", k.Snapshots, k.Dir, newest, last)
	}
	if len(r.Problems) == 0 {
		b.WriteString("problems: none\n")
	} else {
		b.WriteString("problems:\n")
		for _, p := range r.Problems {
			fmt.Fprintf(&b, "  - %s\n", p)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func days(d time.Duration) string {
	if d < 48*time.Hour {
		return d.Round(time.Minute).String()
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func readyWord(ok bool) string {
	if ok {
		return "Ready"
	}
	return "NOT Ready"
}

// ClusterOptions say which hosts to ask and how.
type ClusterOptions struct {
	Hosts []config.Host
	// Dial opens a host (over SSH).
	Dial func(ctx context.Context, h config.Host) (host.Host, error)
	// Binary is kubeforge on the hosts.
	Binary string
}

// HostReport is one host's answer, or why there is none.
type HostReport struct {
	Name   string
	Report *Report
	Err    error
}

// Cluster asks every host for its report (`kubeforge status -o json` on the
// host) in parallel. A host that cannot be reached, or has no kubeforge, gets
// an error of its own; the others still answer.
func Cluster(ctx context.Context, o ClusterOptions) []HostReport {
	out := make([]HostReport, len(o.Hosts))
	var wg sync.WaitGroup
	for i, h := range o.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = HostReport{Name: h.Name}
			out[i].Report, out[i].Err = ask(ctx, o, h)
		}()
	}
	wg.Wait()
	return out
}

func ask(ctx context.Context, o ClusterOptions, n config.Host) (*Report, error) {
	h, err := o.Dial(ctx, n)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	cmd := host.Cmd{Argv: []string{o.Binary, "status", "-o", "json", "--node-name", n.Name}, Timeout: time.Minute, ReadOnly: true}
	res, err := h.Run(ctx, cmd)
	if err != nil {
		return nil, err
	}
	var r Report
	if jerr := json.Unmarshal(res.Stdout, &r); jerr != nil {
		if !res.OK() {
			return nil, res.Err(n.Name, cmd)
		}
		return nil, fmt.Errorf("%s: kubeforge status printed no report: %w", n.Name, jerr)
	}
	if len(n.Roles) > 0 {
		// The file says what the host is; a joined host only knows its units.
		r.Roles = r.Roles[:0]
		for _, role := range n.Roles {
			r.Roles = append(r.Roles, string(role))
		}
	}
	return &r, nil
}

// WriteClusterTable prints one row a host, then every host's problems.
func WriteClusterTable(w io.Writer, reps []HostReport, now time.Time) error {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tROLES\tUNITS\tCERTS (soonest)\tETCD\tNODE\tOVERLAY PEERS\tPROBLEMS")
	for _, hr := range reps {
		r := hr.Report
		if r == nil {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\tunreachable\n", hr.Name)
			continue
		}
		ok := 0
		for _, u := range r.Units {
			if u.OK {
				ok++
			}
		}
		certs, etcd, node, ov := "-", "-", "-", "-"
		if c := r.Certificates; c != nil {
			certs = days(c.NotAfter.Sub(now))
		}
		if e := r.Etcd; e != nil {
			etcd = "error"
			if e.Error == "" {
				etcd = fmt.Sprintf("%d/%d healthy", e.Healthy, e.Members)
			}
		}
		if n := r.Node; n != nil {
			node = "error"
			if n.Error == "" {
				node = readyWord(n.Ready)
			}
		}
		if v := r.Overlay; v != nil {
			ov = "error"
			if v.Error == "" {
				ov = fmt.Sprint(v.Peers)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%d ok\t%s\t%s\t%s\t%s\t%d\n", hr.Name, orNone(strings.Join(r.Roles, ",")), ok, len(r.Units), certs, etcd, node, ov, len(r.Problems))
	}
	tw.Flush()
	for _, hr := range reps {
		if hr.Err != nil {
			fmt.Fprintf(&b, "%s: %v\n", hr.Name, hr.Err)
			continue
		}
		for _, p := range hr.Report.Problems {
			fmt.Fprintf(&b, "%s: %s\n", hr.Name, p)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Problems counts the problems of all hosts, unreachable hosts included.
func Problems(reps []HostReport) int {
	n := 0
	for _, hr := range reps {
		if hr.Err != nil {
			n++
		} else {
			n += len(hr.Report.Problems)
		}
	}
	return n
}
