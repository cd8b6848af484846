package apilb

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"testing"
	"time"
)

// BenchmarkAddedLatency prints the latency of one API request on a kept-alive
// connection, directly and through the balancer, side by side (issue 16's
// goal: under 0.2 ms added at p50). Run with
//
//	go test -run '^$' -bench AddedLatency ./components/apilb/
func BenchmarkAddedLatency(b *testing.B) {
	srv := newAPIServer(b, "master01")
	lb := start(b, srv)
	for _, tc := range []struct {
		name string
		url  string
	}{
		{"direct", srv.srv.URL + "/version"},
		{"apilb", "https://" + lb.Addr().String() + "/version"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c := client(lb, pool(srv), true)
			lat := make([]time.Duration, 0, b.N)
			for range b.N {
				t0 := time.Now()
				resp, err := c.Get(tc.url)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				lat = append(lat, time.Since(t0))
			}
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			p := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) }
			b.ReportMetric(p(0.50), "p50-µs")
			b.ReportMetric(p(0.99), "p99-µs")
			c.Transport.(*http.Transport).CloseIdleConnections()
			if b.N > 100 {
				fmt.Printf("%-7s p50 %6.0f µs  p99 %6.0f µs  (%d requests)\n", tc.name, p(0.5), p(0.99), b.N)
			}
		})
	}
}
