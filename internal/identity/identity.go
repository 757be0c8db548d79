// Package identity is sbx's workload identity issuer: it mints short-lived
// RS256 JWTs (JWT-SVIDs) that name a sandbox and its team, and serves the
// OpenID Connect discovery document and the key set a relying party (a
// user's cloud: AWS STS, GCP workload identity federation, a service of
// their own) verifies them with.
//
// # Overview
//
// A sandbox created with E2B's iam.tokens registers named token
// definitions (an audience and a token type, "JWT-SVID"). Its network
// rules may then carry ${e2b.identity.tokens.NAME} placeholders in header
// values; sbx's egress proxy (internal/network/l7) replaces each, on the
// host and per request, with a fresh token from [Issuer.Mint]. The token
// never enters the sandbox: the sandbox sends the placeholder, the
// upstream receives the token.
//
// The signing key is a 2048-bit RSA key kept in the data directory
// ([KeyFile], PKCS #8 PEM, mode 0600), made on first start. Its key id is
// the RFC 7638 thumbprint of its public key. The issuer URL (the "iss"
// claim) is sbx serve's --oidc-issuer: the URL at which the relying party
// fetches [DiscoveryPath] and [JWKSPath], which sbx serves without
// authentication.
//
// # Claims
//
// iss, sub (spiffe://HOST/team/TEAM/sandbox/ID, HOST the issuer URL's
// host), aud (the definition's audience, as given), iat, nbf, exp
// ([TokenTTL] after iat), jti, and sbx's sandbox_id and team_id.
package identity

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/errhttp"
)

// KeyFile is the signing key's name in the data directory.
const KeyFile = "oidc.key"

// DiscoveryPath and JWKSPath are where the issuer's documents are served,
// under the issuer URL.
const (
	DiscoveryPath = "/.well-known/openid-configuration"
	JWKSPath      = "/.well-known/jwks.json"
)

// TokenType is the only token type sbx mints (E2B's SandboxIamTokenType).
const TokenType = "JWT-SVID"

// TokenTTL is how long a minted token is valid.
const TokenTTL = 15 * time.Minute

// MaxTokens bounds a sandbox's token definitions.
const MaxTokens = 16

// Token is one of a sandbox's workload token definitions (E2B's
// SandboxIamToken).
type Token struct {
	Audience  string `json:"audience"`
	TokenType string `json:"tokenType"`
}

// CheckTokens validates a create request's iam.tokens. Names cannot be
// empty or hold '{', '}' or control characters (they are interpolated into
// the placeholder), the audience must be set, and the type must be
// TokenType. Errors are errdefs.ErrInvalidArgument.
func CheckTokens(tokens map[string]Token) error {
	if len(tokens) > MaxTokens {
		return errdefs.New(errdefs.ErrInvalidArgument, "iam.tokens: at most %d tokens", MaxTokens)
	}
	for name, t := range tokens {
		if name == "" || len(name) > 128 || strings.ContainsAny(name, "{}") || strings.IndexFunc(name, unicode.IsControl) >= 0 {
			return errdefs.New(errdefs.ErrInvalidArgument, "iam.tokens: %q is not a usable token name (1-128 characters, no '{', '}' or control characters)", name)
		}
		if t.Audience == "" || len(t.Audience) > 1024 || strings.IndexFunc(t.Audience, unicode.IsControl) >= 0 {
			return errdefs.New(errdefs.ErrInvalidArgument, "iam.tokens[%q].audience: 1-1024 characters without control characters required", name)
		}
		if t.TokenType != TokenType {
			return errdefs.New(errdefs.ErrInvalidArgument, "iam.tokens[%q].tokenType: %q is not supported (want %q)", name, t.TokenType, TokenType)
		}
	}
	return nil
}

// Subject is what a token names.
type Subject struct {
	SandboxID string
	Team      string
}

// Issuer mints tokens and serves the documents that verify them. It is
// safe for concurrent use.
type Issuer struct {
	at  atomic.Pointer[issuerURL]
	key *rsa.PrivateKey
	kid string
}

type issuerURL struct{ url, host string }

// Open loads dir's signing key, making it when it does not exist, for an
// issuer at issuerURL (see SetURL); "" leaves the URL to a later SetURL,
// and until then Mint fails.
func Open(dir, issuerURL string) (*Issuer, error) {
	key, err := loadKey(filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, err
	}
	i := &Issuer{key: key, kid: thumbprint(&key.PublicKey)}
	if issuerURL != "" {
		if err := i.SetURL(issuerURL); err != nil {
			return nil, err
		}
	}
	return i, nil
}

// CheckURL validates an issuer URL: absolute http or https, with a host,
// without query, fragment or credentials.
func CheckURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("oidc issuer %q: want an http(s) URL with a host and no query, fragment or credentials", s)
	}
	return nil
}

