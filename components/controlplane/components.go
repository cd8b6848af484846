package controlplane

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/etcd"
	"github.com/kubeforge/kubeforge/components/install"
)

// Unit and daemon names.
const (
	APIServer         = "kube-apiserver"
	ControllerManager = "kube-controller-manager"
	Scheduler         = "kube-scheduler"
)

// Names lists the components in start order.
var Names = []string{APIServer, ControllerManager, Scheduler}

// Default ports of the secure endpoints kubeforge waits on.
const (
	ControllerManagerPort = 10257
	SchedulerPort         = 10259
	// EtcdClientPort is where the apiserver reaches every etcd member.
	EtcdClientPort = etcd.DefaultClientPort
)

// AuditLogDir holds the apiserver's audit log and its rotated files.
const AuditLogDir = "/var/log/kubernetes/audit"

// Options describe the control-plane host.
type Options struct {
	Cluster *config.Cluster
	// Node is this host's entry in Cluster.
	Node config.Host
	// CertDir and KubeconfigDir default to kubeadm's /etc/kubernetes/pki and
	// /etc/kubernetes; BinDir to /usr/local/bin.
	CertDir       string
	KubeconfigDir string
	BinDir        string
}

func (o Options) certDir() string {
	if o.CertDir == "" {
		return certs.DefaultCertDir
	}
	return o.CertDir
}

func (o Options) kubeconfigDir() string {
	if o.KubeconfigDir == "" {
		return certs.DefaultKubeconfigDir
	}
	return o.KubeconfigDir
}

func (o Options) binDir() string {
	if o.BinDir == "" {
		return install.DefaultBinDir
	}
	return o.BinDir
}

func (o Options) pki(name string) string { return path.Join(o.certDir(), name) }

func (o Options) kubeconfig(name string) string { return path.Join(o.kubeconfigDir(), name) }

// Paths of the configuration files kubeforge writes for the apiserver.
func (o Options) AuditPolicyPath() string { return o.kubeconfig("audit-policy.yaml") }

// EncryptionConfigPath is the EncryptionConfiguration with the key for Secrets.
func (o Options) EncryptionConfigPath() string { return o.kubeconfig("encryption-config.yaml") }

// AuthenticationConfigPath is the AuthenticationConfiguration (anonymous limits).
func (o Options) AuthenticationConfigPath() string {
	return o.kubeconfig("authentication-config.yaml")
}

func (o Options) check() error {
	if o.Cluster == nil {
		return errors.New("control plane: no cluster configuration")
	}
	if !o.Node.HasRole(config.RoleControlPlane) {
		return fmt.Errorf("control plane: host %s does not have the %q role in the cluster configuration", o.Node.Name, config.RoleControlPlane)
	}
	ip := net.ParseIP(o.Node.Address)
	if ip == nil {
		return fmt.Errorf("control plane: host %s: address %q is not an IP address", o.Node.Name, o.Node.Address)
	}
	// The apiserver publishes its advertise address in the "kubernetes" Endpoints,
	// where a loopback address is refused and useless to every other host.
	if ip.IsLoopback() || ip.IsUnspecified() {
		return fmt.Errorf("control plane: host %s: address %s cannot be the apiserver's advertise address (loopback/unspecified); use the host's address on the cluster network", o.Node.Name, o.Node.Address)
	}
	return nil
}

// File is a configuration file a component reads.
type File struct {
	Path string
	Data []byte
	Mode fs.FileMode
	// Secret content is never logged or shown in a dry-run plan.
	Secret bool
}

// Dir is a directory a component writes into.
type Dir struct {
	Path string
	Mode fs.FileMode
}

// Component is one control-plane daemon and everything it needs on disk.
type Component struct {
	Name string
	// Field is the configuration path of its settings, for messages.
	Field string
	// Binary is the executable's absolute path.
	Binary string
	Args   Args
	// Files are written before the unit; Dirs created.
	Files []File
	Dirs  []Dir
	// After are units this one is ordered after (etcd where it runs locally).
	After []string
	// Notify: the daemon reports readiness to systemd (Type=notify).
	Notify bool
	// StopTimeout is the unit's TimeoutStopSec; DefaultStopTimeout when zero.
	StopTimeout time.Duration
	// HealthURL is polled by Wait; HealthCA says whether its certificate is
	// signed by the cluster CA (the apiserver) or self-signed (the others, which
	// generate their serving certificate in memory, so only liveness is checked).
	HealthURL string
	HealthCA  bool
}

// UnitName is the systemd unit.
func (c Component) UnitName() string { return c.Name + ".service" }

// Port is the component's secure port, from its flags.
func (c Component) Port() (int, error) {
	p, err := strconv.Atoi(c.Args["secure-port"])
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("%s.extraArgs.secure-port %q is not a TCP port", c.Field, c.Args["secure-port"])
	}
	return p, nil
}

