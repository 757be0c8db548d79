package api

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/sbxdev/sbx/internal/sandbox"
	"github.com/sbxdev/sbx/wire"
)

func TestSecretsAPI(t *testing.T) {
	s := newTestServer(t, sandbox.Config{})
	s.SetReady(true)
	key := s.plainKey
	const value = "sk-live-0123456789abcdef"
	w := s.do(t, "POST", "/secrets", key, `{"name":"OpenAI-Key","value":"`+value+`","metadata":{"owner":"ml"}}`)
	var created wire.Secret
	decodeBody(t, w, 201, &created)
	if !strings.HasPrefix(created.SecretID, "sec_") || created.Name != "openai-key" || created.CurrentVersion != 1 ||
		created.Metadata["owner"] != "ml" || created.CreatedAt.IsZero() || !created.UpdatedAt.Equal(created.CreatedAt) {
		t.Fatalf("created = %+v; want a sec_ id, the lower-cased name, version 1, the metadata and times", created)
	}
	noValue := func(what, body string) {
		t.Helper()
		if strings.Contains(body, value) || strings.Contains(body, `"value"`) {
			t.Errorf("%s answers the secret's value: %s", what, body)
		}
	}
	noValue("create", w.Body.String())

	// The name is unique in the team, whatever its case.
	wantError(t, s.do(t, "POST", "/secrets", key, `{"name":"openai-KEY","value":"x"}`), 409, `"openai-key" exists`)

	for _, ref := range []string{created.SecretID, "openai-key"} {
		w := s.do(t, "GET", "/secrets/"+ref, key, "")
		var got wire.Secret
		decodeBody(t, w, 200, &got)
		if got.SecretID != created.SecretID {
			t.Fatalf("GET /secrets/%s = %+v", ref, got)
		}
		noValue("get", w.Body.String())
	}

	w = s.do(t, "POST", "/secrets/openai-key", key, `{"value":"new-value"}`)
	var updated wire.Secret
	decodeBody(t, w, 200, &updated)
	if updated.CurrentVersion != 2 || updated.Metadata["owner"] != "ml" || !updated.UpdatedAt.After(created.UpdatedAt) && !updated.UpdatedAt.Equal(created.UpdatedAt) {
		t.Fatalf("updated = %+v; want version 2 with the metadata kept", updated)
	}
	updated = wire.Secret{}
	decodeBody(t, s.do(t, "POST", "/secrets/"+created.SecretID, key, `{"value":"v3","metadata":{}}`), 200, &updated)
	if updated.CurrentVersion != 3 || len(updated.Metadata) != 0 {
		t.Fatalf("update with empty metadata = %+v; want version 3, metadata cleared", updated)
	}
	// What is stored is sealed, never the value.
	stored, err := s.db.GetSecret(context.Background(), "", created.SecretID)
	if err != nil || strings.Contains(stored.Sealed, "v3") || !strings.HasPrefix(stored.Sealed, "v1.") {
		t.Fatalf("stored = %+v, %v; want a sealed value", stored, err)
	}

	// Pages of one.
	decodeBody(t, s.do(t, "POST", "/secrets", key, `{"name":"second","value":"x"}`), 201, &wire.Secret{})
	w = s.do(t, "GET", "/secrets?limit=1", key, "")
	var page []wire.Secret
	decodeBody(t, w, 200, &page)
	next := w.Header().Get("X-Next-Token")
	if len(page) != 1 || next == "" {
		t.Fatalf("first page = %+v, next %q", page, next)
	}
	w = s.do(t, "GET", "/secrets?limit=1&nextToken="+next, key, "")
	var page2 []wire.Secret
	decodeBody(t, w, 200, &page2)
	if len(page2) != 1 || page2[0].SecretID == page[0].SecretID || w.Header().Get("X-Next-Token") != "" {
		t.Fatalf("second page = %+v, next %q", page2, w.Header().Get("X-Next-Token"))
	}
	noValue("list", w.Body.String())

	w = s.do(t, "DELETE", "/secrets/openai-key", key, "")
	if w.Code != 204 {
		t.Fatalf("delete = %d %s", w.Code, w.Body)
	}
	wantError(t, s.do(t, "DELETE", "/secrets/openai-key", key, ""), 404, "not found")
	wantError(t, s.do(t, "GET", "/secrets/"+created.SecretID, key, ""), 404, "not found")
	wantError(t, s.do(t, "POST", "/secrets/nope", key, `{"value":"x"}`), 404, "not found")
	if w := s.do(t, "GET", "/secrets", "", ""); w.Code != 401 {
		t.Errorf("GET /secrets without a key = %d", w.Code)
	}
}

