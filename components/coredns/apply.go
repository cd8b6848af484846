package coredns

import (
	"bytes"
	"context"
	"fmt"
	"os"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"

	"github.com/kubeforge/kubeforge/bootstrap/bundle"
	"github.com/kubeforge/kubeforge/components/images/oci"
)

func mustQuantity(s string) resource.Quantity { return resource.MustParse(s) }

// object is what the typed clients return.
type object interface {
	metav1.Object
	runtime.Object
}

// step is one object of the add-on: how to read, apply and delete it.
type step struct {
	what   string // "Deployment kube-system/coredns"
	get    func(ctx context.Context) (object, error)
	apply  func(ctx context.Context) (object, error)
	delete func(ctx context.Context) error
}

// same reports whether an apply left the object as it was: equal apart from
// resourceVersion and managedFields (bookkeeping) and status (which
// controllers move on their own between the read and the apply).
func same(before, after object) bool {
	strip := func(o object) map[string]any {
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
		if err != nil {
			return map[string]any{"unconvertible": err.Error()}
		}
		delete(u, "status")
		if md, ok := u["metadata"].(map[string]any); ok {
			delete(md, "resourceVersion")
			delete(md, "managedFields")
		}
		return u
	}
	return equality.Semantic.DeepEqual(strip(before), strip(after))
}

func steps(c kubernetes.Interface, o *Objects) []step {
	ao := metav1.ApplyOptions{FieldManager: FieldManager, Force: true}
	get := metav1.GetOptions{}
	del := metav1.DeleteOptions{}
	ns := Namespace
	return []step{
		{"ServiceAccount " + ns + "/" + Name,
			func(ctx context.Context) (object, error) { return c.CoreV1().ServiceAccounts(ns).Get(ctx, Name, get) },
			func(ctx context.Context) (object, error) {
				return c.CoreV1().ServiceAccounts(ns).Apply(ctx, o.ServiceAccount, ao)
			},
			func(ctx context.Context) error { return c.CoreV1().ServiceAccounts(ns).Delete(ctx, Name, del) }},
		{"ClusterRole " + ClusterRoleName,
			func(ctx context.Context) (object, error) {
				return c.RbacV1().ClusterRoles().Get(ctx, ClusterRoleName, get)
			},
			func(ctx context.Context) (object, error) {
				return c.RbacV1().ClusterRoles().Apply(ctx, o.ClusterRole, ao)
			},
			func(ctx context.Context) error { return c.RbacV1().ClusterRoles().Delete(ctx, ClusterRoleName, del) }},
		{"ClusterRoleBinding " + ClusterRoleName,
			func(ctx context.Context) (object, error) {
				return c.RbacV1().ClusterRoleBindings().Get(ctx, ClusterRoleName, get)
			},
			func(ctx context.Context) (object, error) {
				return c.RbacV1().ClusterRoleBindings().Apply(ctx, o.ClusterRoleBinding, ao)
			},
			func(ctx context.Context) error {
				return c.RbacV1().ClusterRoleBindings().Delete(ctx, ClusterRoleName, del)
			}},
		{"ConfigMap " + ns + "/" + Name,
			func(ctx context.Context) (object, error) { return c.CoreV1().ConfigMaps(ns).Get(ctx, Name, get) },
			func(ctx context.Context) (object, error) {
				return c.CoreV1().ConfigMaps(ns).Apply(ctx, o.ConfigMap, ao)
			},
			func(ctx context.Context) error { return c.CoreV1().ConfigMaps(ns).Delete(ctx, Name, del) }},
		{"Deployment " + ns + "/" + Name,
			func(ctx context.Context) (object, error) { return c.AppsV1().Deployments(ns).Get(ctx, Name, get) },
			func(ctx context.Context) (object, error) {
				return c.AppsV1().Deployments(ns).Apply(ctx, o.Deployment, ao)
			},
			func(ctx context.Context) error { return c.AppsV1().Deployments(ns).Delete(ctx, Name, del) }},
		{"PodDisruptionBudget " + ns + "/" + Name,
			func(ctx context.Context) (object, error) {
				return c.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, Name, get)
			},
			func(ctx context.Context) (object, error) {
				return c.PolicyV1().PodDisruptionBudgets(ns).Apply(ctx, o.PodDisruptionBudget, ao)
			},
			func(ctx context.Context) error { return c.PolicyV1().PodDisruptionBudgets(ns).Delete(ctx, Name, del) }},
		{"Service " + ns + "/" + ServiceName,
			func(ctx context.Context) (object, error) { return c.CoreV1().Services(ns).Get(ctx, ServiceName, get) },
			func(ctx context.Context) (object, error) {
				return c.CoreV1().Services(ns).Apply(ctx, o.Service, ao)
			},
			func(ctx context.Context) error { return c.CoreV1().Services(ns).Delete(ctx, ServiceName, del) }},
	}
}

