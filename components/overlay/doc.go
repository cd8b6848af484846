// Package overlay is kubeforge's pod network: a flannel-style VXLAN agent that runs
// on every node as kubeforge-overlay.service (`kubeforge overlay run`), plus the
// install and reset steps the init/join/reset phases call.
//
// What the agent does, in order:
//
//  1. Connects to etcd with its own client certificate (etcd/overlay-client.crt,
//     CN kubeforge-overlay), stores the network configuration under
//     /kubeforge/network/config unless one is there (and refuses to run with a
//     different one), and acquires the node's subnet lease (package subnet):
//     the subnet it already holds under its node name, else the one subnet.env
//     remembers, else a random free one, claimed with a compare-and-create.
//  2. Creates kubeforge.<VNI> (package vxlan), turns TX checksum offload off as
//     configured, turns on IPv4 forwarding, installs its iptables chains (package
//     iptables), and writes /run/kubeforge/subnet.env and
//     /etc/cni/net.d/10-kubeforge.conflist (package cni).
//  3. Programs every other lease and follows a watch on /kubeforge/network/subnets/:
//     a put adds or updates a peer, a delete (including an expired lease)
//     removes it. A full resync (list + Sync, which also removes what no lease
//     backs) follows a compacted or broken watch, a Watch stream that clientv3
//     re-established on another member, and a VXLAN device deleted under it.
//  4. Keeps its etcd lease alive. On SIGTERM it stops without releasing it: the
//     key outlives the agent for the lease's TTL (24 h), so a restart finds the
//     same subnet and no peer changes anything. `kubeforge overlay reset` (and the
//     reset phase) releases it explicitly.
//
// /healthz, /metrics (Prometheus text) and /status (JSON, what `kubeforge overlay
// status` prints) are served on 127.0.0.1:9473.
package overlay
