package apps

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/frameworks"
	"github.com/mesolite/mesolite/frameworks/ha"
	"github.com/mesolite/mesolite/httpauth"
	"google.golang.org/protobuf/proto"
)

// Config is what `mesolite apps` is told: Marathon's flags where they
// apply.
type Config struct {
	// Master is --master: host:port, zk://..., file://...
	Master string
	// Hostname and HTTPPort are where the API is reached: the framework's
	// webui_url and /v2/leader name them.
	Hostname string
	HTTPPort int
	// HTTPS: the API is served over TLS (its URLs say https).
	HTTPS bool
	// FrameworkName is --framework_name (marathon: mesos-dns and other
	// tools build names from it).
	FrameworkName   string
	FailoverTimeout time.Duration
	// Role is --mesos_role; empty subscribes with the default role "*".
	Role string
	// User runs tasks that name none (--mesos_user); empty: the current
	// user.
	User string
	// WorkDir holds the local store when Store is nil.
	WorkDir string
	// Store keeps the framework's state; nil opens the local store in
	// WorkDir (and Run closes it).
	Store frameworks.Store
	// TaskLaunchTimeout is how long an instance may take from its launch
	// to TASK_RUNNING before it is killed and replaced.
	TaskLaunchTimeout time.Duration
	// Credentials, when any, are required (HTTP Basic) on every endpoint
	// but /ping (--http_credentials).
	Credentials []httpauth.Credential
	// Principal and Secret authenticate with the master; MasterTLS
	// verifies an https master.
	Principal, Secret string
	MasterTLS         *tls.Config
	// ServicePortMin and Max bound the service ports given to apps
	// (--local_port_min, --local_port_max).
	ServicePortMin, ServicePortMax int
	// MaxEventStreams bounds the /v2/events subscribers.
	MaxEventStreams int
	// HA, when set, is the election this instance takes part in (RunHA
	// sets it): /v2/leader names the leader it knows and DELETE
	// /v2/leader abdicates.
	HA *ha.HA
	// LeaderProxyConnectTimeout and LeaderProxyReadTimeout bound a
	// standby's requests to the leader (Marathon's
	// --leader_proxy_connection_timeout and --leader_proxy_read_timeout;
	// zero: 5 s and 10 s, see ha.ProxyConfig).
	LeaderProxyConnectTimeout, LeaderProxyReadTimeout time.Duration
	// WebUIURL is the framework's web UI link in the master's UI
	// (--webui_url); empty: this instance's API.
	WebUIURL string
	// MesosLeaderUIURL is the master's UI /v2/info names, which the web
	// page links tasks to (--mesos_leader_ui_url); empty: the leading
	// master's, as the driver finds it.
	MesosLeaderUIURL string
	// Realm is the HTTP Basic realm of Credentials (--http_realm);
	// empty: "marathon".
	Realm string
	// MaxVersions is how many versions of each app are kept
	// (--zk_max_versions); zero: 50.
	MaxVersions int
	// AllowOrigins are the origins whose pages may read the API from a
	// browser (--access_control_allow_origin; "*": any), see
	// allowingOrigins; empty: none but the API's own.
	AllowOrigins []string
	// EnvVarsPrefix is put before the names of the variables HOST and
	// PORT* that every task is given (--env_vars_prefix).
	EnvVarsPrefix string

	Logger *slog.Logger

	// KillRetry is how long a kill waits for its task to end before it is
	// sent again (--kill_retry_timeout); DeclineIdle how long offers are
	// declined for when no instance waits for one
	// (--decline_offer_duration); MinReviveInterval the fewest time
	// between two REVIVEs (--min_revive_offers_interval);
	// ReconcileInterval how often the instances' states are reconciled
	// with the master (--reconciliation_interval). Zero values are the
	// defaults (frameworks.DriverConfig's for the last three).
	KillRetry                time.Duration
	DeclineIdle, DeclineBusy time.Duration
	MinReviveInterval        time.Duration
	ReconcileInterval        time.Duration

	// Tick is the engine's period (tests); zero: 1 s.
	Tick time.Duration
}

// Defaults of Config, Marathon's where it has them.
const (
	DefaultHTTPPort          = 8080
	DefaultFrameworkName     = "marathon"
	DefaultTaskLaunchTimeout = 300 * time.Second
	DefaultServicePortMin    = 10000
	DefaultServicePortMax    = 20000
)

