package jobs

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/frameworks"
	"github.com/mesolite/mesolite/frameworks/ha"
	"github.com/mesolite/mesolite/httpauth"
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
	// HTTPS: the API is served over TLS (--ssl_cert_file), so its own
	// URLs (webui_url, /scheduler/leader, the mail's link, the standbys'
	// redirects) are https.
	HTTPS bool
	// FrameworkName is --mesos_framework_name (chronos).
	FrameworkName string
	// Principal and Secret authenticate with the master
	// (--mesos_authentication_principal, --mesos_authentication_secret_file);
	// MasterTLS reaches an https master (nil: plain http).
	Principal, Secret string
	MasterTLS         *tls.Config
	FailoverTimeout   time.Duration
	// Role is --mesos_role; empty subscribes with the default role "*".
	Role string
	// User runs jobs that name no runAsUser; empty: the current user.
	User string
	// WorkDir holds the local store when Store is nil.
	WorkDir string
	// Store keeps the jobs and the framework id; nil opens the local store
	// in WorkDir (and Run closes it).
	Store frameworks.Store
	// HA, when set, is the election this instance takes part in (RunHA
	// sets it): /scheduler/leader names the leader it knows.
	HA     *ha.HA
	Logger *slog.Logger

	// RetryBackoff is the wait before a failed run's first retry; it
	// doubles with each further one, up to MaxRetryBackoff.
	RetryBackoff time.Duration
	// DisableAfterFailures is --disable_after_failures: a job that fails
	// this many times in a row (retries done) is disabled; 0: never.
	DisableAfterFailures int
	// NotificationURL is --http_notification_url: failed runs and jobs
	// disabled for failing are POSTed to it (notify.go); empty: none.
	NotificationURL string
	// NotificationTLS verifies an https NotificationURL: --ssl_ca_file's
	// CA besides the system's roots; nil: the system's roots.
	NotificationTLS *tls.Config
	// NotificationUser and NotificationPassword, when set, go with each
	// POST to NotificationURL (HTTP Basic; --http_notification_credentials).
	NotificationUser, NotificationPassword string
	// SlackURL and MattermostURL are incoming webhooks each notice is
	// posted to as a chat message (--slack_url, --mattermost_url).
	SlackURL, MattermostURL string
	// ClusterName is --cluster_name, said in each notice.
	ClusterName string
	// Defaults fill what a job leaves out (--mesos_task_cpu,
	// --mesos_task_mem, --mesos_task_disk, --task_epsilon).
	Defaults JobDefaults
	// WebUIURL is --webui_url, the framework's link in the master's UI;
	// empty: this API's own URL.
	WebUIURL string
	// ReconcileInterval is --reconciliation_interval: how often the tasks'
	// states are asked of the master; zero: the driver's default.
	ReconcileInterval time.Duration
	// Credentials, when any, are required (HTTP Basic) on the API and the
	// page, every path but /ping (--http_credentials), in Realm (default
	// chronos; --http_realm).
	Credentials []httpauth.Credential
	Realm       string
	// Mail, when set, mails the same notices to each job's owners
	// (--mail_server and its company; mail.go).
	Mail *MailConfig
	// NoticeBackoff is the wait before a notice's second attempt; it
	// doubles with each further one (zero: 2 s).
	NoticeBackoff time.Duration

	// Tuning for tests; zero values are the defaults. Tick is how often
	// a due job waiting for its run in flight is looked at again.
	Tick                     time.Duration
	DeclineIdle, DeclineBusy time.Duration
	// MinReviveInterval spaces the driver's REVIVEs; jobs' default is
	// DefaultMinReviveInterval, shorter than the driver's.
	MinReviveInterval time.Duration
}

// Defaults of Config, Chronos's where it has them.
const (
	DefaultHTTPPort      = 8081
	DefaultFrameworkName = "chronos"
	DefaultRetryBackoff  = 10 * time.Second
	MaxRetryBackoff      = 10 * time.Minute
	// DefaultMinReviveInterval is shorter than the driver's second: runs
	// fall due on whole seconds, and revives spaced by exactly a second
	// lock into a phase behind them (measured: 0.75 s median delay at 120
	// jobs); at most five REVIVEs a second still spare the master.
	DefaultMinReviveInterval = 200 * time.Millisecond
)

