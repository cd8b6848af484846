package etcd

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// MemberStatus is one member as the cluster and the member itself report it.
type MemberStatus struct {
	ID         uint64   `json:"-"`
	IDHex      string   `json:"id"`
	Name       string   `json:"name"` // "" until the member started for the first time
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs"`
	IsLearner  bool     `json:"isLearner"`
	IsLeader   bool     `json:"isLeader"`
	// Healthy means the member answered its status and, for a voting member, a
	// linearizable read (it is part of a quorum that has a leader).
	Healthy          bool     `json:"healthy"`
	Version          string   `json:"version,omitempty"`
	DBSize           int64    `json:"dbSize,omitempty"`
	DBSizeInUse      int64    `json:"dbSizeInUse,omitempty"`
	RaftTerm         uint64   `json:"raftTerm,omitempty"`
	RaftIndex        uint64   `json:"raftIndex,omitempty"`
	RaftAppliedIndex uint64   `json:"raftAppliedIndex,omitempty"`
	Alarms           []string `json:"alarms,omitempty"`
	Error            string   `json:"error,omitempty"`
}

// Started reports whether the member has ever run (etcd learns its name then).
func (m MemberStatus) Started() bool { return m.Name != "" }

// ClusterStatus is the whole cluster: members sorted by name, then ID.
type ClusterStatus struct {
	ClusterID string         `json:"clusterID"`
	Leader    string         `json:"leader,omitempty"` // member ID (hex) of the leader
	Members   []MemberStatus `json:"members"`
}

// Voters are the members that are not learners.
func (s *ClusterStatus) Voters() []MemberStatus {
	var out []MemberStatus
	for _, m := range s.Members {
		if !m.IsLearner {
			out = append(out, m)
		}
	}
	return out
}

// Member finds a member by ID.
func (s *ClusterStatus) Member(id uint64) (MemberStatus, bool) {
	for _, m := range s.Members {
		if m.ID == id {
			return m, true
		}
	}
	return MemberStatus{}, false
}

// HealthyVoters counts the healthy voting members.
func (s *ClusterStatus) HealthyVoters() int {
	n := 0
	for _, m := range s.Voters() {
		if m.Healthy {
			n++
		}
	}
	return n
}

// StatusTimeout bounds the questions to one member.
const StatusTimeout = 5 * time.Second

// GetClusterStatus lists the members through cli and asks every member, in
// parallel and each on its own connection, for its status and health. A member
// that does not answer is reported unhealthy with the error, not as a failure:
// finding the broken member is the point of asking. tlsCfg is the client TLS used
// for the per-member connections.
func GetClusterStatus(ctx context.Context, cli *clientv3.Client, tlsCfg *tls.Config) (*ClusterStatus, error) {
	lctx, cancel := context.WithTimeout(ctx, StatusTimeout)
	resp, err := cli.MemberList(lctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("listing etcd members through %v: %w", cli.Endpoints(), err)
	}
	cs := &ClusterStatus{ClusterID: strconv.FormatUint(resp.Header.GetClusterId(), 16)}
	cs.Members = make([]MemberStatus, len(resp.Members))
	var wg sync.WaitGroup
	for i, m := range resp.Members {
		cs.Members[i] = memberFromPB(m)
		wg.Add(1)
		go func(ms *MemberStatus) {
			defer wg.Done()
			probeMember(ctx, tlsCfg, ms)
		}(&cs.Members[i])
	}
	wg.Wait()
	var leader uint64
	for _, m := range cs.Members {
		if m.Healthy && m.IsLeader {
			leader = m.ID
		}
	}
	if leader != 0 {
		cs.Leader = strconv.FormatUint(leader, 16)
	}
	sort.Slice(cs.Members, func(i, j int) bool {
		a, b := cs.Members[i], cs.Members[j]
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.ID < b.ID
	})
	return cs, nil
}

func memberFromPB(m *etcdserverpb.Member) MemberStatus {
	return MemberStatus{
		ID: m.ID, IDHex: strconv.FormatUint(m.ID, 16), Name: m.Name,
		PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs, IsLearner: m.IsLearner,
	}
}

// probeMember fills in what the member says about itself.
func probeMember(ctx context.Context, tlsCfg *tls.Config, ms *MemberStatus) {
	if len(ms.ClientURLs) == 0 {
		ms.Error = "not started yet: no client URL"
		return
	}
	ep := ms.ClientURLs[0]
	err := withEndpoint(tlsCfg, ep, func(cli *clientv3.Client) error {
		sctx, cancel := context.WithTimeout(ctx, StatusTimeout)
		defer cancel()
		st, err := cli.Status(sctx, ep)
		if IsAuthRefusal(err) {
			// A client that is not etcd's administrator (a member host's
			// health-check certificate) gets no status; the member answered,
			// and for a voter a linearizable read shows it has a quorum.
			if !ms.IsLearner {
				if _, err := cli.Get(sctx, HealthKey); err != nil && !IsAuthRefusal(err) {
					return err
				}
			}
			ms.Error = "" // healthy, details need the administrator credential
			return nil
		}
		if err != nil {
			return err
		}
		ms.Version, ms.DBSize, ms.DBSizeInUse = st.Version, st.DbSize, st.DbSizeInUse
		ms.RaftTerm, ms.RaftIndex, ms.RaftAppliedIndex = st.RaftTerm, st.RaftIndex, st.RaftAppliedIndex
		ms.IsLeader = st.Leader != 0 && st.Leader == st.Header.GetMemberId()
		if len(st.Errors) > 0 {
			return errors.New(strings.Join(st.Errors, "; "))
		}
		if ms.IsLearner {
			// A learner serves no linearizable reads; answering its status is all
			// the health it can show.
			return nil
		}
		// etcdctl endpoint health's test: a linearizable read needs the member to
		// reach a quorum with a leader. Permission denied still proves that.
		if _, err := cli.Get(sctx, HealthKey); err != nil && !IsAuthRefusal(err) {
			return err
		}
		alarms, err := cli.AlarmList(sctx)
		if err != nil {
			return err
		}
		for _, a := range alarms.Alarms {
			if a.MemberID == ms.ID {
				ms.Alarms = append(ms.Alarms, a.Alarm.String())
			}
		}
		if len(ms.Alarms) > 0 {
			return fmt.Errorf("alarm %s raised", strings.Join(ms.Alarms, ", "))
		}
		return nil
	})
	if err != nil {
		ms.Error = err.Error()
		return
	}
	ms.Healthy = true
}

// WriteTable prints the status the way `kubeforge etcd status` shows it.
func (s *ClusterStatus) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tCLIENT URL\tLEARNER\tLEADER\tHEALTHY\tRAFT TERM\tRAFT INDEX\tDB SIZE\tVERSION\tERROR")
	for _, m := range s.Members {
		name := m.Name
		if name == "" {
			name = "(unstarted)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%t\t%t\t%t\t%d\t%d\t%s\t%s\t%s\n",
			m.IDHex, name, first(m.ClientURLs), m.IsLearner, m.IsLeader, m.Healthy,
			m.RaftTerm, m.RaftIndex, HumanBytes(m.DBSize), m.Version, m.Error)
	}
	return tw.Flush()
}

// WriteJSON prints the status as indented JSON.
func (s *ClusterStatus) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}

func first(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return s[0]
}

// HumanBytes renders a size as "1.4 MiB" (IEC units); "-" for none.
func HumanBytes(n int64) string {
	if n <= 0 {
		return "-"
	}
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
