// Package coredns is the cluster DNS add-on: CoreDNS from the bundle (image
// images/coredns.tar, imported on every node by the images phase) deployed into
// kube-system with client-go server-side apply, kubeadm's layout with
// kubeforge's choices:
//
//   - ServiceAccount coredns and ClusterRole system:coredns with only what the
//     kubernetes plugin reads (list/watch EndpointSlices, Services, Namespaces;
//     no Pods, as pod records are served in "pods insecure" mode);
//   - ConfigMap coredns with the Corefile (see Corefile);
//   - Deployment coredns, one replica per node, system-cluster-critical, tolerating
//     the control-plane taint, running as a non-root user with no capabilities
//     (the pod lowers net.ipv4.ip_unprivileged_port_start for its own network
//     namespace to bind :53), a read-only root, probes on /health and /ready;
//     its pod template carries a checksum of the Corefile and the image, so a
//     changed config or a new bundle rolls it;
//   - a PodDisruptionBudget (one replica may be down at a time);
//   - Service kube-dns at the cluster DNS address, the tenth of the service CIDR
//     (config.Networking.ClusterDNSIP, the address the kubelets' clusterDNS
//     comes from too).
//
// Every object is labelled app.kubernetes.io/managed-by=kubeforge, which Remove
// checks before deleting anything.
package coredns

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsac "k8s.io/client-go/applyconfigurations/apps/v1"
	coreac "k8s.io/client-go/applyconfigurations/core/v1"
	metaac "k8s.io/client-go/applyconfigurations/meta/v1"
	policyac "k8s.io/client-go/applyconfigurations/policy/v1"
	rbacac "k8s.io/client-go/applyconfigurations/rbac/v1"

	"github.com/kubeforge/kubeforge/bootstrap/config"
)

// Names of the add-on's objects.
const (
	Namespace       = metav1.NamespaceSystem
	Name            = "coredns" // ServiceAccount, ConfigMap, Deployment, PodDisruptionBudget
	ServiceName     = "kube-dns"
	ClusterRoleName = "system:coredns"
	// AppLabel selects the CoreDNS pods (kubeadm's label, which tools and the
	// upstream e2e tests look for).
	AppLabel      = "k8s-app"
	AppLabelValue = "kube-dns"
	// ManagedByLabel marks every object of the add-on.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedBy      = "kubeforge"
	// ChecksumAnnotation on the pod template holds the sha256 of the Corefile
	// and the image (name and manifest digest).
	ChecksumAnnotation = "kubeforge.io/coredns-config-sha256"
	// FieldManager is kubeforge's server-side apply field manager.
	FieldManager = "kubeforge"
	// ImageArchive is the bundle file holding the CoreDNS image.
	ImageArchive = "images/coredns.tar"

	corefilePath = "/etc/coredns/Corefile"
	// nonRootUID is the CoreDNS image's user (upstream's nonroot, 65532).
	nonRootUID = 65532
)

// Options are everything the objects depend on.
type Options struct {
	Cluster *config.Cluster
	// Image is the CoreDNS image reference and ImageDigest its manifest digest,
	// both from the bundle's archive.
	Image       string
	ImageDigest string
	// Forward applies when spec.addons.coreDNS.upstreams is empty.
	Forward Forward
}

// Objects is the add-on, as apply configurations in the order they are applied
// (what a pod needs exists before the Deployment that starts it).
type Objects struct {
	ServiceAccount      *coreac.ServiceAccountApplyConfiguration
	ClusterRole         *rbacac.ClusterRoleApplyConfiguration
	ClusterRoleBinding  *rbacac.ClusterRoleBindingApplyConfiguration
	ConfigMap           *coreac.ConfigMapApplyConfiguration
	Deployment          *appsac.DeploymentApplyConfiguration
	PodDisruptionBudget *policyac.PodDisruptionBudgetApplyConfiguration
	Service             *coreac.ServiceApplyConfiguration
	// Corefile and Checksum are what the ConfigMap and the pod template carry.
	Corefile string
	Checksum string
	// ClusterIP is the Service's address.
	ClusterIP string
}

func labels() map[string]string {
	return map[string]string{AppLabel: AppLabelValue, ManagedByLabel: ManagedBy}
}

