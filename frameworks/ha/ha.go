// Package ha runs several instances of a built-in framework (apps, jobs)
// as one: they elect a leader through ZooKeeper, the leader keeps the
// framework's state in ZooKeeper (frameworks/zkstore) and runs the
// framework, and the others stand by, passing the API on to the leader:
// redirecting it (HA itself, as Chronos does) or proxying it (Proxy, as
// Marathon does).
//
// # Lifecycle of an instance
//
//	contending ──elected──▶ leading ──DELETE leader (abdicate)──▶ contending again
//	    │                     │
//	    │ session lost        │ session lost, or disconnected for half
//	    ▼                     ▼ the session timeout
//	contending again        Run returns an error: the process exits
//
// While contending (a standby) every request but the ones the service
// answers itself (health, ping, the leader's address) gets 307 Temporary
// Redirect to the same path and query on the leader, or, through Proxy,
// is proxied to the leader; 503 while none is elected. Once elected, the instance opens the store fenced on its own
// election znode (a write after its session ended fails, see zkstore),
// builds the framework from the store (the same framework id, so it fails
// over to the old leader's tasks and reconciles them), and serves its API.
//
// A leader that loses its ZooKeeper session stops leading at once: the
// framework is stopped and Run returns an error, so the process exits, as
// Marathon's does; a service manager restarts it as a standby. Until it
// notices, its store writes are refused by the fence, and the master
// accepts the framework's subscription from one instance only (the new
// leader's SUBSCRIBE with the same framework id replaces the old one).
package ha

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/mesolite/mesolite/detector"
	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/frameworks"
	"github.com/mesolite/mesolite/frameworks/zkstore"
)

// Config configures New.
type Config struct {
	// ZK is zk://[user:password@]host:port[,...]/path. The election's
	// znodes are under <path>/leader, the store's under <path>/state.
	ZK string
	// Hostname and Port are where this instance's API is reached: what
	// standbys redirect to while it leads.
	Hostname string
	Port     int
	// Scheme of the API, "http" (default) or "https".
	Scheme string
	// SessionTimeout of the ZooKeeper sessions (election and store);
	// default 10 s. A killed leader is replaced after about this long.
	SessionTimeout time.Duration
	Logger         *slog.Logger
}

// Term is one term of leadership: the framework built from the store.
type Term interface {
	// ServeHTTP serves the API while the term lasts.
	http.Handler
	// Run runs the framework until ctx ends (nil) or it fails.
	Run(ctx context.Context) error
}

// StartFunc builds a term from the store: it reads the state back and
// prepares the framework. The store stays open for the term and is closed
// after Run returns.
type StartFunc func(ctx context.Context, store frameworks.Store) (Term, error)

// HA is one instance's place in the election; it is also the handler that
// routes the API to the term while leading and redirects it otherwise.
type HA struct {
	cfg      Config
	url      detector.ZKURL
	log      *slog.Logger
	self     string
	abdicate chan struct{}

	mu     sync.Mutex
	term   Term
	leader string // host:port of the elected leader, "" while none
}

// New checks the configuration; nothing connects before Run.
func New(cfg Config) (*HA, error) {
	u, err := detector.ParseZK(cfg.ZK)
	if err != nil {
		return nil, err
	}
	if cfg.Hostname == "" || cfg.Port <= 0 {
		return nil, fmt.Errorf("high availability needs this instance's hostname and port to redirect to: %w", errdefs.ErrInvalid)
	}
	if cfg.Scheme == "" {
		cfg.Scheme = "http"
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &HA{cfg: cfg, url: u, log: cfg.Logger.With("component", "ha", "zk", u.String()),
		self: net.JoinHostPort(cfg.Hostname, strconv.Itoa(cfg.Port)), abdicate: make(chan struct{}, 1)}, nil
}

// electionURL and storeURL are the two paths under the configured one.
func (h *HA) electionURL() string { return h.withPath(h.url.Path + "/leader") }
func (h *HA) storeURL() string    { return h.withPath(h.url.Path + "/state") }

func (h *HA) withPath(p string) string {
	u := h.url
	u.Path = p
	s := u.String()
	if u.Auth != "" {
		s = "zk://" + u.Auth + "@" + s[len("zk://"):]
	}
	return s
}

// ZK is the configured ZooKeeper URL without its credentials.
func (h *HA) ZK() string { return h.url.String() }

// SessionTimeout is the ZooKeeper session timeout in use.
func (h *HA) SessionTimeout() time.Duration { return h.cfg.SessionTimeout }

// Self is this instance's host:port.
func (h *HA) Self() string { return h.self }

// Leader is the elected leader's host:port, "" while none is known (or
// this instance is elected and its term is not serving yet).
func (h *HA) Leader() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.term != nil:
		return h.self
	case h.leader == h.self:
		return ""
	}
	return h.leader
}

// Leading says whether this instance leads now.
func (h *HA) Leading() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.term != nil
}

// LeaderURL is the leader's API base URL, "" while none is known.
func (h *HA) LeaderURL() string {
	if l := h.Leader(); l != "" {
		return h.cfg.Scheme + "://" + l
	}
	return ""
}

// Abdicate ends this instance's term: the framework stops, the instance
// withdraws (another is elected at once) and contends again. It does
// nothing on a standby.
func (h *HA) Abdicate() {
	select {
	case h.abdicate <- struct{}{}:
	default:
	}
}