func (cfg Config) withDefaults() (Config, error) {
	if cfg.Master == "" {
		return cfg, fmt.Errorf("apps: no master (--master): %w", errdefs.ErrInvalid)
	}
	if cfg.Store == nil && cfg.WorkDir == "" {
		return cfg, fmt.Errorf("apps: no --work_dir for the state: %w", errdefs.ErrInvalid)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HTTPPort == 0 {
		cfg.HTTPPort = DefaultHTTPPort
	}
	if cfg.FrameworkName == "" {
		cfg.FrameworkName = DefaultFrameworkName
	}
	if cfg.FailoverTimeout <= 0 {
		cfg.FailoverTimeout = frameworks.DefaultFailoverTimeout
	}
	if cfg.TaskLaunchTimeout <= 0 {
		cfg.TaskLaunchTimeout = DefaultTaskLaunchTimeout
	}
	if cfg.ServicePortMin == 0 && cfg.ServicePortMax == 0 {
		cfg.ServicePortMin, cfg.ServicePortMax = DefaultServicePortMin, DefaultServicePortMax
	}
	if cfg.ServicePortMin <= 0 || cfg.ServicePortMax > 65535 || cfg.ServicePortMin > cfg.ServicePortMax {
		return cfg, fmt.Errorf("apps: service ports %d-%d are not a range of ports: %w", cfg.ServicePortMin, cfg.ServicePortMax, errdefs.ErrInvalid)
	}
	if cfg.Realm == "" {
		cfg.Realm = "marathon"
	}
	if cfg.MaxVersions <= 0 {
		cfg.MaxVersions = 50
	}
	if cfg.MaxEventStreams <= 0 {
		cfg.MaxEventStreams = 256
	}
	if cfg.Tick <= 0 {
		cfg.Tick = time.Second
	}
	if cfg.KillRetry <= 0 {
		cfg.KillRetry = 10 * time.Second
	}
	return cfg, nil
}

// Service is `mesolite apps`: the framework (its driver and engine) and
// its HTTP API.
type Service struct {
	cfg       Config
	log       *slog.Logger
	store     frameworks.Store
	ownsStore bool
	eng       *engine
	driver    *frameworks.Driver
	bus       *eventBus
	auth      *httpauth.Authenticator
	api       http.Handler // routes, without authentication and bounds
	handler   http.Handler
	started   time.Time
}

// New opens the state (the store under WorkDir unless given one), reads
// it back, and prepares the framework. Nothing runs before Run.
func New(ctx context.Context, cfg Config) (*Service, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, log: cfg.Logger, store: cfg.Store, started: time.Now()}
	if s.store == nil {
		if s.store, err = frameworks.OpenLocalStore(cfg.WorkDir); err != nil {
			return nil, err
		}
		s.ownsStore = true
	}
	fail := func(err error) (*Service, error) {
		if s.ownsStore {
			s.store.Close()
		}
		return nil, err
	}
	s.bus = newEventBus(cfg.MaxEventStreams)
	s.eng = newEngine(engineConfig{
		Role: cfg.Role, TaskLaunchTimeout: cfg.TaskLaunchTimeout, KillRetry: cfg.KillRetry, Tick: cfg.Tick,
		MaxVersions: cfg.MaxVersions, ServicePortMin: cfg.ServicePortMin, ServicePortMax: cfg.ServicePortMax, Logger: cfg.Logger,
		EnvVarsPrefix: cfg.EnvVarsPrefix,
	}, s.store, s.bus)
	if err := s.eng.load(ctx); err != nil {
		return fail(fmt.Errorf("reading the state: %w", err))
	}
	fw := &mesos.FrameworkInfo{
		Name:            proto.String(cfg.FrameworkName),
		FailoverTimeout: proto.Float64(cfg.FailoverTimeout.Seconds()),
		Hostname:        proto.String(cfg.Hostname),
		WebuiUrl:        proto.String(s.frameworkWebUIURL()),
	}
	if cfg.User != "" {
		fw.User = proto.String(cfg.User)
	}
	if cfg.Role != "" {
		fw.Role = proto.String(cfg.Role)
	}
	// PARTITION_AWARE: a lost agent's tasks are TASK_UNREACHABLE, and
	// may come back, so that apps' unreachableStrategy decides.
	fw.Capabilities = append(fw.Capabilities, &mesos.FrameworkInfo_Capability{Type: mesos.FrameworkInfo_Capability_PARTITION_AWARE.Enum()})
	s.driver, err = frameworks.NewDriver(ctx, frameworks.DriverConfig{
		Master: cfg.Master, Framework: fw, Store: s.store, Principal: cfg.Principal, Secret: cfg.Secret, TLS: cfg.MasterTLS,
		Logger: cfg.Logger, DeclineIdle: cfg.DeclineIdle, DeclineBusy: cfg.DeclineBusy, MinReviveInterval: cfg.MinReviveInterval,
		ReconcileInterval: cfg.ReconcileInterval,
	}, s.eng)
	if err != nil {
		return fail(err)
	}
	s.eng.master = s.driver
	if len(cfg.Credentials) > 0 {
		s.auth, err = httpauth.New(httpauth.Options{Enabled: true, Realm: cfg.Realm, Credentials: cfg.Credentials, Logger: cfg.Logger})
		if err != nil {
			return fail(err)
		}
	}
	s.api = s.routes()
	s.handler = bounded(allowingOrigins(cfg.AllowOrigins, authenticated(s.auth, cfg.Realm, s.api)), s.leaderURL)
	return s, nil
}

