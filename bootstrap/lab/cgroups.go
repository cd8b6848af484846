package lab

import (
	"bufio"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// Each lab host lives in a cgroup of its own in EVERY hierarchy the machine mounts
// (all v1 controllers, name=systemd and the unified one), below the cgroup of whoever
// started the lab. Two reasons: systemd-nspawn --keep-unit puts the container in its
// caller's cgroup, and the kubelet inside needs a cgroup in each v1 controller that
// it can create children in. Because everything a host runs stays below these
// directories, Down can find and stop every process of a host through them.

type hierarchy struct {
	mount string // /sys/fs/cgroup/cpu
	key   string // controllers as /proc/self/cgroup names them ("cpu", "name=systemd", "")
}

func cgroupHierarchies() ([]hierarchy, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []hierarchy
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		i := strings.Index(line, " - ")
		if i < 0 {
			continue
		}
		pre, post := strings.Fields(line[:i]), strings.Fields(line[i+3:])
		if len(pre) < 5 || len(post) < 3 {
			continue
		}
		switch post[0] {
		case "cgroup2":
			out = append(out, hierarchy{mount: pre[4], key: ""})
		case "cgroup":
			var ctrls []string
			for _, o := range strings.Split(post[2], ",") {
				switch o {
				case "rw", "ro", "xattr", "noprefix", "clone_children", "cpuset_v2_mode", "nsdelegate", "favordynmods", "memory_localevents", "memory_recursiveprot", "memory_hugetlb_accounting":
					continue
				}
				if strings.HasPrefix(o, "release_agent=") {
					continue
				}
				ctrls = append(ctrls, o)
			}
			sort.Strings(ctrls)
			out = append(out, hierarchy{mount: pre[4], key: strings.Join(ctrls, ",")})
		}
	}
	return out, sc.Err()
}

// selfCgroups maps a hierarchy key to this process's cgroup path in it.
func selfCgroups() (map[string]string, error) {
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		ctrls := strings.Split(parts[1], ",")
		sort.Strings(ctrls)
		out[strings.Join(ctrls, ",")] = parts[2]
	}
	return out, nil
}

// createHostCgroups makes <mount>/<caller>/kubeforge-lab-<id>/<host> in every
// hierarchy and returns mount -> directory.
func createHostCgroups(id, host string) (map[string]string, error) {
	hs, err := cgroupHierarchies()
	if err != nil {
		return nil, err
	}
	self, err := selfCgroups()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, h := range hs {
		parent, ok := self[h.key]
		if !ok {
			continue
		}
		dir := filepath.Join(h.mount, parent, "kubeforge-lab-"+id, host)
		if err := mkdirCgroup(filepath.Join(h.mount, parent), dir); err != nil {
			return nil, fmt.Errorf("host %s: cgroup in %s: %w", host, h.mount, err)
		}
		out[h.mount] = dir
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("host %s: no cgroup hierarchy found under /sys/fs/cgroup", host)
	}
	return out, nil
}

// mkdirCgroup creates dir and the levels between base and it. cpuset needs its cpus
// and mems filled at every new level before a process may join.
func mkdirCgroup(base, dir string) error {
	rel, err := filepath.Rel(base, dir)
	if err != nil {
		return err
	}
	cur := base
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		parent := cur
		cur = filepath.Join(cur, part)
		if err := os.Mkdir(cur, 0o755); err != nil && !os.IsExist(err) {
			return err
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if v, err := os.ReadFile(filepath.Join(parent, f)); err == nil {
				if cv, _ := os.ReadFile(filepath.Join(cur, f)); strings.TrimSpace(string(cv)) == "" {
					if err := os.WriteFile(filepath.Join(cur, f), v, 0o644); err != nil {
						return fmt.Errorf("%s: %w", filepath.Join(cur, f), err)
					}
				}
			}
		}
	}
	return nil
}

// cgroupPIDs lists every process in dir and below.
func cgroupPIDs(dir string) []int {
	var pids []int
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		data, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			return nil
		}
		for _, f := range strings.Fields(string(data)) {
			if n, err := strconv.Atoi(f); err == nil {
				pids = append(pids, n)
			}
		}
		return nil
	})
	return pids
}

// killCgroups SIGKILLs whatever is still in the host's cgroups, then removes the
// directories deepest first (the host's systemd created children of its own).
func killCgroups(dirs map[string]string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		var left []int
		for _, d := range dirs {
			left = append(left, cgroupPIDs(d)...)
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v do not die", left)
		}
		for _, p := range left {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var firstErr error
	for _, d := range dirs {
		if err := removeCgroupTree(d); err != nil && firstErr == nil {
			firstErr = err
		}
		// Remove the lab level too once its last host is gone.
		_ = os.Remove(filepath.Dir(d))
	}
	return firstErr
}

// removeCgroupTree removes dir and its children, deepest first. A cgroup whose
// last process was just killed cannot be removed until the kernel has finished
// with it (EBUSY); in the memory controller, with the kubelet's pod cgroups
// below, that took seconds on a loaded machine, so each directory gets up to
// cgroupRemoveTimeout.
func removeCgroupTree(dir string) error {
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	var firstErr error
	for i := len(dirs) - 1; i >= 0; i-- {
		var err error
		_ = wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, cgroupRemoveTimeout, true, func(context.Context) (bool, error) {
			if err = os.Remove(dirs[i]); err == nil || os.IsNotExist(err) {
				err = nil
				return true, nil
			}
			return false, nil
		})
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("removing cgroup %s: %w", dirs[i], err)
		}
	}
	return firstErr
}

// cgroupRemoveTimeout bounds the wait for one cgroup directory to become
// removable.
const cgroupRemoveTimeout = 30 * time.Second