// Ensure applies every object with server-side apply (field manager
// "kubeforge", taking over fields another manager set) and returns the ones
// an apply changed (compared apart from resourceVersion and managedFields), so
// a second run reports nothing. A Service kube-dns that exists at another
// address is refused by name before anything is applied (its clusterIP cannot
// change, and the kubelets point at the configured one).
func Ensure(ctx context.Context, c kubernetes.Interface, o *Objects) (changed []string, err error) {
	if svc, err := c.CoreV1().Services(Namespace).Get(ctx, ServiceName, metav1.GetOptions{}); err == nil {
		if svc.Spec.ClusterIP != "" && svc.Spec.ClusterIP != o.ClusterIP {
			return nil, fmt.Errorf("Service %s/%s exists with clusterIP %s, but the cluster DNS address (the tenth of spec.networking.serviceCIDR) is %s; delete that Service (kubectl -n %s delete service %s) and run `kubeforge init phase addon coredns` again",
				Namespace, ServiceName, svc.Spec.ClusterIP, o.ClusterIP, Namespace, ServiceName)
		}
	} else if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("reading Service %s/%s: %w", Namespace, ServiceName, err)
	}
	for _, s := range steps(c, o) {
		before, err := s.get(ctx)
		if apierrors.IsNotFound(err) {
			before = nil
		} else if err != nil {
			return changed, fmt.Errorf("reading %s: %w", s.what, err)
		}
		after, err := s.apply(ctx)
		if err != nil {
			return changed, fmt.Errorf("applying %s: %w", s.what, err)
		}
		if before == nil || !same(before, after) {
			changed = append(changed, s.what)
		}
	}
	return changed, nil
}

// Remove deletes the add-on's objects that carry kubeforge's managed-by label
// (so a kube-dns Service someone else made is left alone), Deployment first so
// no pod runs on without its RBAC. It returns what it deleted.
func Remove(ctx context.Context, c kubernetes.Interface) (removed []string, err error) {
	all := steps(c, &Objects{})
	// Reverse order: Service, PDB, Deployment, ConfigMap, RBAC, ServiceAccount.
	for i := len(all) - 1; i >= 0; i-- {
		s := all[i]
		cur, err := s.get(ctx)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return removed, fmt.Errorf("reading %s: %w", s.what, err)
		}
		if cur.GetLabels()[ManagedByLabel] != ManagedBy {
			continue
		}
		if err := s.delete(ctx); err != nil && !apierrors.IsNotFound(err) {
			return removed, fmt.Errorf("deleting %s: %w", s.what, err)
		}
		removed = append(removed, s.what)
	}
	return removed, nil
}

// BundleImage returns the CoreDNS image's reference and manifest digest from
// the bundle's archive, verified against the manifest.
func BundleImage(b *bundle.Bundle) (ref, digest string, err error) {
	if _, ok := b.Lookup(ImageArchive); !ok {
		return "", "", fmt.Errorf("bundle %s has no %s (built by an older hack/build-bundle.sh?); rebuild the bundle, or set spec.addons.coreDNS.enabled: false", b.Dir, ImageArchive)
	}
	if err := b.VerifyFile(ImageArchive); err != nil {
		return "", "", err
	}
	data, err := os.ReadFile(b.Path(ImageArchive))
	if err != nil {
		return "", "", fmt.Errorf("bundle %s: %w", b.Dir, err)
	}
	imgs, err := oci.ReadArchiveIndex(bytes.NewReader(data))
	if err != nil {
		return "", "", fmt.Errorf("bundle %s: %s: %w", b.Dir, ImageArchive, err)
	}
	if len(imgs) != 1 {
		return "", "", fmt.Errorf("bundle %s: %s names %d images, want exactly one", b.Dir, ImageArchive, len(imgs))
	}
	return imgs[0].Name, imgs[0].Digest.String(), nil
}
