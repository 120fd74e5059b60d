package master

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/internal/tlsconfig"
)

// TestMasterServesTLSOnly: with Config.TLS the listener speaks https only;
// a client with the CA is served, a plain one and one with another CA
// are refused.
func TestMasterServesTLSOnly(t *testing.T) {
	// Borrow httptest's certificate for 127.0.0.1 and its key.
	donor := httptest.NewTLSServer(http.NotFoundHandler())
	donor.Close()
	roots := x509.NewCertPool()
	roots.AddCert(donor.Certificate())
	h := startMaster(t, func(c *Config) { c.TLS = &tls.Config{Certificates: donor.TLS.Certificates} })
	addr := strings.TrimPrefix(h.base, "http://")
	tests := []struct {
		name    string
		url     string
		tls     *tls.Config
		wantErr error
	}{
		{name: "https with the CA", url: "https://" + addr + "/master/health", tls: &tls.Config{RootCAs: roots}},
		{name: "plain http", url: "http://" + addr + "/master/health", wantErr: tlsconfig.ErrPlainToTLS},
		{name: "another CA", url: "https://" + addr + "/master/health", tls: &tls.Config{RootCAs: x509.NewCertPool()}, wantErr: tlsconfig.ErrUntrusted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &http.Client{Timeout: 10 * time.Second, Transport: tlsconfig.ExplainErrors(&http.Transport{TLSClientConfig: tt.tls})}
			resp, err := c.Get(tt.url)
			if err == nil {
				resp.Body.Close()
			}
			if tt.wantErr == nil && (err != nil || resp.StatusCode != http.StatusOK) {
				t.Fatalf("GET %s: %v", tt.url, err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("GET %s: %v, want %v", tt.url, err, tt.wantErr)
			}
		})
	}
}

// TestOfferURLScheme: an agent that says in its REGISTER that it serves
// TLS is offered with an https url, others with http.
func TestOfferURLScheme(t *testing.T) {
	h := startMaster(t)
	tests := []struct {
		hostname, header, want string
	}{
		{hostname: "tls-agent", header: "https", want: "https"},
		{hostname: "plain-agent", want: "http"},
		{hostname: "odd-agent", header: "gopher", want: "http"},
	}
	for i, tt := range tests {
		header := http.Header{}
		if tt.header != "" {
			header.Set(AgentSchemeHeader, tt.header)
		}
		registerAgentWith(t, h.base, agentRegister(tt.hostname, 5051+i), header)
	}
	sc := h.subscribe(frameworkInfo("schemes"), codec.JSON)
	got := map[string]string{}
	deadline := time.Now().Add(eventTimeout)
	for len(got) < len(tests) && time.Now().Before(deadline) {
		for _, o := range sc.next(scheduler.Event_OFFERS).GetOffers().GetOffers() {
			got[o.GetHostname()] = o.GetUrl().GetScheme()
		}
	}
	for _, tt := range tests {
		if got[tt.hostname] != tt.want {
			t.Errorf("offer of %s: url scheme %q, want %q", tt.hostname, got[tt.hostname], tt.want)
		}
	}
}
