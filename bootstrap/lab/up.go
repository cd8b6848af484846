package lab

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Prerequisites checks that the lab can run here and says what to install if not.
func Prerequisites() error {
	if os.Geteuid() != 0 {
		return errors.New("kubeforge lab needs root (it creates network namespaces, mounts and cgroups)")
	}
	var missing []string
	for _, tool := range []string{"systemd-nspawn", "ip", "nsenter", "mount", "mountpoint", "setsid"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("kubeforge lab needs %v: apt-get install systemd-container iproute2 util-linux debootstrap", missing)
	}
	return nil
}

// lock serialises up/down/... on one lab directory.
func lock(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// Up creates or resumes the lab so that every requested host runs and accepts ssh.
// It is idempotent: running hosts are left alone, hosts whose processes died (a crash,
// a reboot of the machine) are started again on their existing disks.
func Up(o Options) (*State, error) {
	log := logger{o.Log}
	start := time.Now()
	if err := Prerequisites(); err != nil {
		return nil, err
	}
	if err := raiseLimits(log); err != nil {
		return nil, err
	}
	if o.Dir == "" {
		o.Dir = DefaultDir
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	if len(o.Hosts) == 0 {
		o.Hosts = DefaultHosts
	}
	seen := map[string]bool{}
	for _, n := range o.Hosts {
		if err := validHostName(n); err != nil {
			return nil, err
		}
		if seen[n] {
			return nil, fmt.Errorf("host %q is listed twice", n)
		}
		seen[n] = true
	}
	if o.CacheDir == "" {
		home, _ := os.UserHomeDir()
		o.CacheDir = filepath.Join(home, ".cache", "kubeforge")
	}
	if o.BundleDir != "" {
		if o.BundleDir, err = filepath.Abs(o.BundleDir); err != nil {
			return nil, err
		}
		if fi, err := os.Stat(o.BundleDir); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("bundle %s: not a directory", o.BundleDir)
		}
	}
	unlock, err := lock(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()

	s, err := LoadState(dir)
	if err != nil {
		if _, statErr := os.Stat(statePath(dir)); statErr == nil {
			return nil, err
		}
		subnet := o.Subnet
		if subnet == "" {
			subnet = DefaultSubnet
		}
		s = &State{ID: labID(dir), Dir: dir, Subnet: subnet}
	} else if o.Subnet != "" && o.Subnet != s.Subnet {
		return nil, fmt.Errorf("lab %s already uses subnet %s; run `kubeforge lab down` first to change it to %s", dir, s.Subnet, o.Subnet)
	}
	if o.BundleDir != "" {
		s.BundleDir = o.BundleDir
	}
	_, subnet, err := net.ParseCIDR(s.Subnet)
	if err != nil {
		return nil, fmt.Errorf("lab subnet %q: %w", s.Subnet, err)
	}
	if ones, _ := subnet.Mask.Size(); ones != 24 || subnet.IP.To4() == nil {
		return nil, fmt.Errorf("lab subnet %s: must be an IPv4 /24", s.Subnet)
	}
	s.Gateway = nthIP(subnet, 254).String()
	s.MachineIP = nthIP(subnet, 1).String()
	if err := checkSubnetFree(subnet, machineLink(s.ID)); err != nil {
		return nil, err
	}

	base, err := EnsureBase(o.CacheDir, log)
	if err != nil {
		return nil, err
	}
	if s.Base != "" && s.Base != base {
		log.step("note: existing hosts keep their base %s; new hosts use %s", s.Base, base)
	}
	if s.Base == "" {
		s.Base = base
	}
	clientPub, err := ensureClientKey(dir)
	if err != nil {
		return nil, err
	}
	if err := ensureHub(s.ID, subnet); err != nil {
		return nil, err
	}

	existing := map[string]string{}
	for _, h := range s.Hosts {
		existing[h.Name] = h.Address
	}
	plan, err := addressPlan(subnet, o.Hosts, existing)
	if err != nil {
		return nil, err
	}
	var created []string
	for _, n := range o.Hosts {
		if _, ok := existing[n]; ok {
			continue
		}
		a := plan[n]
		s.Hosts = append(s.Hosts, HostState{Name: n, Address: a, MAC: hostMAC(hostByte(a)), Netns: hostNetns(s.ID, n), HubLink: hubLinkName(hostByte(a))})
		created = append(created, n)
	}
	if err := s.save(); err != nil {
		return nil, err
	}
	// Before any host boots, so a config problem stops up with nothing started.
	if err := writeClusterConfig(s); err != nil {
		return nil, err
	}

	// Prepare every host that is not running, then boot them all at once: boots
	// overlap, so three hosts take little longer than one.
	var toStart []*HostState
	for i := range s.Hosts {
		h := &s.Hosts[i]
		if !seen[h.Name] {
			continue
		}
		if supervisorAlive(s, h) {
			log.step("host %s (%s) already running", h.Name, h.Address)
			if err := addMissingHostsEntries(s, h); err != nil {
				return nil, err
			}
			continue
		}
		ht := time.Now()
		if err := ensureHostNet(s.ID, subnet, h); err != nil {
			return nil, err
		}
		if err := mountRootfs(dir, s.Base, h.Name); err != nil {
			return nil, fmt.Errorf("host %s: %w", h.Name, err)
		}
		if h.HostKey == "" {
			if err := initHostFiles(s, h, clientPub); err != nil {
				return nil, fmt.Errorf("host %s: %w", h.Name, err)
			}
		} else if err := addMissingHostsEntries(s, h); err != nil {
			return nil, err
		}
		if h.Cgroups, err = createHostCgroups(s.ID, h.Name); err != nil {
			return nil, err
		}
		if err := startHost(s, h); err != nil {
			return nil, err
		}
		log.step("host %s (%s) booting (prepared in %s)", h.Name, h.Address, since(ht))
		toStart = append(toStart, h)
	}
	if err := s.save(); err != nil {
		return nil, err
	}
	if err := writeSSHFiles(s); err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	errs := make([]error, len(toStart))
	for i, h := range toStart {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A host boots in about a second; the bound is for a machine loaded
			// many times over (a CI run beside other labs and builds).
			if err := waitSSH(dir, h, sshReadyTimeout); err != nil {
				console := filepath.Join(hostDir(dir, h.Name), "console.log")
				errs[i] = fmt.Errorf("%w (console: %s)\n%s", err, console, tailFile(console, 15))
				return
			}
			log.step("host %s ssh ready after %s", h.Name, since(start))
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return s, err
	}
	log.step("lab up: %d hosts in %s (ssh -F %s <host>)", len(o.Hosts), since(start), filepath.Join(dir, "ssh_config"))
	return s, nil
}

// sshReadyTimeout bounds the wait for a booting host's sshd.
const sshReadyTimeout = 3 * time.Minute

// tailFile is the last n lines of a file, indented, for an error message that
// must outlive the file (a failed test removes its lab).
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "  (" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// Paths returns the user-facing files of the lab.
func (s *State) Paths() Paths { return s.paths() }
