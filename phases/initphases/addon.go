package initphases

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/kubeforge/kubeforge/bootstrap/bundle"
	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/components/coredns"
	"github.com/kubeforge/kubeforge/components/kubelet"
	"github.com/kubeforge/kubeforge/phases/rundata"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

// coreDNSReadyTimeout bounds the wait for the first ready CoreDNS replica.
const coreDNSReadyTimeout = 3 * time.Minute

func (r *run) addonPhase() workflow.Phase {
	return workflow.Phase{
		Name:  "addon",
		Short: "Deploy the cluster add-ons",
		RunIf: hasRole(config.RoleControlPlane),
		Phases: []workflow.Phase{{
			Name:  "coredns",
			Short: "Deploy CoreDNS, the cluster DNS, at the cluster DNS address",
			Long: `Apply, with server-side apply, CoreDNS from the bundle (` + coredns.ImageArchive + `, imported on
every node by the images phase) into kube-system: ServiceAccount and ClusterRole
` + coredns.ClusterRoleName + ` (list/watch EndpointSlices, Services, Namespaces), the Corefile
ConfigMap, Deployment coredns (spec.addons.coreDNS.replicas, one per node), a
PodDisruptionBudget, and Service ` + coredns.ServiceName + ` at the tenth address of the service CIDR,
the address every kubelet gives pods as their nameserver. Then, when this host's
Node is Ready (it has a pod network), wait up to 3 minutes until one replica is.

Names outside the cluster go to spec.addons.coreDNS.upstreams or, without them,
to the nameservers of the node's resolver file (the kubelet's: on a host whose
/etc/resolv.conf points at systemd-resolved's 127.0.0.53 stub, the real list in
/run/systemd/resolve/resolv.conf). When that file names no usable nameserver
(none, or only loopback ones) CoreDNS answers cluster names only.

A changed configuration or a new bundle rolls the Deployment (a checksum of the
Corefile and the image sits on its pod template); re-running with nothing
changed reports "unchanged". With spec.addons.coreDNS.enabled: false the phase
removes the objects kubeforge made.`,
			Run: r.runAddonCoreDNS,
		}},
	}
}

func (r *run) runAddonCoreDNS(d workflow.RunData) error {
	data, err := r.data(d, "addon/coredns")
	if err != nil {
		return err
	}
	ctx, log := data.Context(), data.Logger()
	cli, err := r.client(data)
	if err != nil {
		return err
	}
	if !data.Config().Spec.Addons.CoreDNS.IsEnabled() {
		removed, err := coredns.Remove(ctx, cli)
		if err != nil {
			return err
		}
		if len(removed) == 0 {
			return workflow.Unchanged("spec.addons.coreDNS.enabled is false and no CoreDNS object of kubeforge's is left")
		}
		if !data.DryRun() {
			log.Printf("spec.addons.coreDNS.enabled is false: removed %s", strings.Join(removed, ", "))
		}
		return nil
	}
	objs, err := coreDNSObjects(ctx, data)
	if err != nil {
		return err
	}
	changed, err := coredns.Ensure(ctx, cli, objs)
	if err != nil {
		return err
	}
	if data.DryRun() {
		return nil // the client printed every object
	}
	if len(changed) > 0 {
		log.Printf("applied %s", strings.Join(changed, ", "))
	}
	// CoreDNS pods need a node with a pod network; without one (init run with
	// --skip-phases overlay and no other CNI) waiting could only time out.
	if why := nodeNotReady(ctx, cli, data.Node().Name); why != "" {
		return workflow.Outcome(log, len(changed) > 0, fmt.Sprintf(
			"CoreDNS at %s, not waiting for its pods: %s; they start once a node is Ready", objs.ClusterIP, why))
	}
	ready, want, err := waitCoreDNS(ctx, cli, coreDNSReadyTimeout)
	if err != nil {
		return err
	}
	status := fmt.Sprintf("CoreDNS %d/%d replicas ready at %s (Service %s/%s)", ready, want, objs.ClusterIP, coredns.Namespace, coredns.ServiceName)
	if ready < want {
		status += "; the others start as nodes join (one per node)"
	}
	return workflow.Outcome(log, len(changed) > 0, status)
}

