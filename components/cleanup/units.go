package cleanup

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"

	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/components/component"
	"github.com/kubeforge/kubeforge/components/containerd"
)

// UnitMarker and UnitDir: see the component contract.
const (
	UnitMarker = component.UnitMarker
	UnitDir    = component.UnitDir
)

// stopFirst are stopped before the rest, in this order: the kubelet would
// otherwise restart containers that are being removed, and kube-proxy and the
// overlay would reprogram rules.
var stopFirst = []string{"kubelet.service", "kube-proxy.service", "kubeforge-overlay.service", "kubeforge-csr-approver.service"}

// KubeforgeUnits lists the unit files (services and timers) in UnitDir that
// carry UnitMarker.
func KubeforgeUnits(ctx context.Context, h host.Host) ([]string, error) {
	c := host.Cmd{Argv: []string{"find", UnitDir, "-maxdepth", "1", "-type", "f", "(", "-name", "*.service", "-o", "-name", "*.timer", ")"}, ReadOnly: true}
	r, err := h.Run(ctx, c)
	if err != nil {
		return nil, err
	}
	if err := r.Err(h.Name(), c); err != nil {
		return nil, err
	}
	var out []string
	for _, p := range strings.Fields(string(r.Stdout)) {
		data, err := h.ReadFile(ctx, p)
		if err != nil {
			continue
		}
		if strings.Contains(string(data), UnitMarker) {
			out = append(out, path.Base(p))
		}
	}
	slices.Sort(out)
	return out, nil
}

// stopLast is stopped after every other unit (containerd is stopped on its own,
// later): etcd going first made the apiserver fail and the controller-manager
// lose its lease and restart in the middle of the reset.
const stopLast = "etcd.service"

// stopOrder puts stopFirst units first, then the rest, then stopLast;
// containerd is not in it.
func stopOrder(units []string) []string {
	var out []string
	for _, u := range stopFirst {
		if slices.Contains(units, u) {
			out = append(out, u)
		}
	}
	for _, u := range units {
		if !slices.Contains(out, u) && u != containerd.UnitName && u != stopLast {
			out = append(out, u)
		}
	}
	if slices.Contains(units, stopLast) {
		out = append(out, stopLast)
	}
	return out
}

// UnitSteps are reset's "units" phase.
func UnitSteps() []Step {
	return []Step{
		{Name: "stop-units", Run: stopUnits},
		{Name: "containers", Run: removeContainers},
		{Name: "pod-slices", Run: stopPodSlices},
		{Name: "stop-containerd", Run: stopContainerd},
		{Name: "disable-units", Run: disableUnits},
	}
}

func stopUnit(ctx context.Context, e *Env, name string) (bool, error) {
	st, err := e.Host.Units().Status(ctx, name)
	if err != nil {
		return false, err
	}
	// A unit with a job queued (the restart of a crashed Restart=always
	// service, inactive until it runs) is on its way back: stop it too, or it
	// starts again after the reset (a controller-manager did, and the next
	// init found its port taken).
	if !component.Running(st) && !st.JobQueued {
		return false, nil
	}
	if err := e.Host.Units().Stop(ctx, name); err != nil {
		return false, fmt.Errorf("stopping %s: %w", name, err)
	}
	return true, nil
}

func stopUnits(ctx context.Context, e *Env) ([]string, error) {
	units, err := KubeforgeUnits(ctx, e.Host)
	if err != nil {
		return nil, err
	}
	var done []string
	var errs []error
	for _, u := range stopOrder(units) {
		stopped, err := stopUnit(ctx, e, u)
		if err != nil {
			errs = append(errs, err)
		}
		if stopped {
			done = append(done, "stopped "+u)
		}
	}
	return done, errors.Join(errs...)
}

