package overlay

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kubeforge/kubeforge/components/overlay/subnet"
)

// ForgetNode removes what the overlay keeps for node, a host that is gone
// (`kubeforge node remove`), so that every peer's agent drops its route, FDB
// and neighbour entries for it. With the etcd backend that is the node's
// subnet lease under prefix ("" means subnet.DefaultPrefix): the agents watch
// the leases and unprogram a deleted one at once, instead of keeping it until
// the lease's TTL (a day) runs out. cli must be allowed to delete the lease
// (etcd's administrator). It returns one line per thing removed.
//
// This is the one place `node remove` touches the overlay: a backend that
// keeps its state on the Node object has nothing to do here.
func ForgetNode(ctx context.Context, cli *clientv3.Client, prefix, node string) ([]string, error) {
	released, err := subnet.New(cli, prefix).Release(ctx, node)
	if err != nil {
		return nil, fmt.Errorf("releasing the overlay subnet of %s: %w", node, err)
	}
	var out []string
	for _, l := range released {
		out = append(out, fmt.Sprintf("overlay subnet %s (underlay %s, VTEP %s)", l.Subnet, l.PublicIP, l.VtepMAC))
	}
	return out, nil
}
