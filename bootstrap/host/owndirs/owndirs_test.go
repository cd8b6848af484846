package owndirs

import (
	"context"
	"strings"
	"testing"

	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/components/containerd/fakehost"
)

func TestWrapMarksWhatItCreates(t *testing.T) {
	ctx := context.Background()
	f := fakehost.New("n1")
	f.SetFile("/srv/existing/old.txt", "x", 0o644) // the operator's directory
	h := Wrap(f, "/etc/kubernetes/pki", "/etc/kubernetes", "/srv/existing", "")
	if err := h.WriteFile(ctx, "/etc/kubernetes/pki/ca.crt", []byte("ca"), host.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := h.WriteFile(ctx, "/srv/existing/new.conf", []byte("y"), host.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	for d, want := range map[string]bool{"/etc/kubernetes": true, "/etc/kubernetes/pki": true, "/srv/existing": false} {
		if got, err := Created(ctx, f, d); err != nil || got != want {
			t.Errorf("%s marked %v (%v), want %v", d, got, err, want)
		}
	}
	// Once: a second write creates no second marker, and the marker is written
	// before the file.
	n := len(f.Changes())
	_ = h.WriteFile(ctx, "/etc/kubernetes/admin.conf", []byte("a"), host.WriteOptions{Mode: 0o600})
	if got := len(f.Changes()) - n; got != 1 {
		t.Errorf("%d changes for one more write: %v", got, f.Changes())
	}
	ch := strings.Join(f.Changes(), "\n")
	if strings.Index(ch, "/etc/kubernetes/"+Marker) > strings.Index(ch, "/etc/kubernetes/pki/ca.crt") {
		t.Errorf("marker after the file:\n%s", ch)
	}
	// MkdirAll of the directory itself marks it.
	g := fakehost.New("n2")
	if err := Wrap(g, "/var/lib/x").MkdirAll(ctx, "/var/lib/x", 0o700); err != nil {
		t.Fatal(err)
	}
	if ok, _ := Created(ctx, g, "/var/lib/x"); !ok {
		t.Error("MkdirAll did not mark")
	}
	if Unwrap(h) != host.Host(f) {
		t.Error("Unwrap")
	}
}