// ServeHTTP serves the term's API while leading; a standby answers 307 to
// the same path and query on the leader, or 503 while none is elected.
func (h *HA) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	term, leader := h.term, h.leader
	h.mu.Unlock()
	if term != nil {
		term.ServeHTTP(w, r)
		return
	}
	if leader == "" || leader == h.self {
		// None elected, or ours is elected and its term is starting.
		w.Header().Set("Retry-After", "1")
		errdefs.HTTPError(w, errdefs.Classf(errdefs.ErrUnavailable, "no leader is elected yet; try again shortly"))
		return
	}
	http.Redirect(w, r, h.cfg.Scheme+"://"+leader+r.URL.RequestURI(), http.StatusTemporaryRedirect)
}

// ErrLeadershipLost is returned by Run when the leader lost its ZooKeeper
// session: the process should exit and be restarted as a standby.
var ErrLeadershipLost = fmt.Errorf("leadership lost: %w", errdefs.ErrUnavailable)

// Run takes part in the election until ctx ends (nil) or this instance
// loses leadership (an error wrapping ErrLeadershipLost) or its term
// cannot start (the error of start). While leading it runs the term start
// builds.
func (h *HA) Run(ctx context.Context, start StartFunc) error {
	// The detector speaks of masters; this package logs the election in
	// its own words and keeps only the detector's warnings.
	dlog := slog.New(warnOnly{h.cfg.Logger.Handler()})
	det, err := detector.New(h.electionURL(), detector.WithLogger(dlog), detector.WithSessionTimeout(h.cfg.SessionTimeout))
	if err != nil {
		return err
	}
	defer det.Close()
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go func() {
		for info := range det.Watch(wctx) {
			leader := ""
			if !info.IsZero() {
				leader = info.HostPort()
			}
			h.mu.Lock()
			h.leader = leader
			h.mu.Unlock()
			h.log.Info("leader known", "leader", leader, "self", h.self)
		}
	}()

	info := detector.MasterInfo{Hostname: h.cfg.Hostname, Port: h.cfg.Port, ID: h.self}
	for {
		c, err := detector.Contend(ctx, h.electionURL(), info, detector.WithLogger(dlog), detector.WithSessionTimeout(h.cfg.SessionTimeout))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("joining the election: %w", err)
		}
		h.log.Info("standing by for leadership", "znode", c.Node())
		select {
		case <-ctx.Done():
			c.Close()
			return nil
		case <-c.Lost():
			// A standby lost nothing but its place in the queue.
			h.log.Warn("lost the place in the election; joining again", "error", c.Err())
			c.Close()
			continue
		case <-c.Elected():
		}
		// An abdication asked for while standing by is stale.
		select {
		case <-h.abdicate:
		default:
		}
		err = h.lead(ctx, c, start)
		c.Close()
		if err != nil || ctx.Err() != nil {
			return err
		}
		// Abdicated: give the others a moment to take over before
		// joining the queue again.
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// lead runs one term. It returns nil when ctx ended or the term was
// abdicated.
func (h *HA) lead(ctx context.Context, c *detector.Contender, start StartFunc) error {
	h.log.Info("elected: taking over", "znode", c.Node())
	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	store, err := zkstore.Open(tctx, zkstore.Config{URL: h.storeURL(), Fence: c.Node(), SessionTimeout: h.cfg.SessionTimeout, Logger: h.cfg.Logger})
	if err != nil {
		return fmt.Errorf("opening the state in ZooKeeper: %w", err)
	}
	defer store.Close()
	term, err := start(tctx, store)
	if err != nil {
		return fmt.Errorf("starting the framework from its state: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- term.Run(tctx) }()
	h.mu.Lock()
	h.term = term
	h.mu.Unlock()
	stop := func() error {
		h.mu.Lock()
		h.term = nil
		h.mu.Unlock()
		cancel()
		return <-done
	}
	check := time.NewTicker(h.cfg.SessionTimeout / 10)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return stop()
		case <-h.abdicate:
			h.log.Info("abdicating")
			if err := stop(); err != nil {
				h.log.Warn("the framework stopped with an error", "error", err)
			}
			return nil
		case <-c.Lost():
			stop()
			return fmt.Errorf("%w: %w", ErrLeadershipLost, c.Err())
		case err := <-done:
			h.mu.Lock()
			h.term = nil
			h.mu.Unlock()
			if err == nil {
				err = errors.New("the framework stopped")
			}
			return err
		case <-check.C:
			// ZooKeeper unreachable for half the session: the session
			// may expire any moment, and another instance be elected
			// then. Stop before that rather than after.
			if d := store.Disconnected(); d > h.cfg.SessionTimeout/2 {
				stop()
				return fmt.Errorf("%w: ZooKeeper unreachable for %s", ErrLeadershipLost, d.Round(time.Millisecond))
			}
		}
	}
}

// warnOnly passes on warnings and errors only.
type warnOnly struct{ slog.Handler }

func (w warnOnly) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && w.Handler.Enabled(ctx, l)
}

func (w warnOnly) WithAttrs(attrs []slog.Attr) slog.Handler {
	return warnOnly{w.Handler.WithAttrs(attrs)}
}
func (w warnOnly) WithGroup(name string) slog.Handler { return warnOnly{w.Handler.WithGroup(name)} }
