package identity

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// verify checks tok's RS256 signature against jwks and returns its claims,
// as a relying party does.
func verify(t *testing.T, jwks []byte, tok string) map[string]any {
	t.Helper()
	var set struct {
		Keys []struct{ Kty, Kid, Alg, N, E string }
	}
	if err := json.Unmarshal(jwks, &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("jwks %s: %v", jwks, err)
	}
	k := set.Keys[0]
	n, _ := base64.RawURLEncoding.DecodeString(k.N)
	e, _ := base64.RawURLEncoding.DecodeString(k.E)
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q is not a JWS", tok)
	}
	var hdr map[string]string
	hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
	if err := json.Unmarshal(hb, &hdr); err != nil || hdr["alg"] != "RS256" || hdr["kid"] != k.Kid {
		t.Fatalf("header %s (kid %s): %v", hb, k.Kid, err)
	}
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
		t.Fatalf("signature: %v", err)
	}
	var claims map[string]any
	cb, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if err := json.Unmarshal(cb, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

func TestIssuer(t *testing.T) {
	dir := t.TempDir()
	iss, err := Open(dir, "https://sbx.example.com/")
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v; want mode 600", st, err)
	}
	now := time.Now()
	tok, err := iss.Mint(Subject{SandboxID: "sb1", Team: "acme"}, "sts.amazonaws.com", now)
	if err != nil {
		t.Fatal(err)
	}
	c := verify(t, iss.JWKS(), tok)
	want := map[string]any{"iss": "https://sbx.example.com", "sub": "spiffe://sbx.example.com/team/acme/sandbox/sb1",
		"aud": "sts.amazonaws.com", "sandbox_id": "sb1", "team_id": "acme",
		"iat": float64(now.Unix()), "exp": float64(now.Add(TokenTTL).Unix())}
	for k, v := range want {
		if c[k] != v {
			t.Errorf("claim %s = %v; want %v", k, c[k], v)
		}
	}
	tok2, _ := iss.Mint(Subject{SandboxID: "sb1", Team: "acme"}, "sts.amazonaws.com", now)
	if c2 := verify(t, iss.JWKS(), tok2); c2["jti"] == c["jti"] {
		t.Error("two tokens share a jti")
	}

	// The same key after a restart; another data directory, another key.
	again, err := Open(dir, "https://sbx.example.com")
	if err != nil || again.KeyID() != iss.KeyID() {
		t.Fatalf("reopened: %v, kid %s vs %s", err, again.KeyID(), iss.KeyID())
	}
	other, _ := Open(t.TempDir(), "https://sbx.example.com")
	if other.KeyID() == iss.KeyID() {
		t.Fatal("two data directories share a key")
	}
	// A key others may read is refused.
	os.Chmod(filepath.Join(dir, KeyFile), 0o644)
	if _, err := Open(dir, "https://sbx.example.com"); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("Open with a 0644 key = %v", err)
	}
	for _, bad := range []string{"sbx.example.com", "ftp://x", "https://x?a=1", "https://u:p@x", "https://"} {
		if _, err := Open(t.TempDir(), bad); err == nil {
			t.Errorf("Open(%q) succeeded", bad)
		}
	}
	// Without a URL yet, nothing is minted.
	later, err := Open(t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := later.Mint(Subject{SandboxID: "sb1"}, "a", now); err == nil {
		t.Fatal("minted without an issuer URL")
	}
	later.SetURL("http://localhost:3000")
	if tok, err := later.Mint(Subject{SandboxID: "sb1"}, "a", now); err != nil || verify(t, later.JWKS(), tok)["sub"] != "spiffe://localhost/team/default/sandbox/sb1" {
		t.Fatalf("after SetURL: %v", err)
	}

	// The documents, as a relying party fetches them.
	srv := httptest.NewServer(iss.Handler())
	defer srv.Close()
	res, err := http.Get(srv.URL + DiscoveryPath)
	if err != nil {
		t.Fatal(err)
	}
	var disc map[string]any
	json.NewDecoder(res.Body).Decode(&disc)
	res.Body.Close()
	if disc["issuer"] != "https://sbx.example.com" || disc["jwks_uri"] != "https://sbx.example.com"+JWKSPath {
		t.Fatalf("discovery: %v", disc)
	}
	for path, code := range map[string]int{JWKSPath: 200, "/.well-known/other": 404} {
		res, err := http.Get(srv.URL + path)
		if err != nil || res.StatusCode != code {
			t.Fatalf("GET %s: %v %v", path, res, err)
		}
		res.Body.Close()
	}
	res, _ = http.Post(srv.URL+JWKSPath, "application/json", nil)
	if res.StatusCode != 405 {
		t.Fatalf("POST jwks: %d", res.StatusCode)
	}
}

func TestCheckTokens(t *testing.T) {
	if err := CheckTokens(map[string]Token{"aws": {Audience: "sts.amazonaws.com", TokenType: "JWT-SVID"}}); err != nil {
		t.Fatal(err)
	}
	many := map[string]Token{}
	for i := 0; i <= MaxTokens; i++ {
		many[string(rune('a'+i))] = Token{Audience: "a", TokenType: TokenType}
	}
	for _, bad := range []map[string]Token{
		{"": {Audience: "a", TokenType: TokenType}},
		{"a}b": {Audience: "a", TokenType: TokenType}},
		{"a{": {Audience: "a", TokenType: TokenType}},
		{"a\nb": {Audience: "a", TokenType: TokenType}},
		{"aws": {Audience: "", TokenType: TokenType}},
		{"aws": {Audience: "a", TokenType: "OIDC"}},
		many,
	} {
		if err := CheckTokens(bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("CheckTokens(%v) = %v", bad, err)
		}
	}
}

// BenchmarkMint is the cost of one token, which the egress pays per
// request of a rule that names one.
func BenchmarkMint(b *testing.B) {
	iss, err := Open(b.TempDir(), "https://sbx.example.com")
	if err != nil {
		b.Fatal(err)
	}
	s := Subject{SandboxID: "sb1", Team: "acme"}
	now := time.Now()
	for b.Loop() {
		if _, err := iss.Mint(s, "sts.amazonaws.com", now); err != nil {
			b.Fatal(err)
		}
	}
}
