package clusterinfo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/kubeforge/kubeforge/bootstrap/config"
)

// JoinedHostsConfigMapName is where the control plane records the hosts that
// joined without being in the hosts table: kube-system/kubeforge-joined-hosts,
// one key per host (its name), the value a JoinedHost in JSON.
//
// Who writes it, and why not kubeforge-config itself: only the CSR approver
// (kubeforge-csr-approver.service on the control plane, which watches the
// Nodes) and `kubeforge node remove` (admin) do. Its identity may get and
// update exactly this ConfigMap, never kubeforge-config, so neither it nor a
// stolen copy of its credential can change the cluster's settings (etcd
// endpoints, time servers, CIDRs) that every joining host trusts. A joining
// host's bootstrap token and a node's identity may only read it: a node cannot
// add, alter or remove any entry, its own included; what the approver records
// is the Node's name and the InternalIP its kubelet reported when it first
// registered, and it never changes an entry or records a name or address that
// the hosts table (or an earlier entry) already holds.
const JoinedHostsConfigMapName = "kubeforge-joined-hosts"

// JoinedHost is one recorded host. Its name is the key.
type JoinedHost struct {
	Address string        `json:"address"`
	Roles   []config.Role `json:"roles"`
	// Joined is when the control plane recorded it.
	Joined time.Time `json:"joined"`
}

// EnsureJoinedHosts creates the (empty) ConfigMap when it does not exist and
// never touches an existing one: re-running upload-config keeps the record.
func EnsureJoinedHosts(ctx context.Context, c kubernetes.Interface) (bool, error) {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: JoinedHostsConfigMapName, Namespace: metav1.NamespaceSystem}, Data: map[string]string{}}
	_, err := c.CoreV1().ConfigMaps(metav1.NamespaceSystem).Create(ctx, cm, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("ConfigMap kube-system/%s: %w", JoinedHostsConfigMapName, err)
	}
	return true, nil
}

// JoinedHosts reads the recorded hosts, sorted by name; entries that do not
// decode are skipped. A missing ConfigMap is an empty record.
func JoinedHosts(ctx context.Context, c kubernetes.Interface) ([]config.Host, error) {
	cm, err := c.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, JoinedHostsConfigMapName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading kube-system/%s: %w", JoinedHostsConfigMapName, err)
	}
	return decodeJoined(cm), nil
}

func decodeJoined(cm *corev1.ConfigMap) []config.Host {
	var out []config.Host
	for name, v := range cm.Data {
		var j JoinedHost
		if json.Unmarshal([]byte(v), &j) != nil || len(validation.IsDNS1123Label(name)) > 0 {
			continue
		}
		if _, err := netip.ParseAddr(j.Address); err != nil || len(j.Roles) == 0 {
			continue
		}
		out = append(out, config.Host{Name: name, Address: j.Address, Roles: j.Roles})
	}
	sort.Slice(out, func(i, k int) bool { return out[i].Name < out[k].Name })
	return out
}

// MergeJoinedHosts returns cfg with the recorded hosts appended to its hosts
// table, skipping any whose name or address the table already holds (the
// operator's table always wins). cfg itself is not changed.
func MergeJoinedHosts(cfg *config.Cluster, joined []config.Host) *config.Cluster {
	if len(joined) == 0 {
		return cfg
	}
	cp := *cfg
	cp.Spec.Hosts = slices.Clone(cfg.Spec.Hosts)
	for _, j := range joined {
		if conflict(&cp, j.Name, j.Address) == "" {
			cp.Spec.Hosts = append(cp.Spec.Hosts, j)
		}
	}
	return &cp
}

// conflict says why name/address cannot be recorded ("" if it can).
func conflict(cfg *config.Cluster, name, address string) string {
	for _, h := range cfg.Spec.Hosts {
		switch {
		case h.Name == name:
			return "host " + name + " is in the hosts table"
		case address != "" && h.Address == address:
			return fmt.Sprintf("address %s is host %s's", address, h.Name)
		}
	}
	return ""
}

// ErrJoinedConflict is returned by RecordJoinedHost for a name or address that
// is taken.
var ErrJoinedConflict = errors.New("cannot record the joined host")

