package main

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"

	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/internal/cliflags"
	"github.com/mesolite/mesolite/internal/tlsconfig"
)

// sslFlags are Mesos's certificate flags, shared by master, agent, local
// and the artifact server. Like every flag they are also read as
// MESOS_SSL_CERT_FILE and so on; with LIBPROCESS_SSL_ENABLED=true, Mesos's
// LIBPROCESS_SSL_CERT_FILE, _KEY_FILE and _CA_FILE fill what they leave
// out.
type sslFlags struct {
	cert, key, ca *string
}

func defineSSLFlags(fs *cliflags.FlagSet, caUsage string) *sslFlags {
	return &sslFlags{
		cert: fs.String("ssl_cert_file", "", "PEM certificate (chain) to serve TLS with; with --ssl_key_file the listener speaks https only.\n"+
			"It must name the addresses clients use (--advertise_ip, the hostname). Reloaded when the file changes"),
		key: fs.String("ssl_key_file", "", "PEM private key of --ssl_cert_file"),
		ca:  fs.String("ssl_ca_file", "", caUsage),
	}
}

// tlsSetup is what a process's flags settle on.
type tlsSetup struct {
	files tlsconfig.Files
	// on: this process belongs to a TLS cluster, so its clients speak
	// https (a certificate, a CA or LIBPROCESS_SSL_ENABLED says so).
	on bool
	// server is the listener's configuration; nil serves plain http.
	server *tls.Config
	// clusterCA is what peers of this cluster are verified with, as an
	// absolute path (executors run in their sandboxes): --ssl_ca_file, else
	// the process's own certificate when it is self-signed (a one-machine
	// cluster, `mesolite local`), else empty for the system's roots.
	clusterCA string
}

func (s *sslFlags) setup() (tlsSetup, error) {
	files, on := tlsconfig.Files{Cert: *s.cert, Key: *s.key, CA: *s.ca}.WithEnv(os.Getenv)
	for _, p := range []*string{&files.Cert, &files.Key, &files.CA} {
		if *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return tlsSetup{}, err
		}
		*p = abs
	}
	server, err := files.Server()
	if err != nil {
		return tlsSetup{}, err
	}
	if server == nil && files.CA == "" && on {
		// LIBPROCESS_SSL_ENABLED=true alone: Mesos refuses to start a
		// server without its certificate rather than serve plain http.
		return tlsSetup{}, fmt.Errorf("%s=true needs --ssl_cert_file and --ssl_key_file: %w", tlsconfig.EnvEnabled, errdefs.ErrInvalid)
	}
	st := tlsSetup{files: files, on: on, server: server, clusterCA: files.CA}
	if st.clusterCA == "" && server != nil {
		self, err := tlsconfig.SelfSigned(files.Cert)
		if err != nil {
			return tlsSetup{}, fmt.Errorf("--ssl_cert_file: %w", err)
		}
		if self {
			st.clusterCA = files.Cert
		}
	}
	return st, nil
}

// client is the configuration this process reaches its peers with: nil
// (plain http) unless it belongs to a TLS cluster; the cluster's CA, else
// the system's roots.
func (st tlsSetup) client() (*tls.Config, error) {
	f := st.files
	f.CA = st.clusterCA
	return f.ClientIf(st.on)
}

// scheme is the scheme of this process's own URLs.
func (st tlsSetup) scheme() string { return tlsconfig.Scheme(st.server) }