func TestSecretsBadInput(t *testing.T) {
	s := newTestServer(t, sandbox.Config{})
	s.SetReady(true)
	key := s.plainKey
	many := map[string]string{}
	for i := 0; i < 33; i++ {
		many[strings.Repeat("k", i+1)] = "v"
	}
	manyJSON, _ := json.Marshal(map[string]any{"name": "m", "value": "x", "metadata": many})
	for _, c := range []struct{ body, msg string }{
		{`{"name":"","value":"x"}`, "name"},
		{`{"name":"has space","value":"x"}`, "name"},
		{`{"name":"a{b}","value":"x"}`, "name"},
		{`{"name":"` + strings.Repeat("a", 129) + `","value":"x"}`, "name"},
		{`{"name":"sec_mine","value":"x"}`, "sec_ prefix"},
		{`{"name":"ok"}`, "value"},
		{`{"name":"ok","value":""}`, "value"},
		{`{"name":"ok","value":"x","metadata":{"k":"` + strings.Repeat("v", 1025) + `"}}`, "metadata"},
		{string(manyJSON), "metadata"},
		{`{"name":1}`, ""},
		{`not json`, ""},
	} {
		wantError(t, s.do(t, "POST", "/secrets", key, c.body), 400, c.msg)
	}
	decodeBody(t, s.do(t, "POST", "/secrets", key, `{"name":"ok","value":"x"}`), 201, &wire.Secret{})
	wantError(t, s.do(t, "POST", "/secrets/ok", key, `{"value":""}`), 400, "value")
	wantError(t, s.do(t, "POST", "/secrets/ok", key, `{}`), 400, "value")
	for _, q := range []string{"limit=0", "limit=x", "limit=1001"} {
		wantError(t, s.do(t, "GET", "/secrets?"+q, key, ""), 400, "limit")
	}
	// Creates naming secrets the team lacks, identity tokens they did not
	// register, or malformed identity and ingress options.
	rule := func(v string) string {
		return `{"templateID":"base","network":{"rules":{"api.test":[{"transform":{"headers":{"Authorization":"` + v + `"}}}]}}}`
	}
	wantError(t, s.do(t, "POST", "/sandboxes", key, rule("${e2b.secrets.missing}")), 400, `secret "missing" not found`)
	wantError(t, s.do(t, "POST", "/sandboxes", key, rule("${e2b.identity.tokens.aws}")), 400, `identity token "aws" is not registered`)
	withIAM := func(iam string) string {
		return `{"templateID":"base","iam":` + iam + `,"network":{"rules":{"api.test":[{"transform":{"headers":{"Authorization":"${e2b.identity.tokens.aws}"}}}]}}}`
	}
	wantError(t, s.do(t, "POST", "/sandboxes", key, withIAM(`{"tokens":{"gcp":{"audience":"x","tokenType":"JWT-SVID"}}}`)), 400, `identity token "aws" is not registered`)
	for _, c := range []struct{ body, msg string }{
		{`{"templateID":"base","iam":"x"}`, "iam"},
		{`{"templateID":"base","iam":{"tokens":[]}}`, "iam"},
		{`{"templateID":"base","iam":{"tokens":{"aws":null}}}`, "iam.tokens"},
		{`{"templateID":"base","iam":{"tokens":{"aws":{"audience":"sts"}}}}`, "tokenType"},
		{`{"templateID":"base","iam":{"tokens":{"aws":{"audience":"sts","tokenType":"OIDC"}}}}`, "tokenType"},
		{`{"templateID":"base","iam":{"tokens":{"aws":{"audience":"","tokenType":"JWT-SVID"}}}}`, "audience"},
		{`{"templateID":"base","iam":{"tokens":{"a}b":{"audience":"x","tokenType":"JWT-SVID"}}}}`, "token name"},
		{`{"templateID":"base","iam":{"tokens":{"aws":{"audience":"x","tokenType":"JWT-SVID","extra":1}}}}`, "iam"},
		{`{"templateID":"base","network":{"maskRequestHost":"a b"}}`, "maskRequestHost"},
		{`{"templateID":"base","network":{"maskRequestHost":"evil.com\r\nX: 1"}}`, "maskRequestHost"},
		{`{"templateID":"base","network":{"maskRequestHost":"${HOST}.example.com"}}`, "maskRequestHost"},
		{`{"templateID":"base","network":{"httpsPorts":[0]}}`, "httpsPorts"},
		{`{"templateID":"base","network":{"httpsPorts":[65536]}}`, "httpsPorts"},
		{`{"templateID":"base","network":{"httpsPorts":[49983]}}`, "envd port"},
		{`{"templateID":"base","network":{"httpsPorts":["443"]}}`, ""},
		{`{"templateID":"base","network":{"httpsPorts":443}}`, ""},
	} {
		wantError(t, s.do(t, "POST", "/sandboxes", key, c.body), 400, c.msg)
	}
}
