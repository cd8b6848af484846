package overlay

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// metrics is the agent's Prometheus exposition, written by hand in the text
// format (version 0.0.4): three kinds of series are all it needs, and it keeps
// the agent's dependencies to what go.sum already carries (client_golang is in
// the module graph only as an unused requirement of etcd/client-go).
type metrics struct {
	mu        sync.Mutex
	gauges    map[string]float64
	counters  map[string]float64 // name{labels} -> value
	histogram map[string]*histogram
}

// Latency buckets: a netlink add is well under a millisecond, a full sync of
// hundreds of peers tens of milliseconds.
var buckets = []float64{0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5}

type histogram struct {
	counts []uint64
	sum    float64
	count  uint64
}

var metricHelp = map[string][2]string{
	"kubeforge_overlay_leases":                     {"gauge", "Subnet leases in etcd the agent knows, its own included."},
	"kubeforge_overlay_peers":                      {"gauge", "Remote subnets programmed on the VXLAN device."},
	"kubeforge_overlay_ready":                      {"gauge", "1 when the agent holds its lease and watches etcd."},
	"kubeforge_overlay_program_duration_seconds":   {"histogram", "Time to program (op=add, remove) one peer or (op=sync) all of them."},
	"kubeforge_overlay_errors_total":               {"counter", "Errors by operation."},
	"kubeforge_overlay_resyncs_total":              {"counter", "Full resynchronisations from etcd, by reason."},
	"kubeforge_overlay_watch_events_total":         {"counter", "Subnet events received from the etcd watch."},
	"kubeforge_overlay_lease_keepalive_lost_total": {"counter", "Times the etcd lease keepalive ended and the lease was re-acquired."},
}

func newMetrics() *metrics {
	return &metrics{gauges: map[string]float64{}, counters: map[string]float64{}, histogram: map[string]*histogram{}}
}

func series(name string, labels ...string) string {
	if len(labels) == 0 {
		return name
	}
	var b strings.Builder
	b.WriteString(name + "{")
	for i := 0; i+1 < len(labels); i += 2 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "%s=%s", labels[i], strconv.Quote(labels[i+1]))
	}
	b.WriteString("}")
	return b.String()
}

func (m *metrics) set(name string, v float64) {
	m.mu.Lock()
	m.gauges[name] = v
	m.mu.Unlock()
}

func (m *metrics) inc(name string, labels ...string) {
	m.mu.Lock()
	m.counters[series(name, labels...)]++
	m.mu.Unlock()
}

func (m *metrics) observe(op string, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.histogram[op]
	if h == nil {
		h = &histogram{counts: make([]uint64, len(buckets))}
		m.histogram[op] = h
	}
	s := d.Seconds()
	for i, le := range buckets {
		if s <= le {
			h.counts[i]++
		}
	}
	h.sum += s
	h.count++
}

func fmtFloat(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// write renders every series, grouped by metric with HELP and TYPE lines.
func (m *metrics) write(w io.Writer) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	byName := map[string][]string{}
	for k, v := range m.gauges {
		byName[k] = append(byName[k], k+" "+fmtFloat(v))
	}
	for k, v := range m.counters {
		name, _, _ := strings.Cut(k, "{")
		byName[name] = append(byName[name], k+" "+fmtFloat(v))
	}
	const hname = "kubeforge_overlay_program_duration_seconds"
	ops := make([]string, 0, len(m.histogram))
	for op := range m.histogram {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	for _, op := range ops {
		h := m.histogram[op]
		for i, le := range buckets {
			byName[hname] = append(byName[hname], fmt.Sprintf("%s %d", series(hname+"_bucket", "op", op, "le", fmtFloat(le)), h.counts[i]))
		}
		byName[hname] = append(byName[hname],
			fmt.Sprintf("%s %d", series(hname+"_bucket", "op", op, "le", "+Inf"), h.count),
			fmt.Sprintf("%s %s", series(hname+"_sum", "op", op), fmtFloat(h.sum)),
			fmt.Sprintf("%s %d", series(hname+"_count", "op", op), h.count))
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if h, ok := metricHelp[n]; ok {
			if _, err := fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", n, h[1], n, h[0]); err != nil {
				return err
			}
		}
		lines := byName[n]
		if n != hname {
			sort.Strings(lines)
		}
		for _, l := range lines {
			if _, err := fmt.Fprintln(w, l); err != nil {
				return err
			}
		}
	}
	return nil
}
