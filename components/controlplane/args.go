package controlplane

import (
	"fmt"
	"slices"
	"strings"
)

// Args are a daemon's command-line flags, name (without "--") to value.
type Args map[string]string

// Merge returns a copy of a with extra set over it: extraArgs from the cluster
// configuration win over kubeforge's defaults, as in kubeadm.
func (a Args) Merge(extra map[string]string) Args {
	out := make(Args, len(a)+len(extra))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

// Has reports whether the flag is set.
func (a Args) Has(name string) bool { _, ok := a[name]; return ok }

// Flags renders the flags as "--name=value", sorted by name so that the same
// configuration always yields the same unit file.
func (a Args) Flags() []string {
	names := make([]string, 0, len(a))
	for k := range a {
		names = append(names, k)
	}
	slices.Sort(names)
	out := make([]string, len(names))
	for i, k := range names {
		out[i] = "--" + k + "=" + a[k]
	}
	return out
}

// validate refuses flag names that could not have come from a well-formed
// configuration; values are the daemon's to judge.
func (a Args) validate(field string) error {
	for k, v := range a {
		if k == "" || strings.HasPrefix(k, "-") || strings.ContainsAny(k, "= \t\n") {
			return fmt.Errorf("%s: %q is not a flag name (write it without leading dashes)", field, k)
		}
		if strings.ContainsAny(v, "\n\r\x00") {
			return fmt.Errorf("%s.%s: the value contains a line break or NUL", field, k)
		}
	}
	return nil
}
