package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/frameworks"
	"google.golang.org/protobuf/proto"
)

// bucketJobs holds the job definitions (with their counts and schedules,
// which Chronos rewrites as runs are started) by name.
const bucketJobs = "jobs"

// Config is what `mesolite jobs` is told: Chronos's flags where they apply.
type Config struct {
	// Master is --master: host:port, zk://..., file://...
	Master string
	// Hostname and HTTPPort are where the API is reached: the framework's
	// webui_url and /scheduler/leader name them.
	Hostname string
	HTTPPort int
	// FrameworkName is --mesos_framework_name (chronos).
	FrameworkName   string
	FailoverTimeout time.Duration
	// Role is --mesos_role; empty subscribes with the default role "*".
	Role string
	// User runs jobs that name no runAsUser; empty: the current user.
	User string
	// WorkDir holds the local store when Store is nil.
	WorkDir string
	// Store keeps the jobs and the framework id; nil opens the local store
	// in WorkDir (and Run closes it).
	Store  frameworks.Store
	Logger *slog.Logger

	// RetryBackoff is the wait before a failed run's first retry; it
	// doubles with each further one, up to MaxRetryBackoff.
	RetryBackoff time.Duration

	// Tuning for tests; zero values are the defaults.
	Tick                     time.Duration
	DeclineIdle, DeclineBusy time.Duration
	MinReviveInterval        time.Duration
}

// Defaults of Config, Chronos's where it has them.
const (
	DefaultHTTPPort      = 8081
	DefaultFrameworkName = "chronos"
	DefaultRetryBackoff  = 10 * time.Second
	MaxRetryBackoff      = 10 * time.Minute
)

func (cfg Config) withDefaults() (Config, error) {
	if cfg.Master == "" {
		return cfg, fmt.Errorf("jobs: no master (--master): %w", errdefs.ErrInvalid)
	}
	if cfg.Store == nil && cfg.WorkDir == "" {
		return cfg, fmt.Errorf("jobs: no --work_dir for the state: %w", errdefs.ErrInvalid)
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
	if cfg.Tick <= 0 {
		cfg.Tick = time.Second
	}
	if cfg.RetryBackoff <= 0 {
		cfg.RetryBackoff = DefaultRetryBackoff
	}
	return cfg, nil
}

// Service is `mesolite jobs`: the jobs, the scheduler that runs them as
// tasks through a frameworks.Driver, and Chronos's REST API.
type Service struct {
	cfg       Config
	log       *slog.Logger
	store     frameworks.Store
	ownsStore bool
	driver    *frameworks.Driver
	handler   http.Handler
	wake      chan struct{}

	// mu guards jobs and the runs; store writes happen under it, so the
	// store sees changes in the order they were made.
	mu   sync.Mutex
	jobs map[string]*Job
	runs runTable
}

// New opens the state (the store under WorkDir unless given one), reads
// the jobs back, and prepares the framework. Nothing runs before Run.
func New(ctx context.Context, cfg Config) (*Service, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, log: cfg.Logger.With("component", "jobs"), store: cfg.Store, jobs: map[string]*Job{},
		wake: make(chan struct{}, 1), runs: newRunTable()}
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
	entries, err := s.store.List(ctx, bucketJobs)
	if err != nil {
		return fail(fmt.Errorf("reading the jobs: %w", err))
	}
	for _, e := range entries {
		var j Job
		if err := json.Unmarshal(e.Value, &j); err != nil {
			return fail(fmt.Errorf("reading job %s: %w", e.Key, err))
		}
		s.jobs[j.Name] = &j
	}
	fw := &mesos.FrameworkInfo{
		Name:            proto.String(cfg.FrameworkName),
		FailoverTimeout: proto.Float64(cfg.FailoverTimeout.Seconds()),
		Hostname:        proto.String(cfg.Hostname),
		WebuiUrl:        proto.String("http://" + s.leader()),
	}
	if cfg.User != "" {
		fw.User = proto.String(cfg.User)
	}
	if cfg.Role != "" {
		fw.Role = proto.String(cfg.Role)
	}
	s.driver, err = frameworks.NewDriver(ctx, frameworks.DriverConfig{
		Master: cfg.Master, Framework: fw, Store: s.store, Logger: cfg.Logger,
		DeclineIdle: cfg.DeclineIdle, DeclineBusy: cfg.DeclineBusy, MinReviveInterval: cfg.MinReviveInterval,
	}, s)
	if err != nil {
		return fail(err)
	}
	s.handler = bounded(s.routes())
	return s, nil
}

