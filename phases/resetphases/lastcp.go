package resetphases

import (
	"context"
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/kubeclient"
)

// ErrLastControlPlane is the refusal to reset the cluster's last control-plane
// host without --force: with it goes the cluster's API (and, with it, every
// way to change the cluster short of a restore).
var ErrLastControlPlane = errors.New("this is the cluster's last control-plane host")

var advertiseRE = regexp.MustCompile(`--advertise-address[= ]"?([0-9A-Fa-f.:]+)`)

// CheckNotLastControlPlane refuses (ErrLastControlPlane) to reset a host that
// runs kubeforge's kube-apiserver when no other apiserver serves the cluster:
// the `kubernetes` EndpointSlice in default, which every apiserver keeps its
// own address in while it runs (--endpoint-reconciler-type=lease, the
// default) and removes on a graceful stop, lists no other address. When that
// cannot be read (no admin.conf, the API down) it cannot tell and refuses too,
// saying why. A host without kubeforge's apiserver unit passes.
func CheckNotLastControlPlane(ctx context.Context, h host.Host, kubeconfigDir string) error {
	unitPath := "/etc/systemd/system/kube-apiserver.service"
	unit, err := h.ReadFile(ctx, unitPath)
	if host.IsNotExist(err) || (err == nil && !strings.Contains(string(unit), "kubeforge")) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %s: %w", h.Name(), unitPath, err)
	}
	self := ""
	if m := advertiseRE.FindSubmatch(unit); m != nil {
		self = string(m[1])
	}
	p := path.Join(kubeconfigDir, certs.KubeconfigAdmin)
	kc, err := h.ReadFile(ctx, p)
	if err != nil {
		return fmt.Errorf("%w: %s runs kube-apiserver and whether another control-plane host serves the cluster cannot be checked (%s: %v); reset with --force to remove it anyway", ErrLastControlPlane, h.Name(), p, err)
	}
	cli, err := kubeclient.New(kc, kubeclient.Options{Timeout: 10 * time.Second})
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	others, err := otherAPIServers(ctx, cli, self)
	if err != nil {
		return fmt.Errorf("%w: %s runs kube-apiserver and whether another control-plane host serves the cluster cannot be checked (%v); reset with --force to remove it anyway", ErrLastControlPlane, h.Name(), err)
	}
	if len(others) == 0 {
		return fmt.Errorf("%w: %s (%s) is the only address in the `kubernetes` EndpointSlice; resetting it ends the cluster's API: join another control-plane host first, or reset with --force", ErrLastControlPlane, h.Name(), self)
	}
	return nil
}

// otherAPIServers are the addresses of the default/kubernetes EndpointSlice
// other than self.
func otherAPIServers(ctx context.Context, cli kubernetes.Interface, self string) ([]string, error) {
	es, err := cli.DiscoveryV1().EndpointSlices(metav1.NamespaceDefault).Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("EndpointSlice default/kubernetes: %w", err)
	}
	var out []string
	for _, e := range es.Endpoints {
		for _, a := range e.Addresses {
			if a != self && !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}