// RecordJoinedHost records name (a worker at address) unless the hosts table of
// cfg or the record already knows the name. It never changes an existing
// entry; an address that a listed or recorded host has is refused. The update
// carries the resource version it read, so concurrent writers cannot lose each
// other's entries. It reports whether it recorded.
//
// uid is the Node the entry is for: after reading the record, it reads the
// Node from the API (not from a cache) and records nothing unless a Node of
// that name and UID still exists. `kubeforge node remove` deletes the Node
// before it drops the entry, so a caller acting on a stale view of a Node
// (an informer that has not seen the deletion yet) can never write back an
// entry that node remove has just dropped: either its read of the record
// comes after the drop, and then its read of the Node after the deletion, or
// its update carries a resource version from before the drop and conflicts.
func RecordJoinedHost(ctx context.Context, c kubernetes.Interface, cfg *config.Cluster, name, address string, uid types.UID, now time.Time) (bool, error) {
	if msgs := validation.IsDNS1123Label(name); len(msgs) > 0 {
		return false, fmt.Errorf("%w: node name %q: %v", ErrJoinedConflict, name, msgs)
	}
	if _, err := netip.ParseAddr(address); err != nil {
		return false, fmt.Errorf("%w: node %s: address %q: %v", ErrJoinedConflict, name, address, err)
	}
	if _, ok := cfg.Host(name); ok {
		return false, nil
	}
	cm, err := c.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, JoinedHostsConfigMapName, metav1.GetOptions{})
	if err != nil {
		return false, fmt.Errorf("reading kube-system/%s: %w", JoinedHostsConfigMapName, err)
	}
	if _, ok := cm.Data[name]; ok {
		return false, nil
	}
	if why := conflict(MergeJoinedHosts(cfg, decodeJoined(cm)), name, address); why != "" {
		return false, fmt.Errorf("%w: node %s at %s: %s", ErrJoinedConflict, name, address, why)
	}
	node, err := c.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || (err == nil && node.UID != uid) {
		return false, nil // deleted (or replaced) since the caller saw it
	}
	if err != nil {
		return false, fmt.Errorf("recording %s in kube-system/%s: reading Node %s: %w", name, JoinedHostsConfigMapName, name, err)
	}
	v, err := json.Marshal(JoinedHost{Address: address, Roles: []config.Role{config.RoleWorker}, Joined: now.UTC().Truncate(time.Second)})
	if err != nil {
		return false, err
	}
	cm = cm.DeepCopy()
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	cm.Data[name] = string(v)
	if _, err := c.CoreV1().ConfigMaps(metav1.NamespaceSystem).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		return false, fmt.Errorf("recording %s in kube-system/%s: %w", name, JoinedHostsConfigMapName, err)
	}
	return true, nil
}

// RecordJoinedControlPlane records name, a control-plane host at address that
// joined without being in the hosts table, with roles (control-plane, and etcd
// when it runs a member). It is written by the joining host itself with its
// admin credential, before its kubelet registers the Node, so the approver
// (which records Nodes as workers) finds the name taken and leaves it alone.
// An entry of the same name and address is given the roles (a worker that is
// joined again as a control-plane host); a name or address another host has is
// refused. It reports whether it wrote.
func RecordJoinedControlPlane(ctx context.Context, c kubernetes.Interface, cfg *config.Cluster, name, address string, roles []config.Role, now time.Time) (bool, error) {
	if msgs := validation.IsDNS1123Label(name); len(msgs) > 0 {
		return false, fmt.Errorf("%w: node name %q: %v", ErrJoinedConflict, name, msgs)
	}
	if _, err := netip.ParseAddr(address); err != nil {
		return false, fmt.Errorf("%w: node %s: address %q: %v", ErrJoinedConflict, name, address, err)
	}
	if !slices.Contains(roles, config.RoleControlPlane) {
		return false, fmt.Errorf("%w: node %s: roles %v lack %s", ErrJoinedConflict, name, roles, config.RoleControlPlane)
	}
	if _, ok := cfg.Host(name); ok {
		return false, nil // the hosts table lists it: the table wins
	}
	var wrote bool
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		wrote = false
		cm, err := c.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, JoinedHostsConfigMapName, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("reading kube-system/%s: %w", JoinedHostsConfigMapName, err)
		}
		joined := decodeJoined(cm)
		var others []config.Host
		for _, j := range joined {
			if j.Name == name {
				if j.Address != address {
					return fmt.Errorf("%w: node %s at %s: kube-system/%s records it at %s", ErrJoinedConflict, name, address, JoinedHostsConfigMapName, j.Address)
				}
				if slices.Equal(j.Roles, roles) {
					return nil
				}
				continue
			}
			others = append(others, j)
		}
		if why := conflict(MergeJoinedHosts(cfg, others), name, address); why != "" {
			return fmt.Errorf("%w: node %s at %s: %s", ErrJoinedConflict, name, address, why)
		}
		v, err := json.Marshal(JoinedHost{Address: address, Roles: slices.Clone(roles), Joined: now.UTC().Truncate(time.Second)})
		if err != nil {
			return err
		}
		cm = cm.DeepCopy()
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		cm.Data[name] = string(v)
		if _, err := c.CoreV1().ConfigMaps(metav1.NamespaceSystem).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			if apierrors.IsConflict(err) {
				return err // read again and retried
			}
			return fmt.Errorf("recording %s in kube-system/%s: %w", name, JoinedHostsConfigMapName, err)
		}
		wrote = true
		return nil
	})
	return wrote, err
}

// ForgetJoinedHost removes name's entry; it reports whether there was one. A
// concurrent change of the ConfigMap (the approver forgetting the same deleted
// Node) is read again and retried.
func ForgetJoinedHost(ctx context.Context, c kubernetes.Interface, name string) (bool, error) {
	var forgot bool
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var err error
		forgot, err = forgetJoinedHost(ctx, c, name)
		return err
	})
	return forgot, err
}

func forgetJoinedHost(ctx context.Context, c kubernetes.Interface, name string) (bool, error) {
	cm, err := c.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, JoinedHostsConfigMapName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading kube-system/%s: %w", JoinedHostsConfigMapName, err)
	}
	if _, ok := cm.Data[name]; !ok {
		return false, nil
	}
	cm = cm.DeepCopy()
	delete(cm.Data, name)
	if _, err := c.CoreV1().ConfigMaps(metav1.NamespaceSystem).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsConflict(err) {
			return false, err // retried as is
		}
		return false, fmt.Errorf("removing %s from kube-system/%s: %w", name, JoinedHostsConfigMapName, err)
	}
	return true, nil
}
