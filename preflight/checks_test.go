package preflight

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/config"
)

// seedCluster is the seed topology: master01 (control-plane, etcd, time server),
// node01 and node02 (worker, etcd) on 192.168.161.151-153.
func seedCluster() *config.Cluster { return config.Default() }

// testEnv builds the Env for node on a host of the given distribution.
func testEnv(t testing.TB, node, distro string, mut func(*config.Cluster)) (*Env, *fakeHost) {
	t.Helper()
	c := seedCluster()
	if mut != nil {
		mut(c)
	}
	n, ok := c.Host(node)
	if !ok {
		t.Fatalf("no host %s", node)
	}
	env, err := NewEnv(c, n, Options{Now: func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	env.syncWait = 0 // the fake chronyd settles at once
	f := distroHost(t, distro)
	f.name = node
	f.put("/proc/sys/kernel/hostname", node+"\n")
	f.put("/etc/hostname", node+"\n")
	env.Detect(context.Background(), f)
	if env.OS == nil {
		t.Fatalf("detect: %v", env.OSErr)
	}
	return env, f
}

func findCheck(t *testing.T, env *Env, name string) Checker {
	t.Helper()
	for _, c := range Checks(env) {
		if c.Name() == name {
			return c
		}
	}
	t.Fatalf("no check %s", name)
	return nil
}

func joinErrs(errs []error) string { return errors.Join(errs...).Error() }

// checkCase is one row of a check's table: the host's state, what the check must
// say about it, and, when fix is set, that the fix makes it pass and a second fix
// changes nothing.
type checkCase struct {
	name    string
	node    string // default node01
	distro  string // default debian-12
	cluster func(*config.Cluster)
	env     func(*Env)
	setup   func(*fakeHost)
	errs    []string // substrings of the errors; nil means none
	warns   []string
	fix     bool
	notFix  bool // the check must not be fixable here
	after   func(t *testing.T, f *fakeHost)
}

func runCheckCases(t *testing.T, check string, cases []checkCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			node, distro := tc.node, tc.distro
			if node == "" {
				node = "node01"
			}
			if distro == "" {
				distro = "debian-12"
			}
			env, f := testEnv(t, node, distro, tc.cluster)
			if tc.env != nil {
				tc.env(env)
			}
			if tc.setup != nil {
				tc.setup(f)
			}
			c := findCheck(t, env, check)
			warns, errs := c.Check(ctx, f)
			assertFindings(t, "before", warns, errs, tc.warns, tc.errs)
			fixer, fixable := c.(Fixer)
			if tc.notFix && fixable && fixer.FixDescription() != "" {
				t.Fatalf("check is fixable here: %q", fixer.FixDescription())
			}
			if !tc.fix {
				return
			}
			if !fixable || fixer.FixDescription() == "" {
				t.Fatal("check has no fix")
			}
			if err := fixer.Fix(ctx, f); err != nil {
				t.Fatalf("fix: %v", err)
			}
			warns, errs = c.Check(ctx, f)
			assertFindings(t, "after fix", warns, errs, nil, nil)
			if tc.after != nil {
				tc.after(t, f)
			}
			snap := f.snapshot()
			if err := fixer.Fix(ctx, f); err != nil {
				t.Fatalf("second fix: %v", err)
			}
			if again := f.snapshot(); again != snap {
				t.Fatalf("second fix changed the host:\n--- after first fix\n%s\n--- after second\n%s", snap, again)
			}
			warns, errs = c.Check(ctx, f)
			assertFindings(t, "after second fix", warns, errs, nil, nil)
		})
	}
}

func assertFindings(t *testing.T, when string, warns, errs []error, wantWarns, wantErrs []string) {
	t.Helper()
	match := func(kind string, got []error, want []string) {
		if len(want) == 0 {
			if len(got) > 0 {
				t.Fatalf("%s: unexpected %s: %s", when, kind, joinErrs(got))
			}
			return
		}
		if len(got) == 0 {
			t.Fatalf("%s: no %s, want %q", when, kind, want)
		}
		all := joinErrs(got)
		for _, w := range want {
			if !strings.Contains(all, w) {
				t.Fatalf("%s: %s %q do not mention %q", when, kind, all, w)
			}
		}
	}
	match("errors", errs, wantErrs)
	match("warnings", warns, wantWarns)
}

func TestPrivilegedUserCheck(t *testing.T) {
	runCheckCases(t, "IsPrivilegedUser", []checkCase{
		{name: "root", setup: func(f *fakeHost) { f.uid = "0" }},
		{name: "not root", setup: func(f *fakeHost) { f.uid = "1000" }, errs: []string{"uid 1000", "must run as root"}, notFix: true},
	})
}