// webUIURL is this instance's API, the framework's web UI link.
func (s *Service) webUIURL() string { return s.scheme() + "://" + s.self() }

// frameworkWebUIURL is the link the master's UI shows for the framework:
// --webui_url, else this instance's API.
func (s *Service) frameworkWebUIURL() string {
	if s.cfg.WebUIURL != "" {
		return s.cfg.WebUIURL
	}
	return s.webUIURL()
}

// leaderURL is the leading instance's API: this one's, unless it takes
// part in an election.
func (s *Service) leaderURL() string {
	if s.cfg.HA != nil {
		return s.cfg.HA.LeaderURL()
	}
	return s.webUIURL()
}

func (s *Service) scheme() string {
	if s.cfg.HTTPS {
		return "https"
	}
	return "http"
}

// Handler is the HTTP API, with its authentication and bounds.
func (s *Service) Handler() http.Handler { return s.handler }

// FrameworkID is the framework's id, empty until the first subscription.
func (s *Service) FrameworkID() string { return s.driver.FrameworkID() }

// authenticated requires the credentials on every endpoint but /ping,
// answering 401 as Marathon does; a nil auth requires none.
func authenticated(auth *httpauth.Authenticator, realm string, next http.Handler) http.Handler {
	if auth == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ping" {
			next.ServeHTTP(w, r)
			return
		}
		if _, err := auth.Authenticate(r); err != nil {
			w.Header().Set("WWW-Authenticate", `Basic realm="`+realm+`"`)
			writeJSON(w, http.StatusUnauthorized, errorJSON{Message: "Invalid username or password."})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// bounded caps request bodies and sets the headers every answer carries,
// X-Marathon-Leader among them.
func bounded(next http.Handler, leaderURL func() string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > maxBodyBytes {
			writeJSON(w, http.StatusRequestEntityTooLarge, errorJSON{Message: fmt.Sprintf("Request body is larger than %d bytes", maxBodyBytes)})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		if l := leaderURL(); l != "" {
			h.Set("X-Marathon-Leader", l)
		}
		next.ServeHTTP(w, r)
	})
}

// newServer is the API's HTTP server, bounded; its handlers (event
// streams) end with ctx.
func newServer(ctx context.Context, h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// serve serves srv on ln until ctx ends or run returns, then shuts the
// server down and returns run's error.
func serve(ctx context.Context, srv *http.Server, ln net.Listener, run func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("serving the API: %w", err)
			cancel()
		}
	}()
	err := run(ctx)
	select {
	case serr := <-errc:
		if err == nil {
			err = serr
		}
	default:
	}
	cancel() // event streams end
	shutdown, done := context.WithTimeout(context.Background(), 5*time.Second)
	srv.Shutdown(shutdown)
	done()
	srv.Close()
	<-served
	return err
}

// Run serves the API on ln and runs the framework until ctx ends or the
// master refuses the framework for good. It closes ln, and the store if
// New opened it.
func (s *Service) Run(ctx context.Context, ln net.Listener) error {
	srv := newServer(ctx, s.handler, s.log)
	s.log.Info("apps service started", "address", ln.Addr().String(), "master", s.cfg.Master, "framework_name", s.cfg.FrameworkName)
	return serve(ctx, srv, ln, s.runFramework)
}

// runFramework runs the engine and the driver until ctx ends (nil) or the
// master refuses the framework for good; it closes the store if New
// opened it.
func (s *Service) runFramework(ctx context.Context) error {
	engCtx, stopEngine := context.WithCancel(context.WithoutCancel(ctx))
	engDone := make(chan struct{})
	go func() { defer close(engDone); s.eng.run(engCtx) }()
	probeCtx, stopProber := context.WithCancel(ctx)
	proberDone := make(chan struct{})
	go func() { defer close(proberDone); newProber(s.eng, s.log).run(probeCtx) }()
	err := s.driver.Run(ctx)
	if err != nil {
		err = fmt.Errorf("framework: %w", err)
	}
	// The engine stops last: the driver's and the prober's calls into it
	// have returned.
	stopProber()
	<-proberDone
	stopEngine()
	<-engDone
	if s.ownsStore {
		s.store.Close()
	}
	return err
}
