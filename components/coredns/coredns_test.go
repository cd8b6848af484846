package coredns

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubeforge/kubeforge/bootstrap/config"
)

func TestReverseZones(t *testing.T) {
	for cidr, want := range map[string]string{
		"10.244.0.0/16":  "244.10.in-addr.arpa",
		"10.96.0.0/12":   "96.10.in-addr.arpa 97.10.in-addr.arpa 98.10.in-addr.arpa 99.10.in-addr.arpa 100.10.in-addr.arpa 101.10.in-addr.arpa 102.10.in-addr.arpa 103.10.in-addr.arpa 104.10.in-addr.arpa 105.10.in-addr.arpa 106.10.in-addr.arpa 107.10.in-addr.arpa 108.10.in-addr.arpa 109.10.in-addr.arpa 110.10.in-addr.arpa 111.10.in-addr.arpa",
		"172.20.0.0/14":  "20.172.in-addr.arpa 21.172.in-addr.arpa 22.172.in-addr.arpa 23.172.in-addr.arpa",
		"192.168.5.0/24": "5.168.192.in-addr.arpa",
		"192.168.5.0/25": "0.5.168.192.in-addr.arpa 1.5.168.192.in-addr.arpa 2.5.168.192.in-addr.arpa 3.5.168.192.in-addr.arpa 4.5.168.192.in-addr.arpa 5.5.168.192.in-addr.arpa 6.5.168.192.in-addr.arpa 7.5.168.192.in-addr.arpa 8.5.168.192.in-addr.arpa 9.5.168.192.in-addr.arpa 10.5.168.192.in-addr.arpa 11.5.168.192.in-addr.arpa 12.5.168.192.in-addr.arpa 13.5.168.192.in-addr.arpa 14.5.168.192.in-addr.arpa 15.5.168.192.in-addr.arpa 16.5.168.192.in-addr.arpa 17.5.168.192.in-addr.arpa 18.5.168.192.in-addr.arpa 19.5.168.192.in-addr.arpa 20.5.168.192.in-addr.arpa 21.5.168.192.in-addr.arpa 22.5.168.192.in-addr.arpa 23.5.168.192.in-addr.arpa 24.5.168.192.in-addr.arpa 25.5.168.192.in-addr.arpa 26.5.168.192.in-addr.arpa 27.5.168.192.in-addr.arpa 28.5.168.192.in-addr.arpa 29.5.168.192.in-addr.arpa 30.5.168.192.in-addr.arpa 31.5.168.192.in-addr.arpa 32.5.168.192.in-addr.arpa 33.5.168.192.in-addr.arpa 34.5.168.192.in-addr.arpa 35.5.168.192.in-addr.arpa 36.5.168.192.in-addr.arpa 37.5.168.192.in-addr.arpa 38.5.168.192.in-addr.arpa 39.5.168.192.in-addr.arpa 40.5.168.192.in-addr.arpa 41.5.168.192.in-addr.arpa 42.5.168.192.in-addr.arpa 43.5.168.192.in-addr.arpa 44.5.168.192.in-addr.arpa 45.5.168.192.in-addr.arpa 46.5.168.192.in-addr.arpa 47.5.168.192.in-addr.arpa 48.5.168.192.in-addr.arpa 49.5.168.192.in-addr.arpa 50.5.168.192.in-addr.arpa 51.5.168.192.in-addr.arpa 52.5.168.192.in-addr.arpa 53.5.168.192.in-addr.arpa 54.5.168.192.in-addr.arpa 55.5.168.192.in-addr.arpa 56.5.168.192.in-addr.arpa 57.5.168.192.in-addr.arpa 58.5.168.192.in-addr.arpa 59.5.168.192.in-addr.arpa 60.5.168.192.in-addr.arpa 61.5.168.192.in-addr.arpa 62.5.168.192.in-addr.arpa 63.5.168.192.in-addr.arpa 64.5.168.192.in-addr.arpa 65.5.168.192.in-addr.arpa 66.5.168.192.in-addr.arpa 67.5.168.192.in-addr.arpa 68.5.168.192.in-addr.arpa 69.5.168.192.in-addr.arpa 70.5.168.192.in-addr.arpa 71.5.168.192.in-addr.arpa 72.5.168.192.in-addr.arpa 73.5.168.192.in-addr.arpa 74.5.168.192.in-addr.arpa 75.5.168.192.in-addr.arpa 76.5.168.192.in-addr.arpa 77.5.168.192.in-addr.arpa 78.5.168.192.in-addr.arpa 79.5.168.192.in-addr.arpa 80.5.168.192.in-addr.arpa 81.5.168.192.in-addr.arpa 82.5.168.192.in-addr.arpa 83.5.168.192.in-addr.arpa 84.5.168.192.in-addr.arpa 85.5.168.192.in-addr.arpa 86.5.168.192.in-addr.arpa 87.5.168.192.in-addr.arpa 88.5.168.192.in-addr.arpa 89.5.168.192.in-addr.arpa 90.5.168.192.in-addr.arpa 91.5.168.192.in-addr.arpa 92.5.168.192.in-addr.arpa 93.5.168.192.in-addr.arpa 94.5.168.192.in-addr.arpa 95.5.168.192.in-addr.arpa 96.5.168.192.in-addr.arpa 97.5.168.192.in-addr.arpa 98.5.168.192.in-addr.arpa 99.5.168.192.in-addr.arpa 100.5.168.192.in-addr.arpa 101.5.168.192.in-addr.arpa 102.5.168.192.in-addr.arpa 103.5.168.192.in-addr.arpa 104.5.168.192.in-addr.arpa 105.5.168.192.in-addr.arpa 106.5.168.192.in-addr.arpa 107.5.168.192.in-addr.arpa 108.5.168.192.in-addr.arpa 109.5.168.192.in-addr.arpa 110.5.168.192.in-addr.arpa 111.5.168.192.in-addr.arpa 112.5.168.192.in-addr.arpa 113.5.168.192.in-addr.arpa 114.5.168.192.in-addr.arpa 115.5.168.192.in-addr.arpa 116.5.168.192.in-addr.arpa 117.5.168.192.in-addr.arpa 118.5.168.192.in-addr.arpa 119.5.168.192.in-addr.arpa 120.5.168.192.in-addr.arpa 121.5.168.192.in-addr.arpa 122.5.168.192.in-addr.arpa 123.5.168.192.in-addr.arpa 124.5.168.192.in-addr.arpa 125.5.168.192.in-addr.arpa 126.5.168.192.in-addr.arpa 127.5.168.192.in-addr.arpa",
		"fd00:10::/108":  "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.d.f.ip6.arpa",
		"fd00:10::/106":  "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.d.f.ip6.arpa 1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.d.f.ip6.arpa 2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.d.f.ip6.arpa 3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.d.f.ip6.arpa",
	} {
		got, err := ReverseZones(cidr)
		if err != nil || strings.Join(got, " ") != want {
			t.Errorf("%s:\n got %v %v\nwant %s", cidr, got, err, want)
		}
	}
	for _, bad := range []string{"10.0.0.0/33", "x", ""} {
		if z, err := ReverseZones(bad); err == nil {
			t.Errorf("%q accepted: %v", bad, z)
		}
	}
}

