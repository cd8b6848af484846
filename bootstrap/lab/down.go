package lab

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Down powers every host off, then removes everything the lab made: processes,
// mounts, network namespaces and links, cgroups and the lab directory. The base image
// cache stays. It finishes by checking for leftovers and reports any it finds.
func Down(dir string, w io.Writer) error {
	log := logger{w}
	start := time.Now()
	if err := Prerequisites(); err != nil {
		return err
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	s, err := LoadState(dir)
	if err != nil {
		if _, statErr := os.Stat(dir); os.IsNotExist(statErr) {
			log.step("no lab at %s: nothing to do", dir)
			return nil
		}
		// A directory without state (a crash before the first save) is cleaned by
		// what can be derived from the directory name alone.
		s = &State{ID: labID(dir), Dir: dir}
	}
	unlock, err := lock(dir)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make([]error, len(s.Hosts))
	for i := range s.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = stopHost(s, &s.Hosts[i], log)
		}()
	}
	wg.Wait()
	var all []error
	all = append(all, errs...)
	// The machine's end of the veth first: deleting it removes its peer in the
	// hub at once. Deleting the hub namespace first leaves the kernel to remove
	// the pair later, asynchronously, and a check-then-delete of the link races
	// that ("Cannot find device", seen under load).
	if linkExists("", machineLink(s.ID)) {
		if err := run("ip", "link", "del", machineLink(s.ID)); err != nil && linkExists("", machineLink(s.ID)) {
			all = append(all, err)
		}
	}
	all = append(all, deleteNetns(hubNetns(s.ID)))
	unlock()
	if err := errors.Join(all...); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if left := Leftovers(s); len(left) > 0 {
		return fmt.Errorf("lab down left these behind:\n  %s", strings.Join(left, "\n  "))
	}
	log.step("lab down: %d hosts removed in %s; nothing left behind", len(s.Hosts), since(start))
	return nil
}

// stopHost asks the host to power off (SIGTERM makes nspawn send its init the
// poweroff signal), waits, then kills whatever remains and removes its resources.
func stopHost(s *State, h *HostState, log logger) error {
	t := time.Now()
	if supervisorAlive(s, h) {
		// Stop the supervisor from starting it again, then power off.
		_ = syscall.Kill(h.PID, syscall.SIGKILL)
		for _, pid := range nspawnPIDs(h) {
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) && len(nspawnPIDs(h)) > 0 {
			time.Sleep(50 * time.Millisecond)
		}
	}
	var errs []error
	if len(h.Cgroups) > 0 {
		errs = append(errs, killCgroups(h.Cgroups))
	}
	root := rootfsDir(s.Dir, h.Name)
	if isMountpoint(root) {
		errs = append(errs, run("umount", root))
	}
	errs = append(errs, deleteNetns(h.Netns))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("host %s: %w", h.Name, err)
	}
	log.step("host %s stopped and removed in %s", h.Name, since(t))
	return nil
}

func nspawnPIDs(h *HostState) []int {
	var out []int
	for _, d := range h.Cgroups {
		for _, pid := range cgroupPIDs(d) {
			if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && strings.TrimSpace(string(comm)) == "systemd-nspawn" {
				out = append(out, pid)
			}
		}
		break
	}
	return out
}

// Leftovers lists anything of the lab still present on the machine: network
// namespaces, links, mounts, cgroups, processes, the directory.
func Leftovers(s *State) []string {
	var left []string
	prefix := "kf-" + s.ID + "-"
	if ents, err := os.ReadDir("/run/netns"); err == nil {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), prefix) {
				left = append(left, "network namespace "+e.Name())
			}
		}
	}
	if linkExists("", machineLink(s.ID)) {
		left = append(left, "link "+machineLink(s.ID))
	}
	if f, err := os.Open("/proc/self/mountinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) > 4 && (strings.HasPrefix(fields[4], s.Dir+"/") || strings.Contains(fields[4], "/run/netns/"+prefix)) {
				left = append(left, "mount "+fields[4])
			}
		}
		f.Close()
	}
	if hs, err := cgroupHierarchies(); err == nil {
		for _, h := range hs {
			_ = filepath.WalkDir(h.mount, func(p string, d os.DirEntry, err error) error {
				if err != nil || !d.IsDir() {
					return nil
				}
				if d.Name() == "kubeforge-lab-"+s.ID {
					left = append(left, "cgroup "+p)
					return filepath.SkipDir
				}
				if strings.Count(strings.TrimPrefix(p, h.mount), "/") > 4 {
					return filepath.SkipDir
				}
				return nil
			})
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(data), s.Dir+"/hosts/") {
			left = append(left, fmt.Sprintf("process %s: %s", filepath.Base(filepath.Dir(p)), strings.ReplaceAll(string(data), "\x00", " ")))
		}
	}
	if _, err := os.Stat(s.Dir); err == nil {
		left = append(left, "directory "+s.Dir)
	}
	return left
}
