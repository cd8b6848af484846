package etcd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// Unit is etcd.service. Every directive loads on systemd 219 (CentOS 7); LintUnit
// holds the list of what would not.
//
// Why each setting:
//   - Type=notify: etcd tells systemd when it serves, so "active" means ready and
//     units ordered after etcd start against a working member.
//   - TimeoutStartSec=0: a member replaying a large WAL, or waiting for its peers
//     during a bootstrap, must not be killed and restarted for being slow; that
//     is what etcd's own contrib unit does too.
//   - Restart=always, RestartSec=5s and StartLimitInterval=0 (in [Service], the
//     only place systemd 219 knows it): a member keeps coming back, never gives up.
//   - OOMScoreAdjust=-999 and Nice=-10: under memory or CPU pressure the kernel
//     should sacrifice workloads, not the cluster's database.
//   - LimitNOFILE=65536: one descriptor per client connection and watch stream.
func Unit() []byte {
	return []byte(`# etcd member, written by kubeforge. Settings: ` + ConfigPath + `
[Unit]
Description=etcd key-value store of the Kubernetes cluster
Documentation=https://etcd.io/docs/
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
ExecStart=` + BinaryPath + ` --config-file=` + ConfigPath + `
Restart=always
RestartSec=5s
StartLimitInterval=0
TimeoutStartSec=0
LimitNOFILE=65536
Nice=-10
OOMScoreAdjust=-999
IOSchedulingClass=best-effort
IOSchedulingPriority=0

[Install]
WantedBy=multi-user.target
`)
}

// newerDirective is a unit directive that systemd 219 does not know.
type newerDirective struct {
	since int    // first systemd version that understands it
	hint  string // what to write instead on 219, if anything
}

// post219 lists, per section, the directives that systemd 219 (CentOS 7) rejects
// or ignores with a warning. A unit using one of them loads differently on the
// oldest supported OS than where it was tested, so LintUnit refuses it.
var post219 = map[string]map[string]newerDirective{
	"Unit": {
		"StartLimitIntervalSec":           {229, "use StartLimitInterval= in [Service]"},
		"StartLimitBurst":                 {229, "use StartLimitBurst= in [Service]"},
		"StartLimitAction":                {229, "use StartLimitAction= in [Service]"},
		"FailureAction":                   {236, ""},
		"SuccessAction":                   {236, ""},
		"CollectMode":                     {236, ""},
		"ConditionControlGroupController": {244, ""},
		"ConditionMemory":                 {244, ""},
		"ConditionCPUs":                   {244, ""},
	},
	"Service": {
		"StateDirectory":          {235, "create the directory with the right mode before starting the unit"},
		"CacheDirectory":          {235, ""},
		"LogsDirectory":           {235, ""},
		"ConfigurationDirectory":  {235, ""},
		"TasksMax":                {228, "leave it out; 219 has no pids controller support"},
		"ExecCondition":           {243, "check in ExecStartPre= instead"},
		"DynamicUser":             {232, ""},
		"ProtectKernelTunables":   {232, ""},
		"ProtectKernelModules":    {232, ""},
		"ProtectControlGroups":    {232, ""},
		"ProtectKernelLogs":       {244, ""},
		"ProtectClock":            {245, ""},
		"ProtectHostname":         {242, ""},
		"PrivateUsers":            {232, ""},
		"MemoryMax":               {231, "use MemoryLimit="},
		"MemoryHigh":              {231, ""},
		"MemoryLow":               {231, ""},
		"MemoryMin":               {240, ""},
		"MemorySwapMax":           {232, ""},
		"CPUWeight":               {231, "use CPUShares="},
		"StartupCPUWeight":        {231, "use StartupCPUShares="},
		"IOWeight":                {230, "use BlockIOWeight="},
		"IODeviceWeight":          {230, ""},
		"IOReadBandwidthMax":      {230, ""},
		"IOWriteBandwidthMax":     {230, ""},
		"IPAddressDeny":           {235, ""},
		"IPAddressAllow":          {235, ""},
		"IPAccounting":            {235, ""},
		"LockPersonality":         {235, ""},
		"MemoryDenyWriteExecute":  {231, ""},
		"RestrictRealtime":        {231, ""},
		"RestrictNamespaces":      {233, ""},
		"RestrictSUIDSGID":        {242, ""},
		"KeyringMode":             {235, ""},
		"ReadWritePaths":          {231, "use ReadWriteDirectories="},
		"ReadOnlyPaths":           {231, "use ReadOnlyDirectories="},
		"InaccessiblePaths":       {231, "use InaccessibleDirectories="},
		"BindPaths":               {233, ""},
		"BindReadOnlyPaths":       {233, ""},
		"AmbientCapabilities":     {229, ""},
		"OOMPolicy":               {243, ""},
		"TimeoutAbortSec":         {243, ""},
		"TimeoutStartFailureMode": {246, ""},
		"TimeoutStopFailureMode":  {246, ""},
		"RestartSteps":            {254, ""},
		"RestartMaxDelaySec":      {254, ""},
		"ExecSearchPath":          {250, ""},
		"LoadCredential":          {247, ""},
		"SetCredential":           {247, ""},
		"LogRateLimitIntervalSec": {240, ""},
		"LogRateLimitBurst":       {240, ""},
		"LogLevelMax":             {236, ""},
		"LogExtraFields":          {236, ""},
		"WatchdogSignal":          {240, ""},
		"NUMAPolicy":              {243, ""},
		"NUMAMask":                {243, ""},
		"CPUQuotaPeriodSec":       {242, ""},
		"ProtectProc":             {247, ""},
		"ProcSubset":              {247, ""},
		"StandardInputText":       {236, ""},
		"StandardInputData":       {236, ""},
		"UnsetEnvironment":        {235, ""},
		"RemoveIPC":               {232, ""},
	},
}

