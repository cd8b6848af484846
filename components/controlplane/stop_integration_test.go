package controlplane_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/controlplane"
	"github.com/kubeforge/kubeforge/components/controlplane/loopbacktest"
)

// stopOutcome is what a SIGTERM to the apiserver led to.
type stopOutcome struct {
	// exited: the process ended by itself within the wait; took is how long
	// after the signal.
	exited bool
	took   time.Duration
	state  *os.ProcessState
	// slowErr is the result of the create that was in flight (held by a slow
	// admission webhook) when the signal came.
	slowErr error
	// watchErr is how the test's own watch ended (for the log: the apiserver
	// ends watches cleanly on its way out whether or not it drained them).
	watchErr error
	// stopTimeout is the TimeoutStopSec of the apiserver's unit.
	stopTimeout  time.Duration
	log, logPath string
}

// stopAPIServer runs the loopback control plane with the generated flags plus
// extra, makes the apiserver busy the way a cluster does when a unit is
// stopped (controller-manager and scheduler holding their leases and watches,
// one more watcher that never goes away on its own, like a kubelet on another
// host, and a write in flight) and sends it SIGTERM.
func stopAPIServer(t *testing.T, extra map[string]string, wait time.Duration) stopOutcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	lc := loopbacktest.Run(t, ctx, map[string]map[string]string{controlplane.APIServer: extra})
	api := lc.Daemons[0]

	superConf, err := os.ReadFile(filepath.Join(lc.KcDir, certs.KubeconfigSuperAdmin))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := clientcmd.RESTConfigFromKubeConfig(superConf)
	if err != nil {
		t.Fatal(err)
	}
	rc.Timeout = 0 // a watch must not be ended by the client
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{controlplane.ControllerManager, controlplane.Scheduler} {
		for {
			l, err := cs.CoordinationV1().Leases("kube-system").Get(ctx, n, metav1.GetOptions{})
			if err == nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("no leader for %s: %v", n, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	// The watcher reads the raw stream, so that a stream the server ended
	// (io.EOF) can be told from a connection that died with the process.
	stream, err := cs.CoreV1().RESTClient().Get().AbsPath("/api/v1/namespaces/kube-system/configmaps").
		Param("watch", "true").Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	watchDone := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, stream)
		if err == nil {
			err = io.EOF
		}
		stream.Close()
		watchDone <- err
	}()

	// A validating webhook on loopback that holds CREATEs of labelled
	// configmaps for a while: a write that is in flight when the signal comes.
	const hold = 3 * time.Second
	arrived := make(chan string, 16)
	hook := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var review admissionv1.AdmissionReview
		if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
			http.Error(w, "not an AdmissionReview", http.StatusBadRequest)
			return
		}
		arrived <- review.Request.Name
		if review.Request.Name == "in-flight" {
			time.Sleep(hold)
		}
		review.Response = &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
		review.Request = nil
		_ = json.NewEncoder(w).Encode(review)
	}))
	defer hook.Close()
	url, caBundle := hook.URL+"/validate", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hook.Certificate().Raw})
	fail, none, timeout := admissionregistrationv1.Fail, admissionregistrationv1.SideEffectClassNone, int32(20)
	_, err = cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "slow.kubeforge.test"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:         "slow.kubeforge.test",
			ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: caBundle},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}},
			}},
			ObjectSelector:          &metav1.LabelSelector{MatchLabels: map[string]string{"kubeforge.test/slow": "true"}},
			FailurePolicy:           &fail,
			SideEffects:             &none,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: []string{"v1"},
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	labelled := func(name string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"kubeforge.test/slow": "true"}}}
	}
	// The apiserver picks the configuration up from its informer: create probes
	// until one reaches the webhook.
	for i := 0; ; i++ {
		name := "probe-" + strconv.Itoa(i)
		if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, labelled(name), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		reached := false
	drain:
		for {
			select {
			case n := <-arrived:
				reached = reached || n == name
			default:
				break drain
			}
		}
		if reached {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the webhook never saw a request")
		}
		time.Sleep(200 * time.Millisecond)
	}

	slowDone := make(chan error, 1)
	go func() {
		_, err := cs.CoreV1().ConfigMaps("default").Create(ctx, labelled("in-flight"), metav1.CreateOptions{})
		slowDone <- err
	}()
	for n := range arrived {
		if n == "in-flight" {
			break
		}
	}

	t0 := time.Now()
	if err := api.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	out := stopOutcome{stopTimeout: lc.Comps[0].StopTimeout}
	select {
	case <-api.Done:
		out.exited, out.took, out.state = true, time.Since(t0), api.Cmd.ProcessState
	case <-time.After(wait):
		out.took = time.Since(t0)
	}
	select {
	case out.slowErr = <-slowDone:
	case <-time.After(10 * time.Second):
		out.slowErr = errors.New("the in-flight create never returned")
	}
	select {
	case out.watchErr = <-watchDone:
	case <-time.After(10 * time.Second):
		out.watchErr = errors.New("the watch never ended")
	}
	out.log, out.logPath = api.Tail(), api.Log
	return out
}

// TestAPIServerGracefulStop checks that the apiserver, with exactly the flags
// kubeforge generates, stops by itself on SIGTERM before systemd would kill it
// (its unit's TimeoutStopSec), and that the stop is still graceful: the write
// in flight when the signal comes completes.
//
// With the upstream defaults (no --shutdown-send-retry-after and
// --shutdown-watch-termination-grace-period) this fails: the HTTP server waits
// for every connection with an open watch to go idle, which the test's watcher,
// like any kubelet, never lets happen, until --request-timeout (60s) runs out,
// and systemd SIGKILLs the apiserver at TimeoutStopSec=30s.
func TestAPIServerGracefulStop(t *testing.T) {
	out := stopAPIServer(t, nil, 2*controlplane.DefaultStopTimeout+30*time.Second)
	t.Logf("SIGTERM to exit: %s (exited=%v, %v); in-flight create: %v; watch ended with: %v", out.took, out.exited, out.state, out.slowErr, out.watchErr)
	if out.stopTimeout != controlplane.DefaultStopTimeout {
		t.Errorf("the apiserver's unit has TimeoutStopSec=%s, want the default %s", out.stopTimeout, controlplane.DefaultStopTimeout)
	}
	if !out.exited || out.took >= controlplane.DefaultStopTimeout {
		t.Errorf("kube-apiserver took %s to stop after SIGTERM (exited by itself: %v); systemd kills it at TimeoutStopSec=%s\n%s",
			out.took.Round(time.Second), out.exited, controlplane.DefaultStopTimeout, out.log)
	} else if !out.state.Success() {
		t.Errorf("kube-apiserver exited with %v after SIGTERM\n%s", out.state, out.log)
	}
	if out.slowErr != nil {
		t.Errorf("the create in flight at SIGTERM failed: %v", out.slowErr)
	}
}
