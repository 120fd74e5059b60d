package cli

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mesolite/mesolite/httpauth"
	"github.com/mesolite/mesolite/master"
)

// authMaster runs a real master whose scheduler API and read-only
// endpoints need the credentials ops/s3cret.
func authMaster(t *testing.T) string {
	t.Helper()
	creds := []httpauth.Credential{{Principal: "ops", Secret: "s3cret"}}
	ro, err := httpauth.New(httpauth.Options{Enabled: true, Realm: "mesos-master-readonly", Credentials: creds})
	if err != nil {
		t.Fatal(err)
	}
	cfg := master.DefaultConfig()
	cfg.IP, cfg.Hostname = "127.0.0.1", "127.0.0.1"
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.AuthenticateFrameworks = true
	cfg.Credentials = creds
	cfg.ReadOnlyAuth = ro.Wrap
	m, err := master.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String()
}

// TestCredentialFlags: --principal with --secret or --secret_file sends
// HTTP Basic; without them an authenticating master refuses the command.
func TestCredentialFlags(t *testing.T) {
	addr := authMaster(t)
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		cmd      func(context.Context, []string, io.Writer, io.Writer) int
		args     []string
		wantCode int
		wantErr  string
	}{
		{"tasks with --secret_file", Tasks, []string{"--principal=ops", "--secret_file=" + secretFile}, exitOK, ""},
		{"tasks with --secret", Tasks, []string{"--principal=ops", "--secret=s3cret"}, exitOK, ""},
		{"tasks without credentials", Tasks, nil, exitFail, "401"},
		{"tasks with a wrong secret", Tasks, []string{"--principal=ops", "--secret=guess"}, exitFail, "401"},
		{"run without credentials", Run, []string{"--name=x", "--command=true"}, exitFail, "401"},
		{"a secret without a principal", Tasks, []string{"--secret=s3cret"}, exitUsage, "--secret needs --principal"},
		{"both secret flags", Tasks, []string{"--principal=ops", "--secret=s3cret", "--secret_file=" + secretFile}, exitUsage, "not both"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := tt.cmd(context.Background(), append([]string{"--master=" + addr}, tt.args...), &stdout, &stderr)
			if code != tt.wantCode || !strings.Contains(stderr.String(), tt.wantErr) {
				t.Fatalf("exit %d, stderr %q; want %d with %q", code, stderr.String(), tt.wantCode, tt.wantErr)
			}
		})
	}
}