// post219Values are values of old directives that 219 does not understand.
var post219Values = map[string]map[string]int{
	"Type":           {"exec": 240, "notify-reload": 253},
	"ProtectSystem":  {"strict": 232},
	"ProtectHome":    {"tmpfs": 232},
	"StandardOutput": {"append": 240, "file": 236, "truncate": 248},
	"StandardError":  {"append": 240, "file": 236, "truncate": 248},
}

// LintUnit reports every directive of a unit file that systemd 219 (CentOS 7)
// would not load as written, each with its line number, so units that work on
// Debian 12 cannot silently behave differently on the oldest supported OS.
func LintUnit(content []byte) error {
	var errs []error
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(content))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
			continue
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.TrimSuffix(strings.TrimPrefix(line, "["), "]")
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			errs = append(errs, fmt.Errorf("line %d: %q is not key=value", n, line))
			continue
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if d, ok := post219[section][key]; ok {
			msg := fmt.Sprintf("line %d: [%s] %s= needs systemd %d, CentOS 7 has 219", n, section, key, d.since)
			if d.hint != "" {
				msg += "; " + d.hint
			}
			errs = append(errs, errors.New(msg))
		}
		for prefix, since := range post219Values[key] {
			if value == prefix || strings.HasPrefix(value, prefix+":") {
				errs = append(errs, fmt.Errorf("line %d: [%s] %s=%s needs systemd %d, CentOS 7 has 219", n, section, key, value, since))
			}
		}
		if section == "Service" && strings.HasPrefix(key, "Exec") {
			// "+", "!" and "!!" prefixes (full privileges, no ambient caps) came in 231.
			if strings.HasPrefix(value, "+") || strings.HasPrefix(value, "!") {
				errs = append(errs, fmt.Errorf("line %d: [%s] %s= with a %q prefix needs systemd 231, CentOS 7 has 219", n, section, key, value[:1]))
			}
		}
	}
	return errors.Join(errs...)
}