// EtcdServers are the client URLs of every etcd member of the configuration, so
// the apiserver keeps working while any one member is down.
func (o Options) EtcdServers() []string {
	var out []string
	for _, h := range o.Cluster.HostsWithRole(config.RoleEtcd) {
		out = append(out, "https://"+net.JoinHostPort(h.Address, strconv.Itoa(EtcdClientPort)))
	}
	return out
}

// ServiceAccountIssuer is the issuer of service-account tokens (kubeadm's).
func (o Options) ServiceAccountIssuer() string {
	return "https://kubernetes.default.svc." + o.Cluster.Spec.Networking.DNSDomain
}

// APIServerComponent is kube-apiserver. encryptionConfig is the content of the
// EncryptionConfiguration to use (see EnsureEncryptionConfig); it is only
// written when the configuration does not bring its own. It is long because
// it is the apiserver's whole flag table, one flag a line, in kubeadm's order:
// splitting it would scatter what an operator compares against kubeadm.
func (o Options) APIServerComponent(encryptionConfig []byte) (Component, error) {
	if err := o.check(); err != nil {
		return Component{}, err
	}
	extra := Args(o.Cluster.Spec.Components.APIServer.ExtraArgs)
	field := "spec.components.apiServer"
	if err := extra.validate(field + ".extraArgs"); err != nil {
		return Component{}, err
	}
	etcd := o.EtcdServers()
	if len(etcd) == 0 {
		return Component{}, fmt.Errorf("control plane: the cluster configuration has no host with role %q for the apiserver's storage", config.RoleEtcd)
	}
	n := o.Cluster.Spec.Networking
	a := Args{
		"advertise-address":                  o.Node.Address,
		"allow-privileged":                   "true",
		"authorization-mode":                 "Node,RBAC",
		"client-ca-file":                     o.pki("ca.crt"),
		"enable-admission-plugins":           "NodeRestriction",
		"enable-bootstrap-token-auth":        "true",
		"etcd-cafile":                        o.pki("etcd/ca.crt"),
		"etcd-certfile":                      o.pki("apiserver-etcd-client.crt"),
		"etcd-keyfile":                       o.pki("apiserver-etcd-client.key"),
		"etcd-servers":                       strings.Join(etcd, ","),
		"kubelet-client-certificate":         o.pki("apiserver-kubelet-client.crt"),
		"kubelet-client-key":                 o.pki("apiserver-kubelet-client.key"),
		"kubelet-preferred-address-types":    "InternalIP,ExternalIP,Hostname",
		"profiling":                          "false",
		"proxy-client-cert-file":             o.pki("front-proxy-client.crt"),
		"proxy-client-key-file":              o.pki("front-proxy-client.key"),
		"requestheader-allowed-names":        "front-proxy-client",
		"requestheader-client-ca-file":       o.pki("front-proxy-ca.crt"),
		"requestheader-extra-headers-prefix": "X-Remote-Extra-",
		"requestheader-group-headers":        "X-Remote-Group",
		"requestheader-username-headers":     "X-Remote-User",
		"secure-port":                        strconv.Itoa(config.DefaultAPIServerPort),
		"service-account-issuer":             o.ServiceAccountIssuer(),
		"service-account-key-file":           o.pki("sa.pub"),
		"service-account-signing-key-file":   o.pki("sa.key"),
		"service-cluster-ip-range":           n.ServiceCIDR,
		"tls-cert-file":                      o.pki("apiserver.crt"),
		"tls-cipher-suites":                  strings.Join(certs.TLSCipherSuites, ","),
		"tls-min-version":                    certs.TLSMinVersion,
		"tls-private-key-file":               o.pki("apiserver.key"),
		"audit-log-path":                     path.Join(AuditLogDir, "audit.log"),
		"audit-log-maxage":                   "30",
		"audit-log-maxbackup":                "10",
		"audit-log-maxsize":                  "100",
		// A stop (systemctl stop/restart, a converge run, a reboot) must end well
		// inside the unit's TimeoutStopSec and stay graceful. By default the
		// apiserver hands its HTTP server a shutdown timeout of --request-timeout
		// (60s), and net/http's Shutdown waits for every connection to go idle: an
		// HTTP/2 connection carrying a watch (every kubelet, kube-proxy and
		// controller has some) never does, so the process outlives systemd's
		// patience and is SIGKILLed. With these two, on SIGTERM the apiserver keeps
		// listening and answers new requests 429 + Retry-After (clients retry, on
		// another apiserver where there is one), lets the requests in flight
		// finish, ends the open watches itself (rate limited, so clients re-watch
		// from where they were instead of relisting all at once), and only then
		// shuts the HTTP server down with a 2s timeout.
		"shutdown-send-retry-after":               "true",
		"shutdown-watch-termination-grace-period": APIServerWatchGrace.String(),
	}
	// Kubelet serving certificates come from their own CA (CIS 1.2.5): a node
	// picks the names in its serving CSR, so the CA that signs them must be
	// trusted for nothing but kubelets.
	a["kubelet-certificate-authority"] = o.pki("kubelet-serving-ca.crt")
	c := Component{Name: APIServer, Field: field, Binary: path.Join(o.binDir(), APIServer), Notify: true, HealthCA: true}

	// The files are kubeforge's unless the configuration points the flag elsewhere.
	if !extra.Has("audit-policy-file") {
		a["audit-policy-file"] = o.AuditPolicyPath()
		c.Files = append(c.Files, File{Path: o.AuditPolicyPath(), Data: AuditPolicy(), Mode: 0o600})
	}
	if !extra.Has("encryption-provider-config") {
		if len(encryptionConfig) == 0 {
			return Component{}, errors.New("control plane: no encryption configuration for Secrets")
		}
		a["encryption-provider-config"] = o.EncryptionConfigPath()
		c.Files = append(c.Files, File{Path: o.EncryptionConfigPath(), Data: encryptionConfig, Mode: 0o600, Secret: true})
	}
	// --anonymous-auth and --authentication-config exclude each other; an operator
	// who sets either has taken over anonymous access.
	if !extra.Has("authentication-config") && !extra.Has("anonymous-auth") {
		a["authentication-config"] = o.AuthenticationConfigPath()
		c.Files = append(c.Files, File{Path: o.AuthenticationConfigPath(), Data: AuthenticationConfig(), Mode: 0o600})
	}
	if ap, ok := extra["audit-log-path"]; ok && ap != "-" && ap != "" {
		c.Dirs = append(c.Dirs, Dir{Path: path.Dir(ap), Mode: 0o700})
	} else if !ok {
		c.Dirs = append(c.Dirs, Dir{Path: AuditLogDir, Mode: 0o700})
	}
	c.Args = a.Merge(extra)
	c.StopTimeout = apiserverStopTimeout(c.Args)

	for _, h := range o.Cluster.HostsWithRole(config.RoleEtcd) {
		if h.Name == o.Node.Name {
			c.After = append(c.After, "etcd.service")
		}
	}
	port, err := c.Port()
	if err != nil {
		return Component{}, err
	}
	c.HealthURL = "https://" + net.JoinHostPort(healthHost(c.Args["bind-address"], o.Node.Address), strconv.Itoa(port)) + "/readyz"
	return c, nil
}

