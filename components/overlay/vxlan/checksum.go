package vxlan

import (
	"fmt"
	"regexp"
	"strconv"
)

// TX checksum offload modes of the agent's config.
const (
	// TxOffloadDisabled always turns offload off on the device (the cluster
	// config's default).
	TxOffloadDisabled = "disabled"
	// TxOffloadEnabled leaves the kernel's default, and only warns on a kernel
	// known to be affected.
	TxOffloadEnabled = "enabled"
	// TxOffloadAuto turns it off on affected kernels only.
	TxOffloadAuto = "auto"
)

var (
	releaseRE = regexp.MustCompile(`^(\d+)\.(\d+)(?:\.(\d+))?`)
	rhelRE    = regexp.MustCompile(`\.el([0-9]+)`)
)

// fixedIn is the first stable release of each maintained branch that carries the
// netfilter fix for VXLAN checksums after NAT (kubernetes#88986, flannel#1279);
// mainline has it from 5.7.
var fixedIn = map[[2]int]int{
	{4, 14}: 181,
	{4, 19}: 123,
	{5, 4}:  41,
	{5, 6}:  13,
}

// KernelAffected reports whether a kernel (uname -r) is known to send VXLAN
// packets with a bad inner checksum when TX checksum offload is on and the
// packet was NATed (Service traffic through kube-proxy): the symptom is the
// "63 second" connection delay of flannel#1279. Red Hat kernels are judged by
// family because their version stays 3.10.0 / 4.18.0 while fixes are
// backported: every el7 and el8 kernel counts as affected (the issue was
// reported on both; RHEL 8's 4.18.0-*.el8* is the case kubeforge's users meet),
// el9 and later as fixed. Other kernels are compared with the stable releases
// that got the fix; distribution kernels that keep a .0 sublevel (Debian's
// 4.19.0-N) are then treated as affected, which costs only the offload.
func KernelAffected(release string) (bool, string) {
	if m := rhelRE.FindStringSubmatch(release); m != nil {
		el, _ := strconv.Atoi(m[1])
		if el <= 8 {
			return true, fmt.Sprintf("RHEL %d family kernel %s carries the VXLAN checksum offload bug (flannel#1279)", el, release)
		}
		return false, fmt.Sprintf("RHEL %d family kernel %s has the fix", el, release)
	}
	m := releaseRE.FindStringSubmatch(release)
	if m == nil {
		return true, fmt.Sprintf("kernel release %q is not a version; assuming the VXLAN checksum offload bug", release)
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	patch := 0
	if m[3] != "" {
		patch, _ = strconv.Atoi(m[3])
	}
	if major > 5 || major == 5 && minor >= 7 {
		return false, fmt.Sprintf("kernel %s is 5.7 or newer and has the fix", release)
	}
	if fix, ok := fixedIn[[2]int{major, minor}]; ok && patch >= fix {
		return false, fmt.Sprintf("kernel %s has the fix (since %d.%d.%d)", release, major, minor, fix)
	}
	return true, fmt.Sprintf("kernel %s predates the VXLAN checksum fix (5.7, or 4.14.181/4.19.123/5.4.41/5.6.13)", release)
}

// DecideTxChecksum says whether to turn TX checksum offload off for mode on a
// kernel, why, and whether to warn (offload left on although the kernel is
// affected).
func DecideTxChecksum(mode, release string) (disable bool, reason string, warn bool, err error) {
	affected, why := KernelAffected(release)
	switch mode {
	case TxOffloadDisabled, "":
		return true, "txChecksumOffload is disabled in the config; " + why, false, nil
	case TxOffloadAuto:
		return affected, why, false, nil
	case TxOffloadEnabled:
		if affected {
			return false, "txChecksumOffload is enabled in the config although " + why, true, nil
		}
		return false, "txChecksumOffload is enabled in the config; " + why, false, nil
	}
	return false, "", false, fmt.Errorf("txChecksumOffload %q: want %s, %s or %s", mode, TxOffloadDisabled, TxOffloadEnabled, TxOffloadAuto)
}
