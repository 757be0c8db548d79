package server

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certLoader serves the certificate in a PEM certificate (chain) file and a
// key file, and reloads them when either file changes, so a renewed
// certificate (certbot renews every 60 days or so) is served without a
// restart. A renewal that cannot be loaded (files written half way, a key
// that does not match) keeps the previous certificate and is logged.
type certLoader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu     sync.Mutex
	cert   *tls.Certificate
	stamps [2]fileStamp
}

// fileStamp identifies a version of a file.
type fileStamp struct {
	mod  time.Time
	size int64
}

func stampOf(path string) (fileStamp, error) {
	st, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{st.ModTime(), st.Size()}, nil
}

// newCertLoader loads the certificate once, failing if it cannot.
func newCertLoader(certFile, keyFile string, log *slog.Logger) (*certLoader, error) {
	l := &certLoader{certFile: certFile, keyFile: keyFile, log: log}
	if err := l.load(); err != nil {
		return nil, err
	}
	leaf := l.cert.Leaf
	log.Info("TLS certificate loaded", "cert", certFile, "names", leaf.DNSNames, "not_after", leaf.NotAfter)
	if time.Now().After(leaf.NotAfter) {
		log.Warn("TLS certificate has expired", "cert", certFile, "not_after", leaf.NotAfter)
	}
	return l, nil
}

// load reads both files. The caller holds mu, or l is not shared yet.
func (l *certLoader) load() error {
	var stamps [2]fileStamp
	for i, p := range []string{l.certFile, l.keyFile} {
		st, err := stampOf(p)
		if err != nil {
			return fmt.Errorf("TLS: %w", err)
		}
		stamps[i] = st
	}
	cert, err := tls.LoadX509KeyPair(l.certFile, l.keyFile)
	if err != nil {
		return fmt.Errorf("TLS: load %s and %s: %w", l.certFile, l.keyFile, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return fmt.Errorf("TLS: parse %s: %w", l.certFile, err)
		}
	}
	l.cert, l.stamps = &cert, stamps
	return nil
}

// getCertificate is tls.Config.GetCertificate: the current certificate,
// reloaded first if its files changed since it was read.
func (l *certLoader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, p := range []string{l.certFile, l.keyFile} {
		if st, err := stampOf(p); err == nil && st != l.stamps[i] {
			if err := l.load(); err != nil {
				l.log.Warn("TLS certificate changed but cannot be loaded; serving the previous one", "err", err)
				// Do not try again on every handshake until the files
				// change again.
				l.stamps[0], _ = stampOf(l.certFile)
				l.stamps[1], _ = stampOf(l.keyFile)
			} else {
				l.log.Info("TLS certificate reloaded", "cert", l.certFile, "names", l.cert.Leaf.DNSNames, "not_after", l.cert.Leaf.NotAfter)
			}
			break
		}
	}
	return l.cert, nil
}

// tlsConfig is the server's TLS configuration: TLS 1.2 or later, the
// certificate from l; ALPN (h2, http/1.1) is added by http.Server.
func (l *certLoader) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: l.getCertificate,
	}
}
