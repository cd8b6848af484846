package cmd

import (
	"github.com/spf13/pflag"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/bootstrap/host/ssh"
)

// sshFlags are how commands that act on hosts of the config reach them.
type sshFlags struct {
	identity, knownHosts string
	acceptNewHostKey     bool
}

// open dials node over SSH: its address and login from the config, the key from
// --identity, else the host's ssh.keyPath, else ssh-agent; the host key must be
// in --known-hosts.
func (f sshFlags) open(node config.Host) (host.Host, error) {
	cfg := ssh.Config{
		Name:              node.Name,
		Address:           node.Address,
		Port:              node.SSHPort(),
		User:              node.SSHUser(),
		KnownHostsPath:    f.knownHosts,
		AcceptNewHostKeys: f.acceptNewHostKey,
	}
	key := f.identity
	if key == "" && node.SSH != nil {
		key = node.SSH.KeyPath
	}
	if key != "" {
		cfg.KeyFiles = []string{key}
	} else {
		cfg.UseAgent = true
	}
	return ssh.New(cfg)
}

func (f *sshFlags) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.identity, "identity", "", "SSH private key file (default: each host's ssh.keyPath in the config, else ssh-agent)")
	fs.StringVar(&f.knownHosts, "known-hosts", "", "known_hosts file that must hold every host's key (default ~/.ssh/known_hosts)")
	fs.BoolVar(&f.acceptNewHostKey, "ssh-accept-new-host-key", false, "Record an unknown host key instead of refusing it (never a changed one)")
}
