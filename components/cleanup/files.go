package cleanup

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/bootstrap/host/owndirs"
	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/component"
	"github.com/kubeforge/kubeforge/components/controlplane"
	"github.com/kubeforge/kubeforge/components/etcd"
	"github.com/kubeforge/kubeforge/components/inventory"
	"github.com/kubeforge/kubeforge/components/kubeclient"
	"github.com/kubeforge/kubeforge/components/kubelet/csrapprover"
)

// CleanupSteps are reset's "cleanup" phase. extra steps (the overlay's reset)
// run after the rules and before the files, while the certificates they may
// need to reach etcd are still on disk.
func CleanupSteps(extra ...Step) []Step {
	steps := []Step{
		{Name: "node", Run: deleteNode},
		{Name: "mounts", Run: unmount},
		{Name: "iptables", Run: iptablesRules},
	}
	steps = append(steps, extra...)
	return append(steps,
		Step{Name: "files", Run: removeFiles},
		Step{Name: "binaries", Run: removeBinaries},
		Step{Name: "unit-files", Run: removeUnitFiles},
	)
}

// deleteNode removes this host's Node object. With admin.conf (a control-plane
// host) it deletes it; a worker's own identity may not delete Nodes, so it
// asks: it annotates its Node (NodeRestriction lets only the node itself, or an
// admin, change its Node) and kubeforge's controller on the control plane
// deletes it. An API that does not answer is reported, not fatal: reset must
// work on a host whose cluster is gone.
func deleteNode(ctx context.Context, e *Env) ([]string, error) {
	name := e.NodeName
	admin := path.Join(e.KubeconfigDir, "admin.conf")
	own := path.Join(e.KubeconfigDir, "kubelet.conf")
	kcPath := admin
	data, err := e.Host.ReadFile(ctx, admin)
	if host.IsNotExist(err) {
		kcPath = own
		data, err = e.Host.ReadFile(ctx, own)
	}
	if host.IsNotExist(err) {
		return nil, nil // never joined, or already cleaned up
	}
	if err != nil {
		return nil, err
	}
	if e.DryRun {
		return []string{"would delete Node " + name + " (credentials " + kcPath + ")"}, nil
	}
	cli, err := kubeclient.New(data, kubeclient.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", kcPath, err)
	}
	_, err = cli.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil && isStatus(err):
		return nil, fmt.Errorf("reading Node %s: %w", name, err)
	case err != nil:
		e.Logf("the API server does not answer (%v): delete Node %s from a control-plane host with `kubectl delete node %s`", err, name, name)
		return nil, nil
	}
	if kcPath == admin {
		if err := cli.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("deleting Node %s: %w", name, err)
		}
		return []string{"deleted Node " + name}, nil
	}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, csrapprover.RemovalAnnotation, time.Now().UTC().Format(time.RFC3339))
	if _, err := cli.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("asking for the removal of Node %s: %w", name, err)
	}
	err = component.Poll(ctx, 250*time.Millisecond, 30*time.Second, func(ctx context.Context) (bool, error) {
		_, err := cli.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		// Forbidden: the node authorizer no longer knows the node — it is gone.
		return apierrors.IsNotFound(err) || apierrors.IsForbidden(err), nil
	})
	switch {
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case err != nil:
		e.Logf("Node %s still exists 30s after the removal request (is kubeforge-csr-approver.service running on a control-plane host?): delete it with `kubectl delete node %s`", name, name)
		return []string{"requested the removal of Node " + name}, nil
	}
	return []string{"Node " + name + " deleted by the control plane on request"}, nil
}

func isStatus(err error) bool {
	var s apierrors.APIStatus
	return errors.As(err, &s)
}

// mountRoots are the trees whose mounts kubeforge's components create (their
// Footprint.MountRoots): volume mounts of pods, container root filesystems and
// sandbox /dev/shm, and pod network namespaces. The roots themselves are never
// unmounted (an operator may have put /var/lib/containerd on its own disk).
var mountRoots = inventory.MountRoots()