// coreDNSObjects builds the add-on from the configuration, the bundle's image and
// this host's resolver file.
func coreDNSObjects(ctx context.Context, data rundata.Data) (*coredns.Objects, error) {
	b, err := bundle.Open(data.BundleDir())
	if err != nil {
		return nil, err
	}
	image, digest, err := coredns.BundleImage(b)
	if err != nil {
		return nil, err
	}
	cfg := data.Config()
	fwd := coredns.ForwardResolvConf
	if len(cfg.Spec.Addons.CoreDNS.Upstreams) == 0 {
		h := data.Host()
		path := kubelet.ResolvConf(ctx, h)
		conf, err := h.ReadFile(ctx, path)
		if err != nil {
			conf = nil // a host without a resolver file: cluster names only
		}
		var why string
		fwd, why = coredns.ForwardFor(h.Name()+":"+path, conf)
		data.Logger().Printf("%s", why)
	}
	return coredns.Build(coredns.Options{Cluster: cfg, Image: image, ImageDigest: digest, Forward: fwd})
}

// waitCoreDNS waits until at least one CoreDNS replica is ready, and reports how
// many are of how many wanted. On timeout the error says why the pods are not.
func waitCoreDNS(ctx context.Context, c kubernetes.Interface, timeout time.Duration) (ready, want int32, err error) {
	err = wait.PollUntilContextTimeout(ctx, time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		dep, err := c.AppsV1().Deployments(coredns.Namespace).Get(ctx, coredns.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, nil // the apiserver may be briefly busy; the deadline bounds it
		}
		want = 1
		if dep.Spec.Replicas != nil {
			want = *dep.Spec.Replicas
		}
		ready = dep.Status.ReadyReplicas
		return ready > 0 && dep.Status.ObservedGeneration >= dep.Generation, nil
	})
	if err != nil {
		return ready, want, fmt.Errorf("no CoreDNS replica became ready within %s: %s (kubectl -n %s get pods -l %s=%s)",
			timeout, podProblems(ctx, c), coredns.Namespace, coredns.AppLabel, coredns.AppLabelValue)
	}
	return ready, want, nil
}

// nodeNotReady says why Node name is not Ready, "" when it is.
func nodeNotReady(ctx context.Context, c kubernetes.Interface, name string) string {
	n, err := c.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Sprintf("Node %s: %v", name, err)
	}
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			if cond.Status == corev1.ConditionTrue {
				return ""
			}
			return fmt.Sprintf("Node %s is not Ready (%s)", name, cond.Message)
		}
	}
	return fmt.Sprintf("Node %s reports no Ready condition yet", name)
}

// podProblems summarises why CoreDNS pods are not ready.
func podProblems(ctx context.Context, c kubernetes.Interface) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	pods, err := c.CoreV1().Pods(coredns.Namespace).List(ctx, metav1.ListOptions{LabelSelector: coredns.AppLabel + "=" + coredns.AppLabelValue})
	if err != nil {
		return "listing its pods: " + err.Error()
	}
	if len(pods.Items) == 0 {
		return "no CoreDNS pod exists"
	}
	var out []string
	for _, p := range pods.Items {
		why := string(p.Status.Phase)
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil {
				why = w.Reason + ": " + w.Message
			} else if t := cs.LastTerminationState.Terminated; t != nil {
				why += fmt.Sprintf(", last exit %d (%s)", t.ExitCode, t.Reason)
			}
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodScheduled && cond.Status != corev1.ConditionTrue {
				why = "unscheduled: " + cond.Message
			}
		}
		out = append(out, fmt.Sprintf("pod %s on %q: %s", p.Name, p.Spec.NodeName, why))
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}
