package clusterinfo

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubeforge/kubeforge/bootstrap/config"
)

// TestJoinedHosts: a host that joined without being in the hosts table is
// recorded once, as a worker; names and addresses the table (or an earlier
// entry) holds are never recorded or changed; the download merges the record
// into the hosts table; forget removes exactly one entry.
func TestJoinedHosts(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientset(testNode("node03"), testNode("node04"), testNode("Node_04"), testNode(config.Default().Spec.Hosts[1].Name))
	cfg := config.Default()
	if _, err := UploadConfig(ctx, c, cfg); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 3, 17, 0, 0, 0, time.UTC)
	listed := cfg.Spec.Hosts[1]

	if ok, err := RecordJoinedHost(ctx, c, cfg, "node03", "192.168.161.160", uid("node03"), now); err != nil || !ok {
		t.Fatalf("record node03: %v %v", ok, err)
	}
	if ok, err := RecordJoinedHost(ctx, c, cfg, "node03", "192.168.161.199", uid("node03"), now); err != nil || ok {
		t.Errorf("a second record of node03 (another address) must change nothing: %v %v", ok, err)
	}
	if ok, err := RecordJoinedHost(ctx, c, cfg, listed.Name, "192.168.161.198", uid(listed.Name), now); err != nil || ok {
		t.Errorf("a listed host must not be recorded: %v %v", ok, err)
	}
	for _, tc := range []struct{ name, addr string }{
		{"node04", listed.Address},    // a listed host's address
		{"node04", "192.168.161.160"}, // node03's
		{"Node_04", "192.168.161.161"},
		{"node04", "not-an-ip"},
	} {
		t.Run(tc.name+" at "+tc.addr, func(t *testing.T) {
			if ok, err := RecordJoinedHost(ctx, c, cfg, tc.name, tc.addr, uid(tc.name), now); !errors.Is(err, ErrJoinedConflict) || ok {
				t.Errorf("record %s at %s: %v %v, want ErrJoinedConflict", tc.name, tc.addr, ok, err)
			}
		})
	}
	if ok, err := RecordJoinedHost(ctx, c, cfg, "node04", "192.168.161.161", uid("node04"), now); err != nil || !ok {
		t.Fatalf("record node04: %v %v", ok, err)
	}

	got, err := DownloadConfig(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	n := len(cfg.Spec.Hosts)
	if len(got.Spec.Hosts) != n+2 || got.Spec.Hosts[n].Name != "node03" || got.Spec.Hosts[n].Address != "192.168.161.160" ||
		!got.Spec.Hosts[n].HasRole(config.RoleWorker) || got.Spec.Hosts[n+1].Name != "node04" {
		t.Errorf("merged hosts %+v", got.Spec.Hosts)
	}
	if len(cfg.Spec.Hosts) != n {
		t.Error("the merge changed the caller's configuration")
	}

	// An entry someone wrote for a listed name is ignored by the merge: the
	// operator's table wins.
	cm, _ := c.CoreV1().ConfigMaps("kube-system").Get(ctx, JoinedHostsConfigMapName, metav1.GetOptions{})
	cm.Data[listed.Name] = `{"address":"192.168.161.250","roles":["control-plane"]}`
	cm.Data["bad"] = `not json`
	if _, err := c.CoreV1().ConfigMaps("kube-system").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, _ = DownloadConfig(ctx, c)
	if h, _ := got.Host(listed.Name); h.Address != listed.Address || len(got.Spec.Hosts) != n+2 {
		t.Errorf("a recorded entry overrode the table: %+v", got.Spec.Hosts)
	}

	if ok, err := ForgetJoinedHost(ctx, c, listed.Name); err != nil || !ok {
		t.Fatalf("forget the injected entry: %v %v", ok, err)
	}
	if ok, err := ForgetJoinedHost(ctx, c, "node03"); err != nil || !ok {
		t.Fatalf("forget node03: %v %v", ok, err)
	}
	if ok, err := ForgetJoinedHost(ctx, c, "node03"); err != nil || ok {
		t.Errorf("forget node03 again: %v %v", ok, err)
	}
	hosts, _ := JoinedHosts(ctx, c)
	if len(hosts) != 1 || hosts[0].Name != "node04" {
		t.Errorf("after forget: %+v", hosts)
	}
	// A rerun of upload-config keeps the record.
	if _, err := UploadConfig(ctx, c, cfg); err != nil {
		t.Fatal(err)
	}
	if hosts, _ := JoinedHosts(ctx, c); len(hosts) != 1 {
		t.Errorf("upload-config rerun changed the record: %+v", hosts)
	}
}

