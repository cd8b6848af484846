package certs

import (
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkFullPKI measures one full PKI for the seed topology: three CAs, the SA
// key pair, every leaf of master01 (including its etcd member certificates), the
// six kubeconfigs, and the etcd member certificates of node01 and node02 issued for
// hand-over. ns/op is the time per full PKI.
func BenchmarkFullPKI(b *testing.B) {
	for _, alg := range []KeyAlgorithm{RSA2048, ECDSAP256} {
		b.Run(string(alg), func(b *testing.B) {
			spec := seedSpec(alg)
			for i := 0; b.Loop(); i++ {
				root := b.TempDir()
				p := &PKI{Spec: spec, CertDir: filepath.Join(root, "pki"), KubeconfigDir: root, Now: time.Now}
				if err := p.CreateAll(); err != nil {
					b.Fatal(err)
				}
				etcdCA, err := LoadCA(LocalFS{}, filepath.Join(root, "pki", "etcd", "ca.crt"), filepath.Join(root, "pki", "etcd", "ca.key"))
				if err != nil {
					b.Fatal(err)
				}
				for _, member := range []string{"node01", "node02"} {
					if _, err := IssueEtcdMemberFiles(etcdCA, spec, member); err != nil {
						b.Fatal(err)
					}
				}
			}
			// 3 CAs + sa + 8 leaves + 6 kubeconfigs + 2x2 member certificates.
			b.ReportMetric(22, "keys/op")
		})
	}
}
