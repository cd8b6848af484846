package bootstraptoken

import (
	"fmt"
	"strings"
)

// JoinCommand holds what a host needs to join the cluster.
type JoinCommand struct {
	// Endpoint is the control-plane endpoint, host:port.
	Endpoint string
	// Token is the join token, "<id>.<secret>".
	Token string
	// CAHash pins the cluster CA's public key ("sha256:<hex>", certs.CAHash), so a
	// joining host trusts cluster-info only from the real cluster.
	CAHash string
	// CertificateKey decrypts the CA keys in kube-system/kubeforge-certs; empty
	// when no upload is live, and then only the worker command is complete.
	CertificateKey string
	// EtcdCertificateKey decrypts the etcd member hand-over in
	// kube-system/kubeforge-etcd-members (member certificates, no CA key); empty
	// when no such upload is live.
	EtcdCertificateKey string
}

// The environment variables `kubeforge join` reads the token and the
// certificate key from. A variable assignment in front of a command is part of
// the shell's command line, not of the process's argv: `ps` and
// /proc/<pid>/cmdline, which every user of the host can read, do not show it.
const (
	TokenEnv          = "KUBEFORGE_TOKEN"
	CertificateKeyEnv = "KUBEFORGE_CERTIFICATE_KEY"
)

// command is the join command with the secrets in the environment form;
// flags follow the endpoint and the CA hash.
func (j JoinCommand) command(key string, flags string) string {
	env := TokenEnv + "=" + j.Token + " "
	if key != "" {
		env += CertificateKeyEnv + "=" + key + " "
	}
	return env + fmt.Sprintf("kubeforge join %s --discovery-token-ca-cert-hash %s", j.Endpoint, j.CAHash) + flags
}

// Worker joins a worker node.
func (j JoinCommand) Worker() string { return j.command("", "") }

// WorkerEtcd joins a worker that also runs an etcd member; it needs the member
// certificates the control plane issued for it, hence the etcd certificate key
// (which decrypts no CA key).
func (j JoinCommand) WorkerEtcd() string { return j.command(j.etcdKeyOrPlaceholder(), " --etcd") }

// ControlPlane joins another control-plane host.
func (j JoinCommand) ControlPlane() string {
	return j.command(j.keyOrPlaceholder(), " --control-plane")
}

func (j JoinCommand) etcdKeyOrPlaceholder() string {
	if j.EtcdCertificateKey == "" {
		return "<key: run `kubeforge init phase upload-certs --config <cluster configuration>`>"
	}
	return j.EtcdCertificateKey
}

func (j JoinCommand) keyOrPlaceholder() string {
	if j.CertificateKey == "" {
		return "<key: run `kubeforge init phase upload-certs --config <cluster configuration>`>"
	}
	return j.CertificateKey
}

// Text is the message `init` ends with: all three commands and what the
// certificate key is.
func (j JoinCommand) Text() string {
	var b strings.Builder
	b.WriteString("To administer the cluster from this host:\n\n  export KUBECONFIG=/etc/kubernetes/admin.conf\n\n")
	b.WriteString("Join worker nodes by running on each as root:\n\n  " + j.Worker() + "\n\n")
	b.WriteString("Join a worker that also runs an etcd member:\n\n  " + j.WorkerEtcd() + "\n\n")
	b.WriteString("Join another control-plane host (high availability; its etcd member, if any, with --etcd as well):\n\n  " + j.ControlPlane() + "\n\n")
	if j.EtcdCertificateKey != "" {
		b.WriteString("The etcd host's certificate key decrypts only etcd member certificates (kube-system/kubeforge-etcd-members);\n" +
			"an etcd member host never receives a CA key.\n")
	}
	if j.CertificateKey != "" {
		b.WriteString("The control-plane certificate key decrypts the cluster's CA keys, uploaded to Secret kube-system/kubeforge-certs,\n" +
			"which is deleted automatically two hours after the upload. Treat it like the CA keys themselves.\n" +
			"For a new upload and key later: kubeforge init phase upload-certs --config <file>\n")
	} else {
		b.WriteString("No certificate upload is live: run `kubeforge init phase upload-certs --config <file>` for a certificate key.\n")
	}
	b.WriteString("The token and the key are passed in the environment, which keeps them out of the process list.\n")
	b.WriteString("The token expires; `kubeforge token create --print-join-command` makes a new one.\n")
	return b.String()
}
