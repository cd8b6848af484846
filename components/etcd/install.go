package etcd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"github.com/kubeforge/kubeforge/bootstrap/bundle"
	"github.com/kubeforge/kubeforge/bootstrap/host"
)

// bundleEtcd is the etcd binary's path inside a bundle.
const bundleEtcd = "bin/etcd"

// InstallBinary puts the bundle's etcd at BinaryPath on h, unless the same binary
// is already there. The bundle is read where kubeforge runs (the host itself, or
// the machine driving it over SSH) and checked against its manifest first: a
// binary that does not match its checksum is refused by name, never installed.
// The write is atomic (temporary file and rename), so a running etcd keeps its
// old executable until it is restarted and no reader ever sees half a binary.
func InstallBinary(ctx context.Context, h host.Host, bundleDir string) (changed bool, err error) {
	b, err := bundle.Open(bundleDir)
	if err != nil {
		return false, fmt.Errorf("%w (pass --bundle with the directory holding bin/etcd and manifest.json)", err)
	}
	f, ok := b.Lookup(bundleEtcd)
	if !ok {
		return false, fmt.Errorf("bundle %s: its manifest lists no %s", bundleDir, bundleEtcd)
	}
	if err := b.VerifyFile(bundleEtcd); err != nil {
		return false, err
	}
	same, err := installedMatches(ctx, h, f)
	if err != nil {
		return false, err
	}
	if same {
		return false, nil
	}
	data, err := os.ReadFile(b.Path(bundleEtcd))
	if err != nil {
		return false, fmt.Errorf("bundle %s: %w", bundleDir, err)
	}
	// The file could have changed between VerifyFile and ReadFile; what gets
	// installed is what is checked.
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != f.SHA256 {
		return false, &bundle.MismatchError{Bundle: bundleDir, Path: bundleEtcd, Reason: "changed while it was being read"}
	}
	if err := h.WriteFile(ctx, BinaryPath, data, host.WriteOptions{Mode: 0o755}); err != nil {
		return false, err
	}
	return true, nil
}

// installedMatches reports whether BinaryPath on h already is the bundle's file.
func installedMatches(ctx context.Context, h host.Host, f bundle.File) (bool, error) {
	fi, err := h.Stat(ctx, BinaryPath)
	if host.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if fi.Size != f.Size || fi.Mode.Perm()&0o111 == 0 {
		return false, nil
	}
	// sha256sum on the host spares copying the binary back over SSH; ReadFile is
	// the fallback for a host without coreutils' sha256sum.
	c := host.Cmd{Argv: []string{"sha256sum", BinaryPath}, ReadOnly: true}
	if r, err := h.Run(ctx, c); err == nil && r.OK() {
		sum, _, _ := strings.Cut(strings.TrimSpace(string(r.Stdout)), " ")
		if len(sum) == sha256.Size*2 {
			return sum == f.SHA256, nil
		}
	}
	data, err := h.ReadFile(ctx, BinaryPath)
	if err != nil {
		return false, err
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]) == f.SHA256, nil
}
