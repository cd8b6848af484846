package workflow

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// BindToCommand makes cmd the entry point of the workflow: it adds --skip-phases to
// cmd, appends the phase list to its long help and generates the
// `<cmd> phase <name> [<sub>]` subcommands, each group with an `all` subcommand.
// cmd's RunE should call Run. Call it once, after all phases are appended.
//
// It panics when the phase tree is invalid or a phase inherits a flag cmd does not
// have: both are mistakes in the workflow definition, found by any test that builds
// the command.
func (r *Runner) BindToCommand(cmd *cobra.Command) {
	roots, err := buildTree(r.Phases)
	if err != nil {
		panic(fmt.Sprintf("workflow: binding %q: %v", cmd.Name(), err))
	}
	r.cmd = cmd
	if len(roots) == 0 {
		return
	}

	phaseCmd := &cobra.Command{
		Use:   "phase",
		Short: fmt.Sprintf("Run a single phase of the %s workflow", cmd.Name()),
		// NoArgs makes a mistyped phase name an error instead of a silent help page.
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return c.Help() },
	}
	cmd.AddCommand(phaseCmd)

	cmds := map[*node]*cobra.Command{}
	var groupAlls []*cobra.Command
	walk(roots, func(n *node) {
		if n.hidden() {
			return
		}
		c := &cobra.Command{
			Use:     n.Name,
			Aliases: n.Aliases,
			Short:   n.Short,
			Long:    n.Long,
			Example: n.Example,
		}
		if len(n.children) == 0 {
			c.Args = cmd.Args
			c.RunE = r.runPhase(n.path)
			addPhaseFlags(cmd, c, n)
		} else {
			// A group on its own only explains itself; `all` runs it, as in kubeadm,
			// so that running a whole group is always a deliberate choice.
			c.Args = cobra.NoArgs
			c.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
			all := &cobra.Command{
				Use:   "all",
				Short: fmt.Sprintf("Run all %s phases", n.path),
				Args:  cmd.Args,
				RunE:  r.runPhase(n.path),
			}
			walk([]*node{n}, func(d *node) { addPhaseFlags(cmd, all, d) })
			c.AddCommand(all)
			groupAlls = append(groupAlls, all)
		}
		if n.parent == nil {
			phaseCmd.AddCommand(c)
		} else {
			cmds[n.parent].AddCommand(c)
		}
		cmds[n] = c
	})

	if cmd.Long == "" {
		cmd.Long = cmd.Short
	}
	cmd.Long += "\n\n" + r.Help(cmd.Name()) + "\n"

	cmd.Flags().StringSliceVar(&r.Options.SkipPhases, "skip-phases", nil,
		"Phases to skip, with everything nested in them (e.g. certs/apiserver,overlay)")
	skip := cmd.Flags().Lookup("skip-phases")
	for _, all := range groupAlls {
		all.Flags().AddFlag(skip)
	}
}

// runPhase is the RunE of a generated subcommand: the same Run, filtered to one phase.
func (r *Runner) runPhase(path string) func(*cobra.Command, []string) error {
	return func(c *cobra.Command, args []string) error {
		r.cmd = c
		r.Options.FilterPhases = []string{path}
		return r.Run(args)
	}
}

// addPhaseFlags gives the generated subcommand c the flags phase n asks for.
func addPhaseFlags(parent, c *cobra.Command, n *node) {
	for _, name := range n.InheritFlags {
		if f := parent.Flags().Lookup(name); f != nil {
			addFlag(c, f, n)
			continue
		}
		if parent.PersistentFlags().Lookup(name) != nil {
			continue // cobra passes persistent flags down by itself
		}
		panic(fmt.Sprintf("workflow: phase %q inherits flag --%s, which command %q does not define", n.path, name, parent.Name()))
	}
	if n.LocalFlags != nil {
		n.LocalFlags.VisitAll(func(f *pflag.Flag) { addFlag(c, f, n) })
	}
}

func addFlag(c *cobra.Command, f *pflag.Flag, n *node) {
	switch have := c.Flags().Lookup(f.Name); {
	case have == nil:
		c.Flags().AddFlag(f)
	case have != f:
		panic(fmt.Sprintf("workflow: phase %q defines flag --%s, which %q already has with another meaning", n.path, f.Name, c.CommandPath()))
	}
}
