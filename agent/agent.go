package agent

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
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
	"github.com/mesolite/mesolite/httpauth"
	"github.com/mesolite/mesolite/internal/acls"
	"github.com/mesolite/mesolite/internal/loglevel"
	"github.com/mesolite/mesolite/resources"
	"github.com/mesolite/mesolite/sandbox"
	"google.golang.org/protobuf/proto"
)

// Config holds what the agent's flags say.
type Config struct {
	Master      string // host:port, zk://..., file://...
	IP          string // address to bind
	Port        int
	AdvertiseIP string // address the master and executors use; IP when empty
	// AdvertisePort [--advertise_port] is the port they use (behind a NAT
	// or a port mapping); Port when 0.
	AdvertisePort int
	Hostname      string
	// NoHostnameLookup [--hostname_lookup=false]: without --hostname the
	// agent is known by its advertised IP, not by the system's hostname.
	NoHostnameLookup bool
	// LogFile is the agent's log file, served at /slave/log of the files
	// API as Mesos serves it: --external_log_file, else the file --log_dir
	// writes; "" attaches nothing.
	LogFile string
	// DefaultRole [--default_role] statically reserves, for that role,
	// every resource --resources gives without a role and every detected
	// one; "" or "*" leaves them unreserved.
	DefaultRole string
	// ExecutorEnvironment [--executor_environment_variables] is given to
	// every executor (and so its tasks) in place of the agent's own PATH;
	// the MESOS_* variables the agent sets and the executor's own
	// CommandInfo.environment still apply over it.
	ExecutorEnvironment map[string]string
	WorkDir             string
	Resources           []*mesos.Resource
	Attributes          []*mesos.Attribute
	Version             string

	ExecutorRegistrationTimeout time.Duration
	ExecutorShutdownGracePeriod time.Duration
	RecoveryTimeout             time.Duration
	SubscriptionBackoffMax      time.Duration
	RegistrationBackoffFactor   time.Duration
	// SandboxDirectory is where docker containers see the sandbox.
	SandboxDirectory string
	// Self is the binary of the built-in executors, started as `Self
	// executor command` for command tasks and `Self executor default` for
	// task groups: mesolite-executor when the agent has it beside itself,
	// else the agent's own binary (the default, os.Executable).
	Self string

	ContainerLoggerMaxSize  int64
	ContainerLoggerMaxFiles int

	// Fetch fetches URIs into a sandbox; nil means URIs are refused.
	Fetch FetchFunc
	// ExtraHandlers are mounted on the agent's HTTP mux (UI, auth-wrapped
	// files) by the caller.
	ExtraHandlers map[string]http.Handler
	// ACLs [--acls] say which principals may read which users' sandboxes
	// (access_sandboxes) and run commands in or attach to their
	// containers (launch_nested_containers_sessions,
	// attach_containers_input/output); nil allows everything.
	ACLs *acls.ACLs
	// Wrap, when set, wraps read-only endpoints (state, files) for access control.
	Wrap func(http.Handler) http.Handler
	// ReadWriteAuth, when set, wraps the operator API's calls that change
	// the agent or run processes in its containers (SET_LOGGING_LEVEL,
	// LAUNCH_NESTED_CONTAINER_SESSION, ATTACH_CONTAINER_INPUT, KILL_...)
	// [--authenticate_http_readwrite with --http_credentials]. nil lets
	// them through, as a Mesos agent without the flag does.
	ReadWriteAuth func(http.Handler) http.Handler
	// LoggingLevel is the level of the agent's logger, which the operator
	// API's SET_LOGGING_LEVEL moves for a while; nil: a fixed level.
	LoggingLevel *slog.LevelVar
	// GC collects the sandboxes of ended executors; nil disables collection.
	GC SandboxGC
	// Collected tells the files API which sandboxes the GC removed.
	Collected func(hostPath string) bool
	// GCMetrics adds the collector's counters to /metrics/snapshot.
	GCMetrics func() map[string]float64

	// SwitchUser runs executors and tasks as the task's user (Mesos's
	// --switch_user, default true); false runs them as the agent's user.
	SwitchUser bool
	// RefuseRootTasks is --allow_root_tasks=false: a task that would run
	// as root on the host (it names root, or switch_user is off on a root
	// agent) fails instead.
	RefuseRootTasks bool
	// AuthenticateHTTPExecutors makes the executor token mandatory: an
	// executor call without a valid Bearer token is refused even from
	// inside the executor's container.
	AuthenticateHTTPExecutors bool
	// Credential is the principal and secret this agent registers with
	// (--credential); nil registers without authentication.
	Credential *httpauth.Credential
	// MaxCompletedExecutorsPerFramework and MaxCompletedTasksPerExecutor
	// bound what /state keeps of what ended (Mesos's flags; defaults 150
	// and 200).
	MaxCompletedExecutorsPerFramework int
	MaxCompletedTasksPerExecutor      int
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
	// Progress, when set, is told how far a download is, at most once a
	// second, as a line for a TASK_STARTING message.
	Progress func(msg string)
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
	levels     loglevel.Control // its own lock
	sessions   sessionTable     // its own lock, never taken with mu
	// attachMu guards attached: the task output streams per container
	// (attach.go); never taken with mu.
	attachMu      sync.Mutex
	attached      map[string]int
	inputAttached map[string]bool
	// gone are frameworks the master removed, with when (bounded).
	gone map[string]time.Time

	// metaMu orders a framework's checkpoint directory going (its last
	// executor ended) against launches writing into it: launches hold it
	// shared while they checkpoint, the removal exclusively, after
	// checking under mu that no launch brought the framework back. Taken
	// before mu, never under it.
	metaMu sync.RWMutex
	// fwInfoWritten is the framework.info last written per framework, so
	// a launch writes it only when it changed (every launch used to);
	// its own lock, taken under metaMu shared or exclusive.
	fwInfoMu      sync.Mutex
	fwInfoWritten map[string][]byte

	// base ends when Run does; goroutines the agent starts (spawn) are
	// counted in wg, and Run waits for them before it returns.
	base context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup
}