func TestOSCheck(t *testing.T) {
	for _, d := range []string{"centos-7", "rocky-8", "alma-9", "rhel-9", "debian-12", "ubuntu-22.04"} {
		runCheckCases(t, "OS", []checkCase{{name: d, distro: d}})
	}
	runCheckCases(t, "OS", []checkCase{{name: "untested derivative", distro: "fedora-40", warns: []string{"Fedora Linux 40", "not tested"}}})
	env, f := testEnv(t, "node01", "debian-12", nil)
	f.put("/etc/os-release", fixture(t, "os-release/opensuse-15"))
	env.Detect(context.Background(), f)
	_, errs := findCheck(t, env, "OS").Check(context.Background(), f)
	if len(errs) == 0 || !strings.Contains(joinErrs(errs), "unsupported operating system") {
		t.Fatalf("openSUSE: %v", errs)
	}
	// Checks that need the configurer say so instead of guessing.
	_, errs = findCheck(t, env, "TimeSync").Check(context.Background(), f)
	if len(errs) == 0 || !strings.Contains(joinErrs(errs), "unsupported OS") {
		t.Fatalf("TimeSync on openSUSE: %v", errs)
	}
}

func TestCPUAndMemChecks(t *testing.T) {
	runCheckCases(t, "NumCPU", []checkCase{
		{name: "enough", node: "master01"},
		{name: "one CPU on control plane", node: "master01", setup: func(f *fakeHost) { f.nproc = "1" }, errs: []string{"at least 2 CPUs", "has 1"}, notFix: true},
		{name: "one CPU on a worker is fine", node: "node01", setup: func(f *fakeHost) { f.nproc = "1" }},
		{name: "cpuinfo fallback", node: "master01", setup: func(f *fakeHost) {
			f.nproc = "x"
			f.put("/proc/cpuinfo", "processor\t: 0\nmodel name\t: x\n")
		}, errs: []string{"has 1"}},
	})
	runCheckCases(t, "Mem", []checkCase{
		{name: "enough", node: "master01"},
		{name: "too little", node: "master01", setup: func(f *fakeHost) { f.put("/proc/meminfo", "MemTotal:        1024000 kB\n") },
			errs: []string{"at least 1700 MB", "has 1000 MB"}, notFix: true},
		{name: "worker not checked", node: "node02", setup: func(f *fakeHost) { f.put("/proc/meminfo", "MemTotal:        1024000 kB\n") }},
	})
}

func TestBinariesCheck(t *testing.T) {
	runCheckCases(t, "RequiredBinaries", []checkCase{
		{name: "all present"},
		{name: "conntrack missing on EL installs conntrack-tools", distro: "rocky-8",
			setup: func(f *fakeHost) { delete(f.files, "/usr/sbin/conntrack") },
			errs:  []string{"missing conntrack", "install conntrack-tools"}, fix: true,
			after: func(t *testing.T, f *fakeHost) {
				if !strings.Contains(strings.Join(f.ran, "\n"), "dnf install -y conntrack-tools") {
					t.Errorf("ran %q", f.ran)
				}
			}},
		{name: "conntrack is not needed without the worker role", node: "master01",
			setup: func(f *fakeHost) { delete(f.files, "/usr/sbin/conntrack") }},
		{name: "not executable", setup: func(f *fakeHost) { f.putMode("/usr/sbin/iptables", "x", 0o644) },
			errs: []string{"missing iptables"}},
	})
}

func TestLeftoverStateCheck(t *testing.T) {
	runCheckCases(t, "LeftoverState", []checkCase{
		{name: "clean"},
		{name: "empty dirs are fine", setup: func(f *fakeHost) { f.dirs["/etc/kubernetes"] = true; f.dirs["/var/lib/etcd"] = true }},
		{name: "previous installation", setup: func(f *fakeHost) {
			f.put("/etc/kubernetes/pki/ca.crt", "x")
			f.put("/var/lib/etcd/member/snap/db", "x")
		}, errs: []string{"/etc/kubernetes is not empty (pki)", "/var/lib/etcd is not empty (member)", "kubeforge reset"}, notFix: true},
		{name: "custom etcd data dir", cluster: func(c *config.Cluster) { c.Spec.Etcd.DataDir = "/data/etcd" },
			setup: func(f *fakeHost) { f.put("/data/etcd/member/x", "x") }, errs: []string{"/data/etcd is not empty"}},
	})
}

