package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/mesolite/mesolite/errdefs"
)

// Files names the PEM files of one process.
type Files struct {
	Cert, Key string // the process's own certificate and key (servers)
	CA        string // bundle that verifies peers; empty: the system's roots
}

// Environment variables Mesos uses for the same files; executors started
// by a TLS agent get them, so that they reach the agent over https.
const (
	EnvEnabled = "LIBPROCESS_SSL_ENABLED"
	EnvCert    = "LIBPROCESS_SSL_CERT_FILE"
	EnvKey     = "LIBPROCESS_SSL_KEY_FILE"
	EnvCA      = "LIBPROCESS_SSL_CA_FILE"
)

// FromEnv reads Mesos's variables; Enabled reports LIBPROCESS_SSL_ENABLED.
func FromEnv(getenv func(string) string) (f Files, enabled bool) {
	v := strings.ToLower(getenv(EnvEnabled))
	return Files{Cert: getenv(EnvCert), Key: getenv(EnvKey), CA: getenv(EnvCA)}, v == "1" || v == "true" || v == "yes"
}

// Server is the configuration a listener serves with; nil when no
// certificate is given (plain HTTP).
func (f Files) Server() (*tls.Config, error) {
	if f.Cert == "" && f.Key == "" {
		return nil, nil
	}
	if f.Cert == "" || f.Key == "" {
		return nil, fmt.Errorf("TLS needs both --ssl_cert_file and --ssl_key_file: %w", errdefs.ErrInvalid)
	}
	r := &reloader{cert: f.Cert, key: f.Key}
	if _, err := r.get(); err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return r.get() },
	}, nil
}

// Client is the configuration to reach a TLS peer with: the CA bundle's
// roots, or the system's when none is given.
func (f Files) Client() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, fmt.Errorf("--ssl_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ssl_ca_file %s holds no PEM certificate: %w", f.CA, errdefs.ErrInvalid)
		}
		cfg.RootCAs = pool
	}
	if f.Cert != "" && f.Key != "" {
		// A client certificate, for peers that ask for one.
		r := &reloader{cert: f.Cert, key: f.Key}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return r.get() }
	}
	return cfg, nil
}

// reloader reads the key pair again when either file's modification time
// changes, checked at most once a second.
type reloader struct {
	cert, key string

	mu      sync.Mutex
	loaded  *tls.Certificate
	stamp   [2]time.Time
	checked time.Time
}

func (r *reloader) get() (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.loaded != nil && time.Since(r.checked) < time.Second {
		return r.loaded, nil
	}
	r.checked = time.Now()
	var stamp [2]time.Time
	for i, p := range []string{r.cert, r.key} {
		if fi, err := os.Stat(p); err == nil {
			stamp[i] = fi.ModTime()
		}
	}
	if r.loaded != nil && stamp == r.stamp {
		return r.loaded, nil
	}
	c, err := tls.LoadX509KeyPair(r.cert, r.key)
	if err != nil {
		if r.loaded != nil {
			// A renewal half written: keep serving the old pair.
			return r.loaded, nil
		}
		return nil, fmt.Errorf("load TLS certificate %s and key %s: %w", r.cert, r.key, errors.Join(err, errdefs.ErrInvalid))
	}
	r.loaded, r.stamp = &c, stamp
	return r.loaded, nil
}
