package lab

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func hostDir(labDir, name string) string { return filepath.Join(labDir, "hosts", name) }
func rootfsDir(labDir, name string) string {
	return filepath.Join(hostDir(labDir, name), "rootfs")
}

func isMountpoint(p string) bool {
	return exec.Command("mountpoint", "-q", p).Run() == nil
}

// mountRootfs stacks the host's own upper layer over the shared, read-only base.
func mountRootfs(labDir, base, name string) error {
	hd := hostDir(labDir, name)
	for _, d := range []string{"upper", "work", "rootfs", "containerd"} {
		if err := os.MkdirAll(filepath.Join(hd, d), 0o755); err != nil {
			return err
		}
	}
	root := rootfsDir(labDir, name)
	if isMountpoint(root) {
		return nil
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", base, filepath.Join(hd, "upper"), filepath.Join(hd, "work"))
	return run("mount", "-t", "overlay", "kubeforge-lab-"+name, "-o", opts, root)
}

// builtinModules are compiled into the lab machine's kernel, which has no loadable
// module support. Listing them in modules.builtin lets `modprobe overlay` succeed the
// way it does on a real host, so preflight's module check and fix run unchanged.
var builtinModules = []string{
	"kernel/fs/overlayfs/overlay.ko",
	"kernel/net/bridge/bridge.ko",
	"kernel/net/bridge/br_netfilter.ko",
	"kernel/drivers/net/vxlan/vxlan.ko",
	"kernel/drivers/net/veth.ko",
	"kernel/net/netfilter/nf_conntrack.ko",
	"kernel/net/netfilter/nf_nat.ko",
	"kernel/net/netfilter/xt_conntrack.ko",
	"kernel/net/netfilter/xt_MASQUERADE.ko",
	"kernel/net/ipv4/netfilter/ip_tables.ko",
	"kernel/net/ipv4/netfilter/iptable_filter.ko",
	"kernel/net/ipv4/netfilter/iptable_nat.ko",
	"kernel/net/ipv6/netfilter/ip6_tables.ko",
}

// initHostFiles gives a freshly created host its identity: hostname, machine-id, its
// own sshd host key, the lab's client key, /etc/hosts and the module lists.
func initHostFiles(s *State, h *HostState, clientPub string) error {
	root := rootfsDir(s.Dir, h.Name)
	priv, pub, err := newKeyPair("root@" + h.Name)
	if err != nil {
		return err
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return err
	}
	files := []struct {
		path string
		data string
		mode os.FileMode
	}{
		{"etc/hostname", h.Name + "\n", 0o644},
		{"etc/machine-id", hex.EncodeToString(id) + "\n", 0o444},
		{"etc/ssh/ssh_host_ed25519_key", string(priv), 0o600},
		{"etc/ssh/ssh_host_ed25519_key.pub", pub + "\n", 0o644},
		{"root/.ssh/authorized_keys", clientPub + "\n", 0o600},
		{"etc/hosts", hostsFile(s, h.Name), 0o644},
	}
	if err := os.MkdirAll(filepath.Join(root, "root/.ssh"), 0o700); err != nil {
		return err
	}
	for _, f := range files {
		p := filepath.Join(root, f.path)
		_ = os.Remove(p)
		if err := os.WriteFile(p, []byte(f.data), f.mode); err != nil {
			return err
		}
	}
	h.HostKey = pub
	var uts syscall.Utsname
	if err := syscall.Uname(&uts); err == nil {
		kver := utsString(uts.Release[:])
		md := filepath.Join(root, "usr/lib/modules", kver)
		if err := os.MkdirAll(md, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(md, "modules.builtin"), []byte(strings.Join(builtinModules, "\n")+"\n"), 0o644); err != nil {
			return err
		}
		_ = os.WriteFile(filepath.Join(md, "modules.order"), nil, 0o644)
		if _, err := exec.LookPath("depmod"); err == nil {
			if err := run("depmod", "-b", root, kver); err != nil {
				return err
			}
		}
	}
	return nil
}

func utsString(b []int8) string {
	var sb strings.Builder
	for _, c := range b {
		if c == 0 {
			break
		}
		sb.WriteByte(byte(c))
	}
	return sb.String()
}

func hostsFile(s *State, self string) string {
	var b strings.Builder
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	for _, h := range s.Hosts {
		fmt.Fprintf(&b, "%s\t%s\n", h.Address, h.Name)
	}
	return b.String()
}

// addMissingHostsEntries appends lab hosts that a running host's /etc/hosts does not
// know yet (a host added later), leaving every other line alone.
func addMissingHostsEntries(s *State, h *HostState) error {
	p := filepath.Join(rootfsDir(s.Dir, h.Name), "etc/hosts")
	data, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		for _, n := range f[min(1, len(f)):] {
			known[n] = true
		}
	}
	var add strings.Builder
	for _, o := range s.Hosts {
		if !known[o.Name] {
			fmt.Fprintf(&add, "%s\t%s\n", o.Address, o.Name)
		}
	}
	if add.Len() == 0 {
		return nil
	}
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteString(add.String())
	return err
}

