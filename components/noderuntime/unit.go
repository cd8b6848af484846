package noderuntime

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/components/component"
)

// Names on a host.
const (
	UnitName = "kubeforge-node.service"
	// BinaryPath is where the unit runs kubeforge from; Install puts the
	// running kubeforge there.
	BinaryPath = "/usr/local/bin/kubeforge"
	// DefaultStatusAddress serves the runtime's /status (features and the
	// balancer's pool) on loopback.
	DefaultStatusAddress = "127.0.0.1:9474"
	// DefaultAPILBListen is the node-local API load balancer's address.
	DefaultAPILBListen = "127.0.0.1:6444"
)

// LegacyUnits are the per-feature units the runtime replaces: one process
// each for the overlay agent and the CSR approver. Install stops, disables
// and deletes them; Remove does too.
var LegacyUnits = []string{"kubeforge-overlay.service", "kubeforge-csr-approver.service"}

// Footprint: the runtime is kubeforge itself as one unit on every host (the
// binary stays: the backup and renewal timers run it too).
var Footprint = component.Footprint{
	Name:  "node-runtime",
	Units: append([]string{UnitName}, LegacyUnits...),
}

// Unit is kubeforge-node.service. Every directive loads on systemd 219.
//
//   - Type=notify: ready once the features that gate readiness (the overlay
//     agent: lease held, device, CNI config and every peer programmed) are,
//     so `systemctl start` ends when pods can be networked.
//   - TimeoutStartSec=120: an overlay that cannot get its subnet keeps
//     trying inside; after two minutes systemd restarts the process.
//   - Restart=always, StartLimitInterval=0: the supervisor restarts a failed
//     feature itself; systemd only restarts a process that could not start
//     at all or died.
//   - inputs is the digest of every file the features read at start (the
//     header line), so a changed config or credential restarts the runtime;
//     the files hold the credentials, the unit none.
func Unit(args []string, inputs string) []byte {
	return []byte(`# kubeforge node runtime, written by kubeforge. Inputs: ` + inputs + `
[Unit]
Description=kubeforge node runtime (overlay agent, CSR approver, API load balancer)
Documentation=https://github.com/kubeforge/kubeforge
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
` + execStart(args) + `
Restart=always
RestartSec=5s
StartLimitInterval=0
TimeoutStartSec=120
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
`)
}

// execStart is the ExecStart= line on one line (etcd.LintUnit reads units
// line by line), each word quoted by component.ExecQuote.
func execStart(args []string) string {
	words := []string{component.ExecQuote(BinaryPath), "node", "run"}
	for _, a := range args {
		words = append(words, component.ExecQuote(a))
	}
	return "ExecStart=" + strings.Join(words, " ")
}

// InstallOptions are what Install needs.
type InstallOptions struct {
	Host host.Host
	// Args are `kubeforge node run`'s flags (Args renders them).
	Args []string
	// Inputs are the files the features read at start; their content goes
	// into the unit's digest. A missing one counts as absent.
	Inputs []string
	// Executable is the kubeforge to install at BinaryPath; "" means the
	// running one.
	Executable string
	Logf       func(string, ...any)
}

// Install makes kubeforge-node.service the host's one kubeforge daemon: it
// stops, disables and deletes the per-feature units it replaces (the upgrade
// from kubeforge-overlay.service and kubeforge-csr-approver.service), installs
// kubeforge at BinaryPath, writes the unit and starts it, or restarts it when
// the unit, the binary or an input changed. It reports whether it changed
// anything.
func Install(ctx context.Context, o InstallOptions) (bool, error) {
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	h := o.Host
	removed, err := removeUnits(ctx, h, LegacyUnits, o.Logf)
	if err != nil {
		return false, err
	}
	exe := o.Executable
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return false, fmt.Errorf("finding the kubeforge binary to install: %w", err)
		}
	}
	bin, err := os.ReadFile(exe)
	if err != nil {
		return false, fmt.Errorf("reading kubeforge's own executable %s: %w", exe, err)
	}
	binChanged, err := installBinary(ctx, h, bin)
	if err != nil {
		return false, err
	}
	if binChanged {
		o.Logf("installed %s from %s", BinaryPath, exe)
	}
	digest, err := Inputs(ctx, h, bin, o.Inputs)
	if err != nil {
		return false, err
	}
	unitChanged, started, err := component.RunUnit(ctx, h, UnitName, Unit(o.Args, digest), binChanged || len(removed) > 0)
	if err != nil {
		return false, err
	}
	if unitChanged {
		o.Logf("wrote %s", UnitName)
	}
	if started {
		o.Logf("(re)started %s", UnitName)
	}
	return len(removed) > 0 || binChanged || unitChanged || started, nil
}

