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
	"sync"
	"time"
)

// Secrets gives the proxy secret values. Secret returns the value of the
// secret named name of sandbox id's team; an unknown name is an error
// wrapping errdefs.ErrNotFound. It is called from many goroutines at
// once.
type Secrets interface {
	Secret(ctx context.Context, sandboxID, name string) (string, error)
}

// Tokens mints workload identity tokens. Token returns a new token of
// sandbox id's workload identity token named name (one its create
// registered, E2B's iam.tokens); an unregistered name is an error. A
// [Secrets] that also implements Tokens fills identity placeholders
// (${e2b.identity.tokens.NAME}); without one, requests that need a token
// are refused. It is called from many goroutines at once.
type Tokens interface {
	Token(ctx context.Context, sandboxID, name string) (string, error)
}

// Proxy relays intercepted HTTP and HTTPS connections. It is safe for
// concurrent use.
type Proxy struct {
	roots   *x509.CertPool
	secrets Secrets
	log     *slog.Logger
}

// New returns a proxy that verifies upstreams against roots (nil: the
// host's trust store) and fills placeholders from secrets (nil: none can
// be filled; requests that need one are refused).
func New(roots *x509.CertPool, secrets Secrets, log *slog.Logger) *Proxy {
	return &Proxy{roots: roots, secrets: secrets, log: log}
}

// Roots returns the host's trust store plus the PEM certificates in
// extra (--egress-ca-file).
func Roots(extra []byte) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if len(extra) > 0 && !pool.AppendCertsFromPEM(extra) {
		return nil, errors.New("no PEM certificate in the egress CA file")
	}
	return pool, nil
}

// Flow is one connection of a sandbox that a rule matched.
type Flow struct {
	// Sandbox is the sandbox's id (for its team's secrets).
	Sandbox string
	// Client is the sandbox's connection; Head the bytes already read
	// from it (a TLS ClientHello or the start of an HTTP request).
	Client net.Conn
	Head   []byte
	// Name is the TLS SNI or HTTP Host the connection named; Headers the
	// matching rule's.
	Name    string
	Headers map[string]string
	// CA issues the certificate shown to the sandbox for Name.
	CA *CA
	// Dial opens the connection to the original destination (directly
	// or through the sandbox's SOCKS5 proxy), already allowed.
	Dial func(ctx context.Context) (net.Conn, error)
}

// IsTLS reports whether head starts a TLS handshake.
func IsTLS(head []byte) bool { return len(head) > 0 && head[0] == 0x16 }

// Serve relays f until either side is done. It returns when the
// connection is over; f.Client is closed by the caller.
func (p *Proxy) Serve(ctx context.Context, f Flow) error {
	var client net.Conn = &prefixConn{Conn: f.Client, head: f.Head}
	tlsMode := IsTLS(f.Head)
	if tlsMode {
		if f.CA == nil {
			return errors.New("no CA for this sandbox")
		}
		leaf, err := f.CA.leaf(f.Name)
		if err != nil {
			return err
		}
		tc := tls.Server(client, &tls.Config{
			Certificates: []tls.Certificate{*leaf},
			NextProtos:   []string{"http/1.1"},
			MinVersion:   tls.VersionTLS12,
		})
		hctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err = tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			return fmt.Errorf("handshake with the sandbox: %w", err)
		}
		client = tc
	}
	cbr := bufio.NewReader(client)
	var up net.Conn
	var ubr *bufio.Reader
	defer func() {
		if up != nil {
			up.Close()
		}
	}()
	for {
		client.SetReadDeadline(time.Now().Add(5 * time.Minute))
		req, err := http.ReadRequest(cbr)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read request: %w", err)
		}
		client.SetReadDeadline(time.Time{})
		if up == nil {
			dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			up, err = p.dialUpstream(dctx, f, tlsMode)
			cancel()
			if err != nil {
				writeError(client, http.StatusBadGateway, "sbx egress: "+err.Error())
				return err
			}
			ubr = bufio.NewReader(up)
		}
		if err := p.transform(ctx, f, req); err != nil {
			writeError(client, http.StatusBadGateway, "sbx egress: "+err.Error())
			return err
		}
		if strings.EqualFold(req.Header.Get("Expect"), "100-continue") {
			// The proxy reads the body itself to send it on: let the
			// client send it now rather than after its own timeout.
			req.Header.Del("Expect")
			if _, err := io.WriteString(client, "HTTP/1.1 100 Continue\r\n\r\n"); err != nil {
				return err
			}
		}
		if err := req.Write(up); err != nil {
			return fmt.Errorf("write request upstream: %w", err)
		}
		resp, err := http.ReadResponse(ubr, req)
		for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			// Interim answers (103 Early Hints) pass on; the final one
			// follows.
			if err = resp.Write(client); err == nil {
				resp, err = http.ReadResponse(ubr, req)
			}
		}
		if err != nil {
			writeError(client, http.StatusBadGateway, "sbx egress: the upstream answered no HTTP response")
			return fmt.Errorf("read response: %w", err)
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			if err := resp.Write(client); err != nil {
				return err
			}
			relay(client, cbr, up, ubr)
			return nil
		}
		err = resp.Write(client)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("write response: %w", err)
		}
		if req.Close || resp.Close {
			return nil
		}
	}
}

