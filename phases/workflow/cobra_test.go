package workflow

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// newTestCommand binds testTree to an "init" command under a root, like cmd/ does.
func newTestCommand(tr *trace, phases []Phase) (*cobra.Command, *Runner, *bytes.Buffer) {
	r := NewRunner()
	for _, p := range phases {
		r.AppendPhase(p)
	}
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Set up the first control-plane node",
		Args:  cobra.NoArgs,
		RunE:  func(_ *cobra.Command, args []string) error { return r.Run(args) },
	}
	cmd.Flags().String("cert-dir", "/etc/kubernetes/pki", "")
	cmd.PersistentFlags().String("config", "", "")
	r.BindToCommand(cmd)
	root := &cobra.Command{Use: "kubeforge", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(cmd)
	out := &bytes.Buffer{}
	root.SetOut(out)
	root.SetErr(out)
	return root, r, out
}

func execute(root *cobra.Command, args ...string) error {
	root.SetArgs(args)
	return root.Execute()
}

func TestPhaseSubcommandRunsOnlyThatLeaf(t *testing.T) {
	tr := &trace{}
	root, _, out := newTestCommand(tr, testTree(tr))
	if err := execute(root, "init", "phase", "certs", "apiserver"); err != nil {
		t.Fatal(err)
	}
	if tr.got() != "certs/apiserver" {
		t.Errorf("ran %q, want only certs/apiserver (not the certs group's own Run)", tr.got())
	}
	if strings.TrimSpace(out.String()) == "" || !strings.HasPrefix(out.String(), "[certs/apiserver] done in ") {
		t.Errorf("output %q", out)
	}
}

func TestPhaseSubcommandAlias(t *testing.T) {
	tr := &trace{}
	root, _, _ := newTestCommand(tr, testTree(tr))
	if err := execute(root, "init", "phase", "certs", "api"); err != nil {
		t.Fatal(err)
	}
	if tr.got() != "certs/apiserver" {
		t.Errorf("ran %q", tr.got())
	}
}

func TestPhaseSubcommandAllRunsGroup(t *testing.T) {
	tr := &trace{}
	root, _, _ := newTestCommand(tr, testTree(tr))
	if err := execute(root, "init", "phase", "certs", "all", "--skip-phases", "certs/etcd/peer"); err != nil {
		t.Fatal(err)
	}
	if want := "certs certs/ca certs/apiserver certs/etcd/server"; tr.got() != want {
		t.Errorf("ran %q, want %q", tr.got(), want)
	}
	// Flag values outlive Execute, so the nested case gets a fresh command tree.
	tr.ran = nil
	root, _, _ = newTestCommand(tr, testTree(tr))
	if err := execute(root, "init", "phase", "certs", "etcd", "all"); err != nil {
		t.Fatal(err)
	}
	if want := "certs/etcd/server certs/etcd/peer"; tr.got() != want {
		t.Errorf("nested all ran %q, want %q", tr.got(), want)
	}
}

func TestPhaseGroupAloneOnlyHelps(t *testing.T) {
	tr := &trace{}
	root, _, out := newTestCommand(tr, testTree(tr))
	if err := execute(root, "init", "phase", "certs"); err != nil {
		t.Fatal(err)
	}
	if tr.got() != "" {
		t.Errorf("group command ran %q", tr.got())
	}
	for _, sub := range []string{"all", "apiserver", "ca", "etcd"} {
		if !strings.Contains(out.String(), "  "+sub) {
			t.Errorf("help for certs lacks subcommand %q:\n%s", sub, out)
		}
	}
}

