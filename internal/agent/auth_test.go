package agent

import (
	"encoding/json"
	"net/http"
	"testing"

	"connectrpc.com/connect"

	pb "github.com/sbxdev/sbx/gen/process"
	"github.com/sbxdev/sbx/gen/process/processconnect"
	"github.com/sbxdev/sbx/internal/agentapi"
)

func TestAuth(t *testing.T) {
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			ctx := testContext(t)
			for _, token := range []string{"", "wrong-token"} {
				c := processconnect.NewProcessClient(httpClient(t, proto, token), "http://agent")
				_, err := c.List(ctx, connect.NewRequest(&pb.ListRequest{}))
				wantCode(t, err, connect.CodeUnauthenticated)
				wantCode(t, startErr(t, c, cmd("true")), connect.CodeUnauthenticated)
			}

			// /health needs no token.
			hc := httpClient(t, proto, "")
			res, err := hc.Get("http://agent/health")
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusNoContent {
				t.Fatalf("/health: %s, want 204", res.Status)
			}

			// Plain routes answer with the envd JSON error.
			res, err = hc.Get("http://agent/files?path=/etc/passwd")
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			var body struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			}
			if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
				t.Fatalf("decode 401 body: %v", err)
			}
			if res.StatusCode != http.StatusUnauthorized || body.Code != 401 || body.Message == "" {
				t.Fatalf("got %s %+v, want 401 with a message", res.Status, body)
			}
		})
	}
}

func TestNewRequiresToken(t *testing.T) {
	if _, err := New(agentapi.Config{}, nil); err == nil {
		t.Fatal("New accepted a configuration without an access token")
	}
}

// TestParseConfig parses the form of a configuration the agent has
// always been sent, with defaults applied.
func TestParseConfig(t *testing.T) {
	cfg, err := agentapi.ParseConfig([]byte(`{"accessToken":"t","envVars":{"A":"1"},"sandboxID":"s","templateID":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AccessToken != "t" || cfg.EnvVars["A"] != "1" || cfg.DefaultUser != agentapi.DefaultUser || cfg.SandboxID != "s" || cfg.TemplateID != "x" {
		t.Fatalf("parsed %+v", cfg)
	}
	if _, err := agentapi.ParseConfig([]byte(`{`)); err == nil {
		t.Fatal("bad JSON accepted")
	}
}
