package tlsconfig

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeLeaf writes a server certificate for 127.0.0.1 signed by the CA at
// caCert/caKey (as written by writeCert), and its key.
func writeLeaf(t *testing.T, dir, name, caCert, caKey string) (cert, key string) {
	t.Helper()
	ca, err := tls.LoadX509KeyPair(caCert, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caX509, err := x509.ParseCertificate(ca.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caX509, &k.PublicKey, ca.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// serve runs an "ok" handler on loopback, over TLS when cfg is set, and
// returns its host:port.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg != nil {
		l = tls.NewListener(l, cfg)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// A client that cannot talk to a server says why: plain http to a TLS
// server, https to a plain one, a certificate nobody vouched for, or one
// for another address.
func TestClientErrorsExplained(t *testing.T) {
	dir := t.TempDir()
	caCert, caKey := writeCert(t, dir, "ca")
	leafCert, leafKey := writeLeaf(t, dir, "server", caCert, caKey)
	otherCA, _ := writeCert(t, dir, "other")
	scfg, err := Files{Cert: leafCert, Key: leafKey}.Server()
	if err != nil {
		t.Fatal(err)
	}
	tlsAddr, plainAddr := serve(t, scfg), serve(t, nil)
	_, port, _ := net.SplitHostPort(tlsAddr)

	tests := []struct {
		name    string
		ca      string // "" with tls: system roots
		tls     bool
		url     string
		wantErr error
		mention string
	}{
		{name: "trusted", ca: caCert, tls: true, url: "https://" + tlsAddr},
		{name: "plain client, TLS server", url: "http://" + tlsAddr, wantErr: ErrPlainToTLS, mention: "--ssl_ca_file"},
		{name: "another CA", ca: otherCA, tls: true, url: "https://" + tlsAddr, wantErr: ErrUntrusted, mention: "--ssl_ca_file"},
		{name: "system roots", tls: true, url: "https://" + tlsAddr, wantErr: ErrUntrusted, mention: "unknown authority"},
		{name: "another name", ca: caCert, tls: true, url: "https://localhost:" + port, wantErr: ErrUntrusted, mention: "--advertise_ip"},
		{name: "TLS client, plain server", ca: caCert, tls: true, url: "https://" + plainAddr, wantErr: ErrNotTLS, mention: "--ssl_cert_file"},
		{name: "plain both", url: "http://" + plainAddr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Files{CA: tt.ca}.ClientIf(tt.tls)
			if err != nil {
				t.Fatal(err)
			}
			c := &http.Client{Transport: ExplainErrors(&http.Transport{TLSClientConfig: cfg})}
			resp, err := c.Get(tt.url)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("GET %s: %v", tt.url, err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(b) != "ok" {
					t.Fatalf("body %q", b)
				}
				return
			}
			if err == nil {
				resp.Body.Close()
				t.Fatalf("GET %s succeeded, want %v", tt.url, tt.wantErr)
			}
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.mention) {
				t.Fatalf("GET %s: %v\nwant %v mentioning %q", tt.url, err, tt.wantErr, tt.mention)
			}
			if testing.Verbose() {
				t.Log(err)
			}
		})
	}
}

// A 400 that is not the TLS server's answer reaches the caller intact.
func TestExplainErrorsKeepsOtherAnswers(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 4096)
		_, _ = c.Read(buf)
		io.WriteString(c, "HTTP/1.0 400 Bad Request\r\n\r\nmissing field 'name'\n")
	}()
	c := &http.Client{Transport: ExplainErrors(nil)}
	resp, err := c.Get("http://" + l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || string(b) != "missing field 'name'\n" {
		t.Fatalf("%d %q", resp.StatusCode, b)
	}
}

func TestWithEnv(t *testing.T) {
	tests := []struct {
		name  string
		flags Files
		env   map[string]string
		want  Files
		on    bool
	}{
		{name: "nothing", on: false},
		{name: "CA flag", flags: Files{CA: "/ca"}, want: Files{CA: "/ca"}, on: true},
		{name: "cert flags", flags: Files{Cert: "/c", Key: "/k"}, want: Files{Cert: "/c", Key: "/k"}, on: true},
		{name: "variables ignored unless enabled", env: map[string]string{EnvCA: "/envca", EnvCert: "/ec"}, on: false},
		{name: "enabled alone", env: map[string]string{EnvEnabled: "true"}, on: true},
		{name: "enabled fills the gaps",
			flags: Files{Cert: "/c", Key: "/k"},
			env:   map[string]string{EnvEnabled: "1", EnvCert: "/ec", EnvKey: "/ek", EnvCA: "/envca"},
			want:  Files{Cert: "/c", Key: "/k", CA: "/envca"}, on: true},
		{name: "flags win", flags: Files{CA: "/ca"}, env: map[string]string{EnvEnabled: "true", EnvCA: "/envca"}, want: Files{CA: "/ca"}, on: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, on := tt.flags.WithEnv(func(k string) string { return tt.env[k] })
			if got != tt.want || on != tt.on {
				t.Fatalf("got %+v %v, want %+v %v", got, on, tt.want, tt.on)
			}
		})
	}
}

func TestSelfSigned(t *testing.T) {
	dir := t.TempDir()
	caCert, caKey := writeCert(t, dir, "ca")
	leaf, _ := writeLeaf(t, dir, "leaf", caCert, caKey)
	junk := filepath.Join(dir, "junk")
	if err := os.WriteFile(junk, []byte("no pem"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path    string
		want    bool
		wantErr bool
	}{
		{path: caCert, want: true},
		{path: leaf, want: false},
		{path: junk, wantErr: true},
		{path: filepath.Join(dir, "absent"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.path), func(t *testing.T) {
			got, err := SelfSigned(tt.path)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("SelfSigned = %v, %v", got, err)
			}
		})
	}
}

// The fetcher's configuration trusts the cluster's CA on top of the
// system's roots.
func TestClientWithSystemRoots(t *testing.T) {
	dir := t.TempDir()
	caCert, caKey := writeCert(t, dir, "ca")
	leafCert, leafKey := writeLeaf(t, dir, "server", caCert, caKey)
	scfg, err := Files{Cert: leafCert, Key: leafKey}.Server()
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, scfg)
	cfg, err := Files{CA: caCert}.ClientWithSystemRoots()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}).Get("https://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, err := (Files{CA: filepath.Join(dir, "absent")}).ClientWithSystemRoots(); err == nil {
		t.Fatal("a missing CA file was accepted")
	}
}
