package joinphases

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/clusterinfo"
	"github.com/kubeforge/kubeforge/components/component"
	"github.com/kubeforge/kubeforge/components/containerd"
	"github.com/kubeforge/kubeforge/components/controlplane"
	"github.com/kubeforge/kubeforge/components/install"
	"github.com/kubeforge/kubeforge/components/inventory"
	"github.com/kubeforge/kubeforge/components/kubelet"
	"github.com/kubeforge/kubeforge/phases/rundata"
	"github.com/kubeforge/kubeforge/phases/workflow"
	"github.com/kubeforge/kubeforge/preflight"
)

// joinData asserts the run data to join's, resolved (rundata.From runs
// discovery once).
func joinData(d workflow.RunData, phase string) (*Data, error) {
	if _, err := rundata.From(d, phase); err != nil {
		return nil, err
	}
	data, ok := d.(*Data)
	if !ok {
		return nil, fmt.Errorf("phase %s: run data is %T, not join's", phase, d)
	}
	return data, nil
}

func discoveryPhase() workflow.Phase {
	return workflow.Phase{
		Name:  "discovery",
		Short: "Find the cluster and verify its CA before trusting it",
		Long: `Fetch cluster-info from the endpoint without credentials, verify the bootstrap
signer's signature for the join token and pin the CA by its public-key hash; then,
trusting that CA, read the cluster configuration (and with --certificate-key the
encrypted certificates) with the token, and find this host in the configuration.
A cluster-info not yet signed for the token (one created a moment ago) is read again
until --discovery-timeout. Only reads: a wrong hash, an unknown or expired token, an
unreachable endpoint or a wrong certificate key fail here, before anything on the
host has changed. It
runs first because every later phase (preflight included) needs what it finds.`,
		Run: func(d workflow.RunData) error {
			data, err := joinData(d, "discovery")
			if err != nil {
				return err
			}
			res, err := data.Discovered()
			n := data.Node()
			if errors.Is(err, ErrNoEndpoint) {
				return workflow.Unchanged("no ENDPOINT: cluster %s and host %s (%s) from --config; nothing discovered", data.Config().Metadata.Name, n.Name, n.Address)
			}
			roles := make([]string, len(n.Roles))
			for i, r := range n.Roles {
				roles[i] = string(r)
			}
			return workflow.Unchanged("cluster %s at %s (CA %s) trusted; this host is %s (%s), roles %s",
				data.Config().Metadata.Name, res.Server, certs.CAHash(res.CA), n.Name, n.Address, strings.Join(roles, ", "))
		},
	}
}

// RerunUnits tell a re-run of join from a first run: containerd's unit is the
// first thing join writes once its preflight passed, the kubelet's the first
// before /etc/kubernetes fills and ports are taken. apply asks the same.
var RerunUnits = []string{containerd.UnitName, kubelet.UnitName}

func preflightPhase() workflow.Phase {
	return workflow.Phase{
		Name:  "preflight",
		Short: "Check the host (kernel, modules, sysctls, swap, ports)",
		Long: `Run the pre-flight checks of 'kubeforge preflight' for this host's roles,
against the cluster configuration discovery fetched (time server, CIDRs, ports),
so they work on a host the hosts table does not list. With --fix, apply the fixes
of the failed checks first (chrony, sysctls, modules, swap, firewall ...) and check
again; --ignore-preflight-errors=NAME,... (or all) makes checks non-fatal. A
failed check stops the join before anything else is changed. On a host that join set up before, in whole or in
part (its containerd or kubelet unit is kubeforge's, or kubeforge created
/etc/kubernetes), the fresh-host checks (free ports, empty
/etc/kubernetes) are skipped, so that join can be re-run to converge the host.`,
		Run: func(d workflow.RunData) error {
			data, err := joinData(d, "preflight")
			if err != nil {
				return err
			}
			ctx, h := data.Context(), data.Host()
			log := &lineWriter{log: data.Logger().Printf}
			jf := data.JoinFlags()
			opts := preflight.Options{DryRun: data.DryRun(), Log: log, Fix: jf.FixPreflight, IgnoreErrors: jf.IgnorePreflightErrors,
				FixHint: "re-running the join command with `--fix`"}
			unit, err := component.SetUpBefore(ctx, h, data.KubeconfigDir(), RerunUnits...)
			if err != nil {
				return err
			}
			if unit != "" {
				data.Logger().Printf("%s is kubeforge's: join ran here before, so the fresh-host checks (%s) do not apply",
					unit, strings.Join(preflight.FreshHostChecks, ", "))
				opts.Checks = preflight.RerunChecks
			}
			rep, err := preflight.Run(ctx, h, data.Config(), data.Node(), opts)
			var failed *preflight.FailedError
			if err != nil && !errors.As(err, &failed) {
				return err
			}
			if werr := rep.WriteText(log); werr != nil {
				return werr
			}
			log.flush()
			if err != nil {
				return err
			}
			if len(rep.Fixes) > 0 {
				return nil // changed the host
			}
			return workflow.Unchanged("all checks passed on %s", h.Name())
		},
	}
}

