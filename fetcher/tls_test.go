package fetcher

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFetchFromTLSServer: Config.CAFile makes an https artifact server of
// the cluster's CA trusted; without it the download fails naming the
// untrusted certificate, and a CA file that cannot be read fails every
// download saying so.
func TestFetchFromTLSServer(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("#!/bin/sh\necho hi\n"))
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		caFile  string
		wantErr string
	}{
		{name: "cluster CA", caFile: ca},
		{name: "system roots only", wantErr: "is not trusted"},
		{name: "unreadable CA", caFile: filepath.Join(t.TempDir(), "absent.pem"), wantErr: "--ssl_ca_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sandbox := t.TempDir()
			f := New(Config{CAFile: tt.caFile}, nil)
			_, err := f.Fetch(context.Background(), Request{SandboxDir: sandbox, URIs: []URI{{Value: srv.URL + "/run.sh", Executable: true}}})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Fetch: %v, want an error naming %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(filepath.Join(sandbox, "run.sh")); err != nil || !strings.Contains(string(b), "echo hi") {
				t.Fatalf("run.sh: %q, %v", b, err)
			}
		})
	}
}