// leader is host:port of this instance, the only one (no election yet).
func (s *Service) leader() string {
	return net.JoinHostPort(s.cfg.Hostname, strconv.Itoa(s.cfg.HTTPPort))
}

// Handler is the HTTP API with its bounds.
func (s *Service) Handler() http.Handler { return s.handler }

// FrameworkID is the framework's id, empty until the first subscription.
func (s *Service) FrameworkID() string { return s.driver.FrameworkID() }

// Job returns a copy of the named job.
func (s *Service) Job(name string) (Job, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[name]
	if !ok {
		return Job{}, false
	}
	return *j, true
}

// putJobLocked stores j and makes it the job of its name. s.mu is held.
func (s *Service) putJobLocked(ctx context.Context, j *Job) error {
	b, err := json.Marshal(j)
	if err != nil {
		return err
	}
	if err := s.store.Apply(ctx, frameworks.Put(bucketJobs, j.Name, b)); err != nil {
		return fmt.Errorf("storing job %s: %w", j.Name, err)
	}
	s.jobs[j.Name] = j
	return nil
}

// AddJob adds or replaces a job (scheduled: POST /scheduler/iso8601;
// otherwise a dependent job, POST /scheduler/dependency). An empty
// schedule start is resolved to now and stored so.
func (s *Service) AddJob(ctx context.Context, j *Job, scheduled bool) error {
	now := time.Now()
	if err := j.Validate(scheduled, now); err != nil {
		return err
	}
	if j.Schedule != "" {
		sc, _ := ParseSchedule(j.Schedule, j.ScheduleTimeZone, now)
		j.Schedule = sc.String()
	}
	j.Parents = slices.Compact(slices.Sorted(slices.Values(j.Parents)))
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range j.Parents {
		if _, ok := s.jobs[p]; !ok {
			return fmt.Errorf("job %s: parent %s does not exist: %w", j.Name, p, errdefs.ErrInvalid)
		}
		if s.dependsOnLocked(p, j.Name) {
			return fmt.Errorf("job %s: parent %s depends on it (a cycle): %w", j.Name, p, errdefs.ErrInvalid)
		}
	}
	if err := s.putJobLocked(ctx, j); err != nil {
		return err
	}
	s.poke()
	return nil
}

// dependsOnLocked says whether job name has ancestor among its parents'
// parents, transitively.
func (s *Service) dependsOnLocked(name, ancestor string) bool {
	seen := map[string]bool{}
	stack := []string{name}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if n == ancestor {
			return true
		}
		if seen[n] {
			continue
		}
		seen[n] = true
		if j := s.jobs[n]; j != nil {
			stack = append(stack, j.Parents...)
		}
	}
	return false
}

// errNoJob is Chronos's answer for an unknown job name.
func errNoJob(name string) error {
	return fmt.Errorf("Job '%s' not found: %w", name, errdefs.ErrNotFound)
}

// DeleteJob removes a job, drops its queued runs and kills its running
// ones. A job others depend on is refused (delete them first).
func (s *Service) DeleteJob(ctx context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.jobs[name]; !ok {
		return errNoJob(name)
	}
	var children []string
	for _, j := range s.jobs {
		if slices.Contains(j.Parents, name) {
			children = append(children, j.Name)
		}
	}
	if len(children) > 0 {
		slices.Sort(children)
		return fmt.Errorf("job %s is a parent of %v; delete or change those first: %w", name, children, errdefs.ErrConflict)
	}
	if err := s.store.Apply(ctx, frameworks.Delete(bucketJobs, name)); err != nil {
		return fmt.Errorf("deleting job %s: %w", name, err)
	}
	delete(s.jobs, name)
	s.stopRunsLocked(name)
	return nil
}

// poke wakes the scheduler loop.
func (s *Service) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
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
		ReadTimeout:       bodyReadTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	wg.Add(3)
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
	go func() { defer wg.Done(); s.loop(ctx) }()
	s.log.Info("jobs service started", "address", ln.Addr().String(), "master", s.cfg.Master, "framework_name", s.cfg.FrameworkName)
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
	if s.ownsStore {
		s.store.Close()
	}
	return err
}