func TestFirewallCheck(t *testing.T) {
	openPorts := func(e *Env) { e.Firewall = config.FirewallOpenPorts }
	runCheckCases(t, "Firewalld", []checkCase{
		{name: "no firewall installed", distro: "rocky-8"},
		{name: "firewalld inactive and disabled", distro: "rocky-8", setup: func(f *fakeHost) { f.unit(firewalldUnit, "inactive", "disabled") }},
		{name: "firewalld active is disabled by the fix", distro: "rocky-8",
			setup: func(f *fakeHost) { f.unit(firewalldUnit, "active", "enabled") },
			errs:  []string{"firewalld is active", "--firewall=open-ports"}, fix: true,
			after: func(t *testing.T, f *fakeHost) {
				if u := f.units[firewalldUnit]; u.ActiveState != "inactive" || u.Enabled != "disabled" {
					t.Errorf("firewalld %+v", u)
				}
			}},
		{name: "firewalld enabled for boot only", distro: "centos-7",
			setup: func(f *fakeHost) { f.unit(firewalldUnit, "inactive", "enabled") },
			errs:  []string{"next boot"}, fix: true},
		{name: "open-ports opens exactly the control-plane and etcd ports", node: "master01", distro: "alma-9", env: openPorts,
			setup: func(f *fakeHost) {
				f.bin("firewall-cmd")
				f.unit(firewalldUnit, "active", "enabled")
				f.fwPerm = []string{"22/tcp", "6443/tcp"}
				f.fwRun = []string{"22/tcp", "6443/tcp"}
			},
			errs: []string{"does not allow 10257/tcp (kube-controller-manager)", "2379/tcp (etcd clients)", "8472/udp (VXLAN overlay)", "123/udp (chrony"},
			fix:  true,
			after: func(t *testing.T, f *fakeHost) {
				want := "22/tcp 6443/tcp 10257/tcp 10259/tcp 2379/tcp 2380/tcp 10250/tcp 8472/udp 30000-32767/tcp 123/udp"
				if got := strings.Join(f.fwPerm, " "); got != want {
					t.Errorf("permanent ports %q, want %q", got, want)
				}
				if got := strings.Join(f.fwRun, " "); got != want {
					t.Errorf("runtime ports %q (no reload?), want %q", got, want)
				}
				if u := f.units[firewalldUnit]; !u.Active() {
					t.Error("open-ports stopped firewalld")
				}
			}},
		{name: "open-ports: a range already open covers single ports; worker gets kube-proxy health", node: "node01", distro: "rocky-8", env: openPorts,
			cluster: func(c *config.Cluster) { c.Spec.Networking.Overlay.Port = 4789 },
			setup: func(f *fakeHost) {
				f.bin("firewall-cmd")
				f.unit(firewalldUnit, "active", "enabled")
				f.fwPerm = []string{"2379-2380/tcp", "10250/tcp", "4789/udp", "30000-32767/tcp", "10256/tcp"}
				f.fwRun = []string{"2379-2380/tcp", "10250/tcp", "4789/udp", "30000-32767/tcp"}
			},
			// 10256 is only in the permanent set: not open until a reload.
			errs: []string{"does not allow 10256/tcp (kube-proxy health check)"}, fix: true},
		{name: "open-ports with firewalld off passes", distro: "rocky-8", env: openPorts,
			setup: func(f *fakeHost) { f.unit(firewalldUnit, "inactive", "disabled") }},
		{name: "ufw active on Ubuntu is disabled by the fix", distro: "ubuntu-22.04",
			setup: func(f *fakeHost) { f.bin("ufw"); f.ufwOn = true; f.put("/etc/ufw/ufw.conf", "ENABLED=yes\n") },
			errs:  []string{"ufw is active"}, fix: true,
			after: func(t *testing.T, f *fakeHost) {
				if f.ufwOn || !strings.Contains(f.file("/etc/ufw/ufw.conf"), "ENABLED=no") {
					t.Error("ufw still on")
				}
			}},
		{name: "ufw open-ports", distro: "ubuntu-22.04", node: "node02", env: openPorts,
			setup: func(f *fakeHost) { f.bin("ufw"); f.ufwOn = true; f.ufwRules = []string{"22/tcp", "10250/tcp"} },
			errs:  []string{"does not allow 2379/tcp"}, fix: true,
			after: func(t *testing.T, f *fakeHost) {
				want := "22/tcp 10250/tcp 2379/tcp 2380/tcp 8472/udp 30000:32767/tcp 10256/tcp"
				if got := strings.Join(f.ufwRules, " "); got != want {
					t.Errorf("ufw rules %q, want %q", got, want)
				}
			}},
	})
}

