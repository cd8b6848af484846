// Package renewal finishes what `kubeforge certs renew` starts on a running
// cluster: after the certificates and kubeconfigs are re-signed, the daemons that
// read them still hold the old ones in memory, unless they re-read them by
// themselves. This package works out which systemd units read which renewed
// file and, for each that runs on the host, in a fixed safe order and one at a
// time, either checks that it picked the new certificate up by itself (etcd and
// kube-apiserver re-read every renewable file they use: they are not
// restarted, so no API request fails) or restarts it (the others load their
// credentials once, at start), and waits for each to be healthy before the
// next, so a bad certificate stops the sequence at the first daemon that refuses
// it instead of taking the whole control plane down at once.
//
// The order is etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
// then the node units (kubelet, kube-proxy, the overlay agent): each daemon is
// restarted only once everything it talks to has loaded its new certificate.
// A daemon that reloads is checked where it serves: the leaf certificate etcd
// presents on its client and peer ports and kube-apiserver on its secure port
// must be the renewed file's; one that still serves the old certificate after
// Options.ReloadTimeout is restarted after all, and the report says so.
// The restarted control-plane units are re-ensured with controlplane.Ensure
// rather than restarted behind its back, so the digest of inputs in their unit
// files stays true and a later `kubeforge init` finds them unchanged (the
// apiserver's digest leaves out the files it reloads, for the same reason).
package renewal

import (
	"slices"

	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/controlplane"
	"github.com/kubeforge/kubeforge/components/etcd"
	"github.com/kubeforge/kubeforge/components/kubelet"
	"github.com/kubeforge/kubeforge/components/kubeproxy"
	"github.com/kubeforge/kubeforge/components/overlay"
)

// Units that read renewable files.
const (
	UnitEtcd              = etcd.UnitName
	UnitAPIServer         = controlplane.APIServer + ".service"
	UnitControllerManager = controlplane.ControllerManager + ".service"
	UnitScheduler         = controlplane.Scheduler + ".service"
	UnitKubelet           = kubelet.UnitName
	UnitKubeProxy         = kubeproxy.UnitName
	UnitOverlay           = overlay.UnitName
)

// Order is the restart order. etcd comes first because the apiserver's storage
// is useless without it; the apiserver before the controller-manager and the
// scheduler, which are its clients; the node units last, also clients of the
// apiserver (and the overlay agent of etcd).
var Order = []string{UnitEtcd, UnitAPIServer, UnitControllerManager, UnitScheduler, UnitKubelet, UnitKubeProxy, UnitOverlay}

// Which daemon re-reads which renewed file by itself, from the upstream sources
// of the versions in the bundle (Kubernetes v1.34.4, whose kube-apiserver
// links etcd's client/pkg v3.6.4; etcd v3.6.16; the TLS code of both etcd
// versions is the same). Paths are in the Go module cache
// (k8s.io/<module>@<version>, go.etcd.io/etcd/<module>/v3@<version>).
//
// etcd (etcd.service), both files: NO restart needed.
//   - etcd-server (client-transport-security) and etcd-peer
//     (peer-transport-security) are a transport.TLSInfo each. TLSInfo.baseConfig
//     (client/pkg/v3@v3.6.16/transport/listener.go:368) leaves
//     tls.Config.Certificates empty and sets GetCertificate (listener.go:474)
//     and GetClientCertificate (listener.go:493), both of which call
//     tlsutil.NewCert (client/pkg/v3@v3.6.16/tlsutil/tlsutil.go:53), an
//     os.ReadFile of the cert and the key: the files are read again on every
//     TLS handshake. Users of that config: the client listener
//     (server/v3@v3.6.16/embed/serve.go:233, ServerConfig), the gRPC gateway
//     (embed/etcd.go:824), the peer listener (embed/etcd.go:580 ->
//     transport/listener_tls.go:59, ServerConfig) and the connections to the
//     other members (etcdserver/api/rafthttp/util.go:51,60 ->
//     transport/transport.go:28, ClientConfig): both sides of peer TLS.
//     Established connections keep the certificate they were opened with (TLS
//     does not look at it again), new ones get the renewed one.
//   - Caveat: cert and key are two files, read one after the other per
//     handshake, and certs.Renew writes the new key, then the new certificate.
//     A handshake that falls between the two renames reads a mismatched pair
//     and fails (tls.X509KeyPair); clients redial. Nothing else can be done
//     about two files.
//
// kube-apiserver (kube-apiserver.service), all four files: NO restart needed.
//   - apiserver (--tls-cert-file/--tls-private-key-file): the serving
//     certificate is a dynamiccertificates.DynamicCertKeyPairContent
//     (apiserver@v0.34.4/pkg/server/options/serving.go:304). Its controller
//     watches both files with fsnotify and loads the pair on every event,
//     re-adding the watch after a remove or rename (an atomic replace), and
//     starting a new watch a minute after one fails
//     (pkg/server/dynamiccertificates/dynamic_serving_content.go:131-201); a
//     pair that does not match (key written, cert not yet) is not applied, the
//     next event loads the pair (:85-123). The new pair reaches the listener
//     through DynamicServingCertificateController.GetConfigForClient
//     (pkg/server/secure_serving.go:93-145, dynamiccertificates/tlsconfig.go:90):
//     every new connection to :6443 gets it.
//   - front-proxy-client (--proxy-client-cert-file/--proxy-client-key-file):
//     the same DynamicCertKeyPairContent, "aggregator-proxy-cert"
//     (kube-aggregator@v0.34.4/pkg/apiserver/apiserver.go:284-298, run by the
//     post-start hook aggregator-reload-proxy-client-cert); the proxy to an
//     aggregated API takes the current pair (handler_proxy.go:220).
//   - apiserver-etcd-client (--etcd-certfile/--etcd-keyfile): the storage
//     client is built from an etcd transport.TLSInfo
//     (apiserver@v0.34.4/pkg/storage/storagebackend/factory/etcd3.go:287-292,
//     ClientConfig), whose GetClientCertificate re-reads the files on each
//     handshake (see etcd above): new connections to etcd use the renewed
//     certificate, open ones stay as they are.
//   - apiserver-kubelet-client (--kubelet-client-certificate/--kubelet-client-key):
//     the kubelet client's transport.Config has ReloadTLSFiles: true
//     (kubernetes@v1.34.4/pkg/kubelet/client/kubelet_client.go:114-123);
//     client-go then loads the pair per handshake, cached for a second
//     (client-go@v0.34.4/transport/transport.go:145, :378-399), and a
//     certRotatingDialer (transport/cache.go:119) looks every 5 minutes
//     (cert_rotation.go:37) and closes the open connections once the
//     certificate changed (cert_rotation.go:93), so long-lived streams to
//     kubelets move to the renewed one too.
//
// Restart needed (each loads its credential once, at start):
//   - controller-manager.conf, scheduler.conf, kube-proxy.conf, and kubelet.conf
//     when its client certificate is embedded: client-certificate-data in a
//     kubeconfig makes client-go's certificate static ("Treat cert as static
//     if either key or cert was data, not a file",
//     client-go@v0.34.4/transport/transport.go:134); nothing reloads it.
//   - etcd-overlay-client: the overlay agent builds its etcd tls.Config once
//     (components/overlay/backend.go, etcd.TLSFiles.Config: Certificates, not
//     a callback).

