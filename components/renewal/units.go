// Package renewal finishes what `kubeforge certs renew` starts on a running
// cluster: after the certificates and kubeconfigs are re-signed, the daemons that
// read them still hold the old ones in memory. This package works out which
// systemd units read which renewed file, restarts those that run on the host one
// at a time in a fixed safe order, and waits for each to be healthy before the
// next, so a bad certificate stops the sequence at the first daemon that refuses
// it instead of taking the whole control plane down at once.
//
// The order is etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
// then the node units (kubelet, kube-proxy, the overlay agent): each daemon is
// restarted only once everything it talks to has loaded its new certificate.
// The control-plane units are re-ensured with controlplane.Ensure rather than
// restarted behind its back, so the digest of inputs in their unit files stays
// true and a later `kubeforge init` finds them unchanged.
package renewal

import (
	"slices"

	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/controlplane"
	"github.com/kubeforge/kubeforge/components/etcd"
	"github.com/kubeforge/kubeforge/components/kubelet"
	"github.com/kubeforge/kubeforge/components/kubeproxy"
	"github.com/kubeforge/kubeforge/components/overlay"
)

// Units that read renewable files.
const (
	UnitEtcd              = etcd.UnitName
	UnitAPIServer         = controlplane.APIServer + ".service"
	UnitControllerManager = controlplane.ControllerManager + ".service"
	UnitScheduler         = controlplane.Scheduler + ".service"
	UnitKubelet           = kubelet.UnitName
	UnitKubeProxy         = kubeproxy.UnitName
	UnitOverlay           = overlay.UnitName
)

// Order is the restart order. etcd comes first because the apiserver's storage
// is useless without it; the apiserver before the controller-manager and the
// scheduler, which are its clients; the node units last, also clients of the
// apiserver (and the overlay agent of etcd).
var Order = []string{UnitEtcd, UnitAPIServer, UnitControllerManager, UnitScheduler, UnitKubelet, UnitKubeProxy, UnitOverlay}

// readers maps every renewable certificate and kubeconfig to the units that load
// it at start. Names absent here (admin.conf, super-admin.conf, the etcd
// health-check client) are read only by people and by kubeforge itself, per
// request, so nothing needs a restart for them.
var readers = map[string][]string{
	certs.CertAPIServer:               {UnitAPIServer},
	certs.CertAPIServerKubeletClient:  {UnitAPIServer},
	certs.CertAPIServerEtcdClient:     {UnitAPIServer},
	certs.CertFrontProxyClient:        {UnitAPIServer},
	certs.CertEtcdServer:              {UnitEtcd},
	certs.CertEtcdPeer:                {UnitEtcd},
	certs.CertEtcdOverlayClient:       {UnitOverlay},
	certs.KubeconfigControllerManager: {UnitControllerManager},
	certs.KubeconfigScheduler:         {UnitScheduler},
	certs.KubeconfigKubelet:           {UnitKubelet},
	certs.KubeconfigKubeProxy:         {UnitKubeProxy},
}

// UnitsReading returns the units that read the named certificate or kubeconfig
// (a name of certs.RenewableNames), in Order; none for admin.conf and the like.
func UnitsReading(name string) []string { return slices.Clone(readers[name]) }

// Affected returns the units reading any of names, each once, in Order.
func Affected(names []string) []string {
	var out []string
	for _, u := range Order {
		for _, n := range names {
			if slices.Contains(readers[n], u) {
				out = append(out, u)
				break
			}
		}
	}
	return out
}

// Renewed lists the names a renewal replaced (or, in a dry run, would replace):
// the ones not skipped.
func Renewed(res *certs.RenewResult) []string {
	if res == nil {
		return nil
	}
	var out []string
	for _, c := range res.Certificates {
		if c.Skipped == "" {
			out = append(out, c.Name)
		}
	}
	return out
}

// needsConfig reports whether restarting unit needs the cluster configuration:
// the control-plane units are rebuilt from it, and etcd's health is asked of
// the member at its configured address.
func needsConfig(unit string) bool {
	switch unit {
	case UnitEtcd, UnitAPIServer, UnitControllerManager, UnitScheduler:
		return true
	}
	return false
}

// controlPlaneName maps a control-plane unit to its component name ("" for others).
func controlPlaneName(unit string) string {
	for _, n := range controlplane.Names {
		if n+".service" == unit {
			return n
		}
	}
	return ""
}
