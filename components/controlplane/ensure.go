package controlplane

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/components/component"
)

// Result says what Ensure did to one component.
type Result struct {
	// Changed is false when files, unit and unit state were already as wanted.
	Changed bool
	// Action is "started", "restarted" or "" (running and unchanged).
	Action string
	// Files lists the files written (configuration files and the unit).
	Files []string
}

// Detail is a one-line summary for the phase output.
func (r Result) Detail(c Component) string {
	switch {
	case r.Action != "":
		return fmt.Sprintf("%s %s", c.UnitName(), r.Action)
	case r.Changed:
		return fmt.Sprintf("%s updated", c.UnitName())
	}
	return fmt.Sprintf("%s is running with its current configuration", c.UnitName())
}

// startGrace is how long Ensure waits for a start job before leaving it to
// systemd: long enough to report a unit that cannot even be executed, short
// enough not to wait for readiness, which is Wait's job (with progress and the
// journal on failure).
const startGrace = time.Second

// Ensure writes the component's directories, files and unit on h, enables the
// unit and starts it, or restarts it when its unit changed (which includes any
// change of an input, see Unit). A component in the wanted state is left alone.
// The apiserver port is checked first when the unit is not running: a port held
// by something else fails here, before anything is written.
func Ensure(ctx context.Context, h host.Host, c Component, logf func(string, ...any)) (Result, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	var res Result
	units := h.Units()
	st, err := units.Status(ctx, c.UnitName())
	if err != nil {
		return res, err
	}
	running := component.Running(st)
	if !running {
		if err := CheckPortFree(ctx, h, c); err != nil {
			return res, err
		}
	}
	if _, err := h.Stat(ctx, c.Binary); err != nil {
		if host.IsNotExist(err) {
			return res, fmt.Errorf("%s: %s is not installed (run `kubeforge init phase install-binaries`)", h.Name(), c.Binary)
		}
		return res, err
	}
	if err := checkInputs(ctx, h, c); err != nil {
		return res, err
	}
	for _, d := range c.Dirs {
		fi, err := h.Stat(ctx, d.Path)
		switch {
		case err == nil && fi.IsDir():
			continue
		case err == nil:
			return res, fmt.Errorf("%s: %s exists and is not a directory", h.Name(), d.Path)
		case !host.IsNotExist(err):
			return res, err
		}
		if err := h.MkdirAll(ctx, d.Path, d.Mode); err != nil {
			return res, err
		}
		res.Changed = true
	}
	for _, f := range c.Files {
		changed, err := WriteIfChanged(ctx, h, f)
		if err != nil {
			return res, err
		}
		if changed {
			logf("wrote %s", f.Path)
			res.Files = append(res.Files, f.Path)
			res.Changed = true
		}
	}
	digest, err := Inputs(ctx, h, c)
	if err != nil {
		return res, err
	}
	unitChanged, err := units.WriteUnit(ctx, c.UnitName(), c.Unit(digest))
	if err != nil {
		return res, err
	}
	if unitChanged {
		logf("wrote unit %s", c.UnitName())
		res.Files = append(res.Files, c.UnitName())
		res.Changed = true
	}
	if st.Enabled != "enabled" {
		if err := units.Enable(ctx, c.UnitName()); err != nil {
			return res, err
		}
		res.Changed = true
	}
	switch {
	case !running:
		res.Action = "started"
		err = startAsync(ctx, h, c.UnitName(), false)
	case unitChanged:
		res.Action = "restarted"
		err = startAsync(ctx, h, c.UnitName(), true)
	}
	if res.Action != "" {
		res.Changed = true
	}
	return res, err
}

