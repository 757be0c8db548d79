package l7

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
)

func TestParseRules(t *testing.T) {
	r, err := ParseRules(map[string][]RuleSpec{
		"API.example.com": {{Transform: &TransformSpec{Headers: map[string]string{"authorization": "Bearer ${e2b.secrets.key}"}}}},
		"*.example.com":   {{Transform: &TransformSpec{Headers: map[string]string{"X-Wild": "1"}}}},
		"*.b.example.com": {{Transform: &TransformSpec{Headers: map[string]string{"X-Deeper": "${e2b.secrets.other}"}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]string{"api.example.com": "Authorization", "x.example.com": "X-Wild", "a.b.example.com": "X-Deeper", "example.com": "", "other.com": ""} {
		h, ok := r.Match(host)
		if want == "" {
			if ok {
				t.Errorf("Match(%s) = %v; want none (a wildcard is not its apex)", host, h)
			}
			continue
		}
		if _, has := h[want]; !ok || !has || len(h) != 1 {
			t.Errorf("Match(%s) = %v; want only %s (exact first, then the longest wildcard, not merged)", host, h, want)
		}
	}
	if got := strings.Join(r.Secrets(), ","); got != "key,other" {
		t.Errorf("Secrets = %s", got)
	}
	tr, err := ParseRules(map[string][]RuleSpec{"a.com": {{Transform: &TransformSpec{Headers: map[string]string{"Authorization": "Bearer ${e2b.identity.tokens.aws}", "X": "${e2b.identity.tokens.gcp}${e2b.secrets.k}"}}}}})
	if err != nil || strings.Join(tr.Tokens(), ",") != "aws,gcp" || strings.Join(tr.Secrets(), ",") != "k" {
		t.Errorf("identity placeholders: tokens %v, secrets %v, %v", tr.Tokens(), tr.Secrets(), err)
	}
	for _, bad := range []map[string][]RuleSpec{
		{"*": {}},
		{"a..b": {}},
		{"bad host": {}},
		{"a.com": {{Transform: &TransformSpec{Headers: map[string]string{"Bad Name": "x"}}}}},
		{"a.com": {{Transform: &TransformSpec{Headers: map[string]string{"Host": "evil.com"}}}}},
		{"a.com": {{Transform: &TransformSpec{Headers: map[string]string{"Content-Length": "0"}}}}},
		{"a.com": {{Transform: &TransformSpec{Headers: map[string]string{"X": "a\r\nInjected: 1"}}}}},
		{"a.com": {{Transform: &TransformSpec{Headers: map[string]string{"X": "${e2b.identity.other.aws}"}}}}},
		{"a.com": {{Transform: &TransformSpec{Headers: map[string]string{"X": "${e2b.identity.tokens.}"}}}}},
		{"a.com": {{Transform: &TransformSpec{Headers: map[string]string{"X": "${e2b.secrets.}"}}}}},
	} {
		if _, err := ParseRules(bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ParseRules(%v) = %v; want invalid argument", bad, err)
		}
	}
}

type secrets map[string]string

func (s secrets) Secret(_ context.Context, id, name string) (string, error) {
	if id != "sb1" {
		return "", errdefs.New(errdefs.ErrNotFound, "no sandbox %s", id)
	}
	v, ok := s[name]
	if !ok {
		return "", errdefs.New(errdefs.ErrNotFound, "secret %q not found", name)
	}
	return v, nil
}

// upstream serves HTTPS for name with a certificate of ca, answering each
// request with the Authorization and X-Echo it received.
func upstream(t *testing.T, ca *CA, name string) string {
	t.Helper()
	leaf, err := ca.leaf(name)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{*leaf}})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "auth="+r.Header.Get("Authorization")+" echo="+r.Header.Get("X-Echo")+" host="+r.Host)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// listen serves one flow through p on a loopback listener, to addr.
func listen(t *testing.T, p *Proxy, sandboxCA *CA, addr, name string, headers map[string]string) (string, chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		head := make([]byte, 5)
		io.ReadFull(c, head)
		done <- p.Serve(context.Background(), Flow{Sandbox: "sb1", Client: c, Head: head, Name: name, Headers: headers, CA: sandboxCA,
			Dial: func(ctx context.Context) (net.Conn, error) { var d net.Dialer; return d.DialContext(ctx, "tcp", addr) }})
	}()
	return ln.Addr().String(), done
}

func dialSandbox(t *testing.T, sandboxCA *CA, addr, name string) *tls.Conn {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(sandboxCA.CertPEM())
	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: name, RootCAs: pool})
	if err != nil {
		t.Fatalf("the sandbox's handshake with the proxy: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// through runs one flow: the sandbox's TLS client (trusting sandboxCA)
// sends one request through p to addr.
func through(t *testing.T, p *Proxy, sandboxCA *CA, addr, name string, headers map[string]string, hdr http.Header) (string, int) {
	t.Helper()
	paddr, done := listen(t, p, sandboxCA, addr, name, headers)
	c := dialSandbox(t, sandboxCA, paddr, name)
	req, _ := http.NewRequest("POST", "https://"+name+"/", strings.NewReader("a body"))
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Close = true
	if err := req.Write(c); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	<-done
	return string(body), resp.StatusCode
}

// TestServeExpectContinue: a client that waits for 100 Continue before
// its body (as curl does) gets it from the proxy, and the body goes on.
func TestServeExpectContinue(t *testing.T) {
	upCA, _ := NewCA("upstream")
	sbCA, _ := NewCA("sb1")
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(upCA.CertPEM())
	p := New(roots, secrets{"key": "sk"}, slog.New(slog.DiscardHandler))
	paddr, done := listen(t, p, sbCA, upstream(t, upCA, "api.test"), "api.test", map[string]string{"X-Echo": "${e2b.secrets.key}"})
	c := dialSandbox(t, sbCA, paddr, "api.test")
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: api.test\r\nExpect: 100-continue\r\nContent-Length: 6\r\nConnection: close\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusContinue {
		t.Fatalf("before the body: %v %v; want 100 Continue", resp, err)
	}
	io.WriteString(c, "a body")
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(body), "echo=sk") {
		t.Fatalf("after the body: %d %q", resp.StatusCode, body)
	}
	<-done
}

func TestServeTLS(t *testing.T) {
	upCA, err := NewCA("upstream")
	if err != nil {
		t.Fatal(err)
	}
	sbCA, err := NewCA("sb1")
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(upCA.CertPEM())
	p := New(roots, secrets{"key": "sk-REAL", "other": "OTHER"}, slog.New(slog.DiscardHandler))
	addr := upstream(t, upCA, "api.test")
	rule := map[string]string{"Authorization": "Bearer ${e2b.secrets.key}"}

	body, code := through(t, p, sbCA, addr, "api.test", rule, http.Header{"Authorization": {"Bearer ${e2b.secrets.key}"}, "X-Echo": {"${e2b.secrets.key}/${e2b.secrets.other}"}})
	if code != 200 || body != "auth=Bearer sk-REAL echo=sk-REAL/${e2b.secrets.other} host=api.test" {
		t.Fatalf("through the proxy: %d %q; want the rule's header filled in, and in the sandbox's own headers only the rule's secrets", code, body)
	}

	// An upstream the host does not trust is refused, whatever the
	// sandbox trusts.
	p2 := New(x509.NewCertPool(), secrets{"key": "sk-REAL"}, slog.New(slog.DiscardHandler))
	body, code = through(t, p2, sbCA, addr, "api.test", rule, nil)
	if code != http.StatusBadGateway || !strings.Contains(body, "TLS to api.test failed") || strings.Contains(body, "sk-REAL") {
		t.Fatalf("untrusted upstream: %d %q; want 502", code, body)
	}
	// A certificate for another name is refused.
	body, code = through(t, p, sbCA, upstream(t, upCA, "other.test"), "api.test", rule, nil)
	if code != http.StatusBadGateway {
		t.Fatalf("upstream with another name's certificate: %d %q; want 502", code, body)
	}
	// A rule naming a secret that is gone: nothing is sent upstream.
	body, code = through(t, p, sbCA, addr, "api.test", map[string]string{"Authorization": "${e2b.secrets.gone}"}, nil)
	if code != http.StatusBadGateway || !strings.Contains(body, `secret "gone" cannot be filled in`) {
		t.Fatalf("missing secret: %d %q; want 502", code, body)
	}
}

// tokenSecrets also mints identity tokens: "tok-N" for name "aws" of sb1,
// a new one per call.
type tokenSecrets struct {
	secrets
	n *int
}

func (s tokenSecrets) Token(_ context.Context, id, name string) (string, error) {
	if id != "sb1" || name != "aws" {
		return "", errdefs.New(errdefs.ErrNotFound, "sandbox %s registered no token %q", id, name)
	}
	*s.n++
	return fmt.Sprintf("tok-%d", *s.n), nil
}

// TestServeTokens: identity placeholders are filled from Tokens, per
// request; an unregistered name and a Secrets without Tokens get 502 and
// send nothing.
func TestServeTokens(t *testing.T) {
	upCA, _ := NewCA("upstream")
	sbCA, _ := NewCA("sb1")
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(upCA.CertPEM())
	n := 0
	p := New(roots, tokenSecrets{secrets{"key": "sk"}, &n}, slog.New(slog.DiscardHandler))
	addr := upstream(t, upCA, "api.test")
	rule := map[string]string{"Authorization": "Bearer ${e2b.identity.tokens.aws}", "X-Echo": "${e2b.secrets.key}"}
	for want := 1; want <= 2; want++ {
		body, code := through(t, p, sbCA, addr, "api.test", rule, nil)
		if code != 200 || body != fmt.Sprintf("auth=Bearer tok-%d echo=sk host=api.test", want) {
			t.Fatalf("request %d: %d %q; want a fresh token and the secret", want, code, body)
		}
	}
	// The sandbox's own placeholder of a token the rule names is filled
	// too (one token per request, shared); of another, not.
	body, code := through(t, p, sbCA, addr, "api.test", map[string]string{"X-Other": "${e2b.identity.tokens.aws}"}, http.Header{"Authorization": {"${e2b.identity.tokens.aws}"}, "X-Echo": {"${e2b.identity.tokens.gcp}"}})
	if code != 200 || body != "auth=tok-3 echo=${e2b.identity.tokens.gcp} host=api.test" || n != 3 {
		t.Fatalf("the sandbox's own placeholders: %d %q", code, body)
	}
	body, code = through(t, p, sbCA, addr, "api.test", map[string]string{"Authorization": "${e2b.identity.tokens.gcp}"}, nil)
	if code != http.StatusBadGateway || !strings.Contains(body, `identity token "gcp" cannot be filled in`) {
		t.Fatalf("an unregistered token: %d %q; want 502", code, body)
	}
	noTokens := New(roots, secrets{"key": "sk"}, slog.New(slog.DiscardHandler))
	body, code = through(t, noTokens, sbCA, addr, "api.test", rule, nil)
	if code != http.StatusBadGateway || !strings.Contains(body, `identity token "aws" cannot be filled in`) {
		t.Fatalf("a proxy without Tokens: %d %q; want 502", code, body)
	}
}

func TestCAMarshal(t *testing.T) {
	ca, err := NewCA("x")
	if err != nil {
		t.Fatal(err)
	}
	b, err := ca.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := LoadCA(b)
	if err != nil || string(back.CertPEM()) != string(ca.CertPEM()) || !back.key.Equal(ca.key) {
		t.Fatalf("LoadCA: %v", err)
	}
	if strings.Contains(string(ca.CertPEM()), "PRIVATE KEY") {
		t.Fatal("the certificate for the sandbox holds the key")
	}
}
