package kubelet

import (
	"strings"

	"github.com/kubeforge/kubeforge/components/component"
)

// UnitOptions are the per-node inputs of kubelet.service.
type UnitOptions struct {
	BinDir   string
	NodeName string
	NodeIP   string
	// Kubeconfig is kubelet.conf; BootstrapKubeconfig the token kubeconfig the
	// kubelet uses while kubelet.conf does not exist yet.
	Kubeconfig, BootstrapKubeconfig string
	// Taints are registered with the Node (key=value:Effect or key:Effect).
	// Only at registration: the NodeRestriction admission plugin lets a
	// kubelet set taints on its own new Node, never labels of the
	// node-role.kubernetes.io family (those the control plane phase sets).
	Taints []string
	// ExtraArgs override kubeforge's flags (spec.components.kubelet.extraArgs).
	ExtraArgs map[string]string
}

// Unit is kubelet.service. The flags are the few settings that are not part of
// the KubeletConfiguration (identity and bootstrap); no secret is among them:
// the bootstrap token lives in a 0600 kubeconfig.
//
// Requires/After containerd: the kubelet is useless without its runtime, and a
// stopped containerd should stop it too rather than leave it failing every pod
// sync. Restart=always and StartLimitInterval=0 (in [Service] for systemd 219)
// keep it coming back, as kubeadm's packaged unit does.
func Unit(o UnitOptions) ([]byte, error) {
	args := map[string]string{
		"config":               ConfigPath,
		"kubeconfig":           o.Kubeconfig,
		"bootstrap-kubeconfig": o.BootstrapKubeconfig,
		"hostname-override":    o.NodeName,
		"node-ip":              o.NodeIP,
	}
	if len(o.Taints) > 0 {
		args["register-with-taints"] = strings.Join(o.Taints, ",")
	}
	for k, v := range o.ExtraArgs {
		args[k] = v
	}
	flags, err := component.FlagArgs("kubelet", args)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	b.WriteString("# kubelet, written by kubeforge. Settings: " + ConfigPath + "\n")
	b.WriteString(`[Unit]
Description=Kubernetes node agent (kubelet)
Documentation=https://kubernetes.io/docs/reference/command-line-tools-reference/kubelet/
Wants=network-online.target
After=network-online.target containerd.service
Requires=containerd.service

[Service]
` + component.ExecStart(o.BinDir+"/kubelet", flags) + `
Restart=always
RestartSec=5
StartLimitInterval=0

[Install]
WantedBy=multi-user.target
`)
	return []byte(b.String()), nil
}
