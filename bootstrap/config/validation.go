package config

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Supported Kubernetes minor versions: the component flags and unit files kubeforge
// writes are known to work across this range.
const (
	MinKubernetesMinor = 29
	MaxKubernetesMinor = 37
)

// Limits from the components themselves.
const (
	maxVNI = 1<<24 - 1
	// etcd refuses --election-timeout above 50 s and below 5 heartbeats.
	maxElectionTimeout       = 50 * time.Second
	minElectionPerHeartbeat  = 5
	recommendedMaxEtcdQuota  = int64(8 << 30)
	maxRecommendedEtcdMember = 7
	// kube-apiserver rejects a service CIDR with more than 20 host bits; kubeforge
	// puts the cluster DNS on the tenth address, so at least 4 host bits.
	maxServiceHostBits = 20
	// A CoreDNS Deployment larger than this is a typo, not a plan: each replica
	// watches every Service and EndpointSlice of the cluster.
	maxCoreDNSReplicas = 100
	minServiceHostBits = 4
	minMTU, maxMTU     = 576, 9000
	minMTUv6           = 1280
)

var (
	versionRE  = regexp.MustCompile(`^v1\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$`)
	flagNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	sshUserRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`)
)

// managedFlags are component flags kubeforge derives from config fields; setting
// them in extraArgs as well works (extraArgs win) but leaves two sources of truth.
var managedFlags = map[string]map[string]string{
	"etcd": {
		"data-dir":                  "spec.etcd.dataDir",
		"auto-compaction-mode":      "spec.etcd.autoCompactionMode",
		"auto-compaction-retention": "spec.etcd.autoCompactionRetention",
		"quota-backend-bytes":       "spec.etcd.quotaBackendBytes",
		"snapshot-count":            "spec.etcd.snapshotCount",
		"heartbeat-interval":        "spec.etcd.heartbeatInterval",
		"election-timeout":          "spec.etcd.electionTimeout",
	},
	"apiServer": {
		"service-cluster-ip-range": "spec.networking.serviceCIDR",
	},
	"controllerManager": {
		"cluster-cidr":             "spec.networking.podCIDR",
		"node-cidr-mask-size":      "spec.networking.nodeSubnetSize",
		"service-cluster-ip-range": "spec.networking.serviceCIDR",
		"cluster-name":             "metadata.name",
	},
	"kubelet": {
		"cluster-domain": "spec.networking.dnsDomain",
	},
	"kubeProxy": {
		"cluster-cidr": "spec.networking.podCIDR",
	},
}

// Validate checks the whole configuration. It returns every problem at once: err
// is an *InvalidError listing each as "<field path>: <problem>", and warnings are
// things that work but are probably not what the operator wants (an even number of
// etcd members, say). Validate does not change c; run SetDefaults first, as Decode
// does, or required fields with defaults are reported missing.
func (c *Cluster) Validate() (warnings []string, err error) {
	v := &validator{c: c}
	v.run()
	if len(v.errs) > 0 {
		return v.warns, &InvalidError{Errors: v.errs}
	}
	return v.warns, nil
}

type validator struct {
	c     *Cluster
	errs  field.ErrorList
	warns []string

	podCIDR, serviceCIDR netip.Prefix
	podOK, serviceOK     bool
}

func (v *validator) add(e ...*field.Error) { v.errs = append(v.errs, e...) }

func (v *validator) warn(p *field.Path, format string, args ...any) {
	v.warns = append(v.warns, p.String()+": "+fmt.Sprintf(format, args...))
}

func (v *validator) run() {
	c := v.c
	if c.APIVersion != APIVersion {
		v.add(field.NotSupported(field.NewPath("apiVersion"), c.APIVersion, []string{APIVersion}))
	}
	if c.Kind != Kind {
		v.add(field.NotSupported(field.NewPath("kind"), c.Kind, []string{Kind}))
	}
	name := field.NewPath("metadata", "name")
	if c.Metadata.Name == "" {
		v.add(field.Required(name, "the cluster needs a name"))
	} else {
		v.dnsLabel(name, c.Metadata.Name)
	}

	spec := field.NewPath("spec")
	v.kubernetesVersion(spec.Child("kubernetesVersion"), c.Spec.KubernetesVersion)
	// Networking first: host and endpoint checks compare addresses with its CIDRs.
	v.networking(spec.Child("networking"))
	v.hosts(spec.Child("hosts"))
	v.endpoint(spec.Child("controlPlaneEndpoint"))
	v.etcd(spec.Child("etcd"))
	v.certificates(spec.Child("certificates"))
	v.components(spec.Child("components"))
	v.timeSync(spec.Child("timeSync"))
	v.addons(spec.Child("addons"))

	sec := spec.Child("security")
	v.enum(sec.Child("selinux"), string(c.Spec.Security.SELinux),
		string(SELinuxDisabled), string(SELinuxPermissive), string(SELinuxEnforcingKeep))
	v.enum(sec.Child("firewall"), string(c.Spec.Security.Firewall),
		string(FirewallDisable), string(FirewallOpenPorts))
}

func (v *validator) dnsLabel(p *field.Path, s string) bool {
	if msgs := validation.IsDNS1123Label(s); len(msgs) > 0 {
		v.add(field.Invalid(p, s, strings.Join(msgs, "; ")))
		return false
	}
	return true
}

// enum reports value unless it is one of allowed; empty counts as missing.
func (v *validator) enum(p *field.Path, value string, allowed ...string) {
	if value == "" {
		v.add(field.Required(p, "must be one of "+strings.Join(allowed, ", ")))
		return
	}
	for _, a := range allowed {
		if value == a {
			return
		}
	}
	v.add(field.NotSupported(p, value, allowed))
}

func (v *validator) kubernetesVersion(p *field.Path, s string) {
	m := versionRE.FindStringSubmatch(s)
	if m == nil {
		v.add(field.Invalid(p, s, "must look like v1.Y.Z, e.g. "+DefaultKubernetesVersion))
		return
	}
	minor, err := strconv.Atoi(m[1])
	if err != nil || minor < MinKubernetesMinor || minor > MaxKubernetesMinor {
		v.add(field.Invalid(p, s, fmt.Sprintf("Kubernetes 1.%s is not supported; supported are 1.%d to 1.%d",
			m[1], MinKubernetesMinor, MaxKubernetesMinor)))
	}
}

// cidr parses a CIDR field; a prefix with host bits set is refused because it
// usually means a typo in the prefix length or the address.
func (v *validator) cidr(p *field.Path, s string) (netip.Prefix, bool) {
	if s == "" {
		v.add(field.Required(p, "a CIDR such as 10.244.0.0/16"))
		return netip.Prefix{}, false
	}
	pr, err := netip.ParsePrefix(s)
	if err != nil {
		v.add(field.Invalid(p, s, "not a CIDR (e.g. 10.244.0.0/16)"))
		return netip.Prefix{}, false
	}
	if pr.Addr().Is4In6() || pr.Addr().Zone() != "" {
		v.add(field.Invalid(p, s, "not a plain IPv4 or IPv6 CIDR"))
		return netip.Prefix{}, false
	}
	if pr.Masked() != pr {
		v.add(field.Invalid(p, s, fmt.Sprintf("has host bits set; the network is %s", pr.Masked())))
		return netip.Prefix{}, false
	}
	return pr, true
}

func (v *validator) networking(p *field.Path) {
	n := v.c.Spec.Networking
	v.podCIDR, v.podOK = v.cidr(p.Child("podCIDR"), n.PodCIDR)
	v.serviceCIDR, v.serviceOK = v.cidr(p.Child("serviceCIDR"), n.ServiceCIDR)

	if v.serviceOK {
		hostBits := v.serviceCIDR.Addr().BitLen() - v.serviceCIDR.Bits()
		if hostBits > maxServiceHostBits {
			v.add(field.Invalid(p.Child("serviceCIDR"), n.ServiceCIDR, fmt.Sprintf(
				"too large: kube-apiserver allows at most %d host bits (/%d for IPv4)",
				maxServiceHostBits, 32-maxServiceHostBits)))
		} else if hostBits < minServiceHostBits {
			v.add(field.Invalid(p.Child("serviceCIDR"), n.ServiceCIDR, fmt.Sprintf(
				"too small: it needs at least %d host bits (/%d for IPv4) to hold the cluster DNS address",
				minServiceHostBits, 32-minServiceHostBits)))
		}
	}
	if v.podOK && v.serviceOK {
		if v.podCIDR.Addr().Is4() != v.serviceCIDR.Addr().Is4() {
			v.add(field.Invalid(p.Child("serviceCIDR"), n.ServiceCIDR,
				"must be the same IP family as spec.networking.podCIDR "+n.PodCIDR))
		} else if v.podCIDR.Overlaps(v.serviceCIDR) {
			v.add(field.Invalid(p.Child("serviceCIDR"), n.ServiceCIDR,
				"overlaps spec.networking.podCIDR "+n.PodCIDR))
		}
	}

	sz := p.Child("nodeSubnetSize")
	if v.podOK {
		maxSize := 30
		if v.podCIDR.Addr().Is6() {
			maxSize = 126
		}
		switch {
		case n.NodeSubnetSize <= v.podCIDR.Bits():
			v.add(field.Invalid(sz, n.NodeSubnetSize, fmt.Sprintf(
				"must be longer than the podCIDR prefix /%d so each node gets a part of it", v.podCIDR.Bits())))
		case n.NodeSubnetSize > maxSize:
			v.add(field.Invalid(sz, n.NodeSubnetSize, fmt.Sprintf("must be at most %d", maxSize)))
		default:
			// Every host runs a kubelet and needs a pod subnet of its own.
			if bits := n.NodeSubnetSize - v.podCIDR.Bits(); bits < 31 && 1<<bits < len(v.c.Spec.Hosts) {
				v.add(field.Invalid(sz, n.NodeSubnetSize, fmt.Sprintf(
					"podCIDR %s holds only %d subnets of /%d, fewer than the %d hosts",
					n.PodCIDR, 1<<bits, n.NodeSubnetSize, len(v.c.Spec.Hosts))))
			}
		}
	}

	if n.DNSDomain == "" {
		v.add(field.Required(p.Child("dnsDomain"), "e.g. "+DefaultDNSDomain))
	} else if msgs := validation.IsDNS1123Subdomain(n.DNSDomain); len(msgs) > 0 {
		v.add(field.Invalid(p.Child("dnsDomain"), n.DNSDomain, strings.Join(msgs, "; ")))
	}

	o, op := n.Overlay, p.Child("overlay")
	if o.VNI < 1 || o.VNI > maxVNI {
		v.add(field.Invalid(op.Child("vni"), o.VNI, fmt.Sprintf("must be between 1 and %d", maxVNI)))
	}
	v.port(op.Child("port"), o.Port)
	switch {
	case o.MTU == 0:
	case o.MTU < minMTU || o.MTU > maxMTU:
		v.add(field.Invalid(op.Child("mtu"), o.MTU, fmt.Sprintf(
			"must be 0 (derive from the underlay) or between %d and %d", minMTU, maxMTU)))
	case v.podOK && v.podCIDR.Addr().Is6() && o.MTU < minMTUv6:
		v.add(field.Invalid(op.Child("mtu"), o.MTU, fmt.Sprintf("IPv6 pods need an MTU of at least %d", minMTUv6)))
	}
	v.enum(op.Child("txChecksumOffload"), string(o.TxChecksumOffload),
		string(TxChecksumOffloadAuto), string(TxChecksumOffloadDisabled), string(TxChecksumOffloadEnabled))
	v.enum(op.Child("backend"), string(o.Backend), string(OverlayBackendKube), string(OverlayBackendEtcd))
	if o.Backend == OverlayBackendEtcd {
		// Every host runs the agent; with the etcd backend it needs an etcd
		// client certificate, which only etcd hosts may hold.
		for i, h := range v.c.Spec.Hosts {
			if !h.HasRole(RoleEtcd) {
				v.add(field.Invalid(field.NewPath("spec", "hosts").Index(i).Child("roles"), h.Roles, fmt.Sprintf(
					"host %s has no etcd role, but spec.networking.overlay.backend is etcd, which needs an etcd client certificate on every host; use backend kube (the default) or give it the etcd role", h.Name)))
			}
		}
	}
}

func (v *validator) port(p *field.Path, port int) {
	if port < 1 || port > 65535 {
		v.add(field.Invalid(p, port, "must be between 1 and 65535"))
	}
}

// hostAddr parses a host-like IP; ok is false (and an error recorded) when s is
// not a usable unicast address.
func (v *validator) hostAddr(p *field.Path, s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		v.add(field.Invalid(p, s, "not an IP address"))
		return netip.Addr{}, false
	}
	if a.Is4In6() {
		v.add(field.Invalid(p, s, "write IPv4 addresses in dotted form, not IPv4-mapped IPv6"))
		return netip.Addr{}, false
	}
	if a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		v.add(field.Invalid(p, s, "not a unicast address a host can have"))
		return netip.Addr{}, false
	}
	return a, true
}

// notInClusterRanges reports addr when it lies in the pod or service CIDR: traffic
// to it would be routed into the overlay or captured by kube-proxy.
func (v *validator) notInClusterRanges(p *field.Path, raw string, a netip.Addr) {
	if v.podOK && v.podCIDR.Contains(a) {
		v.add(field.Invalid(p, raw, "lies inside spec.networking.podCIDR "+v.podCIDR.String()))
	}
	if v.serviceOK && v.serviceCIDR.Contains(a) {
		v.add(field.Invalid(p, raw, "lies inside spec.networking.serviceCIDR "+v.serviceCIDR.String()))
	}
}

func (v *validator) hosts(p *field.Path) {
	hosts := v.c.Spec.Hosts
	if len(hosts) == 0 {
		v.add(field.Required(p, "list the cluster's hosts"))
		return
	}
	names := map[string]int{}
	addrs := map[netip.Addr]int{}
	for i, h := range hosts {
		hp := p.Index(i)
		if h.Name == "" {
			v.add(field.Required(hp.Child("name"), "a DNS-1123 label such as master01"))
		} else if v.dnsLabel(hp.Child("name"), h.Name) {
			if j, dup := names[h.Name]; dup {
				e := field.Duplicate(hp.Child("name"), h.Name)
				e.Detail = fmt.Sprintf("also the name of %s", p.Index(j))
				v.add(e)
			} else {
				names[h.Name] = i
			}
		}

		ap := hp.Child("address")
		if h.Address == "" {
			v.add(field.Required(ap, "the host's IP on the cluster network"))
		} else if a, ok := v.hostAddr(ap, h.Address); ok {
			if j, dup := addrs[a]; dup {
				e := field.Duplicate(ap, h.Address)
				e.Detail = fmt.Sprintf("also the address of %s", p.Index(j))
				v.add(e)
			} else {
				addrs[a] = i
			}
			v.notInClusterRanges(ap, h.Address, a)
			if a.IsLoopback() && len(hosts) > 1 {
				v.warn(ap, "%s is a loopback address; other hosts cannot reach it", h.Address)
			}
		}

		rp := hp.Child("roles")
		if len(h.Roles) == 0 {
			v.add(field.Required(rp, "at least one of control-plane, etcd, worker"))
		}
		seen := map[Role]bool{}
		for k, r := range h.Roles {
			switch r {
			case RoleControlPlane, RoleEtcd, RoleWorker:
				if seen[r] {
					v.add(field.Duplicate(rp.Index(k), string(r)))
				}
				seen[r] = true
			default:
				v.add(field.NotSupported(rp.Index(k), string(r), Roles))
			}
		}

		if h.SSH != nil {
			sp := hp.Child("ssh")
			if h.SSH.User == "" {
				v.add(field.Required(sp.Child("user"), "the login user"))
			} else if !sshUserRE.MatchString(h.SSH.User) || len(h.SSH.User) > 32 {
				v.add(field.Invalid(sp.Child("user"), h.SSH.User, "not a valid user name"))
			}
			v.port(sp.Child("port"), h.SSH.Port)
			if h.SSH.KeyPath != "" {
				if !filepath.IsAbs(h.SSH.KeyPath) {
					v.add(field.Invalid(sp.Child("keyPath"), h.SSH.KeyPath, "must be an absolute path"))
				} else if bad := badText(h.SSH.KeyPath); bad != "" {
					v.add(field.Invalid(sp.Child("keyPath"), h.SSH.KeyPath, bad))
				}
			}
		}
	}

	cps := v.c.HostsWithRole(RoleControlPlane)
	if len(cps) == 0 {
		v.add(field.Required(p, "no host has the control-plane role; at least one must"))
	}
	etcds := v.c.HostsWithRole(RoleEtcd)
	switch n := len(etcds); {
	case n == 0:
		v.add(field.Required(p, "no host has the etcd role; at least one must"))
	case n%2 == 0:
		v.warn(p, "%d etcd members: an even count tolerates no more failures than %d members (%d) while needing more votes; use an odd count",
			n, n-1, (n-1)/2)
	case n > maxRecommendedEtcdMember:
		v.warn(p, "%d etcd members: more than %d makes every write slower without useful extra fault tolerance", n, maxRecommendedEtcdMember)
	}
}

func (v *validator) endpoint(p *field.Path) {
	ep := v.c.Spec.ControlPlaneEndpoint
	if ep == "" {
		// Defaulting fills it from the first control-plane host; with none, that
		// problem is already reported.
		if len(v.c.HostsWithRole(RoleControlPlane)) > 0 {
			v.add(field.Required(p, "host:port of kube-apiserver"))
		}
		return
	}
	host, portStr, err := splitHostPort(ep)
	if err != nil {
		v.add(field.Invalid(p, ep, "must be host:port, e.g. 192.168.161.151:6443 or api.example.com:6443"))
		return
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 {
		v.add(field.Invalid(p, ep, fmt.Sprintf("port %q must be a number between 1 and 65535", portStr)))
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() {
			v.add(field.Invalid(p, ep, "the host is not a usable unicast IP"))
			return
		}
		v.notInClusterRanges(p, ep, a.Unmap())
		if cps := v.c.HostsWithRole(RoleControlPlane); len(cps) > 1 {
			for _, h := range cps {
				if ha, err := netip.ParseAddr(h.Address); err == nil && ha.Unmap() == a.Unmap() {
					v.warn(p, "%s points at control-plane host %s alone: with %d control-plane hosts, use a VIP or load balancer so the API survives losing %s",
						ep, h.Name, len(cps), h.Name)
				}
			}
		}
		return
	}
	if msgs := validation.IsDNS1123Subdomain(host); len(msgs) > 0 {
		v.add(field.Invalid(p, ep, "the host is neither an IP address nor a DNS name: "+strings.Join(msgs, "; ")))
	}
}

// splitHostPort is net.SplitHostPort that also insists on a non-empty host.
func splitHostPort(s string) (string, string, error) {
	i := strings.LastIndex(s, ":")
	if i <= 0 {
		return "", "", fmt.Errorf("missing port")
	}
	host, port := s[:i], s[i+1:]
	if strings.HasPrefix(host, "[") {
		if !strings.HasSuffix(host, "]") {
			return "", "", fmt.Errorf("bad IPv6 brackets")
		}
		host = host[1 : len(host)-1]
		if !strings.Contains(host, ":") {
			return "", "", fmt.Errorf("brackets around a non-IPv6 host")
		}
	} else if strings.ContainsAny(host, ":[]") {
		return "", "", fmt.Errorf("IPv6 hosts need brackets")
	}
	if host == "" || port == "" {
		return "", "", fmt.Errorf("empty host or port")
	}
	return host, port, nil
}

// duration parses a Duration field that must be positive.
func (v *validator) duration(p *field.Path, d Duration) (time.Duration, bool) {
	if d == "" {
		v.add(field.Required(p, `a duration such as "8760h" or "100ms"`))
		return 0, false
	}
	t, err := d.Parse()
	if err != nil {
		v.add(field.Invalid(p, string(d), `not a duration; use units h, m, s, ms, e.g. "8760h"`))
		return 0, false
	}
	if t <= 0 {
		v.add(field.Invalid(p, string(d), "must be positive"))
		return 0, false
	}
	return t, true
}

func (v *validator) etcd(p *field.Path) {
	e := v.c.Spec.Etcd
	v.absPath(p.Child("dataDir"), e.DataDir)
	if e.DataDir != "" && filepath.IsAbs(e.DataDir) && filepath.Clean(e.DataDir) != "/" {
		if err := CheckOwnDir("dataDir", e.DataDir); err != nil {
			v.add(field.Invalid(p.Child("dataDir"), e.DataDir, strings.TrimPrefix(err.Error(), fmt.Sprintf("dataDir %q: ", e.DataDir))))
		}
	}

	v.enum(p.Child("autoCompactionMode"), string(e.AutoCompactionMode),
		string(CompactionPeriodic), string(CompactionRevision))
	rp := p.Child("autoCompactionRetention")
	switch e.AutoCompactionMode {
	case CompactionPeriodic:
		// etcd takes a duration, or a bare number of hours.
		if n, err := strconv.Atoi(e.AutoCompactionRetention); err == nil {
			if n <= 0 {
				v.add(field.Invalid(rp, e.AutoCompactionRetention, "must be positive"))
			}
		} else if d, err := time.ParseDuration(e.AutoCompactionRetention); err != nil || d <= 0 {
			v.add(field.Invalid(rp, e.AutoCompactionRetention,
				`periodic compaction needs a positive duration such as "1h" (or a number of hours)`))
		}
	case CompactionRevision:
		if n, err := strconv.ParseInt(e.AutoCompactionRetention, 10, 64); err != nil || n <= 0 {
			v.add(field.Invalid(rp, e.AutoCompactionRetention,
				"revision compaction needs a positive number of revisions to keep"))
		}
	}

	if e.QuotaBackendBytes <= 0 {
		v.add(field.Invalid(p.Child("quotaBackendBytes"), e.QuotaBackendBytes, "must be positive"))
	} else if e.QuotaBackendBytes > recommendedMaxEtcdQuota {
		v.warn(p.Child("quotaBackendBytes"), "%d exceeds the 8 GiB etcd recommends as a maximum", e.QuotaBackendBytes)
	}
	if e.SnapshotCount <= 0 {
		v.add(field.Invalid(p.Child("snapshotCount"), e.SnapshotCount, "must be positive"))
	}

	hb, hbOK := v.millis(p.Child("heartbeatInterval"), e.HeartbeatInterval)
	el, elOK := v.millis(p.Child("electionTimeout"), e.ElectionTimeout)
	if elOK && el > maxElectionTimeout {
		v.add(field.Invalid(p.Child("electionTimeout"), string(e.ElectionTimeout), "etcd allows at most 50s"))
	} else if hbOK && elOK && el < minElectionPerHeartbeat*hb {
		v.add(field.Invalid(p.Child("electionTimeout"), string(e.ElectionTimeout), fmt.Sprintf(
			"must be at least %d times spec.etcd.heartbeatInterval (%s)", minElectionPerHeartbeat, e.HeartbeatInterval)))
	}

	v.extraArgs(p.Child("extraArgs"), "etcd", e.ExtraArgs)
	v.etcdBackup(p.Child("backup"))
}

// BackupCalendarShorthands are the systemd calendar names spec.etcd.backup.schedule
// accepts besides an interval; systemd 219 knows all of them.
var BackupCalendarShorthands = []string{"minutely", "hourly", "daily", "weekly", "monthly"}

// minBackupInterval keeps a mistyped schedule ("1s") from snapshotting and
// verifying a large database back to back.
const minBackupInterval = time.Minute

// schedule checks a timer schedule: an interval of at least a minute, in whole
// seconds, or a calendar shorthand.
func (v *validator) schedule(sp *field.Path, sched string) {
	if slices.Contains(BackupCalendarShorthands, sched) {
		return
	}
	d, err := time.ParseDuration(sched)
	switch {
	case err != nil:
		v.add(field.Invalid(sp, sched, `want an interval such as "1h" or "30m", or one of `+strings.Join(BackupCalendarShorthands, ", ")))
	case d < minBackupInterval:
		v.add(field.Invalid(sp, sched, "must be at least 1m"))
	case d%time.Second != 0:
		v.add(field.Invalid(sp, sched, "must be whole seconds"))
	}
}

func (v *validator) etcdBackup(p *field.Path) {
	b := v.c.Spec.Etcd.Backup
	v.schedule(p.Child("schedule"), b.Schedule)
	if b.Keep < 1 {
		v.add(field.Invalid(p.Child("keep"), b.Keep, "must keep at least 1 snapshot"))
	}
	v.absPath(p.Child("dir"), b.Dir)
	if strings.ContainsAny(b.Dir, " \t%\"'\\") {
		v.add(field.Invalid(p.Child("dir"), b.Dir, `must not contain whitespace, quotes, backslashes or "%": it goes into a systemd ExecStart= line`))
	}
	data := filepath.Clean(v.c.Spec.Etcd.DataDir)
	if d := filepath.Clean(b.Dir); filepath.IsAbs(d) && (d == data || strings.HasPrefix(d, data+"/") || strings.HasPrefix(data, d+"/")) {
		v.add(field.Invalid(p.Child("dir"), b.Dir, "must not overlap spec.etcd.dataDir ("+v.c.Spec.Etcd.DataDir+"): reset deletes the data dir, and the backups must survive it"))
	}
}

// millis parses an etcd raft timing, which etcd's flags take in whole milliseconds.
func (v *validator) millis(p *field.Path, d Duration) (time.Duration, bool) {
	t, ok := v.duration(p, d)
	if !ok {
		return 0, false
	}
	if t%time.Millisecond != 0 {
		v.add(field.Invalid(p, string(d), "etcd takes whole milliseconds"))
		return 0, false
	}
	return t, true
}

func (v *validator) absPath(p *field.Path, s string) {
	switch {
	case s == "":
		v.add(field.Required(p, "an absolute path"))
	case !filepath.IsAbs(s):
		v.add(field.Invalid(p, s, "must be an absolute path"))
	case filepath.Clean(s) == "/":
		v.add(field.Invalid(p, s, "must not be the root directory"))
	case badText(s) != "":
		v.add(field.Invalid(p, s, badText(s)))
	}
}

func (v *validator) extraArgs(p *field.Path, component string, args map[string]string) {
	for _, k := range sortedStringKeys(args) {
		kp := p.Key(k)
		switch {
		case strings.HasPrefix(k, "-"):
			v.add(field.Invalid(kp, k, fmt.Sprintf("write the flag name without dashes: %q", strings.TrimLeft(k, "-"))))
			continue
		case !flagNameRE.MatchString(k):
			v.add(field.Invalid(kp, k, "not a flag name (letters, digits, '.', '_', '-')"))
			continue
		}
		// Values land in a systemd unit's ExecStart line; a newline would end it.
		if bad := badText(args[k]); bad != "" {
			v.add(field.Invalid(kp, args[k], bad))
		}
		if f, ok := managedFlags[component][k]; ok {
			v.warn(kp, "overrides the value kubeforge derives from %s; prefer setting %s", f, f)
		}
	}
}

func (v *validator) certificates(p *field.Path) {
	ct := v.c.Spec.Certificates
	algos := make([]string, len(KeyAlgorithms))
	for i, a := range KeyAlgorithms {
		algos[i] = string(a)
	}
	v.enum(p.Child("keyAlgorithm"), string(ct.KeyAlgorithm), algos...)
	ca, caOK := v.duration(p.Child("caValidity"), ct.CAValidity)
	leaf, leafOK := v.duration(p.Child("validity"), ct.Validity)
	if caOK && leafOK && leaf > ca {
		v.add(field.Invalid(p.Child("validity"), string(ct.Validity), fmt.Sprintf(
			"must not exceed spec.certificates.caValidity (%s): a certificate cannot outlive its CA", ct.CAValidity)))
	}
	ap := p.Child("autoRenew")
	v.schedule(ap.Child("schedule"), ct.AutoRenew.Schedule)
	if before, ok := v.duration(ap.Child("renewBefore"), ct.AutoRenew.RenewBefore); ok && leafOK && before >= leaf {
		v.add(field.Invalid(ap.Child("renewBefore"), string(ct.AutoRenew.RenewBefore), fmt.Sprintf(
			"must be shorter than spec.certificates.validity (%s): a new certificate would be due for renewal at once", ct.Validity)))
	}
	for i, san := range ct.CertSANs {
		sp := p.Child("certSANs").Index(i)
		if _, err := netip.ParseAddr(san); err == nil {
			continue
		}
		name := strings.TrimPrefix(san, "*.")
		if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 || san == "" {
			v.add(field.Invalid(sp, san, "neither an IP address nor a DNS name"))
		}
	}
}

func (v *validator) components(p *field.Path) {
	for _, nc := range v.c.Spec.Components.named() {
		v.extraArgs(p.Child(nc.name, "extraArgs"), nc.name, nc.c.ExtraArgs)
	}
}

func (v *validator) timeSync(p *field.Path) {
	ts := v.c.Spec.TimeSync
	sp := p.Child("server")
	switch {
	case ts.Server == "":
		if len(v.c.HostsWithRole(RoleControlPlane)) > 0 {
			v.add(field.Required(sp, "the name of the host that serves time to the others"))
		}
	default:
		if _, ok := v.c.Host(ts.Server); !ok {
			v.add(field.NotSupported(sp, ts.Server, v.c.HostNames()))
		}
	}
	seen := map[string]bool{}
	for i, s := range ts.UpstreamServers {
		up := p.Child("upstreamServers").Index(i)
		if _, err := netip.ParseAddr(s); err != nil {
			if msgs := validation.IsDNS1123Subdomain(s); len(msgs) > 0 {
				v.add(field.Invalid(up, s, "neither an IP address nor a DNS name"))
				continue
			}
		}
		if seen[s] {
			v.add(field.Duplicate(up, s))
		}
		seen[s] = true
	}
}

// badText says what is wrong with free text that ends up in unit files and
// command lines, or "" when nothing is.
func badText(s string) string {
	if !utf8.ValidString(s) {
		return "must be valid UTF-8"
	}
	if strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return "must not contain control characters such as newlines"
	}
	return ""
}

func sortedStringKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func (v *validator) addons(p *field.Path) {
	dns, dp := v.c.Spec.Addons.CoreDNS, p.Child("coreDNS")
	if dns.Replicas < 1 || dns.Replicas > maxCoreDNSReplicas {
		v.add(field.Invalid(dp.Child("replicas"), dns.Replicas, fmt.Sprintf("must be between 1 and %d", maxCoreDNSReplicas)))
	} else if n := len(v.c.HostNames()); dns.IsEnabled() && n > 0 && dns.Replicas > n {
		v.warn(dp.Child("replicas"), "%d replicas on %d hosts: CoreDNS pods keep to one per node, so %d stay Pending until more nodes join",
			dns.Replicas, n, dns.Replicas-n)
	}
	v.dnsServers(dp.Child("upstreams"), dns.Upstreams)
	seen := map[string]int{}
	domain := strings.TrimSuffix(strings.ToLower(v.c.Spec.Networking.DNSDomain), ".")
	for i, sd := range dns.StubDomains {
		sp := dp.Child("stubDomains").Index(i)
		d := strings.TrimSuffix(strings.ToLower(sd.Domain), ".")
		switch {
		case d == "":
			v.add(field.Required(sp.Child("domain"), "the DNS domain whose names go to these servers"))
		case len(validation.IsDNS1123Subdomain(d)) > 0:
			v.add(field.Invalid(sp.Child("domain"), sd.Domain, strings.Join(validation.IsDNS1123Subdomain(d), "; ")))
		case domain != "" && (d == domain || strings.HasSuffix(d, "."+domain) || strings.HasSuffix(domain, "."+d)):
			v.add(field.Invalid(sp.Child("domain"), sd.Domain,
				"overlaps the cluster domain spec.networking.dnsDomain "+v.c.Spec.Networking.DNSDomain+"; cluster names are CoreDNS's own"))
		default:
			if j, dup := seen[d]; dup {
				e := field.Duplicate(sp.Child("domain"), sd.Domain)
				e.Detail = fmt.Sprintf("also the domain of %s", dp.Child("stubDomains").Index(j))
				v.add(e)
			}
			seen[d] = i
		}
		if len(sd.Servers) == 0 {
			v.add(field.Required(sp.Child("servers"), "at least one IP or IP:port"))
		}
		v.dnsServers(sp.Child("servers"), sd.Servers)
	}
}

// dnsServers checks a list of DNS servers written as IP or IP:port. A loopback
// address is refused: inside the CoreDNS pod it is CoreDNS itself, and its loop
// plugin would stop it.
func (v *validator) dnsServers(p *field.Path, servers []string) {
	seen := map[netip.AddrPort]bool{}
	for i, s := range servers {
		ap, err := ParseDNSServer(s)
		if err != nil {
			v.add(field.Invalid(p.Index(i), s, err.Error()))
			continue
		}
		if ap.Addr().IsLoopback() || ap.Addr().IsUnspecified() || ap.Addr().IsMulticast() {
			v.add(field.Invalid(p.Index(i), s, "a loopback, unspecified or multicast address would be CoreDNS's own pod (a forwarding loop); name the real resolver"))
			continue
		}
		if seen[ap] {
			v.add(field.Duplicate(p.Index(i), s))
		}
		seen[ap] = true
	}
}

// ParseDNSServer parses a DNS server written as IP, IP:port or [IPv6]:port;
// the port defaults to 53.
func ParseDNSServer(s string) (netip.AddrPort, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return netip.AddrPort{}, fmt.Errorf("an address with a zone cannot be reached from a pod")
		}
		return netip.AddrPortFrom(a.Unmap(), 53), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("must be an IP address or IP:port")
	}
	if ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("port 0 is not a port")
	}
	if ap.Addr().Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("an address with a zone cannot be reached from a pod")
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}
