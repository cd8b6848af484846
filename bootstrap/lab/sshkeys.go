package lab

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// newKeyPair returns an ed25519 key as an OpenSSH private key file and its public key
// in authorized_keys format.
func newKeyPair(comment string) (priv []byte, pub string, err error) {
	pk, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, "", err
	}
	block, err := ssh.MarshalPrivateKey(sk, comment)
	if err != nil {
		return nil, "", err
	}
	spk, err := ssh.NewPublicKey(pk)
	if err != nil {
		return nil, "", err
	}
	return pem.EncodeToMemory(block), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(spk))), nil
}

// ensureClientKey creates the lab's client key once.
func ensureClientKey(dir string) (pub string, err error) {
	keyPath := filepath.Join(dir, "id_ed25519")
	if data, err := os.ReadFile(keyPath + ".pub"); err == nil {
		if _, err := os.Stat(keyPath); err == nil {
			return strings.TrimSpace(string(data)), nil
		}
	}
	priv, pub, err := newKeyPair("kubeforge-lab")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(keyPath, priv, 0o600); err != nil {
		return "", err
	}
	return pub, os.WriteFile(keyPath+".pub", []byte(pub+"\n"), 0o644)
}

// writeSSHFiles writes known_hosts with every host's real host key and an ssh_config
// that uses it with strict checking, so `ssh -F <dir>/ssh_config master01` works.
func writeSSHFiles(s *State) error {
	var kh, cfg strings.Builder
	fmt.Fprintf(&cfg, "# Written by kubeforge lab. Use: ssh -F %s <host>\n", filepath.Join(s.Dir, "ssh_config"))
	for _, h := range s.Hosts {
		fmt.Fprintf(&kh, "%s,%s %s\n", h.Name, h.Address, h.HostKey)
		fmt.Fprintf(&cfg, "\nHost %s %s\n  HostName %s\n  User root\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  LogLevel ERROR\n",
			h.Name, h.Address, h.Address, filepath.Join(s.Dir, "id_ed25519"), filepath.Join(s.Dir, "known_hosts"))
	}
	if err := os.WriteFile(filepath.Join(s.Dir, "known_hosts"), []byte(kh.String()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(s.Dir, "ssh_config"), []byte(cfg.String()), 0o644)
}

// waitSSH waits until the host's sshd completes a handshake with the expected host
// key and accepts the lab's client key.
func waitSSH(dir string, h *HostState, timeout time.Duration) error {
	keyData, err := os.ReadFile(filepath.Join(dir, "id_ed25519"))
	if err != nil {
		return err
	}
	signer, err := ssh.ParsePrivateKey(keyData)
	if err != nil {
		return err
	}
	hostKey, _, _, _, err := ssh.ParseAuthorizedKey([]byte(h.HostKey))
	if err != nil {
		return fmt.Errorf("host %s: recorded host key: %w", h.Name, err)
	}
	cfg := &ssh.ClientConfig{
		User:            "root",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(hostKey),
		Timeout:         2 * time.Second,
	}
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		c, err := ssh.Dial("tcp", net.JoinHostPort(h.Address, "22"), cfg)
		if err == nil {
			c.Close()
			return nil
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("host %s (%s): ssh not ready after %s: %v", h.Name, h.Address, timeout, last)
}