// Build renders the add-on's objects. It only reads its inputs.
func Build(o Options) (*Objects, error) {
	if o.Cluster == nil {
		return nil, fmt.Errorf("coredns: no cluster configuration")
	}
	if o.Image == "" {
		return nil, fmt.Errorf("coredns: no image (the bundle's %s)", ImageArchive)
	}
	spec := o.Cluster.Spec
	corefile, err := Corefile(CorefileOptions{Networking: spec.Networking, CoreDNS: spec.Addons.CoreDNS, Forward: o.Forward})
	if err != nil {
		return nil, err
	}
	ip, err := spec.Networking.ClusterDNSIP()
	if err != nil {
		return nil, fmt.Errorf("spec.networking.serviceCIDR: %w", err)
	}
	sum := sha256.Sum256([]byte(corefile + "\x00" + o.Image + "\x00" + o.ImageDigest))
	checksum := hex.EncodeToString(sum[:])
	replicas := int32(spec.Addons.CoreDNS.Replicas)
	if replicas < 1 {
		replicas = config.DefaultCoreDNSReplicas
	}
	sel := map[string]string{AppLabel: AppLabelValue}

	objs := &Objects{Corefile: corefile, Checksum: checksum, ClusterIP: ip.String()}
	objs.ServiceAccount = coreac.ServiceAccount(Name, Namespace).WithLabels(labels())
	objs.ClusterRole = rbacac.ClusterRole(ClusterRoleName).WithLabels(labels()).WithRules(
		rbacac.PolicyRule().WithAPIGroups("").WithResources("services", "namespaces").WithVerbs("list", "watch"),
		rbacac.PolicyRule().WithAPIGroups("discovery.k8s.io").WithResources("endpointslices").WithVerbs("list", "watch"),
	)
	objs.ClusterRoleBinding = rbacac.ClusterRoleBinding(ClusterRoleName).WithLabels(labels()).
		WithRoleRef(rbacac.RoleRef().WithAPIGroup("rbac.authorization.k8s.io").WithKind("ClusterRole").WithName(ClusterRoleName)).
		WithSubjects(rbacac.Subject().WithKind("ServiceAccount").WithName(Name).WithNamespace(Namespace))
	objs.ConfigMap = coreac.ConfigMap(Name, Namespace).WithLabels(labels()).WithData(map[string]string{"Corefile": corefile})

	podSpec := podSpec(o.Image, sel)
	objs.Deployment = appsac.Deployment(Name, Namespace).WithLabels(labels()).WithSpec(appsac.DeploymentSpec().
		WithReplicas(replicas).
		WithSelector(metaac.LabelSelector().WithMatchLabels(sel)).
		WithStrategy(appsac.DeploymentStrategy().WithType(appsv1.RollingUpdateDeploymentStrategyType).
			WithRollingUpdate(appsac.RollingUpdateDeployment().WithMaxUnavailable(intstr.FromInt32(1)).WithMaxSurge(intstr.FromString("25%")))).
		WithTemplate(coreac.PodTemplateSpec().
			WithLabels(labels()).
			WithAnnotations(map[string]string{ChecksumAnnotation: checksum}).
			WithSpec(podSpec)))

	objs.PodDisruptionBudget = policyac.PodDisruptionBudget(Name, Namespace).WithLabels(labels()).WithSpec(
		policyac.PodDisruptionBudgetSpec().WithMaxUnavailable(intstr.FromInt32(1)).
			WithSelector(metaac.LabelSelector().WithMatchLabels(sel)))

	objs.Service = service(ip.String(), sel)
	return objs, nil
}

