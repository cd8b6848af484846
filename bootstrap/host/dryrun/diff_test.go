package dryrun

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

func diff(old, new string) string {
	var b bytes.Buffer
	UnifiedDiff(&b, "", "a", "b", []byte(old), []byte(new))
	return b.String()
}

// changed counts the removed and added lines of a diff, headers excluded.
func changed(d string) (minus, plus int) {
	for _, l := range strings.Split(d, "\n") {
		switch {
		case strings.HasPrefix(l, "---"), strings.HasPrefix(l, "+++"):
		case strings.HasPrefix(l, "-"):
			minus++
		case strings.HasPrefix(l, "+"):
			plus++
		}
	}
	return minus, plus
}

func lines(from, to int) string {
	var b strings.Builder
	for i := from; i <= to; i++ {
		fmt.Fprintf(&b, "l%d\n", i)
	}
	return b.String()
}

func TestUnifiedDiff(t *testing.T) {
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"equal", "a\n", "a\n", ""},
		{"middle change keeps 3 lines of context",
			lines(1, 10), strings.Replace(lines(1, 10), "l5\n", "five\n", 1),
			"--- a\n+++ b\n@@ -2,7 +2,7 @@\n l2\n l3\n l4\n-l5\n+five\n l6\n l7\n l8\n"},
		{"insert at start", "b\nc\n", "a\nb\nc\n", "--- a\n+++ b\n@@ -1,2 +1,3 @@\n+a\n b\n c\n"},
		{"delete all", "a\nb\n", "", "--- a\n+++ b\n@@ -1,2 +0,0 @@\n-a\n-b\n"},
		{"final newline added", "a", "a\n", "--- a\n+++ b\n@@ -1 +1 @@\n-a\n\\ No newline at end of file\n+a\n"},
		{"distant changes make two hunks",
			lines(1, 20), strings.Replace(strings.Replace(lines(1, 20), "l2\n", "two\n", 1), "l19\n", "nineteen\n", 1),
			"--- a\n+++ b\n@@ -1,5 +1,5 @@\n l1\n-l2\n+two\n l3\n l4\n l5\n@@ -16,5 +16,5 @@\n l16\n l17\n l18\n-l19\n+nineteen\n l20\n"},
		{"near changes share a hunk",
			lines(1, 12), strings.Replace(strings.Replace(lines(1, 12), "l3\n", "x\n", 1), "l9\n", "y\n", 1),
			"--- a\n+++ b\n@@ -1,12 +1,12 @@\n l1\n l2\n-l3\n+x\n l4\n l5\n l6\n l7\n l8\n-l9\n+y\n l10\n l11\n l12\n"},
		{"binary", "a\x00b", "a\x00c", "(binary content: 3 bytes -> 3 bytes)\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := diff(tc.old, tc.new); got != tc.want {
				t.Fatalf("got:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

// TestDiffIsMinimal: an LCS diff of a reordered block only moves what moved.
func TestDiffIsMinimal(t *testing.T) {
	old := "a\nb\nc\nd\ne\n"
	new := "a\nc\nd\nb\ne\n"
	got := diff(old, new)
	if m, p := changed(got); m != 1 || p != 1 {
		t.Fatalf("not minimal:\n%s", got)
	}
}

// TestDiffLargeInputFallsBack: past the LCS budget the middle becomes a plain
// replacement instead of a quadratic blow-up.
func TestDiffLargeInputFallsBack(t *testing.T) {
	var a, b strings.Builder
	for i := range 3000 {
		fmt.Fprintf(&a, "a%d\n", i)
		fmt.Fprintf(&b, "b%d\n", i)
	}
	got := diff(a.String(), b.String())
	if m, p := changed(got); m != 3000 || p != 3000 {
		t.Fatalf("fallback diff has %d removals, %d additions", m, p)
	}
}

func BenchmarkDiff500Lines(b *testing.B) {
	old := lines(1, 500)
	new := strings.Replace(strings.Replace(old, "l100\n", "x\n", 1), "l400\n", "", 1)
	for b.Loop() {
		UnifiedDiff(&bytes.Buffer{}, "", "a", "b", []byte(old), []byte(new))
	}
}
