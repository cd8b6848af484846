package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/bootstrap/host/dryrun"
	"github.com/kubeforge/kubeforge/bootstrap/host/local"
	"github.com/kubeforge/kubeforge/preflight"
)

func init() { register(newPreflightCmd) }

type preflightFlags struct {
	configPath, nodeName, target string
	fix, dryRun                  bool
	firewall, selinux, output    string
	ignore                       []string
	identity, knownHosts         string
	acceptNewHostKey             bool
}

func newPreflightCmd() *cobra.Command {
	var f preflightFlags
	c := &cobra.Command{
		Use:   "preflight",
		Short: "Check that a host is ready to become a node, and fix what can be fixed",
		Long: `Run the pre-flight checks init and join run first: root, OS, CPU/memory,
required binaries, firewall, SELinux, swap, kernel modules, sysctls, hostname,
/etc/hosts, time sync (chrony), free ports and leftover state.

With --fix, kubeforge applies the fix of every failed check (stop the firewall or
open the needed ports, turn off swap, write sysctl and module files, set the
hostname, write the managed /etc/hosts block, configure chrony ...), runs the
checks again and shows before and after. With --dry-run it prints the plan and
changes nothing.

By default the checks run on this machine, found in the config by --node-name or
its hostname/addresses. --host NAME checks that host of the config over SSH
instead (its ssh settings from the config; host keys must be in --known-hosts).`,
		Example: `  kubeforge preflight --config cluster.yaml
  kubeforge preflight --config cluster.yaml --fix --dry-run
  kubeforge preflight --config cluster.yaml --fix --firewall=open-ports
  kubeforge preflight --config cluster.yaml --host node01 --identity ~/.ssh/id_ed25519 --fix
  kubeforge preflight --config cluster.yaml --ignore-preflight-errors=Mem,NumCPU -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runPreflight(cmd, f) },
	}
	fs := c.Flags()
	fs.StringVar(&f.configPath, "config", "", "Path to the kubeforge cluster configuration file")
	fs.StringVar(&f.nodeName, "node-name", "", "Name of this machine in the config (default: found by hostname or address)")
	fs.StringVar(&f.target, "host", "", "Check this host of the config over SSH instead of this machine")
	fs.BoolVar(&f.fix, "fix", false, "Apply the fixes of failed checks, then check again")
	fs.BoolVar(&f.dryRun, "dry-run", false, "With --fix: print the planned changes and change nothing")
	fs.StringVar(&f.firewall, "firewall", "", "disable|open-ports: what --fix does to an active firewall (default: spec.security.firewall)")
	fs.StringVar(&f.selinux, "selinux", "", "disabled|permissive|enforcing-keep (default: spec.security.selinux)")
	fs.StringSliceVar(&f.ignore, "ignore-preflight-errors", nil, "Checks whose errors are only warnings, e.g. Swap,Mem; 'all' ignores every error")
	fs.StringVarP(&f.output, "output", "o", "text", "Output format: text or json")
	fs.StringVar(&f.identity, "identity", "", "With --host: private key file (default: the host's ssh.keyPath in the config, else ssh-agent)")
	fs.StringVar(&f.knownHosts, "known-hosts", "", "With --host: known_hosts file that must hold the host's key (default ~/.ssh/known_hosts)")
	fs.BoolVar(&f.acceptNewHostKey, "ssh-accept-new-host-key", false, "With --host: record an unknown host key instead of refusing it (never a changed one)")
	_ = c.MarkFlagRequired("config")
	return c
}

func runPreflight(cmd *cobra.Command, f preflightFlags) error {
	if f.output != "text" && f.output != "json" {
		return fmt.Errorf("--output %q: must be text or json", f.output)
	}
	if f.target != "" && f.nodeName != "" {
		return errors.New("--host and --node-name both name the host to check: give one")
	}
	if f.target == "" && (f.identity != "" || f.knownHosts != "" || f.acceptNewHostKey) {
		return errors.New("--identity, --known-hosts and --ssh-accept-new-host-key only apply with --host")
	}
	cluster, err := config.Load(f.configPath)
	if err != nil {
		return err
	}
	node, h, err := openPreflightHost(cluster, f)
	if err != nil {
		return err
	}
	var dry *dryrun.Host
	if f.dryRun {
		dry = dryrun.New(h, dryrun.Options{})
		h = dry
	}
	defer h.Close()

	out := cmd.OutOrStdout()
	progress := out
	if f.output == "json" {
		progress = cmd.ErrOrStderr() // stdout carries only the JSON document
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, runErr := preflight.Run(ctx, h, cluster, node, preflight.Options{
		Fix:          f.fix,
		DryRun:       f.dryRun,
		IgnoreErrors: f.ignore,
		Firewall:     config.FirewallMode(f.firewall),
		SELinux:      config.SELinuxMode(f.selinux),
		Log:          progress,
	})
	var failed *preflight.FailedError
	if runErr != nil && !errors.As(runErr, &failed) {
		return runErr
	}
	if f.output == "json" {
		err = rep.WriteJSON(out)
	} else {
		err = rep.WriteText(out)
	}
	if err != nil {
		return err
	}
	if dry != nil {
		if err := printPlan(progress, dry); err != nil {
			return err
		}
	}
	return runErr
}

func printPlan(w io.Writer, d *dryrun.Host) error {
	fmt.Fprintln(w, "[dry-run] Planned changes (nothing was changed):")
	return d.PrintPlan(w)
}

// openPreflightHost finds the node in the config and opens the host to check:
// this machine, or with --host that host over SSH.
func openPreflightHost(cluster *config.Cluster, f preflightFlags) (*config.Host, host.Host, error) {
	if f.target == "" {
		hostname, addrs, err := config.LocalIdentity()
		if err != nil && f.nodeName == "" {
			return nil, nil, err
		}
		node, err := cluster.ResolveNode(f.nodeName, hostname, addrs)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w; a host that is not in the hosts table gets the same checks and fixes from the join command: add `--fix` to it (and `--ignore-preflight-errors=NAME,...` for checks to ignore)", f.configPath, err)
		}
		return node, local.New(local.Options{Name: node.Name}), nil
	}
	node, ok := cluster.Host(f.target)
	if !ok {
		return nil, nil, fmt.Errorf("--host %q is not a host of cluster %q (hosts: %v)", f.target, cluster.Metadata.Name, cluster.HostNames())
	}
	h, err := sshFlags{identity: f.identity, knownHosts: f.knownHosts, acceptNewHostKey: f.acceptNewHostKey}.open(*node)
	if err != nil {
		return nil, nil, err
	}
	return node, h, nil
}
