package resetphases

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestConfirm(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want error
	}{
		{"y\n", nil},
		{" YES \n", nil},
		{"yes", nil},
		{"n\n", ErrAborted},
		{"\n", ErrAborted},
		{"", ErrAborted},
		{"yess\n", ErrAborted},
	} {
		t.Run(fmt.Sprintf("%q", tc.in), func(t *testing.T) {
			var out bytes.Buffer
			err := Confirm(strings.NewReader(tc.in), &out, "cp1")
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Errorf("input %q: got %v, want %v", tc.in, err, tc.want)
			}
			if !strings.Contains(out.String(), "node cp1") {
				t.Errorf("input %q: prompt %q does not name the node", tc.in, out.String())
			}
			// A typed answer ends the line itself; without one the prompt must.
			if endsLine := strings.HasSuffix(out.String(), "\n"); endsLine == strings.HasSuffix(tc.in, "\n") {
				t.Errorf("input %q: prompt %q ends its line=%v", tc.in, out.String(), endsLine)
			}
		})
	}
}
