package subnet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// The annotations an agent publishes on its own Node.
const (
	AnnotationVtepMAC  = "overlay.kubeforge.io/vtep-mac"
	AnnotationPublicIP = "overlay.kubeforge.io/public-ip"
)

// DefaultNodeWait is how long Acquire waits for the Node and its podCIDR.
const DefaultNodeWait = 90 * time.Second

// KubeOptions configure the Kubernetes-API Manager.
type KubeOptions struct {
	// Client acts as the node itself (the kubelet's credential): NodeRestriction
	// lets it change its own Node only.
	Client kubernetes.Interface
	// NodeName is this node's Node.
	NodeName string
	// Network is the cluster's pod network; kube-controller-manager cuts each
	// Node's spec.podCIDR from it (--cluster-cidr, --node-cidr-mask-size).
	Network Config
	// NodeWait bounds Acquire's wait for the Node and its podCIDR; 0 means
	// DefaultNodeWait.
	NodeWait time.Duration
	// Source names the API server, for status output.
	Source string
	Logf   func(format string, a ...any)
}

// Kube is the Kubernetes-API Manager (flannel's kube-subnet-mgr): a lease is a
// Node with spec.podCIDR and both annotations.
type Kube struct {
	o KubeOptions
}

// NewKube returns the Kubernetes-API Manager.
func NewKube(o KubeOptions) (*Kube, error) {
	if o.Client == nil || o.NodeName == "" {
		return nil, errors.New("kube subnet manager: a client and the node's name are required")
	}
	if err := o.Network.Validate(); err != nil {
		return nil, err
	}
	if o.NodeWait == 0 {
		o.NodeWait = DefaultNodeWait
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return &Kube{o: o}, nil
}

// Name implements Manager.
func (m *Kube) Name() string { return "kube" }

// Close implements Manager.
func (m *Kube) Close() error { return nil }

// Network implements Manager: the configured one (the API holds none).
func (m *Kube) Network(context.Context) (Config, error) { return m.o.Network, nil }

// Acquire waits for this node's Node to carry a podCIDR of the network, then
// publishes req's attributes as its annotations (a merge patch of the two
// annotations only, so nothing else on the Node is touched).
func (m *Kube) Acquire(ctx context.Context, req AcquireRequest) (Lease, error) {
	if err := req.Attrs.Validate(); err != nil {
		return Lease{}, err
	}
	if req.Node != m.o.NodeName {
		return Lease{}, fmt.Errorf("kube subnet manager of node %s cannot acquire for node %s", m.o.NodeName, req.Node)
	}
	var node *corev1.Node
	var last error
	err := wait.PollUntilContextTimeout(ctx, time.Second, m.o.NodeWait, true, func(ctx context.Context) (bool, error) {
		n, err := m.o.Client.CoreV1().Nodes().Get(ctx, m.o.NodeName, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			last = fmt.Errorf("Node %s is not registered (the kubelet registers it)", m.o.NodeName)
			return false, nil
		case apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err):
			return false, fmt.Errorf("reading Node %s: %w", m.o.NodeName, err)
		case err != nil:
			last = fmt.Errorf("reading Node %s: %w", m.o.NodeName, err)
			return false, nil
		case n.Spec.PodCIDR == "":
			last = fmt.Errorf("Node %s has no spec.podCIDR: kube-controller-manager allocates it with --allocate-node-cidrs=true --cluster-cidr=%s --node-cidr-mask-size=%d", m.o.NodeName, m.o.Network.Network, m.o.Network.SubnetLen)
			return false, nil
		}
		node = n
		return true, nil
	})
	if err != nil {
		if last != nil && ctx.Err() == nil {
			return Lease{}, fmt.Errorf("waited %s for this node's pod subnet: %w", m.o.NodeWait, last)
		}
		return Lease{}, err
	}
	p, err := netip.ParsePrefix(node.Spec.PodCIDR)
	if err != nil || !validFor(p, m.o.Network) {
		return Lease{}, fmt.Errorf("Node %s: spec.podCIDR %q is not a /%d of the pod network %s (kube-controller-manager's --cluster-cidr and --node-cidr-mask-size must match spec.networking.podCIDR and nodeSubnetSize)",
			m.o.NodeName, node.Spec.PodCIDR, m.o.Network.SubnetLen, m.o.Network.Network)
	}
	if node.Annotations[AnnotationVtepMAC] != req.VtepMAC || node.Annotations[AnnotationPublicIP] != req.PublicIP {
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{
			AnnotationVtepMAC: req.VtepMAC, AnnotationPublicIP: req.PublicIP,
		}}})
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := m.o.Client.CoreV1().Nodes().Patch(pctx, m.o.NodeName, types.MergePatchType, patch, metav1.PatchOptions{})
		cancel()
		if err != nil {
			return Lease{}, fmt.Errorf("publishing the overlay annotations on Node %s: %w", m.o.NodeName, err)
		}
		m.o.Logf("annotated Node %s: %s=%s, %s=%s", m.o.NodeName, AnnotationVtepMAC, req.VtepMAC, AnnotationPublicIP, req.PublicIP)
	}
	return Lease{Subnet: p, Attrs: req.Attrs, holder: "Node " + m.o.NodeName}, nil
}

// Renew implements Manager: a podCIDR never expires, so there is nothing to
// keep alive; a Node that loses its annotations shows up in Watch as a removed
// lease, and the agent acquires again.
func (m *Kube) Renew(ctx context.Context, _ Lease) error {
	<-ctx.Done()
	return nil
}

