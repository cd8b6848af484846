package csrapprover_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/bootstraptoken"
	"github.com/kubeforge/kubeforge/components/clusterinfo"
	"github.com/kubeforge/kubeforge/components/controlplane/loopbacktest"
	"github.com/kubeforge/kubeforge/components/kubeclient"
	"github.com/kubeforge/kubeforge/components/kubelet/csrapprover"
)

// TestJoinedHostsRecord, against a real apiserver with its RBAC: the approver,
// with its own narrow identity, records a Node the hosts table does not list
// and forgets it when the Node is deleted; a node's identity and a bootstrap
// token (the attacker on a joined or joining host) can read the record but
// cannot add, change or remove any entry, nor touch kubeforge-config; the
// approver's identity cannot change kubeforge-config either.
func TestJoinedHostsRecord(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	lc := loopbacktest.Run(t, ctx, nil)
	super, err := os.ReadFile(filepath.Join(lc.KcDir, certs.KubeconfigSuperAdmin))
	if err != nil {
		t.Fatal(err)
	}
	restCfg, err := clientcmd.RESTConfigFromKubeConfig(super)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		t.Fatal(err)
	}
	as := func(user string, groups ...string) kubernetes.Interface {
		c := rest.CopyConfig(restCfg)
		c.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: append(groups, "system:authenticated")}
		cli, err := kubernetes.NewForConfig(c)
		if err != nil {
			t.Fatal(err)
		}
		return cli
	}
	cfg := config.Default()
	if _, err := clusterinfo.UploadConfig(ctx, admin, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := csrapprover.EnsureRBAC(ctx, admin); err != nil {
		t.Fatal(err)
	}
	if _, err := bootstraptoken.EnsureNodeBootstrapRBAC(ctx, admin); err != nil {
		t.Fatal(err)
	}

	approverCfg := rest.CopyConfig(restCfg)
	approverCfg.Impersonate = rest.ImpersonationConfig{UserName: csrapprover.User, Groups: []string{"system:authenticated"}}
	approverCli, err := kubeclient.NewForConfig(approverCfg, kubeclient.Options{Timeout: kubeclient.NoTimeout})
	if err != nil {
		t.Fatal(err)
	}
	a := &csrapprover.Approver{Client: approverCli, Logf: t.Logf}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx, time.Hour) }()
	defer func() {
		stop()
		<-done
	}()

	// node03 registers as itself (NodeRestriction lets a node create its own
	// Node) and reports its address.
	node03 := as("system:node:node03", "system:nodes")
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node03"}}
	if n, err = node03.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.161.160"}}
	if _, err := node03.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	recorded := func(name string, want bool) {
		t.Helper()
		var hosts []config.Host
		err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			hosts, err = clusterinfo.JoinedHosts(ctx, admin)
			if err != nil {
				return false, nil
			}
			found := false
			for _, h := range hosts {
				found = found || h.Name == name
			}
			return found == want, nil
		})
		if err != nil {
			t.Fatalf("waiting for %s recorded=%v in kube-system/%s: %v (record %+v)", name, want, clusterinfo.JoinedHostsConfigMapName, err, hosts)
		}
	}
	recorded("node03", true)
	merged, err := clusterinfo.DownloadConfig(ctx, node03)
	if err != nil {
		t.Fatalf("node03 reads the configuration: %v", err)
	}
	if h, ok := merged.Host("node03"); !ok || h.Address != "192.168.161.160" || !h.HasRole(config.RoleWorker) {
		t.Errorf("node03 in the merged configuration: %+v %v", h, ok)
	}

	// The attackers: a joined node and a joining host's bootstrap token.
	patch := []byte(`{"data":{"node01":"{\"address\":\"192.168.161.66\",\"roles\":[\"worker\"]}","node03":"{\"address\":\"10.0.0.1\",\"roles\":[\"control-plane\"]}"}}`)
	for who, c := range map[string]kubernetes.Interface{
		"node identity":   node03,
		"bootstrap token": as("system:bootstrap:abcdef", bootstraptoken.NodeGroup, "system:bootstrappers"),
		"approver":        approverCli,
	} {
		for _, name := range []string{clusterinfo.JoinedHostsConfigMapName, clusterinfo.ConfigMapName} {
			if who == "approver" && name == clusterinfo.JoinedHostsConfigMapName {
				continue // its job
			}
			cm, err := admin.CoreV1().ConfigMaps("kube-system").Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			cm.Data["node01"] = `{"address":"192.168.161.66","roles":["worker"]}`
			if _, err := c.CoreV1().ConfigMaps("kube-system").Update(ctx, cm, metav1.UpdateOptions{}); !apierrors.IsForbidden(err) {
				t.Errorf("%s: update of %s: %v, want 403", who, name, err)
			}
			if _, err := c.CoreV1().ConfigMaps("kube-system").Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); !apierrors.IsForbidden(err) {
				t.Errorf("%s: patch of %s: %v, want 403", who, name, err)
			}
			if err := c.CoreV1().ConfigMaps("kube-system").Delete(ctx, name, metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
				t.Errorf("%s: delete of %s: %v, want 403", who, name, err)
			}
		}
	}
	// Nothing changed: node03's entry is as the approver wrote it.
	hosts, err := clusterinfo.JoinedHosts(ctx, admin)
	if err != nil || len(hosts) != 1 || hosts[0].Name != "node03" || hosts[0].Address != "192.168.161.160" {
		t.Errorf("record after the attempts: %+v %v", hosts, err)
	}

	// The Node goes (node remove, or the approver itself on reset's request):
	// so does its entry.
	if err := admin.CoreV1().Nodes().Delete(ctx, "node03", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	recorded("node03", false)
}
