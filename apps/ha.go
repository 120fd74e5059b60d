package apps

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/mesolite/mesolite/frameworks"
	"github.com/mesolite/mesolite/frameworks/ha"
	"github.com/mesolite/mesolite/httpauth"
)

// RunHA runs this instance as one of several on one ZooKeeper path
// (--zk), serving the API on ln until ctx ends or the instance loses
// leadership (an error: exit, as Marathon does, and let the service
// manager restart it). While another instance leads, every request but
// /ping, /metrics and GET /v2/leader, which it answers itself, is proxied
// to the leader as Marathon does (ha.HA.Proxy, with X-Marathon-Via; the
// leader is reached with cfg.MasterTLS when it serves https); once
// elected, the apps, instances and framework id are read from ZooKeeper
// and the framework fails over to the old leader's tasks, keeping every
// running instance. cfg.Store and cfg.WorkDir are not used.
func RunHA(ctx context.Context, cfg Config, h *ha.HA, ln net.Listener) error {
	cfg.HA = h
	cfg.WorkDir = ""
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Realm == "" {
		cfg.Realm = "marathon"
	}
	var auth *httpauth.Authenticator
	if len(cfg.Credentials) > 0 {
		var err error
		auth, err = httpauth.New(httpauth.Options{Enabled: true, Realm: cfg.Realm, Credentials: cfg.Credentials, Logger: cfg.Logger})
		if err != nil {
			return err
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/leader", func(w http.ResponseWriter, r *http.Request) {
		l := h.Leader()
		if l == "" {
			writeJSON(w, http.StatusNotFound, errorJSON{Message: "There is no leader"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"leader": l})
	})
	mux.HandleFunc("/ping", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "must-revalidate,no-cache,no-store")
		w.Write([]byte("pong\n"))
	})
	api := h.Proxy(ha.ProxyConfig{Via: viaHeader, TLS: cfg.MasterTLS, MaxBody: maxBodyBytes,
		ConnectTimeout: cfg.LeaderProxyConnectTimeout, ReadTimeout: cfg.LeaderProxyReadTimeout,
		Error: func(w http.ResponseWriter, code int, msg string) { writeJSON(w, code, errorJSON{Message: msg}) }})
	// /metrics is this instance's own, as in Marathon: the leader's
	// gauges while it leads, a standby's otherwise.
	started := time.Now()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		if h.Leading() {
			api.ServeHTTP(w, r)
			return
		}
		writeStandbyMetrics(w, started)
	})
	mux.Handle("/", api)
	srv := newServer(ctx, bounded(allowingOrigins(cfg.AllowOrigins, authenticated(auth, cfg.Realm, mux)), h.LeaderURL), cfg.Logger)
	cfg.Logger.Info("apps service started; contending for leadership", "address", ln.Addr().String(), "master", cfg.Master, "self", h.Self())
	return serve(ctx, srv, ln, func(ctx context.Context) error {
		return h.Run(ctx, func(ctx context.Context, st frameworks.Store) (ha.Term, error) {
			c := cfg
			c.Store = st
			svc, err := New(ctx, c)
			if err != nil {
				return nil, err
			}
			return haTerm{s: svc, ctx: ctx}, nil
		})
	})
}

// haTerm is a Service as a term of leadership: its API without the
// authentication and bounds RunHA's server already applies. Requests end
// with the term (ctx), so that an event stream does not outlive it.
type haTerm struct {
	s   *Service
	ctx context.Context
}

func (t haTerm) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(t.ctx, cancel)()
	t.s.api.ServeHTTP(w, r.WithContext(ctx))
}

func (t haTerm) Run(ctx context.Context) error { return t.s.runFramework(ctx) }

// viaHeader marks a request a standby proxied to the leader, and its
// answer (Marathon's name: a plain Via is dropped by Java's HTTP client).
const viaHeader = "X-Marathon-Via"

// writeStandbyMetrics is /metrics on a standby: the gauges of a Marathon
// that does not lead (no apps of its own, not connected to Mesos).
func writeStandbyMetrics(w http.ResponseWriter, started time.Time) {
	gauge := func(v any) map[string]any { return map[string]any{"value": v} }
	writeJSON(w, http.StatusOK, map[string]any{
		"version": "4.0.0",
		"gauges": map[string]any{
			"marathon.leadership.elected.gauge": gauge(0),
			"marathon.mesos.connected.gauge":    gauge(0),
			"marathon.uptime.gauge":             gauge(time.Since(started).Milliseconds()),
		},
		"counters": map[string]any{}, "histograms": map[string]any{}, "meters": map[string]any{}, "timers": map[string]any{},
	})
}
