package certs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/kubeforge/kubeforge/bootstrap/host"
)

// FS is where certificates are read from and written to. Paths are absolute.
type FS interface {
	// ReadFile returns the file's content; a missing file gives an error for which
	// errors.Is(err, fs.ErrNotExist) holds.
	ReadFile(path string) ([]byte, error)
	// WriteFile replaces path atomically with data and mode perm, creating missing
	// parent directories with mode 0755.
	WriteFile(path string, data []byte, perm fs.FileMode) error
}

// DirMode is the mode of directories kubeforge creates for certificates and
// kubeconfigs. kubeadm (client-go's certutil.WriteCert / keyutil.WriteKey and
// clientcmd.WriteToFile) creates them 0755: the directories only hold names, the
// secrets are protected by the 0600 key and kubeconfig files themselves.
const DirMode fs.FileMode = 0o755

// File modes, kubeadm's: certificates are public (0644); private keys, the
// service-account public key (written by kubeadm through keyutil.WriteKey) and
// kubeconfigs (which embed a private key) are 0600.
const (
	CertMode       fs.FileMode = 0o644
	KeyMode        fs.FileMode = 0o600
	PublicKeyMode  fs.FileMode = 0o600
	KubeconfigMode fs.FileMode = 0o600
)

// LocalFS is the local filesystem.
type LocalFS struct{}

// ReadFile implements FS.
func (LocalFS) ReadFile(path string) ([]byte, error) { return os.ReadFile(path) }

// WriteFile implements FS: a temporary file in the same directory, fsync, chmod,
// rename. A reader (or a crash) sees the old file or the new one, never half of one,
// and a key file is never readable by others even for a moment.
func (LocalFS) WriteFile(path string, data []byte, perm fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	// CreateTemp makes the file 0600; Chmod sets the final mode regardless of umask.
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	if d, derr := os.Open(dir); derr == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// HostFS writes through a host.Host, so the same code can lay certificates down on a
// remote machine over SSH, or record them in a dry-run plan.
type HostFS struct {
	Ctx  context.Context
	Host host.Host
}

// ReadFile implements FS.
func (h HostFS) ReadFile(path string) ([]byte, error) { return h.Host.ReadFile(h.ctx(), path) }

// WriteFile implements FS. Files that are not world- or group-readable hold keys and
// are marked secret so a dry-run never prints them.
func (h HostFS) WriteFile(path string, data []byte, perm fs.FileMode) error {
	return h.Host.WriteFile(h.ctx(), path, data, host.WriteOptions{Mode: perm, Secret: perm&0o077 == 0})
}

func (h HostFS) ctx() context.Context {
	if h.Ctx == nil {
		return context.Background()
	}
	return h.Ctx
}

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// readOptional reads path, returning nil data (and no error) when it does not exist.
func readOptional(fsys FS, path string) ([]byte, bool, error) {
	data, err := fsys.ReadFile(path)
	if err != nil {
		if isNotExist(err) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("reading %s: %w", path, bareErr(err))
	}
	return data, true, nil
}

// bareErr drops the *fs.PathError wrapper, whose path our messages already name.
func bareErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
