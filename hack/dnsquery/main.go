// Command dnsquery is the bundle's DNS test client: a static program, packed into
// an OCI image (images/dnsquery.tar) by hack/build-bundle.sh, that end-to-end
// tests and benchmarks run in pods to ask the cluster DNS from where workloads
// ask it. Pods use it with imagePullPolicy: Never.
//
//	dnsquery sleep                                  idle until SIGTERM (the pod's main process)
//	dnsquery lookup [-type A|SRV|PTR] NAME...       resolve through the pod's resolv.conf
//	                                                 (search list and ndots, as libc would)
//	dnsquery bench -server IP:53 -names N1,N2 [-queries 20000] [-concurrency 8] [-max-duration 60s]
//
// lookup prints one line per name, "NAME TYPE answer[,answer...]", and exits 1 when
// any name did not resolve. bench sends bounded UDP queries straight to one server
// and prints queries, errors, queries/s and the latency p50/p90/p99.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

var version = "dev"

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "--version", "-version", "version":
		fmt.Printf("dnsquery version %s (kubeforge)\n", version)
		return
	case "sleep":
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		<-ctx.Done()
		stop()
		return
	case "lookup":
		err = lookup(os.Args[2:])
	case "bench":
		err = bench(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "dnsquery:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: dnsquery sleep | lookup [-type A|SRV|PTR] NAME... | bench -server IP:53 -names N1,N2 [-queries N] [-concurrency C] [-max-duration D]")
	os.Exit(2)
}

func lookup(args []string) error {
	fs := flag.NewFlagSet("lookup", flag.ContinueOnError)
	typ := fs.String("type", "A", "record type: A (addresses, A and AAAA), SRV or PTR (NAME is an IP)")
	timeout := fs.Duration("timeout", 10*time.Second, "deadline per name")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("lookup: no name given")
	}
	r := &net.Resolver{PreferGo: true}
	failed := 0
	for _, name := range fs.Args() {
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		var answers []string
		var err error
		switch strings.ToUpper(*typ) {
		case "A":
			var addrs []net.IPAddr
			addrs, err = r.LookupIPAddr(ctx, name)
			for _, a := range addrs {
				answers = append(answers, a.IP.String())
			}
		case "SRV":
			var srvs []*net.SRV
			_, srvs, err = r.LookupSRV(ctx, "", "", name)
			for _, s := range srvs {
				answers = append(answers, fmt.Sprintf("%s:%d", s.Target, s.Port))
			}
		case "PTR":
			answers, err = r.LookupAddr(ctx, name)
		default:
			cancel()
			return fmt.Errorf("lookup: -type %q: want A, SRV or PTR", *typ)
		}
		cancel()
		sort.Strings(answers)
		if err != nil || len(answers) == 0 {
			failed++
			fmt.Printf("%s %s FAILED %v\n", name, strings.ToUpper(*typ), err)
			continue
		}
		fmt.Printf("%s %s %s\n", name, strings.ToUpper(*typ), strings.Join(answers, ","))
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d names did not resolve", failed, fs.NArg())
	}
	return nil
}

func bench(args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	server := fs.String("server", "", "DNS server, IP:port")
	names := fs.String("names", "", "comma-separated fully qualified names to ask for (A records), in turn")
	queries := fs.Int("queries", 20000, "total queries to send (the bench stops after these)")
	conc := fs.Int("concurrency", 8, "queries in flight (one UDP socket each)")
	maxDur := fs.Duration("max-duration", 60*time.Second, "stop after this long even if queries remain")
	timeout := fs.Duration("timeout", 2*time.Second, "per-query timeout (counted as an error)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ap, err := netip.ParseAddrPort(*server)
	if err != nil {
		return fmt.Errorf("bench: -server %q: %w", *server, err)
	}
	var qs [][]byte
	for _, n := range strings.Split(*names, ",") {
		if n = strings.TrimSpace(n); n == "" {
			continue
		}
		if !strings.HasSuffix(n, ".") {
			n += "."
		}
		q, err := query(n)
		if err != nil {
			return fmt.Errorf("bench: name %q: %w", n, err)
		}
		qs = append(qs, q)
	}
	if len(qs) == 0 || *queries < 1 || *conc < 1 {
		return errors.New("bench: -names, a positive -queries and -concurrency are required")
	}
	deadline := time.Now().Add(*maxDur)
	var (
		mu        sync.Mutex
		latencies []time.Duration
		errs      int
		firstErr  error
		next      int
		wg        sync.WaitGroup
	)
	take := func() (int, bool) {
		mu.Lock()
		defer mu.Unlock()
		if next >= *queries || time.Now().After(deadline) {
			return 0, false
		}
		next++
		return next - 1, true
	}
	start := time.Now()
	for w := 0; w < *conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ap))
			if err != nil {
				mu.Lock()
				errs++
				firstErr = err
				mu.Unlock()
				return
			}
			defer conn.Close()
			buf := make([]byte, 1500)
			for {
				i, ok := take()
				if !ok {
					return
				}
				d, err := ask(conn, qs[i%len(qs)], buf, *timeout)
				mu.Lock()
				if err != nil {
					errs++
					if firstErr == nil {
						firstErr = err
					}
				} else {
					latencies = append(latencies, d)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	sort.Slice(latencies, func(a, b int) bool { return latencies[a] < latencies[b] })
	pct := func(p float64) time.Duration {
		if len(latencies) == 0 {
			return 0
		}
		return latencies[int(float64(len(latencies)-1)*p)]
	}
	fmt.Printf("queries=%d ok=%d errors=%d seconds=%.2f qps=%.0f p50_us=%d p90_us=%d p99_us=%d\n",
		len(latencies)+errs, len(latencies), errs, elapsed.Seconds(), float64(len(latencies))/elapsed.Seconds(),
		pct(0.50).Microseconds(), pct(0.90).Microseconds(), pct(0.99).Microseconds())
	if firstErr != nil {
		fmt.Printf("first error: %v\n", firstErr)
	}
	if len(latencies) == 0 {
		return errors.New("bench: no query was answered")
	}
	return nil
}

// query builds an A query for name with a placeholder ID (ask sets a fresh one).
func query(name string) ([]byte, error) {
	n, err := dnsmessage.NewName(name)
	if err != nil {
		return nil, err
	}
	m := dnsmessage.Message{
		Header:    dnsmessage.Header{RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: n, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}},
	}
	return m.Pack()
}

// ask sends q with a random ID and waits for the answer with that ID; an answer
// whose rcode is not success counts as an error.
func ask(conn *net.UDPConn, q, buf []byte, timeout time.Duration) (time.Duration, error) {
	id := uint16(rand.Uint32())
	msg := append([]byte(nil), q...)
	msg[0], msg[1] = byte(id>>8), byte(id)
	start := time.Now()
	if err := conn.SetDeadline(start.Add(timeout)); err != nil {
		return 0, err
	}
	if _, err := conn.Write(msg); err != nil {
		return 0, err
	}
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return 0, err
		}
		var p dnsmessage.Parser
		h, err := p.Start(buf[:n])
		if err != nil || h.ID != id {
			continue // a late answer to an earlier, timed-out query
		}
		if h.RCode != dnsmessage.RCodeSuccess {
			return 0, fmt.Errorf("rcode %v", h.RCode)
		}
		return time.Since(start), nil
	}
}