func (cfg Config) withDefaults() (Config, error) {
	if cfg.Master == "" {
		return cfg, fmt.Errorf("jobs: no master (--master): %w", errdefs.ErrInvalid)
	}
	if cfg.Mail != nil {
		if err := cfg.Mail.Validate(); err != nil {
			return cfg, fmt.Errorf("jobs: %w", err)
		}
	}
	if cfg.Store == nil && cfg.WorkDir == "" {
		return cfg, fmt.Errorf("jobs: no --work_dir for the state: %w", errdefs.ErrInvalid)
	}
	if err := ValidClusterName(cfg.ClusterName); err != nil {
		return cfg, fmt.Errorf("jobs: %w", err)
	}
	for _, u := range []struct{ flag, url string }{{"--http_notification_url", cfg.NotificationURL}, {"--slack_url", cfg.SlackURL},
		{"--mattermost_url", cfg.MattermostURL}, {"--webui_url", cfg.WebUIURL}} {
		if u.url == "" {
			continue
		}
		if p, err := url.Parse(u.url); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return cfg, fmt.Errorf("jobs: %s must be an http:// or https:// URL: %w", u.flag, errdefs.ErrInvalid)
		}
	}
	if d := cfg.Defaults; d.CPUs < 0 || d.Mem < 0 || d.Disk < 0 {
		return cfg, fmt.Errorf("jobs: --mesos_task_cpu, --mesos_task_mem and --mesos_task_disk must not be negative: %w", errdefs.ErrInvalid)
	}
	if cfg.Defaults.Epsilon != "" {
		if _, err := ParsePeriod(cfg.Defaults.Epsilon); err != nil {
			return cfg, fmt.Errorf("jobs: --task_epsilon: %w", err)
		}
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
	if cfg.MinReviveInterval <= 0 {
		cfg.MinReviveInterval = DefaultMinReviveInterval
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
	api       http.Handler // routes, without bounds
	handler   http.Handler
	wake      chan struct{}

	// mu guards jobs and the runs; store writes happen under it, so the
	// store sees changes in the order they were made.
	mu     sync.Mutex
	jobs   map[string]*Job
	runs   runTable
	runSeq uint64 // makes run ids unique
	// schedules caches the jobs' parsed schedules (sched.go).
	schedules map[string]cachedSchedule
	// waiting are the jobs due at the scheduler's last pass that wait
	// for their run in flight: the end of that run wakes the scheduler.
	waiting map[string]bool
	// nextPass is when the scheduler's loop looks next, at the latest.
	nextPass time.Time
	// children indexes the dependent jobs by parent; nil when a job was
	// added, replaced or deleted since it was built (dependentsLocked).
	children map[string][]string
	// stats are the latest ended runs of each job (stats.go).
	stats map[string][]runStat
	notes notifier

	// listMu guards listCache, each job's JSON for GET /scheduler/jobs.
	listMu    sync.Mutex
	listCache map[string]encodedJob
}

// New opens the state (the store under WorkDir unless given one), reads
// the jobs back, and prepares the framework. Nothing runs before Run.
func New(ctx context.Context, cfg Config) (*Service, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, log: cfg.Logger.With("component", "jobs"), store: cfg.Store, jobs: map[string]*Job{},
		wake: make(chan struct{}, 1), runs: newRunTable(), schedules: map[string]cachedSchedule{}, waiting: map[string]bool{}}
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
	if err := s.loadRuns(ctx); err != nil {
		return fail(err)
	}
	fw := &mesos.FrameworkInfo{
		Name:            proto.String(cfg.FrameworkName),
		FailoverTimeout: proto.Float64(cfg.FailoverTimeout.Seconds()),
		Hostname:        proto.String(cfg.Hostname),
		WebuiUrl:        proto.String(cmp.Or(cfg.WebUIURL, s.scheme()+"://"+s.self())),
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
		ReconcileInterval: cfg.ReconcileInterval,
	}, s)
	if err != nil {
		return fail(err)
	}
	s.setupNotices()
	s.api = s.routes()
	auth, err := newAuth(cfg)
	if err != nil {
		return fail(err)
	}
	s.handler = bounded(auth.Wrap(s.api))
	return s, nil
}

