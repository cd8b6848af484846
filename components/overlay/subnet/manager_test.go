package subnet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubeforge/kubeforge/components/kubeclient/fakewatch"
	"github.com/kubeforge/kubeforge/components/overlay/internal/etcdtest"
)

// backend is one Manager implementation under the contract suite.
type backend struct {
	// node returns the manager of node n (the n-th node, from 1), after doing
	// what the cluster does for it before its agent runs.
	node func(t *testing.T, name string, n int) Manager
	// watching returns once the watch of the most recent Watch call is open, so
	// changes after it cannot fall between its list and its watch.
	watching func(t *testing.T)
	// remove takes node's lease away from outside (node remove, reset).
	remove func(t *testing.T, name string)
}

var contractNet = Config{Network: "10.244.0.0/16", SubnetLen: 24, VNI: 1, Port: 8472}

func etcdBackend(t *testing.T) backend {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	return backend{
		node: func(t *testing.T, name string, n int) Manager {
			nc := contractNet
			m, err := NewEtcd(EtcdOptions{Endpoints: []string{srv.Endpoint}, Network: &nc, TTL: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = m.Close() })
			return m
		},
		watching: func(*testing.T) {}, // the watch starts at the snapshot's revision
		remove: func(t *testing.T, name string) {
			if _, err := New(cli, "").Release(ctx(t), name); err != nil {
				t.Fatal(err)
			}
		},
	}
}

func kubeBackend(t *testing.T) backend {
	c := fake.NewClientset()
	opened := fakewatch.Opened(c, "nodes")
	return backend{
		node: func(t *testing.T, name string, n int) Manager {
			// The kubelet registers the Node; kube-controller-manager sets its podCIDR.
			node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDR: fmt.Sprintf("10.244.%d.0/24", n)}}
			if _, err := c.CoreV1().Nodes().Create(ctx(t), node, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			m, err := NewKube(KubeOptions{Client: c, NodeName: name, Network: contractNet, NodeWait: 30 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			return m
		},
		watching: func(t *testing.T) {
			select {
			case <-opened:
			case <-time.After(30 * time.Second):
				t.Fatal("the Node informer did not open its watch within 30s")
			}
		},
		remove: func(t *testing.T, name string) {
			if err := c.CoreV1().Nodes().Delete(ctx(t), name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		},
	}
}

// TestManagerContract runs the same suite against every Manager.
func TestManagerContract(t *testing.T) {
	for name, mk := range map[string]func(*testing.T) backend{"etcd": etcdBackend, "kube": kubeBackend} {
		t.Run(name, func(t *testing.T) { managerContract(t, mk(t)) })
	}
}

func managerContract(t *testing.T, b backend) {
	c := ctx(t)
	ma := b.node(t, "node-a", 1)
	nc, err := ma.Network(c)
	if err != nil || nc.Diff(contractNet) != nil {
		t.Fatalf("network %+v %v", nc, err)
	}
	la, err := ma.Acquire(c, AcquireRequest{Attrs: attrs("node-a", 1), Network: contractNet})
	if err != nil {
		t.Fatal(err)
	}
	if !validFor(la.Subnet, contractNet) || la.Attrs != attrs("node-a", 1) || la.Holder() == "" {
		t.Fatalf("node-a's lease %+v (holder %q)", la, la.Holder())
	}
	if again, err := ma.Acquire(c, AcquireRequest{Attrs: attrs("node-a", 1), Network: contractNet, Hint: la.Subnet}); err != nil || again.Subnet != la.Subnet {
		t.Fatalf("acquiring again: %v %v, first %v", again.Subnet, err, la.Subnet)
	}

	wctx, stop := context.WithCancel(c)
	ch := make(chan Update, 16)
	done := make(chan error, 1)
	go func() { done <- ma.Watch(wctx, ch) }()
	next := func(what string) Update {
		t.Helper()
		select {
		case u := <-ch:
			return u
		case err := <-done:
			t.Fatalf("waiting for %s: Watch returned %v", what, err)
		case <-time.After(30 * time.Second):
			t.Fatalf("no update with %s within 30s", what)
		}
		return Update{}
	}
	// event waits for the next event about subnet p, skipping others.
	event := func(what string, p netip.Prefix) Event {
		t.Helper()
		for {
			u := next(what)
			if u.Snapshot != nil {
				t.Fatalf("a snapshot (%s) while waiting for %s", u.Reason, what)
			}
			for _, ev := range u.Events {
				if ev.Lease.Subnet == p {
					return ev
				}
			}
		}
	}
	first := next("the first snapshot")
	if first.Snapshot == nil {
		t.Fatalf("first update is not a snapshot: %+v", first)
	}
	if len(first.Snapshot.Leases) != 1 || first.Snapshot.Leases[0].Subnet != la.Subnet || first.Snapshot.Leases[0].Attrs != la.Attrs {
		t.Fatalf("first snapshot %+v; want node-a's %v", first.Snapshot.Leases, la)
	}
	b.watching(t)

	t.Run("a peer joining is an added lease", func(t *testing.T) {
		mb := b.node(t, "node-b", 2)
		lb, err := mb.Acquire(c, AcquireRequest{Attrs: attrs("node-b", 2), Network: contractNet})
		if err != nil {
			t.Fatal(err)
		}
		if lb.Subnet == la.Subnet {
			t.Fatalf("node-b got node-a's subnet %s", lb.Subnet)
		}
		ev := event("node-b's lease", lb.Subnet)
		if ev.Type != Added || ev.Lease.Attrs != attrs("node-b", 2) {
			t.Fatalf("event %v %+v", ev.Type, ev.Lease)
		}
		// A new VTEP MAC (the device was recreated with another VNI, say) is a
		// changed lease on the same subnet.
		moved := attrs("node-b", 2)
		moved.VtepMAC = "0e:00:00:00:01:02"
		if l, err := mb.Acquire(c, AcquireRequest{Attrs: moved, Network: contractNet, Hint: lb.Subnet}); err != nil || l.Subnet != lb.Subnet {
			t.Fatalf("re-acquire with a new MAC: %v %v", l.Subnet, err)
		}
		ev = event("node-b's changed lease", lb.Subnet)
		if ev.Type != Added || ev.Lease.VtepMAC != moved.VtepMAC {
			t.Fatalf("event %v %+v; want the new MAC %s", ev.Type, ev.Lease, moved.VtepMAC)
		}
		b.remove(t, "node-b")
		ev = event("node-b's lease removed", lb.Subnet)
		if ev.Type != Removed {
			t.Fatalf("event %v %+v; want removed", ev.Type, ev.Lease)
		}
	})

	t.Run("renew returns nil when its context ends", func(t *testing.T) {
		rctx, cancel := context.WithCancel(c)
		errc := make(chan error, 1)
		go func() { errc <- ma.Renew(rctx, la) }()
		cancel()
		select {
		case err := <-errc:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Fatal(err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Renew did not return within 30s of its context ending")
		}
	})

	stop()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Watch did not return within 30s of its context ending")
	}
}

// A node whose podCIDR is not one of the network's subnets is refused, naming
// the flags that must agree.
func TestKubeAcquireRefusesForeignPodCIDR(t *testing.T) {
	c := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}, Spec: corev1.NodeSpec{PodCIDR: "10.99.1.0/24"}})
	m, err := NewKube(KubeOptions{Client: c, NodeName: "node-a", Network: contractNet})
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Acquire(ctx(t), AcquireRequest{Attrs: attrs("node-a", 1), Network: contractNet})
	if err == nil || !contains(err.Error(), "10.99.1.0/24", "--cluster-cidr", "spec.networking.podCIDR") {
		t.Fatalf("got %v", err)
	}
}

