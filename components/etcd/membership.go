package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubeforge/kubeforge/components/component"
)

// Runner starts and removes the local member while JoinMember changes the
// cluster's membership around it. The phases implement it with host.Host and
// systemd; the integration test with plain etcd processes.
type Runner interface {
	// Start puts the member's configuration in place, with initialCluster and
	// initial-cluster-state existing, and starts it. It returns once the start is
	// under way; whether the member comes up is what JoinMember watches.
	Start(ctx context.Context, initialCluster []Peer) error
	// Failed returns an error, with what the member's log says, once the member is
	// known not to come up (its process exited, its unit keeps crashing); nil while
	// it is starting or running.
	Failed(ctx context.Context) error
	// Remove stops the member and deletes what Start put in place, data included:
	// the undo of Start.
	Remove(ctx context.Context) error
}

// JoinRequest is one member joining an existing cluster.
type JoinRequest struct {
	// Client talks to the existing members.
	Client *clientv3.Client
	// TLS is the client TLS for per-member connections (the learner's progress).
	TLS    *tls.Config
	Member Member
	Runner Runner
	// Timeout bounds the time from starting the member to its promotion; 5 minutes
	// when zero. A learner that has not caught up by then is removed again.
	Timeout time.Duration
	// PollInterval is how often progress is checked; 500ms when zero.
	PollInterval time.Duration
	Logf         func(format string, a ...any)
}

// JoinResult says what JoinMember did.
type JoinResult struct {
	ID uint64
	// AlreadyVoter: the member was a started voting member already; nothing was
	// changed, not even started.
	AlreadyVoter bool
	// AddedLearner: this call added the learner (rather than resuming one left by
	// an interrupted join).
	AddedLearner bool
	// Promoted: the member is a voting member now.
	Promoted bool
	// StartedAfter and PromotedAfter measure the join from its beginning (when
	// the member first ran, when it was a healthy voter), for benchmarks.
	StartedAfter, PromotedAfter time.Duration
}

// ErrMemberConflict is returned when the cluster has a member with this member's
// name but another peer URL: an earlier incarnation of the host that must be reset
// (or removed) first, since two members cannot share a name.
var ErrMemberConflict = errors.New("member name already taken")

