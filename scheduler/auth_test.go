package scheduler_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
	schedv1 "github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/httpauth"
	"github.com/mesolite/mesolite/internal/testutil"
	"github.com/mesolite/mesolite/master"
	"github.com/mesolite/mesolite/scheduler"
)

// authMaster runs a real master that requires framework credentials.
func authMaster(t *testing.T) string {
	t.Helper()
	cfg := master.DefaultConfig()
	cfg.IP, cfg.Hostname = "127.0.0.1", "127.0.0.1"
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.AuthenticateHTTPFrameworks = true
	cfg.Credentials = []httpauth.Credential{{Principal: "ops", Secret: "s3cret"}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Port = ln.Addr().(*net.TCPAddr).Port
	m, err := master.New(cfg)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	addr := ln.Addr().String()
	// Until it has elected itself the master answers 503 (No leader
	// elected), which a client that gives up at once would take as final.
	noRedirect := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() bool {
		resp, err := noRedirect.Get("http://" + addr + "/master/redirect")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode != http.StatusServiceUnavailable
	}, "the master leading")
	return addr
}

// TestPrincipalAndSecret: the client authenticates SUBSCRIBE and the calls
// after it with Config.Principal and Secret, and fills in the framework's
// principal; without them a master with authentication refuses it.
func TestPrincipalAndSecret(t *testing.T) {
	addr := authMaster(t)
	tests := []struct {
		name              string
		principal, secret string
		wantErr           error
	}{
		{"credentials", "ops", "s3cret", nil},
		{"wrong secret", "ops", "guess", errdefs.ErrUnauthorized},
		{"none", "", "", errdefs.ErrUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(addr)
			cfg.Principal, cfg.Secret = tt.principal, tt.secret
			cfg.ReconnectTimeout = 1
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			c, err := scheduler.Subscribe(ctx, cfg)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Subscribe: %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Subscribe: %v", err)
			}
			defer c.Close()
			if ev := next(t, c); ev.GetType() != schedv1.Event_SUBSCRIBED {
				t.Fatalf("first event %v", ev)
			}
			if err := c.Call(ctx, &schedv1.Call{Type: schedv1.Call_REVIVE.Enum()}); err != nil {
				t.Fatalf("REVIVE with credentials: %v", err)
			}
		})
	}
	if _, err := scheduler.Subscribe(context.Background(), scheduler.Config{Master: addr, Secret: "x",
		Framework: &mesos.FrameworkInfo{Name: mesos.Ptr("no principal")}}); !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("a secret without a principal: %v", err)
	}
}
