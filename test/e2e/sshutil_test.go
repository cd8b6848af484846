package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/lab"
)

// sshTimeout bounds every command a test runs on a lab host. A host, a
// connection or a command that hangs then fails its test with the command
// named, long before go test's own -timeout kills the whole run without
// saying what was waited for.
const sshTimeout = 10 * time.Minute

// labSSH is the real OpenSSH client to a lab host with the lab's ssh_config
// (StrictHostKeyChecking=yes), a connect timeout, keepalives that give up on a
// dead connection within a minute, and sshTimeout. extra are more ssh options,
// placed before the lab's config so they take precedence.
func labSSH(s *lab.State, host, cmd string, extra ...string) *exec.Cmd {
	ctx, cancel := context.WithTimeout(context.Background(), sshTimeout)
	time.AfterFunc(sshTimeout+time.Minute, cancel)
	args := append(append([]string{}, extra...), "-F", s.Paths().SSHConfig, "-o", "BatchMode=yes",
		"-o", "ConnectTimeout=20", "-o", "ServerAliveInterval=10", "-o", "ServerAliveCountMax=6", host, cmd)
	c := exec.CommandContext(ctx, "ssh", args...)
	c.Cancel = func() error {
		fmt.Fprintf(os.Stderr, "e2e: ssh %s %q: no result within %s, killed\n", host, cmd, sshTimeout)
		return c.Process.Kill()
	}
	c.WaitDelay = 10 * time.Second
	return c
}