// Mounts parses /proc/self/mountinfo and returns the mount points.
func Mounts(mountinfo []byte) []string {
	var out []string
	for _, line := range strings.Split(string(mountinfo), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		out = append(out, unescapeMount(f[4]))
	}
	return out
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// MountsBelow returns the mount points under the roots, deepest first.
func MountsBelow(mounts []string, roots []string) []string {
	var out []string
	for _, m := range mounts {
		for _, r := range roots {
			if strings.HasPrefix(m, r) && m != strings.TrimSuffix(r, "/") {
				out = append(out, m)
				break
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return strings.Count(out[i], "/") > strings.Count(out[j], "/") })
	return out
}

func readMounts(ctx context.Context, h host.Host) ([]string, error) {
	data, err := h.ReadFile(ctx, "/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("reading the mount table: %w", err)
	}
	return Mounts(data), nil
}

func unmount(ctx context.Context, e *Env) ([]string, error) {
	mounts, err := readMounts(ctx, e.Host)
	if err != nil {
		return nil, err
	}
	var done []string
	var errs []error
	seen := map[string]bool{}
	for _, m := range MountsBelow(mounts, mountRoots) {
		if seen[m] {
			continue // stacked mounts: one umount per layer is still needed, done below
		}
		seen[m] = true
		for i := 0; i < 8; i++ { // a path may carry several stacked mounts
			r, err := e.Host.Run(ctx, host.Cmd{Argv: []string{"umount", m}})
			if err == nil && !r.OK() {
				r, err = e.Host.Run(ctx, host.Cmd{Argv: []string{"umount", "-l", m}})
			}
			if err != nil || !r.OK() {
				if i == 0 {
					errs = append(errs, fmt.Errorf("unmounting %s: %v %s", m, err, strings.TrimSpace(string(r.Stderr))))
				}
				break
			}
			if i == 0 {
				done = append(done, "unmounted "+m)
			}
			if e.DryRun {
				break
			}
			now, err := readMounts(ctx, e.Host)
			if err != nil || !contains(now, m) {
				break
			}
		}
	}
	if len(done) > 4 {
		done = []string{fmt.Sprintf("unmounted %d kubelet and container mounts (%s ...)", len(done), strings.TrimPrefix(done[0], "unmounted "))}
	}
	return done, errors.Join(errs...)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// ChainPrefixes are the iptables chains the Kubernetes node stack creates
// (the components' Footprint.ChainPrefixes): kube-proxy's and the kubelet's
// (KUBE-), the CNI bridge's masquerade and portmap's host ports (CNI-).
// kubeforge's overlay removes its own chains.
var ChainPrefixes = inventory.ChainPrefixes()

// iptablesRules lets kube-proxy remove its rules with its own cleanup mode
// (while its binary is still there), then sweeps what is left of the node
// stack's chains in both families.
func iptablesRules(ctx context.Context, e *Env) ([]string, error) {
	var done []string
	bin := path.Join(e.BinDir, "kube-proxy")
	if _, err := e.Host.Stat(ctx, bin); err == nil {
		r, err := e.Host.Run(ctx, host.Cmd{Argv: []string{bin, "--cleanup"}, Timeout: time.Minute})
		if err == nil && r.OK() {
			done = append(done, "kube-proxy --cleanup removed its rules")
		} else {
			e.Logf("kube-proxy --cleanup: %v %s (sweeping its chains instead)", err, lastLine(r.Stderr))
		}
	}
	var errs []error
	for _, family := range []string{"iptables", "ip6tables"} {
		removed, err := SweepChains(ctx, e.Host, family, ChainPrefixes, e.DryRun)
		if err != nil {
			errs = append(errs, err)
		}
		if len(removed) > 0 {
			done = append(done, fmt.Sprintf("%s: removed chains %s", family, strings.Join(removed, ", ")))
		}
	}
	return done, errors.Join(errs...)
}

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndex(s, "\n"); i >= 0 {
		return s[i+1:]
	}
	return s
}

// SweepPlan computes, from iptables-save output, an iptables-restore --noflush
// script that deletes every rule jumping to a chain with one of the prefixes,
// then flushes and deletes those chains, table by table. Rules and chains
// without the prefixes are not touched. It returns the script and the chains
// ("table/chain") it removes.
func SweepPlan(save string, prefixes []string) (string, []string) {
	owned := func(chain string) bool {
		for _, p := range prefixes {
			if strings.HasPrefix(chain, p) {
				return true
			}
		}
		return false
	}
	var script strings.Builder
	var removed []string
	var table string
	var chains, deletes []string
	flush := func() {
		if table == "" || (len(chains) == 0 && len(deletes) == 0) {
			return
		}
		script.WriteString("*" + table + "\n")
		for _, d := range deletes {
			script.WriteString(d + "\n")
		}
		for _, c := range chains {
			script.WriteString("-F " + c + "\n")
		}
		for _, c := range chains {
			script.WriteString("-X " + c + "\n")
			removed = append(removed, table+"/"+c)
		}
		script.WriteString("COMMIT\n")
	}
	for _, line := range strings.Split(save, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "*"):
			table, chains, deletes = strings.TrimPrefix(line, "*"), nil, nil
		case line == "COMMIT":
			flush()
			table = ""
		case strings.HasPrefix(line, ":"):
			name := strings.Fields(strings.TrimPrefix(line, ":"))[0]
			if owned(name) {
				chains = append(chains, name)
			}
		case strings.HasPrefix(line, "-A "):
			f := strings.Fields(line)
			if owned(f[1]) {
				continue // goes with its chain's flush
			}
			for i := 2; i+1 < len(f); i++ {
				if (f[i] == "-j" || f[i] == "-g" || f[i] == "--jump" || f[i] == "--goto") && owned(f[i+1]) {
					deletes = append(deletes, "-D "+strings.TrimPrefix(line, "-A "))
					break
				}
			}
		}
	}
	return script.String(), removed
}

