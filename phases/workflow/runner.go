package workflow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// separator joins nested phase names into the path used by --skip-phases and logs.
const separator = "/"

// RunnerOptions select which phases a Run executes.
type RunnerOptions struct {
	// SkipPhases are phase paths ("certs", "certs/apiserver") not to run, together
	// with everything nested in them.
	SkipPhases []string
	// FilterPhases, when not empty, restricts the run to these phases and everything
	// nested in them. The generated phase subcommands set it.
	FilterPhases []string
}

// Status is how a phase ended in one run.
type Status string

const (
	StatusDone      Status = "done"       // ran and changed something
	StatusUnchanged Status = "unchanged"  // ran and found nothing to change
	StatusSkipped   Status = "skipped"    // excluded by --skip-phases (or all nested phases were)
	StatusNotNeeded Status = "not needed" // its RunIf said no
	StatusFailed    Status = "failed"
)

// PhaseTiming is the measurement of one phase of the last Run, in execution order.
// A group's Duration includes its nested phases.
type PhaseTiming struct {
	Name     string // slash-joined path, e.g. "certs/apiserver"
	Group    bool   // has nested phases
	Status   Status
	Duration time.Duration
}

// Runner executes a tree of phases.
type Runner struct {
	// Options is filled from --skip-phases and by the generated subcommands.
	Options RunnerOptions
	// Phases are the top-level phases, in execution order.
	Phases []Phase

	initData func(cmd *cobra.Command, args []string) (RunData, error)
	data     RunData
	cmd      *cobra.Command
	out      io.Writer
	timings  []PhaseTiming
	// now is swappable so tests can check timing bookkeeping without sleeping.
	now func() time.Time
}

// NewRunner returns an empty Runner.
func NewRunner() *Runner { return &Runner{now: time.Now} }

// AppendPhase adds a top-level phase after the ones already added.
func (r *Runner) AppendPhase(p Phase) { r.Phases = append(r.Phases, p) }

// SetDataInitializer sets the function that builds the run data. It is called once
// per Run, with the command being executed (nil when Run is called without a bound
// command) and its positional arguments.
func (r *Runner) SetDataInitializer(f func(cmd *cobra.Command, args []string) (RunData, error)) {
	r.initData = f
}

// SetOutput sets where progress goes when the run data brings no Logger. By default
// that is the bound command's output, or stdout.
func (r *Runner) SetOutput(w io.Writer) { r.out = w }

// InitData builds the run data if it has not been built yet and returns it, so a
// command can inspect it before or after Run.
func (r *Runner) InitData(args []string) (RunData, error) {
	if r.data == nil && r.initData != nil {
		d, err := r.initData(r.cmd, args)
		if err != nil {
			return nil, err
		}
		r.data = d
	}
	return r.data, nil
}

// Timings returns the measurements of the last Run.
func (r *Runner) Timings() []PhaseTiming {
	return append([]PhaseTiming(nil), r.timings...)
}

// PhaseNames lists every phase path in execution order; these are the names
// --skip-phases accepts.
func (r *Runner) PhaseNames() ([]string, error) {
	roots, err := buildTree(r.Phases)
	if err != nil {
		return nil, err
	}
	var names []string
	walk(roots, func(n *node) { names = append(names, n.path) })
	return names, nil
}

// Run executes the phases selected by Options, in order, stopping at the first
// failure. Run data that implements io.Closer is closed before Run returns.
func (r *Runner) Run(args []string) (err error) {
	roots, err := buildTree(r.Phases)
	if err != nil {
		return err
	}
	sel, err := r.selection(roots)
	if err != nil {
		return err
	}
	data, err := r.InitData(args)
	if err != nil {
		return err
	}
	defer func() {
		if c, ok := data.(io.Closer); ok {
			if cerr := c.Close(); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}
		// The data belonged to this run; a later Run builds its own.
		r.data = nil
	}()

	x := &execution{selection: sel, data: data, log: r.logger(data), ctx: r.context(data)}
	defer x.log.setPhase("")
	r.timings = nil
	for _, n := range roots {
		if _, err := r.runNode(n, x); err != nil {
			return err
		}
	}
	return nil
}