func TestPhaseSubcommandUnknownName(t *testing.T) {
	tr := &trace{}
	root, _, _ := newTestCommand(tr, testTree(tr))
	for _, args := range [][]string{
		{"init", "phase", "certz"},
		{"init", "phase", "certs", "apiservr"},
		{"init", "phase", "preflight", "extra"},
	} {
		err := execute(root, args...)
		if err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	if tr.got() != "" {
		t.Errorf("ran %q on bad input", tr.got())
	}
}

func TestParentCommandSkipPhasesFlag(t *testing.T) {
	tr := &trace{}
	root, _, _ := newTestCommand(tr, testTree(tr))
	if err := execute(root, "init", "--skip-phases", "certs,overlay"); err != nil {
		t.Fatal(err)
	}
	if tr.got() != "preflight" {
		t.Errorf("ran %q", tr.got())
	}
	tr.ran = nil
	err := execute(root, "init", "--skip-phases", "nope")
	if err == nil || !strings.Contains(err.Error(), `unknown phase "nope"`) {
		t.Errorf("got %v", err)
	}
}

func TestGeneratedCommandFlags(t *testing.T) {
	tr := &trace{}
	phases := testTree(tr)
	local := pflag.NewFlagSet("apiserver", pflag.ContinueOnError)
	local.String("apiserver-cert-extra-sans", "", "")
	phases[1].Phases[1].InheritFlags = []string{"cert-dir", "config"}
	phases[1].Phases[1].LocalFlags = local
	root, _, _ := newTestCommand(tr, phases)
	init, _, err := root.Find([]string{"init"})
	if err != nil {
		t.Fatal(err)
	}
	leaf, _, err := root.Find([]string{"init", "phase", "certs", "apiserver"})
	if err != nil || leaf.Name() != "apiserver" {
		t.Fatalf("find leaf: %v %v", leaf, err)
	}
	all, _, _ := root.Find([]string{"init", "phase", "certs", "all"})
	ca, _, _ := root.Find([]string{"init", "phase", "certs", "ca"})
	for _, tc := range []struct {
		cmd  *cobra.Command
		flag string
		want bool
	}{
		{leaf, "cert-dir", true},
		{leaf, "apiserver-cert-extra-sans", true},
		{leaf, "skip-phases", false},
		{all, "cert-dir", true},
		{all, "apiserver-cert-extra-sans", true},
		{all, "skip-phases", true},
		{ca, "cert-dir", false},
		{ca, "apiserver-cert-extra-sans", false},
		{init, "skip-phases", true},
	} {
		t.Run(tc.cmd.Name()+" --"+tc.flag, func(t *testing.T) {
			if got := tc.cmd.Flags().Lookup(tc.flag) != nil; got != tc.want {
				t.Errorf("%s --%s present=%v, want %v", tc.cmd.CommandPath(), tc.flag, got, tc.want)
			}
		})
	}
	// An inherited flag is the same flag: setting it on the phase command is seen
	// by whatever reads the parent's flag.
	if err := execute(root, "init", "phase", "certs", "apiserver", "--cert-dir", "/tmp/pki"); err != nil {
		t.Fatal(err)
	}
	if v, _ := init.Flags().GetString("cert-dir"); v != "/tmp/pki" {
		t.Errorf("parent's --cert-dir is %q", v)
	}
	if !strings.Contains(init.Long, "\n      server ") {
		t.Errorf("init help does not list phases:\n%s", init.Long)
	}
}

func TestDataInitializerSeesPhaseCommand(t *testing.T) {
	tr := &trace{}
	root, r, _ := newTestCommand(tr, testTree(tr))
	var seen string
	r.SetDataInitializer(func(cmd *cobra.Command, args []string) (RunData, error) {
		seen = cmd.CommandPath()
		v, err := cmd.Flags().GetString("config")
		return v, err
	})
	if err := execute(root, "init", "phase", "preflight", "--config", "/etc/kubeforge.yaml"); err != nil {
		t.Fatal(err)
	}
	if seen != "kubeforge init phase preflight" {
		t.Errorf("initializer got command %q", seen)
	}
}

func TestHiddenPhaseHasNoCommandButRuns(t *testing.T) {
	tr := &trace{}
	phases := testTree(tr)
	phases[2].Hidden = true
	root, _, _ := newTestCommand(tr, phases)
	if c, _, err := root.Find([]string{"init", "phase", "overlay"}); err == nil && c.Name() == "overlay" {
		t.Error("hidden phase got a subcommand")
	}
	if err := execute(root, "init"); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(tr.got(), "overlay") {
		t.Errorf("hidden phase did not run: %q", tr.got())
	}
}

func TestBindPanicsOnUnknownInheritedFlag(t *testing.T) {
	defer func() {
		if p := recover(); p == nil || !strings.Contains(p.(string), "--no-such-flag") {
			t.Errorf("panic %v, want one naming the flag", p)
		}
	}()
	tr := &trace{}
	phases := testTree(tr)
	phases[0].InheritFlags = []string{"no-such-flag"}
	newTestCommand(tr, phases)
}
