package lab

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// basePackages are installed into the shared base rootfs. It holds what a bare
// CentOS/Debian server has (systemd, sshd, chrony, firewalld, iptables, SELinux
// tools) and the tools later phases call (conntrack, ipset, ethtool, socat, iperf3),
// but deliberately NO containerd, runc or CNI plugins: like a bare CentOS host, a lab
// host gets those from kubeforge's bundle.
var basePackages = []string{
	"systemd", "systemd-sysv", "dbus", "libpam-systemd", "openssh-server", "sudo",
	"iproute2", "iputils-ping", "iptables", "nftables", "ipset", "conntrack", "ethtool", "socat",
	"kmod", "procps", "chrony", "firewalld", "selinux-utils", "policycoreutils",
	"ca-certificates", "curl", "netbase", "less", "iperf3",
}

// baseRevision changes whenever the customisation below changes, so old caches are
// not reused.
const baseRevision = "3"

// DefaultMirror is Debian's mirror; KUBEFORGE_LAB_MIRROR overrides it.
const DefaultMirror = "http://deb.debian.org/debian"

func baseKey(mirror string) string {
	h := sha256.New()
	fmt.Fprintf(h, "bookworm\n%s\n%s\n%s\n%s", mirror, strings.Join(basePackages, ","), baseRevision, prepScript)
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// EnsureBase returns the cached base rootfs, building it with debootstrap when it is
// missing. It is built in a temporary directory and renamed into place, so an
// interrupted build never leaves a half base that looks complete.
func EnsureBase(cacheDir string, log logger) (string, error) {
	mirror := os.Getenv("KUBEFORGE_LAB_MIRROR")
	if mirror == "" {
		mirror = DefaultMirror
	}
	dir := filepath.Join(cacheDir, "lab-base", "bookworm-"+baseKey(mirror))
	rootfs := filepath.Join(dir, "rootfs")
	if _, err := os.Stat(filepath.Join(dir, "complete")); err == nil {
		log.step("base image %s (cached)", rootfs)
		return rootfs, nil
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return "", fmt.Errorf("building the lab base image needs debootstrap: apt-get install debootstrap systemd-container")
	}
	start := time.Now()
	log.step("building base image (debootstrap bookworm, %d packages) ...", len(basePackages))
	tmp := dir + ".tmp"
	_ = os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", err
	}
	logPath := filepath.Join(cacheDir, "lab-base", "debootstrap.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return "", err
	}
	cmd := exec.Command("debootstrap", "--variant=minbase", "--include="+strings.Join(basePackages, ","), "bookworm", filepath.Join(tmp, "rootfs"), mirror)
	cmd.Stdout, cmd.Stderr = logf, logf
	err = cmd.Run()
	logf.Close()
	if err != nil {
		return "", fmt.Errorf("debootstrap failed (%v); see %s", err, logPath)
	}
	if err := customizeBase(filepath.Join(tmp, "rootfs")); err != nil {
		return "", fmt.Errorf("customizing base image: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "complete"), []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644); err != nil {
		return "", err
	}
	_ = os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		return "", err
	}
	log.step("base image built in %s: %s", since(start), rootfs)
	return rootfs, nil
}

// prepScript runs first thing inside every lab host. It provides, inside the host
// only, what a real kubelet/containerd/runc need and nspawn withholds (see
// shared notes): /dev/kmsg, the three /proc/sys entries the kubelet writes, and
// writable cgroup v1 controllers. The machine itself is never changed: the cgroup
// remount is a *bind* remount of the host's own mount (a plain `remount,ro` would flip
// the machine-wide superblock), and the sysctl files are small files bound over the
// read-only entries.
const prepScript = `#!/bin/sh
# kubeforge lab host preparation (runs at boot, before anything else).
set -u
mkdir -p /run/kubeforge-lab
if [ ! -e /dev/kmsg ]; then touch /dev/kmsg; fi
mount --bind /dev/null /dev/kmsg 2>/dev/null || true
for kv in vm/overcommit_memory=1 kernel/panic=10 kernel/panic_on_oops=1; do
  key=${kv%%=*}; val=${kv#*=}
  f=/run/kubeforge-lab/$(echo "$key" | tr / _)
  echo "$val" >"$f"
  mount --bind "$f" "/proc/sys/$key" || echo "kubeforge-lab-prep: could not bind $key" >&2
done
for d in /sys/fs/cgroup/*; do
  [ -d "$d" ] || continue
  if mountpoint -q "$d"; then
    mount -o remount,bind,rw "$d" || echo "kubeforge-lab-prep: could not make $d writable" >&2
  fi
done
`