// Help describes the workflow for the bound command's long help.
func (r *Runner) Help(use string) string {
	roots, err := buildTree(r.Phases)
	if err != nil {
		return err.Error()
	}
	width := 0
	walk(roots, func(n *node) {
		if !n.hidden() && len(n.Name)+2*n.depth > width {
			width = len(n.Name) + 2*n.depth
		}
	})
	var b strings.Builder
	fmt.Fprintf(&b, "The %q command executes the following phases:\n\n", use)
	walk(roots, func(n *node) {
		if n.hidden() {
			return
		}
		label := strings.Repeat("  ", n.depth) + n.Name
		fmt.Fprintf(&b, "  %-*s  %s\n", width, label, n.Short)
	})
	return strings.TrimRight(b.String(), "\n")
}

// WriteTimings prints timings as a table, nested phases indented under their group.
func WriteTimings(w io.Writer, timings []PhaseTiming) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PHASE\tSTATUS\tTIME")
	var total time.Duration
	for _, t := range timings {
		depth := strings.Count(t.Name, separator)
		if depth == 0 {
			total += t.Duration
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%s\n", strings.Repeat("  ", depth), t.Name, t.Status, formatDuration(t.Duration))
	}
	fmt.Fprintf(tw, "total\t\t%s\n", formatDuration(total))
	return tw.Flush()
}

// node is a Phase placed in the tree, with its path.
type node struct {
	Phase
	path     string
	parent   *node
	children []*node
	depth    int
}

