package etcd

import (
	"slices"
	"testing"
)

func TestPeerClientURLs(t *testing.T) {
	vals := map[string]any{
		"initial-cluster":       "master01=https://192.168.161.151:2380,node01=https://192.168.161.152:2380,node02=https://192.168.161.153:2380",
		"advertise-client-urls": "https://192.168.161.153:2379",
	}
	got := peerClientURLs(vals, []string{"https://192.168.161.153:2379"})
	want := []string{"https://192.168.161.151:2379", "https://192.168.161.152:2379"}
	if !slices.Equal(got, want) {
		t.Errorf("peerClientURLs = %v, want %v", got, want)
	}
	if got := peerClientURLs(map[string]any{}, nil); got != nil {
		t.Errorf("without a config: %v", got)
	}
}

func TestJoinUser(t *testing.T) {
	if JoinUser("node01") != "kubeforge-etcd-join-node01" {
		t.Errorf("JoinUser = %q", JoinUser("node01"))
	}
	if UserOf(nil) != "" {
		t.Error("UserOf(nil) is not empty")
	}
}
