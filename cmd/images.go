package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/containerd/containerd/v2/client"
	"github.com/spf13/cobra"

	"github.com/kubeforge/kubeforge/bootstrap/host/local"
	"github.com/kubeforge/kubeforge/components/containerd"
	"github.com/kubeforge/kubeforge/components/images"
)

func init() { register(newImagesCmd) }

type imagesFlags struct {
	address, snapshotter, output string
}

func newImagesCmd() *cobra.Command {
	var f imagesFlags
	c := &cobra.Command{
		Use:   "images",
		Short: "Import and list container images in this node's containerd (no registry needed)",
		Long: `Manage the images of this node's containerd in the k8s.io namespace, the one
the kubelet uses. Pods can run an imported image with imagePullPolicy: Never (or
IfNotPresent), so a cluster without registry access can still run workloads.`,
	}
	pf := c.PersistentFlags()
	pf.StringVar(&f.address, "address", containerd.Socket, "containerd API socket")
	pf.StringVar(&f.snapshotter, "snapshotter", "", "Snapshotter to unpack into (default: the one kubeforge configures on this host)")
	c.AddCommand(&cobra.Command{
		Use:   "import FILE...",
		Short: "Import OCI image-layout or docker-save tarballs",
		Example: `  kubeforge images import myapp.tar
  kubeforge images import /opt/kubeforge/bundle/images/*.tar`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runImagesImport(cmd, f, args) },
	})
	list := &cobra.Command{
		Use:   "list",
		Short: "List the images in the k8s.io namespace",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return runImagesList(cmd, f) },
	}
	list.Flags().StringVarP(&f.output, "output", "o", "table", "Output format: table or json")
	c.AddCommand(list)
	return c
}

// imagesClient connects to this machine's containerd and settles the snapshotter.
func imagesClient(ctx context.Context, f imagesFlags) (*imagesConn, error) {
	h := local.New(local.Options{})
	c, snap, err := containerd.ConnectForImages(ctx, h, f.address, f.snapshotter)
	if err != nil {
		h.Close()
		return nil, err
	}
	if _, err := containerd.CheckHealth(ctx, c, snap); err != nil {
		c.Close()
		h.Close()
		return nil, fmt.Errorf("%w (is containerd running? kubeforge join/init starts it)", err)
	}
	return &imagesConn{c: c, h: h, snapshotter: snap}, nil
}

func runImagesImport(cmd *cobra.Command, f imagesFlags, files []string) error {
	ctx := cmd.Context()
	conn, err := imagesClient(ctx, f)
	if err != nil {
		return err
	}
	defer conn.Close()
	for _, file := range files {
		fh, err := os.Open(file)
		if err != nil {
			return err
		}
		imgs, err := images.Import(ctx, conn.c, fh, conn.snapshotter)
		fh.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		for _, i := range imgs {
			fmt.Fprintf(cmd.OutOrStdout(), "imported %s (%s, unpacked into %s)\n", i.Name, i.Digest, conn.snapshotter)
		}
	}
	return nil
}

func runImagesList(cmd *cobra.Command, f imagesFlags) error {
	ctx := cmd.Context()
	conn, err := imagesClient(ctx, f)
	if err != nil {
		return err
	}
	defer conn.Close()
	list, err := images.List(ctx, conn.c, conn.snapshotter)
	if err != nil {
		return err
	}
	switch f.output {
	case "json":
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	case "table", "":
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "IMAGE\tDIGEST\tSIZE\tUNPACKED")
		for _, i := range list {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%v\n", i.Name, i.Digest, i.Size, i.Unpacked)
		}
		return tw.Flush()
	}
	return fmt.Errorf("--output %q: want table or json", f.output)
}

type imagesConn struct {
	c           *client.Client
	h           *local.Host
	snapshotter string
}

func (c *imagesConn) Close() {
	c.c.Close()
	c.h.Close()
}