// hidden reports whether the node or one of its groups is hidden.
func (n *node) hidden() bool {
	for p := n; p != nil; p = p.parent {
		if p.Hidden {
			return true
		}
	}
	return false
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

// buildTree validates the phases and places them in a tree. Mistakes here are
// programming errors in a workflow definition, reported with the phase's path.
func buildTree(phases []Phase) ([]*node, error) { return buildLevel(phases, nil) }

func buildLevel(phases []Phase, parent *node) ([]*node, error) {
	used := map[string]string{} // name or alias -> phase that owns it
	nodes := make([]*node, 0, len(phases))
	for _, p := range phases {
		n := &node{Phase: p, path: p.Name, parent: parent}
		if parent != nil {
			n.path = parent.path + separator + p.Name
			n.depth = parent.depth + 1
		}
		for _, name := range append([]string{p.Name}, p.Aliases...) {
			switch {
			case !nameRE.MatchString(name):
				return nil, fmt.Errorf("phase %q: invalid name or alias %q: use lowercase letters, digits and dashes", n.path, name)
			case name == "all":
				return nil, fmt.Errorf("phase %q: the name \"all\" is reserved for the generated run-the-whole-group subcommand", n.path)
			}
			if owner, dup := used[name]; dup {
				return nil, fmt.Errorf("phase %q: name or alias %q is already used by phase %q", n.path, name, owner)
			}
			used[name] = n.path
		}
		if p.Run == nil && len(p.Phases) == 0 {
			return nil, fmt.Errorf("phase %q has neither a Run func nor nested phases (use workflow.NotImplemented for unwritten phases)", n.path)
		}
		children, err := buildLevel(p.Phases, n)
		if err != nil {
			return nil, err
		}
		n.children = children
		nodes = append(nodes, n)
	}
	return nodes, nil
}

func walk(nodes []*node, fn func(*node)) {
	for _, n := range nodes {
		fn(n)
		walk(n.children, fn)
	}
}

// selection says, per node, whether it runs, is skipped, or is only passed through on
// the way to a filtered phase below it.
type selection struct {
	selected map[*node]bool // runs its own Run and its children
	onPath   map[*node]bool // an ancestor of a filtered phase: its RunIf still applies
	skipped  map[*node]bool
}

func (r *Runner) selection(roots []*node) (*selection, error) {
	byPath := map[string]*node{}
	var all []string
	walk(roots, func(n *node) {
		byPath[n.path] = n
		all = append(all, n.path)
	})
	lookup := func(flag, name string) (*node, error) {
		n, ok := byPath[strings.TrimSpace(name)]
		if !ok {
			return nil, fmt.Errorf("unknown phase %q in %s; valid phases are: %s", name, flag, strings.Join(all, ", "))
		}
		return n, nil
	}
	s := &selection{selected: map[*node]bool{}, onPath: map[*node]bool{}, skipped: map[*node]bool{}}
	mark := func(set map[*node]bool) func(*node) { return func(n *node) { set[n] = true } }

	if len(r.Options.FilterPhases) == 0 {
		walk(roots, mark(s.selected))
	}
	for _, name := range r.Options.FilterPhases {
		n, err := lookup("the phase filter", name)
		if err != nil {
			return nil, err
		}
		walk([]*node{n}, mark(s.selected))
		for p := n.parent; p != nil; p = p.parent {
			s.onPath[p] = true
		}
	}
	for _, name := range r.Options.SkipPhases {
		if strings.TrimSpace(name) == "" {
			continue
		}
		n, err := lookup("--skip-phases", name)
		if err != nil {
			return nil, err
		}
		walk([]*node{n}, mark(s.skipped))
	}
	return s, nil
}

type execution struct {
	*selection
	data RunData
	log  *Logger
	ctx  context.Context
}

func (r *Runner) logger(data RunData) *Logger {
	if lp, ok := data.(LoggerProvider); ok && lp.Logger() != nil {
		return lp.Logger()
	}
	switch {
	case r.out != nil:
		return NewLogger(r.out)
	case r.cmd != nil:
		return NewLogger(r.cmd.OutOrStdout())
	default:
		return NewLogger(os.Stdout)
	}
}

func (r *Runner) context(data RunData) context.Context {
	if cp, ok := data.(ContextProvider); ok && cp.Context() != nil {
		return cp.Context()
	}
	if r.cmd != nil && r.cmd.Context() != nil {
		return r.cmd.Context()
	}
	return context.Background()
}

// runNode runs n and its children and reports how n ended (empty when n was not
// part of this run at all). Its length is the outcome table of one phase
// (skipped, unchanged, changed, failed, dry run) in one place.
func (r *Runner) runNode(n *node, x *execution) (Status, error) {
	if !x.selected[n] && !x.onPath[n] {
		return "", nil
	}
	if x.skipped[n] {
		if x.selected[n] {
			r.record(n, StatusSkipped, 0)
			r.say(x.log, n, "skipped (--skip-phases)")
		}
		return StatusSkipped, nil
	}
	if err := x.ctx.Err(); err != nil {
		return StatusFailed, fmt.Errorf("error execution phase %s: interrupted: %w", n.path, err)
	}
	if n.RunIf != nil {
		x.log.setPhase(n.path)
		ok, err := n.RunIf(x.data)
		if err != nil {
			return StatusFailed, fmt.Errorf("error execution run condition for phase %s: %w", n.path, err)
		}
		if !ok {
			if x.selected[n] {
				r.record(n, StatusNotNeeded, 0)
				r.say(x.log, n, "skipped (not needed here)")
			}
			return StatusNotNeeded, nil
		}
	}
	if !x.selected[n] {
		// Only on the way to a filtered phase: the group's own Run is not part of it.
		for _, c := range n.children {
			if st, err := r.runNode(c, x); err != nil {
				return st, err
			}
		}
		return "", nil
	}

	idx := r.record(n, "", 0)
	start := r.now()
	finish := func(st Status) {
		r.timings[idx].Status = st
		r.timings[idx].Duration = r.now().Sub(start)
	}
	ran, changed := false, false
	detail := "" // why the phase's own Run found nothing to do
	if n.Run != nil {
		x.log.setPhase(n.path)
		err := n.Run(x.data)
		switch {
		case err == nil:
			ran, changed = true, true
		case errors.Is(err, ErrUnchanged):
			ran = true
			if err != ErrUnchanged {
				detail = ": " + err.Error()
			}
		default:
			finish(StatusFailed)
			r.say(x.log, n, "failed after "+formatDuration(r.timings[idx].Duration))
			return StatusFailed, fmt.Errorf("error execution phase %s: %w", n.path, err)
		}
	}
	for _, c := range n.children {
		st, err := r.runNode(c, x)
		if err != nil {
			finish(StatusFailed)
			return StatusFailed, err
		}
		switch st {
		case StatusDone:
			ran, changed = true, true
		case StatusUnchanged:
			ran = true
		}
	}
	switch {
	case changed:
		finish(StatusDone)
		r.say(x.log, n, "done in "+formatDuration(r.timings[idx].Duration))
	case ran:
		finish(StatusUnchanged)
		r.say(x.log, n, "unchanged in "+formatDuration(r.timings[idx].Duration)+detail)
	default:
		finish(StatusSkipped)
		r.say(x.log, n, "skipped (no nested phase ran)")
	}
	return r.timings[idx].Status, nil
}

func (r *Runner) record(n *node, st Status, d time.Duration) int {
	r.timings = append(r.timings, PhaseTiming{Name: n.path, Group: len(n.children) > 0, Status: st, Duration: d})
	return len(r.timings) - 1
}

func (r *Runner) say(log *Logger, n *node, msg string) {
	log.setPhase(n.path)
	log.Printf("%s", msg)
}

func formatDuration(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%dms", d.Milliseconds())
	default:
		return d.Round(time.Microsecond).String()
	}
}
