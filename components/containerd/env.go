package containerd

import (
	"context"

	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/components/hostenv"
)

// Environment is what the runtime's configuration depends on: the host's facts
// (hostenv) and the filesystem under containerd's root.
type Environment struct {
	hostenv.Environment
	// StateFS is the filesystem type under containerd's root (or the nearest
	// existing parent): overlayfs cannot be stacked on an overlayfs.
	StateFS string
}

// Detect reads the host's environment through h. Commands are read-only, so a
// dry run asks the real host too.
func Detect(ctx context.Context, h host.Host) (Environment, error) {
	base, err := hostenv.Detect(ctx, h)
	if err != nil {
		return Environment{}, err
	}
	fs, err := hostenv.Filesystem(ctx, h, RootDir)
	if err != nil {
		return Environment{}, err
	}
	return Environment{Environment: base, StateFS: fs}, nil
}
