package driver

import (
	"context"
	"encoding/pem"
	"errors"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/executor"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/internal/tlsconfig"
)

// An executor of a TLS agent reads LIBPROCESS_SSL_ENABLED and
// LIBPROCESS_SSL_CA_FILE and subscribes over https; without the CA, or
// without TLS, it cannot, and says why.
func TestSubscribeOverTLS(t *testing.T) {
	agent := &fakeAgent{events: make(chan *executor.Event, 4), updates: make(chan *mesos.TaskStatus, 4), seen: map[string]bool{}}
	srv := httptest.NewTLSServer(agent)
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		env     map[string]string
		wantErr error
	}{
		{name: "agent's CA", env: map[string]string{tlsconfig.EnvEnabled: "true", tlsconfig.EnvCA: ca}},
		{name: "system roots", env: map[string]string{tlsconfig.EnvEnabled: "true"}, wantErr: tlsconfig.ErrUntrusted},
		{name: "plain http", env: map[string]string{tlsconfig.EnvCA: ca}, wantErr: tlsconfig.ErrPlainToTLS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"MESOS_AGENT_ENDPOINT": strings.TrimPrefix(srv.URL, "https://"), "MESOS_FRAMEWORK_ID": "fw", "MESOS_EXECUTOR_ID": "ex"}
			for k, v := range tt.env {
				env[k] = v
			}
			cfg, err := ConfigFromEnv(func(k string) string { return env[k] })
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			h := subscribedHandler{subscribed: make(chan struct{})}
			d := New(cfg, h, slog.New(slog.DiscardHandler))
			errc := make(chan error, 1)
			go func() { errc <- d.Run(ctx) }()
			if tt.wantErr == nil {
				select {
				case <-h.subscribed:
				case err := <-errc:
					t.Fatalf("Run: %v", err)
				}
				d.Stop()
				cancel()
				<-errc
				return
			}
			// Checkpointing is off: the first failure ends Run.
			if err := <-errc; !errors.Is(err, tt.wantErr) {
				t.Fatalf("Run: %v, want %v", err, tt.wantErr)
			}
		})
	}
	bad := map[string]string{"MESOS_AGENT_ENDPOINT": "127.0.0.1:1", "MESOS_FRAMEWORK_ID": "fw", "MESOS_EXECUTOR_ID": "ex",
		tlsconfig.EnvEnabled: "true", tlsconfig.EnvCA: filepath.Join(t.TempDir(), "absent.pem")}
	if _, err := ConfigFromEnv(func(k string) string { return bad[k] }); err == nil || !strings.Contains(err.Error(), tlsconfig.EnvCA) {
		t.Fatalf("a missing CA file: %v", err)
	}
}