// SweepChains applies SweepPlan with the host's iptables of family
// ("iptables" or "ip6tables"), whichever backend (nft or legacy) that command
// uses on the host — the one kube-proxy used.
func SweepChains(ctx context.Context, h host.Host, family string, prefixes []string, dryRun bool) ([]string, error) {
	r, err := h.Run(ctx, host.Cmd{Argv: []string{family + "-save"}, ReadOnly: true})
	if err != nil || !r.OK() {
		return nil, nil // family not available (no ip6tables, IPv6 off): nothing kubeforge could have added
	}
	script, removed := SweepPlan(string(r.Stdout), prefixes)
	if script == "" {
		return nil, nil
	}
	c := host.Cmd{Argv: []string{family + "-restore", "--noflush", "-w", "5"}, Stdin: []byte(script)}
	res, err := h.Run(ctx, c)
	if err != nil {
		return nil, err
	}
	if err := res.Err(h.Name(), c); err != nil {
		return nil, err
	}
	return removed, nil
}

// Files and directories reset removes: the components' Footprint.Paths, then
// kubeforge's own run directory and its copy of the configuration.
// Directories that are mount points keep the mount point and lose their
// content.
func resetPaths() []string {
	return append(inventory.Paths(), "/run/kubeforge", config.HostCopyPath)
}

// isMountPoint reports whether p is a mount point in mounts.
func isMountPoint(mounts []string, p string) bool { return contains(mounts, p) }

