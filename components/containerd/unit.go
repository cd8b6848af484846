package containerd

// Unit is containerd.service, upstream's unit minus what systemd 219 (CentOS 7)
// does not know: no TasksMax= (228) and the start limit spelled
// StartLimitInterval= in [Service], the only place 219 reads it.
//
// Why each setting:
//   - Type=notify: containerd tells systemd when its API serves, so units
//     ordered after it (kubelet) start against a working runtime.
//   - Delegate=yes: containerd and its shims create cgroups below their own;
//     systemd must not reorganise them.
//   - KillMode=process: stopping or restarting containerd must not kill the
//     shims and with them every running container. Pods survive a runtime
//     upgrade, as they do with upstream's unit.
//   - OOMScoreAdjust=-999: under memory pressure the kernel kills workloads, not
//     the runtime that supervises them.
//   - LimitNOFILE/NPROC/CORE: containers inherit the runtime's limits.
//   - ExecStartPre=-modprobe overlay: the overlayfs snapshotter needs the module;
//     "-" because a kernel with it built in has nothing to load.
func Unit(binDir string) []byte {
	return []byte(`# containerd, written by kubeforge. Settings: ` + ConfigPath + `
[Unit]
Description=containerd container runtime
Documentation=https://containerd.io
After=network.target local-fs.target

[Service]
ExecStartPre=-/sbin/modprobe overlay
ExecStart=` + binDir + `/containerd --config ` + ConfigPath + `
Type=notify
Delegate=yes
KillMode=process
Restart=always
RestartSec=5
StartLimitInterval=0
LimitNPROC=infinity
LimitCORE=infinity
LimitNOFILE=1048576
OOMScoreAdjust=-999

[Install]
WantedBy=multi-user.target
`)
}
