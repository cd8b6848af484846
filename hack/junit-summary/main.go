// Command junit-summary prints a per-SIG table and a final
// "N passed, N failed, N skipped" line for a ginkgo junit report of the upstream
// e2e suite (hack/conformance.sh), and the names of the specs that failed or were
// skipped while running (with the reason). Specs the focus did not select are not
// counted.
//
//	go run ./hack/junit-summary junit.xml
package main

import (
	"encoding/xml"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"text/tabwriter"
)

type report struct {
	Suites []struct {
		Cases []testcase `xml:"testcase"`
	} `xml:"testsuite"`
}

type testcase struct {
	Name    string  `xml:"name,attr"`
	Status  string  `xml:"status,attr"`
	Time    float64 `xml:"time,attr"`
	Skipped *struct {
		Message string `xml:"message,attr"`
	} `xml:"skipped"`
	Failure *struct {
		Message string `xml:"message,attr"`
	} `xml:"failure"`
	Error *struct {
		Message string `xml:"message,attr"`
	} `xml:"error"`
}

var sigRE = regexp.MustCompile(`\[(sig-[a-z0-9-]+)\]`)

type counts struct{ passed, failed, skipped int }

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: junit-summary JUNIT.xml")
		os.Exit(2)
	}
	data, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "junit-summary:", err)
		os.Exit(1)
	}
	var r report
	if err := xml.Unmarshal(data, &r); err != nil {
		fmt.Fprintf(os.Stderr, "junit-summary: %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	bySIG := map[string]*counts{}
	var total counts
	var failed, skipped []string
	for _, s := range r.Suites {
		for _, c := range s.Cases {
			// Suite set-up and tear-down nodes are not specs.
			if !strings.HasPrefix(c.Name, "[It]") {
				if c.Failure != nil || c.Error != nil {
					failed = append(failed, c.Name)
				}
				continue
			}
			// Specs the focus did not select are reported as skipped with the bare
			// message "skipped"; a spec skipped while running says why ("skipped - ...").
			if c.Skipped != nil && c.Skipped.Message == "skipped" {
				continue
			}
			sig := "other"
			if m := sigRE.FindStringSubmatch(c.Name); m != nil {
				sig = m[1]
			}
			k := bySIG[sig]
			if k == nil {
				k = &counts{}
				bySIG[sig] = k
			}
			switch {
			case c.Failure != nil || c.Error != nil:
				k.failed++
				total.failed++
				failed = append(failed, fmt.Sprintf("%s (%.0fs)", strings.TrimPrefix(c.Name, "[It] "), c.Time))
			case c.Skipped != nil || c.Status == "skipped" || c.Status == "pending":
				k.skipped++
				total.skipped++
				if c.Skipped != nil {
					skipped = append(skipped, strings.TrimPrefix(c.Name, "[It] ")+": "+strings.TrimPrefix(c.Skipped.Message, "skipped - "))
				}
			default:
				k.passed++
				total.passed++
			}
		}
	}
	sigs := make([]string, 0, len(bySIG))
	for s := range bySIG {
		sigs = append(sigs, s)
	}
	sort.Strings(sigs)
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "SIG\tpassed\tfailed\tskipped\t")
	for _, s := range sigs {
		k := bySIG[s]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t\n", s, k.passed, k.failed, k.skipped)
	}
	tw.Flush()
	if len(failed) > 0 {
		fmt.Println("failed:")
		for _, f := range failed {
			fmt.Println("  " + f)
		}
	}
	if len(skipped) > 0 {
		fmt.Println("skipped:")
		for _, f := range skipped {
			fmt.Println("  " + f)
		}
	}
	fmt.Printf("%d passed, %d failed, %d skipped\n", total.passed, total.failed, total.skipped)
}