// JoinMember makes req.Member a started voting member of the cluster req.Client
// talks to:
//
//  1. it adds the member as a learner (or resumes the learner an interrupted join
//     left behind),
//  2. starts it through the Runner with the current member list,
//  3. retries MemberPromote until the learner has caught up with the leader.
//
// A learner does not count for quorum, so whatever happens to the new member the
// cluster keeps its fault tolerance. If the member fails to come up or to catch up
// within the timeout, the Runner removes it and the learner is removed from the
// cluster again: a failed join leaves the cluster with its old voting members and
// no stale learner. A member that is a started voter already is left alone
// (AlreadyVoter).
func JoinMember(ctx context.Context, req JoinRequest) (JoinResult, error) {
	t0 := time.Now()
	if req.Timeout == 0 {
		req.Timeout = 5 * time.Minute
	}
	if req.PollInterval == 0 {
		req.PollInterval = 500 * time.Millisecond
	}
	if req.Logf == nil {
		req.Logf = func(string, ...any) {}
	}
	logf := req.Logf
	m := req.Member
	var res JoinResult

	members, err := listMembers(ctx, req.Client)
	if err != nil {
		return res, err
	}
	self, err := findMember(members, m)
	if err != nil {
		return res, err
	}
	switch {
	case self != nil && !self.IsLearner && self.Name != "":
		res.ID, res.AlreadyVoter, res.Promoted = self.ID, true, true
		return res, nil
	case self != nil && !self.IsLearner:
		// A voter that never started: someone added it as a full member (or a
		// static bootstrap listed it). It already counts for quorum, so it is
		// started and waited for, but never removed by this join.
		res.ID = self.ID
		logf("member %s (%x) is a voting member that has not started yet; starting it", m.Name, self.ID)
	case self != nil:
		res.ID = self.ID
		logf("resuming the join of learner %s (%x) that an earlier run added", m.Name, self.ID)
	default:
		if other := otherLearner(members); other != nil {
			return res, fmt.Errorf("cannot add %s: learner %s (%x, %s) is still being added; wait for its join to finish or reset that host",
				m.Name, nameOr(other), other.ID, first(other.PeerURLs))
		}
		resp, err := addLearner(ctx, req, deadlineOf(req.Timeout))
		if err != nil {
			return res, fmt.Errorf("adding %s (%s) as a learner: %w", m.Name, m.PeerURL(), err)
		}
		res.ID, res.AddedLearner = resp.Member.ID, true
		members = resp.Members
		logf("added %s as learner %x (peer URL %s)", m.Name, res.ID, m.PeerURL())
	}
	voterAtStart := self != nil && !self.IsLearner

	peers := initialCluster(members, res.ID, m)
	rollback := func(cause error) (JoinResult, error) {
		if voterAtStart {
			return res, fmt.Errorf("member %s (%x) did not come up: %w", m.Name, res.ID, cause)
		}
		logf("member %s did not come up (%v); removing it again", m.Name, cause)
		// Rollback must happen even when ctx was cancelled (an interrupt is
		// exactly when a half-joined learner would otherwise stay behind).
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		var errs []error
		if err := req.Runner.Remove(rctx); err != nil {
			errs = append(errs, fmt.Errorf("stopping and removing the local member: %w", err))
		}
		if err := removeLearner(rctx, req.Client, res.ID); err != nil {
			errs = append(errs, fmt.Errorf("removing learner %x from the cluster: %w; remove it from a healthy member by hand", res.ID, err))
		} else {
			logf("removed learner %x; the cluster has its previous members again", res.ID)
		}
		if len(errs) > 0 {
			return res, fmt.Errorf("member %s did not join: %w (rollback: %w)", m.Name, cause, errors.Join(errs...))
		}
		return res, fmt.Errorf("member %s did not join and was removed again: %w", m.Name, cause)
	}

	if err := req.Runner.Start(ctx, peers); err != nil {
		return rollback(fmt.Errorf("starting it: %w", err))
	}
	if err := waitPromoted(ctx, req, &res, t0); err != nil {
		return rollback(err)
	}
	return res, nil
}

// waitPromoted polls until the started member is a voter: it retries
// MemberPromote, which the leader refuses until the learner has caught up, and
// reports progress every few seconds. A Runner that says the member failed
// ends the wait at once.
func waitPromoted(ctx context.Context, req JoinRequest, res *JoinResult, t0 time.Time) error {
	var lastReport time.Time
	var progress string
	var stepErr error
	err := wait.PollUntilContextTimeout(ctx, req.PollInterval, req.Timeout, true, func(pctx context.Context) (bool, error) {
		if stepErr = req.Runner.Failed(pctx); stepErr != nil {
			return false, stepErr
		}
		var done bool
		done, progress, stepErr = joinStep(pctx, req, res.ID)
		if stepErr != nil {
			return false, stepErr
		}
		if progress == "started" && res.StartedAfter == 0 {
			res.StartedAfter = time.Since(t0)
		}
		if done {
			if res.StartedAfter == 0 {
				res.StartedAfter = time.Since(t0)
			}
			res.Promoted, res.PromotedAfter = true, time.Since(t0)
			return true, nil
		}
		if time.Since(lastReport) >= 3*time.Second {
			req.Logf("waiting for %s: %s (%s)", req.Member.Name, describeProgress(pctx, req, res.ID, progress), time.Since(t0).Round(time.Second))
			lastReport = time.Now()
		}
		return false, nil
	})
	switch {
	case err == nil:
		return nil
	case stepErr != nil:
		return stepErr
	case ctx.Err() != nil:
		return ctx.Err()
	default:
		return fmt.Errorf("not promoted within %s (%s)", req.Timeout, progress)
	}
}

func deadlineOf(d time.Duration) time.Time { return time.Now().Add(d) }

