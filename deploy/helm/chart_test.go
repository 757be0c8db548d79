// Package helm_test checks the Helm chart in deploy/helm/sbx without a
// cluster: it renders the chart with Helm's own engine for the default
// values, the quick-start values and a few variations, decodes every
// rendered object strictly into the Kubernetes API's Go types (an unknown
// or misspelt field fails), checks that the objects fit together (the
// Service selects the DaemonSet's pods, the Ingress names the Service's
// port, every mount has its volume, every Secret reference resolves) and
// that every flag the chart passes to sbx serve is one sbx serve has.
package helm_test

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

const (
	chartDir  = "sbx"
	release   = "sbx"
	namespace = "sandboxes"
	fullname  = "sbx" // the release's name contains the chart's
)

// pendingFlags are flags the chart passes only when values ask for them,
// which other work adds to sbx serve (Postgres store, object store, node
// names). Until a flag is in `sbx serve --help` its absence is logged, not
// failed; once it is there the test fails until it is removed from here, so
// that from then on it is checked like every other flag.
var pendingFlags = map[string]string{}

// rendered is one render of the chart: its objects by kind and name, and
// NOTES.txt.
type rendered struct {
	daemonSets   map[string]*appsv1.DaemonSet
	statefulSets map[string]*appsv1.StatefulSet
	services     map[string]*corev1.Service
	secrets      map[string]*corev1.Secret
	ingresses    map[string]*networkingv1.Ingress
	notes        string
}

// renderCase is one set of values the chart is rendered with.
type renderCase struct {
	name   string
	files  []string       // values files under chartDir, in order
	values map[string]any // then these, as --set would
	check  func(t *testing.T, r *rendered)
}