func testNode(name string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, UID: uid(name)}}
}

func uid(name string) types.UID { return types.UID("uid-" + name) }

// TestRecordJoinedHostOnlyForALiveNode: the record is written only while the
// Node it is for exists with the UID the caller saw. `kubeforge node remove`
// deletes the Node, then drops the entry; an approver whose informer has not
// seen the deletion yet must not write the entry back.
func TestRecordJoinedHostOnlyForALiveNode(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientset(testNode("node03"))
	cfg := config.Default()
	if _, err := UploadConfig(ctx, c, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureJoinedHosts(ctx, c); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if ok, err := RecordJoinedHost(ctx, c, cfg, "node03", "192.168.161.160", "uid-of-an-earlier-node03", now); err != nil || ok {
		t.Errorf("a Node of the same name but another UID: recorded %v, %v", ok, err)
	}
	if ok, err := RecordJoinedHost(ctx, c, cfg, "node04", "192.168.161.161", uid("node04"), now); err != nil || ok {
		t.Errorf("a Node that does not exist (any more): recorded %v, %v", ok, err)
	}
	if hosts, _ := JoinedHosts(ctx, c); len(hosts) != 0 {
		t.Errorf("record %+v, want it empty", hosts)
	}
	if ok, err := RecordJoinedHost(ctx, c, cfg, "node03", "192.168.161.160", uid("node03"), now); err != nil || !ok {
		t.Errorf("the live node03: recorded %v, %v", ok, err)
	}
}

// TestRecordJoinedControlPlane: a control-plane host the table does not list
// is recorded with its roles, once; a worker entry of the same name and
// address becomes a control-plane one; a listed host, a taken address and roles
// without control-plane are not recorded; the download merges it as a
// control-plane host.
func TestRecordJoinedControlPlane(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientset(testNode("master03"), testNode("node05"))
	cfg := config.Default()
	if _, err := UploadConfig(ctx, c, cfg); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 4, 15, 0, 0, 0, time.UTC)
	cp := []config.Role{config.RoleControlPlane}
	if ok, err := RecordJoinedControlPlane(ctx, c, cfg, "master03", "192.168.161.149", cp, now); err != nil || !ok {
		t.Fatalf("record master03: %v %v", ok, err)
	}
	if ok, err := RecordJoinedControlPlane(ctx, c, cfg, "master03", "192.168.161.149", cp, now); err != nil || ok {
		t.Errorf("recording it again: %v %v", ok, err)
	}
	if ok, err := RecordJoinedHost(ctx, c, cfg, "master03", "192.168.161.149", uid("master03"), now); err != nil || ok {
		t.Errorf("the approver recorded master03 as a worker: %v %v", ok, err)
	}
	if ok, err := RecordJoinedControlPlane(ctx, c, cfg, cfg.Spec.Hosts[0].Name, "192.168.161.148", cp, now); err != nil || ok {
		t.Errorf("a listed host was recorded: %v %v", ok, err)
	}
	for _, tc := range []struct {
		name, addr string
		roles      []config.Role
	}{
		{"master04", cfg.Spec.Hosts[1].Address, cp},
		{"master04", "192.168.161.149", cp}, // master03's
		{"master03", "192.168.161.147", cp}, // master03 elsewhere
		{"master04", "192.168.161.147", []config.Role{config.RoleWorker}},
	} {
		t.Run(tc.name+" at "+tc.addr, func(t *testing.T) {
			if ok, err := RecordJoinedControlPlane(ctx, c, cfg, tc.name, tc.addr, tc.roles, now); !errors.Is(err, ErrJoinedConflict) || ok {
				t.Errorf("record %s at %s %v: %v %v, want ErrJoinedConflict", tc.name, tc.addr, tc.roles, ok, err)
			}
		})
	}
	// A worker the approver recorded, joined again as a control-plane host.
	if ok, err := RecordJoinedHost(ctx, c, cfg, "node05", "192.168.161.165", uid("node05"), now); err != nil || !ok {
		t.Fatal(ok, err)
	}
	both := []config.Role{config.RoleControlPlane, config.RoleEtcd}
	if ok, err := RecordJoinedControlPlane(ctx, c, cfg, "node05", "192.168.161.165", both, now); err != nil || !ok {
		t.Fatalf("promote node05: %v %v", ok, err)
	}
	got, err := DownloadConfig(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]config.Role{"master03": cp, "node05": both} {
		h, ok := got.Host(name)
		if !ok || !slices.Equal(h.Roles, want) {
			t.Errorf("%s merged as %+v, want roles %v", name, h, want)
		}
	}
}