func TestSELinuxCheck(t *testing.T) {
	selinux := func(mode, conf string) func(*fakeHost) {
		return func(f *fakeHost) {
			f.bin("getenforce")
			f.bin("setenforce")
			f.selinux = mode
			if conf != "" {
				f.put(selinuxConfig, "# This file controls the state of SELinux\nSELINUX="+conf+"\nSELINUXTYPE=targeted\n")
			}
		}
	}
	runCheckCases(t, "SELinux", []checkCase{
		{name: "no SELinux tools (Debian)"},
		{name: "kernel without SELinux", distro: "rocky-8", setup: selinux("Disabled", "enforcing")},
		{name: "enforcing is disabled by default", distro: "rocky-8", setup: selinux("Enforcing", "enforcing"),
			errs: []string{"SELinux is enforcing", "SELINUX=enforcing"}, fix: true,
			after: func(t *testing.T, f *fakeHost) {
				if f.selinux != "Permissive" {
					t.Errorf("getenforce says %s after the fix", f.selinux)
				}
				want := "# This file controls the state of SELinux\nSELINUX=disabled\nSELINUXTYPE=targeted\n"
				if got := f.file(selinuxConfig); got != want {
					t.Errorf("config %q", got)
				}
				if b := f.file(selinuxConfig + ".kubeforge-bak-20260102T030405Z"); !strings.Contains(b, "SELINUX=enforcing") {
					t.Errorf("no backup with the original: %q", b)
				}
			}},
		{name: "permissive mode from the config", distro: "centos-7", setup: selinux("Enforcing", "enforcing"),
			env:  func(e *Env) { e.SELinux = config.SELinuxPermissive },
			errs: []string{"set it to permissive"}, fix: true,
			after: func(t *testing.T, f *fakeHost) {
				if !strings.Contains(f.file(selinuxConfig), "SELINUX=permissive\n") {
					t.Errorf("config %q", f.file(selinuxConfig))
				}
			}},
		{name: "EL 9 also sets the selinux=0 kernel argument", distro: "rhel-9", setup: func(f *fakeHost) {
			selinux("Enforcing", "enforcing")(f)
			f.bin("grubby")
		}, errs: []string{"enforcing"}, fix: true,
			after: func(t *testing.T, f *fakeHost) {
				if !strings.Contains(strings.Join(f.ran, "\n"), "grubby --update-kernel ALL --args selinux=0") {
					t.Errorf("ran %q", f.ran)
				}
			}},
		{name: "permissive now but enforcing after reboot", distro: "rocky-8", setup: selinux("Permissive", "enforcing"),
			errs: []string{"enforce again after a reboot"}, fix: true},
		{name: "enforcing-keep only warns and has no fix", distro: "rocky-8", setup: selinux("Enforcing", "enforcing"),
			env: func(e *Env) { e.SELinux = config.SELinuxEnforcingKeep }, warns: []string{"enforcing-keep"}, notFix: true},
	})
}

func TestSwapCheck(t *testing.T) {
	const fstabContent = "UUID=abc / ext4 defaults 0 1\n/swapfile none swap sw 0 0\n# /old-swap none swap sw 0 0\nUUID=def none  swap  defaults 0 0\n"
	runCheckCases(t, "Swap", []checkCase{
		{name: "no swap", setup: func(f *fakeHost) { f.put(fstab, "UUID=abc / ext4 defaults 0 1\n") }},
		{name: "swap on and in fstab", setup: func(f *fakeHost) {
			f.bin("swapoff")
			f.put("/proc/swaps", "Filename\tType\tSize\tUsed\tPriority\n/swapfile                               file\t\t1048572\t\t0\t\t-2\n")
			f.put(fstab, fstabContent)
		}, errs: []string{"swap is on (/swapfile)", "/swapfile none swap sw 0 0", "UUID=def none  swap  defaults 0 0"}, fix: true,
			after: func(t *testing.T, f *fakeHost) {
				want := "UUID=abc / ext4 defaults 0 1\n" + swapOffPrefix + "/swapfile none swap sw 0 0\n# /old-swap none swap sw 0 0\n" + swapOffPrefix + "UUID=def none  swap  defaults 0 0\n"
				if got := f.file(fstab); got != want {
					t.Errorf("fstab:\n%s\nwant:\n%s", got, want)
				}
				if b := f.file(fstab + ".kubeforge-bak-20260102T030405Z"); b != fstabContent {
					t.Errorf("backup %q", b)
				}
				if !strings.Contains(strings.Join(f.ran, "\n"), "swapoff -a") || !strings.Contains(strings.Join(f.ran, "\n"), "daemon-reload") {
					t.Errorf("ran %q", f.ran)
				}
			}},
		{name: "only an fstab line (swap not on yet)", setup: func(f *fakeHost) { f.bin("swapoff"); f.put(fstab, "/swapfile none swap sw 0 0") },
			errs: []string{"activates swap at boot"}, fix: true},
	})
}

