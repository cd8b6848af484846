package workflow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/spf13/pflag"
)

// RunData is the value shared by all phases of one run. The runner never looks inside
// it except for the optional interfaces documented in the package comment.
type RunData = any

// Phase is one step of a workflow, possibly a group of nested steps.
type Phase struct {
	// Name is the phase's command name and path element: lowercase letters, digits
	// and dashes. "all" is reserved for the generated run-the-group subcommand.
	Name string
	// Aliases are alternative names for the generated subcommand.
	Aliases []string
	// Short, Long and Example feed the generated subcommand's help.
	Short, Long, Example string

	// Phases are nested phases, run in order after this phase's own Run.
	Phases []Phase

	// Run does the work. Nil for pure groups. Return Unchanged(...) when the host
	// was already in the desired state.
	Run func(RunData) error
	// RunIf decides at run time whether this phase, and all phases nested in it,
	// should run at all (for example etcd phases on a node that is not a member).
	RunIf func(RunData) (bool, error)

	// InheritFlags names flags of the bound command that the generated subcommand
	// should accept too. Persistent flags are inherited by cobra anyway.
	InheritFlags []string
	// LocalFlags exist only on this phase's generated subcommand.
	LocalFlags *pflag.FlagSet

	// Hidden phases run as part of the workflow but get no subcommand and no help line.
	Hidden bool
}

// ErrUnchanged marks a phase run that found nothing to change. Use Unchanged to
// attach a reason.
var ErrUnchanged = errors.New("unchanged")

// ErrNotImplemented is what NotImplemented returns: the phase is wired into the
// workflow but nobody has written it yet.
var ErrNotImplemented = errors.New("not implemented yet")

// NotImplemented is a Run func for phases that exist in the tree before their code
// does. It fails loudly so an unfinished workflow can never look like it succeeded.
func NotImplemented(RunData) error { return ErrNotImplemented }

type unchangedError struct{ detail string }

func (e *unchangedError) Error() string        { return e.detail }
func (e *unchangedError) Is(target error) bool { return target == ErrUnchanged }

// Unchanged returns the "already done" result for a phase's Run, with a reason that
// is printed next to the phase's timing line.
func Unchanged(format string, a ...any) error {
	return &unchangedError{detail: fmt.Sprintf(format, a...)}
}

// Outcome turns what a component reports into the phase's result: work that was
// already done becomes Unchanged (so a re-run says so), anything else is logged as
// what the phase did.
func Outcome(log *Logger, changed bool, detail string) error {
	if !changed {
		return Unchanged("%s", detail)
	}
	log.Printf("%s", detail)
	return nil
}

// LoggerProvider is implemented by run data that carries the phase logger.
type LoggerProvider interface{ Logger() *Logger }

// ContextProvider is implemented by run data that carries the run's context.
type ContextProvider interface{ Context() context.Context }

// Logger prints progress lines prefixed with the name of the phase that is running.
// It is safe for concurrent use, because a phase may act on several hosts at once.
type Logger struct {
	mu    sync.Mutex
	w     io.Writer
	phase string
}

// NewLogger returns a Logger writing to w (nil discards).
func NewLogger(w io.Writer) *Logger {
	if w == nil {
		w = io.Discard
	}
	return &Logger{w: w}
}

// Printf writes one message; every line of it gets the "[<phase>] " prefix.
func (l *Logger) Printf(format string, a ...any) {
	msg := strings.TrimRight(fmt.Sprintf(format, a...), "\n")
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, line := range strings.Split(msg, "\n") {
		if l.phase != "" {
			b.WriteString("[" + l.phase + "] ")
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	_, _ = io.WriteString(l.w, b.String())
}

// Phase returns the name of the phase currently running ("" outside a run).
func (l *Logger) Phase() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.phase
}

// Writer is the unprefixed output, for text that must be copied verbatim (the join
// command, a kubeconfig).
func (l *Logger) Writer() io.Writer { return lockedWriter{l} }

func (l *Logger) setPhase(name string) {
	l.mu.Lock()
	l.phase = name
	l.mu.Unlock()
}

// lockedWriter keeps raw writes from interleaving with prefixed lines.
type lockedWriter struct{ l *Logger }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.l.mu.Lock()
	defer w.l.mu.Unlock()
	return w.l.w.Write(p)
}
