// Package noderuntime is kubeforge's one process per host: `kubeforge node run`
// as kubeforge-node.service. It runs the host's node features (the overlay
// agent on every host, the CSR approver on control-plane hosts, the node-local
// API load balancer on every host) as goroutines under one Supervisor, which
// restarts a failed feature with backoff and logs it, so one feature's failure
// never takes the others down. The model is k0s's pkg/component/manager: each
// feature starts, reports ready, and is stopped by its context.
//
// This package is a leaf: the unit, its install and removal, the supervisor and
// the status types. The features themselves are wired in
// components/noderuntime/features, which imports the feature packages.
package noderuntime

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sort"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/clock"
)

// Feature is one part of the node runtime.
type Feature struct {
	// Name is the feature's name in logs and status ("overlay").
	Name string
	// Run runs the feature until ctx ends, then returns nil. Returning before
	// ctx ends (an error or not) or panicking is a failure: the supervisor
	// restarts it after a backoff. ready is called once the feature serves.
	Run func(ctx context.Context, ready func()) error
	// GatesReady: the runtime is ready (sd_notify READY=1) only once this
	// feature called ready. The overlay gates it, so `systemctl start` ends
	// when pods can be networked, as kubeforge-overlay.service's did.
	GatesReady bool
}

// Options configure a Supervisor.
type Options struct {
	// Backoff between restarts of one feature (default 1s, doubling, 10%
	// jitter, capped at 1m).
	Backoff wait.Backoff
	// ResetAfter: a feature that ran this long before failing starts again
	// from the initial backoff (default 2m).
	ResetAfter time.Duration
	// Clock measures ResetAfter (default the real clock).
	Clock clock.Clock
	// Logf gets every supervisor line; nil is quiet.
	Logf func(format string, a ...any)
	// OnReady is called once, when every feature with GatesReady has called
	// ready (at once when none has).
	OnReady func()
}

// FeatureStatus is one feature's state.
type FeatureStatus struct {
	Name string `json:"name"`
	// State is starting, running (called ready), backoff (failed, waiting
	// to restart) or stopped.
	State     string    `json:"state"`
	Restarts  int       `json:"restarts"`
	LastError string    `json:"lastError,omitempty"`
	Since     time.Time `json:"since"`
}

// Supervisor runs features and restarts the ones that fail.
type Supervisor struct {
	features []Feature
	o        Options

	mu      sync.Mutex
	status  map[string]*FeatureStatus
	waiting map[string]bool // gating features not ready yet
	readyed bool
}

// New returns a supervisor of features; Run starts them.
func New(features []Feature, o Options) *Supervisor {
	if o.Backoff.Duration <= 0 {
		o.Backoff = wait.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.1, Steps: 1 << 30, Cap: time.Minute}
	}
	if o.Backoff.Steps <= 0 {
		o.Backoff.Steps = 1 << 30
	}
	if o.ResetAfter <= 0 {
		o.ResetAfter = 2 * time.Minute
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.OnReady == nil {
		o.OnReady = func() {}
	}
	s := &Supervisor{features: features, o: o, status: map[string]*FeatureStatus{}, waiting: map[string]bool{}}
	for _, f := range features {
		s.status[f.Name] = &FeatureStatus{Name: f.Name, State: "starting", Since: o.Clock.Now()}
		if f.GatesReady {
			s.waiting[f.Name] = true
		}
	}
	return s
}

// errExited is a feature that returned nil while its context was live.
var errExited = errors.New("returned before it was asked to stop")

// Run starts every feature in its own goroutine and returns once ctx has ended
// and every feature has stopped. It fails only when it cannot start at all:
// no features, or two with one name.
func (s *Supervisor) Run(ctx context.Context) error {
	if len(s.features) == 0 {
		return errors.New("node runtime: no features to run")
	}
	if len(s.status) != len(s.features) {
		return errors.New("node runtime: two features share a name")
	}
	s.mu.Lock()
	s.maybeReady()
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, f := range s.features {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.supervise(ctx, f)
		}()
	}
	wg.Wait()
	return nil
}

// supervise runs f until ctx ends, with backoff between failed runs
// (apimachinery's DelayFunc: sliding, so the delay counts from the failure).
func (s *Supervisor) supervise(ctx context.Context, f Feature) {
	delay := s.o.Backoff.DelayWithReset(s.o.Clock, s.o.ResetAfter)
	first := true
	_ = delay.Until(ctx, true, true, func(ctx context.Context) (bool, error) {
		if !first {
			s.set(f.Name, func(st *FeatureStatus) { st.State, st.Restarts = "starting", st.Restarts+1 })
			s.o.Logf("[node] restarting %s", f.Name)
		}
		first = false
		err := s.runOnce(ctx, f)
		if ctx.Err() != nil {
			s.set(f.Name, func(st *FeatureStatus) { st.State = "stopped" })
			return true, nil
		}
		if err == nil {
			err = errExited
		}
		s.o.Logf("[node] %s failed: %v (restarting with backoff)", f.Name, err)
		s.set(f.Name, func(st *FeatureStatus) { st.State, st.LastError = "backoff", err.Error() })
		return false, nil
	})
	s.set(f.Name, func(st *FeatureStatus) { st.State = "stopped" })
}

// runOnce runs f once; a panic is its failure, not the process's.
func (s *Supervisor) runOnce(ctx context.Context, f Feature) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	var once sync.Once
	ready := func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if st := s.status[f.Name]; st != nil {
				st.State, st.Since, st.LastError = "running", s.o.Clock.Now(), ""
			}
			delete(s.waiting, f.Name)
			s.maybeReady()
		})
	}
	return f.Run(ctx, ready)
}

// maybeReady calls OnReady the first time no gating feature is waiting; s.mu
// is held.
func (s *Supervisor) maybeReady() {
	if s.readyed || len(s.waiting) > 0 {
		return
	}
	s.readyed = true
	s.o.Logf("[node] ready")
	go s.o.OnReady()
}

func (s *Supervisor) set(name string, f func(*FeatureStatus)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.status[name]; st != nil {
		f(st)
		st.Since = s.o.Clock.Now()
	}
}

// Status lists the features, sorted by name.
func (s *Supervisor) Status() []FeatureStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]FeatureStatus, 0, len(s.status))
	for _, st := range s.status {
		out = append(out, *st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
