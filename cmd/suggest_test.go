package cmd

import (
	"strings"
	"testing"
)

// TestSuggestedFlagsExist: every flag that join's, preflight's and token's
// error messages and hints suggest exists on the command they name.
func TestSuggestedFlagsExist(t *testing.T) {
	for _, tc := range []struct {
		cmd   []string
		flags []string
	}{
		// preflight's report and FailedError, inside join.
		{[]string{"join"}, []string{"fix", "ignore-preflight-errors", "discovery-timeout", "token", "discovery-token-ca-cert-hash", "etcd", "certificate-key"}},
		{[]string{"preflight"}, []string{"fix", "config", "ignore-preflight-errors"}},
		{[]string{"token", "create"}, []string{"print-join-command", "signed-timeout"}},
		{[]string{"node", "remove"}, []string{"force"}},
		{[]string{"init", "phase", "upload-config"}, []string{"config"}},
		{[]string{"token", "delete"}, nil},
	} {
		t.Run(strings.Join(tc.cmd, " "), func(t *testing.T) {
			root := NewRootCommand()
			c, _, err := root.Find(tc.cmd)
			if err != nil || c == root {
				t.Errorf("kubeforge %v: no such command (%v)", tc.cmd, err)
				return
			}
			for _, f := range tc.flags {
				if c.Flags().Lookup(f) == nil && c.InheritedFlags().Lookup(f) == nil && c.PersistentFlags().Lookup(f) == nil {
					t.Errorf("kubeforge %v has no --%s", tc.cmd, f)
				}
			}
		})
	}
}
