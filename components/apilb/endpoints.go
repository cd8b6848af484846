package apilb

import (
	"context"
	"net"
	"sort"
	"strconv"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// The EndpointSlices of the `kubernetes` Service list every apiserver that
// is serving; kube-apiserver's endpoint reconciler keeps them current (each
// apiserver adds itself and removes itself on a clean shutdown; a lease lets
// the others drop one that died).
const (
	serviceNamespace = metav1.NamespaceDefault
	serviceName      = "kubernetes"
	portName         = "https"
)

// WatchAPIServers keeps b's backends equal to the ready endpoints of the
// `kubernetes` Service until ctx ends. The client should itself go through b,
// so the watch survives the loss of any one apiserver.
func WatchAPIServers(ctx context.Context, client kubernetes.Interface, b *Balancer) error {
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithNamespace(serviceNamespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = discoveryv1.LabelServiceName + "=" + serviceName
		}))
	inf := factory.Discovery().V1().EndpointSlices()
	lister := inf.Lister().EndpointSlices(serviceNamespace)
	update := func(any) {
		list, err := lister.List(labels.Everything())
		if err != nil {
			return
		}
		if addrs := APIServers(list); len(addrs) > 0 {
			b.SetBackends(addrs)
		}
	}
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    update,
		UpdateFunc: func(_, obj any) { update(obj) },
		DeleteFunc: update,
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	<-ctx.Done()
	factory.Shutdown()
	return nil
}

// APIServers returns host:port of every ready endpoint in the slices, sorted.
func APIServers(slices []*discoveryv1.EndpointSlice) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range slices {
		var port int32
		for _, p := range s.Ports {
			if p.Port != nil && (p.Name == nil || *p.Name == portName) {
				port = *p.Port
				break
			}
		}
		if port == 0 {
			continue
		}
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && !*e.Conditions.Ready {
				continue
			}
			for _, a := range e.Addresses {
				hp := net.JoinHostPort(a, strconv.Itoa(int(port)))
				if !seen[hp] {
					seen[hp] = true
					out = append(out, hp)
				}
			}
		}
	}
	sort.Strings(out)
	return out
}
