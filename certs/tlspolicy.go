package certs

// The TLS policy of every server kubeforge configures (kube-apiserver,
// kube-controller-manager, kube-scheduler, the kubelet, etcd): TLS 1.2 or
// newer, and for TLS 1.2 only forward-secret ECDHE key exchange with an AEAD
// cipher (AES-GCM, ChaCha20-Poly1305). TLS 1.3's suites are not configurable
// and all qualify. The names are Go's (crypto/tls), which Kubernetes'
// --tls-cipher-suites and etcd's cipher-suites both take. Both ECDSA and RSA
// variants are listed: the CA's key algorithm is configurable.
var TLSCipherSuites = []string{
	"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
	"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
	"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
	"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
	"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
	"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
}

// TLSMinVersion is the lowest TLS version, in Kubernetes' spelling
// (--tls-min-version, tlsMinVersion); EtcdTLSMinVersion is etcd's.
const (
	TLSMinVersion     = "VersionTLS12"
	EtcdTLSMinVersion = "TLS1.2"
)