func removeFiles(ctx context.Context, e *Env) ([]string, error) {
	mounts, err := readMounts(ctx, e.Host)
	if err != nil {
		return nil, err
	}
	var done []string
	var errs []error
	// The directories the operator names: the cert dir first, which is inside
	// the kubeconfig dir by default.
	for _, d := range []struct{ what, dir string }{{"--cert-dir", e.CertDir}, {"--kubeconfig-dir", e.KubeconfigDir}} {
		dd, err := removeOwnDir(ctx, e, d.what, d.dir, mounts)
		done = append(done, dd...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range resetPaths() {
		fi, err := e.Host.Stat(ctx, p)
		if host.IsNotExist(err) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if fi.IsDir() && isMountPoint(mounts, p) {
			n, err := removeContents(ctx, e.Host, p)
			if err != nil {
				errs = append(errs, err)
			}
			if n > 0 {
				done = append(done, fmt.Sprintf("emptied %s (a mount point: kept)", p))
			}
			continue
		}
		if err := e.Host.Remove(ctx, p); err != nil {
			errs = append(errs, fmt.Errorf("removing %s: %w", p, err))
			continue
		}
		done = append(done, "removed "+p)
	}
	// Pod network namespaces are bind mounts on files in /run/netns; the mounts
	// went with the mounts step, the files are left.
	if r, err := e.Host.Run(ctx, host.Cmd{Argv: []string{"find", "/run/netns", "-maxdepth", "1", "-name", "cni-*"}, ReadOnly: true}); err == nil && r.OK() {
		n := 0
		for _, p := range strings.Fields(string(r.Stdout)) {
			if err := e.Host.Remove(ctx, p); err != nil {
				errs = append(errs, err)
				continue
			}
			n++
		}
		if n > 0 {
			done = append(done, fmt.Sprintf("removed %d pod network namespace files in /run/netns", n))
		}
	}
	// Directories that only held kubeforge's files go once empty.
	for _, d := range append([]string{"/etc/kubeforge"}, inventory.EmptyDirs()...) {
		if gone, err := removeEmptyDir(ctx, e.Host, d); err == nil && gone {
			done = append(done, "removed empty "+d)
		}
	}
	// etcd's data belongs to the etcd phase, which removes it together with the
	// member's config. Data whose config is still there is a member that was not
	// removed from its cluster: keep it, so it can be removed properly.
	done2, err := removeEtcdLeftovers(ctx, e)
	if err != nil {
		errs = append(errs, err)
	}
	return append(done, done2...), errors.Join(errs...)
}

func removeEtcdLeftovers(ctx context.Context, e *Env) ([]string, error) {
	dataDir := config.DefaultEtcdDataDir
	if e.Cluster != nil && e.Cluster.Spec.Etcd.DataDir != "" {
		dataDir = e.Cluster.Spec.Etcd.DataDir
	}
	if _, err := e.Host.Stat(ctx, dataDir); host.IsNotExist(err) {
		return nil, nil
	}
	if etcd.StillMember(ctx, e.Host) {
		e.Logf("kept %s: %s says this host is still an etcd member; `kubeforge reset phase etcd` removes the member first", dataDir, etcd.ConfigPath)
		return nil, nil
	}
	return etcd.RemoveDataDir(ctx, e.Host, dataDir)
}

// ownDirFiles are the files (relative) kubeforge writes into a directory named
// by what (--cert-dir, --kubeconfig-dir), then the subdirectories it makes.
func ownDirFiles(e *Env, what string) (files, dirs []string) {
	if what == "--cert-dir" {
		return append(certs.KnownFiles(), CertificateKeyFile), []string{"etcd"}
	}
	cp := controlplane.Options{KubeconfigDir: e.KubeconfigDir}
	files = append(certs.KubeconfigNames(), "bootstrap-kubelet.conf", csrapprover.KubeconfigName)
	for _, p := range []string{cp.AuditPolicyPath(), cp.EncryptionConfigPath(), cp.AuthenticationConfigPath()} {
		files = append(files, path.Base(p))
	}
	return files, nil
}

// CertificateKeyFile is where init keeps the certificate key of the live
// upload, in the cert dir.
const CertificateKeyFile = "kubeforge-certificate-key"

// removeOwnDir removes a directory the operator named for kubeforge's files:
// whole when kubeforge created it (it carries owndirs.Marker), otherwise only
// the files kubeforge writes there, and the directory when that leaves it
// empty. A system directory is refused (CheckDirs refuses it before any
// phase; this is the last line).
func removeOwnDir(ctx context.Context, e *Env, what, dir string, mounts []string) ([]string, error) {
	if err := config.CheckOwnDir(what, dir); err != nil {
		return nil, fmt.Errorf("%w; nothing removed from it", err)
	}
	fi, err := e.Host.Stat(ctx, dir)
	if host.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s %s is not a directory; left alone", what, dir)
	}
	created, err := owndirs.Created(ctx, e.Host, dir)
	if err != nil {
		return nil, err
	}
	if created {
		if isMountPoint(mounts, dir) {
			if _, err := removeContents(ctx, e.Host, dir); err != nil {
				return nil, err
			}
			return []string{fmt.Sprintf("emptied %s (a mount point: kept)", dir)}, nil
		}
		if err := e.Host.Remove(ctx, dir); err != nil {
			return nil, fmt.Errorf("removing %s: %w", dir, err)
		}
		return []string{"removed " + dir}, nil
	}
	// Not kubeforge's directory: its known files only.
	files, subdirs := ownDirFiles(e, what)
	n := 0
	var errs []error
	for _, f := range files {
		p := path.Join(dir, f)
		if _, err := e.Host.Stat(ctx, p); err != nil {
			continue
		}
		if err := e.Host.Remove(ctx, p); err != nil {
			errs = append(errs, fmt.Errorf("removing %s: %w", p, err))
			continue
		}
		n++
	}
	for _, sd := range subdirs {
		_, _ = removeEmptyDir(ctx, e.Host, path.Join(dir, sd))
	}
	var done []string
	if n > 0 {
		done = append(done, fmt.Sprintf("removed kubeforge's %d files from %s (a directory kubeforge did not create)", n, dir))
	}
	if gone, err := removeEmptyDir(ctx, e.Host, dir); err == nil && gone {
		done = append(done, "removed empty "+dir)
	} else if n > 0 {
		e.Logf("kept %s: kubeforge did not create it and it holds files of others", dir)
	}
	return done, errors.Join(errs...)
}

// removeContents deletes everything below dir, keeping dir.
func removeContents(ctx context.Context, h host.Host, dir string) (int, error) {
	c := host.Cmd{Argv: []string{"find", dir, "-mindepth", "1", "-maxdepth", "1"}, ReadOnly: true}
	r, err := h.Run(ctx, c)
	if err != nil {
		return 0, err
	}
	if err := r.Err(h.Name(), c); err != nil {
		return 0, err
	}
	n := 0
	for _, p := range strings.Split(strings.TrimSpace(string(r.Stdout)), "\n") {
		if p == "" {
			continue
		}
		if err := h.Remove(ctx, p); err != nil {
			return n, fmt.Errorf("removing %s: %w", p, err)
		}
		n++
	}
	return n, nil
}

// removeBinaries removes what the components installed (their
// Footprint.Binaries), except those of a component still in use. kubeforge
// itself stays: it is what runs the reset, and what joins again.
func removeBinaries(ctx context.Context, e *Env) ([]string, error) {
	var removed []string
	var errs []error
	var paths []string
	for _, f := range inventory.All() {
		if f.InUse != nil && f.InUse(ctx, e.Host) {
			continue
		}
		for _, b := range f.Binaries {
			if !path.IsAbs(b) {
				b = path.Join(e.BinDir, b)
			}
			paths = append(paths, b)
		}
	}
	for _, p := range paths {
		if _, err := e.Host.Stat(ctx, p); host.IsNotExist(err) {
			continue
		}
		if err := e.Host.Remove(ctx, p); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, path.Base(p))
	}
	// Directories such as /opt/cni/bin go too when nothing else is in them.
	for _, d := range inventory.EmptyDirs() {
		if gone, err := removeEmptyDir(ctx, e.Host, d); err == nil && gone {
			removed = append(removed, d+"/")
		}
	}
	if len(removed) == 0 {
		return nil, errors.Join(errs...)
	}
	return []string{"removed " + strings.Join(removed, ", ")}, errors.Join(errs...)
}