func TestChartRenders(t *testing.T) {
	help := serveFlags(t)
	cases := []renderCase{
		{
			name: "defaults",
			check: func(t *testing.T, r *rendered) {
				ds := theDaemonSet(t, r)
				args := ds.Spec.Template.Spec.Containers[0].Args
				for _, f := range []string{"store", "object-store", "node"} {
					if hasFlag(args, f) {
						t.Errorf("defaults pass --%s; it must be off unless values ask", f)
					}
				}
				if hasEnv(ds, "SBX_STORE") || hasEnv(ds, "AWS_ACCESS_KEY_ID") {
					t.Error("defaults set SBX_STORE or AWS credentials")
				}
				if len(ds.Spec.Template.Spec.InitContainers) != 0 {
					t.Error("defaults wait for the quick start's services")
				}
				if len(r.ingresses) != 0 || len(r.statefulSets) != 0 {
					t.Errorf("defaults render %d ingresses and %d statefulsets, want none", len(r.ingresses), len(r.statefulSets))
				}
				key := string(r.secrets[fullname].Data["api-key"])
				if !regexp.MustCompile(`^e2b_[0-9a-f]{40}$`).MatchString(key) {
					t.Errorf("generated API key %q is not e2b_ and 40 hex digits", key)
				}
				if !slices.Contains(theDaemonSet(t, r).Spec.Template.Spec.Containers[0].Args, "--listen=$(POD_IP):49982") {
					t.Error("defaults do not listen on the pod's (the node's) address")
				}
				if !strings.Contains(r.notes, "Each node is its own server") {
					t.Errorf("NOTES.txt for a DaemonSet on every node does not say nodes do not route to each other:\n%s", r.notes)
				}
				if !strings.Contains(r.notes, "port-forward") {
					t.Errorf("NOTES.txt without an ingress does not say how to port-forward:\n%s", r.notes)
				}
			},
		},
		{
			name:  "quickstart",
			files: []string{"values-quickstart.yaml"},
			check: func(t *testing.T, r *rendered) {
				ds := theDaemonSet(t, r)
				args := ds.Spec.Template.Spec.Containers[0].Args
				if want := "--object-store=s3://sbx?endpoint=http://sbx-s3:8333"; !slices.Contains(args, want) {
					t.Errorf("args %q lack %s", args, want)
				}
				dsn := secretValue(t, r, ds, "SBX_STORE")
				if want := "postgres://sbx:sbx-quickstart@sbx-postgres:5432/sbx?sslmode=disable"; dsn != want {
					t.Errorf("SBX_STORE = %q, want %q", dsn, want)
				}
				if got := secretValue(t, r, ds, "AWS_ACCESS_KEY_ID"); got != "sbx-quickstart" {
					t.Errorf("AWS_ACCESS_KEY_ID = %q", got)
				}
				for _, svc := range []string{"sbx-postgres", "sbx-s3"} {
					if r.services[svc] == nil || r.statefulSets[svc] == nil {
						t.Errorf("quick start lacks the Service or StatefulSet %s", svc)
					}
				}
				if strings.Contains(r.notes, "Each node is its own server") {
					t.Error("NOTES.txt warns about several nodes although the quick start keeps to one")
				}
				if !slices.Contains(args, "--listen=0.0.0.0:49982") {
					t.Errorf("quick start args %q: port-forward needs --listen=0.0.0.0", args)
				}
				if init := ds.Spec.Template.Spec.InitContainers; len(init) != 1 ||
					!strings.Contains(init[0].Args[0], "pg_isready -q -h sbx-postgres") || !strings.Contains(init[0].Args[0], "/dev/tcp/sbx-s3/8333") {
					t.Errorf("quick start's init containers do not wait for Postgres and S3: %+v", init)
				}
				if ds.Spec.Template.Spec.NodeSelector["sbx.dev/node"] != "true" {
					t.Errorf("quick start's nodeSelector = %v", ds.Spec.Template.Spec.NodeSelector)
				}
				cfg := r.secrets["sbx-s3-config"]
				if cfg == nil || !bytes.Contains(cfg.Data["s3.json"], []byte(`"accessKey": "sbx-quickstart"`)) {
					t.Errorf("the S3 identity config does not hold the access key: %v", cfg)
				}
			},
		},
		{
			name:  "quickstart with persistence",
			files: []string{"values-quickstart.yaml"},
			values: map[string]any{"quickstart": map[string]any{
				"postgres": map[string]any{"persistence": map[string]any{"enabled": true}},
				"s3":       map[string]any{"persistence": map[string]any{"enabled": true, "storageClass": "fast"}},
			}},
			check: func(t *testing.T, r *rendered) {
				for _, name := range []string{"sbx-postgres", "sbx-s3"} {
					ss := r.statefulSets[name]
					if ss == nil || len(ss.Spec.VolumeClaimTemplates) != 1 {
						t.Fatalf("%s has no volume claim template", name)
					}
				}
				if sc := r.statefulSets["sbx-s3"].Spec.VolumeClaimTemplates[0].Spec.StorageClassName; sc == nil || *sc != "fast" {
					t.Errorf("storage class = %v, want fast", sc)
				}
			},
		},
		{
			name: "ingress with TLS",
			values: map[string]any{
				"domain": "sbx.example.com",
				"ingress": map[string]any{"enabled": true, "className": "nginx",
					"tls": map[string]any{"enabled": true, "secretName": "sbx-wildcard"}},
				"apiKey": map[string]any{"value": "e2b_" + strings.Repeat("ab", 20)},
			},
			check: func(t *testing.T, r *rendered) {
				ing := r.ingresses[fullname]
				if ing == nil {
					t.Fatal("no Ingress")
				}
				var hosts []string
				for _, rule := range ing.Spec.Rules {
					hosts = append(hosts, rule.Host)
				}
				want := []string{"api.sbx.example.com", "*.sbx.example.com"}
				if !slices.Equal(hosts, want) {
					t.Errorf("rule hosts %q, want %q", hosts, want)
				}
				if len(ing.Spec.TLS) != 1 || ing.Spec.TLS[0].SecretName != "sbx-wildcard" || !slices.Equal(ing.Spec.TLS[0].Hosts, want) {
					t.Errorf("tls = %+v", ing.Spec.TLS)
				}
				if ing.Spec.IngressClassName == nil || *ing.Spec.IngressClassName != "nginx" {
					t.Errorf("ingressClassName = %v", ing.Spec.IngressClassName)
				}
				args := theDaemonSet(t, r).Spec.Template.Spec.Containers[0].Args
				if !slices.Contains(args, "--domain=sbx.example.com") {
					t.Errorf("args %q lack --domain", args)
				}
				if got := string(r.secrets[fullname].Data["api-key"]); got != "e2b_"+strings.Repeat("ab", 20) {
					t.Errorf("api-key = %q, want the value given", got)
				}
				if !strings.Contains(r.notes, "https://api.sbx.example.com") {
					t.Errorf("NOTES.txt does not name the API URL:\n%s", r.notes)
				}
			},
		},
		{
			name: "external Postgres and S3 from Secrets",
			values: map[string]any{
				"store":        map[string]any{"existingSecret": "pg", "existingSecretKey": "url"},
				"objectStore":  map[string]any{"url": "s3://bucket/sbx?endpoint=https://s3.example.com&region=eu-1", "existingSecret": "s3creds"},
				"apiKey":       map[string]any{"existingSecret": "keys", "existingSecretKey": "admin"},
				"node":         map[string]any{"fromNodeName": true},
				"nodeSelector": map[string]any{"sbx": "yes"},
				"tolerations":  []any{map[string]any{"key": "sandbox", "operator": "Exists", "effect": "NoSchedule"}},
				"resources":    map[string]any{"requests": map[string]any{"cpu": "500m", "memory": "512Mi"}},
				"serve": map[string]any{"runtime": "runsc", "internet": false, "maxTimeout": "1h",
					"cpus": 2, "memoryMB": 2048, "diskMB": 0, "extraArgs": []any{"--max-fork=4"}},
				"network": map[string]any{"subnet": "10.99.0.0/16", "dnsUpstream": "1.1.1.1"},
			},
			check: func(t *testing.T, r *rendered) {
				ds := theDaemonSet(t, r)
				c := ds.Spec.Template.Spec.Containers[0]
				for _, want := range []string{"--runtime=runsc", "--internet=false", "--max-timeout=1h", "--cpus=2",
					"--memory-mb=2048", "--disk-mb=0", "--max-fork=4", "--node=$(NODE_NAME)", "--subnet=10.99.0.0/16",
					"--dns-upstream=1.1.1.1", "--object-store=s3://bucket/sbx?endpoint=https://s3.example.com&region=eu-1"} {
					if !slices.Contains(c.Args, want) {
						t.Errorf("args %q lack %s", c.Args, want)
					}
				}
				refs := map[string][2]string{}
				for _, e := range c.Env {
					if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
						refs[e.Name] = [2]string{e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key}
					}
				}
				want := map[string][2]string{
					"SBX_API_KEY":           {"keys", "admin"},
					"SBX_STORE":             {"pg", "url"},
					"AWS_ACCESS_KEY_ID":     {"s3creds", "AWS_ACCESS_KEY_ID"},
					"AWS_SECRET_ACCESS_KEY": {"s3creds", "AWS_SECRET_ACCESS_KEY"},
				}
				if !maps.Equal(refs, want) {
					t.Errorf("secret references %v, want %v", refs, want)
				}
				if len(r.secrets[fullname].Data) != 0 {
					t.Errorf("the chart's Secret holds %v although every secret is the user's", slices.Collect(maps.Keys(r.secrets[fullname].Data)))
				}
				if ds.Spec.Template.Spec.NodeSelector["sbx"] != "yes" || len(ds.Spec.Template.Spec.Tolerations) != 1 {
					t.Errorf("scheduling values not applied: %v %v", ds.Spec.Template.Spec.NodeSelector, ds.Spec.Template.Spec.Tolerations)
				}
				if c.Resources.Requests.Memory().String() != "512Mi" {
					t.Errorf("resources = %v", c.Resources)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, tc.files, tc.values)
			checkCommon(t, r, help)
			tc.check(t, r)
		})
	}
}

