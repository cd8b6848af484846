package preflight

import (
	"context"
	"strings"

	"github.com/kubeforge/kubeforge/bootstrap/host"
)

const fstab = "/etc/fstab"

// swapOffPrefix marks the fstab lines the fix commented out, so an operator can
// tell them from their own comments (and re-enable them by removing it).
const swapOffPrefix = "#kubeforge:swapoff# "

// SwapCheck: the kubelet refuses to start with swap on (failSwapOn), and swap
// re-enabled by /etc/fstab at the next boot would stop every node at once.
type SwapCheck struct{ env *Env }

func (SwapCheck) Name() string { return "Swap" }

// activeSwaps lists /proc/swaps entries (the first line is a header).
func activeSwaps(ctx context.Context, h host.Host) ([]string, error) {
	data, err := h.ReadFile(ctx, "/proc/swaps")
	if host.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for i, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); i > 0 && len(f) > 0 {
			out = append(out, f[0])
		}
	}
	return out, nil
}

// isFstabSwap reports whether an fstab line mounts swap (third field "swap").
func isFstabSwap(line string) bool {
	t := strings.TrimSpace(line)
	if t == "" || strings.HasPrefix(t, "#") {
		return false
	}
	f := strings.Fields(t)
	return len(f) >= 3 && f[2] == "swap"
}

func (c SwapCheck) Check(ctx context.Context, h host.Host) (warns, errs []error) {
	active, err := activeSwaps(ctx, h)
	if err != nil {
		return nil, []error{err}
	}
	if len(active) > 0 {
		errs = append(errs, errorf("swap is on (%s): the kubelet does not run with swap; turn it off (swapoff -a)", strings.Join(active, ", ")))
	}
	content, _, err := readOptional(ctx, h, fstab)
	if err != nil {
		return nil, append(errs, err)
	}
	var lines []string
	for _, l := range strings.Split(content, "\n") {
		if isFstabSwap(l) {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	if len(lines) > 0 {
		errs = append(errs, errorf("%s activates swap at boot (%q): comment those lines out", fstab, strings.Join(lines, "; ")))
	}
	return nil, errs
}

func (SwapCheck) FixDescription() string {
	return "swapoff -a and comment out the swap lines of " + fstab + " (backup kept)"
}

func (c SwapCheck) Fix(ctx context.Context, h host.Host) error {
	content, exists, err := readOptional(ctx, h, fstab)
	if err != nil {
		return err
	}
	changed := false
	lines := strings.Split(content, "\n")
	for i, l := range lines {
		if isFstabSwap(l) {
			lines[i] = swapOffPrefix + l
			changed = true
		}
	}
	if exists && changed {
		if _, err := backup(ctx, h, fstab, c.env.backupSuffix(), []byte(content)); err != nil {
			return err
		}
		fi, err := h.Stat(ctx, fstab)
		if err != nil {
			return err
		}
		if err := h.WriteFile(ctx, fstab, []byte(strings.Join(lines, "\n")), host.WriteOptions{Mode: fi.Mode.Perm()}); err != nil {
			return err
		}
		// systemd-fstab-generator made a .swap unit from the line; reloading drops
		// it, so nothing (swap.target) turns the swap on again before a reboot.
		if err := h.Units().DaemonReload(ctx); err != nil {
			return err
		}
	}
	active, err := activeSwaps(ctx, h)
	if err != nil {
		return err
	}
	if len(active) > 0 {
		if _, err := host.MustRun(ctx, h, "swapoff", "-a"); err != nil {
			return err
		}
	}
	return nil
}
