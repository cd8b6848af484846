package containerd

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/client"

	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/bootstrap/host/local"
	"github.com/kubeforge/kubeforge/bootstrap/host/owndirs"
	"github.com/kubeforge/kubeforge/components/component"
	"github.com/kubeforge/kubeforge/components/install"
)

// ErrNotLocal is returned when the containerd client would have to reach a
// socket on another machine. kubeforge runs on the node for init, join and reset,
// so this only happens when a phase is driven from elsewhere.
var ErrNotLocal = errors.New("the containerd client talks to the daemon's unix socket, which only works when kubeforge runs on the host itself")

// Connect returns a client for the containerd on h, in the Kubernetes (k8s.io)
// namespace. The connection is made lazily; Health tells whether it works.
func Connect(h host.Host, socket string) (*client.Client, error) {
	if _, ok := owndirs.Unwrap(h).(*local.Host); !ok {
		return nil, fmt.Errorf("%s: %w", h.Name(), ErrNotLocal)
	}
	if socket == "" {
		socket = Socket
	}
	c, err := client.New(socket, client.WithDefaultNamespace(Namespace), client.WithTimeout(5*time.Second))
	if err != nil {
		return nil, fmt.Errorf("%s: containerd client for %s: %w", h.Name(), socket, err)
	}
	return c, nil
}

// ConnectForImages connects to the containerd on h for image work and settles
// the snapshotter images are unpacked for: the given one, else the one this
// package configures containerd with on h (Detect, SettingsFor). `kubeforge
// images` and the images phase both start here.
func ConnectForImages(ctx context.Context, h host.Host, socket, snapshotter string) (*client.Client, string, error) {
	if snapshotter == "" {
		env, err := Detect(ctx, h)
		if err != nil {
			return nil, "", err
		}
		snapshotter = SettingsFor(env, "", install.DefaultBinDir).Snapshotter
	}
	c, err := Connect(h, socket)
	if err != nil {
		return nil, "", err
	}
	return c, snapshotter, nil
}

// Health is what the daemon reported when it was healthy.
type Health struct {
	Version     string
	Snapshotter string
}

// CheckHealth asks the daemon for its version and for the plugins the kubelet
// depends on: the CRI service and the snapshotter the config selects. A plugin
// that failed to initialise (an overlayfs snapshotter on an unsuitable
// filesystem, a CRI config error) leaves containerd "running" but useless, so
// the error names the plugin and containerd's own reason.
func CheckHealth(ctx context.Context, c *client.Client, snapshotter string) (Health, error) {
	v, err := c.Version(ctx)
	if err != nil {
		return Health{}, fmt.Errorf("containerd API: %w", err)
	}
	resp, err := c.IntrospectionService().Plugins(ctx)
	if err != nil {
		return Health{}, fmt.Errorf("containerd plugins: %w", err)
	}
	want := map[string]bool{
		"io.containerd.grpc.v1/cri":                   false,
		"io.containerd.cri.v1/images":                 false,
		"io.containerd.cri.v1/runtime":                false,
		"io.containerd.snapshotter.v1/" + snapshotter: false,
	}
	var problems []string
	for _, p := range resp.Plugins {
		id := p.Type + "/" + p.ID
		if _, ok := want[id]; !ok {
			continue
		}
		want[id] = true
		if p.InitErr != nil {
			problems = append(problems, fmt.Sprintf("plugin %s failed to start: %s", id, p.InitErr.Message))
		}
	}
	for id, seen := range want {
		if !seen {
			problems = append(problems, "plugin "+id+" is not loaded")
		}
	}
	if len(problems) > 0 {
		return Health{Version: v.Version}, fmt.Errorf("containerd %s: %s", v.Version, strings.Join(problems, "; "))
	}
	return Health{Version: v.Version, Snapshotter: snapshotter}, nil
}

// WaitHealthy polls CheckHealth until it passes or ctx ends; the last error says
// what was still wrong.
func WaitHealthy(ctx context.Context, c *client.Client, snapshotter string, timeout time.Duration) (Health, error) {
	var h Health
	var last error
	err := component.Poll(ctx, 100*time.Millisecond, timeout, func(ctx context.Context) (bool, error) {
		hctx, hcancel := context.WithTimeout(ctx, 5*time.Second)
		defer hcancel()
		h, last = CheckHealth(hctx, c, snapshotter)
		return last == nil, nil
	})
	if err != nil {
		if last == nil {
			last = err
		}
		return Health{}, fmt.Errorf("containerd not healthy after %s: %w", timeout, last)
	}
	return h, nil
}