// addLearner adds the learner, waiting out two refusals that pass by themselves:
//
//   - "unhealthy cluster": etcd accepts a new member only once the leader has
//     been connected to a quorum of voters for five seconds, which right after
//     another member joined (or a leader change) is not yet the case;
//   - "member not found": etcd derives a new member's ID from its peer URLs and
//     the current second, so re-adding a member within the second it was removed
//     in (a quick rollback and retry) gives the removed ID, which etcd refuses.
func addLearner(ctx context.Context, req JoinRequest, deadline time.Time) (*clientv3.MemberAddResponse, error) {
	said := false
	removedID := 0
	var resp *clientv3.MemberAddResponse
	var addErr error
	err := component.Poll(ctx, time.Second, 0, func(ctx context.Context) (bool, error) {
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		resp, addErr = req.Client.MemberAddAsLearner(actx, []string{req.Member.PeerURL()})
		cancel()
		if errors.Is(addErr, rpctypes.ErrMemberNotFound) && removedID < 3 {
			removedID++
		} else if addErr == nil || !errors.Is(addErr, rpctypes.ErrUnhealthy) || time.Now().After(deadline) {
			return true, nil
		} else if !said {
			req.Logf("the cluster does not take a new member yet (%v): etcd wants its members connected for 5s first; retrying", addErr)
			said = true
		}
		return false, nil
	})
	if err != nil {
		return nil, ctx.Err()
	}
	return resp, addErr
}

// joinStep looks at the member once and promotes it when it can. progress is a
// short description for the log: "starting", "started", "catching up".
func joinStep(ctx context.Context, req JoinRequest, id uint64) (done bool, progress string, err error) {
	members, err := listMembers(ctx, req.Client)
	if err != nil {
		// The existing members can be briefly unreachable (leader election); the
		// deadline decides when that stops being brief.
		return false, "cluster unreachable: " + err.Error(), nil
	}
	var me *etcdserverpb.Member
	for _, mm := range members {
		if mm.ID == id {
			me = mm
		}
	}
	switch {
	case me == nil:
		return false, "", fmt.Errorf("member %x was removed from the cluster while it was joining", id)
	case me.Name == "":
		return false, "starting", nil
	case !me.IsLearner:
		return healthyVoter(ctx, req, me)
	}
	err = promoteAtLeader(ctx, req, members, id)
	switch {
	case err == nil:
		req.Logf("promoted %s (%x) to a voting member", me.Name, id)
		return false, "started", nil
	case errors.Is(err, rpctypes.ErrMemberLearnerNotReady):
		return false, "started", nil
	case errors.Is(err, rpctypes.ErrMemberNotLearner):
		return false, "started", nil
	}
	return false, "started; promote: " + err.Error(), nil
}

// promoteAtLeader asks the raft leader itself to promote learner id. Only the
// leader decides a promotion; a follower forwards the request to it over the
// peer port, and etcd 3.6 drops the client's identity on that hop, so with
// authentication on a forwarded promotion is refused (and times out). When the
// leader cannot be found, the request goes through the client as it is.
func promoteAtLeader(ctx context.Context, req JoinRequest, members []*etcdserverpb.Member, id uint64) error {
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if leader := leaderURL(pctx, req.TLS, members); leader != "" {
		return withEndpoint(req.TLS, leader, func(cli *clientv3.Client) error {
			_, err := cli.MemberPromote(pctx, id)
			return err
		})
	}
	_, err := req.Client.MemberPromote(pctx, id)
	return err
}

// leaderURL is the client URL of the raft leader among members, as the first
// voter that answers its status says; "" when none does.
func leaderURL(ctx context.Context, tlsCfg *tls.Config, members []*etcdserverpb.Member) string {
	for _, m := range members {
		if m.IsLearner || len(m.ClientURLs) == 0 {
			continue
		}
		var leader uint64
		err := withEndpoint(tlsCfg, m.ClientURLs[0], func(cli *clientv3.Client) error {
			st, err := cli.Status(ctx, m.ClientURLs[0])
			if err == nil {
				leader = st.Leader
			}
			return err
		})
		if err != nil || leader == 0 {
			continue
		}
		for _, l := range members {
			if l.ID == leader && len(l.ClientURLs) > 0 {
				return l.ClientURLs[0]
			}
		}
	}
	return ""
}

// healthyVoter is the last step: the promoted member answers a linearizable read.
func healthyVoter(ctx context.Context, req JoinRequest, me *etcdserverpb.Member) (bool, string, error) {
	if len(me.ClientURLs) == 0 {
		return false, "started", nil
	}
	err := withEndpoint(req.TLS, me.ClientURLs[0], func(cli *clientv3.Client) error {
		gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := cli.Get(gctx, "health")
		return err
	})
	if err != nil {
		return false, "started; promoted, not yet healthy: " + err.Error(), nil
	}
	return true, "started", nil
}

