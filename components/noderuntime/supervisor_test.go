package noderuntime

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// fastBackoff keeps restarts within milliseconds; the tests assert what
// happens, never how long it took.
var fastBackoff = wait.Backoff{Duration: time.Millisecond, Factor: 2, Steps: 1 << 30, Cap: 10 * time.Millisecond}

type logs struct {
	mu    sync.Mutex
	lines []string
}

func (l *logs) logf(f string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, strings.TrimSpace(strings.ReplaceAll(fmt.Sprintf(f, a...), "\n", " ")))
}

func (l *logs) has(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, x := range l.lines {
		if strings.Contains(x, s) {
			return true
		}
	}
	return false
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(context.Background(), time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) { return cond(), nil }); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func TestFailingFeatureRestartsOthersUntouched(t *testing.T) {
	var flakyRuns, steadyRuns atomic.Int32
	var steadyStopped atomic.Bool
	l := &logs{}
	features := []Feature{
		{Name: "flaky", Run: func(ctx context.Context, ready func()) error {
			n := flakyRuns.Add(1)
			switch n {
			case 1:
				return errors.New("cannot reach the API")
			case 2:
				panic("nil map")
			case 3:
				return nil // returning early is a failure too
			}
			ready()
			<-ctx.Done()
			return nil
		}},
		{Name: "steady", GatesReady: true, Run: func(ctx context.Context, ready func()) error {
			steadyRuns.Add(1)
			ready()
			<-ctx.Done()
			steadyStopped.Store(true)
			return nil
		}},
	}
	var readyCalls atomic.Int32
	s := New(features, Options{Backoff: fastBackoff, Logf: l.logf, OnReady: func() { readyCalls.Add(1) }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	waitUntil(t, "flaky running after three failures", func() bool {
		for _, st := range s.Status() {
			if st.Name == "flaky" && st.State == "running" {
				return true
			}
		}
		return false
	})
	if n := flakyRuns.Load(); n != 4 {
		t.Errorf("flaky ran %d times, want 4", n)
	}
	if n := steadyRuns.Load(); n != 1 {
		t.Errorf("steady ran %d times while flaky failed, want 1", n)
	}
	st := s.Status()
	if st[0].Name != "flaky" || st[0].Restarts != 3 || st[1].Restarts != 0 {
		t.Errorf("status: %+v", st)
	}
	for _, want := range []string{"flaky failed: cannot reach the API", "flaky failed: panic: nil map", "flaky failed: returned before it was asked to stop", "restarting flaky"} {
		if !l.has(want) {
			t.Errorf("no log line %q in %q", want, l.lines)
		}
	}
	waitUntil(t, "OnReady", func() bool { return readyCalls.Load() == 1 })

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if !steadyStopped.Load() {
		t.Error("steady did not see its context end")
	}
	for _, st := range s.Status() {
		if st.State != "stopped" {
			t.Errorf("%s is %s after cancel", st.Name, st.State)
		}
	}
	if n := readyCalls.Load(); n != 1 {
		t.Errorf("OnReady called %d times", n)
	}
}

func TestCancelStopsAllEvenInBackoff(t *testing.T) {
	var running atomic.Int32
	block := func(ctx context.Context, ready func()) error {
		running.Add(1)
		defer running.Add(-1)
		ready()
		<-ctx.Done()
		return nil
	}
	features := []Feature{
		{Name: "a", Run: block},
		{Name: "b", Run: block},
		// Always failing, with a long backoff: cancel must not wait it out.
		{Name: "broken", Run: func(context.Context, func()) error { return errors.New("no kubeconfig") }},
	}
	s := New(features, Options{Backoff: wait.Backoff{Duration: time.Hour, Factor: 1, Steps: 1}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitUntil(t, "a and b running, broken in backoff", func() bool {
		st := s.Status()
		return running.Load() == 2 && st[2].Name == "broken" && st[2].State == "backoff"
	})
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if n := running.Load(); n != 0 {
		t.Errorf("%d features still running after Run returned", n)
	}
}

func TestGatingFeatureHoldsReady(t *testing.T) {
	release := make(chan struct{})
	var readied atomic.Bool
	features := []Feature{
		{Name: "approver", Run: func(ctx context.Context, ready func()) error { ready(); <-ctx.Done(); return nil }},
		{Name: "overlay", GatesReady: true, Run: func(ctx context.Context, ready func()) error {
			select {
			case <-release:
				ready()
			case <-ctx.Done():
				return nil
			}
			<-ctx.Done()
			return nil
		}},
	}
	s := New(features, Options{OnReady: func() { readied.Store(true) }})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	waitUntil(t, "approver running", func() bool { return s.Status()[0].State == "running" })
	if readied.Load() {
		t.Fatal("ready before the gating overlay was")
	}
	close(release)
	waitUntil(t, "OnReady after the overlay", readied.Load)
}

func TestRunRefusesNothingToRun(t *testing.T) {
	if err := New(nil, Options{}).Run(context.Background()); err == nil {
		t.Error("no features: want an error")
	}
	f := Feature{Name: "x", Run: func(ctx context.Context, _ func()) error { <-ctx.Done(); return nil }}
	if err := New([]Feature{f, f}, Options{}).Run(context.Background()); err == nil {
		t.Error("duplicate names: want an error")
	}
}