// startAsync (re)starts a unit without waiting for a Type=notify daemon to become
// ready. An immediate failure (the binary cannot be executed, the unit does not
// load) is reported with the unit's last journal lines.
func startAsync(ctx context.Context, h host.Host, unit string, restart bool) error {
	done := make(chan error, 1)
	go func() {
		if restart {
			done <- h.Units().Restart(ctx, unit)
		} else {
			done <- h.Units().Start(ctx, unit)
		}
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("starting %s on %s: %w%s", unit, h.Name(), err, component.JournalTail(ctx, h, unit, 15))
		}
	case <-time.After(startGrace):
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// WriteIfChanged writes f unless the file already has its content and mode. It
// reports whether it wrote.
func WriteIfChanged(ctx context.Context, h host.Host, f File) (bool, error) {
	mode := f.Mode
	if mode == 0 {
		mode = 0o644
	}
	return component.WriteIfChanged(ctx, h, f.Path, f.Data, mode, f.Secret)
}

// inputFlag reports whether a flag names a file the daemon reads at start.
func inputFlag(name string) bool {
	for _, s := range []string{"-file", "kubeconfig", "-config", "cafile", "certfile", "keyfile", "-certificate", "-client-key", "-certificate-authority"} {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

// inputFiles lists the files the component's flags name, sorted by flag.
func inputFiles(c Component) []struct{ flag, path string } {
	var names []string
	for k := range c.Args {
		if inputFlag(k) {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	var out []struct{ flag, path string }
	for _, k := range names {
		for _, p := range strings.Split(c.Args[k], ",") {
			if strings.HasPrefix(p, "/") {
				out = append(out, struct{ flag, path string }{k, p})
			}
		}
	}
	return out
}

// checkInputs fails, before anything is written, when a file the daemon reads
// is missing and is not one Ensure writes itself: the daemon could only crash.
func checkInputs(ctx context.Context, h host.Host, c Component) error {
	for _, in := range inputFiles(c) {
		if slices.ContainsFunc(c.Files, func(f File) bool { return f.Path == in.path }) {
			continue
		}
		if _, err := h.Stat(ctx, in.path); err != nil {
			if host.IsNotExist(err) {
				return fmt.Errorf("%s: %s reads %s (--%s), which does not exist (run the certs and kubeconfig phases first)", h.Name(), c.Name, in.path, in.flag)
			}
			return err
		}
	}
	return nil
}

// reloadedFlags name, per component, the files the daemon re-reads by itself
// while it runs: kube-apiserver's serving certificate, its front-proxy client
// certificate and its etcd and kubelet client certificates (the upstream code
// is cited in components/renewal/units.go). They stay out of the input digest:
// a renewed certificate there needs no restart, and `kubeforge certs renew`
// does not restart the apiserver for it, so the digest must not ask for one.
var reloadedFlags = map[string][]string{
	APIServer: {"tls-cert-file", "tls-private-key-file", "proxy-client-cert-file", "proxy-client-key-file",
		"etcd-certfile", "etcd-keyfile", "kubelet-client-certificate", "kubelet-client-key"},
}

// Inputs is the digest of everything the daemon reads when it starts and does
// not reload by itself: the binary (by size and modification time: install
// only rewrites a binary whose content differs, and hashing 100 MB per run buys
// nothing over that) and the content of every file its flags name except those
// of reloadedFlags. It goes into the unit, so a changed kubeconfig, CA, key
// file of the service accounts, configuration or binary restarts the daemon on
// the next run.
func Inputs(ctx context.Context, h host.Host, c Component) (string, error) {
	sum := sha256.New()
	fi, err := h.Stat(ctx, c.Binary)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(sum, "binary %s %d ", c.Binary, fi.Size)
	_ = binary.Write(sum, binary.BigEndian, fi.ModTime.UnixNano())
	for _, in := range inputFiles(c) {
		if slices.Contains(reloadedFlags[c.Name], in.flag) {
			continue
		}
		data, err := h.ReadFile(ctx, in.path)
		if err != nil {
			return "", err
		}
		fs := sha256.Sum256(data)
		fmt.Fprintf(sum, "\n%s %s %x", in.flag, in.path, fs)
	}
	return "sha256:" + hex.EncodeToString(sum.Sum(nil)), nil
}

// Remove undoes Ensure for reset: stops and disables the units (scheduler and
// controller-manager before the apiserver they talk to), removes them and the
// configuration files kubeforge wrote, and the audit log directory. Certificates,
// kubeconfigs, binaries and etcd data are other phases' to remove. Missing pieces
// are not an error, so a partly initialized or already reset host is fine.
func Remove(ctx context.Context, h host.Host, o Options, logf func(string, ...any)) error {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	for i := len(Names) - 1; i >= 0; i-- {
		unit := Names[i] + ".service"
		st, err := h.Units().Status(ctx, unit)
		if err != nil {
			return err
		}
		if st.LoadState == "not-found" {
			continue
		}
		if component.Running(st) {
			if err := h.Units().Stop(ctx, unit); err != nil {
				return err
			}
		}
		if st.Enabled == "enabled" {
			if err := h.Units().Disable(ctx, unit); err != nil {
				return err
			}
		}
		if err := h.Units().RemoveUnit(ctx, unit); err != nil {
			return err
		}
		logf("removed %s", unit)
	}
	for _, p := range []string{o.AuditPolicyPath(), o.EncryptionConfigPath(), o.AuthenticationConfigPath(), AuditLogDir} {
		if _, err := h.Stat(ctx, p); host.IsNotExist(err) {
			continue
		}
		if err := h.Remove(ctx, p); err != nil {
			return err
		}
		logf("removed %s", p)
	}
	return nil
}
