package controlplane

import (
	"fmt"
	"strings"
	"time"

	"github.com/kubeforge/kubeforge/components/component"
)

// DefaultStopTimeout is the units' TimeoutStopSec unless a component needs
// more (see Component.StopTimeout): how long systemd waits after SIGTERM before
// it kills the daemon.
const DefaultStopTimeout = 30 * time.Second

// documentation links per component, for `systemctl status`.
var docs = map[string]string{
	APIServer:         "https://kubernetes.io/docs/reference/command-line-tools-reference/kube-apiserver/",
	ControllerManager: "https://kubernetes.io/docs/reference/command-line-tools-reference/kube-controller-manager/",
	Scheduler:         "https://kubernetes.io/docs/reference/command-line-tools-reference/kube-scheduler/",
}

var descriptions = map[string]string{
	APIServer:         "Kubernetes API server",
	ControllerManager: "Kubernetes controller manager",
	Scheduler:         "Kubernetes scheduler",
}

// Unit renders the component's unit file. inputs is the digest of everything the
// daemon reads (see Ensure); it is part of the content so that a changed input
// changes the unit, and the unit's change is what triggers a restart.
//
// Why each setting:
//   - Type=notify for the apiserver: it signals readiness once it serves, so
//     "active" means ready and units ordered after it start against a working API.
//     TimeoutStartSec=0, because an apiserver waiting for etcd quorum after a power
//     cut must not be killed for being slow; Wait watches readiness instead.
//   - Restart=always with RestartSec=5s and StartLimitInterval=0 (in [Service],
//     where systemd 219 reads it): a control-plane daemon never stays down.
//   - TimeoutStopSec=30s (DefaultStopTimeout) rather than systemd's 90 s, so a
//     daemon that hangs cannot hold a shutdown or a reset for long. The
//     apiserver fits in it only because of its shutdown flags (see
//     APIServerComponent): with the upstream defaults its HTTP server waits up
//     to --request-timeout (60 s) for connections with open watches, which never
//     go idle, and systemd ends it with SIGKILL ("Failed with result 'timeout'").
//     Its TimeoutStopSec grows with an operator's --shutdown-delay-duration.
//   - After=etcd.service where the member runs on the same host, so a boot
//     starts the apiserver against a started member.
func (c Component) Unit(inputs string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s, written by kubeforge. Do not edit: set %s.extraArgs in the\n", c.Name, c.Field)
	fmt.Fprintf(&b, "# cluster configuration and run `kubeforge init phase control-plane` again.\n")
	fmt.Fprintf(&b, "# inputs %s\n", inputs)
	b.WriteString("[Unit]\n")
	fmt.Fprintf(&b, "Description=%s\n", descriptions[c.Name])
	if d := docs[c.Name]; d != "" {
		fmt.Fprintf(&b, "Documentation=%s\n", d)
	}
	after := append([]string{"network-online.target"}, c.After...)
	fmt.Fprintf(&b, "After=%s\n", strings.Join(after, " "))
	b.WriteString("Wants=network-online.target\n\n")

	b.WriteString("[Service]\n")
	if c.Notify {
		b.WriteString("Type=notify\nTimeoutStartSec=0\n")
	} else {
		b.WriteString("Type=simple\n")
	}
	b.WriteString(component.ExecStart(c.Binary, c.Args.Flags()) + "\n")
	stop := c.StopTimeout
	if stop <= 0 {
		stop = DefaultStopTimeout
	}
	fmt.Fprintf(&b, "Restart=always\nRestartSec=5s\nStartLimitInterval=0\nTimeoutStopSec=%ds\nLimitNOFILE=65536\n\n", int(stop.Seconds()))
	b.WriteString("[Install]\nWantedBy=multi-user.target\n")
	return []byte(b.String())
}
