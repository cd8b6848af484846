// Package workflow runs an ordered tree of phases and exposes the same tree as cobra
// subcommands, so `kubeforge init` and `kubeforge init phase certs apiserver` execute
// exactly the same code.
//
// It follows the shape of kubeadm's workflow package:
//
//   - A Phase has a Name, optional nested Phases and a Run func. Phases run
//     depth-first in the order they were appended: a group's own Run (if any) first,
//     then its children. RunIf, when set, can veto a phase and everything below it.
//   - A Runner builds the shared run data once, through the initializer given to
//     SetDataInitializer, and hands it to every Run. Phases type-assert it to the
//     narrow interface they need, kubeadm style, so the runner never knows its type.
//   - BindToCommand adds `--skip-phases` to the command and generates
//     `<cmd> phase <name> [<sub>]` subcommands from the tree; every group also gets an
//     `all` subcommand that runs the whole group. Phase names in --skip-phases and in
//     progress output are the slash-joined path (`certs/apiserver`), so a name printed
//     by one run can be pasted into the next.
//
// Conventions a phase opts into, discovered at run time rather than declared on Phase:
//
//   - Returning Unchanged(...) (or any error wrapping ErrUnchanged) from Run reports
//     "nothing to do, already in the desired state". The runner counts it as success
//     and prints "unchanged", so a rerun of a converged `init` says so phase by phase.
//   - Run: NotImplemented marks a phase that is wired but not written yet. It fails
//     with ErrNotImplemented; it never pretends to succeed.
//   - Run data implementing LoggerProvider supplies the Logger the runner tags with
//     the running phase's name, so `Logger().Printf` lines come out as
//     "[certs/apiserver] ...". Without it the runner logs to the command's output.
//   - Run data implementing ContextProvider is checked for cancellation between
//     phases, so an interrupt stops the run at a phase boundary.
//   - Run data implementing io.Closer is closed once the run ends (success or not):
//     the place to close SSH connections or print a dry-run plan.
//
// After each phase the runner prints "[<name>] done in 1.23s" (or "unchanged in ...",
// "skipped ...", "failed after ..."), and Timings returns the same measurements for
// benchmarks and summaries. A failing phase stops the run with an error of the form
// "error execution phase <name>: <cause>" that still wraps the cause for errors.Is.
package workflow
