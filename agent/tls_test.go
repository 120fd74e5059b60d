package agent

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/agentpb"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/internal/tlsconfig"
)

// TestAgentOverTLS: an agent with a certificate serves https only, reaches
// a TLS master over https (saying in its REGISTER that it serves TLS), and
// its command executor subscribes over https with the CA the agent hands
// it, so a task runs to its end.
func TestAgentOverTLS(t *testing.T) {
	fm := &fakeMaster{t: t, events: make(chan *agentpb.Event, 64), updates: make(chan *agentpb.Call_Update, 256),
		regs: make(chan *agentpb.Call_Register, 8), autoAck: true}
	schemes := make(chan string, 8)
	fm.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Mesos-Stream-Id") == "" {
			schemes <- r.Header.Get(agentSchemeHeader)
		}
		fm.serve(w, r)
	}))
	t.Cleanup(fm.srv.Close)
	// The agent presents the same certificate as the master (httptest's,
	// for 127.0.0.1), as a cluster's servers present certificates of one CA.
	roots := x509.NewCertPool()
	roots.AddCert(fm.srv.Certificate())
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: fm.srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, fm, t.TempDir(), 0, func(c *Config) {
		c.TLS = &tls.Config{Certificates: fm.srv.TLS.Certificates}
		c.MasterTLS = &tls.Config{RootCAs: roots}
		c.ExecutorCAFile = ca
	})
	if s := <-schemes; s != "https" {
		t.Fatalf("REGISTER said scheme %q, want https", s)
	}

	base := "127.0.0.1:" + strconv.Itoa(a.port)
	tests := []struct {
		name    string
		url     string
		tls     *tls.Config
		wantErr error
	}{
		{name: "https with the CA", url: "https://" + base + "/health", tls: &tls.Config{RootCAs: roots}},
		{name: "plain http", url: "http://" + base + "/health", wantErr: tlsconfig.ErrPlainToTLS},
		{name: "https without the CA", url: "https://" + base + "/health", tls: &tls.Config{RootCAs: x509.NewCertPool()}, wantErr: tlsconfig.ErrUntrusted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &http.Client{Timeout: 10 * time.Second, Transport: tlsconfig.ExplainErrors(&http.Transport{TLSClientConfig: tt.tls})}
			resp, err := c.Get(tt.url)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("GET %s: %s", tt.url, resp.Status)
				}
				return
			}
			if err == nil {
				resp.Body.Close()
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("GET %s: %v, want %v", tt.url, err, tt.wantErr)
			}
		})
	}

	fm.events <- runTaskEvent(commandTask("tls-task", "echo $LIBPROCESS_SSL_ENABLED $LIBPROCESS_SSL_CA_FILE"))
	fm.waitState("tls-task", mesos.TaskState_TASK_FINISHED, 20*time.Second)
	if out := readSandboxFile(t, a.Agent, "fw-1", "tls-task", "stdout"); strings.TrimSpace(out) != "true "+ca {
		t.Fatalf("task saw %q, want the executor's TLS variables", out)
	}
}