// APIServerWatchGrace is how long a stopping apiserver takes at most to end
// its open watches (it ends them at 200/s or faster, so a cluster with fewer
// than 2000 watches on this apiserver needs less). It plus the apiserver's 2s
// HTTP shutdown leaves most of the unit's TimeoutStopSec for the shutdown
// hooks and the etcd client.
const APIServerWatchGrace = 10 * time.Second

// apiserverStopTimeout is the TimeoutStopSec the apiserver's flags need: an
// operator's --shutdown-delay-duration (time for a load balancer to see /readyz
// fail) or a longer watch grace period is waited out before the drain, and a
// unit that killed the apiserver in the middle of it would undo the point of
// setting them. Values the apiserver will refuse anyway are ignored here.
func apiserverStopTimeout(a Args) time.Duration {
	need := 15 * time.Second // shutdown hooks, the HTTP server's 2s, closing etcd
	for _, f := range []string{"shutdown-delay-duration", "shutdown-watch-termination-grace-period"} {
		if d, err := time.ParseDuration(a[f]); err == nil && d > 0 {
			need += d
		}
	}
	// systemd takes whole seconds: round up.
	return max(DefaultStopTimeout, (need + time.Second - 1).Truncate(time.Second))
}

// ControllerManagerComponent is kube-controller-manager. With the overlay's
// kube backend (the default) it allocates each Node's spec.podCIDR from
// spec.networking.podCIDR in /nodeSubnetSize pieces, which the overlay agents
// route; with the etcd backend the agents allocate their subnets themselves and
// it does not (unless extraArgs allocate-node-cidrs: "true").
func (o Options) ControllerManagerComponent() (Component, error) {
	if err := o.check(); err != nil {
		return Component{}, err
	}
	extra := Args(o.Cluster.Spec.Components.ControllerManager.ExtraArgs)
	field := "spec.components.controllerManager"
	if err := extra.validate(field + ".extraArgs"); err != nil {
		return Component{}, err
	}
	kc := o.kubeconfig(certs.KubeconfigControllerManager)
	n := o.Cluster.Spec.Networking
	allocate := "true"
	if n.Overlay.Backend == config.OverlayBackendEtcd {
		allocate = "false"
	}
	a := Args{
		"allocate-node-cidrs":              allocate,
		"authentication-kubeconfig":        kc,
		"authorization-kubeconfig":         kc,
		"bind-address":                     "127.0.0.1",
		"client-ca-file":                   o.pki("ca.crt"),
		"cluster-name":                     o.Cluster.Metadata.Name,
		"controllers":                      "*,bootstrapsigner,tokencleaner",
		"kubeconfig":                       kc,
		"leader-elect":                     "true",
		"profiling":                        "false",
		"requestheader-client-ca-file":     o.pki("front-proxy-ca.crt"),
		"root-ca-file":                     o.pki("ca.crt"),
		"secure-port":                      strconv.Itoa(ControllerManagerPort),
		"service-account-private-key-file": o.pki("sa.key"),
		"service-cluster-ip-range":         n.ServiceCIDR,
		"tls-cipher-suites":                strings.Join(certs.TLSCipherSuites, ","),
		"tls-min-version":                  certs.TLSMinVersion,
		"use-service-account-credentials":  "true",
	}
	// Each signer its CA: kubelet serving certificates from the kubelet-serving
	// CA (the apiserver verifies kubelets against it and trusts it for nothing
	// else), client certificates from the cluster CA the apiserver authenticates
	// with. kubernetes.io/legacy-unknown gets none: it signs anything approved,
	// and v1 CSRs cannot ask for it. The controller-manager refuses the single
	// --cluster-signing-{cert,key}-file together with per-signer files, so an
	// operator who sets those takes over signing altogether.
	if !extra.Has("cluster-signing-cert-file") && !extra.Has("cluster-signing-key-file") {
		for flag, ca := range map[string]string{
			"kubelet-serving":       "kubelet-serving-ca",
			"kubelet-client":        "ca",
			"kube-apiserver-client": "ca",
		} {
			a["cluster-signing-"+flag+"-cert-file"] = o.pki(ca + ".crt")
			a["cluster-signing-"+flag+"-key-file"] = o.pki(ca + ".key")
		}
	}
	if extra["allocate-node-cidrs"] == "true" || (!extra.Has("allocate-node-cidrs") && allocate == "true") {
		a["cluster-cidr"] = n.PodCIDR
		a["node-cidr-mask-size"] = strconv.Itoa(n.NodeSubnetSize)
	}
	c := Component{Name: ControllerManager, Field: field, Binary: path.Join(o.binDir(), ControllerManager), Args: a.Merge(extra),
		After: []string{APIServer + ".service"}}
	return c.withHealth()
}