// readers maps every renewable certificate and kubeconfig to the units that load
// it, and whether they reload it by themselves. Names absent here (admin.conf, super-admin.conf, the etcd
// health-check client) are read only by people and by kubeforge itself, per
// request, so nothing needs a restart for them.
var readers = map[string][]reader{
	certs.CertAPIServer:               {{UnitAPIServer, true}},
	certs.CertAPIServerKubeletClient:  {{UnitAPIServer, true}},
	certs.CertAPIServerEtcdClient:     {{UnitAPIServer, true}},
	certs.CertFrontProxyClient:        {{UnitAPIServer, true}},
	certs.CertEtcdServer:              {{UnitEtcd, true}},
	certs.CertEtcdPeer:                {{UnitEtcd, true}},
	certs.CertEtcdOverlayClient:       {{UnitOverlay, false}},
	certs.KubeconfigControllerManager: {{UnitControllerManager, false}},
	certs.KubeconfigScheduler:         {{UnitScheduler, false}},
	certs.KubeconfigKubelet:           {{UnitKubelet, false}},
	certs.KubeconfigKubeProxy:         {{UnitKubeProxy, false}, {UnitOverlay, false}}, // the node runtime's API balancer reads the EndpointSlices with it
}

// reader is one unit reading one renewable file.
type reader struct {
	unit string
	// reloads: the daemon re-reads the file by itself while it runs (see the
	// sources above), so a renewal does not restart it for that file.
	reloads bool
}

// UnitsReading returns the units that read the named certificate or kubeconfig
// (a name of certs.RenewableNames), in Order; none for admin.conf and the like.
func UnitsReading(name string) []string {
	var out []string
	for _, r := range readers[name] {
		out = append(out, r.unit)
	}
	return out
}

// Reloads reports whether unit re-reads the named file by itself while it
// runs, so that a renewal of it needs no restart of the unit.
func Reloads(name, unit string) bool {
	for _, r := range readers[name] {
		if r.unit == unit {
			return r.reloads
		}
	}
	return false
}

// Affected returns the units reading any of names, each once, in Order.
func Affected(names []string) []string {
	var out []string
	for _, u := range Order {
		for _, n := range names {
			if slices.Contains(UnitsReading(n), u) {
				out = append(out, u)
				break
			}
		}
	}
	return out
}

// Renewed lists the names a renewal replaced (or, in a dry run, would replace):
// the ones not skipped.
func Renewed(res *certs.RenewResult) []string {
	if res == nil {
		return nil
	}
	var out []string
	for _, c := range res.Certificates {
		if c.Skipped == "" {
			out = append(out, c.Name)
		}
	}
	return out
}

// needsConfig reports whether checking or restarting unit needs the cluster
// configuration: the control-plane units are rebuilt from it, and etcd's and
// the apiserver's health and served certificates are asked of them at their
// configured addresses.
func needsConfig(unit string) bool {
	switch unit {
	case UnitEtcd, UnitAPIServer, UnitControllerManager, UnitScheduler:
		return true
	}
	return false
}

// controlPlaneName maps a control-plane unit to its component name ("" for others).
func controlPlaneName(unit string) string {
	for _, n := range controlplane.Names {
		if n+".service" == unit {
			return n
		}
	}
	return ""
}
