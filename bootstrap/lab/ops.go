package lab

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// HostStatus is one row of `kubeforge lab status`.
type HostStatus struct {
	Name        string `json:"name"`
	Address     string `json:"address"`
	Running     bool   `json:"running"`
	System      string `json:"systemState"` // systemctl is-system-running: running, degraded, starting ...
	MemoryBytes int64  `json:"memoryBytes"`
}

// Status describes every host of the lab.
func Status(s *State) []HostStatus {
	out := make([]HostStatus, 0, len(s.Hosts))
	for i := range s.Hosts {
		h := &s.Hosts[i]
		hs := HostStatus{Name: h.Name, Address: h.Address, System: "stopped"}
		if supervisorAlive(s, h) {
			hs.Running = true
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			res, _ := s.Exec(ctx, h.Name, "systemctl", "is-system-running")
			cancel()
			hs.System = strings.TrimSpace(string(res))
			if hs.System == "" {
				hs.System = "unknown"
			}
			hs.MemoryBytes, _ = memoryWorkingSet(h)
		}
		out = append(out, hs)
	}
	return out
}

// ExecCommand builds a command that runs argv inside the host by entering its
// namespaces (nsenter), without ssh: the way in when sshd is broken.
func (s *State) ExecCommand(ctx context.Context, name string, argv ...string) (*exec.Cmd, error) {
	pid, err := s.PID1(name)
	if err != nil {
		return nil, err
	}
	args := append([]string{"-t", strconv.Itoa(pid), "-a", "--"}, argv...)
	cmd := exec.CommandContext(ctx, "nsenter", args...)
	cmd.Env = append(os.Environ(), "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	return cmd, nil
}

// Exec runs argv inside the host through nsenter and returns its combined output.
func (s *State) Exec(ctx context.Context, name string, argv ...string) ([]byte, error) {
	cmd, err := s.ExecCommand(ctx, name, argv...)
	if err != nil {
		return nil, err
	}
	return cmd.CombinedOutput()
}