// runCtx is the agent's lifetime: it ends when Run returns.
func (a *Agent) runCtx() context.Context { return a.base }

// spawn runs f in a goroutine that Run waits for.
func (a *Agent) spawn(f func()) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		f()
	}()
}

// destroy destroys es's container, retrying with backoff until it is gone:
// a Destroy that fails (dockerd restarting, a cgroup still busy) must not
// leave a container running that the agent has given up on. It stops
// trying when the agent stops; the next run recovers the container.
func (a *Agent) destroy(es *executorState) {
	ctx := a.runCtx()
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := a.cz.Destroy(ctx, es.containerID)
		if err == nil || errors.Is(err, containerizer.ErrUnknownContainer) || ctx.Err() != nil {
			return
		}
		a.metricsInc(func(m *agentMetrics) { m.destroyErrors++ })
		a.log.Warn("destroy container failed; retrying", "framework_id", es.frameworkID,
			"executor_id", es.info.GetExecutorId().GetValue(), "container_id", es.containerID,
			"attempt", attempt, "retry_in", backoff, "error", err)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(backoff*2, 30*time.Second)
	}
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

	conn *executorConn
	// phase is where the executor is in its life (executorstate.go);
	// cause why the agent is ending it, when it is.
	phase    executorPhase
	cause    killCause
	regTimer *time.Timer
	endedAt  time.Time
	// checkpointed is closed once launchExecutor wrote executor.info and
	// its first task's task.info; updates of its tasks wait for it, so no
	// task.updates is on disk for a task a restarted agent could not find.
	// nil for a recovered executor.
	checkpointed chan struct{}
	// started is closed once the containerizer's Launch returned, or the
	// launch ended without it; nil for a recovered executor. An executor
	// run in place in a prestarted init subscribes before that, and its
	// container is not yet the containerizer's to nest cgroups under.
	started chan struct{}
	// ctx ends when the executor enters killing or terminated: the fetch,
	// the image pull and the container start of a launch observe it.
	ctx    context.Context
	cancel context.CancelFunc
}