// lineWriter turns written text into logger lines.
type lineWriter struct {
	log func(string, ...any)
	buf []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		if line := strings.TrimSpace(string(w.buf[:i])); line != "" {
			w.log("%s", strings.TrimPrefix(line, "[preflight] "))
		}
		w.buf = w.buf[i+1:]
	}
}

func (w *lineWriter) flush() {
	if len(bytes.TrimSpace(w.buf)) > 0 {
		w.log("%s", strings.TrimSpace(string(w.buf)))
	}
	w.buf = nil
}

var _ io.Writer = (*lineWriter)(nil)

func installPhase() workflow.Phase {
	return workflow.Phase{
		Name:  "install-binaries",
		Short: "Install the release binaries this host's roles need from the bundle",
		Long: `Install the binaries of this host's roles (kubelet and kube-proxy on a worker;
the control-plane binaries and kubectl on a control-plane host) into
/usr/local/bin, each checked against the bundle's manifest first. Binaries with
the right checksum are left alone. etcd and containerd come with their phases.`,
		Run: func(d workflow.RunData) error {
			data, err := joinData(d, "install-binaries")
			if err != nil {
				return err
			}
			names := inventory.ForRoles(data.Node().Roles)
			if _, err := install.Verify(data.BundleDir(), names...); err != nil {
				return err
			}
			res, err := install.Binaries(data.Context(), install.Options{Host: data.Host(), BundleDir: data.BundleDir(), Logf: data.Logger().Printf}, names...)
			if err != nil {
				return err
			}
			if !res.Changed() {
				return workflow.Unchanged("%s already installed", strings.Join(res.Unchanged, ", "))
			}
			data.Logger().Printf("%d binaries installed into %s", len(res.Installed), install.DefaultBinDir)
			return nil
		},
	}
}

// certFilesFor picks what a host of these roles needs from the uploaded
// certificates: an etcd member its member certificates (issued for it on the
// control plane; no CA key), a control-plane host every shared file. Workers
// need none.
func certFilesFor(n *config.Host, uploaded map[string][]byte) (map[string][]byte, error) {
	want := []string{}
	if n.HasRole(config.RoleEtcd) {
		want = certs.EtcdMemberHandoverFiles
	}
	if n.HasRole(config.RoleControlPlane) {
		want = certs.SharedFiles
	}
	out := map[string][]byte{}
	for _, f := range want {
		data, ok := uploaded[f]
		if !ok {
			return nil, fmt.Errorf("the uploaded certificates lack %s, which a host with roles %v needs", f, n.Roles)
		}
		out[f] = data
	}
	return out, nil
}

// keepExistingPairs drops from files the certificate/key pairs the host has
// already and that expire no earlier than the uploaded ones: a member keeps its
// certificates across reruns of join with the same hand-over, and a newer
// hand-over (`kubeforge init phase upload-certs` on the control plane) renews
// them. The pairs to replace are returned; they are written over the old ones.
func keepExistingPairs(ctx context.Context, h host.Host, certDir string, files map[string][]byte) (map[string][]byte, error) {
	replace := map[string][]byte{}
	for rel := range files {
		base, ok := strings.CutSuffix(rel, ".crt")
		if !ok || rel == "ca.crt" || strings.HasSuffix(rel, "/ca.crt") {
			continue
		}
		if _, ok := files[base+".key"]; !ok {
			continue
		}
		cur, e1 := h.ReadFile(ctx, path.Join(certDir, rel))
		_, e2 := h.Stat(ctx, path.Join(certDir, base+".key"))
		if e1 != nil || e2 != nil {
			continue
		}
		old, err := certs.ParseCertPEM(cur)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path.Join(certDir, rel), err)
		}
		upl, err := certs.ParseCertPEM(files[rel])
		if err != nil {
			return nil, fmt.Errorf("uploaded %s: %w", rel, err)
		}
		if upl.NotAfter.After(old.NotAfter) {
			replace[rel], replace[base+".key"] = files[rel], files[base+".key"]
		}
		delete(files, rel)
		delete(files, base+".key")
	}
	return replace, nil
}

