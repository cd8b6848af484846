// Package preflight checks that a host is fit to become a node of the cluster, and
// with --fix puts it right.
//
// The model is kubeadm's preflight: every check is a small type with a stable Name
// and a Check method returning warnings and errors; one runner prints
// "[WARNING Name]" and "[ERROR Name]" lines and downgrades the errors the operator
// chose to ignore (--ignore-preflight-errors, "all" ignores all). kubeforge adds
// fixes: a check may also implement Fixer, so a check and the fix for what it
// finds stay one type, and `--fix` applies the fixes of the failing checks, runs
// every check again and shows before and after.
//
// Everything goes through host.Host, never os/exec: the same checks run on this
// machine, over SSH, and under dry-run (where read-only commands still run and
// every change is only recorded, so `--fix --dry-run` prints the plan).
//
// What differs between distributions (package manager, firewalld or ufw, SELinux or
// AppArmor, chrony's config path and unit name) lives in one Configurer per family,
// detected from /etc/os-release (configurer.go), not in branches inside the checks.
package preflight
