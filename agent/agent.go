package agent

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/mesolite/mesolite/httpauth"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mesolite/mesolite/api/v1/executor"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/containerizer"
	"github.com/mesolite/mesolite/sandbox"
	"google.golang.org/protobuf/proto"
)

// Config holds what the agent's flags say.
type Config struct {
	Master      string // host:port, zk://..., file://...
	IP          string // address to bind
	Port        int
	AdvertiseIP string // address the master and executors use; IP when empty
	Hostname    string
	WorkDir     string
	Resources   []*mesos.Resource
	Attributes  []*mesos.Attribute
	Version     string

	ExecutorRegistrationTimeout time.Duration
	ExecutorShutdownGracePeriod time.Duration
	RecoveryTimeout             time.Duration
	SubscriptionBackoffMax      time.Duration
	RegistrationBackoffFactor   time.Duration
	// SandboxDirectory is where docker containers see the sandbox.
	SandboxDirectory string
	// Self is the agent binary, started as `Self executor command` for
	// command tasks and as `Self fetch` for fetches.
	Self string

	ContainerLoggerMaxSize  int64
	ContainerLoggerMaxFiles int

	// Fetch fetches URIs into a sandbox; nil means URIs are refused.
	Fetch FetchFunc
	// ExtraHandlers are mounted on the agent's HTTP mux (UI, auth-wrapped
	// files) by the caller.
	ExtraHandlers map[string]http.Handler
	// Wrap, when set, wraps read-only endpoints (state, files) for access control.
	Wrap func(http.Handler) http.Handler
	// GC collects the sandboxes of ended executors; nil disables collection.
	GC SandboxGC
	// Collected tells the files API which sandboxes the GC removed.
	Collected func(hostPath string) bool
	// GCMetrics adds the collector's counters to /metrics/snapshot.
	GCMetrics func() map[string]float64

	// SwitchUser runs executors and tasks as the task's user (Mesos's
	// --switch_user, default true); false runs them as the agent's user.
	SwitchUser bool
	// AuthenticateHTTPExecutors makes the executor token mandatory: an
	// executor call without a valid Bearer token is refused even from
	// inside the executor's container.
	AuthenticateHTTPExecutors bool
	// Credential is the principal and secret this agent registers with
	// (--credential); nil registers without authentication.
	Credential *httpauth.Credential
	// TLS, when set, makes the agent serve https only (--ssl_cert_file,
	// --ssl_key_file); executors are then told to speak https too.
	TLS *tls.Config
	// MasterTLS, when set, makes the agent reach the master over https,
	// verifying it with this configuration; nil: plain http, unless the
	// leader's address itself says https://.
	MasterTLS *tls.Config
	// ExecutorCAFile is what executors and fetches of a TLS agent verify
	// the agent (and TLS artifact servers) with, handed to executors as
	// LIBPROCESS_SSL_CA_FILE; empty: the system's roots.
	ExecutorCAFile string

	Flags  map[string]string
	Logger *slog.Logger
}

// FetchFunc downloads a launch's URIs into its sandbox, logging into the
// sandbox's stderr. It must return as soon as ctx ends (a kill).
type FetchFunc func(ctx context.Context, req FetchRequest) error

// FetchRequest is one launch's fetch.
type FetchRequest struct {
	URIs []*mesos.CommandInfo_URI
	// Dir is the sandbox.
	Dir string
	// User fetches (and owns what is fetched); empty: the agent's user.
	User string
	// MaxBytes is the executor's and tasks' disk resource in bytes (0:
	// none declared): a fetch may not write more into the sandbox.
	MaxBytes int64
}

// SandboxGC is what the agent needs of the sandbox collector.
type SandboxGC interface {
	Schedule(path string, endedAt time.Time) error
}

// Agent is one node agent.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	cz     containerizer.Containerizer
	meta   meta
	layout sandbox.Layout
	sum    *statusUpdates
	master *masterLink
	start  time.Time

	mu         sync.Mutex
	agentID    string
	info       *mesos.AgentInfo
	frameworks map[string]*framework
	completed  []*framework
	metrics    agentMetrics
	files      *sandbox.FilesHandler
	tokens     *executorTokens
}

type framework struct {
	info      *mesos.FrameworkInfo
	executors map[string]*executorState
	completed []*executorState
}

// executorState is one executor and its container.
type executorState struct {
	info        *mesos.ExecutorInfo
	frameworkID string
	containerID string
	directory   string
	commandTask bool // the executor was synthesized for a command task
	handle      *containerizer.Handle

	queued    map[string]*taskState // waiting for the executor to subscribe
	launched  map[string]*taskState
	terminal  map[string]*taskState // terminal, update not yet acknowledged
	finished  []*taskState          // terminal and acknowledged (for /state)
	resources []*mesos.Resource

	conn         *executorConn
	subscribed   bool
	launching    bool
	shuttingDown bool
	regTimedOut  bool
	terminated   bool
	regTimer     *time.Timer
	endedAt      time.Time
	// checkpointed is closed once launchExecutor wrote executor.info and
	// its first task's task.info; updates of its tasks wait for it, so no
	// task.updates is on disk for a task a restarted agent could not find.
	// nil for a recovered executor.
	checkpointed chan struct{}
	// cancelLaunch ends the fetch, image pull or container start of an
	// executor still launching (a kill of its only task); nil once
	// recovered.
	cancelLaunch context.CancelFunc
}

type taskState struct {
	info          *mesos.TaskInfo
	state         mesos.TaskState
	statuses      []*mesos.TaskStatus
	killRequested bool
}

// executorConn is a subscribed executor's event stream.
type executorConn struct {
	events chan *executor.Event
	done   chan struct{}
	once   sync.Once
}

