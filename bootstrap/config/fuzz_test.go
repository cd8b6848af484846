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
	for _, c := range []*Cluster{Default(), everyField()} {
		if out, err := Marshal(c); err == nil {
			f.Add(out)
		}
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

// FuzzRoundTripValues targets the round trip directly: random bytes rarely make a
// valid config, so this one plants fuzzed strings into the free-form fields of a
// valid config (flag names and values, SANs, NTP servers, durations, names). Any
// config that then validates must come back from Marshal/Decode unchanged.
func FuzzRoundTripValues(f *testing.F) {
	f.Add("v", "2", "api.example.com", "pool.ntp.org", "8760h", "prod-1", "/data/etcd")
	f.Add("feature-gates", "A=true,B=false", "*.example.com", "192.168.1.1", "1h30m", "a", "/var/lib/etcd")
	f.Add("node-labels", "yes", "fd00::1", "0.pool.ntp.org", "720h", "x0", "/x y")
	f.Add("x", " 'quoted' \"too\" # not a comment: [a] {b} &c *d !e %f @g `h", "a-b.c", "ntp", "1000ms", "zz", "/")
	f.Fuzz(func(t *testing.T, argName, argValue, san, ntp, validity, name, dataDir string) {
		c := everyField()
		c.Spec.Components.Kubelet.ExtraArgs[argName] = argValue
		c.Spec.Etcd.ExtraArgs[argName] = argValue
		c.Spec.Certificates.CertSANs = append(c.Spec.Certificates.CertSANs, san)
		c.Spec.TimeSync.UpstreamServers = append(c.Spec.TimeSync.UpstreamServers, ntp)
		c.Spec.Certificates.Validity = Duration(validity)
		c.Metadata.Name = name
		c.Spec.Etcd.DataDir = dataDir
		if _, err := c.Validate(); err != nil {
			return
		}
		out, err := Marshal(c)
		if err != nil {
			t.Fatalf("Marshal of a valid config: %v", err)
		}
		back, err := Decode(out)
		if err != nil {
			t.Fatalf("Decode(Marshal(c)): %v\nmarshaled:\n%s", err, out)
		}
		if !reflect.DeepEqual(c, back) {
			t.Fatalf("round trip differs:\n%#v\n%#v\nmarshaled:\n%s", c, back, out)
		}
	})
}
