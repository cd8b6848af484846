// Package sdfake is an in-memory stand-in for go-systemd's D-Bus connection, for
// unit tests of code built on sdbus.Units where no systemd runs.
package sdfake

import (
	"context"
	"slices"
	"strings"
	"sync"

	sd "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
)

// Systemd records calls and answers jobs with configured results, through the same
// result channel go-systemd uses. Fields may be changed between calls (under Mu if a
// job may still be running).
type Systemd struct {
	Mu           sync.Mutex
	calls        []string
	ReloadErr    error
	HasInstall   bool
	EnableChange bool
	DisableErr   error
	JobResult    map[string]string // unit -> result; "" means never answer
	JobErr       error
	Props        map[string]any
	MainPID      uint32
	Disconnected bool // makes Connected report false, as after a dropped bus
	Closed       int  // how often Close was called
}

// New returns a connected fake whose units have [Install] sections and whose
// enables change links.
func New() *Systemd {
	return &Systemd{HasInstall: true, EnableChange: true, JobResult: map[string]string{}}
}

func (f *Systemd) call(s string) {
	f.Mu.Lock()
	f.calls = append(f.calls, s)
	f.Mu.Unlock()
}

// Calls lists the calls made so far, e.g. "Reload", "Start etcd.service".
func (f *Systemd) Calls() []string {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *Systemd) ReloadContext(ctx context.Context) error {
	f.call("Reload")
	return f.ReloadErr
}

func (f *Systemd) EnableUnitFilesContext(ctx context.Context, files []string, runtime, force bool) (bool, []sd.EnableUnitFileChange, error) {
	f.call("Enable " + strings.Join(files, ","))
	var ch []sd.EnableUnitFileChange
	if f.EnableChange {
		ch = append(ch, sd.EnableUnitFileChange{Type: "symlink", Filename: "/etc/systemd/system/multi-user.target.wants/" + files[0]})
	}
	return f.HasInstall, ch, nil
}

func (f *Systemd) DisableUnitFilesContext(ctx context.Context, files []string, runtime bool) ([]sd.DisableUnitFileChange, error) {
	f.call("Disable " + strings.Join(files, ","))
	if f.DisableErr != nil {
		return nil, f.DisableErr
	}
	return []sd.DisableUnitFileChange{{Type: "unlink"}}, nil
}

func (f *Systemd) job(verb, name string, ch chan<- string) (int, error) {
	f.call(verb + " " + name)
	if f.JobErr != nil {
		return 0, f.JobErr
	}
	if r := f.JobResult[name]; r != "" {
		go func() { ch <- r }()
	}
	return 1, nil
}

func (f *Systemd) StartUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error) {
	return f.job("Start", name, ch)
}
func (f *Systemd) StopUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error) {
	return f.job("Stop", name, ch)
}
func (f *Systemd) RestartUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error) {
	return f.job("Restart", name, ch)
}
func (f *Systemd) GetUnitPropertiesContext(ctx context.Context, unit string) (map[string]any, error) {
	f.call("Props " + unit)
	return f.Props, nil
}
func (f *Systemd) GetServicePropertyContext(ctx context.Context, service, prop string) (*sd.Property, error) {
	f.call("ServiceProp " + service + " " + prop)
	return &sd.Property{Name: prop, Value: godbus.MakeVariant(f.MainPID)}, nil
}
func (f *Systemd) Connected() bool {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	return !f.Disconnected
}
func (f *Systemd) Close() {
	f.Mu.Lock()
	f.Closed++
	f.Mu.Unlock()
}
