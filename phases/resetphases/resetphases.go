// Package resetphases is the phase tree of `kubeforge reset`, which removes what
// init or join put on this host.
// Each phase is a thin call into the component that owns what it removes
// (etcd, the overlay, the backup timer) or into components/cleanup, which
// removes what the components' footprints list, in order.
package resetphases

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/kubeforge/kubeforge/phases/workflow"
)

// Phases returns the reset workflow in execution order: leave etcd first, while
// the member can still reach its peers, then stop units, then delete files.
func Phases() []workflow.Phase {
	return []workflow.Phase{
		certRenewPhase(),
		etcdBackupPhase(),
		nodeRuntimePhase(),
		overlayPhase(),
		etcdPhase(),
		unitsPhase(),
		cleanupPhase(),
	}
}

// ErrAborted is returned when the operator does not confirm a reset.
var ErrAborted = errors.New("reset aborted: not confirmed")

// Confirm asks the operator before anything is removed, because reset destroys the
// node's state (and, on an etcd member, shrinks the cluster's quorum).
func Confirm(in io.Reader, out io.Writer, node string) error {
	fmt.Fprintf(out, "[reset] This removes kubeforge's units, certificates and data from node %s.\n", node)
	fmt.Fprint(out, "[reset] Are you sure you want to proceed? [y/N]: ")
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("reset: reading confirmation: %w", err)
	}
	if !strings.HasSuffix(line, "\n") {
		// No newline came from a terminal, so end the prompt line ourselves.
		fmt.Fprintln(out)
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return ErrAborted
}
