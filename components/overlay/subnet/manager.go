package subnet

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
)

// Manager is where the overlay's leases live, as flannel's subnet.Manager: the
// agent acquires its node's subnet, keeps it, and follows everyone's, without
// knowing the store. Two implementations:
//
//   - Kube (the default): kube-controller-manager allocates Node.spec.podCIDR;
//     each agent publishes its VTEP MAC and underlay address as annotations on
//     its own Node with the node's own credential, and follows Nodes through an
//     informer. No node holds any etcd credential.
//   - Etcd (spec.networking.overlay.backend: etcd): leases under
//     /kubeforge/network in the cluster's etcd, allocated by the agents
//     themselves; only hosts with the etcd role may run it.
type Manager interface {
	// Name is the backend's name for messages: "kube" or "etcd".
	Name() string
	// Network returns the cluster's network configuration.
	Network(ctx context.Context) (Config, error)
	// Acquire returns this node's subnet, with req's attributes published for
	// every peer to see. It waits (within its own deadline) for what it needs.
	Acquire(ctx context.Context, req AcquireRequest) (Lease, error)
	// Renew keeps l until ctx ends (then it returns nil). An error wrapping
	// ErrLeaseLost means l is gone and must be acquired again.
	Renew(ctx context.Context, l Lease) error
	// Watch sends the leases to ch until ctx ends: first an Update with a
	// Snapshot, then Updates with Events; a new Snapshot whenever events may
	// have been missed (a broken or compacted watch). It returns ctx's error
	// or one that cannot be retried.
	Watch(ctx context.Context, ch chan<- Update) error
	// Close releases the manager's connections.
	Close() error
}

// ErrLeaseLost is wrapped by Renew's error when the node's lease is gone.
var ErrLeaseLost = errors.New("lease lost")

// EventType says what happened to a lease.
type EventType int

const (
	// Added is a new lease or a changed one.
	Added EventType = iota
	// Removed is a lease that is gone; only Lease.Subnet (and what was known of
	// the old lease) is set.
	Removed
)

func (t EventType) String() string {
	if t == Removed {
		return "removed"
	}
	return "added"
}

// Event is one lease change.
type Event struct {
	Type  EventType
	Lease Lease
}

// Update is what Watch sends.
type Update struct {
	// Snapshot, when set, is every lease now: anything not in it is gone.
	Snapshot *Snapshot
	// Reason says why a snapshot was taken ("start", "watch compacted at ...").
	Reason string
	// Events are changes since the previous Update.
	Events []Event
	// Revision of the store after this update (etcd revision, or the
	// resourceVersion of the Nodes).
	Revision int64
	// Source is the server the watch is on, when known.
	Source string
}

// Holder describes what holds l, for status output: the etcd lease or the Node.
func (l Lease) Holder() string {
	if l.holder != "" {
		return l.holder
	}
	if l.LeaseID != 0 {
		return "etcd lease " + strconv.FormatInt(int64(l.LeaseID), 16)
	}
	return ""
}

// validFor says whether l is one of n's node subnets.
func validFor(l netip.Prefix, n Config) bool {
	return l.IsValid() && l.Addr().Is4() && l.Bits() == n.SubnetLen && n.Prefix().Contains(l.Addr()) && l.Masked() == l
}
