package csrapprover

import (
	"context"
	"fmt"
	"strings"
	"time"

	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/informers"
	certlisters "k8s.io/client-go/listers/certificates/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// Run approves CSRs and removes Nodes that asked for it until ctx ends.
//
// It is a controller in the Kubernetes sense: shared informers keep a cache of
// CSRs and Nodes, and their event handlers put work on a rate-limited queue.
// The informers' reflectors own the connection to the API: a watch that breaks
// (apiserver restart, a dead TCP connection caught by client-go's HTTP/2 health
// check, the server's watch timeout) is re-established from the last resource
// version it saw, or relisted when that is too old, so no CSR created during a
// disconnect is missed and nothing waits for the resync. An earlier version ran
// its own watches without a resource version and re-synced on a timer; every
// reconnect could drop the event of a CSR created meanwhile, leaving it to the
// 30-second timer, and a client whose request timeout cut every watch made
// that the normal case.
//
// A refused CSR stays pending and is looked at again whenever its Node changes
// (a node that registers after asking is the usual case), and at every resync.
// A failed approval is retried with backoff. The client must not carry a
// request timeout (rest.Config.Timeout), which would cut every watch; each
// write gets a deadline of its own.
func (a *Approver) Run(ctx context.Context, resync time.Duration) error {
	defer utilruntime.HandleCrash()
	if resync <= 0 {
		resync = 30 * time.Second
	}
	factory := informers.NewSharedInformerFactory(a.Client, resync)
	csrInformer := factory.Certificates().V1().CertificateSigningRequests()
	nodeInformer := factory.Core().V1().Nodes()
	c := &controller{
		a:     a,
		csrs:  csrInformer.Lister(),
		nodes: nodeInformer.Lister(),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "kubeforge-csr-approver"}),
	}
	defer c.queue.ShutDown()

	if _, err := csrInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.csrChanged,
		UpdateFunc: func(_, obj any) { c.csrChanged(obj) },
	}); err != nil {
		return err
	}
	if _, err := nodeInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.nodeChanged,
		UpdateFunc: func(_, obj any) { c.nodeChanged(obj) },
		DeleteFunc: c.nodeChanged,
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	synced := time.Now()
	if !cache.WaitForCacheSync(ctx.Done(), csrInformer.Informer().HasSynced, nodeInformer.Informer().HasSynced) {
		return nil // ctx ended first
	}
	a.logf("caches synced in %s; approving", time.Since(synced).Round(time.Millisecond))
	go func() {
		<-ctx.Done()
		c.queue.ShutDown()
	}()
	for c.next(ctx) {
	}
	return nil
}

// Keys on the queue: "csr/<name>" or "node/<name>".
const (
	csrKey  = "csr/"
	nodeKey = "node/"
)

type controller struct {
	a     *Approver
	csrs  certlisters.CertificateSigningRequestLister
	nodes corelisters.NodeLister
	queue workqueue.TypedRateLimitingInterface[string]
}

func (c *controller) csrChanged(obj any) {
	if csr, ok := obj.(*certv1.CertificateSigningRequest); ok && pending(csr) {
		c.queue.Add(csrKey + csr.Name)
	}
}

func (c *controller) nodeChanged(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if n, ok := obj.(*corev1.Node); ok {
		c.queue.Add(nodeKey + n.Name)
	}
}

// next handles one key; false once the queue is shut down.
func (c *controller) next(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	if err := c.handle(ctx, key); err != nil {
		if ctx.Err() == nil {
			c.a.logf("%v (retrying)", err)
		}
		c.queue.AddRateLimited(key)
		return true
	}
	c.queue.Forget(key)
	return true
}

// writeTimeout bounds each write the controller makes.
const writeTimeout = 15 * time.Second

func (c *controller) handle(ctx context.Context, key string) error {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	switch {
	case strings.HasPrefix(key, csrKey):
		csr, err := c.csrs.Get(strings.TrimPrefix(key, csrKey))
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil || !pending(csr) {
			return err
		}
		nodes, err := c.nodeMap()
		if err != nil {
			return err
		}
		_, err = c.a.judge(ctx, csr, c.a.inputs(ctx, nodes))
		return err
	case strings.HasPrefix(key, nodeKey):
		name := strings.TrimPrefix(key, nodeKey)
		n, err := c.nodes.Get(name)
		if apierrors.IsNotFound(err) {
			return c.a.forgetJoined(ctx, name)
		}
		if err != nil {
			return err
		}
		if removed, err := c.a.removeIfAsked(ctx, n); removed || err != nil {
			if err == nil {
				err = c.a.forgetJoined(ctx, name)
			}
			return err
		}
		if err := c.a.recordJoined(ctx, n); err != nil {
			return err
		}
		// The node's pending CSRs may have been waiting for it to register
		// (or to report the addresses they name).
		all, err := c.csrs.List(labels.Everything())
		if err != nil {
			return err
		}
		for _, csr := range all {
			if csr.Spec.Username == nodeUserPrefix+name && pending(csr) {
				c.queue.Add(csrKey + csr.Name)
			}
		}
		return nil
	}
	return fmt.Errorf("unknown work item %q", key)
}

func (c *controller) nodeMap() (Nodes, error) {
	list, err := c.nodes.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	m := make(Nodes, len(list))
	for _, n := range list {
		m[n.Name] = n
	}
	return m, nil
}