// Without a podCIDR the wait ends at its deadline with a message naming what
// allocates it.
func TestKubeAcquireWaitsForPodCIDR(t *testing.T) {
	c := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}})
	m, err := NewKube(KubeOptions{Client: c, NodeName: "node-a", Network: contractNet, NodeWait: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Acquire(ctx(t), AcquireRequest{Attrs: attrs("node-a", 1), Network: contractNet})
	if err == nil || !contains(err.Error(), "no spec.podCIDR", "--allocate-node-cidrs=true") {
		t.Fatalf("got %v", err)
	}
}

func contains(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// A watch that starts behind etcd's compaction gets a compaction error; the
// manager answers with a new snapshot that also holds what it missed.
func TestEtcdWatchResyncsAfterCompaction(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	c := ctx(t)
	nc := contractNet
	m, err := NewEtcd(EtcdOptions{Endpoints: []string{srv.Endpoint}, Network: &nc})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	reg := New(cli, "")
	var once sync.Once
	m.beforeWatch = func() {
		once.Do(func() {
			// Changes the first snapshot does not hold, then compaction past it.
			for i, n := range []string{"missed", "gone"} {
				if _, err := reg.Acquire(c, AcquireRequest{Attrs: attrs(n, 70+i), Network: nc, Hint: netip.MustParsePrefix(fmt.Sprintf("10.244.%d.0/24", 210+i))}); err != nil {
					t.Error(err)
				}
			}
			if _, err := reg.Release(c, "gone"); err != nil {
				t.Error(err)
			}
			resp, err := cli.Get(c, "x")
			if err == nil {
				_, err = cli.Compact(c, resp.Header.Revision)
			}
			if err != nil {
				t.Error(err)
			}
		})
	}
	wctx, stop := context.WithCancel(c)
	defer stop()
	ch := make(chan Update, 4)
	go func() { _ = m.Watch(wctx, ch) }()
	var got []Update
	for len(got) < 2 {
		select {
		case u := <-ch:
			got = append(got, u)
		case <-time.After(30 * time.Second):
			t.Fatalf("updates so far %+v; want a snapshot after the compaction within 30s", got)
		}
	}
	if got[0].Snapshot == nil || len(got[0].Snapshot.Leases) != 0 {
		t.Fatalf("first update %+v", got[0])
	}
	u := got[1]
	if u.Snapshot == nil || !strings.HasPrefix(u.Reason, "watch compacted at revision") {
		t.Fatalf("second update %+v; want a snapshot after the compaction", u)
	}
	if len(u.Snapshot.Leases) != 1 || u.Snapshot.Leases[0].Node != "missed" {
		t.Fatalf("leases after the resync: %+v", u.Snapshot.Leases)
	}
}