// SchedulerComponent is kube-scheduler.
func (o Options) SchedulerComponent() (Component, error) {
	if err := o.check(); err != nil {
		return Component{}, err
	}
	extra := Args(o.Cluster.Spec.Components.Scheduler.ExtraArgs)
	field := "spec.components.scheduler"
	if err := extra.validate(field + ".extraArgs"); err != nil {
		return Component{}, err
	}
	kc := o.kubeconfig(certs.KubeconfigScheduler)
	a := Args{
		"authentication-kubeconfig": kc,
		"authorization-kubeconfig":  kc,
		"bind-address":              "127.0.0.1",
		"kubeconfig":                kc,
		"leader-elect":              "true",
		"profiling":                 "false",
		"secure-port":               strconv.Itoa(SchedulerPort),
		"tls-cipher-suites":         strings.Join(certs.TLSCipherSuites, ","),
		"tls-min-version":           certs.TLSMinVersion,
	}
	c := Component{Name: Scheduler, Field: field, Binary: path.Join(o.binDir(), Scheduler), Args: a.Merge(extra),
		After: []string{APIServer + ".service"}}
	return c.withHealth()
}

func (c Component) withHealth() (Component, error) {
	port, err := c.Port()
	if err != nil {
		return Component{}, err
	}
	c.HealthURL = "https://" + net.JoinHostPort(healthHost(c.Args["bind-address"], "127.0.0.1"), strconv.Itoa(port)) + "/healthz"
	return c, nil
}

// healthHost is where a daemon bound to bind can be reached from its own host.
func healthHost(bind, fallback string) string {
	ip := net.ParseIP(bind)
	if ip == nil || ip.IsUnspecified() {
		return fallback
	}
	return ip.String()
}

// Component returns the named component; the apiserver needs its encryption
// configuration (ignored for the others).
func (o Options) Component(name string, encryptionConfig []byte) (Component, error) {
	switch name {
	case APIServer:
		return o.APIServerComponent(encryptionConfig)
	case ControllerManager:
		return o.ControllerManagerComponent()
	case Scheduler:
		return o.SchedulerComponent()
	}
	return Component{}, fmt.Errorf("unknown control-plane component %q (known: %s)", name, strings.Join(Names, ", "))
}
