// Package certs is kubeforge's PKI: it issues, checks and renews every certificate,
// key and kubeconfig a cluster needs, with cloudflare/cfssl as the signing library.
//
// The layout on disk is kubeadm's, so tools and runbooks written for kubeadm
// clusters (and `kubeadm certs check-expiration` itself) keep working:
//
//	<certDir>/ca.{crt,key}                        cluster CA
//	<certDir>/apiserver.{crt,key}                 kube-apiserver serving cert
//	<certDir>/apiserver-kubelet-client.{crt,key}  apiserver -> kubelet client
//	<certDir>/apiserver-etcd-client.{crt,key}     apiserver -> etcd client
//	<certDir>/front-proxy-ca.{crt,key}            aggregation layer CA
//	<certDir>/front-proxy-client.{crt,key}        aggregation layer client
//	<certDir>/sa.{key,pub}                        service-account token key pair
//	<certDir>/kubelet-serving-ca.{crt,key}        CA of the kubelets' serving certs (kubeforge's own)
//	<certDir>/etcd/ca.{crt,key}                   etcd CA
//	<certDir>/etcd/server.{crt,key}               this node's etcd serving cert
//	<certDir>/etcd/peer.{crt,key}                 this node's etcd peer cert
//	<certDir>/etcd/healthcheck-client.{crt,key}   etcd health probes
//	<certDir>/etcd/overlay-client.{crt,key}       kubeforge's overlay agent (etcd client)
//	<kubeconfigDir>/{admin,super-admin,controller-manager,scheduler,kubelet,kube-proxy}.conf
//
// Three ideas run through the package:
//
//   - Issuing is separate from writing. A CA (loaded from files or bytes) and a
//     LeafSpec go into Issue, PEM bytes come out. That is what lets the host that
//     holds the CA issue etcd peer certificates for node01, or a joining host issue
//     its own from a CA handed over encrypted with a certificate key.
//   - Everything is planned before anything is written. Creating or renewing first
//     reads and checks every existing file and signs every new certificate in
//     memory; only when all of that succeeded are files written. A corrupt key or a
//     missing CA key therefore leaves the directory exactly as it was.
//   - Existing files are never silently replaced. A file that is valid is kept
//     ("Using existing ..."); one that does not match (other CA, missing SAN, wrong
//     key, expired) is an error naming the file and the mismatch. Renewal is the one
//     operation that replaces certificates, and it keeps a backup.
package certs
