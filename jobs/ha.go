package jobs

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"

	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/frameworks"
	"github.com/mesolite/mesolite/frameworks/ha"
)

// RunHA runs this instance as one of several on one ZooKeeper path
// (--zk_hosts, --zk_path), serving the API on ln until ctx ends or the
// instance loses leadership (an error: exit, as Chronos does, and let the
// service manager restart it). While another instance leads, every
// request but /ping and the leader endpoints is answered 307 with the
// leader's URL; once elected, the jobs and the framework id are read from
// ZooKeeper and the framework fails over to the old leader's tasks.
// cfg.Store and cfg.WorkDir are not used.
func RunHA(ctx context.Context, cfg Config, h *ha.HA, ln net.Listener) error {
	cfg.HA = h
	cfg.WorkDir = ""
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	leader := func(w http.ResponseWriter, r *http.Request) {
		l := h.Leader()
		if l == "" {
			writeError(w, errdefs.Classf(errdefs.ErrUnavailable, "no leader is elected yet"))
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"leader": l})
	}
	mux := http.NewServeMux()
	for _, prefix := range []string{"", "/v1"} {
		mux.HandleFunc("GET "+prefix+"/scheduler/leader", leader)
	}
	mux.HandleFunc("GET /leader", leader)
	mux.HandleFunc("/ping", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "pong\n")
	})
	mux.Handle("/", h)
	auth, err := newAuth(cfg)
	if err != nil {
		return err
	}
	srv := newServer(ctx, bounded(auth.Wrap(mux)), cfg.Logger)
	cfg.Logger.Info("jobs service started; contending for leadership", "address", ln.Addr().String(), "master", cfg.Master, "self", h.Self())
	return serve(ctx, srv, ln, func(ctx context.Context) error {
		return h.Run(ctx, func(ctx context.Context, st frameworks.Store) (ha.Term, error) {
			c := cfg
			c.Store = st
			svc, err := New(ctx, c)
			if err != nil {
				return nil, err
			}
			return haTerm{svc}, nil
		})
	})
}

// haTerm is a Service as a term of leadership: its API without the bounds
// RunHA's server already applies.
type haTerm struct{ s *Service }

func (t haTerm) ServeHTTP(w http.ResponseWriter, r *http.Request) { t.s.api.ServeHTTP(w, r) }
func (t haTerm) Run(ctx context.Context) error                    { return t.s.runFramework(ctx) }
