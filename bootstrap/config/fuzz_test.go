package config

import (
	"os"
	"reflect"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to Decode. It must never panic, and whatever
// it accepts must survive Marshal and Decode unchanged: that is what makes
// `config print-defaults` output and rewritten configs trustworthy.
func FuzzDecode(f *testing.F) {
	if seed, err := os.ReadFile(seedExample); err == nil {
		f.Add(seed)
	}
	if def, err := Marshal(Default()); err == nil {
		f.Add(def)
	}
	f.Add([]byte(withSeed("  etcd: {extraArgs: {v: 2, enable-pprof: yes}, autoCompactionMode: revision, autoCompactionRetention: 100}\n")))
	f.Add([]byte(withSeed("  certificates: {certSANs: [\"*.example.com\", \"fd00::1\"]}\n  timeSync: {upstreamServers: [pool.ntp.org]}\n")))
	f.Add([]byte(withHosts("  - {name: a, address: \"fd00::1\", roles: [etcd, control-plane], ssh: {keyPath: /k}}\n",
		"  networking: {podCIDR: \"fd00:244::/56\", serviceCIDR: \"fd00:96::/112\", nodeSubnetSize: 64}\n",
		"  controlPlaneEndpoint: \"[fd00::1]:6443\"\n")))
	f.Add([]byte("---\n---\n" + withSeed("")))
	f.Add([]byte(withSeed("  bogus: 1\n")))
	f.Add([]byte("apiVersion: [\n"))
	f.Add([]byte("a: &a [*a, *a]\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Decode(data)
		if err != nil {
			return
		}
		out, err := Marshal(c)
		if err != nil {
			t.Fatalf("Marshal of a decoded config: %v", err)
		}
		back, err := Decode(out)
		if err != nil {
			t.Fatalf("Decode(Marshal(c)): %v\ninput:\n%q\nmarshaled:\n%s", err, data, out)
		}
		if !reflect.DeepEqual(c, back) {
			t.Fatalf("round trip differs:\n%#v\n%#v\ninput:\n%q\nmarshaled:\n%s", c, back, data, out)
		}
	})
}