// removeContainers kills and deletes every task and container in k8s.io: pod
// containers and their sandboxes alike. Done while containerd still runs,
// because only containerd can tear down its shims and rootfs mounts cleanly.
func removeContainers(ctx context.Context, e *Env) ([]string, error) {
	st, err := e.Host.Units().Status(ctx, containerd.UnitName)
	if err != nil {
		return nil, err
	}
	if !st.Active() {
		return nil, nil // no daemon: nothing runs; its leftovers go with its directories
	}
	if e.DryRun {
		return []string{"would kill and delete every container in namespace " + containerd.Namespace}, nil
	}
	c, err := containerd.Connect(e.Host, containerd.Socket)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ctrs, err := c.Containers(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing containers: %w", err)
	}
	// Pod containers before their sandboxes: in containerd 2 one shim serves a
	// whole pod, and it exits with the sandbox, taking the other containers'
	// task API with it ("ttrpc: closed").
	sandbox := func(c client.Container) bool {
		labels, err := c.Labels(ctx)
		return err == nil && labels["io.cri-containerd.kind"] == "sandbox"
	}
	slices.SortStableFunc(ctrs, func(a, b client.Container) int {
		switch sa, sb := sandbox(a), sandbox(b); {
		case sa == sb:
			return 0
		case sa:
			return 1
		}
		return -1
	})
	var done []string
	var errs []error
	for _, ctr := range ctrs {
		if err := deleteContainer(ctx, ctr); err != nil {
			errs = append(errs, fmt.Errorf("container %s: %w", ctr.ID(), err))
			continue
		}
		done = append(done, "removed container "+short(ctr.ID()))
	}
	if len(done) > 3 {
		done = []string{fmt.Sprintf("removed %d containers and pod sandboxes", len(done))}
	}
	return done, errors.Join(errs...)
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func deleteContainer(ctx context.Context, ctr client.Container) error {
	task, err := ctr.Task(ctx, nil)
	switch {
	case errdefs.IsNotFound(err):
	case err != nil:
		return err
	default:
		wait, werr := task.Wait(ctx)
		if kerr := task.Kill(ctx, syscall.SIGKILL, client.WithKillAll); kerr != nil && !errdefs.IsNotFound(kerr) {
			return kerr
		}
		if werr == nil {
			select {
			case <-wait:
			case <-time.After(10 * time.Second):
			}
		}
		if _, err := task.Delete(ctx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			// The shim may be gone already (its pod's sandbox went first): then the
			// container record can still be removed, which is what matters.
			if derr := ctr.Delete(ctx, client.WithSnapshotCleanup); derr == nil || errdefs.IsNotFound(derr) {
				return nil
			}
			return err
		}
	}
	if err := ctr.Delete(ctx, client.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	return nil
}

// stopContainerd stops the runtime and then any shim that outlived its
// containers (KillMode=process leaves shims running by design).
func stopContainerd(ctx context.Context, e *Env) ([]string, error) {
	var done []string
	stopped, err := stopUnit(ctx, e, containerd.UnitName)
	if err != nil {
		return nil, err
	}
	if stopped {
		done = append(done, "stopped "+containerd.UnitName)
	}
	r, err := e.Host.Run(ctx, host.Cmd{Argv: []string{"pidof", "containerd-shim-runc-v2"}, ReadOnly: true})
	if err != nil || !r.OK() {
		return done, nil // none left (pidof exits 1), or no pidof: nothing more to do
	}
	for _, pid := range strings.Fields(string(r.Stdout)) {
		if _, err := host.MustRun(ctx, e.Host, "kill", "-9", pid); err == nil {
			done = append(done, "killed leftover shim "+pid)
		}
	}
	return done, nil
}

func disableUnits(ctx context.Context, e *Env) ([]string, error) {
	units, err := KubeforgeUnits(ctx, e.Host)
	if err != nil {
		return nil, err
	}
	var done []string
	var errs []error
	for _, u := range units {
		st, err := e.Host.Units().Status(ctx, u)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if st.Enabled != "enabled" {
			continue
		}
		if err := e.Host.Units().Disable(ctx, u); err != nil {
			errs = append(errs, fmt.Errorf("disabling %s: %w", u, err))
			continue
		}
		done = append(done, "disabled "+u)
	}
	return done, errors.Join(errs...)
}

// PodSlice is the root of the pods' cgroups with the systemd cgroup driver: a
// transient slice the kubelet creates. Stopping it removes it and every pod
// slice below it (and would kill anything a removed container left behind).
const PodSlice = "kubepods.slice"

func stopPodSlices(ctx context.Context, e *Env) ([]string, error) {
	st, err := e.Host.Units().Status(ctx, PodSlice)
	if err != nil {
		return nil, err
	}
	if st.LoadState != "loaded" || !st.Active() {
		return nil, nil
	}
	if err := e.Host.Units().Stop(ctx, PodSlice); err != nil {
		return nil, fmt.Errorf("stopping %s: %w", PodSlice, err)
	}
	return []string{"stopped " + PodSlice + " and the pod slices below it"}, nil
}