// newExecutorState is an executor in phase (launching for a new one,
// registering for one recovered with a live container).
func newExecutorState(info *mesos.ExecutorInfo, fwID, containerID string, phase executorPhase) *executorState {
	ctx, cancel := context.WithCancel(context.Background())
	if phase >= phaseKilling {
		cancel()
	}
	return &executorState{
		info: info, frameworkID: fwID, containerID: containerID, phase: phase,
		queued: map[string]*taskState{}, launched: map[string]*taskState{}, terminal: map[string]*taskState{},
		ctx: ctx, cancel: cancel,
	}
}

type taskState struct {
	info          *mesos.TaskInfo
	state         mesos.TaskState
	statuses      []*mesos.TaskStatus
	killRequested bool
	// group is the task group the task came in (nil for a lone task),
	// shared by its tasks: they reach the executor together, as one
	// LAUNCH_GROUP. Not checkpointed: a recovered task is given again, if
	// at all, on its own.
	group *mesos.TaskGroupInfo
}

// executorConn is a subscribed executor's event stream.
type executorConn struct {
	events chan *executor.Event
	done   chan struct{}
	once   sync.Once
}

func (c *executorConn) close() { c.once.Do(func() { close(c.done) }) }

// Bounds on an executor's event stream: an executor that does not read
// its events is disconnected rather than allowed to stall the agent (a
// send waits at most executorSendTimeout for room in the queue; a write to
// its connection at most executorWriteTimeout). It resubscribes, and what
// it missed is sent again.
const (
	executorQueueLen     = 64
	executorSendTimeout  = 5 * time.Second
	executorWriteTimeout = 10 * time.Second
)

