package overlay

import (
	"context"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/components/overlay/internal/etcdtest"
	"github.com/kubeforge/kubeforge/components/overlay/subnet"
)

// TestForgetNode: the gone node's lease is deleted, every other node's stays.
func TestForgetNode(t *testing.T) {
	srv := etcdtest.Start(t)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	putLease(t, cli, "10.244.1.0/24", "node01", "192.0.2.1", "0a:00:00:00:00:01")
	putLease(t, cli, "10.244.2.0/24", "node02", "192.0.2.2", "0a:00:00:00:00:02")
	putLease(t, cli, "10.244.3.0/24", "node03", "192.0.2.3", "0a:00:00:00:00:03")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := ForgetNode(ctx, config.OverlayBackendEtcd, cli, "", "node02")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !strings.Contains(got[0], "10.244.2.0/24") || !strings.Contains(got[0], "192.0.2.2") {
		t.Errorf("ForgetNode reported %q", got)
	}
	snap, err := subnet.New(cli, "").List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, l := range snap.Leases {
		left = append(left, l.Node)
	}
	if strings.Join(left, ",") != "node01,node03" {
		t.Errorf("leases left: %v, want node01,node03", left)
	}
	// With the kube backend the Node carries the subnet: nothing to do here.
	if got, err := ForgetNode(ctx, config.OverlayBackendKube, nil, "", "node01"); err != nil || len(got) != 0 {
		t.Errorf("kube backend: %q, %v", got, err)
	}
	// A node with no lease (a second run) is nothing to do, not an error.
	if got, err := ForgetNode(ctx, config.OverlayBackendEtcd, cli, "", "node02"); err != nil || len(got) != 0 {
		t.Errorf("second run: %q, %v", got, err)
	}
}
