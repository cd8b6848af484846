package kubeclient

import (
	"bytes"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
)

// The mutate functions below are for Apply. Each copies only what kubeforge owns
// and reports whether the existing object differed.

// ConfigMapData sets want's keys on have and leaves other keys alone: the
// bootstrap signer adds its signatures to cluster-info, and they must survive.
func ConfigMapData(have, want *corev1.ConfigMap) bool {
	changed := false
	for k, v := range want.Data {
		if cur, ok := have.Data[k]; !ok || cur != v {
			if have.Data == nil {
				have.Data = map[string]string{}
			}
			have.Data[k] = v
			changed = true
		}
	}
	return changed
}

// SecretData makes have's type, data and owner references want's.
func SecretData(have, want *corev1.Secret) bool {
	changed := have.Type != want.Type || len(have.Data) != len(want.Data)
	for k, v := range want.Data {
		if !bytes.Equal(have.Data[k], v) {
			changed = true
		}
	}
	if !equality.Semantic.DeepEqual(have.OwnerReferences, want.OwnerReferences) && want.OwnerReferences != nil {
		have.OwnerReferences = want.OwnerReferences
		changed = true
	}
	if changed {
		have.Type, have.Data = want.Type, want.Data
	}
	return changed
}

// RoleRules makes have's rules want's.
func RoleRules(have, want *rbacv1.Role) bool {
	if equality.Semantic.DeepEqual(have.Rules, want.Rules) {
		return false
	}
	have.Rules = want.Rules
	return true
}

// ClusterRoleRules makes have's rules want's.
func ClusterRoleRules(have, want *rbacv1.ClusterRole) bool {
	if equality.Semantic.DeepEqual(have.Rules, want.Rules) {
		return false
	}
	have.Rules = want.Rules
	return true
}

// RoleBindingSubjects makes have's subjects want's. The role reference of a
// binding cannot change; a binding of the same name to another role is reported
// by the apiserver when the update is sent.
func RoleBindingSubjects(have, want *rbacv1.RoleBinding) bool {
	if equality.Semantic.DeepEqual(have.Subjects, want.Subjects) && have.RoleRef == want.RoleRef {
		return false
	}
	have.Subjects, have.RoleRef = want.Subjects, want.RoleRef
	return true
}

// ClusterRoleBindingSubjects is RoleBindingSubjects for cluster-wide bindings.
func ClusterRoleBindingSubjects(have, want *rbacv1.ClusterRoleBinding) bool {
	if equality.Semantic.DeepEqual(have.Subjects, want.Subjects) && have.RoleRef == want.RoleRef {
		return false
	}
	have.Subjects, have.RoleRef = want.Subjects, want.RoleRef
	return true
}
