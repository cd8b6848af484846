// Command bundle-manifest seals a freshly built bundle directory: it checks that each
// binary in bin/ is statically linked and reports the version it was built as, then
// writes manifest.json with every file's version and sha256. Used by
// hack/build-bundle.sh.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/kubeforge/kubeforge/bootstrap/bundle"
)

func main() {
	dir := flag.String("dir", "", "bundle directory")
	k8s := flag.String("kubernetes", "", "Kubernetes version the k8s binaries were built from")
	etcd := flag.String("etcd", "", "etcd version etcd and etcdctl were built from")
	flag.Parse()
	if err := run(*dir, *k8s, *etcd); err != nil {
		fmt.Fprintln(os.Stderr, "bundle-manifest:", err)
		os.Exit(1)
	}
}

// versionArgs says how each binary reports its version.
var versionArgs = map[string][]string{
	"etcd":    {"--version"},
	"etcdctl": {"version"},
	"kubectl": {"version", "--client"},
}

func run(dir, k8s, etcd string) error {
	if dir == "" || k8s == "" || etcd == "" {
		return fmt.Errorf("--dir, --kubernetes and --etcd are required")
	}
	entries, err := os.ReadDir(filepath.Join(dir, "bin"))
	if err != nil {
		return err
	}
	versions := map[string]string{}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".tmp") {
			continue
		}
		want := k8s
		if strings.HasPrefix(name, "etcd") {
			want = etcd
		}
		p := filepath.Join(dir, "bin", name)
		static, err := bundle.IsStatic(p)
		if err != nil {
			return err
		}
		if !static {
			return fmt.Errorf("%s is dynamically linked; bundle binaries must be static (CentOS 7 has glibc 2.17)", p)
		}
		args, ok := versionArgs[name]
		if !ok {
			args = []string{"--version"}
		}
		out, err := exec.Command(p, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %s: %v: %s", p, strings.Join(args, " "), err, out)
		}
		if !strings.Contains(string(out), strings.TrimPrefix(want, "v")) {
			return fmt.Errorf("%s reports %q, want version %s", p, strings.TrimSpace(string(out)), want)
		}
		versions["bin/"+name] = want
	}
	m, err := bundle.WriteManifest(dir, k8s, etcd, versions)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "[bundle] manifest: %d files, kubernetes %s, etcd %s\n", len(m.Files), k8s, etcd)
	return nil
}
