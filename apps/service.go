package apps

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/frameworks"
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
	Logger          *slog.Logger

	// Tuning for tests; zero values are the defaults.
	Tick                     time.Duration
	KillRetry                time.Duration
	DeclineIdle, DeclineBusy time.Duration
	MinReviveInterval        time.Duration
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
		MaxVersions: 50, ServicePortMin: cfg.ServicePortMin, ServicePortMax: cfg.ServicePortMax, Logger: cfg.Logger,
	}, s.store, s.bus)
	if err := s.eng.load(ctx); err != nil {
		return fail(fmt.Errorf("reading the state: %w", err))
	}
	fw := &mesos.FrameworkInfo{
		Name:            proto.String(cfg.FrameworkName),
		FailoverTimeout: proto.Float64(cfg.FailoverTimeout.Seconds()),
		Hostname:        proto.String(cfg.Hostname),
		WebuiUrl:        proto.String(s.webUIURL()),
	}
	if cfg.User != "" {
		fw.User = proto.String(cfg.User)
	}
	if cfg.Role != "" {
		fw.Role = proto.String(cfg.Role)
	}
	s.driver, err = frameworks.NewDriver(ctx, frameworks.DriverConfig{
		Master: cfg.Master, Framework: fw, Store: s.store, Principal: cfg.Principal, Secret: cfg.Secret, TLS: cfg.MasterTLS,
		Logger: cfg.Logger, DeclineIdle: cfg.DeclineIdle, DeclineBusy: cfg.DeclineBusy, MinReviveInterval: cfg.MinReviveInterval,
	}, s.eng)
	if err != nil {
		return fail(err)
	}
	s.eng.master = s.driver
	if len(cfg.Credentials) > 0 {
		s.auth, err = httpauth.New(httpauth.Options{Enabled: true, Realm: "marathon", Credentials: cfg.Credentials, Logger: cfg.Logger})
		if err != nil {
			return fail(err)
		}
	}
	s.handler = s.bounded(s.authenticated(s.routes()))
	return s, nil
}

func (s *Service) webUIURL() string { return s.scheme() + "://" + s.leader() }

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
// answering 401 as Marathon does.
func (s *Service) authenticated(next http.Handler) http.Handler {
	if s.auth == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ping" {
			next.ServeHTTP(w, r)
			return
		}
		if _, err := s.auth.Authenticate(r); err != nil {
			w.Header().Set("WWW-Authenticate", `Basic realm="marathon"`)
			writeJSON(w, http.StatusUnauthorized, errorJSON{Message: "Invalid username or password."})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// bounded caps request bodies and sets the headers every answer carries.
func (s *Service) bounded(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > maxBodyBytes {
			writeJSON(w, http.StatusRequestEntityTooLarge, errorJSON{Message: fmt.Sprintf("Request body is larger than %d bytes", maxBodyBytes)})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		h.Set("X-Marathon-Leader", s.webUIURL())
		next.ServeHTTP(w, r)
	})
}

// Run serves the API on ln and runs the framework until ctx ends or the
// master refuses the framework for good. It closes ln, and the store if
// New opened it.
func (s *Service) Run(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		// Handlers (event streams) end with the service.
		BaseContext: func(net.Listener) context.Context { return ctx },
		ErrorLog:    slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	engCtx, stopEngine := context.WithCancel(context.WithoutCancel(ctx))
	engDone := make(chan struct{})
	go func() { defer close(engDone); s.eng.run(engCtx) }()

	var wg sync.WaitGroup
	errc := make(chan error, 2)
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("serving the API: %w", err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := s.driver.Run(ctx); err != nil {
			errc <- fmt.Errorf("framework: %w", err)
		}
	}()
	s.log.Info("apps service started", "address", ln.Addr().String(), "master", s.cfg.Master, "framework_name", s.cfg.FrameworkName)

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancel()
	shutdown, done := context.WithTimeout(context.Background(), 5*time.Second)
	srv.Shutdown(shutdown)
	done()
	srv.Close()
	wg.Wait()
	// The engine stops last: the driver's calls into it have returned.
	stopEngine()
	<-engDone
	if s.ownsStore {
		s.store.Close()
	}
	return err
}
