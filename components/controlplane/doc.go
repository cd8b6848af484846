// Package controlplane runs kube-apiserver, kube-controller-manager and
// kube-scheduler as systemd units on a control-plane host, the way kubeadm runs
// them as static pods: the same flags, certificates and kubeconfigs, with the
// binaries from the bundle in /usr/local/bin.
//
// A Component is everything one daemon needs: its flags (generated from the
// cluster configuration, with spec.components.<name>.extraArgs merged over them),
// the configuration files kubeforge writes for it and its unit. Ensure brings the
// host to that state and restarts the daemon only when something it reads
// changed; Wait then polls the health endpoints.
//
// Three choices shape the files:
//
//   - Nothing secret is ever in argv or a unit file. Flags only name files: keys,
//     kubeconfigs, the encryption config. `ps` and `systemctl cat` show no
//     credential.
//   - A unit's header carries a digest of every input its daemon reads at start
//     (binary, certificates, keys, kubeconfigs, config files). When any of them
//     changes, the unit's content changes, so the next run restarts exactly the
//     daemons affected, even after an interrupted run, a `certs renew` or a new
//     bundle. The files kube-apiserver reloads by itself (its serving, front-proxy,
//     etcd-client and kubelet-client certificates) are left out: a new one there
//     needs no restart.
//   - Every directive loads on systemd 219 (CentOS 7): no StateDirectory=,
//     TasksMax=, StartLimitIntervalSec= or ExecCondition=.
//
// Security defaults, and why:
//
//   - Anonymous requests are authenticated only on /livez, /readyz and /healthz,
//     through an AuthenticationConfiguration (anonymous.conditions, stable in
//     1.34). --anonymous-auth=false would also make load balancer health checks
//     need credentials; --anonymous-auth=true plus RBAC leaves every other path
//     one bad ClusterRoleBinding away from public. The conditions make other
//     paths 401 whatever RBAC says. The kubeadm-compatible exception is
//     kube-public/cluster-info, which token discovery reads before it has
//     credentials and which only holds the CA certificate and the endpoint.
//   - Secrets are encrypted at rest with secretbox (XSalsa20-Poly1305), the
//     local provider upstream recommends over aescbc, under a 32-byte key
//     generated once into a 0600 file that is never rewritten afterwards (key
//     rotation is the operator's, by editing that file).
//   - Authorization Node,RBAC with the NodeRestriction admission plugin,
//     profiling off, an audit policy that records metadata for everything and
//     request bodies for writes except to Secrets, ConfigMaps and token reviews,
//     with size- and age-based rotation of the audit log.
package controlplane
