package webhook

import (
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
)

func TestSign(t *testing.T) {
	// echo -n 'secret{"a":1}' | sha256sum | xxd -r -p | base64 | tr -d =
	if got, want := Sign("secret", []byte(`{"a":1}`)), "N7005LKS7534v+cOP1BSYTkklJDDwllM8gF1unZl4B0"; got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
}

func TestGuard(t *testing.T) {
	g := NewGuard([]netip.Prefix{netip.MustParsePrefix("192.168.7.0/24")}, []netip.Prefix{netip.MustParsePrefix("10.223.0.0/16")})
	g.hostAddrs = func() []netip.Addr { return []netip.Addr{netip.MustParseAddr("203.0.113.9")} }
	g.SetSelf("0.0.0.0:49982")
	for _, c := range []struct {
		url string
		ok  bool
	}{
		{"http://127.0.0.1/", false},
		{"http://127.0.0.1:8080/hook", false},
		{"http://[::1]/", false},
		{"http://169.254.169.254/latest/meta-data/", false},
		{"http://[fd00:ec2::254]/", false},
		{"http://[::ffff:127.0.0.1]/", false},
		{"http://10.223.0.2:8080/", false},
		{"http://10.1.2.3/", false},
		{"http://172.16.0.1/", false},
		{"http://0.0.0.0/", false},
		{"http://203.0.113.9/", false},
		{"http://192.168.7.5:49982/", true}, // allowed, and not a host address
		{"http://192.168.7.5/", true},
		{"http://192.168.8.5/", false},
		{"https://198.51.100.7/hook", true},
		{"https://example.com/hook", true}, // a name: checked at dial time
		{"http://localhost:1/", true},
		{"ftp://198.51.100.7/", false},
		{"file:///etc/passwd", false},
		{"http://user:pw@198.51.100.7/", false},
		{"http:///nohost", false},
		{"http://198.51.100.7:99999/", false},
		{"http://" + strings.Repeat("a", 2050) + ".com/", false},
	} {
		err := g.CheckURL(c.url)
		if (err == nil) != c.ok {
			t.Errorf("CheckURL(%.60s) = %v, want ok %v", c.url, err, c.ok)
		}
		if err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("CheckURL(%.60s): %v is not invalid-argument", c.url, err)
		}
	}
	// sbx's own address is refused even where allowed.
	self := NewGuard([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, nil)
	self.SetSelf("127.0.0.1:5000")
	if err := self.Check(netip.MustParseAddrPort("127.0.0.1:5000")); err == nil {
		t.Error("sbx's own listen address let through")
	}
	if err := self.Check(netip.MustParseAddrPort("127.0.0.1:5001")); err != nil {
		t.Errorf("allowed loopback receiver refused: %v", err)
	}
}

// TestClientRefusesAtDial checks the dial-time check: a name that resolves
// to loopback is refused, and redirects are not followed.
func TestClientRefusesAtDial(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://169.254.169.254/", http.StatusFound)
	}))
	defer srv.Close()
	port := srv.URL[strings.LastIndex(srv.URL, ":"):]
	c := NewGuard(nil, nil).Client(5 * time.Second)
	_, err := c.Post("http://localhost"+port+"/", "application/json", nil)
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("POST to localhost: %v, want refused", err)
	}
	allowed := NewGuard([]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, nil).Client(5 * time.Second)
	resp, err := allowed.Post(srv.URL, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("redirect: status %d, want 302 unfollowed", resp.StatusCode)
	}
}

func TestBackoff(t *testing.T) {
	d := New(nil, NewGuard(nil, nil), Config{FirstRetry: time.Second, MaxBackoff: time.Minute}, slog.New(slog.DiscardHandler))
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 4: 8 * time.Second, 10: time.Minute, 64: time.Minute} {
		for range 20 {
			if b := d.backoff(n); b > want || b < want/2 {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v]", n, b, want/2, want)
			}
		}
	}
}
