package e2e

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/harness"
)

// testIssuer is the --oidc-issuer of the identity tests.
const testIssuer = "https://issuer.sbx.test"

// relyingParty is a service in the test internet that trusts sbx as an
// OIDC issuer: it verifies each request's bearer token against the keys
// sbx serves, as a cloud's token exchange does.
type relyingParty struct {
	pub *rsa.PublicKey
	kid string

	mu   sync.Mutex
	seen []rpSeen
}

// rpSeen is one request the relying party received.
type rpSeen struct {
	Auth   string         // the Authorization header as received
	Claims map[string]any // the verified token's claims; nil if it failed
	Err    string
}

// identityServer starts sbx with --oidc-issuer and a relying party on
// https://idp.test:8444 (a certificate of a CA given to --egress-ca-file)
// that fetched sbx's discovery document and keys over loopback first.
func identityServer(t *testing.T) (*harness.Server, *relyingParty) {
	t.Helper()
	ca := harness.NewCA(t, "idp.test")
	srv, ti := netServer(t, "--egress-ca-file", ca.CAFile, "--oidc-issuer", testIssuer)
	fetch := func(path string) []byte {
		t.Helper()
		resp, err := http.Get(srv.URL + path) // no API key: the documents are public
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Fatalf("GET %s: %s %s", path, resp.Status, b)
		}
		return b
	}
	var disc struct {
		Issuer  string   `json:"issuer"`
		JWKSURI string   `json:"jwks_uri"`
		Algs    []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := json.Unmarshal(fetch("/.well-known/openid-configuration"), &disc); err != nil || disc.Issuer != testIssuer || disc.JWKSURI != testIssuer+"/.well-known/jwks.json" || len(disc.Algs) != 1 || disc.Algs[0] != "RS256" {
		t.Fatalf("discovery document: %+v %v", disc, err)
	}
	var set struct {
		Keys []struct{ Kty, Use, Alg, Kid, N, E string }
	}
	if err := json.Unmarshal(fetch("/.well-known/jwks.json"), &set); err != nil || len(set.Keys) != 1 || set.Keys[0].Kty != "RSA" || set.Keys[0].Alg != "RS256" {
		t.Fatalf("jwks: %+v %v", set, err)
	}
	k := set.Keys[0]
	n, _ := base64.RawURLEncoding.DecodeString(k.N)
	e, _ := base64.RawURLEncoding.DecodeString(k.E)
	rp := &relyingParty{pub: &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}, kid: k.Kid}

	var ln net.Listener
	inNS(t, "/run/netns/"+ti.NS, func() error {
		var err error
		ln, err = net.Listen("tcp4", ":8444")
		return err
	})
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := rpSeen{Auth: r.Header.Get("Authorization")}
		claims, err := rp.verify(strings.TrimPrefix(s.Auth, "Bearer "))
		if err != nil {
			s.Err = err.Error()
			fmt.Fprintf(w, "REJECTED %v\n", err)
		} else {
			s.Claims = claims
			fmt.Fprintf(w, "VERIFIED sub=%v aud=%v\n", claims["sub"], claims["aud"])
		}
		rp.mu.Lock()
		rp.seen = append(rp.seen, s)
		rp.mu.Unlock()
	})}
	go hs.ServeTLS(ln, ca.CertFile, ca.KeyFile)
	t.Cleanup(func() { hs.Close() })
	return srv, rp
}

// verify checks tok as a relying party does: RS256 under the served key,
// issuer, expiry.
func (rp *relyingParty) verify(tok string) (map[string]any, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("not a JWT")
	}
	var hdr map[string]string
	hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
	if err := json.Unmarshal(hb, &hdr); err != nil || hdr["alg"] != "RS256" || hdr["kid"] != rp.kid {
		return nil, fmt.Errorf("header %s", hb)
	}
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(rp.pub, crypto.SHA256, sum[:], sig); err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	cb, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c map[string]any
	if err := json.Unmarshal(cb, &c); err != nil {
		return nil, err
	}
	now := float64(time.Now().Unix())
	if c["iss"] != testIssuer {
		return nil, fmt.Errorf("issuer %v", c["iss"])
	}
	if exp, _ := c["exp"].(float64); exp < now {
		return nil, fmt.Errorf("expired")
	}
	if nbf, _ := c["nbf"].(float64); nbf > now+5 {
		return nil, fmt.Errorf("not yet valid")
	}
	return c, nil
}