// SetURL sets the issuer URL (the "iss" claim, and where the documents
// are served); a trailing slash is dropped.
func (i *Issuer) SetURL(s string) error {
	if err := CheckURL(s); err != nil {
		return err
	}
	u, _ := url.Parse(s)
	i.at.Store(&issuerURL{url: strings.TrimSuffix(s, "/"), host: u.Hostname()})
	return nil
}

func (i *Issuer) where() issuerURL {
	if p := i.at.Load(); p != nil {
		return *p
	}
	return issuerURL{}
}

func loadKey(path string) (*rsa.PrivateKey, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, fmt.Errorf("oidc key: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("oidc key: %w", err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("oidc key: %w", err)
		}
		err = pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
			return nil, fmt.Errorf("oidc key: %w", err)
		}
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("oidc key: %w", err)
	}
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("oidc key %s: mode %o lets others read it; chmod 600 it", path, st.Mode().Perm())
	}
	blk, _ := pem.Decode(raw)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("oidc key %s: no PKCS #8 PEM private key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("oidc key %s: %w", path, err)
	}
	key, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("oidc key %s: not an RSA key", path)
	}
	return key, nil
}

// thumbprint is the RFC 7638 JWK thumbprint of k, base64url.
func thumbprint(k *rsa.PublicKey) string {
	j := fmt.Sprintf(`{"e":"%s","kty":"RSA","n":"%s"}`, b64(big.NewInt(int64(k.E)).Bytes()), b64(k.N.Bytes()))
	sum := sha256.Sum256([]byte(j))
	return b64(sum[:])
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// URL returns the issuer URL.
func (i *Issuer) URL() string { return i.where().url }

// KeyID returns the signing key's id (the "kid" of tokens and the JWKS).
func (i *Issuer) KeyID() string { return i.kid }

// SPIFFEID returns the subject of s's tokens.
func (i *Issuer) SPIFFEID(s Subject) string {
	team := s.Team
	if team == "" {
		team = "default"
	}
	return "spiffe://" + i.where().host + "/team/" + url.PathEscape(team) + "/sandbox/" + url.PathEscape(s.SandboxID)
}

// Mint returns a new token for s with audience aud, valid for TokenTTL.
func (i *Issuer) Mint(s Subject, aud string, now time.Time) (string, error) {
	if s.SandboxID == "" || aud == "" {
		return "", errors.New("identity: a token needs a sandbox and an audience")
	}
	iss := i.where().url
	if iss == "" {
		return "", errors.New("identity: the issuer has no URL yet")
	}
	team := s.Team
	if team == "" {
		team = "default"
	}
	var jti [16]byte
	rand.Read(jti[:])
	claims := map[string]any{
		"iss":        iss,
		"sub":        i.SPIFFEID(s),
		"aud":        aud,
		"iat":        now.Unix(),
		"nbf":        now.Unix(),
		"exp":        now.Add(TokenTTL).Unix(),
		"jti":        b64(jti[:]),
		"sandbox_id": s.SandboxID,
		"team_id":    team,
	}
	hdr, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT", "kid": i.kid})
	body, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	signing := b64(hdr) + "." + b64(body)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, i.key, crypto.SHA256, sum[:])
	if err != nil {
		return "", fmt.Errorf("identity: sign: %w", err)
	}
	return signing + "." + b64(sig), nil
}

// JWKS returns the JSON Web Key Set of the issuer's public key.
func (i *Issuer) JWKS() []byte {
	k := &i.key.PublicKey
	b, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "use": "sig", "alg": "RS256", "kid": i.kid,
		"n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes()),
	}}})
	return b
}

// Discovery returns the OpenID Connect discovery document.
func (i *Issuer) Discovery() []byte {
	iss := i.URL()
	b, _ := json.Marshal(map[string]any{
		"issuer":                                iss,
		"jwks_uri":                              iss + JWKSPath,
		"response_types_supported":              []string{"id_token"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"claims_supported":                      []string{"iss", "sub", "aud", "iat", "nbf", "exp", "jti", "sandbox_id", "team_id"},
	})
	return b
}

// Handler serves DiscoveryPath and JWKSPath (GET and HEAD, no
// authentication); anything else is 404.
func (i *Issuer) Handler() http.Handler {
	jwks := i.JWKS()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body []byte
		switch r.URL.Path {
		case DiscoveryPath:
			body = i.Discovery()
		case JWKSPath:
			body = jwks
		default:
			errhttp.WriteMessage(w, http.StatusNotFound, "no such path")
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			errhttp.WriteMessage(w, http.StatusMethodNotAllowed, "method not allowed")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Write(body)
	})
}