func removeEmptyDir(ctx context.Context, h host.Host, dir string) (bool, error) {
	if _, err := h.Stat(ctx, dir); err != nil {
		return false, nil
	}
	r, err := h.Run(ctx, host.Cmd{Argv: []string{"find", dir, "-mindepth", "1", "-maxdepth", "1"}, ReadOnly: true})
	if err != nil || !r.OK() || strings.TrimSpace(string(r.Stdout)) != "" {
		return false, err
	}
	return true, h.Remove(ctx, dir)
}

func removeUnitFiles(ctx context.Context, e *Env) ([]string, error) {
	units, err := KubeforgeUnits(ctx, e.Host)
	if err != nil {
		return nil, err
	}
	var done []string
	var errs []error
	keep := map[string]bool{}
	for _, f := range inventory.All() {
		if f.InUse != nil && f.InUse(ctx, e.Host) {
			for _, u := range f.Units {
				keep[u] = true
			}
		}
	}
	for _, u := range units {
		if keep[u] {
			continue
		}
		if err := e.Host.Units().RemoveUnit(ctx, u); err != nil {
			errs = append(errs, fmt.Errorf("removing %s: %w", u, err))
			continue
		}
		done = append(done, "removed "+u)
	}
	// Drop-in directories go even when their unit file is already gone (an
	// operator's drop-in for a kubeforge unit is part of it).
	for _, u := range inventory.Units() {
		if keep[u] {
			continue
		}
		d := path.Join(UnitDir, u+".d")
		if _, err := e.Host.Stat(ctx, d); err == nil {
			if err := e.Host.Remove(ctx, d); err != nil {
				errs = append(errs, err)
				continue
			}
			done = append(done, "removed drop-ins "+d)
		}
	}
	if len(done) > 0 {
		if err := e.Host.Units().DaemonReload(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return done, errors.Join(errs...)
}