// describeProgress adds how far the learner's raft log is behind.
func describeProgress(ctx context.Context, req JoinRequest, id uint64, progress string) string {
	if progress != "started" || req.TLS == nil {
		return progress
	}
	members, err := listMembers(ctx, req.Client)
	if err != nil {
		return progress
	}
	var mine, other string
	for _, mm := range members {
		if len(mm.ClientURLs) == 0 {
			continue
		}
		if mm.ID == id {
			mine = mm.ClientURLs[0]
		} else if other == "" && !mm.IsLearner {
			other = mm.ClientURLs[0]
		}
	}
	if mine == "" || other == "" {
		return progress
	}
	idx := func(ep string) (uint64, bool) {
		var st *clientv3.StatusResponse
		err := withEndpoint(req.TLS, ep, func(cli *clientv3.Client) error {
			sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			var err error
			st, err = cli.Status(sctx, ep)
			return err
		})
		if err != nil {
			return 0, false
		}
		return st.RaftAppliedIndex, true
	}
	a, ok1 := idx(mine)
	b, ok2 := idx(other)
	if !ok1 || !ok2 {
		return "learner started, waiting until it is in sync with the leader"
	}
	return fmt.Sprintf("learner catching up, raft applied index %d of %d", a, b)
}

func listMembers(ctx context.Context, cli *clientv3.Client) ([]*etcdserverpb.Member, error) {
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := cli.MemberList(lctx)
	if err != nil {
		return nil, fmt.Errorf("listing etcd members through %s: %w", strings.Join(cli.Endpoints(), ","), err)
	}
	return resp.Members, nil
}

// findMember finds m in members by peer URL (what etcd identifies members by) or
// by name.
func findMember(members []*etcdserverpb.Member, m Member) (*etcdserverpb.Member, error) {
	for _, mm := range members {
		for _, u := range mm.PeerURLs {
			if u == m.PeerURL() {
				if mm.Name != "" && mm.Name != m.Name {
					return nil, fmt.Errorf("%w: peer URL %s belongs to member %s (%x), not %s", ErrMemberConflict, u, mm.Name, mm.ID, m.Name)
				}
				return mm, nil
			}
		}
	}
	for _, mm := range members {
		if mm.Name == m.Name {
			return nil, fmt.Errorf("%w: the cluster has a member %s (%x) with peer URL %s, but this host's is %s; reset that member first",
				ErrMemberConflict, mm.Name, mm.ID, first(mm.PeerURLs), m.PeerURL())
		}
	}
	return nil, nil
}

func otherLearner(members []*etcdserverpb.Member) *etcdserverpb.Member {
	for _, mm := range members {
		if mm.IsLearner {
			return mm
		}
	}
	return nil
}

func nameOr(m *etcdserverpb.Member) string {
	if m.Name == "" {
		return "(unstarted)"
	}
	return m.Name
}

// initialCluster is the member list as initial-cluster: the joining member under
// its own name, started members under theirs and unstarted ones under their ID
// (etcd matches a joining member's list against the cluster by peer URL).
func initialCluster(members []*etcdserverpb.Member, self uint64, m Member) []Peer {
	var out []Peer
	for _, mm := range members {
		if mm.ID == self {
			out = append(out, Peer{Name: m.Name, PeerURL: m.PeerURL()})
			continue
		}
		name := mm.Name
		if name == "" {
			name = strconv.FormatUint(mm.ID, 16)
		}
		for _, u := range mm.PeerURLs {
			out = append(out, Peer{Name: name, PeerURL: u})
		}
	}
	return out
}

