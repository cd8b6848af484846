package resetphases

import (
	"strings"

	"github.com/kubeforge/kubeforge/components/cleanup"
	"github.com/kubeforge/kubeforge/phases/rundata"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

// runSteps runs cleanup steps for a phase and reports like every phase does.
func runSteps(d workflow.RunData, phase string, steps []cleanup.Step) error {
	data, err := rundata.From(d, phase)
	if err != nil {
		return err
	}
	env := &cleanup.Env{Host: data.Host(), Cluster: data.Config(), NodeName: data.NodeName(), CertDir: data.CertDir(),
		KubeconfigDir: data.KubeconfigDir(), DryRun: data.DryRun(), Logf: data.Logger().Printf}
	res, err := cleanup.Run(data.Context(), env, steps)
	if err != nil {
		return err
	}
	if !res.Changed() {
		return workflow.Unchanged("nothing of kubeforge's left on %s", data.Host().Name())
	}
	names := map[string]bool{}
	var order []string
	for _, d := range res.Done {
		s, _, _ := strings.Cut(d, ":")
		if !names[s] {
			names[s] = true
			order = append(order, s)
		}
	}
	data.Logger().Printf("%d changes (%s)", len(res.Done), strings.Join(order, ", "))
	return nil
}

func unitsPhase() workflow.Phase {
	return workflow.Phase{
		Name:  "units",
		Short: "Stop and disable kubeforge's units; remove every container and pod sandbox",
		Long: `Stop the kubelet first (so nothing recreates pods), then kube-proxy, the
approver and every other unit whose header says "written by kubeforge"; kill and
delete every container and pod sandbox in containerd's k8s.io namespace through
the containerd client while containerd still runs; then stop containerd (and any
shim that outlived it) and disable every kubeforge unit.`,
		Run: func(d workflow.RunData) error { return runSteps(d, "units", cleanup.UnitSteps()) },
	}
}

func cleanupPhase() workflow.Phase {
	return workflow.Phase{
		Name:  "cleanup",
		Short: "Delete the Node, mounts, kube-proxy's and CNI's iptables chains, files, binaries and unit files",
		Long: `Delete this host's Node object when the API answers (a worker asks the
control plane's approver to do it: a node may not delete itself); unmount what
the kubelet and containerd mounted; remove kube-proxy's rules (kube-proxy
--cleanup) and every remaining KUBE-/CNI- chain with the rules jumping to them,
leaving all other iptables rules as they were; delete the kubeconfig and cert
dirs (/etc/kubernetes) when kubeforge created them — from a directory it did not
create only the files it wrote, and a system directory such as /etc is refused
before anything is removed —, /var/lib/kubelet, /var/lib/kube-proxy,
containerd's and CNI's config and state, the installed binaries (kubeforge itself
stays) and kubeforge's unit files with their drop-ins. Afterwards the host passes
preflight and can join again.`,
		Run: func(d workflow.RunData) error { return runSteps(d, "cleanup", cleanup.CleanupSteps()) },
	}
}
