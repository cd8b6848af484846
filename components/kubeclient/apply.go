package kubeclient

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/util/retry"
)

// Interface is the part of a typed client-go client (ConfigMaps(ns),
// ClusterRoleBindings(), ...) that Apply needs.
type Interface[T any] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error)
	Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
}

// Apply creates want, or when an object of that name exists, lets mutate bring
// the existing object to the desired state (mutate copies the fields kubeforge
// owns from want and reports whether it changed anything) and updates it. It
// reports whether the cluster changed. Fields others set (labels, annotations,
// the bootstrap signer's signatures) are kept, and an update that races another
// writer is retried on the fresh object.
func Apply[T metav1.Object](ctx context.Context, c Interface[T], want T, mutate func(have, want T) bool) (changed bool, err error) {
	name := want.GetName()
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		have, err := c.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			if _, err := c.Create(ctx, want, metav1.CreateOptions{}); err != nil {
				if apierrors.IsAlreadyExists(err) {
					return apierrors.NewConflict(schema.GroupResource{}, name, err)
				}
				return err
			}
			changed = true
			return nil
		}
		if err != nil {
			return err
		}
		if !mutate(have, want) {
			return nil
		}
		if _, err := c.Update(ctx, have, metav1.UpdateOptions{}); err != nil {
			return err
		}
		changed = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("applying %s: %w", name, err)
	}
	return changed, nil
}
