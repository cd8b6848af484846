// Package kubeclient is how kubeforge talks to the Kubernetes API: typed
// client-go clients built from a kubeconfig, a create-or-update helper that
// reports whether anything changed (so phases can say "unchanged"), and a dry-run
// mode that prints every object it would write instead of writing it.
//
// Dry run works at the HTTP level, under the typed clients, so phase code runs
// unmodified: reads go to the real apiserver when one answers (a dry run on a
// running cluster sees what exists), and answer "not found" / an empty list when
// none does (a dry run on a fresh host); writes never leave the process. They
// are logged as YAML, Secret values replaced by their size, and answered as the
// apiserver would (the object echoed back), so code that reads its own result
// keeps going.
package kubeclient

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"
)

// Options configure New.
type Options struct {
	// DryRun records writes instead of sending them.
	DryRun bool
	// Logf receives the objects a dry run would write; nil discards them.
	Logf func(format string, a ...any)
	// Timeout bounds each request; 30s when zero. NoTimeout (negative) sets no
	// bound: a client that watches needs that, since the bound covers reading
	// the whole response and so cuts every watch; its callers bound requests
	// with their contexts instead.
	Timeout time.Duration
}

// NoTimeout as Options.Timeout builds a client for watches.
const NoTimeout time.Duration = -1

// Client is a typed clientset and the REST config it was built from.
type Client struct {
	kubernetes.Interface
	Config *rest.Config
	// Offline is set in a dry run when no apiserver answered: reads then find
	// nothing.
	Offline bool
	dry     *dryRunTransport
}

// Writes returns the writes a dry run recorded, in order ("create Secret
// kube-system/name"); nil for a real client.
func (c *Client) Writes() []string {
	if c.dry == nil {
		return nil
	}
	c.dry.mu.Lock()
	defer c.dry.mu.Unlock()
	return append([]string(nil), c.dry.writes...)
}

// New builds a client from kubeconfig bytes (the file is read by the caller, so
// it can come through host.Host and a dry run's planned files).
func New(kubeconfig []byte, o Options) (*Client, error) {
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("not a usable kubeconfig: %w", err)
	}
	return NewForConfig(cfg, o)
}

// NewForConfig builds a client from a REST config.
func NewForConfig(cfg *rest.Config, o Options) (*Client, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.Timeout = o.Timeout
	switch {
	case cfg.Timeout == 0:
		cfg.Timeout = 30 * time.Second
	case cfg.Timeout < 0:
		cfg.Timeout = 0
	}
	cfg.UserAgent = "kubeforge"
	c := &Client{Config: cfg}
	if o.DryRun {
		// JSON, so that recorded writes can be printed.
		cfg.ContentType = "application/json"
		cfg.AcceptContentTypes = "application/json"
		logf := o.Logf
		if logf == nil {
			logf = func(string, ...any) {}
		}
		c.dry = &dryRunTransport{logf: logf}
		probe, err := kubernetes.NewForConfig(withTimeout(cfg, 3*time.Second))
		if err == nil {
			_, err = probe.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(context.Background())
		}
		c.Offline = err != nil && !isHTTPStatus(err)
		c.dry.offline = c.Offline
		cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
			c.dry.inner = rt
			return c.dry
		})
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	c.Interface = cs
	return c, nil
}

func withTimeout(cfg *rest.Config, d time.Duration) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.Timeout = d
	return c
}

// isHTTPStatus reports whether err is an answer from a server (any status), as
// opposed to no server at all.
func isHTTPStatus(err error) bool {
	var s apierrors.APIStatus
	return errors.As(err, &s)
}

// dryRunTransport answers writes itself and passes reads through.
type dryRunTransport struct {
	inner   http.RoundTripper
	offline bool
	logf    func(string, ...any)

	mu     sync.Mutex
	writes []string
}