const prepUnit = `[Unit]
Description=kubeforge lab host preparation (kmsg, sysctls, writable cgroups)
DefaultDependencies=no
After=local-fs.target
Before=sysinit.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/kubeforge-lab-prep

[Install]
WantedBy=sysinit.target
`

// chronyd's unit is skipped in a container without CAP_SYS_TIME. The clock is the
// machine's, so the host runs chronyd without clock control (-x) instead of being
// granted the capability: it still serves and tracks time like a real host.
const chronyDropIn = `[Unit]
ConditionCapability=

[Service]
ExecStart=
ExecStart=!/usr/sbin/chronyd $DAEMON_OPTS -x
`

const sshdConfig = `# kubeforge lab: key-only root login, one host key per host (generated by the lab).
HostKey /etc/ssh/ssh_host_ed25519_key
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UseDNS no
`

func customizeBase(root string) error {
	files := map[string]string{
		"usr/local/sbin/kubeforge-lab-prep":                      prepScript,
		"etc/systemd/system/kubeforge-lab-prep.service":          prepUnit,
		"etc/systemd/system/chrony.service.d/kubeforge-lab.conf": chronyDropIn,
		"etc/ssh/sshd_config.d/kubeforge-lab.conf":               sshdConfig,
		// No DNS servers: hosts resolve each other through /etc/hosts and have no way out.
		"etc/resolv.conf": "# kubeforge lab: no DNS servers; names come from /etc/hosts\n",
		"etc/fstab":       "# kubeforge lab host\n",
	}
	for rel, content := range files {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		_ = os.Remove(p) // resolv.conf may be a symlink
		mode := os.FileMode(0o644)
		if strings.HasPrefix(rel, "usr/local/sbin/") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			return err
		}
	}
	links := map[string]string{
		"etc/systemd/system/sysinit.target.wants/kubeforge-lab-prep.service": "/etc/systemd/system/kubeforge-lab-prep.service",
	}
	// Units that would reach for the network or only cost memory in a test host.
	for _, u := range []string{"apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "fstrim.timer", "e2scrub_reap.service"} {
		links["etc/systemd/system/"+u] = "/dev/null"
	}
	for rel, target := range links {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		_ = os.Remove(p)
		if err := os.Symlink(target, p); err != nil {
			return err
		}
	}
	// firewalld ships enabled; a lab host starts with it off so hosts reach each other
	// by default. Preflight tests turn it on to prove the check and its fix.
	_ = os.Remove(filepath.Join(root, "etc/systemd/system/multi-user.target.wants/firewalld.service"))
	_ = os.Remove(filepath.Join(root, "etc/systemd/system/dbus-org.fedoraproject.FirewallD1.service"))
	// Every host gets its own host key and machine-id at creation.
	keys, _ := filepath.Glob(filepath.Join(root, "etc/ssh/ssh_host_*"))
	for _, k := range keys {
		_ = os.Remove(k)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/machine-id"), nil, 0o444); err != nil {
		return err
	}
	// Debian's chrony.conf points at the public pool; a lab host has no way out, and
	// the time-sync preflight check configures the cluster's own server.
	cc := filepath.Join(root, "etc/chrony/chrony.conf")
	if data, err := os.ReadFile(cc); err == nil {
		var out []string
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, "pool ") || strings.HasPrefix(l, "sourcedir ") {
				l = "#" + l
			}
			out = append(out, l)
		}
		if err := os.WriteFile(cc, []byte(strings.Join(out, "\n")), 0o644); err != nil {
			return err
		}
	}
	return nil
}