func seed(t *testing.T) *config.Cluster {
	t.Helper()
	return config.Default()
}

func TestCorefile(t *testing.T) {
	c := seed(t)
	got, err := Corefile(CorefileOptions{Networking: c.Spec.Networking, CoreDNS: c.Spec.Addons.CoreDNS, Forward: ForwardResolvConf})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		".:53 {",
		"    kubernetes cluster.local 244.10.in-addr.arpa 96.10.in-addr.arpa 97.10.in-addr.arpa",
		"111.10.in-addr.arpa {\n        pods insecure\n        fallthrough in-addr.arpa ip6.arpa\n",
		"    forward . /etc/resolv.conf {",
		"    ready\n", "    health {\n        lameduck 5s\n", "    prometheus :9153\n", "    loop\n", "    reload\n", "    errors\n",
		"    cache 30 {\n        disable success cluster.local\n        disable denial cluster.local\n    }\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("Corefile lacks %q:\n%s", want, got)
		}
	}

	// No usable resolver on the hosts: cluster names only, no forward at all.
	none, err := Corefile(CorefileOptions{Networking: c.Spec.Networking, CoreDNS: c.Spec.Addons.CoreDNS, Forward: ForwardNone})
	if err != nil || strings.Contains(none, "forward") || !strings.Contains(none, "kubernetes cluster.local") {
		t.Errorf("ForwardNone: %v\n%s", err, none)
	}

	// Configured upstreams win over the resolver file; stub domains get blocks.
	dns := c.Spec.Addons.CoreDNS
	dns.Upstreams = []string{"192.168.1.53", "[fd00::53]:5353"}
	dns.StubDomains = []config.StubDomain{{Domain: "Corp.Example.", Servers: []string{"10.10.0.53", "10.10.1.53:5353"}}}
	up, err := Corefile(CorefileOptions{Networking: c.Spec.Networking, CoreDNS: dns, Forward: ForwardNone})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"    forward . 192.168.1.53:53 [fd00::53]:5353 {", "corp.example:53 {\n    errors\n    cache 30\n    forward . 10.10.0.53:53 10.10.1.53:5353\n}\n"} {
		if !strings.Contains(up, want) {
			t.Errorf("Corefile lacks %q:\n%s", want, up)
		}
	}
	if strings.Contains(up, "/etc/resolv.conf") {
		t.Errorf("upstreams configured, yet the resolver file is used:\n%s", up)
	}
}