// podSpec is CoreDNS's pod: its one container (ports, probes, resources, a
// read-only root) and where and how it runs (priority, tolerations, one
// replica per node, non-root with the DNS port allowed by a safe sysctl).
func podSpec(image string, sel map[string]string) *coreac.PodSpecApplyConfiguration {
	probe := func(path string, port int32) *coreac.ProbeApplyConfiguration {
		return coreac.Probe().WithHTTPGet(coreac.HTTPGetAction().WithPath(path).WithPort(intstr.FromInt32(port)).WithScheme(corev1.URISchemeHTTP))
	}
	container := coreac.Container().
		WithName("coredns").
		WithImage(image).
		// The image is imported on every node from the bundle; there is no
		// registry to pull from, and Never says so at once instead of backing off.
		WithImagePullPolicy(corev1.PullNever).
		WithArgs("-conf", corefilePath).
		WithPorts(
			coreac.ContainerPort().WithName("dns").WithContainerPort(53).WithProtocol(corev1.ProtocolUDP),
			coreac.ContainerPort().WithName("dns-tcp").WithContainerPort(53).WithProtocol(corev1.ProtocolTCP),
			coreac.ContainerPort().WithName("metrics").WithContainerPort(9153).WithProtocol(corev1.ProtocolTCP),
			coreac.ContainerPort().WithName("liveness-probe").WithContainerPort(8080).WithProtocol(corev1.ProtocolTCP),
			coreac.ContainerPort().WithName("readiness-probe").WithContainerPort(8181).WithProtocol(corev1.ProtocolTCP),
		).
		WithResources(coreac.ResourceRequirements().
			WithRequests(corev1.ResourceList{corev1.ResourceCPU: mustQuantity("100m"), corev1.ResourceMemory: mustQuantity("70Mi")}).
			WithLimits(corev1.ResourceList{corev1.ResourceMemory: mustQuantity("170Mi")})).
		WithVolumeMounts(coreac.VolumeMount().WithName("config-volume").WithMountPath("/etc/coredns").WithReadOnly(true)).
		WithLivenessProbe(probe("/health", 8080).WithInitialDelaySeconds(60).WithTimeoutSeconds(5).WithSuccessThreshold(1).WithFailureThreshold(5)).
		WithReadinessProbe(probe("/ready", 8181).WithPeriodSeconds(2).WithTimeoutSeconds(1).WithSuccessThreshold(1).WithFailureThreshold(3)).
		WithSecurityContext(coreac.SecurityContext().
			WithAllowPrivilegeEscalation(false).
			WithCapabilities(coreac.Capabilities().WithDrop("ALL")).
			WithReadOnlyRootFilesystem(true))

	podSpec := coreac.PodSpec().
		WithServiceAccountName(Name).
		WithPriorityClassName("system-cluster-critical").
		// CoreDNS resolves upstream names through its node's resolver file,
		// never through itself.
		WithDNSPolicy(corev1.DNSDefault).
		WithNodeSelector(map[string]string{corev1.LabelOSStable: "linux"}).
		WithTolerations(
			coreac.Toleration().WithKey("CriticalAddonsOnly").WithOperator(corev1.TolerationOpExists),
			coreac.Toleration().WithKey("node-role.kubernetes.io/control-plane").WithEffect(corev1.TaintEffectNoSchedule),
		).
		// One replica per node: two replicas on one node would both go with it.
		// A replica with no free node stays Pending until one joins (the
		// default replica count never exceeds the hosts of the config).
		WithAffinity(coreac.Affinity().WithPodAntiAffinity(coreac.PodAntiAffinity().
			WithRequiredDuringSchedulingIgnoredDuringExecution(coreac.PodAffinityTerm().
				WithLabelSelector(metaac.LabelSelector().WithMatchLabels(sel)).
				WithTopologyKey(corev1.LabelHostname)))).
		WithSecurityContext(coreac.PodSecurityContext().
			WithRunAsUser(nonRootUID).WithRunAsGroup(nonRootUID).WithRunAsNonRoot(true).
			WithSeccompProfile(coreac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault)).
			// A namespaced sysctl of the pod's own network namespace, on the
			// kubelet's safe list: ports from 53 up need no capability there.
			WithSysctls(coreac.Sysctl().WithName("net.ipv4.ip_unprivileged_port_start").WithValue("53"))).
		WithContainers(container).
		WithVolumes(coreac.Volume().WithName("config-volume").WithConfigMap(
			coreac.ConfigMapVolumeSource().WithName(Name).WithItems(coreac.KeyToPath().WithKey("Corefile").WithPath("Corefile"))))
	return podSpec
}

// service is kube-dns at the cluster DNS IP: DNS over UDP and TCP, metrics.
func service(clusterIP string, sel map[string]string) *coreac.ServiceApplyConfiguration {
	svcLabels := labels()
	svcLabels["kubernetes.io/cluster-service"] = "true"
	svcLabels["kubernetes.io/name"] = "CoreDNS"
	return coreac.Service(ServiceName, Namespace).WithLabels(svcLabels).
		WithAnnotations(map[string]string{"prometheus.io/port": "9153", "prometheus.io/scrape": "true"}).
		WithSpec(coreac.ServiceSpec().
			WithType(corev1.ServiceTypeClusterIP).
			WithClusterIP(clusterIP).
			WithSelector(sel).
			WithPorts(
				coreac.ServicePort().WithName("dns").WithPort(53).WithTargetPort(intstr.FromInt32(53)).WithProtocol(corev1.ProtocolUDP),
				coreac.ServicePort().WithName("dns-tcp").WithPort(53).WithTargetPort(intstr.FromInt32(53)).WithProtocol(corev1.ProtocolTCP),
				coreac.ServicePort().WithName("metrics").WithPort(9153).WithTargetPort(intstr.FromInt32(9153)).WithProtocol(corev1.ProtocolTCP),
			))
}