// newAuth is the authenticator of --http_credentials: HTTP Basic on every
// path but /ping (a health probe), in realm "chronos"; nil, which lets
// everything through, without credentials.
func newAuth(cfg Config) (*httpauth.Authenticator, error) {
	if len(cfg.Credentials) == 0 {
		return nil, nil
	}
	a, err := httpauth.New(httpauth.Options{Enabled: true, Realm: cmp.Or(cfg.Realm, "chronos"), Credentials: cfg.Credentials, Logger: cfg.Logger,
		Skip: func(r *http.Request) bool { return r.URL.Path == "/ping" }})
	if err != nil {
		return nil, fmt.Errorf("jobs: --http_credentials: %w", err)
	}
	return a, nil
}

// self is host:port of this instance's API.
func (s *Service) self() string {
	return net.JoinHostPort(s.cfg.Hostname, strconv.Itoa(s.cfg.HTTPPort))
}

// scheme is the scheme of the API's own URLs.
func (s *Service) scheme() string {
	if s.cfg.HTTPS {
		return "https"
	}
	return "http"
}

// leader is host:port of the leading instance: this one, unless it takes
// part in an election.
func (s *Service) leader() string {
	if s.cfg.HA != nil {
		return s.cfg.HA.Leader()
	}
	return s.self()
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

// jobOp is the Op storing j.
func jobOp(j *Job) (frameworks.Op, error) {
	b, err := json.Marshal(j)
	if err != nil {
		return frameworks.Op{}, fmt.Errorf("encoding job %s: %w", j.Name, err)
	}
	return frameworks.Put(bucketJobs, j.Name, b), nil
}

// putJobLocked stores j and makes it the job of its name. s.mu is held.
func (s *Service) putJobLocked(ctx context.Context, j *Job) error {
	op, err := jobOp(j)
	if err != nil {
		return err
	}
	if err := s.store.Apply(ctx, op); err != nil {
		return fmt.Errorf("storing job %s: %w", j.Name, err)
	}
	s.jobs[j.Name] = j
	s.children = nil
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
	j.NextCronRun = ""
	var sc Schedule
	if j.Schedule != "" {
		sc, _ = ParseSchedule(j.Schedule, j.ScheduleTimeZone, now)
		j.Schedule = sc.String()
	}
	j.Parents = slices.Compact(slices.Sorted(slices.Values(j.Parents)))
	s.mu.Lock()
	defer s.mu.Unlock()
	if sc.Cron != nil {
		// Its first run is the first time after now the expression names;
		// an update that keeps the schedule and zone keeps the next run.
		j.NextCronRun = sc.Start.UTC().Format(timeFormat)
		if old := s.jobs[j.Name]; old != nil && old.Schedule == j.Schedule && old.ScheduleTimeZone == j.ScheduleTimeZone && old.NextCronRun != "" {
			j.NextCronRun = old.NextCronRun
		}
	}
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
	// The scheduler looks again when its next pass would be late for
	// this job (a pass per job posted made posting 10,000 quadratic).
	if j.Schedule != "" {
		if sc, err := s.scheduleLocked(j, now); err == nil && !sc.Start.After(s.nextPass) {
			s.poke()
		}
	}
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
	if err := s.stopRunsLocked(ctx, name, frameworks.Delete(bucketJobs, name)); err != nil {
		return fmt.Errorf("deleting job %s: %w", name, err)
	}
	delete(s.jobs, name)
	delete(s.schedules, name)
	s.children = nil
	return nil
}

// poke wakes the scheduler loop.
func (s *Service) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// newServer is the API's HTTP server, bounded (DESIGN.md: every server
// is bounded); its handlers' contexts end with ctx.
func newServer(ctx context.Context, h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       bodyReadTimeout,
		WriteTimeout:      writeTimeout,
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
	errc := make(chan error, 2)
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
	s.log.Info("jobs service started", "address", ln.Addr().String(), "master", s.cfg.Master, "framework_name", s.cfg.FrameworkName)
	return serve(ctx, srv, ln, s.runFramework)
}

// runFramework runs the driver and the scheduling loop until ctx ends
// (nil) or the driver fails; it closes the store if New opened it.
func (s *Service) runFramework(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	wg.Go(func() {
		if err := s.driver.Run(ctx); err != nil {
			errc <- fmt.Errorf("framework: %w", err)
		}
		cancel()
	})
	wg.Go(func() { s.loop(ctx) })
	wg.Go(func() { s.sendNotices(ctx) })
	wg.Wait()
	if s.ownsStore {
		s.store.Close()
	}
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}
