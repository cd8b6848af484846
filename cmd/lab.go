package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/kubeforge/kubeforge/bootstrap/lab"
)

func init() { register(newLabCmd) }

func newLabCmd() *cobra.Command {
	var dir string
	c := &cobra.Command{
		Use:   "lab",
		Short: "Run a multi-host test lab of real systemd hosts on this machine",
		Long: `A lab is several systemd-nspawn machines on this one Linux box, each with systemd as
PID 1, its own network namespace and address on a private bridge, and sshd with a
verified host key. Try a full multi-host cluster without VMs or Docker.

The lab directory is --dir, else $` + lab.DirEnv + `, else ` + lab.DefaultDir + `.`,
	}
	c.PersistentFlags().StringVar(&dir, "dir", "", "lab state directory")
	resolved := func() string { return lab.ResolveDir(dir) }
	c.AddCommand(newLabUpCmd(resolved), newLabDownCmd(resolved), newLabStatusCmd(resolved), newLabSSHCmd(resolved), newLabExecCmd(resolved))
	return c
}

// defaultBundleDir is the newest bundle the build script cached, if any.
func defaultBundleDir() string {
	home, _ := os.UserHomeDir()
	d := filepath.Join(home, ".cache", "kubeforge", "bundles", "v1.34.4-v3.6.16")
	if _, err := os.Stat(filepath.Join(d, "manifest.json")); err == nil {
		return d
	}
	return ""
}

func newLabUpCmd(dir func() string) *cobra.Command {
	var o lab.Options
	c := &cobra.Command{
		Use:   "up",
		Short: "Create or resume the lab hosts (idempotent)",
		Example: `  kubeforge lab up
  kubeforge lab up --hosts master01,node01,node02,node03 --bundle ~/.cache/kubeforge/bundles/v1.34.4-v3.6.16`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Dir = dir()
			o.Log = cmd.OutOrStdout()
			if o.BundleDir == "" {
				o.BundleDir = defaultBundleDir()
			}
			s, err := lab.Up(o)
			if err != nil {
				return err
			}
			return printLabStatus(cmd, s, "text")
		},
	}
	c.Flags().StringSliceVar(&o.Hosts, "hosts", lab.DefaultHosts, "host names")
	c.Flags().StringVar(&o.Subnet, "subnet", "", "lab subnet, an IPv4 /24 (default "+lab.DefaultSubnet+")")
	c.Flags().StringVar(&o.BundleDir, "bundle", "", "bundle directory exposed read-only at /opt/kubeforge/bundle in every host (default: the cached build, if any)")
	return c
}

func newLabDownCmd(dir func() string) *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Power off and remove every lab host, leaving nothing behind",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return lab.Down(dir(), cmd.OutOrStdout())
		},
	}
}

func newLabStatusCmd(dir func() string) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "status",
		Short: "Show the lab hosts: address, systemd state, memory",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := lab.LoadState(dir())
			if err != nil {
				return err
			}
			return printLabStatus(cmd, s, output)
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return c
}

func printLabStatus(cmd *cobra.Command, s *lab.State, output string) error {
	st := lab.Status(s)
	switch output {
	case "json":
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Subnet string           `json:"subnet"`
			Paths  lab.Paths        `json:"paths"`
			Hosts  []lab.HostStatus `json:"hosts"`
		}{s.Subnet, s.Paths(), st})
	case "text", "":
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "HOST\tADDRESS\tSYSTEMD\tMEMORY")
		for _, h := range st {
			mem := "-"
			if h.Running {
				mem = fmt.Sprintf("%.1f MiB", float64(h.MemoryBytes)/(1<<20))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", h.Name, h.Address, h.System, mem)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "ssh: ssh -F %s <host>\n", s.Paths().SSHConfig)
		return nil
	default:
		return fmt.Errorf("--output %q: want text or json", output)
	}
}

func newLabSSHCmd(dir func() string) *cobra.Command {
	return &cobra.Command{
		Use:   "ssh HOST [command...]",
		Short: "ssh into a lab host (strict host-key checking against the lab's known_hosts)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := lab.LoadState(dir())
			if err != nil {
				return err
			}
			if _, err := s.Host(args[0]); err != nil {
				return err
			}
			argv := append([]string{"-F", s.Paths().SSHConfig}, args[0])
			if len(args) > 1 {
				argv = append(argv, "--", strings.Join(args[1:], " "))
			} else {
				argv = append(argv, "-t")
			}
			return passthrough(exec.Command("ssh", argv...))
		},
	}
}

func newLabExecCmd(dir func() string) *cobra.Command {
	return &cobra.Command{
		Use:   "exec HOST command...",
		Short: "Run a command inside a lab host by entering its namespaces (works when ssh does not)",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := lab.LoadState(dir())
			if err != nil {
				return err
			}
			c, err := s.ExecCommand(context.Background(), args[0], args[1:]...)
			if err != nil {
				return err
			}
			return passthrough(c)
		},
	}
}

// passthrough runs c attached to our terminal and exits with its exit code.
func passthrough(c *exec.Cmd) error {
	c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := c.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		os.Exit(ee.ExitCode())
	}
	return err
}
