package cmd

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/kubeforge/kubeforge/bootstrap/config"
)

func init() { register(newConfigCmd) }

func newConfigCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "config",
		Short: "Print and check the cluster configuration file",
	}
	c.AddCommand(newConfigPrintDefaultsCmd(), newConfigValidateCmd())
	return c
}

func newConfigPrintDefaultsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "print-defaults",
		Short: "Print a complete default configuration (the seed topology) as YAML",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, err := config.Marshal(config.Default())
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
}

func newConfigValidateCmd() *cobra.Command {
	var file string
	c := &cobra.Command{
		Use:   "validate -f FILE",
		Short: "Check a configuration file: print warnings, fail listing every error",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return validateConfigFile(cmd.OutOrStdout(), file)
		},
	}
	c.Flags().StringVarP(&file, "file", "f", "", "cluster configuration file")
	_ = c.MarkFlagRequired("file")
	return c
}

// validateConfigFile prints the warnings before the errors so an operator sees
// everything from one run.
func validateConfigFile(out io.Writer, file string) error {
	c, err := config.LoadUnvalidated(file)
	if err != nil {
		return err
	}
	warnings, err := c.Validate()
	for _, w := range warnings {
		fmt.Fprintf(out, "[WARNING] %s\n", w)
	}
	if err != nil {
		var ie *config.InvalidError
		if errors.As(err, &ie) {
			ie.File = file
		}
		return err
	}
	fmt.Fprintf(out, "%s: valid (cluster %q, %d hosts)\n", file, c.Metadata.Name, len(c.Spec.Hosts))
	return nil
}
