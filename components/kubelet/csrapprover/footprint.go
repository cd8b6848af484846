package csrapprover

import (
	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/components/component"
)

// Footprint: the approver is kubeforge itself run as a unit on control-plane
// hosts; its kubeconfig is in the --kubeconfig-dir.
var Footprint = component.Footprint{
	Name:  "csr-approver",
	Roles: []config.Role{config.RoleControlPlane},
	Units: []string{UnitName},
}
