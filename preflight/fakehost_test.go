package preflight

import (
	"context"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/host"
)

// fakeHost is an in-memory machine: files, directories, units and the few
// commands the checks and fixes run, with their effects (swapoff empties
// /proc/swaps, sysctl -p writes /proc/sys, firewall-cmd keeps port lists ...).
// It is enough to prove each check's logic and each fix's effect; the real
// commands are exercised by the end-to-end test on lab hosts.
type fakeHost struct {
	name  string
	files map[string]fakeFile
	dirs  map[string]bool
	units map[string]*host.UnitStatus

	uid      string
	nproc    string
	selinux  string // getenforce's answer
	ipAddr   string // `ip -o addr show`
	ss       string // `ss -ltnpH`; "" makes ss fail (fallback to /proc/net/tcp)
	fwRun    []string
	fwPerm   []string
	ufwOn    bool
	ufwRules []string
	// chronyc answers; nil means "chronyd is not running".
	chronyc func(f *fakeHost, sub string) (string, bool)

	ran    []string // mutating commands, in order
	failOn map[string]string
}

type fakeFile struct {
	data string
	mode fs.FileMode
}

func newFakeHost(name string) *fakeHost {
	f := &fakeHost{name: name, files: map[string]fakeFile{}, dirs: map[string]bool{"/": true},
		units: map[string]*host.UnitStatus{}, uid: "0", nproc: "4", failOn: map[string]string{}}
	f.put("/proc/sys/kernel/hostname", name+"\n")
	f.put("/etc/hostname", name+"\n")
	f.put("/proc/swaps", "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n")
	f.put("/proc/meminfo", "MemTotal:        8000000 kB\nMemFree:         4000000 kB\n")
	f.put("/proc/sys/kernel/osrelease", "6.1.0-test\n")
	for _, b := range []string{"iptables", "ip", "mount", "nsenter", "modprobe", "sysctl", "conntrack", "hostnamectl", "chronyd", "chronyc", "ss", "swapoff"} {
		f.bin(b)
	}
	return f
}

func (f *fakeHost) bin(name string) { f.putMode("/usr/sbin/"+name, "#!fake\n", 0o755) }

func (f *fakeHost) put(p, data string) { f.putMode(p, data, 0o644) }

func (f *fakeHost) putMode(p, data string, mode fs.FileMode) {
	f.files[p] = fakeFile{data, mode}
	for d := path.Dir(p); ; d = path.Dir(d) {
		f.dirs[d] = true
		if d == "/" {
			break
		}
	}
}

func (f *fakeHost) file(p string) string { return f.files[p].data }

func (f *fakeHost) unit(name, active, enabled string) {
	f.units[name] = &host.UnitStatus{Name: name, LoadState: "loaded", ActiveState: active, Enabled: enabled}
}

// snapshot is the host's observable state, to prove a second fix changes nothing.
func (f *fakeHost) snapshot() string {
	var b strings.Builder
	keys := slices.Sorted(maps.Keys(f.files))
	for _, k := range keys {
		fmt.Fprintf(&b, "file %s %o %q\n", k, f.files[k].mode, f.files[k].data)
	}
	for _, k := range slices.Sorted(maps.Keys(f.units)) {
		u := f.units[k]
		fmt.Fprintf(&b, "unit %s %s %s\n", k, u.ActiveState, u.Enabled)
	}
	fmt.Fprintf(&b, "selinux %s fw %v %v ufw %v %v\n", f.selinux, f.fwRun, f.fwPerm, f.ufwOn, f.ufwRules)
	return b.String()
}

var _ host.Host = (*fakeHost)(nil)

func (f *fakeHost) Name() string { return f.name }
func (f *fakeHost) Close() error { return nil }

func (f *fakeHost) ReadFile(_ context.Context, p string) ([]byte, error) {
	ff, ok := f.files[p]
	if !ok {
		return nil, fmt.Errorf("%s: read %s: %w", f.name, p, fs.ErrNotExist)
	}
	return []byte(ff.data), nil
}

func (f *fakeHost) WriteFile(_ context.Context, p string, data []byte, opts host.WriteOptions) error {
	if msg, ok := f.failOn["write "+p]; ok {
		return fmt.Errorf("%s: write %s: %s", f.name, p, msg)
	}
	mode := opts.Mode
	if mode == 0 {
		mode = 0o644
	}
	f.putMode(p, string(data), mode)
	return nil
}

