package joinphases

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestTakeSecrets: the secrets come from the environment when the flags are
// empty, the flags win otherwise, and afterwards neither variable is in this
// process's environment nor in a child's.
func TestTakeSecrets(t *testing.T) {
	t.Setenv(TokenEnv, "abcdef.0123456789abcdef")
	t.Setenv(CertificateKeyEnv, strings.Repeat("ab", 32))
	tok, key := TakeSecrets("", "")
	if tok != "abcdef.0123456789abcdef" || key != strings.Repeat("ab", 32) {
		t.Errorf("from the environment: %q %q", tok, key)
	}
	for _, v := range []string{TokenEnv, CertificateKeyEnv} {
		if _, ok := os.LookupEnv(v); ok {
			t.Errorf("$%s is still set", v)
		}
	}
	out, err := exec.Command("env").Output()
	if err != nil {
		t.Fatal(err)
	}
	// Only the two secrets: the test command itself exports other KUBEFORGE_*
	// variables (the bundle, the lab).
	if strings.Contains(string(out), "0123456789abcdef") || strings.Contains(string(out), TokenEnv+"=") || strings.Contains(string(out), CertificateKeyEnv+"=") {
		t.Errorf("a child process inherits the secrets:\n%s", out)
	}
	t.Setenv(TokenEnv, "zzzzzz.zzzzzzzzzzzzzzzz")
	if tok, _ := TakeSecrets("abcdef.0123456789abcdef", ""); tok != "abcdef.0123456789abcdef" {
		t.Errorf("the flag did not win: %q", tok)
	}
	if _, ok := os.LookupEnv(TokenEnv); ok {
		t.Error("$KUBEFORGE_TOKEN is still set when the flag was given")
	}
}
