// Package etcd runs the cluster's etcd members as systemd units on the hosts, "the
// binary way": the etcd binary from the bundle in /usr/local/bin, one config file
// per member (/etc/etcd/etcd.conf.yml, 0600, read through --config-file) and
// etcd.service supervised by systemd.
//
// Everything a member needs is derived from the cluster configuration: its name
// and address, the other members, the production settings of spec.etcd and the
// certificates, which are issued from the etcd CA with the certs package. Mutual
// TLS is required on both ports and the etcd CA is the only trusted CA, so nothing
// but a holder of an etcd-CA certificate can read or write the cluster's state.
//
// Membership changes go through the etcd client API (go.etcd.io/etcd/client/v3),
// never through etcdctl:
//
//   - Init starts the first member of a new cluster (initial-cluster-state new).
//   - Join adds a host as a learner, starts it with initial-cluster-state existing,
//     waits until it has caught up and promotes it. A learner does not vote, so a
//     member that never comes up (its port is taken, its certificate is wrong)
//     cannot cost the cluster its quorum; the join then removes it again and the
//     cluster is exactly as it was.
//   - Bootstrap starts all members of a new cluster at once from a static
//     initial-cluster, for the SSH-driven path that reaches every host itself.
//   - Reset removes the host's member, refusing when that would break quorum.
//
// The membership logic (JoinMember, CheckRemoval) is independent of systemd: it
// drives a Runner, which the phases implement with host.Host and systemd and the
// integration test with plain processes on loopback.
package etcd