func (t *dryRunTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	switch req.Method {
	case http.MethodGet, http.MethodHead:
		if !t.offline {
			return t.inner.RoundTrip(req)
		}
		return t.offlineRead(req), nil
	}
	var body []byte
	if req.Body != nil {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		req.Body.Close()
	}
	verb := map[string]string{http.MethodPost: "create", http.MethodPut: "update", http.MethodPatch: "patch", http.MethodDelete: "delete"}[req.Method]
	if verb == "" {
		verb = strings.ToLower(req.Method)
	}
	obj := map[string]any{}
	_ = json.Unmarshal(body, &obj)
	what := describe(req.URL, obj)
	t.mu.Lock()
	t.writes = append(t.writes, verb+" "+what)
	t.mu.Unlock()
	if verb == "delete" {
		t.logf("dry run: would delete %s", what)
		return respond(req, http.StatusOK, []byte(`{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success"}`)), nil
	}
	shown, _ := yaml.Marshal(redact(obj))
	t.logf("dry run: would %s %s:\n%s", verb, what, indent(string(shown)))
	status := http.StatusOK
	if verb == "create" {
		status = http.StatusCreated
		if md, ok := obj["metadata"].(map[string]any); ok {
			if md["name"] == nil && md["generateName"] != nil {
				md["name"] = fmt.Sprint(md["generateName"]) + "dryrun"
			}
			md["uid"] = "00000000-0000-0000-0000-000000000000"
			md["creationTimestamp"] = time.Now().UTC().Format(time.RFC3339)
		}
		body, _ = json.Marshal(obj)
	}
	return respond(req, status, body), nil
}

// offlineRead answers a read when there is no apiserver: nothing exists.
func (t *dryRunTransport) offlineRead(req *http.Request) *http.Response {
	if kind := listKind(req.URL.Path); kind != "" {
		gv := "v1"
		if parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/"); parts[0] == "apis" && len(parts) > 2 {
			gv = parts[1] + "/" + parts[2]
		}
		return respond(req, http.StatusOK, []byte(fmt.Sprintf(`{"kind":%q,"apiVersion":%q,"metadata":{},"items":[]}`, kind, gv)))
	}
	return respond(req, http.StatusNotFound, []byte(`{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","reason":"NotFound","code":404,"message":"dry run: no apiserver answered, nothing exists yet"}`))
}

// listKinds maps the collections kubeforge lists to their list kinds.
var listKinds = map[string]string{
	"secrets": "SecretList", "configmaps": "ConfigMapList", "nodes": "NodeList",
	"clusterrolebindings": "ClusterRoleBindingList", "rolebindings": "RoleBindingList",
	"roles": "RoleList", "clusterroles": "ClusterRoleList", "leases": "LeaseList",
}

// listKind returns the list kind when path names a collection (the last
// segment is a resource, not an object name).
func listKind(p string) string {
	parts := strings.Split(strings.Trim(p, "/"), "/")
	if len(parts) == 0 {
		return ""
	}
	last := parts[len(parts)-1]
	kind, ok := listKinds[last]
	if !ok {
		return ""
	}
	// .../namespaces/<ns>/secrets or /api/v1/secrets; not .../secrets/<name>.
	if len(parts) >= 2 && parts[len(parts)-2] == "namespaces" {
		return ""
	}
	return kind
}

func respond(req *http.Request, status int, body []byte) *http.Response {
	return &http.Response{
		StatusCode: status, Status: fmt.Sprintf("%d %s", status, http.StatusText(status)),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:  http.Header{"Content-Type": []string{"application/json"}},
		Body:    io.NopCloser(bytes.NewReader(body)),
		Request: req, ContentLength: int64(len(body)),
	}
}

// describe names the object of a write: Kind namespace/name.
func describe(u *url.URL, obj map[string]any) string {
	kind, _ := obj["kind"].(string)
	md, _ := obj["metadata"].(map[string]any)
	name, _ := md["name"].(string)
	ns, _ := md["namespace"].(string)
	if kind == "" || name == "" {
		return u.Path
	}
	if ns != "" {
		return kind + " " + ns + "/" + name
	}
	return kind + " " + name
}

// redact replaces Secret values by their size: a plan is meant to be read and
// pasted, and must never carry a token or a key.
func redact(obj map[string]any) map[string]any {
	if obj["kind"] != "Secret" {
		return obj
	}
	out := map[string]any{}
	for k, v := range obj {
		out[k] = v
	}
	for _, field := range []string{"data", "stringData"} {
		if m, ok := obj[field].(map[string]any); ok {
			r := map[string]any{}
			for k, v := range m {
				s, _ := v.(string)
				n := len(s)
				if field == "data" {
					n = base64.StdEncoding.DecodedLen(len(s)) - strings.Count(s, "=")
				}
				r[k] = fmt.Sprintf("<secret: %d bytes>", n)
			}
			out[field] = r
		}
	}
	return out
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = "    " + l
	}
	return strings.Join(lines, "\n")
}