func TestForwardFor(t *testing.T) {
	cases := []struct {
		conf string
		want Forward
		why  string
	}{
		{"nameserver 192.168.1.1\nsearch lan\n", ForwardResolvConf, "(192.168.1.1)"},
		{"nameserver 127.0.0.53\nnameserver 10.0.0.2\n", ForwardResolvConf, "(10.0.0.2)"},
		{"nameserver 127.0.0.53\noptions edns0\n", ForwardNone, "only loopback nameservers"},
		{"nameserver ::1\n", ForwardNone, "only loopback"},
		{"# empty\nsearch example\n", ForwardNone, "lists no nameserver"},
		{"", ForwardNone, "lists no nameserver"},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%q", tc.conf), func(t *testing.T) {
			got, why := ForwardFor("h:/etc/resolv.conf", []byte(tc.conf))
			if got != tc.want || !strings.Contains(why, tc.why) {
				t.Errorf("%q: %v %q, want %v containing %q", tc.conf, got, why, tc.want, tc.why)
			}
		})
	}
}

func build(t *testing.T, c *config.Cluster, image, digest string) *Objects {
	t.Helper()
	o, err := Build(Options{Cluster: c, Image: image, ImageDigest: digest, Forward: ForwardResolvConf})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestBuild(t *testing.T) {
	c := seed(t)
	o := build(t, c, "kubeforge.local/coredns:v1.12.1", "sha256:aa")

	// The Service sits where the kubelets point pods.
	ip, _ := c.Spec.Networking.ClusterDNSIP()
	if got := *o.Service.Spec.ClusterIP; got != ip.String() || got != "10.96.0.10" {
		t.Errorf("Service clusterIP %s, kubelet clusterDNS %s", got, ip)
	}
	var ports []string
	for _, p := range o.Service.Spec.Ports {
		ports = append(ports, fmt.Sprintf("%s/%d", *p.Protocol, *p.Port))
	}
	if strings.Join(ports, " ") != "UDP/53 TCP/53 TCP/9153" {
		t.Errorf("Service ports %v", ports)
	}

	// Least privilege: list/watch of exactly what the kubernetes plugin reads.
	var rules []string
	for _, r := range o.ClusterRole.Rules {
		rules = append(rules, strings.Join(r.APIGroups, ",")+":"+strings.Join(r.Resources, ",")+":"+strings.Join(r.Verbs, ","))
	}
	if want := ":services,namespaces:list,watch discovery.k8s.io:endpointslices:list,watch"; strings.Join(rules, " ") != want {
		t.Errorf("ClusterRole rules %v, want %s", rules, want)
	}
	if s := o.ClusterRoleBinding.Subjects[0]; *s.Kind != "ServiceAccount" || *s.Name != Name || *s.Namespace != Namespace {
		t.Errorf("binding subject %+v", s)
	}

	d := o.Deployment.Spec
	p := d.Template.Spec
	ctr := p.Containers[0]
	switch {
	case *d.Replicas != 2:
		t.Errorf("replicas %d", *d.Replicas)
	case *p.PriorityClassName != "system-cluster-critical":
		t.Errorf("priority class %s", *p.PriorityClassName)
	case *ctr.Image != "kubeforge.local/coredns:v1.12.1" || string(*ctr.ImagePullPolicy) != "Never":
		t.Errorf("image %s %s", *ctr.Image, *ctr.ImagePullPolicy)
	case *ctr.ReadinessProbe.HTTPGet.Path != "/ready" || ctr.ReadinessProbe.HTTPGet.Port.IntValue() != 8181:
		t.Errorf("readiness probe %+v", ctr.ReadinessProbe.HTTPGet)
	case *ctr.LivenessProbe.HTTPGet.Path != "/health" || ctr.LivenessProbe.HTTPGet.Port.IntValue() != 8080:
		t.Errorf("liveness probe %+v", ctr.LivenessProbe.HTTPGet)
	case string(*p.DNSPolicy) != "Default":
		t.Errorf("dnsPolicy %s: CoreDNS must not resolve through itself", *p.DNSPolicy)
	case *p.SecurityContext.RunAsNonRoot != true || *ctr.SecurityContext.AllowPrivilegeEscalation || ctr.SecurityContext.Capabilities.Drop[0] != "ALL" || len(ctr.SecurityContext.Capabilities.Add) != 0:
		t.Errorf("security context %+v %+v", p.SecurityContext, ctr.SecurityContext)
	case p.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution[0].TopologyKey == nil ||
		*p.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution[0].TopologyKey != "kubernetes.io/hostname":
		t.Errorf("replicas are not kept on separate nodes")
	}
	tolerated := false
	for _, tol := range p.Tolerations {
		if tol.Key != nil && *tol.Key == "node-role.kubernetes.io/control-plane" {
			tolerated = true
		}
	}
	if !tolerated {
		t.Errorf("the control-plane taint is not tolerated: %+v", p.Tolerations)
	}
	if !reflect.DeepEqual(o.Deployment.Spec.Selector.MatchLabels, map[string]string{AppLabel: AppLabelValue}) ||
		o.PodDisruptionBudget.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("selector %v, PDB %+v", o.Deployment.Spec.Selector.MatchLabels, o.PodDisruptionBudget.Spec)
	}
	if o.ConfigMap.Data["Corefile"] != o.Corefile {
		t.Errorf("ConfigMap does not carry the Corefile")
	}

	// The pod template's checksum moves with the config and with the image,
	// and only with them.
	sum := o.Deployment.Spec.Template.Annotations[ChecksumAnnotation]
	if again := build(t, seed(t), "kubeforge.local/coredns:v1.12.1", "sha256:aa"); again.Deployment.Spec.Template.Annotations[ChecksumAnnotation] != sum {
		t.Errorf("the same inputs give another checksum")
	}
	c2 := seed(t)
	c2.Spec.Addons.CoreDNS.Upstreams = []string{"10.0.0.2"}
	for name, other := range map[string]*Objects{
		"upstreams": build(t, c2, "kubeforge.local/coredns:v1.12.1", "sha256:aa"),
		"image tag": build(t, c, "kubeforge.local/coredns:v1.12.2", "sha256:aa"),
		"digest":    build(t, c, "kubeforge.local/coredns:v1.12.1", "sha256:bb"),
	} {
		if other.Deployment.Spec.Template.Annotations[ChecksumAnnotation] == sum {
			t.Errorf("a changed %s keeps the checksum: the Deployment would not roll", name)
		}
	}
}