// TestChartRefuses checks that values the chart cannot honour fail the
// render with a message, rather than rendering something that breaks later.
func TestChartRefuses(t *testing.T) {
	cases := []struct {
		name   string
		values map[string]any
		want   string
	}{
		{"ingress without domain", map[string]any{"ingress": map[string]any{"enabled": true}}, "ingress.enabled needs domain"},
		{"tls without secret", map[string]any{"domain": "d.example", "ingress": map[string]any{"enabled": true,
			"tls": map[string]any{"enabled": true}}}, "needs ingress.tls.secretName"},
		{"malformed API key", map[string]any{"apiKey": map[string]any{"value": "secret"}}, "apiKey.value must be e2b_"},
		{"bucket name a shell would read", map[string]any{"quickstart": map[string]any{"s3": map[string]any{
			"enabled": true, "bucket": "x; rm -rf /"}}}, "quickstart.s3.bucket must be"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := renderFiles(t, nil, tc.values)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("render error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestChartUpgradeKeepsKey checks that an upgrade keeps the API key the
// install made: the nodes keep the key they stored first, so a new one in
// the Secret would be a key that works nowhere. The lookup the chart makes
// is answered by client-go's in-memory object tracker holding the Secret the
// install rendered.
func TestChartUpgradeKeepsKey(t *testing.T) {
	install := render(t, nil, nil)
	key := install.secrets[fullname].Data["api-key"]
	if len(key) == 0 {
		t.Fatal("install made no key")
	}
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	stored := install.secrets[fullname].DeepCopy()
	stored.Namespace = namespace
	cluster := dynamicfake.NewSimpleDynamicClient(scheme, stored)
	out, err := renderWith(t, nil, map[string]any{"serve": map[string]any{"warmPool": 5}}, false, secretsOf{cluster})
	if err != nil {
		t.Fatal(err)
	}
	upgrade := decode(t, out)
	if got := upgrade.secrets[fullname].Data["api-key"]; !bytes.Equal(got, key) {
		t.Errorf("upgrade changed the generated key from %q to %q", key, got)
	}
	if !slices.Contains(theDaemonSet(t, upgrade).Spec.Template.Spec.Containers[0].Args, "--warm-pool=5") {
		t.Error("the upgrade's values were not applied")
	}
}

// secretsOf answers the chart's lookups of Secrets from a dynamic client.
type secretsOf struct{ c dynamic.Interface }

func (s secretsOf) GetClientFor(apiVersion, kind string) (dynamic.NamespaceableResourceInterface, bool, error) {
	if apiVersion != "v1" || kind != "Secret" {
		return nil, false, fmt.Errorf("the chart looks up %s %s, which the test does not serve", apiVersion, kind)
	}
	return s.c.Resource(corev1.SchemeGroupVersion.WithResource("secrets")), true, nil
}

// TestChartLints runs Helm's own linter (what `helm lint --strict` runs) on
// the chart with its default and its quick-start values: any warning fails.
func TestChartLints(t *testing.T) {
	for _, files := range [][]string{nil, {"values-quickstart.yaml"}} {
		vals := map[string]any{}
		for _, f := range files {
			v, err := common.ReadValuesFile(filepath.Join(chartDir, f))
			if err != nil {
				t.Fatal(err)
			}
			vals = util.MergeTables(v, vals)
		}
		l := lint.RunAll(chartDir, vals, namespace)
		for _, m := range l.Messages {
			if m.Severity >= support.WarningSev {
				t.Errorf("helm lint %v: %s", files, m)
			}
		}
	}
}

// render renders the chart and decodes its output, failing the test on any
// error.
func render(t *testing.T, files []string, set map[string]any) *rendered {
	t.Helper()
	out, err := renderFiles(t, files, set)
	if err != nil {
		t.Fatal(err)
	}
	return decode(t, out)
}

// decode decodes every rendered object strictly, failing the test on any
// error.
func decode(t *testing.T, out map[string]string) *rendered {
	t.Helper()
	r := &rendered{
		daemonSets:   map[string]*appsv1.DaemonSet{},
		statefulSets: map[string]*appsv1.StatefulSet{},
		services:     map[string]*corev1.Service{},
		secrets:      map[string]*corev1.Secret{},
		ingresses:    map[string]*networkingv1.Ingress{},
	}
	for _, name := range slices.Sorted(maps.Keys(out)) {
		body := out[name]
		switch {
		case strings.HasSuffix(name, "NOTES.txt"):
			r.notes = body
			continue
		case strings.HasSuffix(name, ".tpl"):
			continue
		}
		for i, doc := range splitDocs(body) {
			if err := r.add(doc); err != nil {
				t.Errorf("%s, document %d: %v\n%s", name, i, err, doc)
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	if r.notes == "" {
		t.Error("NOTES.txt rendered empty")
	}
	return r
}

// renderFiles renders the chart as `helm template` would with -f for each of
// files and then values, for a first install with no cluster to look up.
func renderFiles(t *testing.T, files []string, set map[string]any) (map[string]string, error) {
	t.Helper()
	return renderWith(t, files, set, true, nil)
}

// renderWith renders the chart for an install or an upgrade; lookups go to
// cluster, or find nothing when it is nil.
func renderWith(t *testing.T, files []string, set map[string]any, install bool, cluster engine.ClientProvider) (map[string]string, error) {
	t.Helper()
	chrt, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	user := map[string]any{}
	for _, f := range files {
		v, err := common.ReadValuesFile(filepath.Join(chartDir, f))
		if err != nil {
			t.Fatalf("values file: %v", err)
		}
		user = util.MergeTables(v, user)
	}
	if set != nil {
		user = util.MergeTables(deepCopy(set), user)
	}
	opts := common.ReleaseOptions{Name: release, Namespace: namespace, Revision: 1, IsInstall: install, IsUpgrade: !install}
	if !install {
		opts.Revision = 2
	}
	vals, err := util.ToRenderValues(chrt, user, opts, common.DefaultCapabilities)
	if err != nil {
		t.Fatalf("values: %v", err)
	}
	if cluster != nil {
		return engine.RenderWithClientProvider(chrt, vals, cluster)
	}
	return engine.Engine{Strict: true}.Render(chrt, vals)
}

// deepCopy copies nested maps so that merging never writes into a test
// case's literal.
func deepCopy(m map[string]any) map[string]any {
	c := make(map[string]any, len(m))
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok {
			v = deepCopy(sub)
		}
		c[k] = v
	}
	return c
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// splitDocs splits a rendered template into its YAML documents, dropping
// those with nothing but comments and blank lines.
func splitDocs(s string) []string {
	var docs []string
	for _, d := range docSep.Split(s, -1) {
		for _, line := range strings.Split(d, "\n") {
			l := strings.TrimSpace(line)
			if l != "" && !strings.HasPrefix(l, "#") {
				docs = append(docs, d)
				break
			}
		}
	}
	return docs
}

// add decodes one document strictly into the Go type of its apiVersion and
// kind and files it by name.
func (r *rendered) add(doc string) error {
	var tm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
		return err
	}
	var obj interface{ GetName() string }
	var file func()
	switch tm.APIVersion + " " + tm.Kind {
	case "apps/v1 DaemonSet":
		o := &appsv1.DaemonSet{}
		obj, file = o, func() { r.daemonSets[o.Name] = o }
	case "apps/v1 StatefulSet":
		o := &appsv1.StatefulSet{}
		obj, file = o, func() { r.statefulSets[o.Name] = o }
	case "v1 Service":
		o := &corev1.Service{}
		obj, file = o, func() { r.services[o.Name] = o }
	case "v1 Secret":
		o := &corev1.Secret{}
		obj, file = o, func() {
			// stringData is what the API server folds into data.
			for k, v := range o.StringData {
				if o.Data == nil {
					o.Data = map[string][]byte{}
				}
				o.Data[k] = []byte(v)
			}
			r.secrets[o.Name] = o
		}
	case "networking.k8s.io/v1 Ingress":
		o := &networkingv1.Ingress{}
		obj, file = o, func() { r.ingresses[o.Name] = o }
	default:
		return fmt.Errorf("unexpected object %s %s: add it to the test", tm.APIVersion, tm.Kind)
	}
	// Strict as the API server's field validation: duplicate keys, unknown
	// fields (a misspelt or misplaced key) and field names in the wrong
	// case (hostPid for hostPID, which encoding/json would accept) are
	// errors.
	js, err := yaml.YAMLToJSONStrict([]byte(doc))
	if err != nil {
		return fmt.Errorf("yaml: %w", err)
	}
	strict, err := kjson.UnmarshalStrict(js, obj, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return fmt.Errorf("decode into %T: %w", obj, err)
	}
	if len(strict) > 0 {
		return fmt.Errorf("strict decode into %T: %w", obj, errors.Join(strict...))
	}
	if obj.GetName() == "" {
		return errors.New("object without metadata.name")
	}
	file()
	return nil
}

// checkCommon checks what every render must hold: one privileged DaemonSet
// running sbx serve with real flags, probes, mounts with volumes, and
// Services, Ingresses and Secret references that resolve.
func checkCommon(t *testing.T, r *rendered, help map[string]bool) {
	t.Helper()
	ds := theDaemonSet(t, r)
	pod := ds.Spec.Template
	if ds.Spec.Selector == nil || !subset(ds.Spec.Selector.MatchLabels, pod.Labels) || len(ds.Spec.Selector.MatchLabels) == 0 {
		t.Errorf("DaemonSet selector %v does not select its pod labels %v", ds.Spec.Selector, pod.Labels)
	}
	if !pod.Spec.HostNetwork || !pod.Spec.HostPID {
		t.Errorf("hostNetwork=%v hostPID=%v; sandboxes' networks and processes must outlive the pod", pod.Spec.HostNetwork, pod.Spec.HostPID)
	}
	if pod.Spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("dnsPolicy = %q, want ClusterFirstWithHostNet (the store's and S3's service names)", pod.Spec.DNSPolicy)
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	if c.Image == "" || strings.HasSuffix(c.Image, ":") {
		t.Errorf("image %q", c.Image)
	}
	if c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
		t.Error("the sbx container is not privileged")
	}
	if len(c.Args) == 0 || c.Args[0] != "serve" {
		t.Fatalf("args %q do not start with serve", c.Args)
	}
	checkFlags(t, c, help)
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	listen := fmt.Sprintf(":%d", ports["http"])
	if !slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--listen=") && strings.HasSuffix(a, listen) }) {
		t.Errorf("args %q lack --listen=ADDR%s (the container port)", c.Args, listen)
	}
	for name, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s probe missing or not HTTP", name)
			continue
		}
		if p.HTTPGet.Path != "/health" || p.HTTPGet.Port.StrVal == "" || ports[p.HTTPGet.Port.StrVal] == 0 {
			t.Errorf("%s probe GET %s on port %v, want /health on a named container port", name, p.HTTPGet.Path, p.HTTPGet.Port.String())
		}
	}
	checkMounts(t, "DaemonSet "+ds.Name, pod.Spec, nil)
	for _, c := range pod.Spec.InitContainers {
		checkScript(t, "DaemonSet "+ds.Name, c)
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m
	}
	for _, path := range []string{"/var/lib/sbx", "/sys/fs/cgroup", "/dev"} {
		if _, ok := mounts[path]; !ok {
			t.Errorf("no mount at %s", path)
		}
	}
	if m := mounts["/var/lib/sbx"]; m.MountPropagation == nil || *m.MountPropagation != corev1.MountPropagationBidirectional {
		t.Error("the data directory's mount is not Bidirectional")
	}
	for _, env := range c.Env {
		if ref := env.ValueFrom; ref != nil && ref.SecretKeyRef != nil {
			checkSecretRef(t, r, env.Name, ref.SecretKeyRef)
		}
	}

	api := r.services[fullname]
	if api == nil {
		t.Fatalf("no Service %s", fullname)
	}
	if len(api.Spec.Selector) == 0 || !subset(api.Spec.Selector, pod.Labels) {
		t.Errorf("Service selector %v does not select the DaemonSet's pods %v", api.Spec.Selector, pod.Labels)
	}
	for _, svc := range r.services {
		for _, p := range svc.Spec.Ports {
			if p.Port == 0 || p.TargetPort.StrVal == "" {
				t.Errorf("Service %s port %+v: want a port and a named target port", svc.Name, p)
			}
		}
	}
	for _, sp := range api.Spec.Ports {
		if ports[sp.TargetPort.StrVal] == 0 {
			t.Errorf("Service port %s targets %q, which the sbx container does not have", sp.Name, sp.TargetPort.StrVal)
		}
	}
	for _, ing := range r.ingresses {
		if len(ing.Spec.Rules) == 0 {
			t.Errorf("Ingress %s has no rules", ing.Name)
		}
		for _, rule := range ing.Spec.Rules {
			if rule.HTTP == nil || len(rule.HTTP.Paths) == 0 {
				t.Errorf("Ingress rule %s has no paths", rule.Host)
				continue
			}
			for _, p := range rule.HTTP.Paths {
				b := p.Backend.Service
				if b == nil || b.Name != api.Name || !slices.ContainsFunc(api.Spec.Ports, func(sp corev1.ServicePort) bool { return sp.Name == b.Port.Name && sp.Name != "" }) {
					t.Errorf("Ingress %s backend %+v does not name Service %s and one of its ports", rule.Host, b, api.Name)
				}
				if p.PathType == nil {
					t.Errorf("Ingress %s path %s has no pathType", rule.Host, p.Path)
				}
			}
		}
	}
	for _, ss := range r.statefulSets {
		if ss.Spec.Selector == nil || !subset(ss.Spec.Selector.MatchLabels, ss.Spec.Template.Labels) {
			t.Errorf("StatefulSet %s selector does not match its pods", ss.Name)
		}
		if svc := r.services[ss.Spec.ServiceName]; svc == nil || !subset(svc.Spec.Selector, ss.Spec.Template.Labels) {
			t.Errorf("StatefulSet %s: Service %q missing or not selecting it", ss.Name, ss.Spec.ServiceName)
		} else if subset(svc.Spec.Selector, pod.Labels) {
			t.Errorf("Service %s also selects the sbx pods", svc.Name)
		}
		var claims []string
		for _, c := range ss.Spec.VolumeClaimTemplates {
			claims = append(claims, c.Name)
		}
		checkMounts(t, "StatefulSet "+ss.Name, ss.Spec.Template.Spec, claims)
		for _, c := range ss.Spec.Template.Spec.Containers {
			for _, env := range c.Env {
				if ref := env.ValueFrom; ref != nil && ref.SecretKeyRef != nil {
					checkSecretRef(t, r, env.Name, ref.SecretKeyRef)
				}
			}
			if c.ReadinessProbe == nil {
				t.Errorf("StatefulSet %s container %s has no readiness probe", ss.Name, c.Name)
			}
			checkScript(t, "StatefulSet "+ss.Name, c)
		}
	}
}

// checkFlags checks every --flag in the container's args, and every SBX_*
// variable of its environment (sbx serve reads SBX_FLAG_NAME for each flag),
// against the flags sbx serve has.
func checkFlags(t *testing.T, c corev1.Container, help map[string]bool) {
	t.Helper()
	var used []string
	for _, a := range c.Args[1:] {
		if !strings.HasPrefix(a, "--") {
			t.Errorf("argument %q is not a --flag", a)
			continue
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		used = append(used, name)
	}
	for _, e := range c.Env {
		name, ok := strings.CutPrefix(e.Name, "SBX_")
		if !ok || e.Name == "SBX_API_KEY" { // read by sbx serve itself, not a flag
			continue
		}
		used = append(used, strings.ReplaceAll(strings.ToLower(name), "_", "-"))
	}
	for _, name := range used {
		switch _, pending := pendingFlags[name]; {
		case help[name] && pending:
			t.Errorf("--%s is a flag of sbx serve now: remove it from pendingFlags", name)
		case pending:
			t.Logf("the chart assumes %s, which this sbx does not have yet", pendingFlags[name])
		case !help[name]:
			t.Errorf("the chart passes --%s, which sbx serve does not have", name)
		}
	}
}

// checkMounts checks that every volume mount of every container names a
// volume of the pod (or a claim template), and that every volume is used.
func checkMounts(t *testing.T, what string, spec corev1.PodSpec, claims []string) {
	t.Helper()
	volumes := map[string]bool{}
	for _, v := range spec.Volumes {
		if volumes[v.Name] {
			t.Errorf("%s: volume %s twice", what, v.Name)
		}
		volumes[v.Name] = true
	}
	for _, c := range claims {
		if volumes[c] {
			t.Errorf("%s: %s is both a volume and a claim template", what, c)
		}
		volumes[c] = true
	}
	used := map[string]bool{}
	for _, c := range append(spec.InitContainers, spec.Containers...) {
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				t.Errorf("%s: container %s mounts %s, which is no volume", what, c.Name, m.Name)
			}
			if m.MountPath == "" {
				t.Errorf("%s: mount %s without a path", what, m.Name)
			}
			used[m.Name] = true
		}
	}
	for v := range volumes {
		if !used[v] {
			t.Errorf("%s: volume %s is not mounted", what, v)
		}
	}
}

// checkScript checks that the shell script a container runs (command
// /bin/sh -c or /bin/bash -c, script in args) parses.
func checkScript(t *testing.T, what string, c corev1.Container) {
	t.Helper()
	if len(c.Command) != 2 || c.Command[1] != "-c" || len(c.Args) == 0 {
		return
	}
	sh := filepath.Base(c.Command[0])
	if out, err := exec.Command(sh, "-n", "-c", c.Args[0]).CombinedOutput(); err != nil {
		t.Errorf("%s: the script of container %s does not parse (%s -n): %v\n%s\n%s", what, c.Name, sh, err, out, c.Args[0])
	}
}

// checkSecretRef checks that a reference to a Secret the chart renders names
// one of its keys; a Secret the chart does not render must be the user's
// (an existingSecret value), which the test cases name.
func checkSecretRef(t *testing.T, r *rendered, env string, ref *corev1.SecretKeySelector) {
	t.Helper()
	s := r.secrets[ref.Name]
	if s == nil {
		if ref.Name == fullname || strings.HasPrefix(ref.Name, fullname+"-") {
			t.Errorf("%s refers to Secret %s, which the chart does not render", env, ref.Name)
		}
		return
	}
	if _, ok := s.Data[ref.Key]; !ok {
		t.Errorf("%s refers to key %s of Secret %s, which has only %v", env, ref.Key, ref.Name, slices.Sorted(maps.Keys(s.Data)))
	}
}

// secretValue returns the value of the sbx container's variable env, read
// from the rendered Secret it refers to.
func secretValue(t *testing.T, r *rendered, ds *appsv1.DaemonSet, env string) string {
	t.Helper()
	for _, e := range ds.Spec.Template.Spec.Containers[0].Env {
		if e.Name == env && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			if s := r.secrets[e.ValueFrom.SecretKeyRef.Name]; s != nil {
				return string(s.Data[e.ValueFrom.SecretKeyRef.Key])
			}
		}
	}
	t.Errorf("no %s from a rendered Secret", env)
	return ""
}

