// Package inventory lists every component's Footprint, so that the questions
// "which binaries does this host need" and "what does reset remove" have one
// answer each, assembled from what the components declare about themselves.
// The overlay and the etcd backup timer own their reset entirely (their phases
// remove what they wrote) and are not listed; the node runtime (the overlay
// agent, the CSR approver, the API load balancer in one unit) is, so reset
// also takes away a unit its own phase missed.
package inventory

import (
	"slices"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/components/component"
	"github.com/kubeforge/kubeforge/components/containerd"
	"github.com/kubeforge/kubeforge/components/controlplane"
	"github.com/kubeforge/kubeforge/components/etcd"
	"github.com/kubeforge/kubeforge/components/kubelet"
	"github.com/kubeforge/kubeforge/components/kubeproxy"
	"github.com/kubeforge/kubeforge/components/noderuntime"
)

// All are the components in install order; reset removes them in reverse.
func All() []component.Footprint {
	return []component.Footprint{
		etcd.Footprint,
		controlplane.Footprint,
		containerd.Footprint,
		kubelet.Footprint,
		kubeproxy.Footprint,
		noderuntime.Footprint,
	}
}

// ForRoles lists the binaries the install-binaries phase puts on a host with
// these roles, in a stable order: those of every component the host runs,
// except components that install their own with their configuration (etcd,
// containerd). Every host kubeforge sets up is a node, so the kubelet and
// kube-proxy are always among them.
func ForRoles(roles []config.Role) []string {
	var out []string
	for _, f := range All() {
		if f.OwnInstall || !f.RunsOn(roles) {
			continue
		}
		for _, b := range f.Binaries {
			if !slices.Contains(out, b) {
				out = append(out, b)
			}
		}
	}
	return out
}

// union collects one field of every footprint, in reset order, without
// duplicates.
func union(field func(component.Footprint) []string) []string {
	var out []string
	all := All()
	slices.Reverse(all)
	for _, f := range all {
		for _, v := range field(f) {
			if !slices.Contains(out, v) {
				out = append(out, v)
			}
		}
	}
	return out
}

// Paths are the files and directories reset removes.
func Paths() []string { return union(func(f component.Footprint) []string { return f.Paths }) }

// EmptyDirs are the directories reset removes once empty.
func EmptyDirs() []string { return union(func(f component.Footprint) []string { return f.EmptyDirs }) }

// MountRoots are the trees reset unmounts below.
func MountRoots() []string {
	return union(func(f component.Footprint) []string { return f.MountRoots })
}

// ChainPrefixes are the iptables chain prefixes reset sweeps.
func ChainPrefixes() []string {
	return union(func(f component.Footprint) []string { return f.ChainPrefixes })
}

// Units are the unit files the components write.
func Units() []string { return union(func(f component.Footprint) []string { return f.Units }) }