// Ensure creates everything once, then reports nothing changed; Remove takes
// away only what carries kubeforge's label.
func TestEnsureIdempotentAndRemove(t *testing.T) {
	ctx := context.Background()
	cli := fake.NewClientset()
	o := build(t, seed(t), "kubeforge.local/coredns:v1.12.1", "sha256:aa")
	changed, err := Ensure(ctx, cli, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(changed) != 7 {
		t.Fatalf("first run changed %v, want all 7 objects", changed)
	}
	changed, err = Ensure(ctx, cli, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(changed) != 0 {
		t.Fatalf("second run changed %v", changed)
	}
	c2 := seed(t)
	c2.Spec.Addons.CoreDNS.Upstreams = []string{"10.0.0.2"}
	changed, err = Ensure(ctx, cli, build(t, c2, "kubeforge.local/coredns:v1.12.1", "sha256:aa"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(changed, ",") != "ConfigMap kube-system/coredns,Deployment kube-system/coredns" {
		t.Fatalf("a changed upstream changed %v, want the ConfigMap and the Deployment", changed)
	}

	// A kube-dns Service at another address is refused before anything is applied.
	other := seed(t)
	other.Spec.Networking.ServiceCIDR = "10.100.0.0/16"
	if _, err := Ensure(ctx, cli, build(t, other, "kubeforge.local/coredns:v1.12.1", "sha256:aa")); err == nil ||
		!strings.Contains(err.Error(), "exists with clusterIP 10.96.0.10") || !strings.Contains(err.Error(), "10.100.0.10") {
		t.Fatalf("clusterIP clash: %v", err)
	}

	removed, err := Remove(ctx, cli)
	if err != nil || len(removed) != 7 || removed[0] != "Service kube-system/kube-dns" {
		t.Fatalf("Remove: %v %v", removed, err)
	}
	if _, err := cli.AppsV1().Deployments(Namespace).Get(ctx, Name, metav1.GetOptions{}); err == nil {
		t.Fatal("Deployment left behind")
	}
	if removed, err := Remove(ctx, cli); err != nil || len(removed) != 0 {
		t.Fatalf("second Remove: %v %v", removed, err)
	}
}
