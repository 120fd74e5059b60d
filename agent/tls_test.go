package agent_test

import (
	"crypto/tls"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/agent"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/internal/tlsconfig"
	"github.com/mesolite/mesolite/internal/tlsconfig/tlstest"
	"github.com/mesolite/mesolite/master"
)

// TestAgentOverTLS: an agent with a certificate serves https only, reaches
// a TLS master over https (saying in its REGISTER that it serves TLS, so
// the master offers it with an https url), and its command executor
// subscribes over https with the CA the agent hands it, so a task runs to
// its end.
func TestAgentOverTLS(t *testing.T) {
	// The master and the agent present certificates of one CA, as a
	// cluster's servers do.
	pki := tlstest.NewPKI(t)
	cert, err := tls.LoadX509KeyPair(pki.Cert, pki.Key)
	if err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, func(c *master.Config) { c.TLS = &tls.Config{Certificates: []tls.Certificate{cert}} })
	c.tls = &tls.Config{RootCAs: pki.Pool}
	a := c.startAgent(t, t.TempDir(), 0, func(c *agent.Config) {
		c.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		c.MasterTLS = &tls.Config{RootCAs: pki.Pool}
		c.ExecutorCAFile = pki.CA
	})
	fw := c.subscribe(t, testFramework("test"))

	base := a.Endpoint()
	tests := []struct {
		name    string
		url     string
		tls     *tls.Config
		wantErr error
	}{
		{name: "https with the CA", url: "https://" + base + "/health", tls: &tls.Config{RootCAs: pki.Pool}},
		{name: "plain http", url: "http://" + base + "/health", wantErr: tlsconfig.ErrPlainToTLS},
		{name: "https without the CA", url: "https://" + base + "/health", tls: &tls.Config{RootCAs: tlstest.NewPKI(t).Pool}, wantErr: tlsconfig.ErrUntrusted},
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

	offer := fw.launch(a, commandTask("tls-task", "echo $LIBPROCESS_SSL_ENABLED $LIBPROCESS_SSL_CA_FILE"))
	// The agent said in its REGISTER that it serves TLS: the master
	// offers it with an https url.
	if s := offer.GetUrl().GetScheme(); s != "https" {
		t.Fatalf("offer url scheme %q, want https", s)
	}
	fw.waitState("tls-task", mesos.TaskState_TASK_FINISHED, 20*time.Second)
	if out := a.sandboxFile(t, fw.ID(), "tls-task", "stdout"); strings.TrimSpace(out) != "true "+pki.CA {
		t.Fatalf("task saw %q, want the executor's TLS variables", out)
	}
}
