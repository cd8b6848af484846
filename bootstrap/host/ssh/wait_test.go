package ssh_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// Every wait in these tests is bounded: a stuck sshd, agent or connection fails
// the test with a message naming what it waited for, long before the suite's
// timeout, instead of hanging it (issue 11: TestConnectionReuse once hung for 18
// minutes).

// opBudget bounds one test's SSH operations. It is generous (the machine may be
// loaded); what matters is that it is finite.
const opBudget = 2 * time.Minute

// testContext is the context every SSH operation of a test runs under.
func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), opBudget)
	t.Cleanup(cancel)
	return ctx
}

// within runs fn and fails the test if it has not returned after d. fn keeps
// running then (it cannot be stopped), which is why the test stops here.
func within[T any](t testing.TB, d time.Duration, what string, fn func() T) T {
	t.Helper()
	ch := make(chan T, 1)
	go func() { ch <- fn() }()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("%s did not return within %s", what, d)
		panic("unreachable")
	}
}

// waitGroup waits for wg for at most d.
func waitGroup(t testing.TB, wg *sync.WaitGroup, d time.Duration, what string) {
	t.Helper()
	within(t, d, what, func() struct{} { wg.Wait(); return struct{}{} })
}

// receive takes one value from ch, waiting at most d.
func receive[T any](t testing.TB, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	return within(t, d, "receiving "+what, func() T { return <-ch })
}

// pollUntil polls cond every 25ms for at most d; lastErr, if cond sets it, goes
// into the failure message.
func pollUntil(t testing.TB, d time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), 25*time.Millisecond, d, true,
		func(context.Context) (bool, error) {
			ok, err := cond()
			last = err
			return ok, nil
		})
	if err != nil {
		if last != nil {
			t.Fatalf("%s: not within %s: %v", what, d, last)
		}
		t.Fatalf("%s: not within %s", what, d)
	}
}
