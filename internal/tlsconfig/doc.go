// Package tlsconfig turns the certificate flags every mesolite server and
// client takes (--ssl_cert_file, --ssl_key_file, --ssl_ca_file, and
// Mesos's LIBPROCESS_SSL_* variables, which executors and existing tools
// read) into crypto/tls configurations: servers present their certificate
// (reloaded when the files change, so a renewal needs no restart), clients
// verify the peer against the CA bundle or the system's roots.
package tlsconfig