// removeLearner removes member id if it is still a learner. A member that got
// promoted meanwhile is a voter, and removing a voter is not a rollback any more.
func removeLearner(ctx context.Context, cli *clientv3.Client, id uint64) error {
	var last error
	attempt := 0
	err := component.Poll(ctx, time.Second, 0, func(ctx context.Context) (bool, error) {
		if attempt++; attempt > 10 {
			return true, nil
		}
		members, err := listMembers(ctx, cli)
		if err == nil {
			var me *etcdserverpb.Member
			for _, mm := range members {
				if mm.ID == id {
					me = mm
				}
			}
			if me == nil {
				last = nil
				return true, nil
			}
			if !me.IsLearner {
				return false, fmt.Errorf("member %x became a voting member meanwhile; not removing it", id)
			}
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err = cli.MemberRemove(rctx, id)
			cancel()
			if err == nil || errors.Is(err, rpctypes.ErrMemberNotFound) {
				last = nil
				return true, nil
			}
		}
		last = err
		return false, nil
	})
	switch {
	case err == nil:
		return last
	case ctx.Err() != nil:
		return errors.Join(last, ctx.Err())
	}
	return err
}

// Removal errors. Both are refusals that an explicit override may skip.
var (
	ErrLastMember = errors.New("last voting member")
	ErrQuorum     = errors.New("removal would break quorum")
)

// CheckRemoval decides whether member id can leave the cluster described by st
// without taking the cluster down. Removing a learner is always safe. Removing a
// voter needs the remaining voters to have a healthy quorum of their own: with
// three voters and one of the other two down, removing the third would leave one
// healthy member of two, which cannot elect a leader. Removing the only voter ends
// the cluster and is refused as ErrLastMember.
func CheckRemoval(st *ClusterStatus, id uint64) error {
	me, ok := st.Member(id)
	if !ok {
		return fmt.Errorf("member %x is not in the cluster", id)
	}
	if me.IsLearner {
		return nil
	}
	voters := st.Voters()
	if len(voters) <= 1 {
		return fmt.Errorf("%w: %s is the only voting member; removing it deletes the cluster and its data", ErrLastMember, nameOr(&etcdserverpb.Member{Name: me.Name}))
	}
	remaining := len(voters) - 1
	need := remaining/2 + 1
	var healthy int
	var sick []string
	for _, v := range voters {
		if v.ID == id {
			continue
		}
		if v.Healthy {
			healthy++
		} else {
			sick = append(sick, fmt.Sprintf("%s (%s)", nameOr(&etcdserverpb.Member{Name: v.Name}), v.Error))
		}
	}
	if healthy < need {
		return fmt.Errorf("%w: without %s, %d voting members remain and %d of them must be healthy for a quorum, but only %d are; unhealthy: %s",
			ErrQuorum, me.Name, remaining, need, healthy, strings.Join(sick, ", "))
	}
	return nil
}

// RemoveMember removes member id. When it is the leader, leadership is first moved
// to a healthy voter so the cluster does not have to notice the loss and elect a
// new leader after an election timeout.
func RemoveMember(ctx context.Context, cli *clientv3.Client, tlsCfg *tls.Config, st *ClusterStatus, id uint64, logf func(string, ...any)) error {
	me, ok := st.Member(id)
	if !ok {
		return nil
	}
	if me.IsLeader && len(me.ClientURLs) > 0 {
		for _, v := range st.Voters() {
			if v.ID == id || !v.Healthy {
				continue
			}
			err := withEndpoint(tlsCfg, me.ClientURLs[0], func(c *clientv3.Client) error {
				mctx, cancel := context.WithTimeout(ctx, 15*time.Second)
				defer cancel()
				_, err := c.MoveLeader(mctx, v.ID)
				return err
			})
			if err == nil {
				logf("moved etcd leadership from %s to %s", me.Name, v.Name)
			} else {
				logf("could not move leadership to %s first (%v); removing the leader directly", v.Name, err)
			}
			break
		}
	}
	// Like an add, a removal is refused as "unhealthy" until the leader has been
	// connected to a quorum for five seconds (right after a leader move, say).
	var last error
	attempt := 0
	err := component.Poll(ctx, time.Second, 0, func(ctx context.Context) (bool, error) {
		if attempt++; attempt > 30 {
			return true, nil
		}
		rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		_, last = cli.MemberRemove(rctx, id)
		cancel()
		if errors.Is(last, rpctypes.ErrMemberNotFound) {
			last = nil
		}
		return last == nil, nil
	})
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		return err
	case last != nil:
		return fmt.Errorf("removing member %s (%x): %w", me.Name, id, last)
	}
	return nil
}
