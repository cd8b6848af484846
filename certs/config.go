package certs

import (
	"fmt"
	"strconv"

	"github.com/kubeforge/kubeforge/bootstrap/config"
)

// SpecFromConfig maps the cluster configuration onto the PKI spec for the host
// nodeName. The host must exist; a worker gets a spec too (its kubelet.conf and
// kube-proxy.conf are issued from it on the CA host).
func SpecFromConfig(c *config.Cluster, nodeName string) (Spec, error) {
	h, ok := c.Host(nodeName)
	if !ok {
		return Spec{}, fmt.Errorf("host %q is not in the cluster configuration (hosts: %v)", nodeName, c.HostNames())
	}
	port := DefaultAPIServerPort
	if v, ok := c.Spec.Components.APIServer.ExtraArgs["secure-port"]; ok {
		p, err := strconv.Atoi(v)
		if err != nil {
			return Spec{}, fmt.Errorf("spec.components.apiServer.extraArgs.secure-port %q is not a port", v)
		}
		port = p
	}
	s := Spec{
		ClusterName:          c.Metadata.Name,
		NodeName:             h.Name,
		AdvertiseAddress:     h.Address,
		APIServerPort:        port,
		ControlPlaneEndpoint: c.Spec.ControlPlaneEndpoint,
		ServiceCIDR:          c.Spec.Networking.ServiceCIDR,
		DNSDomain:            c.Spec.Networking.DNSDomain,
		ExtraAPIServerSANs:   c.Spec.Certificates.CertSANs,
		KeyAlgorithm:         KeyAlgorithm(c.Spec.Certificates.KeyAlgorithm),
		CAValidity:           c.Spec.Certificates.CAValidity.Duration(),
		Validity:             c.Spec.Certificates.Validity.Duration(),
	}
	for _, e := range c.HostsWithRole(config.RoleEtcd) {
		s.EtcdHosts = append(s.EtcdHosts, Host{Name: e.Name, Address: e.Address})
	}
	for _, cp := range c.HostsWithRole(config.RoleControlPlane) {
		s.ControlPlaneHosts = append(s.ControlPlaneHosts, Host{Name: cp.Name, Address: cp.Address})
	}
	if len(s.EtcdHosts) == 0 {
		// No etcd role anywhere would make WithDefaults treat this node as the
		// only member; the configuration never means that.
		return Spec{}, fmt.Errorf("the cluster configuration has no host with role %q", config.RoleEtcd)
	}
	s = s.WithDefaults()
	if err := s.Validate(); err != nil {
		return Spec{}, err
	}
	return s, nil
}
