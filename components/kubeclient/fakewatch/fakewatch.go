// Package fakewatch lets tests that run informers against client-go's fake
// clientset wait until the informers' watches are open.
//
// The fake clientset's tracker does not replay what changed between an
// informer's list and its watch (a real apiserver resumes from the list's
// resource version), so a test that changes objects before the watch is open
// can lose the event for good. On a loaded CI machine that is what happened
// (the CSR approver's TestRun); every such test waits for the watch first.
package fakewatch

import (
	"sync"

	"k8s.io/apimachinery/pkg/watch"
	clienttesting "k8s.io/client-go/testing"
)

// Fake is what both of client-go's fake clientsets offer.
type Fake interface {
	PrependWatchReactor(resource string, reaction clienttesting.WatchReactionFunc)
	Tracker() clienttesting.ObjectTracker
}

// Opened returns a channel that receives the resource's name each time a watch
// on it opens (resource "*": any resource). Call it before starting the
// informers. Up to 1024 openings wait to be received; more are dropped
// rather than block the clientset.
func Opened(c Fake, resource string) <-chan string {
	ch := make(chan string, 1024)
	c.PrependWatchReactor(resource, func(action clienttesting.Action) (bool, watch.Interface, error) {
		w, err := c.Tracker().Watch(action.GetResource(), action.GetNamespace())
		if err != nil {
			return false, nil, err
		}
		select {
		case ch <- action.GetResource().Resource:
		default:
		}
		return true, w, nil
	})
	return ch
}

// AllOpened returns a channel closed once a watch on each of resources has
// opened.
func AllOpened(c Fake, resources ...string) <-chan struct{} {
	var mu sync.Mutex
	left := map[string]bool{}
	for _, r := range resources {
		left[r] = true
	}
	done := make(chan struct{})
	c.PrependWatchReactor("*", func(action clienttesting.Action) (bool, watch.Interface, error) {
		w, err := c.Tracker().Watch(action.GetResource(), action.GetNamespace())
		if err != nil {
			return false, nil, err
		}
		mu.Lock()
		defer mu.Unlock()
		if left[action.GetResource().Resource] {
			delete(left, action.GetResource().Resource)
			if len(left) == 0 {
				close(done)
			}
		}
		return true, w, nil
	})
	return done
}
