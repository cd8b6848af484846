package overlay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/kubeforge/kubeforge/components/overlay/subnet"
)

// Status is what `kubeforge overlay status` shows: this node's lease and the peers
// the agent has programmed.
type Status struct {
	Node     string `json:"node"`
	Subnet   string `json:"subnet"`
	PublicIP string `json:"publicIP"`
	VtepMAC  string `json:"vtepMAC"`
	// Backend is the subnet manager: kube or etcd.
	Backend string `json:"backend"`
	// LeaseID says what holds the subnet: "etcd lease 3f2a..." or "Node node01".
	LeaseID string        `json:"leaseID"`
	Device  string        `json:"device"`
	MTU     int           `json:"mtu"`
	Network subnet.Config `json:"network"`
	// TxChecksumOffload says what was done about offload and why.
	TxChecksumOffload string       `json:"txChecksumOffload"`
	Peers             []PeerStatus `json:"peers"`
	// LeasesKnown counts every lease the backend holds, this node's included.
	LeasesKnown int   `json:"leasesKnown"`
	Revision    int64 `json:"revision"`
	// WatchSource is the server the watch is on: an etcd member, or the API
	// server.
	WatchSource string    `json:"watchSource,omitempty"`
	Resyncs     int       `json:"resyncs"`
	LastResync  string    `json:"lastResync,omitempty"`
	LastSync    time.Time `json:"lastSync"`
	Ready       bool      `json:"ready"`
	Problem     string    `json:"problem,omitempty"`
}

// PeerStatus is one programmed remote subnet.
type PeerStatus struct {
	Subnet   string `json:"subnet"`
	Node     string `json:"node"`
	PublicIP string `json:"publicIP"`
	VtepMAC  string `json:"vtepMAC"`
}

// Status returns the agent's current view.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := Status{
		Node: a.cfg.NodeName, PublicIP: a.cfg.PublicIP, Network: a.network,
		LeasesKnown: len(a.all), Revision: a.st.revision, Backend: a.cfg.Backend, WatchSource: a.st.source, Resyncs: a.st.resyncs, LastResync: a.st.lastResync,
		LastSync: a.st.lastSync, Ready: a.st.ready, Problem: a.st.problem, TxChecksumOffload: a.st.txOffload,
		Peers: []PeerStatus{},
	}
	if a.lease.Subnet.IsValid() {
		s.Subnet, s.VtepMAC, s.LeaseID = a.lease.Subnet.String(), a.lease.VtepMAC, a.lease.Holder()
	}
	if a.dev != nil {
		s.Device, s.MTU = a.dev.Name(), a.dev.MTU()
	}
	for _, l := range a.peers {
		s.Peers = append(s.Peers, PeerStatus{Subnet: l.Subnet.String(), Node: l.Node, PublicIP: l.PublicIP, VtepMAC: l.VtepMAC})
	}
	sort.Slice(s.Peers, func(i, j int) bool { return s.Peers[i].Subnet < s.Peers[j].Subnet })
	return s
}

func (a *Agent) startHealth() error {
	ln, err := net.Listen("tcp", a.cfg.HealthAddress)
	if err != nil {
		return fmt.Errorf("health server on %s (healthAddress): %w", a.cfg.HealthAddress, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		st := a.Status()
		if !st.Ready || st.Problem != "" {
			msg := st.Problem
			if msg == "" {
				msg = "not ready: setting up"
			}
			http.Error(w, msg, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_ = a.m.write(w)
	})
	mux.HandleFunc("/status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(a.Status())
	})
	a.server = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	a.mu.Lock()
	a.addr = ln.Addr()
	a.mu.Unlock()
	go func() {
		if err := a.server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.logf("health server: %v", err)
		}
	}()
	return nil
}

// FetchStatus asks a running agent at addr (host:port) for its status.
func FetchStatus(ctx context.Context, addr string) (*Status, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/status", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("overlay agent at %s: %w (is %s running?)", addr, err, UnitName)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("overlay agent at %s: %s: %s", addr, resp.Status, body)
	}
	var st Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, fmt.Errorf("overlay agent at %s: %w", addr, err)
	}
	return &st, nil
}

// WriteText prints the status for people.
func (s *Status) WriteText(w io.Writer) error {
	state := "ready"
	if !s.Ready {
		state = "not ready"
	}
	if s.Problem != "" {
		state += ": " + s.Problem
	}
	fmt.Fprintf(w, "Node:       %s (%s)\n", s.Node, state)
	fmt.Fprintf(w, "Subnet:     %s (%s) of %s\n", s.Subnet, s.LeaseID, s.Network.Network)
	fmt.Fprintf(w, "Device:     %s, vni %d, udp port %d, mtu %d, vtep %s on %s\n", s.Device, s.Network.VNI, s.Network.Port, s.MTU, s.VtepMAC, s.PublicIP)
	fmt.Fprintf(w, "Offload:    tx checksum %s\n", s.TxChecksumOffload)
	fmt.Fprintf(w, "Backend:    %s, revision %d, watch on %s, %d resyncs", s.Backend, s.Revision, orDash(s.WatchSource), s.Resyncs)
	if s.LastResync != "" {
		fmt.Fprintf(w, " (last: %s)", s.LastResync)
	}
	fmt.Fprintf(w, "\nPeers:      %d programmed, %d leases known\n", len(s.Peers), s.LeasesKnown)
	if len(s.Peers) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  SUBNET\tNODE\tHOST ADDRESS\tVTEP MAC")
	for _, p := range s.Peers {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", p.Subnet, p.Node, p.PublicIP, p.VtepMAC)
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