func (rp *relyingParty) take() []rpSeen {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	out := rp.seen
	rp.seen = nil
	return out
}

// identityRule is a network policy whose rule for idp.test sends token
// name as a bearer token.
func identityRule(name string) *client.NetworkPolicy {
	return &client.NetworkPolicy{Rules: map[string][]client.NetworkRule{
		"idp.test": {{Transform: &client.NetworkTransform{Headers: map[string]string{"Authorization": "Bearer " + client.IdentityPlaceholder(name)}}}},
	}}
}

var awsToken = map[string]client.IAMToken{"aws": {Audience: "sts.amazonaws.com", TokenType: "JWT-SVID"}}

// TestEgressIdentity: a sandbox created with an iam token and a rule
// naming it sends the placeholder; the relying party receives a fresh
// JWT-SVID naming the sandbox and its team, signed by the key sbx
// serves, with the audience asked for. The token is nowhere in the
// sandbox. A restart of sbx and a fork keep the tokens.
func TestEgressIdentity(t *testing.T) {
	srv, rp := identityServer(t)
	ctx := ctxFor(t, 4*time.Minute)
	sb, err := srv.Client.CreateSandbox(ctx, client.CreateOptions{IAMTokens: awsToken, Network: identityRule("aws")})
	if err != nil {
		t.Fatal(err)
	}
	team := teamID(t, srv)
	want := "VERIFIED sub=spiffe://issuer.sbx.test/team/" + team + "/sandbox/" + sb.ID + " aud=sts.amazonaws.com"
	var toks []string
	for i := 0; i < 2; i++ {
		res := mustRun(t, ctx, sb, `curl -sS -m 10 https://idp.test:8444/ 2>&1; echo " exit=$?"`, nil)
		if !strings.Contains(res.Stdout, want) || !strings.Contains(res.Stdout, "exit=0") {
			t.Fatalf("request %d through the egress: %q; want %q", i, res.Stdout, want)
		}
		seen := rp.take()
		if len(seen) != 1 || seen[0].Claims == nil {
			t.Fatalf("the relying party saw %+v", seen)
		}
		c := seen[0].Claims
		if c["sandbox_id"] != sb.ID || c["team_id"] != team || c["exp"].(float64)-c["iat"].(float64) != 900 {
			t.Fatalf("claims %v", c)
		}
		toks = append(toks, strings.TrimPrefix(seen[0].Auth, "Bearer "))
	}
	if toks[0] == toks[1] {
		t.Fatal("two requests got the same token; want one minted per request")
	}
	// The sandbox sent the placeholder and saw no token: not in its
	// files, environments or memory.
	res := mustRun(t, ctx, sb, `curl -sS -v -m 10 https://idp.test:8444/ 2>&1 | grep -i '^> authorization' || echo "no header sent"`, nil)
	if strings.TrimSpace(res.Stdout) != "no header sent" {
		t.Fatalf("curl -v in the sandbox shows %q", res.Stdout)
	}
	last := strings.TrimPrefix(rp.take()[0].Auth, "Bearer ")
	sig := last[strings.LastIndex(last, ".")+1:]
	if hits := scanSandboxMemory(t, srv, sb.ID, sig); len(hits) > 0 {
		t.Fatalf("the token is in the sandbox's memory: %v", hits)
	}
	res = mustRun(t, ctx, sb, `v=$(echo `+reverse(sig)+` | rev); grep -rl --exclude-dir=proc --exclude-dir=sys -e "$v" / 2>/dev/null | head; cat /proc/*/environ 2>/dev/null | tr '\0' '\n' | grep -c -e "$v"; echo done`, nil)
	if strings.TrimSpace(res.Stdout) != "0\ndone" {
		t.Fatalf("grep for the token in the sandbox: %q", res.Stdout)
	}
	// A restart keeps the sandbox's tokens and the signing key: the
	// relying party's keys, fetched before, still verify.
	srv.Restart()
	mint := func(sb *client.Sandbox, when string) {
		t.Helper()
		res := mustRun(t, ctx, sb, `curl -sS -m 10 https://idp.test:8444/ 2>&1`, nil)
		want := "VERIFIED sub=spiffe://issuer.sbx.test/team/" + team + "/sandbox/" + sb.ID + " aud=sts.amazonaws.com"
		if seen := rp.take(); !strings.Contains(res.Stdout, want) || len(seen) != 1 || seen[0].Claims == nil {
			t.Fatalf("%s: %q, the relying party saw %+v", when, res.Stdout, seen)
		}
	}
	mint(sb, "after a restart")
	// A fork registers the same tokens; its own name its own sandbox.
	forks, err := sb.Fork(ctx, 1, time.Minute)
	if err != nil || len(forks) != 1 || forks[0].Err != nil {
		t.Fatalf("fork: %v %+v", err, forks)
	}
	mint(forks[0].Sandbox, "in the fork")
}