// The supervisor is a small shell loop: it joins the host's cgroups, then runs
// systemd-nspawn, and starts it again when the host rebooted (nspawn exits 133).
const supervisorTemplate = `#!/bin/sh
# kubeforge lab supervisor for host %[1]s (written by kubeforge lab up)
echo $$ >%[2]s
for f in %[3]s; do echo $$ >"$f" || exit 97; done
while :; do
  %[4]s
  rc=$?
  [ "$rc" = 133 ] || exit "$rc"
  echo "[lab] %[1]s rebooted; starting it again"
done
`

func nspawnArgv(s *State, h *HostState) []string {
	argv := []string{
		"systemd-nspawn", "--quiet", "--boot",
		// --register=no alone fails without machined ("Failed to open system bus").
		"--keep-unit", "--register=no",
		// --network-namespace-path alone withholds CAP_NET_ADMIN and leaves
		// /proc/sys/net read-only; with --private-network too it still joins the namespace.
		"--private-network", "--network-namespace-path=/run/netns/" + h.Netns,
		"--directory=" + rootfsDir(s.Dir, h.Name),
		"--machine=" + h.Name, "--hostname=" + h.Name,
		"--resolv-conf=off", "--timezone=off", "--link-journal=no", "--console=read-only",
		// containerd's overlayfs snapshotter cannot stack on the host's overlayfs root.
		"--bind=" + filepath.Join(hostDir(s.Dir, h.Name), "containerd") + ":/var/lib/containerd",
	}
	if s.BundleDir != "" {
		argv = append(argv, "--bind-ro="+s.BundleDir+":/opt/kubeforge/bundle")
	}
	return argv
}

// startHost launches the host's supervisor detached from the caller (own session,
// output to a file: a pipe would keep callers like `up | tail` from ever returning).
func startHost(s *State, h *HostState) error {
	hd := hostDir(s.Dir, h.Name)
	var procs []string
	for _, d := range h.Cgroups {
		procs = append(procs, filepath.Join(d, "cgroup.procs"))
	}
	quoted := make([]string, 0)
	for _, a := range nspawnArgv(s, h) {
		quoted = append(quoted, shQuote(a))
	}
	script := fmt.Sprintf(supervisorTemplate, h.Name, shQuote(filepath.Join(hd, "supervisor.pid")), strings.Join(quotedAll(procs), " "), strings.Join(quoted, " "))
	sp := filepath.Join(hd, "supervise.sh")
	if err := os.WriteFile(sp, []byte(script), 0o700); err != nil {
		return err
	}
	_ = os.Remove(filepath.Join(hd, "supervisor.pid"))
	logf, err := os.OpenFile(filepath.Join(hd, "console.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer devnull.Close()
	// setsid -f forks once more, so the supervisor is nobody's child here and no zombie
	// is left behind in a long-running caller.
	cmd := exec.Command("setsid", "-f", "/bin/sh", sp)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, logf, logf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("host %s: starting supervisor: %w", h.Name, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if data, err := os.ReadFile(filepath.Join(hd, "supervisor.pid")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 0 {
				h.PID = pid
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("host %s: supervisor did not start; see %s", h.Name, filepath.Join(hd, "console.log"))
}

func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'" }
func quotedAll(in []string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = shQuote(s)
	}
	return out
}

// supervisorAlive reports whether the recorded supervisor still runs our script.
func supervisorAlive(s *State, h *HostState) bool {
	if h.PID <= 0 {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", h.PID))
	return err == nil && strings.Contains(string(cmdline), filepath.Join(hostDir(s.Dir, h.Name), "supervise.sh"))
}

// PID1 returns the machine-side PID of the host's init (systemd), found as the
// process in the host's cgroups that is PID 1 of its own PID namespace.
func (s *State) PID1(name string) (int, error) {
	h, err := s.Host(name)
	if err != nil {
		return 0, err
	}
	for _, d := range h.Cgroups {
		for _, pid := range cgroupPIDs(d) {
			st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
			if err != nil {
				continue
			}
			for _, l := range strings.Split(string(st), "\n") {
				if strings.HasPrefix(l, "NSpid:") {
					f := strings.Fields(l)
					if len(f) >= 3 && f[len(f)-1] == "1" {
						return pid, nil
					}
				}
			}
		}
		break // one hierarchy is enough: every process is in all of them
	}
	return 0, fmt.Errorf("host %s is not running", name)
}

// memoryWorkingSet is the host's memory use as the kubelet counts it: usage minus
// inactive file cache.
func memoryWorkingSet(h *HostState) (int64, bool) {
	for mount, d := range h.Cgroups {
		if filepath.Base(mount) != "memory" {
			continue
		}
		usage, err := readInt(filepath.Join(d, "memory.usage_in_bytes"))
		if err != nil {
			return 0, false
		}
		stat, _ := os.ReadFile(filepath.Join(d, "memory.stat"))
		for _, l := range strings.Split(string(stat), "\n") {
			if f := strings.Fields(l); len(f) == 2 && f[0] == "total_inactive_file" {
				if v, err := strconv.ParseInt(f[1], 10, 64); err == nil && v < usage {
					usage -= v
				}
			}
		}
		return usage, true
	}
	return 0, false
}

func readInt(p string) (int64, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
}

func hostByte(addr string) byte {
	ip := net.ParseIP(addr).To4()
	if ip == nil {
		return 0
	}
	return ip[3]
}
