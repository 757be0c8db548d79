package harness

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/sbxdev/sbx/client"
)

// CA is a certificate authority made for one test, and the server
// certificate it issued, written as PEM files for sbx serve --tls-cert and
// --tls-key.
type CA struct {
	// Pool trusts the CA (and nothing else).
	Pool *x509.CertPool
	// CAFile is the CA certificate as PEM (for NODE_EXTRA_CA_CERTS).
	CAFile string
	// CertFile and KeyFile hold the server certificate and its key.
	CertFile, KeyFile string

	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// NewCA makes a CA in a temporary directory and issues a server
// certificate for names (DNS names, wildcards such as "*.sbx.test", or IP
// addresses).
func NewCA(t T, names ...string) *CA {
	t.Helper()
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: "sbx test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &CA{
		Pool:     x509.NewCertPool(),
		CAFile:   filepath.Join(dir, "ca.pem"),
		CertFile: filepath.Join(dir, "cert.pem"),
		KeyFile:  filepath.Join(dir, "key.pem"),
		cert:     cert,
		key:      key,
	}
	ca.Pool.AddCert(cert)
	writePEM(t, ca.CAFile, "CERTIFICATE", der)
	ca.Issue(t, names...)
	return ca
}

// Issue issues a new server certificate for names (a renewal), replacing
// CertFile and KeyFile, and returns it.
func (ca *CA) Issue(t T, names ...string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// The key first: a server that reloads between the two writes sees a
	// mismatched pair, refuses it and keeps the old one until the
	// certificate follows.
	writePEM(t, ca.KeyFile, "EC PRIVATE KEY", kder)
	writePEM(t, ca.CertFile, "CERTIFICATE", der)
	cert, _ := x509.ParseCertificate(der)
	return cert
}

func serial(t T) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// writePEM replaces path atomically, as certbot's renewals do.
func writePEM(t T, path, typ string, der []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TLSConfig returns a client configuration trusting only the CA.
func (ca *CA) TLSConfig() *tls.Config { return &tls.Config{RootCAs: ca.Pool} }

// StartTLS starts sbx serve with ca's certificate (--tls-cert, --tls-key)
// and extra flags args. The server's URL is https://ADDR and its Client
// trusts the CA; the certificate must name the listening IP address for
// them to work.
func StartTLS(t T, ca *CA, args ...string) *Server {
	t.Helper()
	s := Start(t, append(args, "--tls-cert", ca.CertFile, "--tls-key", ca.KeyFile)...)
	s.ca = ca
	s.useTLS()
	return s
}

// useTLS points URL and Client at the server's HTTPS address.
func (s *Server) useTLS() {
	s.URL = "https://" + s.Addr
	s.Client = client.New(s.URL, s.APIKey, client.WithHTTPClient(&http.Client{
		Transport: &http.Transport{TLSClientConfig: s.ca.TLSConfig(), ForceAttemptHTTP2: true},
	}))
}
