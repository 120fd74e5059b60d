package tlsconfig

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/mesolite/mesolite/errdefs"
)

// WithEnv settles a process's files: what the flags gave, then, when
// LIBPROCESS_SSL_ENABLED is true, Mesos's LIBPROCESS_SSL_* variables for
// what they left empty (executors and tools started by Mesos tooling have
// only those). Without LIBPROCESS_SSL_ENABLED the variables are ignored,
// as Mesos ignores them. on reports whether the process's clients speak
// https: a process with a certificate or a CA, or started with
// LIBPROCESS_SSL_ENABLED, belongs to a TLS cluster, where every peer
// serves TLS.
func (f Files) WithEnv(getenv func(string) string) (settled Files, on bool) {
	env, enabled := FromEnv(getenv)
	if enabled {
		if f.Cert == "" && f.Key == "" {
			f.Cert, f.Key = env.Cert, env.Key
		}
		if f.CA == "" {
			f.CA = env.CA
		}
	}
	return f, enabled || f.Cert != "" || f.CA != ""
}

// ClientIf is Client when on, nil (plain http) otherwise.
func (f Files) ClientIf(on bool) (*tls.Config, error) {
	if !on {
		return nil, nil
	}
	return f.Client()
}

// ClientWithSystemRoots is Client trusting the system's roots as well as
// the CA bundle: for clients that reach both the cluster's own servers and
// the public internet (the fetcher downloads from either).
func (f Files) ClientWithSystemRoots() (*tls.Config, error) {
	cfg, err := Files{Cert: f.Cert, Key: f.Key}.Client()
	if err != nil || f.CA == "" {
		return cfg, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		// No system bundle (a minimal container): the CA alone.
		pool = x509.NewCertPool()
	}
	pem, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, fmt.Errorf("--ssl_ca_file: %w", err)
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ssl_ca_file %s holds no PEM certificate: %w", f.CA, errdefs.ErrInvalid)
	}
	cfg.RootCAs = pool
	return cfg, nil
}

// SelfSigned reports whether the first certificate in the PEM file at path
// signed itself (a CA flag is not needed: Go and OpenSSL trust a root that
// is the very certificate presented); an agent hands its executors such a
// certificate as their CA when it was given none.
func SelfSigned(path string) (bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	for {
		var block *pem.Block
		if block, b = pem.Decode(b); block == nil {
			return false, fmt.Errorf("%s holds no PEM certificate: %w", path, errdefs.ErrInvalid)
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		leaf, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return false, fmt.Errorf("%s: %w", path, errors.Join(err, errdefs.ErrInvalid))
		}
		return bytes.Equal(leaf.RawIssuer, leaf.RawSubject) && leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature) == nil, nil
	}
}

// Scheme is the URL scheme of a client with configuration c: https with
// one, http without.
func Scheme(c *tls.Config) string {
	if c != nil {
		return "https"
	}
	return "http"
}

// Errors of Explain and of ExplainErrors' round trips; each also wraps the
// underlying error.
var (
	// ErrPlainToTLS: a plain-http client reached a server that speaks TLS.
	ErrPlainToTLS = errors.New("the server speaks TLS only")
	// ErrNotTLS: an https client reached a server that does not speak TLS.
	ErrNotTLS = errors.New("the server does not speak TLS")
	// ErrUntrusted: the server's certificate did not verify.
	ErrUntrusted = errors.New("the server's TLS certificate is not trusted")
)

// Explain turns a TLS failure reaching host into an error that says what
// is wrong and what fixes it; other errors are returned as they are.
func Explain(host string, err error) error {
	var (
		verify   *tls.CertificateVerificationError
		hostname x509.HostnameError
		record   tls.RecordHeaderError
	)
	switch {
	case err == nil:
		return nil
	case errors.As(err, &hostname):
		return &explained{class: ErrUntrusted, err: err, msg: fmt.Sprintf(
			"the TLS certificate of %s is not trusted: %v (the certificate must name the address clients use: the server's --advertise_ip or hostname)", host, hostname)}
	case errors.As(err, &verify):
		return &explained{class: ErrUntrusted, err: err, msg: fmt.Sprintf(
			"the TLS certificate of %s is not trusted: %v (give the CA that signed it with --ssl_ca_file or LIBPROCESS_SSL_CA_FILE)", host, verify.Err)}
	case errors.As(err, &record):
		return &explained{class: ErrNotTLS, err: err, msg: fmt.Sprintf(
			"%s does not speak TLS (%v): use http://, or give the server --ssl_cert_file and --ssl_key_file", host, err)}
	}
	return err
}

// explained says what went wrong in words; errors.Is still finds both its
// class and the error it explains.
type explained struct {
	msg        string
	class, err error
}

func (e *explained) Error() string { return e.msg }
func (e *explained) Unwrap() []error {
	if e.err == nil {
		return []error{e.class}
	}
	return []error{e.class, e.err}
}

// plainToTLS is the body Go's HTTP server answers a plain request on a
// TLS listener with, under a bare HTTP/1.0 400.
const plainToTLS = "Client sent an HTTP request to an HTTPS server."

// ExplainErrors wraps a transport so that its TLS failures come back
// explained (see Explain) and the 400 a TLS server answers a plain request
// with becomes an ErrPlainToTLS error instead of a response.
func ExplainErrors(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return explainer{base: base}
}

type explainer struct{ base http.RoundTripper }

func (e explainer) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := e.base.RoundTrip(req)
	if err != nil {
		return nil, Explain(req.URL.Host, err)
	}
	// Only that exact answer, to keep the peek off every other response.
	if req.URL.Scheme != "http" || resp.StatusCode != http.StatusBadRequest || resp.ProtoMajor != 1 || resp.ProtoMinor != 0 {
		return resp, nil
	}
	head := make([]byte, len(plainToTLS))
	n, _ := io.ReadFull(resp.Body, head)
	if string(head[:n]) == plainToTLS {
		resp.Body.Close()
		return nil, &explained{class: ErrPlainToTLS, msg: fmt.Sprintf(
			"%s speaks TLS only and this client spoke plain http: use https:// (mesolite commands: --ssl_ca_file, --master=https://... or LIBPROCESS_SSL_ENABLED=true)", req.URL.Host)}
	}
	resp.Body = readCloser{Reader: io.MultiReader(bytes.NewReader(head[:n]), resp.Body), Closer: resp.Body}
	return resp, nil
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// wrapped transport.
func (e explainer) CloseIdleConnections() {
	if c, ok := e.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

type readCloser struct {
	io.Reader
	io.Closer
}
