package controlplane

import (
	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/components/component"
	"github.com/kubeforge/kubeforge/components/install"
)

// Footprint: the three daemons and kubectl (operators administer the cluster
// from a control-plane host, where admin.conf is). Their files live in the
// operator's --cert-dir and --kubeconfig-dir, which reset handles as a whole
// (see components/cleanup removeOwnDir).
var Footprint = component.Footprint{
	Name:     "control-plane",
	Roles:    []config.Role{config.RoleControlPlane},
	Binaries: []string{install.KubeAPIServer, install.KubeControllerManager, install.KubeScheduler, install.Kubectl},
	Units:    []string{APIServer + ".service", ControllerManager + ".service", Scheduler + ".service"},
}
