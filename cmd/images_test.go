package cmd

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/kubeforge/kubeforge/components/containerd/containerdtest"
	"github.com/kubeforge/kubeforge/components/images"
)

// TestImagesCommands imports the bundle's archives through the CLI into a real,
// private containerd and lists them back as JSON.
func TestImagesCommands(t *testing.T) {
	d := containerdtest.Start(t)
	bdir := containerdtest.BundleDir()
	out, err := runRoot(t, "", "images", "import", "--address", d.Socket, "--snapshotter", d.Snapshotter,
		bdir+"/images/pause.tar", bdir+"/images/httpecho.tar")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "imported "+images.PauseImage) || !strings.Contains(out, "imported "+images.TestServerImage) {
		t.Errorf("import output:\n%s", out)
	}
	out, err = runRoot(t, "", "images", "list", "-o", "json", "--address", d.Socket, "--snapshotter", d.Snapshotter)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var list []images.Image
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(list) != 2 || list[0].Name != images.TestServerImage || !list[0].Unpacked || list[1].Name != images.PauseImage {
		t.Errorf("list %+v", list)
	}
	if out, err := runRoot(t, "", "images", "import", "--address", d.Socket, "--snapshotter", d.Snapshotter, "/nonexistent.tar"); err == nil || !strings.Contains(out, "/nonexistent.tar") {
		t.Errorf("missing file: %v\n%s", err, out)
	}
}
