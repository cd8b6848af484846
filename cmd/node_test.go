package cmd

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/components/clusterinfo"
)

// fakeEtcd records what node remove asked of etcd.
type fakeEtcd struct {
	members map[string]uint64
	refuse  error // CheckMember's verdict
	leases  map[string][]string
	calls   []string
}

func (f *fakeEtcd) CheckMember(_ io.Writer, name string, force bool) (uint64, error) {
	f.calls = append(f.calls, "check "+name)
	if f.refuse != nil && !force {
		return 0, f.refuse
	}
	return f.members[name], nil
}

func (f *fakeEtcd) RemoveMember(_ context.Context, _ io.Writer, id uint64) error {
	f.calls = append(f.calls, fmt.Sprintf("remove-member %x", id))
	for n, m := range f.members {
		if m == id {
			delete(f.members, n)
		}
	}
	return nil
}

func (f *fakeEtcd) ForgetOverlay(_ context.Context, name string) ([]string, error) {
	f.calls = append(f.calls, "forget-overlay "+name)
	l := f.leases[name]
	delete(f.leases, name)
	return l, nil
}

func testNodeObj(name string, ready corev1.ConditionStatus) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name)},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready, LastHeartbeatTime: metav1.NewTime(time.Unix(1800000000, 0))}}}}
}

func TestNodeRemove(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientset(testNodeObj("node02", corev1.ConditionUnknown), testNodeObj("node03", corev1.ConditionUnknown),
		testNodeObj("node04", corev1.ConditionTrue))
	cfg := config.Default() // master01, node01, node02 (etcd members)
	if _, err := clusterinfo.UploadConfig(ctx, c, cfg); err != nil {
		t.Fatal(err)
	}
	for name, addr := range map[string]string{"node03": "192.168.161.160", "node04": "192.168.161.161"} {
		if _, err := clusterinfo.RecordJoinedHost(ctx, c, cfg, name, addr, types.UID("uid-"+name), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	e := &fakeEtcd{members: map[string]uint64{"master01": 0x1, "node01": 0x2, "node02": 0x3},
		leases: map[string][]string{"node02": {"overlay subnet 10.244.2.0/24"}, "node03": {"overlay subnet 10.244.3.0/24"}}}
	r := nodeRemoval{Kube: c, Etcd: e, Self: "master01"}
	nodeGone := func(name string) bool {
		_, err := c.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	}

	// A Ready node is refused before anything changes; --force removes it.
	var out bytes.Buffer
	if err := r.run(ctx, &out, "node04"); err == nil || !strings.Contains(err.Error(), "Ready") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("Ready node04: %v", err)
	}
	if nodeGone("node04") || len(e.calls) != 0 {
		t.Fatalf("a refused removal changed something: calls %v", e.calls)
	}
	// This host is refused too.
	if err := r.run(ctx, &out, "master01"); err == nil || !strings.Contains(err.Error(), "kubeforge reset") {
		t.Fatalf("self: %v", err)
	}

	// A dead worker that joined unlisted: lease, Node, record.
	out.Reset()
	if err := r.run(ctx, &out, "node03"); err != nil {
		t.Fatal(err)
	}
	if !nodeGone("node03") {
		t.Error("Node node03 is still there")
	}
	if hosts, _ := clusterinfo.JoinedHosts(ctx, c); len(hosts) != 1 || hosts[0].Name != "node04" {
		t.Errorf("record after removing node03: %+v", hosts)
	}
	for _, want := range []string{"released overlay subnet 10.244.3.0/24", "deleted Node node03", "removed node03 from kube-system/kubeforge-joined-hosts"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}

	// An etcd member whose removal etcd's check refuses: nothing changes.
	e.calls = nil
	e.refuse = fmt.Errorf("removal would break quorum")
	if err := r.run(ctx, &out, "node02"); err == nil || !strings.Contains(err.Error(), "quorum") {
		t.Fatalf("quorum: %v", err)
	}
	if nodeGone("node02") || e.members["node02"] == 0 || strings.Join(e.calls, ",") != "check node02" {
		t.Fatalf("a refused removal changed something: calls %v", e.calls)
	}
	// Allowed: member first, then the overlay, then the Node; and the
	// report says the host stays in the operator's hosts table.
	e.refuse, e.calls = nil, nil
	out.Reset()
	if err := r.run(ctx, &out, "node02"); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(e.calls, ","); got != "check node02,remove-member 3,forget-overlay node02" {
		t.Errorf("etcd steps %s", got)
	}
	if !nodeGone("node02") || !strings.Contains(out.String(), "node02 removed: etcd member node02 (3); overlay subnet 10.244.2.0/24; Node node02") ||
		!strings.Contains(out.String(), "still in the hosts table") {
		t.Errorf("node02 gone=%v, report:\n%s", nodeGone("node02"), out.String())
	}
	// Again: nothing left, not an error.
	out.Reset()
	if err := r.run(ctx, &out, "node02"); err != nil || !strings.Contains(out.String(), "nothing of node02 was left") {
		t.Errorf("rerun: %v\n%s", err, out.String())
	}
}

// TestNodeRemoveDeletesTheNodeBeforeItsEntry: the Node goes first, then its
// entry in the record (an approver acting on a stale view of the Node cannot
// write back an entry dropped before the Node was gone), and when the
// approver drops the entry of the deleted Node first, the report still says
// the entry is gone.
func TestNodeRemoveDeletesTheNodeBeforeItsEntry(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientset(testNodeObj("node04", corev1.ConditionUnknown))
	cfg := config.Default()
	if _, err := clusterinfo.UploadConfig(ctx, c, cfg); err != nil {
		t.Fatal(err)
	}
	if ok, err := clusterinfo.RecordJoinedHost(ctx, c, cfg, "node04", "192.168.161.161", types.UID("uid-node04"), time.Now()); err != nil || !ok {
		t.Fatalf("record node04: %v %v", ok, err)
	}
	var order []string
	c.PrependReactor("delete", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		// The approver sees the deletion and drops the entry at once (through
		// the tracker: the fake client is locked inside a reactor).
		obj, err := c.Tracker().Get(corev1.SchemeGroupVersion.WithResource("configmaps"), "kube-system", clusterinfo.JoinedHostsConfigMapName)
		if err != nil {
			t.Fatal(err)
		}
		cm := obj.(*corev1.ConfigMap).DeepCopy()
		if _, ok := cm.Data["node04"]; ok {
			order = append(order, "Node deleted while the entry is there")
		}
		delete(cm.Data, "node04")
		if err := c.Tracker().Update(corev1.SchemeGroupVersion.WithResource("configmaps"), cm, "kube-system"); err != nil {
			t.Fatal(err)
		}
		return false, nil, nil
	})
	var out bytes.Buffer
	r := nodeRemoval{Kube: c, Etcd: &fakeEtcd{}, Self: "master01"}
	if err := r.run(ctx, &out, "node04"); err != nil {
		t.Fatal(err)
	}
	if len(order) != 1 {
		t.Errorf("the entry was dropped before the Node was deleted")
	}
	if !strings.Contains(out.String(), "removed node04 from kube-system/kubeforge-joined-hosts") || !strings.Contains(out.String(), "deleted Node node04") {
		t.Errorf("report:\n%s", out.String())
	}
	if hosts, _ := clusterinfo.JoinedHosts(ctx, c); len(hosts) != 0 {
		t.Errorf("record %+v", hosts)
	}
}