// teamID returns the team of srv's key (GET /teams).
func teamID(t *testing.T, srv *harness.Server) string {
	t.Helper()
	req, _ := http.NewRequest("GET", srv.URL+"/teams", nil)
	req.Header.Set("X-API-Key", srv.APIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var teams []struct {
		TeamID string `json:"teamID"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&teams); err != nil || len(teams) != 1 || teams[0].TeamID == "" {
		t.Fatalf("GET /teams: %+v %v", teams, err)
	}
	return teams[0].TeamID
}

// TestEscapeIdentity: a sandbox cannot read sbx's signing key nor come by
// a token that names another sandbox. The placeholder sent by a sandbox
// that registered no token goes out as written; a sandbox's own token
// names it alone, and a live update cannot name a token it did not
// register.
func TestEscapeIdentity(t *testing.T) {
	srv, rp := identityServer(t)
	ctx := ctxFor(t, 4*time.Minute)
	keyPEM, err := os.ReadFile(filepath.Join(srv.DataDir, "oidc.key"))
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(filepath.Join(srv.DataDir, "oidc.key")); st.Mode().Perm() != 0o600 {
		t.Fatalf("oidc.key has mode %o; want 600", st.Mode().Perm())
	}
	withToken, err := srv.Client.CreateSandbox(ctx, client.CreateOptions{IAMTokens: awsToken, Network: identityRule("aws")})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := srv.Client.CreateSandbox(ctx, client.CreateOptions{Network: &client.NetworkPolicy{AllowOut: []string{"idp.test"}}})
	if err != nil {
		t.Fatal(err)
	}
	// Another sandbox sends the placeholder itself: nothing fills it in.
	// (-k: without rules it has no egress CA; the relying party's
	// certificate is not one it trusts.)
	res := mustRun(t, ctx, plain, `curl -sSk -m 10 -H 'Authorization: Bearer ${e2b.identity.tokens.aws}' https://idp.test:8444/ 2>&1; echo " exit=$?"`, nil)
	if !strings.Contains(res.Stdout, "REJECTED") {
		t.Fatalf("a sandbox without tokens: %q; want the relying party's refusal", res.Stdout)
	}
	if seen := rp.take(); len(seen) != 1 || seen[0].Auth != "Bearer ${e2b.identity.tokens.aws}" || seen[0].Claims != nil {
		t.Fatalf("the relying party saw %+v; want the placeholder as written", seen)
	}
	// Nor by a live update naming a token it did not register.
	if err := plain.UpdateNetwork(ctx, *identityRule("aws")); !errors.Is(err, client.ErrInvalidArgument) {
		t.Fatalf("a live update naming an unregistered token: %v; want 400", err)
	}
	// The sandbox with a token gets one naming itself only.
	res = mustRun(t, ctx, withToken, `curl -sS -m 10 https://idp.test:8444/ 2>&1`, nil)
	if !strings.Contains(res.Stdout, "sandbox/"+withToken.ID+" ") || strings.Contains(res.Stdout, plain.ID) {
		t.Fatalf("the token's subject: %q", res.Stdout)
	}
	rp.take()
	// The signing key is nowhere a sandbox can read: not at its host
	// path, not anywhere in its filesystem.
	line := strings.Split(strings.TrimSpace(string(keyPEM)), "\n")[2]
	for _, sb := range []*client.Sandbox{withToken, plain} {
		res := mustRun(t, ctx, sb, `cat `+filepath.Join(srv.DataDir, "oidc.key")+` 2>&1 | head -c 200; v=$(echo '`+reverse(line)+`' | rev); grep -rl --exclude-dir=proc --exclude-dir=sys -F -e "$v" / 2>/dev/null | head; echo done`, &client.RunOptions{User: "root"})
		if strings.Contains(res.Stdout, "PRIVATE KEY") || !strings.HasSuffix(strings.TrimSpace(res.Stdout), "No such file or directory\ndone") {
			t.Fatalf("sandbox %s reading the signing key: %q", sb.ID, res.Stdout)
		}
	}
	assertHealthy(t, ctx, srv, withToken)
}
