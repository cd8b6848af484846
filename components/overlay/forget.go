package overlay

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kubeforge/kubeforge/bootstrap/config"
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
// This is the one place `node remove` touches the overlay. With the kube
// backend (the default) the subnet is the Node's podCIDR and the VTEP its
// annotations: deleting the Node is all it takes (each agent's informer sees
// the deletion), so there is nothing to do here and cli is not used.
func ForgetNode(ctx context.Context, backend config.OverlayBackend, cli *clientv3.Client, prefix, node string) ([]string, error) {
	if backend != config.OverlayBackendEtcd {
		return nil, nil
	}
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
