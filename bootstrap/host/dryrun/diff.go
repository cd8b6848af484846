package dryrun

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// maxDiffCells bounds the LCS table (old lines x new lines, after trimming the
// common head and tail). Config files and units are a few hundred lines at most;
// past this the changed middle is shown as a plain replacement instead.
const maxDiffCells = 4 << 20

type op struct {
	kind byte // ' ', '-', '+'
	text string
}

// splitLines keeps each line's "\n" so that a missing final newline is a difference.
func splitLines(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	s := string(b)
	var out []string
	for s != "" {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			out = append(out, s)
			break
		}
		out = append(out, s[:i+1])
		s = s[i+1:]
	}
	return out
}

// lineOps computes an edit script from a to b via the longest common subsequence.
func lineOps(a, b []string) []op {
	pre := 0
	for pre < len(a) && pre < len(b) && a[pre] == b[pre] {
		pre++
	}
	suf := 0
	for suf < len(a)-pre && suf < len(b)-pre && a[len(a)-1-suf] == b[len(b)-1-suf] {
		suf++
	}
	var ops []op
	for _, l := range a[:pre] {
		ops = append(ops, op{' ', l})
	}
	ma, mb := a[pre:len(a)-suf], b[pre:len(b)-suf]
	if len(ma)*len(mb) > maxDiffCells {
		for _, l := range ma {
			ops = append(ops, op{'-', l})
		}
		for _, l := range mb {
			ops = append(ops, op{'+', l})
		}
	} else {
		ops = append(ops, lcsOps(ma, mb)...)
	}
	for _, l := range a[len(a)-suf:] {
		ops = append(ops, op{' ', l})
	}
	return ops
}

func lcsOps(a, b []string) []op {
	n, m := len(a), len(b)
	// t[i][j] = LCS length of a[i:], b[j:]
	t := make([][]int32, n+1)
	for i := range t {
		t[i] = make([]int32, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				t[i][j] = t[i+1][j+1] + 1
			} else {
				t[i][j] = max(t[i+1][j], t[i][j+1])
			}
		}
	}
	var ops []op
	i, j := 0, 0
	for i < n && j < m {
		switch {
		case a[i] == b[j]:
			ops = append(ops, op{' ', a[i]})
			i++
			j++
		case t[i+1][j] >= t[i][j+1]:
			ops = append(ops, op{'-', a[i]})
			i++
		default:
			ops = append(ops, op{'+', b[j]})
			j++
		}
	}
	for ; i < n; i++ {
		ops = append(ops, op{'-', a[i]})
	}
	for ; j < m; j++ {
		ops = append(ops, op{'+', b[j]})
	}
	return ops
}

// isText reports whether content can be shown as lines.
func isText(b []byte) bool { return utf8.Valid(b) && bytes.IndexByte(b, 0) < 0 }

// UnifiedDiff writes a unified diff (3 lines of context) of old to new, each line
// prefixed with indent. Nothing is written when they are equal.
func UnifiedDiff(w io.Writer, indent, oldName, newName string, old, new []byte) {
	if bytes.Equal(old, new) {
		return
	}
	if !isText(old) || !isText(new) {
		fmt.Fprintf(w, "%s(binary content: %d bytes -> %d bytes)\n", indent, len(old), len(new))
		return
	}
	ops := lineOps(splitLines(old), splitLines(new))
	fmt.Fprintf(w, "%s--- %s\n%s+++ %s\n", indent, oldName, indent, newName)
	const ctx = 3
	// oldNo/newNo[k]: 0-based line numbers in old/new at ops[k].
	oldNo := make([]int, len(ops)+1)
	newNo := make([]int, len(ops)+1)
	for k, o := range ops {
		oldNo[k+1], newNo[k+1] = oldNo[k], newNo[k]
		if o.kind != '+' {
			oldNo[k+1]++
		}
		if o.kind != '-' {
			newNo[k+1]++
		}
	}
	k := 0
	for k < len(ops) {
		for k < len(ops) && ops[k].kind == ' ' {
			k++
		}
		if k == len(ops) {
			break
		}
		start := max(0, k-ctx)
		// Extend the hunk while the next change is within 2*ctx unchanged lines.
		end := k
		for {
			for end < len(ops) && ops[end].kind != ' ' {
				end++
			}
			next := end
			for next < len(ops) && ops[next].kind == ' ' {
				next++
			}
			if next < len(ops) && next-end <= 2*ctx {
				end = next
				continue
			}
			end = min(len(ops), end+ctx)
			break
		}
		oStart, oLen := oldNo[start], oldNo[end]-oldNo[start]
		nStart, nLen := newNo[start], newNo[end]-newNo[start]
		fmt.Fprintf(w, "%s@@ -%s +%s @@\n", indent, hunkRange(oStart, oLen), hunkRange(nStart, nLen))
		for _, o := range ops[start:end] {
			text, nl := strings.CutSuffix(o.text, "\n")
			fmt.Fprintf(w, "%s%c%s\n", indent, o.kind, text)
			if !nl {
				fmt.Fprintf(w, "%s\\ No newline at end of file\n", indent)
			}
		}
		k = end
	}
}

// hunkRange renders diff(1)'s "start,len" where an empty range names the line
// before it.
func hunkRange(start0, n int) string {
	if n == 0 {
		return fmt.Sprintf("%d,0", start0)
	}
	if n == 1 {
		return fmt.Sprintf("%d", start0+1)
	}
	return fmt.Sprintf("%d,%d", start0+1, n)
}
