package cli

import (
	"context"
	"crypto/tls"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/mesolite/mesolite/internal/tlsconfig"
)

// transport is how a command reaches the master and the agents: plain
// http, or https verified with the command's TLS configuration. A cluster
// is TLS throughout (the agents' addresses in the master's state carry no
// scheme), so one setting serves both.
type transport struct {
	tls *tls.Config
	// client bounds every request: the master and the agents answer these
	// at once or not at all. stream has no bound, for followed files.
	client, stream *http.Client
}

func newTransport(cfg *tls.Config) *transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg
	// A plain command meeting a TLS master, or an untrusted certificate,
	// gets an error that says which flag fixes it.
	rt := tlsconfig.ExplainErrors(tr)
	return &transport{
		tls: cfg,
		client: &http.Client{
			Timeout:   30 * time.Second,
			Transport: rt,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
		stream: &http.Client{Transport: rt},
	}
}

// plainTransport serves contexts that carry none (tests calling the
// helpers directly).
var plainTransport = newTransport(nil)

// scheme is the URL scheme of the master's and the agents' addresses.
func (t *transport) scheme() string { return tlsconfig.Scheme(t.tls) }

type transportKey struct{}

// withTransport makes the requests sent with ctx use t.
func withTransport(ctx context.Context, t *transport) context.Context {
	if t == nil {
		return ctx
	}
	return context.WithValue(ctx, transportKey{}, t)
}

// transportOf is ctx's transport, plain http when it carries none.
func transportOf(ctx context.Context) *transport {
	if t, ok := ctx.Value(transportKey{}).(*transport); ok {
		return t
	}
	return plainTransport
}

// resolveTLS settles the command's transport once its flags are parsed:
// https when given --ssl_ca_file (or $MESOS_SSL_CA_FILE), when started with
// LIBPROCESS_SSL_ENABLED=true (as inside a TLS cluster's tasks), or when
// --master says https://; plain http otherwise.
func resolveTLS(caFile, master string, getenv func(string) string) (*transport, error) {
	files, on := tlsconfig.Files{CA: caFile}.WithEnv(getenv)
	// A command verifies servers; it presents no certificate of its own.
	files.Cert, files.Key = "", ""
	cfg, err := files.ClientIf(on || masterSaysHTTPS(master))
	if err != nil {
		return nil, err
	}
	return newTransport(cfg), nil
}

// masterSaysHTTPS reports whether a --master value is https://..., or a
// file:// naming a file that holds one. ZooKeeper entries carry no
// scheme; --ssl_ca_file decides for them.
func masterSaysHTTPS(master string) bool {
	s := strings.TrimSpace(master)
	if p, ok := strings.CutPrefix(s, "file://"); ok {
		b, err := os.ReadFile(p)
		if err != nil {
			// Resolving the master reports the unreadable file.
			return false
		}
		s = strings.TrimSpace(string(b))
	}
	return strings.HasPrefix(s, "https://")
}
