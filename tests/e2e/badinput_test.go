package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/harness"
)

// TestBadInput sends malformed, oversized, unauthenticated and otherwise
// wrong requests and checks each gets a clear 4xx in E2B's error shape, and
// that the server keeps serving.
func TestBadInput(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 2*time.Minute)
	sb, err := srv.Client.CreateSandbox(ctx, client.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	key := srv.APIKey
	dataPlane := map[string]string{"E2b-Sandbox-Id": sb.ID, "E2b-Sandbox-Port": "49983", "X-Access-Token": sb.EnvdAccessToken}
	listBody := `{}`
	connectJSON := map[string]string{"Content-Type": "application/json"}

	cases := []struct {
		name    string
		method  string
		path    string
		body    string
		headers map[string]string
		noKey   bool
		status  int
		msg     string // a substring of the message
	}{
		{"unknown template", "POST", "/v2/sandboxes", `{"templateID":"no-such-template"}`, nil, false, 404, "no-such-template"},
		{"invalid template name", "POST", "/v2/sandboxes", `{"templateID":"../../etc"}`, nil, false, 400, "template"},
		{"missing template", "POST", "/v2/sandboxes", `{}`, nil, false, 400, "templateID"},
		{"malformed JSON", "POST", "/v2/sandboxes", `{"templateID":`, nil, false, 400, "malformed JSON"},
		{"wrong JSON type", "POST", "/v2/sandboxes", `{"templateID":"base","timeout":"soon"}`, nil, false, 400, "timeout"},
		{"trailing garbage", "POST", "/v2/sandboxes", `{"templateID":"base"} x`, nil, false, 400, "trailing"},
		{"empty body", "POST", "/v2/sandboxes", ``, nil, false, 400, "empty"},
		{"oversized body", "POST", "/v2/sandboxes", `{"templateID":"base","metadata":{"k":"` + strings.Repeat("a", 2<<20) + `"}}`, nil, false, 413, "too large"},
		{"negative timeout", "POST", "/v2/sandboxes", `{"templateID":"base","timeout":-5}`, nil, false, 400, "negative"},
		{"unknown runtime", "POST", "/v2/sandboxes", `{"templateID":"base","runtime":"kata"}`, nil, false, 400, `unknown runtime "kata"`},
		{"wrong runtime type", "POST", "/v2/sandboxes", `{"templateID":"base","runtime":1}`, nil, false, 400, "runtime"},
		{"env key with =", "POST", "/v2/sandboxes", `{"templateID":"base","envVars":{"A=B":"c"}}`, nil, false, 400, "envVars"},
		{"negative set-timeout", "POST", "/sandboxes/" + sb.ID + "/timeout", `{"timeout":-1}`, nil, false, 400, "negative"},
		{"unknown sandbox get", "GET", "/sandboxes/nosuchsandbox00000000", ``, nil, false, 404, "not found"},
		{"unknown sandbox kill", "DELETE", "/sandboxes/nosuchsandbox00000000", ``, nil, false, 404, "not found"},
		{"unknown sandbox timeout", "POST", "/sandboxes/nosuchsandbox00000000/timeout", `{"timeout":10}`, nil, false, 404, "not found"},
		{"unknown sandbox connect", "POST", "/v2/sandboxes/nosuchsandbox00000000/connect", `{}`, nil, false, 404, "not found"},
		{"bad state filter", "GET", "/v2/sandboxes?state=dancing", ``, nil, false, 400, "state"},
		{"bad limit", "GET", "/v2/sandboxes?limit=-1", ``, nil, false, 400, "-1"},
		{"missing API key", "GET", "/v2/sandboxes", ``, nil, true, 401, "API key"},
		{"wrong API key", "GET", "/v2/sandboxes", ``, map[string]string{"X-API-Key": "e2b_" + strings.Repeat("0", 40)}, true, 401, "invalid API key"},
		{"malformed API key", "GET", "/v2/sandboxes", ``, map[string]string{"X-API-Key": "hunter2"}, true, 401, "invalid API key"},
		{"non-admin cannot manage keys", "GET", "/sbx/v1/keys", ``, nil, false, 403, "admin"}, // key replaced below
		{"unknown route", "GET", "/v9/nothing", ``, nil, false, 404, "no route"},
		{"dashboard sign-in, malformed JSON", "POST", "/dashboard/api/session", `{"apiKey":`, nil, true, 400, "malformed JSON"},
		{"dashboard sign-in, wrong key", "POST", "/dashboard/api/session", `{"apiKey":"e2b_` + strings.Repeat("0", 40) + `"}`, nil, true, 401, "invalid API key"},
		{"dashboard sign-in, key of the wrong type", "POST", "/dashboard/api/session", `{"apiKey":1}`, nil, true, 400, "apiKey"},
		{"dashboard session, forged cookie", "GET", "/dashboard/api/session", ``, map[string]string{"Cookie": "sbx_session=forged"}, true, 401, "session"},
		{"dashboard files, traversal", "GET", "/dashboard/api/sandboxes/" + sb.ID + "/files?path=../../etc", ``, nil, false, 400, ".."},
		{"dashboard files, NUL", "GET", "/dashboard/api/sandboxes/" + sb.ID + "/files/content?path=a%00b", ``, nil, false, 400, "NUL"},
		{"dashboard files, unknown sandbox", "GET", "/dashboard/api/sandboxes/nosuchsandbox00000000/files", ``, nil, false, 404, "not found"},
		{"dashboard terminal, not a WebSocket", "GET", "/dashboard/api/sandboxes/" + sb.ID + "/terminal", ``, nil, false, 400, "WebSocket"},
		{"dashboard terminal, bad size", "GET", "/dashboard/api/sandboxes/" + sb.ID + "/terminal?cols=5000", ``, nil, false, 400, "cols"},
		{"cross-origin request", "GET", "/v2/sandboxes", ``, map[string]string{"Origin": "https://evil.example"}, false, 403, "cross-origin"},
		{"delete template in use", "DELETE", "/templates/base", ``, nil, false, 409, "used by"},
		{"wrong envd token", "POST", "/process.Process/List", listBody, merge(dataPlane, connectJSON, map[string]string{"X-Access-Token": "wrong"}), true, 401, ""},
		{"no envd token", "POST", "/process.Process/List", listBody, merge(dataPlane, connectJSON, map[string]string{"X-Access-Token": ""}), true, 401, ""},
		{"bad sandbox port", "GET", "/", ``, map[string]string{"E2b-Sandbox-Id": sb.ID, "E2b-Sandbox-Port": "70000"}, true, 400, "port"},
		{"data plane to unknown sandbox", "GET", "/health", ``, map[string]string{"E2b-Sandbox-Id": "nosuchsandbox00000000", "E2b-Sandbox-Port": "49983"}, true, 502, "not found"},
		{"maskRequestHost with a space", "POST", "/v2/sandboxes", `{"templateID":"base","network":{"maskRequestHost":"a b.test"}}`, nil, false, 400, "maskRequestHost"},
		{"maskRequestHost with CRLF", "POST", "/v2/sandboxes", `{"templateID":"base","network":{"maskRequestHost":"x.test\r\nX-Injected: 1"}}`, nil, false, 400, "maskRequestHost"},
		{"maskRequestHost too long", "POST", "/v2/sandboxes", `{"templateID":"base","network":{"maskRequestHost":"` + strings.Repeat("a", 300) + `"}}`, nil, false, 400, "maskRequestHost"},
		{"httpsPorts 0", "POST", "/v2/sandboxes", `{"templateID":"base","network":{"httpsPorts":[0]}}`, nil, false, 400, "httpsPorts"},
		{"httpsPorts past 65535", "POST", "/v2/sandboxes", `{"templateID":"base","network":{"httpsPorts":[70000]}}`, nil, false, 400, "httpsPorts"},
		{"httpsPorts the envd port", "POST", "/v2/sandboxes", `{"templateID":"base","network":{"httpsPorts":[49983]}}`, nil, false, 400, "envd port"},
		{"httpsPorts not a list", "POST", "/v2/sandboxes", `{"templateID":"base","network":{"httpsPorts":"443"}}`, nil, false, 400, "httpsPorts"},
		{"iam token type", "POST", "/v2/sandboxes", `{"templateID":"base","iam":{"tokens":{"aws":{"audience":"sts.amazonaws.com","tokenType":"bearer"}}}}`, nil, false, 400, "tokenType"},
		{"iam token name with braces", "POST", "/v2/sandboxes", `{"templateID":"base","iam":{"tokens":{"a{b}":{"audience":"sts.amazonaws.com","tokenType":"JWT-SVID"}}}}`, nil, false, 400, "token name"},
		{"iam token without audience", "POST", "/v2/sandboxes", `{"templateID":"base","iam":{"tokens":{"aws":{"tokenType":"JWT-SVID"}}}}`, nil, false, 400, "audience"},
		{"iam tokens not a map", "POST", "/v2/sandboxes", `{"templateID":"base","iam":{"tokens":"aws"}}`, nil, false, 400, "iam"},
		{"rule naming an unregistered identity token", "POST", "/v2/sandboxes", `{"templateID":"base","iam":{"tokens":{"gcp":{"audience":"x","tokenType":"JWT-SVID"}}},"network":{"rules":{"api.test":[{"transform":{"headers":{"Authorization":"${e2b.identity.tokens.aws}"}}}]}}}`, nil, false, 400, `identity token "aws"`},
		{"update naming an unregistered identity token", "PUT", "/sandboxes/" + sb.ID + "/network", `{"rules":{"api.test":[{"transform":{"headers":{"Authorization":"${e2b.identity.tokens.aws}"}}}]}}`, nil, false, 400, `identity token "aws"`},
		{"oidc documents, wrong method", "POST", "/.well-known/jwks.json", `{}`, nil, true, 404, "no route"},
		{"closed sandbox port", "GET", "/", ``, map[string]string{"E2b-Sandbox-Id": sb.ID, "E2b-Sandbox-Port": "9"}, true, 502, ""},
	}
	// A second, non-admin key for the admin check.
	nk, err := srv.Client.CreateKey(ctx, "plain")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(ctx, tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if !tc.noKey {
				req.Header.Set("X-API-Key", key)
				if tc.status == 403 && strings.HasPrefix(tc.path, "/sbx/v1/keys") {
					req.Header.Set("X-API-Key", nk.Key)
				}
			}
			if tc.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tc.status, body)
			}
			if strings.HasPrefix(tc.path, "/process.") {
				// The agent's refusal: Connect's error shape or E2B's.
				var ce struct{ Code any }
				if err := json.Unmarshal(body, &ce); err != nil || (ce.Code != "unauthenticated" && ce.Code != float64(401)) {
					t.Fatalf("agent error body %s", body)
				}
				return
			}
			var eb struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			}
			if err := json.Unmarshal(body, &eb); err != nil {
				t.Fatalf("body is not E2B's error shape: %s", body)
			}
			if eb.Code != tc.status || eb.Message == "" || !strings.Contains(eb.Message, tc.msg) {
				t.Fatalf("error body %+v, want code %d and a message containing %q", eb, tc.status, tc.msg)
			}
		})
	}
	// Nothing above may have broken the server or the sandbox.
	if err := srv.Client.Health(ctx); err != nil {
		t.Fatal(err)
	}
	if res := mustRun(t, ctx, sb, "echo still-here", nil); res.Stdout != "still-here\n" {
		t.Fatalf("sandbox after bad input: %+v", res)
	}
	if strings.Contains(srv.Logs(), "panic") {
		t.Fatal("server logged a panic")
	}
	var errs bytes.Buffer
	for _, l := range strings.Split(srv.Logs(), "\n") {
		if strings.Contains(l, "status=500") {
			errs.WriteString(l + "\n")
		}
	}
	if errs.Len() > 0 {
		t.Fatalf("server answered 500:\n%s", errs.String())
	}
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}