func (c *executorConn) close() { c.once.Do(func() { close(c.done) }) }

func (c *executorConn) send(ev *executor.Event) bool {
	select {
	case <-c.done:
		return false
	case c.events <- ev:
		return true
	}
}

// New builds an agent on top of a containerizer.
func New(cfg Config, cz containerizer.Containerizer) (*Agent, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.WorkDir == "" {
		return nil, errors.New("agent: --work_dir is required")
	}
	if cfg.AdvertiseIP == "" {
		cfg.AdvertiseIP = cfg.IP
	}
	if cfg.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			h = cfg.AdvertiseIP
		}
		cfg.Hostname = h
	}
	if cfg.ExecutorRegistrationTimeout == 0 {
		cfg.ExecutorRegistrationTimeout = time.Minute
	}
	if cfg.ExecutorShutdownGracePeriod == 0 {
		cfg.ExecutorShutdownGracePeriod = 5 * time.Second
	}
	if cfg.RecoveryTimeout == 0 {
		cfg.RecoveryTimeout = 15 * time.Minute
	}
	if cfg.SubscriptionBackoffMax == 0 {
		cfg.SubscriptionBackoffMax = 2 * time.Second
	}
	if cfg.RegistrationBackoffFactor == 0 {
		cfg.RegistrationBackoffFactor = time.Second
	}
	if cfg.SandboxDirectory == "" {
		cfg.SandboxDirectory = "/mnt/mesos/sandbox"
	}
	if cfg.ContainerLoggerMaxSize == 0 {
		cfg.ContainerLoggerMaxSize = 10 << 20
	}
	if cfg.ContainerLoggerMaxFiles == 0 {
		cfg.ContainerLoggerMaxFiles = 5
	}
	if cfg.Self == "" {
		self, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("agent: find own binary: %w", err)
		}
		cfg.Self = self
	}
	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return nil, fmt.Errorf("agent: work_dir: %w", err)
	}
	abs, err := filepath.Abs(cfg.WorkDir)
	if err != nil {
		return nil, err
	}
	cfg.WorkDir = abs
	cfg.Resources = DetectResources(cfg.Resources, cfg.WorkDir)
	a := &Agent{
		cfg:        cfg,
		log:        cfg.Logger.With("component", "agent"),
		cz:         cz,
		meta:       meta{root: filepath.Join(cfg.WorkDir, "meta")},
		layout:     sandbox.Layout{WorkDir: cfg.WorkDir},
		frameworks: map[string]*framework{},
		start:      time.Now(),
	}
	if a.tokens, err = loadExecutorTokens(filepath.Join(a.meta.root, "executor_secret_key")); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	a.sum = newStatusUpdates(cfg.Logger, a.forwardUpdate)
	a.sum.onTerminalAcked = a.terminalAcked
	a.info = &mesos.AgentInfo{
		Hostname:   proto.String(cfg.Hostname),
		Port:       proto.Int32(int32(cfg.Port)),
		Resources:  cfg.Resources,
		Attributes: cfg.Attributes,
	}
	a.master = newMasterLink(a)
	return a, nil
}

// Endpoint is the ip:port executors and the master reach the agent at.
func (a *Agent) Endpoint() string {
	return net.JoinHostPort(a.cfg.AdvertiseIP, strconv.Itoa(a.cfg.Port))
}

// ID is the agent id the master gave, empty before registration.
func (a *Agent) ID() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.agentID
}

// Run recovers checkpointed state, serves HTTP on l and keeps the agent
// registered with the master until ctx ends.
func (a *Agent) Run(ctx context.Context, l net.Listener) error {
	if err := a.recover(ctx); err != nil {
		return fmt.Errorf("agent recovery: %w", err)
	}
	srv := a.newServer()
	total, perIP := connLimitsFor()
	l = newLimitListener(l, total, perIP, func(ip string) {
		a.log.Warn("refused a connection past the connection cap", "remote", ip, "max_total", total, "max_per_client", perIP)
	})
	if a.cfg.TLS != nil {
		// After the cap: a connection past it costs no handshake. (Its 503
		// then reaches a TLS client as a failed handshake.)
		l = tls.NewListener(l, a.cfg.TLS)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	a.log.Info("agent listening", "address", l.Addr().String(), "advertise", a.Endpoint(), "tls", a.cfg.TLS != nil, "resources", ResourcesString(a.cfg.Resources))
	if ip := net.ParseIP(a.cfg.AdvertiseIP); ip != nil && ip.IsLoopback() && !isLocalMaster(a.cfg.Master) {
		a.log.Warn("this agent advertises a loopback address to a master that is not on loopback: the master and executors elsewhere cannot reach it; set --advertise_ip", "advertise_ip", a.cfg.AdvertiseIP, "master", a.cfg.Master)
	}
	go a.master.run(ctx)
	go a.recoveryDeadline(ctx)
	select {
	case <-ctx.Done():
	case err := <-errc:
		return fmt.Errorf("agent http server: %w", err)
	}
	// Executor streams are long-lived: end them so Shutdown need not wait;
	// the executors reconnect to the next agent run.
	a.mu.Lock()
	for _, fw := range a.frameworks {
		for _, es := range fw.executors {
			if es.conn != nil {
				es.conn.close()
			}
		}
	}
	a.mu.Unlock()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		_ = srv.Close()
	}
	a.sum.Close()
	return nil
}

func isLocalMaster(master string) bool {
	master = strings.TrimPrefix(strings.TrimPrefix(master, "http://"), "https://")
	host, _, err := net.SplitHostPort(master)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func newUUID() []byte {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	return b
}

func uuidString(b []byte) string {
	if len(b) != 16 {
		return fmt.Sprintf("%x", b)
	}
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
