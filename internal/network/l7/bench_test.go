package l7

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"testing"
	"time"
)

// BenchmarkRequest measures one HTTPS GET on a new connection (what a
// curl in a sandbox pays): straight to the upstream, and through the
// proxy (two handshakes, the rule's header with a secret filled in). It
// reports p50 and p99 per request.
//
//	go test ./internal/network/l7 -run XXX -bench Request -benchtime 2000x
func BenchmarkRequest(b *testing.B) {
	upCA, _ := NewCA("upstream")
	sbCA, _ := NewCA("sb1")
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(upCA.CertPEM())
	leaf, _ := upCA.leaf("api.test")
	uln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{*leaf}})
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	go srv.Serve(uln)
	defer srv.Close()
	up := uln.Addr().String()

	p := New(roots, secrets{"key": "v"}, slog.New(slog.DiscardHandler))
	pln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer pln.Close()
	go func() {
		for {
			c, err := pln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				head := make([]byte, 5)
				io.ReadFull(c, head)
				p.Serve(context.Background(), Flow{Sandbox: "sb1", Client: c, Head: head, Name: "api.test",
					Headers: map[string]string{"Authorization": "Bearer ${e2b.secrets.key}"}, CA: sbCA,
					Dial: func(ctx context.Context) (net.Conn, error) { var d net.Dialer; return d.DialContext(ctx, "tcp", up) }})
			}()
		}
	}()
	sbRoots := x509.NewCertPool()
	sbRoots.AppendCertsFromPEM(sbCA.CertPEM())

	get := func(b *testing.B, addr string, pool *x509.CertPool) {
		c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "api.test", RootCAs: pool})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		req, _ := http.NewRequest("GET", "https://api.test/", nil)
		req.Close = true
		req.Write(c)
		resp, err := http.ReadResponse(bufio.NewReader(c), req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	for _, bc := range []struct {
		name string
		addr string
		pool *x509.CertPool
	}{{"direct", up, roots}, {"proxied", pln.Addr().String(), sbRoots}} {
		b.Run(bc.name, func(b *testing.B) {
			d := make([]time.Duration, 0, b.N)
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				get(b, bc.addr, bc.pool)
				d = append(d, time.Since(t0))
			}
			sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
			b.ReportMetric(float64(d[len(d)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(d[len(d)*99/100].Microseconds()), "p99-µs")
		})
	}
}
