package tlsconfig

import (
	"crypto/tls"
	"errors"
	"github.com/mesolite/mesolite/internal/tlsconfig/tlstest"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/mesolite/mesolite/errdefs"
)

// writeCert writes a self-signed certificate for 127.0.0.1 and its key.
func writeCert(t *testing.T, dir, name string) (cert, key string) {
	t.Helper()
	return tlstest.SelfSigned(t, dir, name)
}

func TestServerAndClient(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCert(t, dir, "server")
	scfg, err := Files{Cert: cert, Key: key}.Server()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })}
	go srv.Serve(tls.NewListener(l, scfg))
	defer srv.Close()
	url := "https://" + l.Addr().String()

	ccfg, err := Files{CA: cert}.Client()
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: ccfg}}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("client trusting the CA: %v", err)
	}
	resp.Body.Close()

	// A client with another CA refuses the server.
	other, _ := writeCert(t, dir, "other")
	bad, _ := Files{CA: other}.Client()
	if _, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: bad}}).Get(url); err == nil {
		t.Fatal("a client trusting another CA accepted the server")
	}
}

func TestBadFiles(t *testing.T) {
	dir := t.TempDir()
	cert, _ := writeCert(t, dir, "s")
	if _, err := (Files{Cert: cert}).Server(); !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("cert without key: %v", err)
	}
	junk := filepath.Join(dir, "junk")
	os.WriteFile(junk, []byte("not pem"), 0o644)
	if _, err := (Files{CA: junk}).Client(); !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("junk CA: %v", err)
	}
	if cfg, err := (Files{}).Server(); cfg != nil || err != nil {
		t.Fatalf("no files: %v %v", cfg, err)
	}
}

func TestFromEnv(t *testing.T) {
	env := map[string]string{EnvEnabled: "true", EnvCA: "/ca.pem"}
	f, on := FromEnv(func(k string) string { return env[k] })
	if !on || f.CA != "/ca.pem" {
		t.Fatalf("%+v %v", f, on)
	}
}