// send queues ev; false when the executor is gone or did not make room in
// time (its connection is then closed).
func (c *executorConn) send(ev *executor.Event) bool {
	select {
	case <-c.done:
		return false
	case c.events <- ev:
		return true
	default:
	}
	t := time.NewTimer(executorSendTimeout)
	defer t.Stop()
	select {
	case <-c.done:
		return false
	case c.events <- ev:
		return true
	case <-t.C:
		c.close()
		return false
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
	if cfg.AdvertisePort < 0 || cfg.AdvertisePort > 65535 {
		return nil, fmt.Errorf("agent: --advertise_port=%d: not a port", cfg.AdvertisePort)
	}
	if cfg.Hostname == "" {
		h, err := os.Hostname()
		if err != nil || cfg.NoHostnameLookup {
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
	if cfg.MaxCompletedExecutorsPerFramework <= 0 {
		cfg.MaxCompletedExecutorsPerFramework = 150
	}
	if cfg.MaxCompletedTasksPerExecutor <= 0 {
		cfg.MaxCompletedTasksPerExecutor = 200
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
	if cfg.DefaultRole != "" {
		if err := resources.ValidateRole(cfg.DefaultRole); err != nil {
			return nil, fmt.Errorf("agent: --default_role: %w", err)
		}
		cfg.Resources = reserveUnreserved(cfg.Resources, cfg.DefaultRole)
	}
	// The master refuses an agent whose resources it cannot read: say so
	// here, before registering in vain.
	if _, err := resources.FromProto(cfg.Resources); err != nil {
		return nil, fmt.Errorf("agent: resources: %w", err)
	}
	a := &Agent{
		cfg:           cfg,
		log:           cfg.Logger.With("component", "agent"),
		cz:            cz,
		meta:          meta{root: filepath.Join(cfg.WorkDir, "meta")},
		layout:        sandbox.Layout{WorkDir: cfg.WorkDir},
		frameworks:    map[string]*framework{},
		fwInfoWritten: map[string][]byte{},
		start:         time.Now(),
	}
	if a.tokens, err = loadExecutorTokens(filepath.Join(a.meta.root, "executor_secret_key")); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	a.levels.Init(cfg.LoggingLevel)
	a.base, a.stop = context.WithCancel(context.Background())
	a.sum = newStatusUpdates(cfg.Logger, a.forwardUpdate)
	a.sum.onTerminalAcked = a.terminalAcked
	a.info = &mesos.AgentInfo{
		Hostname:   proto.String(cfg.Hostname),
		Port:       proto.Int32(int32(cmp.Or(cfg.AdvertisePort, cfg.Port))),
		Resources:  cfg.Resources,
		Attributes: cfg.Attributes,
	}
	a.master = newMasterLink(a)
	return a, nil
}

// Endpoint is the ip:port executors and the master reach the agent at.
func (a *Agent) Endpoint() string {
	return net.JoinHostPort(a.cfg.AdvertiseIP, strconv.Itoa(a.advertisedPort()))
}

// advertisedPort is the port others reach the agent at.
func (a *Agent) advertisedPort() int {
	if a.cfg.AdvertisePort != 0 {
		return a.cfg.AdvertisePort
	}
	return a.cfg.Port
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
	// Last, once nothing launches any more: a containerizer that keeps
	// processes or cgroups ready for launches (the mesos containerizer's
	// prestarted inits and their staging cgroups) lets them go. Running
	// containers are not touched; the next agent run recovers them.
	defer func() {
		if c, ok := a.cz.(io.Closer); ok {
			if err := c.Close(); err != nil {
				a.log.Warn("close the containerizer", "error", err)
			}
		}
	}()
	defer a.wait()
	stopWithRun := context.AfterFunc(ctx, a.stop)
	defer stopWithRun()
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
	a.log.Info("agent listening", "address", l.Addr().String(), "advertise", a.Endpoint(), "tls", a.cfg.TLS != nil, "resources", resources.Format(a.cfg.Resources))
	if ip := net.ParseIP(a.cfg.AdvertiseIP); ip != nil && ip.IsLoopback() && !isLocalMaster(a.cfg.Master) {
		a.log.Warn("this agent advertises a loopback address to a master that is not on loopback: the master and executors elsewhere cannot reach it; set --advertise_ip", "advertise_ip", a.cfg.AdvertiseIP, "master", a.cfg.Master)
	}
	a.spawn(func() { a.master.run(ctx) })
	a.spawn(func() { a.recoveryDeadline(ctx) })
	select {
	case <-ctx.Done():
	case err := <-errc:
		return fmt.Errorf("agent http server: %w", err)
	}
	// Sessions live no longer than their connections, which end now.
	a.endSessionsOf("")
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

// wait ends the agent's lifetime and waits, for a bounded time, for the
// goroutines it started: a Destroy or a checkpoint in progress finishes;
// one blocked beyond reason is logged and left.
func (a *Agent) wait() {
	a.stop()
	done := make(chan struct{})
	go func() { a.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		a.log.Warn("agent goroutines still running 5s after stop")
	}
}

// isLocalMaster reports whether master (the --master value) is on this
// machine's loopback: host:port, http(s)://host:port, or zk:// whose
// ZooKeeper servers are all on loopback (masters found through a local
// ZooKeeper are local too; warning about them was wrong).
func isLocalMaster(master string) bool {
	if rest, ok := strings.CutPrefix(master, "zk://"); ok {
		if at := strings.LastIndex(rest, "@"); at >= 0 && at < strings.Index(rest+"/", "/") {
			rest = rest[at+1:]
		}
		hosts, _, _ := strings.Cut(rest, "/")
		local := false
		for _, h := range strings.Split(hosts, ",") {
			if h = strings.TrimSpace(h); h == "" {
				continue
			}
			if _, _, err := net.SplitHostPort(h); err != nil {
				h = net.JoinHostPort(strings.Trim(h, "[]"), "2181")
			}
			if !isLocalMaster(h) {
				return false
			}
			local = true
		}
		return local
	}
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
