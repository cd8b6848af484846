package noderuntime

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/config"
)

// Feature names.
const (
	FeatureOverlay     = "overlay"
	FeatureCSRApprover = "csr-approver"
	FeatureAPILB       = "apilb"
)

// RunOptions are `kubeforge node run`'s settings; the unit carries them as
// flags (Args). Each feature has its own identity: the overlay's config names
// the node's kubelet.conf (kube backend) or its etcd client certificate, the
// approver has csr-approver.conf (CN kubeforge:csr-approver), the balancer
// reads the `kubernetes` EndpointSlices with kube-proxy.conf
// (system:kube-proxy, whose system:node-proxier role already lists and
// watches them).
type RunOptions struct {
	// Roles choose the features: the overlay and the balancer on every host,
	// the approver on control-plane hosts.
	Roles []config.Role
	// OverlayConfig is the overlay agent's configuration; "" runs no overlay
	// agent (the overlay phase was skipped: another CNI networks the pods).
	OverlayConfig      string
	ApproverKubeconfig string
	APIServerCert      string
	APILBKubeconfig    string
	APILBListen        string
	StatusAddress      string
}

// Features are the names of the features a host of these roles runs.
func (o RunOptions) Features() []string {
	var out []string
	if o.OverlayConfig != "" {
		out = append(out, FeatureOverlay)
	}
	if slices.Contains(o.Roles, config.RoleControlPlane) {
		out = append(out, FeatureCSRApprover)
	}
	return append(out, FeatureAPILB)
}

// Args renders o as `kubeforge node run` flags, in a stable order.
func (o RunOptions) Args() []string {
	roles := make([]string, len(o.Roles))
	for i, r := range o.Roles {
		roles[i] = string(r)
	}
	args := []string{"--roles=" + strings.Join(roles, ","), "--overlay-config=" + o.OverlayConfig}
	if slices.Contains(o.Roles, config.RoleControlPlane) {
		args = append(args, "--approver-kubeconfig="+o.ApproverKubeconfig, "--apiserver-cert="+o.APIServerCert)
	}
	return append(args, "--apilb-kubeconfig="+o.APILBKubeconfig, "--apilb-listen="+o.APILBListen, "--status-address="+o.StatusAddress)
}

// Inputs are the files the features read when they start.
func (o RunOptions) Inputs() []string {
	var in []string
	if o.OverlayConfig != "" {
		in = append(in, o.OverlayConfig)
	}
	in = append(in, o.APILBKubeconfig)
	if slices.Contains(o.Roles, config.RoleControlPlane) {
		in = append(in, o.ApproverKubeconfig, o.APIServerCert)
	}
	return in
}

// Status is what `kubeforge node status` shows.
type Status struct {
	Features []FeatureStatus `json:"features"`
	APILB    *APILBStatus    `json:"apilb,omitempty"`
}

// APILBStatus is the balancer's pool.
type APILBStatus struct {
	Listen   string          `json:"listen"`
	Backends []BackendStatus `json:"backends"`
}

// BackendStatus is one apiserver in the pool.
type BackendStatus struct {
	Address string `json:"address"`
	Healthy bool   `json:"healthy"`
	Checked bool   `json:"checked"`
	Conns   int    `json:"conns"`
	Error   string `json:"error,omitempty"`
}

// FetchStatus asks the runtime at addr for its status.
func FetchStatus(ctx context.Context, addr string) (*Status, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/status", nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("node runtime status at %s: %w (is %s running?)", addr, err, UnitName)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("node runtime status at %s: %s", addr, resp.Status)
	}
	var s Status
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return nil, fmt.Errorf("node runtime status at %s: %w", addr, err)
	}
	return &s, nil
}

// WriteText renders s as two tables.
func (s *Status) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FEATURE\tSTATE\tRESTARTS\tSINCE\tLAST ERROR")
	for _, f := range s.Features {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", f.Name, f.State, f.Restarts, f.Since.Format(time.RFC3339), f.LastError)
	}
	if s.APILB != nil {
		fmt.Fprintf(tw, "\nAPI BALANCER %s\tHEALTHY\tCONNS\tERROR\n", s.APILB.Listen)
		for _, b := range s.APILB.Backends {
			h := "no"
			switch {
			case b.Healthy:
				h = "yes"
			case !b.Checked:
				h = "unchecked"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", b.Address, h, b.Conns, b.Error)
		}
	}
	return tw.Flush()
}
