package initphases

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/bundle"
	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/components/coredns"
	"github.com/kubeforge/kubeforge/components/kubeclient"
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
	if why := kubeclient.NodeNotReady(ctx, cli, data.Node().Name); why != "" {
		return workflow.Outcome(log, len(changed) > 0, fmt.Sprintf(
			"CoreDNS at %s, not waiting for its pods: %s; they start once a node is Ready", objs.ClusterIP, why))
	}
	ready, want, err := coredns.WaitReady(ctx, cli, coreDNSReadyTimeout)
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