func theDaemonSet(t *testing.T, r *rendered) *appsv1.DaemonSet {
	t.Helper()
	ds := r.daemonSets[fullname]
	if ds == nil || len(r.daemonSets) != 1 {
		t.Fatalf("want one DaemonSet %s, have %v", fullname, slices.Collect(maps.Keys(r.daemonSets)))
	}
	return ds
}

func hasFlag(args []string, name string) bool {
	return slices.ContainsFunc(args, func(a string) bool { return a == "--"+name || strings.HasPrefix(a, "--"+name+"=") })
}

func hasEnv(ds *appsv1.DaemonSet, name string) bool {
	return slices.ContainsFunc(ds.Spec.Template.Spec.Containers[0].Env, func(e corev1.EnvVar) bool { return e.Name == name })
}

// subset reports whether every label of sel is in labels.
func subset(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// serveFlags builds sbx and returns the flags `sbx serve --help` lists.
func serveFlags(t *testing.T) map[string]bool {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sbx")
	build := exec.Command("go", "build", "-o", bin, "../../cmd/sbx")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/sbx (go must be in PATH): %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "serve", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("sbx serve --help: %v\n%s", err, out)
	}
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z0-9-]+)`).FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	for _, f := range []string{"listen", "data-dir", "domain", "runtime", "internet"} {
		if !flags[f] {
			t.Fatalf("sbx serve --help lists no --%s; has its format changed?\n%s", f, out)
		}
	}
	if _, err := os.Stat(chartDir); err != nil {
		t.Fatal(err)
	}
	return flags
}
