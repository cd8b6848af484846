package lab

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// inotifyMinimums are the machine-wide inotify limits a lab needs. Lab hosts
// share the machine's kernel and, without user namespaces, its root user, so
// every host's containerd, kubelet and systemd draw on one per-user budget.
// Debian's default of 128 instances runs out with a few labs up at once
// (containerd then fails with "too many open files"). kind documents the same
// limits for the same reason.
var inotifyMinimums = []struct {
	path string
	min  int
}{
	{"/proc/sys/fs/inotify/max_user_instances", 1024},
	{"/proc/sys/fs/inotify/max_user_watches", 524288},
}

// raiseLimits raises the machine's inotify limits to the minimums, never
// lowering one, and says what it changed.
func raiseLimits(log logger) error {
	for _, l := range inotifyMinimums {
		b, err := os.ReadFile(l.path)
		if err != nil {
			return fmt.Errorf("reading %s: %w", l.path, err)
		}
		cur, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			return fmt.Errorf("%s: %q is not a number", l.path, b)
		}
		if cur >= l.min {
			continue
		}
		if err := os.WriteFile(l.path, []byte(strconv.Itoa(l.min)), 0o644); err != nil {
			return fmt.Errorf("raising %s from %d to %d: %w", l.path, cur, l.min, err)
		}
		log.step("raised %s from %d to %d (all lab hosts share the machine's per-user inotify budget)", strings.TrimPrefix(l.path, "/proc/sys/"), cur, l.min)
	}
	return nil
}