func certsPhase() workflow.Phase {
	return workflow.Phase{
		Name:  "certs",
		Short: "Write the cluster CA, and the certificates an etcd or control-plane host needs",
		Long: `Write the cluster CA certificate pinned by discovery as ca.crt; on an etcd
member the etcd CA certificate and this member's server, peer, health-check and
overlay client certificates, issued for it on the control plane and decrypted
from kube-system/kubeforge-etcd-members with the etcd certificate key (no CA
key: the member cannot issue certificates); on a control-plane host every shared
CA and key and the encryption configuration of Secrets at rest (its own
certificates are issued by the control-plane-certs phase). Keys are 0600. A member certificate pair already on the host is kept.
A file that exists with other content is an error naming it: the host belongs to
another cluster.`,
		Run: func(d workflow.RunData) error {
			data, err := joinData(d, "certs")
			if err != nil {
				return err
			}
			res, err := data.Discovered()
			if err != nil {
				return fmt.Errorf("phase certs: %w", err)
			}
			files, err := certFilesFor(data.Node(), res.Certs)
			if err != nil {
				return err
			}
			files["ca.crt"] = res.CAPEM
			ctx, h := data.Context(), data.Host()
			var replace map[string][]byte
			var fresh []string
			if data.Node().HasRole(config.RoleControlPlane) {
				files["ca.crt"] = res.Certs["ca.crt"]
				// Secrets at rest are encrypted with the cluster's one key: this
				// apiserver must use the uploaded configuration, never a new one
				// of its own (the control-plane phase would generate one).
				enc, ok := res.Certs[clusterinfo.EncryptionConfigKey]
				if !ok {
					return fmt.Errorf("the uploaded certificates lack %s, which a control-plane host needs: run `kubeforge init phase upload-certs --config <cluster configuration>` on the first control-plane host", clusterinfo.EncryptionConfigKey)
				}
				p := controlplane.Options{KubeconfigDir: data.KubeconfigDir()}.EncryptionConfigPath()
				wrote, err := component.WriteIfChanged(ctx, h, p, enc, 0o600, true)
				if err != nil {
					return err
				}
				if wrote {
					fresh = append(fresh, p)
				}
			} else if replace, err = keepExistingPairs(ctx, h, data.CertDir(), files); err != nil {
				return err
			}
			for rel := range files {
				if _, err := h.Stat(ctx, path.Join(data.CertDir(), rel)); err != nil {
					fresh = append(fresh, rel)
				}
			}
			if err := certs.WriteFiles(certs.HostFS{Ctx: ctx, Host: h}, data.CertDir(), files); err != nil {
				return fmt.Errorf("%s: %w (run `kubeforge reset` on a host that was part of another cluster)", h.Name(), err)
			}
			renewed := make([]string, 0, len(replace))
			for rel := range replace {
				renewed = append(renewed, rel)
			}
			slices.Sort(renewed) // keys before their certificates
			for i := len(renewed) - 1; i >= 0; i-- {
				rel := renewed[i]
				if err := h.WriteFile(ctx, path.Join(data.CertDir(), rel), replace[rel], host.WriteOptions{Mode: certs.FileMode(rel), Secret: strings.HasSuffix(rel, ".key")}); err != nil {
					return err
				}
				fresh = append(fresh, rel)
			}
			if len(fresh) == 0 {
				return workflow.Unchanged("%d files in place in %s", len(files), data.CertDir())
			}
			slices.Sort(fresh)
			data.Logger().Printf("wrote %s in %s", strings.Join(fresh, ", "), data.CertDir())
			return nil
		},
	}
}