// A second fix in the same second (same backup name) must not overwrite the
// first backup, which holds the pristine file.
func TestBackupsAreNeverOverwritten(t *testing.T) {
	env, f := testEnv(t, "node01", "debian-12", nil)
	f.put(fstab, "/swapfile none swap sw 0 0\n")
	c := findCheck(t, env, "Swap").(Fixer)
	if err := c.Fix(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	f.put(fstab, f.file(fstab)+"/swap2 none swap sw 0 0\n")
	if err := c.Fix(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	first, second := fstab+".kubeforge-bak-20260102T030405Z", fstab+".kubeforge-bak-20260102T030405Z-2"
	if f.file(first) != "/swapfile none swap sw 0 0\n" || !strings.Contains(f.file(second), "\n/swap2 none swap") {
		t.Fatalf("backups: %q, %q", f.file(first), f.file(second))
	}
}

func TestKernelModulesCheck(t *testing.T) {
	runCheckCases(t, "KernelModules", []checkCase{
		{name: "built in", setup: func(f *fakeHost) {
			f.put("/lib/modules/6.1.0-test/modules.builtin", "kernel/fs/overlayfs/overlay.ko\nkernel/net/bridge/br_netfilter.ko\n")
		}},
		{name: "loaded and listed", setup: func(f *fakeHost) {
			f.put("/proc/modules", "overlay 151552 0 - Live 0x0\nbr_netfilter 32768 0 - Live 0x0\n")
			f.put("/etc/modules-load.d/k8s.conf", "# kubeadm docs\noverlay\nbr_netfilter\n")
		}},
		{name: "compiled in without modules.builtin", setup: func(f *fakeHost) {
			f.put("/proc/filesystems", "nodev\tsysfs\nnodev\toverlay\n")
			f.put(procSysPath("net.bridge.bridge-nf-call-iptables"), "1\n")
		}},
		{name: "loaded but not at boot", setup: func(f *fakeHost) {
			f.dirs["/sys/module/overlay"] = true
			f.dirs["/sys/module/br_netfilter"] = true
			f.put("/proc/modules", "overlay 151552 0 - Live 0x0\nbr_netfilter 32768 0 - Live 0x0\n")
			f.put("/etc/modules", "# /etc/modules\nloop\n")
		}, warns: []string{"overlay is loaded but not listed", "br_netfilter is loaded but not listed"}, fix: true},
		{name: "not loaded", setup: func(f *fakeHost) {
			f.dirs["/sys/module/overlay"] = true
			f.put("/proc/modules", "overlay 151552 0 - Live 0x0\n")
			f.put("/etc/modules", "overlay\n")
		},
			errs: []string{"br_netfilter is not loaded"}, fix: true,
			after: func(t *testing.T, f *fakeHost) {
				if got := f.file(modulesLoadFile); !strings.Contains(got, "\noverlay\nbr_netfilter\n") {
					t.Errorf("%s: %q", modulesLoadFile, got)
				}
				ran := strings.Join(f.ran, "\n")
				if !strings.Contains(ran, "modprobe br_netfilter") || strings.Contains(ran, "modprobe overlay") {
					t.Errorf("ran %q", ran)
				}
			}},
	})
}

func TestSysctlsCheck(t *testing.T) {
	set := func(v string) func(*fakeHost) {
		return func(f *fakeHost) {
			for _, k := range requiredSysctls {
				f.put(procSysPath(k), v+"\n")
			}
		}
	}
	runCheckCases(t, "Sysctls", []checkCase{
		{name: "set and persisted", setup: func(f *fakeHost) { set("1")(f); f.put(sysctlFile, sysctlContent()) }},
		{name: "all off", setup: set("0"),
			errs: []string{"net.ipv4.ip_forward is 0", "net.bridge.bridge-nf-call-iptables is 0", "net.bridge.bridge-nf-call-ip6tables is 0"}, fix: true,
			after: func(t *testing.T, f *fakeHost) {
				for _, k := range requiredSysctls {
					if f.file(procSysPath(k)) != "1\n" {
						t.Errorf("%s = %q", k, f.file(procSysPath(k)))
					}
				}
			}},
		{name: "on but not persisted", setup: set("1"), warns: []string{"a reboot may reset it"}, fix: true},
		{name: "bridge sysctls missing without br_netfilter", setup: func(f *fakeHost) {
			f.put(procSysPath("net.ipv4.ip_forward"), "1\n")
			f.put(sysctlFile, sysctlContent())
		}, errs: []string{"net.bridge.bridge-nf-call-iptables does not exist", "load the br_netfilter module"}},
		{name: "/etc/sysctl.conf overrides at boot", setup: func(f *fakeHost) {
			set("1")(f)
			f.put(sysctlFile, sysctlContent())
			f.put("/etc/sysctl.conf", "net.ipv4.ip_forward=0\n")
		}, warns: []string{"/etc/sysctl.conf sets net.ipv4.ip_forward = 0"}},
	})
}

func TestHostnameCheck(t *testing.T) {
	runCheckCases(t, "Hostname", []checkCase{
		{name: "right"},
		{name: "wrong name", setup: func(f *fakeHost) {
			f.put("/proc/sys/kernel/hostname", "wrong-name\n")
			f.put("/etc/hostname", "wrong-name\n")
		}, errs: []string{`hostname is "wrong-name"`, "/etc/hostname holds"}, fix: true,
			after: func(t *testing.T, f *fakeHost) {
				if !strings.Contains(strings.Join(f.ran, "\n"), "/usr/sbin/hostnamectl set-hostname node01") {
					t.Errorf("ran %q", f.ran)
				}
			}},
		{name: "without hostnamectl", setup: func(f *fakeHost) {
			delete(f.files, "/usr/sbin/hostnamectl")
			f.bin("hostname")
			f.put("/proc/sys/kernel/hostname", "Node01\n")
		}, errs: []string{`hostname is "Node01"`}, fix: true},
		{name: "static name differs", setup: func(f *fakeHost) { f.put("/etc/hostname", "localhost\n") },
			errs: []string{"next boot"}, fix: true},
	})
}

func TestHostsFileCheck(t *testing.T) {
	const base = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
	block := hostsBegin + "\n192.168.161.151\tmaster01\n192.168.161.152\tnode01\n192.168.161.153\tnode02\n" + hostsEnd + "\n"
	runCheckCases(t, "HostsFile", []checkCase{
		{name: "unmanaged lines that are right", setup: func(f *fakeHost) {
			f.put(hostsFile, base+"192.168.161.151 master01 master01.example.com\n192.168.161.152 node01\n192.168.161.153 node02\n")
		}},
		{name: "missing entries get a managed block", setup: func(f *fakeHost) { f.put(hostsFile, base+"10.1.1.1 other\n") },
			errs: []string{"does not map master01 -> 192.168.161.151, node01 -> 192.168.161.152, node02 -> 192.168.161.153"}, fix: true,
			after: func(t *testing.T, f *fakeHost) {
				if got, want := f.file(hostsFile), base+"10.1.1.1 other\n"+block; got != want {
					t.Errorf("hosts:\n%s\nwant:\n%s", got, want)
				}
			}},
		{name: "no trailing newline, partial block replaced in place", setup: func(f *fakeHost) {
			f.put(hostsFile, base+hostsBegin+"\n192.168.161.151\tmaster01\n10.0.0.9\tnode01\n"+hostsEnd+"\n# after\n10.2.2.2 x")
		}, errs: []string{"node01 -> 192.168.161.152"}, fix: true,
			after: func(t *testing.T, f *fakeHost) {
				if got, want := f.file(hostsFile), base+block+"# after\n10.2.2.2 x\n"; got != want {
					t.Errorf("hosts:\n%q\nwant:\n%q", got, want)
				}
			}},
		{name: "stale block", setup: func(f *fakeHost) {
			f.put(hostsFile, base+hostsBegin+"\n192.168.161.151\tmaster01\n192.168.161.152\tnode01\n192.168.161.153\tnode02\n10.0.0.1\tgone\n"+hostsEnd+"\n")
		}, warns: []string{"out of date"}, fix: true},
		{name: "Debian's 127.0.1.1 line for the own name warns", setup: func(f *fakeHost) {
			f.put(hostsFile, base+"127.0.1.1\tnode01\n"+block)
		}, warns: []string{"line 3 maps node01 to 127.0.1.1"}},
		{name: "conflicting unmanaged line is an error the fix does not paper over", setup: func(f *fakeHost) {
			f.put(hostsFile, base+"10.9.9.9 master01\n")
		}, errs: []string{"line 3 maps master01 to 10.9.9.9 (want 192.168.161.151)", "does not map"}},
		{name: "BEGIN without END", setup: func(f *fakeHost) { f.put(hostsFile, base+hostsBegin+"\n1.2.3.4 x\n") },
			errs: []string{"repair the block by hand"}},
	})

	// The conflict case: the fix writes the block but reports what it left alone.
	env, f := testEnv(t, "node01", "debian-12", nil)
	f.put(hostsFile, base+"10.9.9.9 master01\n")
	c := findCheck(t, env, "HostsFile").(Fixer)
	err := c.Fix(context.Background(), f)
	if err == nil || !strings.Contains(err.Error(), "correct that by hand") {
		t.Fatalf("fix with a conflict: %v", err)
	}
	if !strings.HasPrefix(f.file(hostsFile), base+"10.9.9.9 master01\n"+hostsBegin) {
		t.Fatalf("hosts %q", f.file(hostsFile))
	}
}

func TestPortsCheck(t *testing.T) {
	runCheckCases(t, "Ports", []checkCase{
		{name: "ss: etcd and kubelet ports busy", setup: func(f *fakeHost) { f.ss = fixture(t, "cmd/ss-ltnpH.txt") },
			errs: []string{"port 2379/tcp (etcd clients) is in use by etcd (pid 777)", "port 10250/tcp (kubelet) is in use by kubelet (pid 900)"}, notFix: true},
		{name: "/proc/net/tcp fallback", setup: func(f *fakeHost) {
			delete(f.files, "/usr/sbin/ss")
			f.put("/proc/net/tcp", fixture(t, "cmd/proc-net-tcp.txt"))
		}, errs: []string{"port 2379/tcp (etcd clients) is in use"}},
		{name: "an established connection on 6443 is not a listener", node: "master01", setup: func(f *fakeHost) {
			delete(f.files, "/usr/sbin/ss")
			tcp := strings.ReplaceAll(fixture(t, "cmd/proc-net-tcp.txt"), "0100007F:094B", "0100007F:0016")
			f.put("/proc/net/tcp", tcp)
		}},
		{name: "free", setup: func(f *fakeHost) { f.ss = "LISTEN 0 128 0.0.0.0:22 0.0.0.0:* users:((\"sshd\",pid=1,fd=3))\n" }},
	})
}

// chronyFake simulates chronyd from the host's own files: it runs when the unit is
// active, and a client reaches the server when its config names it.
func chronyFake(selected bool, serverSynced bool) func(f *fakeHost, sub string) (string, bool) {
	return func(f *fakeHost, sub string) (string, bool) {
		running := false
		for _, u := range []string{"chrony.service", "chronyd.service"} {
			running = running || f.units[u] != nil && f.units[u].Active()
		}
		if !running {
			return "", false
		}
		conf := f.file("/etc/chrony/chrony.conf") + f.file("/etc/chrony.conf")
		switch sub {
		case "tracking":
			if strings.Contains(conf, "server 10.0.0.123") {
				return "0A00007B,10.0.0.123,3,1718000000.000000000,0,0,0,0,0,0,0,0,0.0,Normal\n", true
			}
			if serverSynced {
				return "7F7F0101,,10,1718000000.000000000,0,0,0,0,0,0,0,0,0.0,Normal\n", true
			}
			return "00000000,,0,0,0,0,0,0,0,0,1,1,0.0,Not synchronised\n", true
		case "sources":
			if !strings.Contains(conf, "server 192.168.161.151") {
				return "", true
			}
			if selected {
				return "^,*,192.168.161.151,10,6,377,15,0,0,0\n", true
			}
			return "^,?,192.168.161.151,0,6,0,-,0,0,0\n", true
		}
		return "", false
	}
}

func TestTimeSyncCheck(t *testing.T) {
	const debianDefault = "pool 2.debian.pool.ntp.org iburst\nkeyfile /etc/chrony/chrony.keys\ndriftfile /var/lib/chrony/chrony.drift\n"
	client := func(f *fakeHost) {
		f.unit("chrony.service", "active", "enabled")
		f.put("/etc/chrony/chrony.conf", debianDefault)
		f.chronyc = chronyFake(true, true)
	}
	server := func(f *fakeHost) {
		client(f)
		f.ipAddr = fixture(t, "cmd/ip-o-addr.txt")
	}
	runCheckCases(t, "TimeSync", []checkCase{
		{name: "client follows the server", setup: func(f *fakeHost) {
			client(f)
			f.put("/etc/chrony/chrony.conf", "server 192.168.161.151 iburst\n")
		}},
		{name: "client configured through a sources.d drop-in", setup: func(f *fakeHost) {
			client(f)
			f.put("/etc/chrony/chrony.conf", "sourcedir /etc/chrony/sources.d\n")
			f.put("/etc/chrony/sources.d/cluster.sources", "server master01 iburst\n")
			f.chronyc = func(f *fakeHost, sub string) (string, bool) {
				return "^,*,192.168.161.151,10,6,377,15,0,0,0\n", true
			}
		}},
		{name: "client with the distribution's default config", setup: client,
			errs: []string{"/etc/chrony/chrony.conf is not configured to follow the cluster's time server master01", "no `server 192.168.161.151` line"}, fix: true,
			after: func(t *testing.T, f *fakeHost) {
				want := "# Written by kubeforge preflight: follow the time server master01 of cluster kubernetes.\nserver 192.168.161.151 iburst\ndriftfile /var/lib/chrony/chrony.drift\nmakestep 1.0 3\nrtcsync\n"
				if got := f.file("/etc/chrony/chrony.conf"); got != want {
					t.Errorf("chrony.conf:\n%s\nwant:\n%s", got, want)
				}
				if f.file("/etc/chrony/chrony.conf.kubeforge-bak-20260102T030405Z") != debianDefault {
					t.Error("no backup of the original")
				}
				if !strings.Contains(strings.Join(f.ran, "\n"), "restart chrony.service") {
					t.Errorf("ran %q", f.ran)
				}
			}},
		{name: "server on Rocky serves the cluster network", node: "master01", distro: "rocky-8", setup: func(f *fakeHost) {
			server(f)
			delete(f.units, "chrony.service")
			f.unit("chronyd.service", "inactive", "disabled")
			f.put("/etc/chrony.conf", "pool 2.rocky.pool.ntp.org iburst\n")
		}, errs: []string{"/etc/chrony.conf is not configured to serve time", "no `local stratum` line", "no `allow` rule for node01 (192.168.161.152), node02", "chronyd.service is inactive"}, fix: true,
			after: func(t *testing.T, f *fakeHost) {
				want := "# Written by kubeforge preflight: master01 serves time to cluster kubernetes.\n" +
					"# Serve this host's clock when no upstream server is reachable (isolated networks).\nlocal stratum 10\n" +
					"allow 192.168.161.0/24\ndriftfile /var/lib/chrony/drift\nmakestep 1.0 3\nrtcsync\n"
				if got := f.file("/etc/chrony.conf"); got != want {
					t.Errorf("chrony.conf:\n%s\nwant:\n%s", got, want)
				}
				if u := f.units["chronyd.service"]; !u.Active() || u.Enabled != "enabled" {
					t.Errorf("chronyd %+v", u)
				}
			}},
		{name: "server with upstreams and a host outside its network", node: "master01", setup: server,
			cluster: func(c *config.Cluster) {
				c.Spec.TimeSync.UpstreamServers = []string{"ntp1.example.com", "10.0.0.123"}
				c.Spec.Hosts[2].Address = "192.168.162.153"
			},
			errs: []string{"no `server ntp1.example.com` line", "node02 (192.168.162.153)"}, fix: true,
			warns: nil,
			after: func(t *testing.T, f *fakeHost) {
				got := f.file("/etc/chrony/chrony.conf")
				for _, w := range []string{"server ntp1.example.com iburst\nserver 10.0.0.123 iburst\n", "allow 192.168.161.0/24\nallow 192.168.162.153\n"} {
					if !strings.Contains(got, w) {
						t.Errorf("chrony.conf lacks %q:\n%s", w, got)
					}
				}
			}},
		{name: "chrony not installed", distro: "centos-7", setup: func(f *fakeHost) {
			delete(f.files, "/usr/sbin/chronyd")
			delete(f.files, "/usr/sbin/chronyc")
			f.chronyc = chronyFake(true, true)
		}, errs: []string{"chrony is not installed: install chrony"}, fix: true,
			after: func(t *testing.T, f *fakeHost) {
				if !strings.Contains(strings.Join(f.ran, "\n"), "yum install -y chrony") {
					t.Errorf("ran %q", f.ran)
				}
			}},
		{name: "time server unreachable", setup: func(f *fakeHost) {
			client(f)
			f.put("/etc/chrony/chrony.conf", "server 192.168.161.151 iburst\n")
			f.chronyc = chronyFake(false, true)
		}, errs: []string{"does not answer NTP (udp/123)", "on master01, run `kubeforge preflight --config <cluster configuration> --fix`"}},
		{name: "server not synchronised", node: "master01", setup: func(f *fakeHost) {
			server(f)
			f.put("/etc/chrony/chrony.conf", "local stratum 10\nallow 192.168.161.0/24\n")
			f.chronyc = chronyFake(true, false)
		}, errs: []string{"Not synchronised"}},
		{name: "running but not enabled", setup: func(f *fakeHost) {
			client(f)
			f.units["chrony.service"].Enabled = "disabled"
			f.put("/etc/chrony/chrony.conf", "server 192.168.161.151 iburst\n")
		}, warns: []string{"will not start at boot"}, fix: true},
		{name: "time server not in the cluster", cluster: func(c *config.Cluster) { c.Spec.TimeSync.Server = "ntp01" }, setup: client,
			errs: []string{`spec.timeSync.server "ntp01" is not a host`}, notFix: true},
	})
}

// The whole standard list on a converged host must pass: it is the baseline every
// single-check failure above departs from.
func TestAllChecksPassOnConvergedHost(t *testing.T) {
	env, f := convergedHost(t, "node01")
	for _, c := range Checks(env) {
		if w, e := c.Check(context.Background(), f); len(w)+len(e) > 0 {
			t.Errorf("%s: warnings %v errors %v", c.Name(), w, e)
		}
	}
}

func convergedHost(t testing.TB, node string) (*Env, *fakeHost) {
	env, f := testEnv(t, node, "debian-12", nil)
	f.put("/lib/modules/6.1.0-test/modules.builtin", "kernel/fs/overlayfs/overlay.ko\nkernel/net/bridge/br_netfilter.ko\n")
	for _, k := range requiredSysctls {
		f.put(procSysPath(k), "1\n")
	}
	f.put(sysctlFile, sysctlContent())
	f.put(fstab, "UUID=abc / ext4 defaults 0 1\n")
	var hosts strings.Builder
	hosts.WriteString("127.0.0.1 localhost\n")
	for _, h := range env.Cluster.Spec.Hosts {
		fmt.Fprintf(&hosts, "%s %s\n", h.Address, h.Name)
	}
	f.put(hostsFile, hosts.String())
	f.unit("chrony.service", "active", "enabled")
	f.put("/etc/chrony/chrony.conf", "server 192.168.161.151 iburst\n")
	f.chronyc = chronyFake(true, true)
	f.ss = "LISTEN 0 128 0.0.0.0:22 0.0.0.0:* users:((\"sshd\",pid=1,fd=3))\n"
	return env, f
}
