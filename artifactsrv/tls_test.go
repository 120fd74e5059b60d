package artifactsrv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mesolite/mesolite/internal/tlsconfig"
)

// TestServeTLS: with Options.TLS the server speaks https only; clients with
// the CA download and push, a plain client is refused.
func TestServeTLS(t *testing.T) {
	// Borrow httptest's certificate for 127.0.0.1 and its key.
	donor := httptest.NewTLSServer(http.NotFoundHandler())
	donor.Close()
	roots := x509.NewCertPool()
	roots.AddCert(donor.Certificate())
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte("artifact"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, err := New(Options{Dir: dir, UploadToken: "tok", TLS: &tls.Config{Certificates: donor.TLS.Certificates}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeListener(ctx, l) }()
	defer func() { cancel(); <-done }()
	addr := l.Addr().String()

	tests := []struct {
		name    string
		url     string
		tls     *tls.Config
		wantErr error
	}{
		{name: "https with the CA", url: "https://" + addr + "/a.txt", tls: &tls.Config{RootCAs: roots}},
		{name: "plain http", url: "http://" + addr + "/a.txt", wantErr: tlsconfig.ErrPlainToTLS},
		{name: "system roots", url: "https://" + addr + "/a.txt", wantErr: tlsconfig.ErrUntrusted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &http.Client{Timeout: 10 * time.Second, Transport: tlsconfig.ExplainErrors(&http.Transport{TLSClientConfig: tt.tls})}
			resp, err := c.Get(tt.url)
			if tt.wantErr != nil {
				if err == nil {
					resp.Body.Close()
				}
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("GET %s: %v, want %v", tt.url, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if b, _ := io.ReadAll(resp.Body); string(b) != "artifact" {
				t.Fatalf("body %q", b)
			}
		})
	}

	src := filepath.Join(t.TempDir(), "up.bin")
	if err := os.WriteFile(src, []byte("pushed over tls"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Push(ctx, src, "https://"+addr+"/up.bin", "tok", &tls.Config{RootCAs: roots}, nil); err != nil {
		t.Fatalf("push over https: %v", err)
	}
	if err := Push(ctx, src, "https://"+addr+"/up2.bin", "tok", nil, nil); !errors.Is(err, tlsconfig.ErrUntrusted) {
		t.Fatalf("push without the CA: %v", err)
	}
}
