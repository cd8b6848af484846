package etcd

import (
	"errors"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
)

func voter(id uint64, name string, healthy bool) MemberStatus {
	return MemberStatus{ID: id, Name: name, Healthy: healthy, Error: map[bool]string{false: "connection refused"}[healthy]}
}

func TestCheckRemoval(t *testing.T) {
	learner := MemberStatus{ID: 9, Name: "node03", IsLearner: true}
	for _, tc := range []struct {
		name    string
		members []MemberStatus
		remove  uint64
		want    error // nil: allowed
		detail  string
	}{
		{"healthy three", []MemberStatus{voter(1, "a", true), voter(2, "b", true), voter(3, "c", true)}, 3, nil, ""},
		{"removing the sick one of three", []MemberStatus{voter(1, "a", true), voter(2, "b", true), voter(3, "c", false)}, 3, nil, ""},
		{"one other down", []MemberStatus{voter(1, "a", true), voter(2, "b", false), voter(3, "c", true)}, 3, ErrQuorum, "b (connection refused)"},
		{"two of five left healthy", []MemberStatus{voter(1, "a", true), voter(2, "b", false), voter(3, "c", false), voter(4, "d", true), voter(5, "e", true)}, 5, ErrQuorum, "4 voting members remain and 3 of them must be healthy"},
		{"three of five left healthy", []MemberStatus{voter(1, "a", true), voter(2, "b", false), voter(3, "c", true), voter(4, "d", true), voter(5, "e", true)}, 5, nil, ""},
		{"two members, other healthy", []MemberStatus{voter(1, "a", true), voter(2, "b", true)}, 2, nil, ""},
		{"two members, other down", []MemberStatus{voter(1, "a", false), voter(2, "b", true)}, 2, ErrQuorum, ""},
		{"last voter", []MemberStatus{voter(1, "a", true), learner}, 1, ErrLastMember, "a is the only voting member"},
		{"a learner always may go", []MemberStatus{voter(1, "a", false), learner}, 9, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckRemoval(&ClusterStatus{Members: tc.members}, tc.remove)
			switch {
			case tc.want == nil && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Errorf("got %v, want %v", err, tc.want)
			case tc.want != nil && !strings.Contains(err.Error(), tc.detail):
				t.Errorf("error %q lacks %q", err, tc.detail)
			}
		})
	}
	if err := CheckRemoval(&ClusterStatus{Members: []MemberStatus{voter(1, "a", true)}}, 7); err == nil {
		t.Error("removing a non-member passed the check")
	}
}

func TestInitialClusterFromMemberList(t *testing.T) {
	self := Member{Name: "node02", Address: "10.0.0.3"}
	members := []*etcdserverpb.Member{
		{ID: 0xa, Name: "master01", PeerURLs: []string{"https://10.0.0.1:2380"}},
		{ID: 0xb, Name: "", PeerURLs: []string{"https://10.0.0.2:2380"}}, // added, never started
		{ID: 0xc, Name: "", PeerURLs: []string{self.PeerURL()}, IsLearner: true},
	}
	got := FormatInitialCluster(initialCluster(members, 0xc, self))
	want := "master01=https://10.0.0.1:2380,b=https://10.0.0.2:2380,node02=https://10.0.0.3:2380"
	if got != want {
		t.Errorf("initial cluster %s, want %s", got, want)
	}
}

func TestFindMember(t *testing.T) {
	self := Member{Name: "node02", Address: "10.0.0.3"}
	other := &etcdserverpb.Member{ID: 1, Name: "master01", PeerURLs: []string{"https://10.0.0.1:2380"}}
	if m, err := findMember([]*etcdserverpb.Member{other}, self); m != nil || err != nil {
		t.Errorf("found %v %v in a list without the member", m, err)
	}
	unstarted := &etcdserverpb.Member{ID: 2, PeerURLs: []string{self.PeerURL()}, IsLearner: true}
	if m, err := findMember([]*etcdserverpb.Member{other, unstarted}, self); m != unstarted || err != nil {
		t.Errorf("unstarted learner with our peer URL: %v %v", m, err)
	}
	moved := &etcdserverpb.Member{ID: 3, Name: "node02", PeerURLs: []string{"https://10.0.0.99:2380"}}
	if _, err := findMember([]*etcdserverpb.Member{other, moved}, self); !errors.Is(err, ErrMemberConflict) || !strings.Contains(err.Error(), "10.0.0.99") {
		t.Errorf("same name, other peer URL: %v", err)
	}
	taken := &etcdserverpb.Member{ID: 4, Name: "node09", PeerURLs: []string{self.PeerURL()}}
	if _, err := findMember([]*etcdserverpb.Member{taken}, self); !errors.Is(err, ErrMemberConflict) {
		t.Errorf("peer URL of another member: %v", err)
	}
}
