package server

import (
	"crypto/x509"
	"io"
	"log/slog"
	"os"
	"testing"

	"github.com/sbxdev/sbx/tests/harness"
)

func TestCertLoaderReloads(t *testing.T) {
	ca := harness.NewCA(t, "*.sbx.test")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	l, err := newCertLoader(ca.CertFile, ca.KeyFile, log)
	if err != nil {
		t.Fatal(err)
	}
	serial := func() string {
		t.Helper()
		c, err := l.getCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf.SerialNumber.String()
	}
	first := serial()
	renewed := ca.Issue(t, "*.sbx.test")
	if got := serial(); got != renewed.SerialNumber.String() || got == first {
		t.Fatalf("after renewal: serial %s, want %s", got, renewed.SerialNumber)
	}
	// A renewal that cannot be loaded keeps the last good certificate.
	key, _ := os.ReadFile(ca.KeyFile)
	ca.Issue(t, "*.sbx.test")
	if err := os.WriteFile(ca.KeyFile, key, 0o600); err != nil { // the old key: a mismatched pair
		t.Fatal(err)
	}
	if got := serial(); got != renewed.SerialNumber.String() {
		t.Fatalf("after a mismatched renewal: serial %s, want the previous %s", got, renewed.SerialNumber)
	}
	if err := os.WriteFile(ca.CertFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := serial(); got != renewed.SerialNumber.String() {
		t.Fatalf("after a garbage certificate: serial %s", got)
	}
	// A fixed renewal is picked up again.
	fixed := ca.Issue(t, "*.sbx.test")
	if got := serial(); got != fixed.SerialNumber.String() {
		t.Fatalf("after a good renewal: serial %s, want %s", got, fixed.SerialNumber)
	}

	if _, err := newCertLoader(ca.CertFile, ca.CertFile, log); err == nil {
		t.Error("a certificate as its own key loaded")
	}
	if _, err := newCertLoader(ca.CertFile+".missing", ca.KeyFile, log); err == nil {
		t.Error("a missing certificate loaded")
	}
}
