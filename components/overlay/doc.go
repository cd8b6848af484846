// Package overlay is kubeforge's pod network: a flannel-style VXLAN agent that runs
// on every node as kubeforge-overlay.service (`kubeforge overlay run`), plus the
// install and reset steps the init/join/reset phases call.
//
// The agent's subnets come from a subnet.Manager, chosen by the config's backend
// (spec.networking.overlay.backend):
//
//   - kube (the default): kube-controller-manager allocates each Node's
//     spec.podCIDR; the agent, acting as its node with the kubelet's kubeconfig
//     (NodeRestriction lets it change its own Node only), publishes its VTEP MAC
//     and underlay address as the annotations overlay.kubeforge.io/vtep-mac and
//     overlay.kubeforge.io/public-ip, and follows every Node through a shared
//     informer. No node holds an etcd credential. Deleting a Node removes its
//     routes, FDB and neighbour entries on every peer.
//   - etcd: leases under /kubeforge/network in etcd, with the agent's own client
//     certificate (etcd/overlay-client.crt, CN kubeforge-overlay); only for
//     clusters whose every host has the etcd role.
//
// What the agent does, in order:
//
//  1. Gets the network configuration and acquires the node's subnet (kube:
//     waits up to 90 s for the Node and its podCIDR; etcd: the subnet it holds,
//     else the one subnet.env remembers, else a random free one, claimed with a
//     compare-and-create).
//  2. Creates kubeforge.<VNI> (package vxlan), turns TX checksum offload off as
//     configured, turns on IPv4 forwarding, installs its iptables chains (package
//     iptables), and writes /run/kubeforge/subnet.env and
//     /etc/cni/net.d/10-kubeforge.conflist (package cni) once the subnet is known.
//  3. Programs every other subnet from the manager's first snapshot, then runs
//     one handler per event source: lease events (added/changed/removed) from
//     the manager's watch, a new snapshot (a full Sync, which also removes what
//     no lease backs) whenever the manager may have missed events, the renewal
//     of its own lease (re-acquired when lost), and the VXLAN device deleted
//     under it (rebuilt and resynced).
//  4. On SIGTERM it stops without releasing its subnet, so a restart finds the
//     same one and no peer changes anything. `kubeforge overlay reset` (and the
//     reset phase) releases an etcd lease explicitly.
//
// /healthz, /metrics (Prometheus text) and /status (JSON, what `kubeforge overlay
// status` prints) are served on 127.0.0.1:9473.
package overlay