func (p *Proxy) dialUpstream(ctx context.Context, f Flow, tlsMode bool) (net.Conn, error) {
	raw, err := f.Dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("cannot reach %s: %w", f.Name, err)
	}
	if !tlsMode {
		return raw, nil
	}
	// Threat: the proxy vouches for the upstream to the sandbox (the
	// sandbox trusts its CA), so it must refuse an upstream the sandbox
	// itself would have refused.
	tc := tls.Client(raw, &tls.Config{ServerName: f.Name, RootCAs: p.roots, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12})
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("TLS to %s failed: %w", f.Name, err)
	}
	return tc, nil
}

// transform sets the rule's headers on req, placeholders filled in, and
// fills placeholders of the same secrets in the headers the sandbox sent
// (a sandbox that writes the placeholder itself gets the value only on
// its way to a destination whose rules name that secret).
func (p *Proxy) transform(ctx context.Context, f Flow, req *http.Request) error {
	if host := normHost(req.Host); host != f.Name {
		// A second request on the connection naming another host: it
		// goes to the same destination, untransformed.
		return nil
	}
	allowed := map[string]bool{}
	for _, v := range f.Headers {
		names, tokens, _ := placeholders(v)
		for _, n := range names {
			allowed[kindSecret+":"+n] = true
		}
		for _, n := range tokens {
			allowed[kindToken+":"+n] = true
		}
	}
	cache := map[string]string{}
	get := func(kind, name string) (string, error) {
		if v, ok := cache[kind+":"+name]; ok {
			return v, nil
		}
		var v string
		var err error
		switch tk, _ := p.secrets.(Tokens); {
		case kind == kindToken && tk != nil:
			v, err = tk.Token(ctx, f.Sandbox, name)
		case kind == kindToken:
			err = errors.New("this server mints no identity tokens")
		case p.secrets != nil:
			v, err = p.secrets.Secret(ctx, f.Sandbox, name)
		default:
			err = errors.New("this server fills in no secrets")
		}
		if err != nil {
			p.log.Warn("egress: placeholder of a rule", "sandbox_id", f.Sandbox, "kind", kind, "name", name, "err", err)
			if kind == kindToken {
				return "", fmt.Errorf("identity token %q cannot be filled in", name)
			}
			return "", fmt.Errorf("secret %q cannot be filled in", name)
		}
		cache[kind+":"+name] = v
		return v, nil
	}
	if len(allowed) > 0 {
		for k, vs := range req.Header {
			for i, v := range vs {
				if !strings.Contains(v, "${e2b.") {
					continue
				}
				nv, err := fill(v, allowed, get)
				if err != nil {
					return err
				}
				vs[i] = nv
			}
			req.Header[k] = vs
		}
	}
	for k, v := range f.Headers {
		nv, err := fill(v, nil, get)
		if err != nil {
			return err
		}
		req.Header.Set(k, nv)
	}
	if _, ok := req.Header["User-Agent"]; !ok {
		req.Header["User-Agent"] = []string{""} // Go would add its own
	}
	return nil
}

func normHost(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

func writeError(w io.Writer, code int, msg string) {
	fmt.Fprintf(w, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s\n", code, http.StatusText(code), len(msg)+1, msg)
}

// relay copies both ways after an upgrade.
func relay(c net.Conn, cbr *bufio.Reader, u net.Conn, ubr *bufio.Reader) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); io.Copy(u, cbr); closeWrite(u) }()
	go func() { defer wg.Done(); io.Copy(c, ubr); closeWrite(c) }()
	wg.Wait()
}

func closeWrite(c net.Conn) {
	switch t := c.(type) {
	case *tls.Conn:
		t.CloseWrite()
	case interface{ CloseWrite() error }:
		t.CloseWrite()
	default:
		c.Close()
	}
}

// prefixConn reads head before the connection's own bytes.
type prefixConn struct {
	net.Conn
	head []byte
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.head) > 0 {
		n := copy(b, c.head)
		c.head = c.head[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

func (c *prefixConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
