package component

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubeforge/kubeforge/bootstrap/host"
)

func TestExecQuote(t *testing.T) {
	for in, want := range map[string]string{
		"--a=b":           "--a=b",
		"--a=50%":         "--a=50%%",
		"--a=$HOME":       "--a=$$HOME",
		"--a=x y":         `"--a=x y"`,
		`--a="q"`:         `"--a=\"q\""`,
		`--a=c:\dir`:      `"--a=c:\\dir"`,
		"--a=one;two":     `"--a=one;two"`,
		"--a=k1=v1,k2=v2": "--a=k1=v1,k2=v2",
		"":                `""`,
	} {
		t.Run(in, func(t *testing.T) {
			if got := ExecQuote(in); got != want {
				t.Errorf("ExecQuote(%q) = %s, want %s", in, got, want)
			}
		})
	}
}

func TestFlagArgsAndExecStart(t *testing.T) {
	args, err := FlagArgs("kubelet", map[string]string{"v": "2 --anonymous-auth=true", "b": "$HOME", "a": "1"})
	if err != nil {
		t.Fatal(err)
	}
	got := ExecStart("/usr/local/bin/kubelet", args)
	want := "ExecStart=/usr/local/bin/kubelet \\\n  --a=1 \\\n  --b=$$HOME \\\n  \"--v=2 --anonymous-auth=true\""
	if got != want {
		t.Errorf("ExecStart:\n%s\nwant\n%s", got, want)
	}
	for _, bad := range []map[string]string{{"a b": "1"}, {"-v": "1"}, {"v=1": ""}, {"v": "1\n--x"}, {"": "1"}} {
		if _, err := FlagArgs("kubelet", bad); err == nil || !strings.Contains(err.Error(), "kubelet flag") {
			t.Errorf("FlagArgs(%v) = %v, want an error naming the kubelet flag", bad, err)
		}
	}
}

func TestRunning(t *testing.T) {
	for state, want := range map[string]bool{"active": true, "activating": true, "reloading": true, "inactive": false, "failed": false, "deactivating": false} {
		t.Run(state, func(t *testing.T) {
			if got := Running(host.UnitStatus{ActiveState: state}); got != want {
				t.Errorf("Running(%s) = %v, want %v", state, got, want)
			}
		})
	}
}

func TestPoll(t *testing.T) {
	n := 0
	err := Poll(context.Background(), time.Millisecond, time.Minute, func(context.Context) (bool, error) {
		n++
		return n == 3, nil
	})
	if err != nil || n != 3 {
		t.Errorf("Poll = %v after %d calls, want nil after 3", err, n)
	}
	boom := errors.New("boom")
	if err := Poll(context.Background(), time.Millisecond, time.Minute, func(context.Context) (bool, error) { return false, boom }); !errors.Is(err, boom) {
		t.Errorf("Poll = %v, want the condition's error", err)
	}
	err = Poll(context.Background(), time.Millisecond, 5*time.Millisecond, func(context.Context) (bool, error) { return false, nil })
	if !wait.Interrupted(err) {
		t.Errorf("Poll = %v, want a timeout wait.Interrupted recognises", err)
	}
}

// PollError maps Poll's outcomes: success, the caller's cancellation, the
// deadline (the caller's own message), and the condition's own error.
func TestPollError(t *testing.T) {
	timedOut := func() error { return errors.New("not ready within 1s: last seen 503") }
	bg := context.Background()
	if err := PollError(bg, nil, timedOut); err != nil {
		t.Errorf("success: %v", err)
	}
	err := Poll(bg, time.Millisecond, 20*time.Millisecond, func(context.Context) (bool, error) { return false, nil })
	if got := PollError(bg, err, timedOut); got == nil || got.Error() != "not ready within 1s: last seen 503" {
		t.Errorf("deadline: %v", got)
	}
	cancelled, cancel := context.WithCancel(bg)
	cancel()
	err = Poll(cancelled, time.Millisecond, 0, func(context.Context) (bool, error) { return false, nil })
	if got := PollError(cancelled, err, timedOut); !errors.Is(got, context.Canceled) {
		t.Errorf("cancelled: %v", got)
	}
	own := errors.New("unit failed")
	err = Poll(bg, time.Millisecond, time.Second, func(context.Context) (bool, error) { return false, own })
	if got := PollError(bg, err, timedOut); !errors.Is(got, own) {
		t.Errorf("condition's error: %v", got)
	}
}
