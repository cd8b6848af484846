package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubeforge/kubeforge/bootstrap/host/local"
	"github.com/kubeforge/kubeforge/components/noderuntime"
	"github.com/kubeforge/kubeforge/components/overlay"
	"github.com/kubeforge/kubeforge/phases/resetphases"
)

func init() { register(newOverlayCmd) }

func newOverlayCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "overlay",
		Short: "Inspect and remove the VXLAN overlay agent of this node (it runs inside " + noderuntime.UnitName + ")",
	}
	c.AddCommand(newOverlayStatusCmd(), newOverlayResetCmd())
	return c
}

func newOverlayStatusCmd() *cobra.Command {
	return newDaemonStatusCmd("Show this node's subnet lease and the peers the agent has programmed",
		"The agent's health address (host:port)", overlay.DefaultHealth, overlay.FetchStatus)
}

// newDaemonStatusCmd is a status command that asks a daemon on this host for
// its /status at a loopback address and prints it as text or JSON.
func newDaemonStatusCmd[T interface{ WriteText(io.Writer) error }](short, addrHelp, defaultAddr string, fetch func(context.Context, string) (T, error)) *cobra.Command {
	var addr, output string
	c := &cobra.Command{
		Use:   "status",
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("-o %q: want text or json", output)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			st, err := fetch(ctx, addr)
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			return st.WriteText(cmd.OutOrStdout())
		},
	}
	c.Flags().StringVar(&addr, "address", defaultAddr, addrHelp)
	c.Flags().StringVarP(&output, "output", "o", "text", "Output format: text or json")
	return c
}

func newOverlayResetCmd() *cobra.Command {
	var (
		nodeName string
		force    bool
	)
	c := &cobra.Command{
		Use:   "reset",
		Short: "Remove the overlay from this node and release its subnet lease",
		Long: `Stop and remove ` + overlay.UnitName + `, with the etcd backend release this
node's subnet lease in etcd (peers drop its routes at once; with the kube backend
deleting the Node does that), delete the VXLAN device with its routes,
neighbour and FDB entries, the cni0 bridge, the iptables chains, the CNI config,
subnet.env and the agent's config. The same as ` + "`kubeforge reset phase overlay`" + `.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			h := local.New(local.Options{})
			defer h.Close()
			name := nodeName
			if name == "" {
				name = h.Name()
			}
			if !force {
				if err := resetphases.Confirm(cmd.InOrStdin(), cmd.OutOrStdout(), name); err != nil {
					return err
				}
			}
			logger := log.New(cmd.OutOrStdout(), "[overlay] ", 0)
			res, err := overlay.Reset(cmd.Context(), overlay.ResetOptions{Host: h, NodeName: name, Logf: logger.Printf})
			if err != nil {
				return err
			}
			logger.Printf("%s", res.Detail)
			return nil
		},
	}
	c.Flags().StringVar(&nodeName, "node-name", "", "Node whose lease to release when "+overlay.ConfigPath+" is gone (default: the hostname)")
	c.Flags().BoolVarP(&force, "force", "f", false, "Do not ask for confirmation")
	return c
}
