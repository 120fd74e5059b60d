package cli

import (
	"bytes"
	"context"
	"encoding/pem"
	"fmt"
	"github.com/mesolite/mesolite/internal/tlsconfig/tlstest"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeServerCA writes the certificate of an httptest TLS server (its own
// CA) as a PEM file.
func writeServerCA(t *testing.T, srv *httptest.Server, name string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCommandsOverTLS: with --ssl_ca_file (or --master=https://...) the
// commands reach a TLS master and its agents over https and verify them;
// a plain command or a wrong CA is refused with an error naming the fix.
func TestCommandsOverTLS(t *testing.T) {
	agent := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/files/read" {
			http.NotFound(w, r)
			return
		}
		if r.URL.Query().Get("offset") == "0" {
			fmt.Fprint(w, `{"data":"hello over tls\n","offset":0}`)
			return
		}
		fmt.Fprint(w, `{"data":"","offset":15}`)
	}))
	defer agent.Close()
	agentAddr := strings.TrimPrefix(agent.URL, "https://")
	master := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(stateJSON(agentAddr)))
	}))
	// Both servers present the same httptest certificate, as one cluster's
	// servers present certificates of one CA.
	master.TLS = agent.TLS
	master.StartTLS()
	defer master.Close()
	addr := strings.TrimPrefix(master.URL, "https://")
	ca := writeServerCA(t, master, "ca.pem")
	junk := filepath.Join(t.TempDir(), "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		cmd      func(context.Context, []string, *bytes.Buffer, *bytes.Buffer) int
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{name: "tasks with the CA", cmd: tasksCmd, args: []string{"--master=" + addr, "--ssl_ca_file=" + ca}, wantOut: "web.1"},
		{name: "logs with the CA", cmd: logsCmd, args: []string{"web.1", "--master=" + addr, "--ssl_ca_file=" + ca}, wantOut: "hello over tls"},
		{name: "https master without a CA", cmd: tasksCmd, args: []string{"--master=https://" + addr}, wantCode: exitFail, wantErr: "is not trusted"},
		{name: "plain command", cmd: tasksCmd, args: []string{"--master=" + addr}, wantCode: exitFail, wantErr: "speaks TLS only"},
		{name: "another CA", cmd: tasksCmd, args: []string{"--master=" + addr, "--ssl_ca_file=" + tlstest.NewPKI(t).CA}, wantCode: exitFail, wantErr: "is not trusted"},
		{name: "not a CA file", cmd: tasksCmd, args: []string{"--master=" + addr, "--ssl_ca_file=" + junk}, wantCode: exitUsage, wantErr: "no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := tt.cmd(context.Background(), tt.args, &stdout, &stderr)
			if code != tt.wantCode || !strings.Contains(stdout.String(), tt.wantOut) || !strings.Contains(stderr.String(), tt.wantErr) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want %d, %q, %q", code, stdout.String(), stderr.String(), tt.wantCode, tt.wantOut, tt.wantErr)
			}
		})
	}
}

func tasksCmd(ctx context.Context, args []string, stdout, stderr *bytes.Buffer) int {
	return Tasks(ctx, args, stdout, stderr)
}

func logsCmd(ctx context.Context, args []string, stdout, stderr *bytes.Buffer) int {
	return Logs(ctx, args, stdout, stderr)
}

func TestResolveTLS(t *testing.T) {
	dir := t.TempDir()
	httpsFile := filepath.Join(dir, "master")
	if err := os.WriteFile(httpsFile, []byte("https://10.0.0.1:5050\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	srv.Close()
	ca := writeServerCA(t, srv, "ca.pem")
	tests := []struct {
		name   string
		ca     string
		master string
		env    map[string]string
		https  bool
	}{
		{name: "plain", master: "127.0.0.1:5050"},
		{name: "CA flag", ca: ca, master: "127.0.0.1:5050", https: true},
		{name: "https master", master: "https://127.0.0.1:5050", https: true},
		{name: "file holding an https master", master: "file://" + httpsFile, https: true},
		{name: "LIBPROCESS_SSL_ENABLED", master: "127.0.0.1:5050", env: map[string]string{"LIBPROCESS_SSL_ENABLED": "true"}, https: true},
		{name: "LIBPROCESS_SSL_CA_FILE alone", master: "127.0.0.1:5050", env: map[string]string{"LIBPROCESS_SSL_CA_FILE": ca}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := resolveTLS(tt.ca, tt.master, func(k string) string { return tt.env[k] })
			if err != nil {
				t.Fatal(err)
			}
			if got := tr.scheme() == "https"; got != tt.https {
				t.Fatalf("https = %v, want %v", got, tt.https)
			}
			if tt.ca != "" && tr.tls.RootCAs == nil {
				t.Fatal("the CA is not the roots")
			}
		})
	}
}