func (f *fakeHost) Stat(_ context.Context, p string) (host.FileInfo, error) {
	if ff, ok := f.files[p]; ok {
		return host.FileInfo{Path: p, Size: int64(len(ff.data)), Mode: ff.mode, ModTime: time.Unix(0, 0)}, nil
	}
	if f.dirs[p] {
		return host.FileInfo{Path: p, Mode: fs.ModeDir | 0o755}, nil
	}
	return host.FileInfo{}, fmt.Errorf("%s: stat %s: %w", f.name, p, fs.ErrNotExist)
}

func (f *fakeHost) Remove(_ context.Context, p string) error {
	delete(f.files, p)
	delete(f.dirs, p)
	return nil
}

func (f *fakeHost) MkdirAll(_ context.Context, p string, _ fs.FileMode) error {
	for d := p; d != "/"; d = path.Dir(d) {
		f.dirs[d] = true
	}
	return nil
}

func (f *fakeHost) list(dir string) []string {
	seen := map[string]bool{}
	for p := range f.files {
		if path.Dir(p) == dir {
			seen[path.Base(p)] = true
		}
	}
	for p := range f.dirs {
		if p != "/" && path.Dir(p) == dir {
			seen[path.Base(p)] = true
		}
	}
	out := slices.Collect(maps.Keys(seen))
	sort.Strings(out)
	return out
}

func ok(out string) (host.Result, error) { return host.Result{Stdout: []byte(out)}, nil }
func exit(code int, stderr string) (host.Result, error) {
	return host.Result{ExitCode: code, Stderr: []byte(stderr)}, nil
}

func (f *fakeHost) Run(_ context.Context, c host.Cmd) (host.Result, error) {
	argv := c.Argv
	line := strings.Join(argv, " ")
	if !c.ReadOnly {
		f.ran = append(f.ran, line)
	}
	if msg, bad := f.failOn[line]; bad {
		return exit(1, msg)
	}
	name := path.Base(argv[0])
	if _, err := f.Stat(context.Background(), "/usr/sbin/"+name); err != nil && name != "id" && name != "nproc" && name != "ls" && name != "sh" && name != "dnf" && name != "yum" && name != "apt-get" {
		return host.Result{}, fmt.Errorf("%s: %s: %w", f.name, name, os.ErrNotExist)
	}
	switch name {
	case "id":
		return ok(f.uid + "\n")
	case "nproc":
		return ok(f.nproc + "\n")
	case "ls":
		d := argv[len(argv)-1]
		if !f.dirs[d] {
			return exit(2, "ls: cannot access: No such file or directory")
		}
		return ok(strings.Join(f.list(d), "\n") + "\n")
	case "getenforce":
		return ok(f.selinux + "\n")
	case "setenforce":
		if f.selinux == "Enforcing" && argv[1] == "0" {
			f.selinux = "Permissive"
		}
		return ok("")
	case "swapoff":
		f.put("/proc/swaps", "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n")
		return ok("")
	case "sysctl":
		if len(argv) == 3 && argv[1] == "-p" {
			for k, v := range sysctlAssignments(f.file(argv[2])) {
				p := procSysPath(k)
				if _, exists := f.files[p]; !exists {
					return exit(255, "sysctl: cannot stat "+p+": No such file or directory")
				}
				f.put(p, v+"\n")
			}
			return ok("")
		}
	case "modprobe":
		f.dirs["/sys/module/"+argv[1]] = true
		f.put("/proc/modules", f.file("/proc/modules")+argv[1]+" 32768 0 - Live 0x0\n")
		if argv[1] == "br_netfilter" {
			for _, k := range requiredSysctls[1:] {
				f.put(procSysPath(k), "0\n")
			}
		}
		return ok("")
	case "hostnamectl":
		f.put("/proc/sys/kernel/hostname", argv[2]+"\n")
		f.put("/etc/hostname", argv[2]+"\n")
		return ok("")
	case "hostname":
		f.put("/proc/sys/kernel/hostname", argv[1]+"\n")
		return ok("")
	case "ip":
		return ok(f.ipAddr)
	case "ss":
		if f.ss == "" {
			return exit(1, "ss: not supported")
		}
		return ok(f.ss)
	case "firewall-cmd":
		return f.firewallCmd(argv[1:])
	case "ufw":
		switch argv[1] {
		case "status":
			if !f.ufwOn {
				return ok("Status: inactive\n")
			}
			out := "Status: active\n\nTo                         Action      From\n--                         ------      ----\n"
			for _, r := range f.ufwRules {
				out += fmt.Sprintf("%-26s ALLOW       Anywhere\n", r)
			}
			return ok(out)
		case "allow":
			f.ufwRules = append(f.ufwRules, argv[2])
			return ok("Rule added\n")
		case "disable":
			f.ufwOn = false
			f.put("/etc/ufw/ufw.conf", "ENABLED=no\n")
			return ok("Firewall stopped and disabled on system startup\n")
		}
	case "chronyc":
		if f.chronyc != nil {
			if out, up := f.chronyc(f, argv[len(argv)-1]); up {
				return ok(out)
			}
		}
		return exit(1, "506 Cannot talk to daemon")
	case "dnf", "yum", "apt-get":
		for _, p := range argv[3:] {
			if p == "chrony" {
				f.bin("chronyd")
				f.bin("chronyc")
				f.unit("chronyd.service", "inactive", "disabled")
				f.unit("chrony.service", "inactive", "disabled")
			} else if !strings.HasPrefix(p, "-") {
				f.bin(strings.TrimSuffix(p, "-tools"))
			}
		}
		return ok("")
	case "grubby":
		return ok("")
	}
	return exit(1, "fake: unhandled command "+line)
}