// LeaseOf is the lease a Node stands for; ok is false for a Node without a
// podCIDR or without annotations yet (its agent has not started), err for one
// whose values are broken.
func LeaseOf(n *corev1.Node) (l Lease, ok bool, err error) {
	mac, ip := n.Annotations[AnnotationVtepMAC], n.Annotations[AnnotationPublicIP]
	if n.Spec.PodCIDR == "" || mac == "" || ip == "" {
		return Lease{}, false, nil
	}
	p, perr := netip.ParsePrefix(n.Spec.PodCIDR)
	if perr != nil || !p.Addr().Is4() || p.Masked() != p {
		return Lease{}, false, fmt.Errorf("Node %s: spec.podCIDR %q is not an IPv4 subnet", n.Name, n.Spec.PodCIDR)
	}
	a := Attrs{Node: n.Name, PublicIP: ip, VtepMAC: mac}
	if err := a.Validate(); err != nil {
		return Lease{}, false, fmt.Errorf("Node %s: %w", n.Name, err)
	}
	return Lease{Subnet: p, Attrs: a, holder: "Node " + n.Name}, true, nil
}

// Watch follows every Node through a shared informer. The first Update is a
// snapshot of the informer's synced cache; after that each add, change (of a
// lease, not of a heartbeat) and delete is one event. The informer's reflector
// re-lists and re-watches by itself when its watch breaks, and reports
// differences as events, so no further snapshots are needed. The informer's
// three handlers are closures over the one channel and the snapshot flag, which
// is why they stay in this function.
func (m *Kube) Watch(ctx context.Context, ch chan<- Update) error {
	// A node may read every Node only through RBAC (the Node authorizer of
	// Kubernetes 1.32+ allows its own Node alone); say so once instead of
	// leaving the informer to retry a 403 forever.
	if _, err := m.o.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{Limit: 1}); apierrors.IsForbidden(err) {
		return fmt.Errorf("listing Nodes as node %s: %w (init applies ClusterRoleBinding kubeforge:overlay-node-reader for group system:nodes; run `kubeforge init phase overlay` on a control-plane host)", m.o.NodeName, err)
	}
	f := informers.NewSharedInformerFactory(m.o.Client, 0)
	inf := f.Core().V1().Nodes()
	queue := make(chan Update, 256)
	synced := make(chan struct{})
	push := func(u Update) {
		select {
		case <-synced:
		default:
			// Before the snapshot, events are in the snapshot anyway.
			return
		}
		select {
		case queue <- u:
		case <-ctx.Done():
		}
	}
	rev := func(o metav1.Object) int64 {
		v, _ := strconv.ParseInt(o.GetResourceVersion(), 10, 64)
		return v
	}
	_, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			n, ok := obj.(*corev1.Node)
			if !ok {
				return
			}
			if l, ok, err := LeaseOf(n); err != nil {
				m.o.Logf("ignoring %v", err)
			} else if ok {
				push(Update{Events: []Event{{Type: Added, Lease: l}}, Revision: rev(n)})
			}
		},
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*corev1.Node)
			n, ok2 := newObj.(*corev1.Node)
			if !ok1 || !ok2 {
				return
			}
			ol, had, _ := LeaseOf(o)
			nl, has, err := LeaseOf(n)
			if err != nil {
				m.o.Logf("ignoring %v", err)
			}
			switch {
			case has && (!had || ol.Subnet != nl.Subnet || ol.Attrs != nl.Attrs):
				evs := []Event{{Type: Added, Lease: nl}}
				if had && ol.Subnet != nl.Subnet {
					evs = append([]Event{{Type: Removed, Lease: ol}}, evs...)
				}
				push(Update{Events: evs, Revision: rev(n)})
			case had && !has:
				push(Update{Events: []Event{{Type: Removed, Lease: ol}}, Revision: rev(n)})
			}
		},
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			n, ok := obj.(*corev1.Node)
			if !ok {
				return
			}
			l, had, _ := LeaseOf(n)
			if !had {
				// Still tell the agent: it may have programmed the Node's last
				// good values.
				p, err := netip.ParsePrefix(n.Spec.PodCIDR)
				if err != nil {
					return
				}
				l = Lease{Subnet: p, Attrs: Attrs{Node: n.Name}}
			}
			push(Update{Events: []Event{{Type: Removed, Lease: l}}, Revision: rev(n)})
		},
	})
	if err != nil {
		return err
	}
	f.Start(ctx.Done())
	defer f.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) {
		return ctx.Err()
	}
	// Events from here on are queued: the handler runs after the cache holds
	// the change, so one is either in the list below or queued (or both, which
	// is harmless), never lost.
	close(synced)
	nodes, err := inf.Lister().List(labels.Everything())
	if err != nil {
		return err
	}
	snap := &Snapshot{taken: map[netip.Prefix]bool{}}
	snap.Revision, _ = strconv.ParseInt(inf.Informer().LastSyncResourceVersion(), 10, 64)
	for _, n := range nodes {
		l, ok, err := LeaseOf(n)
		if err != nil {
			snap.Invalid = append(snap.Invalid, err)
		}
		if ok {
			snap.Leases = append(snap.Leases, l)
			snap.taken[l.Subnet] = true
		}
	}
	select {
	case ch <- Update{Snapshot: snap, Reason: "start", Revision: snap.Revision, Source: m.o.Source}:
	case <-ctx.Done():
		return ctx.Err()
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case u := <-queue:
			u.Source = m.o.Source
			select {
			case ch <- u:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}