// Inputs is the digest of the binary and of every input file's content.
func Inputs(ctx context.Context, h host.Host, bin []byte, files []string) (string, error) {
	sum := sha256.New()
	b := sha256.Sum256(bin)
	fmt.Fprintf(sum, "binary %x", b)
	files = append([]string(nil), files...)
	sort.Strings(files)
	for _, p := range files {
		data, err := h.ReadFile(ctx, p)
		switch {
		case host.IsNotExist(err):
			fmt.Fprintf(sum, "\n%s absent", p)
		case err != nil:
			return "", fmt.Errorf("%s: reading %s: %w", h.Name(), p, err)
		default:
			fmt.Fprintf(sum, "\n%s %x", p, sha256.Sum256(data))
		}
	}
	return "sha256:" + hex.EncodeToString(sum.Sum(nil)), nil
}

// installBinary writes bin to BinaryPath unless the same bytes are there.
func installBinary(ctx context.Context, h host.Host, bin []byte) (bool, error) {
	sum := sha256.Sum256(bin)
	want := hex.EncodeToString(sum[:])
	if fi, err := h.Stat(ctx, BinaryPath); err == nil && fi.Size == int64(len(bin)) {
		c := host.Cmd{Argv: []string{"sha256sum", BinaryPath}, ReadOnly: true}
		if r, err := h.Run(ctx, c); err == nil && r.OK() {
			got, _, _ := strings.Cut(strings.TrimSpace(string(r.Stdout)), " ")
			if got == want {
				return false, nil
			}
		}
	} else if err != nil && !host.IsNotExist(err) {
		return false, fmt.Errorf("%s: %s: %w", h.Name(), BinaryPath, err)
	}
	// Atomic replace: a running process keeps its old executable until restarted.
	if err := h.WriteFile(ctx, BinaryPath, bin, host.WriteOptions{Mode: 0o755}); err != nil {
		return false, fmt.Errorf("%s: writing %s: %w", h.Name(), BinaryPath, err)
	}
	return true, nil
}

// Remove stops, disables and deletes kubeforge-node.service and the units it
// replaced, so no feature can put back what reset takes away. It reports what
// it did; a host without them is fine.
func Remove(ctx context.Context, h host.Host, logf func(string, ...any)) ([]string, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	return removeUnits(ctx, h, append([]string{UnitName}, LegacyUnits...), logf)
}

// Present reports whether the unit file of the runtime (or of a unit it
// replaced) is on h. It looks at files only, so it needs no systemd.
func Present(ctx context.Context, h host.Host) (bool, error) {
	for _, u := range append([]string{UnitName}, LegacyUnits...) {
		p := "/etc/systemd/system/" + u
		_, err := h.Stat(ctx, p)
		if err == nil {
			return true, nil
		}
		if !host.IsNotExist(err) {
			return false, fmt.Errorf("%s: %s: %w", h.Name(), p, err)
		}
	}
	return false, nil
}

func removeUnits(ctx context.Context, h host.Host, units []string, logf func(string, ...any)) ([]string, error) {
	var done []string
	for _, u := range units {
		st, err := h.Units().Status(ctx, u)
		if err != nil {
			return done, fmt.Errorf("%s: %s: %w", h.Name(), u, err)
		}
		if st.LoadState == "not-found" || st.LoadState == "" {
			continue
		}
		if component.Running(st) || st.ActiveState == "failed" {
			if err := h.Units().Stop(ctx, u); err != nil {
				return done, fmt.Errorf("%s: stopping %s: %w", h.Name(), u, err)
			}
		}
		if err := h.Units().Disable(ctx, u); err != nil {
			return done, fmt.Errorf("%s: disabling %s: %w", h.Name(), u, err)
		}
		if err := h.Units().RemoveUnit(ctx, u); err != nil {
			return done, fmt.Errorf("%s: removing %s: %w", h.Name(), u, err)
		}
		logf("stopped, disabled and removed %s", u)
		done = append(done, u)
	}
	return done, nil
}