func (f *fakeHost) firewallCmd(args []string) (host.Result, error) {
	if u := f.units[firewalldUnit]; u == nil || !u.Active() {
		return exit(252, "FirewallD is not running")
	}
	permanent := len(args) > 0 && args[0] == "--permanent"
	if permanent {
		args = args[1:]
	}
	list := &f.fwRun
	if permanent {
		list = &f.fwPerm
	}
	for _, a := range args {
		switch {
		case a == "--list-ports":
			return ok(strings.Join(*list, " ") + "\n")
		case a == "--reload":
			f.fwRun = slices.Clone(f.fwPerm)
		case strings.HasPrefix(a, "--add-port="):
			*list = append(*list, strings.TrimPrefix(a, "--add-port="))
		default:
			return exit(2, "fake firewall-cmd: unknown "+a)
		}
	}
	return ok("success\n")
}

func (f *fakeHost) Units() host.Units { return fakeUnits{f} }

type fakeUnits struct{ f *fakeHost }

func (u fakeUnits) get(name string) *host.UnitStatus {
	if s := u.f.units[name]; s != nil {
		return s
	}
	return &host.UnitStatus{Name: name, LoadState: "not-found", ActiveState: "inactive"}
}

func (u fakeUnits) WriteUnit(context.Context, string, []byte) (bool, error) { return false, nil }
func (u fakeUnits) RemoveUnit(context.Context, string) error                { return nil }
func (u fakeUnits) DaemonReload(context.Context) error {
	u.f.ran = append(u.f.ran, "daemon-reload")
	return nil
}
func (u fakeUnits) set(name, active, enabled string) error {
	s, ok := u.f.units[name]
	if !ok {
		return fmt.Errorf("%s: unit %s not found", u.f.name, name)
	}
	if active != "" {
		s.ActiveState = active
	}
	if enabled != "" {
		s.Enabled = enabled
	}
	return nil
}
func (u fakeUnits) Enable(_ context.Context, n string) error  { return u.set(n, "", "enabled") }
func (u fakeUnits) Disable(_ context.Context, n string) error { return u.set(n, "", "disabled") }
func (u fakeUnits) Start(_ context.Context, n string) error   { return u.set(n, "active", "") }
func (u fakeUnits) Stop(_ context.Context, n string) error    { return u.set(n, "inactive", "") }
func (u fakeUnits) Restart(_ context.Context, n string) error {
	u.f.ran = append(u.f.ran, "restart "+n)
	return u.set(n, "active", "")
}
func (u fakeUnits) Status(_ context.Context, n string) (host.UnitStatus, error) {
	return *u.get(n), nil
}
func (u fakeUnits) Journal(context.Context, string, int) ([]string, error) { return nil, nil }
