package master

import (
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/httpauth"
	"github.com/mesolite/mesolite/internal/acls"
	"github.com/mesolite/mesolite/internal/duration"
	"github.com/mesolite/mesolite/internal/version"
	"github.com/mesolite/mesolite/resources"
)

// Clock tells the time. The master's timers (offer timeout, filters,
// failover and re-registration timeouts) read it, so tests can move time.
type Clock interface {
	Now() time.Time
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Config configures a master. Every field has a Mesos flag of the same
// name (shown in brackets) that cmd/mesolite wires.
type Config struct {
	// IP [--ip] is the address the master binds to and, without
	// AdvertiseIP, tells others. Run takes the listener; these describe it.
	IP string
	// Port [--port], 5050.
	Port int
	// AdvertiseIP [--advertise_ip] and AdvertisePort [--advertise_port] are
	// what the master tells agents, frameworks and ZooKeeper when the bind
	// address is not reachable from outside (NAT, containers).
	AdvertiseIP   string
	AdvertisePort int
	// Hostname [--hostname] is shown and redirected to; the system's
	// hostname when empty, or the IP with NoHostnameLookup.
	Hostname string
	// LogFile is the master's log file, served as Mesos serves it: at
	// /master/log of the files API (/files/read, /files/download, the
	// operator API's LIST_FILES and READ_FILE): --external_log_file, else
	// the file --log_dir writes; "" attaches nothing.
	LogFile string
	// NoHostnameLookup [--hostname_lookup=false]: without --hostname the
	// master is known by its advertised IP.
	NoHostnameLookup bool
	// WorkDir [--work_dir] holds the registry (agents, frameworks). Empty
	// keeps the registry in memory (Mesos's --registry=in_memory).
	WorkDir string
	// ZK [--zk] is zk://host:2181/path for leader election among several
	// masters; empty runs a single master that always leads. With ZK the
	// registry lives in ZooKeeper under the same path (package zkstore),
	// shared by every master, and WorkDir holds no registry.
	ZK string
	// Registry [--registry] is RegistryReplicatedLog (Mesos's default: a
	// durable registry, which mesolite keeps in ZooKeeper with ZK, else in
	// WorkDir) or RegistryInMemory (nothing survives the process).
	Registry string
	// Quorum [--quorum] is accepted for Mesos's command lines and not
	// used: with ZK the ensemble's own quorum replicates the registry.
	Quorum int
	// RegistryMaxAgentAge [--registry_max_agent_age], 2 weeks, and
	// RegistryMaxAgentCount [--registry_max_agent_count], 102400, bound
	// the unreachable agents the registry remembers.
	RegistryMaxAgentAge   time.Duration
	RegistryMaxAgentCount int
	// ZKSessionTimeout [--zk_session_timeout], 10s.
	ZKSessionTimeout time.Duration
	// OfferTimeout [--offer_timeout] rescinds offers held longer; 0 never.
	OfferTimeout time.Duration
	// AgentReregisterTimeout [--agent_reregister_timeout], 10m: how long
	// agents known from the registry have to re-register after the master
	// starts or is elected, before they are removed and their tasks lost.
	AgentReregisterTimeout time.Duration
	// AgentPingTimeout [--agent_ping_timeout], 15s, and MaxAgentPingTimeouts
	// [--max_agent_ping_timeouts], 5: agents are pinged every
	// AgentPingTimeout; one that stops answering for their product is
	// removed at once, and one whose stream broke is removed when it has
	// not come back within it (or AgentReregisterTimeout if shorter).
	// AgentPingTimeout also bounds one write to any event stream, so a
	// peer that stopped reading is noticed.
	AgentPingTimeout     time.Duration
	MaxAgentPingTimeouts int
	// HeartbeatInterval: HEARTBEAT events to frameworks, 15s.
	HeartbeatInterval time.Duration
	// AllocationInterval [--allocation_interval], 1s, between allocation
	// cycles; events (a new agent, a REVIVE) trigger one sooner.
	AllocationInterval time.Duration
	// FrameworkFailoverTimeout is the failover_timeout of frameworks that
	// set none. Mesos's default is 0: a framework whose connection drops is
	// torn down at once.
	FrameworkFailoverTimeout time.Duration
	// MaxCompletedFrameworks [--max_completed_frameworks], 50, and
	// MaxCompletedTasksPerFramework [--max_completed_tasks_per_framework],
	// 1000, bound what state endpoints keep of the finished.
	MaxCompletedFrameworks        int
	MaxCompletedTasksPerFramework int
	// Roles [--roles] is a whitelist of roles frameworks may use; empty
	// allows any.
	Roles []string
	// Weights [--weights] of roles for DRF, role=weight; default 1.
	Weights map[string]float64
	// Cluster [--cluster] names the cluster in the UI.
	Cluster string
	// Version is reported in MasterInfo and state; the build's when empty.
	Version string
	// UI, when set, serves everything no endpoint claims, from "/".
	UI http.Handler
	// AuthenticateFrameworks [--authenticate_frameworks] and
	// AuthenticateHTTPFrameworks [--authenticate_http_frameworks]: either
	// one makes /api/v1/scheduler require HTTP Basic credentials from
	// Credentials (mesolite has only the HTTP scheduler API, so both Mesos
	// flags guard the same door). A framework's principal is then the
	// authenticated one, and FrameworkInfo.principal must match it.
	AuthenticateFrameworks     bool
	AuthenticateHTTPFrameworks bool
	// AuthenticateAgents [--authenticate_agents] makes /api/v1/agent
	// require HTTP Basic credentials from Credentials.
	AuthenticateAgents bool
	// Credentials [--credentials] are the principals and secrets frameworks
	// and agents authenticate with.
	Credentials []httpauth.Credential
	// MaxFrameworks [--max_frameworks], 1000, bounds the frameworks the
	// master holds at once (connected, or disconnected within their
	// failover timeout); MaxFrameworksPerPrincipal
	// [--max_frameworks_per_principal], 0 for no cap, bounds those of one
	// principal. Each framework costs memory, a registry record and a
	// share of every state answer, so their number must not be up to
	// whoever can reach the master.
	MaxFrameworks             int
	MaxFrameworksPerPrincipal int
	// MaxRequestsPerIP [--max_requests_per_ip], 1024, bounds the requests
	// (event streams included) one client address has in progress; more
	// get 429.
	MaxRequestsPerIP int
	// TLS [--ssl_cert_file, --ssl_key_file], when set, makes Run serve
	// https only on the listener it is given.
	TLS *tls.Config
	// ReadOnlyAuth, when set, wraps the read-only endpoints (UI, state,
	// metrics, the operator API) [--authenticate_http_readonly with
	// --http_credentials].
	ReadOnlyAuth func(http.Handler) http.Handler
	// ReadWriteAuth, when set, wraps the operator API's calls that change
	// the cluster (TEARDOWN, MARK_AGENT_GONE, SET_LOGGING_LEVEL, ...)
	// [--authenticate_http_readwrite with --http_credentials].
	ReadWriteAuth func(http.Handler) http.Handler
	// LoggingLevel, when set, is the level of Logger's handler: the
	// operator API's SET_LOGGING_LEVEL moves it for a while, then back to
	// where it was at New [--logging_level]. Without it the level is fixed.
	LoggingLevel *slog.LevelVar
	// ACLs [--acls] say which principals may change what (teardown,
	// reservations, quota, weights) and see which frameworks and tasks;
	// nil allows everything, as Mesos without --acls.
	ACLs *acls.ACLs
	// Logger; nothing is logged when nil.
	Logger *slog.Logger
	// Clock; the wall clock when nil.
	Clock Clock
	// Flags are shown verbatim in /master/state's "flags", merged over the
	// ones derived from this Config; cmd/mesolite passes the command line.
	Flags map[string]string
}

// Values of Config.Registry, as Mesos's --registry takes them.
const (
	RegistryReplicatedLog = "replicated_log"
	RegistryInMemory      = "in_memory"
)

// DefaultConfig returns Mesos's defaults.
func DefaultConfig() Config {
	return Config{
		IP:                            "0.0.0.0",
		Port:                          5050,
		ZKSessionTimeout:              10 * time.Second,
		AgentReregisterTimeout:        10 * time.Minute,
		AgentPingTimeout:              15 * time.Second,
		MaxAgentPingTimeouts:          5,
		HeartbeatInterval:             15 * time.Second,
		AllocationInterval:            time.Second,
		MaxCompletedFrameworks:        50,
		MaxCompletedTasksPerFramework: 1000,
		MaxFrameworks:                 1000,
		MaxRequestsPerIP:              1024,
		Registry:                      RegistryReplicatedLog,
		RegistryMaxAgentAge:           14 * 24 * time.Hour,
		RegistryMaxAgentCount:         100 * 1024,
	}
}

// normalize fills zero fields with defaults and checks the rest. Errors
// wrap errdefs.ErrInvalid.
func (c *Config) normalize() error {
	d := DefaultConfig()
	if c.IP == "" {
		c.IP = d.IP
	}
	if c.Port == 0 {
		c.Port = d.Port
	}
	if c.ZKSessionTimeout <= 0 {
		c.ZKSessionTimeout = d.ZKSessionTimeout
	}
	if c.AgentReregisterTimeout <= 0 {
		c.AgentReregisterTimeout = d.AgentReregisterTimeout
	}
	if c.AgentPingTimeout <= 0 {
		c.AgentPingTimeout = d.AgentPingTimeout
	}
	if c.MaxAgentPingTimeouts <= 0 {
		c.MaxAgentPingTimeouts = d.MaxAgentPingTimeouts
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = d.HeartbeatInterval
	}
	if c.AllocationInterval <= 0 {
		c.AllocationInterval = d.AllocationInterval
	}
	if c.MaxCompletedFrameworks < 0 {
		c.MaxCompletedFrameworks = 0
	}
	if c.MaxCompletedTasksPerFramework < 0 {
		c.MaxCompletedTasksPerFramework = 0
	}
	if c.MaxFrameworks <= 0 {
		c.MaxFrameworks = d.MaxFrameworks
	}
	if c.MaxFrameworksPerPrincipal < 0 {
		c.MaxFrameworksPerPrincipal = 0
	}
	if c.MaxRequestsPerIP <= 0 {
		c.MaxRequestsPerIP = d.MaxRequestsPerIP
	}
	switch c.Registry {
	case "":
		c.Registry = d.Registry
	case RegistryReplicatedLog, RegistryInMemory:
	default:
		return fmt.Errorf("--registry=%s: want %s or %s: %w", c.Registry, RegistryReplicatedLog, RegistryInMemory, errdefs.ErrInvalid)
	}
	if c.Quorum < 0 {
		return fmt.Errorf("--quorum must not be negative: %w", errdefs.ErrInvalid)
	}
	if c.RegistryMaxAgentAge <= 0 {
		c.RegistryMaxAgentAge = d.RegistryMaxAgentAge
	}
	if c.RegistryMaxAgentCount <= 0 {
		c.RegistryMaxAgentCount = d.RegistryMaxAgentCount
	}
	if c.OfferTimeout < 0 || c.FrameworkFailoverTimeout < 0 {
		return fmt.Errorf("offer_timeout and framework failover timeout must not be negative: %w", errdefs.ErrInvalid)
	}
	if c.Port < 0 || c.Port > 65535 || c.AdvertisePort < 0 || c.AdvertisePort > 65535 {
		return fmt.Errorf("port out of range: %w", errdefs.ErrInvalid)
	}
	for _, r := range c.Roles {
		if err := resources.ValidateRole(r); err != nil {
			return fmt.Errorf("--roles: %w", err)
		}
	}
	for r, w := range c.Weights {
		if err := resources.ValidateRole(r); err != nil {
			return fmt.Errorf("--weights: %w", err)
		}
		if !(w > 0) || math.IsInf(w, 0) {
			return fmt.Errorf("--weights: weight of %s must be a positive number: %w", r, errdefs.ErrInvalid)
		}
	}
	if c.Version == "" {
		c.Version = version.MesosVersion
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return nil
}

// agentGone is how long a disconnected agent has to come back.
// authenticateFrameworks reports whether scheduler calls need credentials.
func (c *Config) authenticateFrameworks() bool {
	return c.AuthenticateFrameworks || c.AuthenticateHTTPFrameworks
}

func (c *Config) agentGone() time.Duration {
	return min(c.AgentReregisterTimeout, c.AgentPingTimeout*time.Duration(c.MaxAgentPingTimeouts))
}

// flagMap is the "flags" object of /master/state.
func (c *Config) flagMap() map[string]string {
	weights := make([]string, 0, len(c.Weights))
	for _, r := range slices.Sorted(maps.Keys(c.Weights)) {
		weights = append(weights, r+"="+strconv.FormatFloat(c.Weights[r], 'f', -1, 64))
	}
	f := map[string]string{
		"ip":                                c.IP,
		"port":                              strconv.Itoa(c.Port),
		"hostname":                          c.Hostname,
		"work_dir":                          c.WorkDir,
		"zk_session_timeout":                duration.Format(c.ZKSessionTimeout),
		"agent_reregister_timeout":          duration.Format(c.AgentReregisterTimeout),
		"agent_ping_timeout":                duration.Format(c.AgentPingTimeout),
		"max_agent_ping_timeouts":           strconv.Itoa(c.MaxAgentPingTimeouts),
		"allocation_interval":               duration.Format(c.AllocationInterval),
		"allocator":                         "HierarchicalDRF",
		"framework_sorter":                  "drf",
		"role_sorter":                       "drf",
		"max_completed_frameworks":          strconv.Itoa(c.MaxCompletedFrameworks),
		"max_completed_tasks_per_framework": strconv.Itoa(c.MaxCompletedTasksPerFramework),
		"authenticate_frameworks":           strconv.FormatBool(c.AuthenticateFrameworks),
		"authenticate_http_frameworks":      strconv.FormatBool(c.AuthenticateHTTPFrameworks),
		"authenticate_agents":               strconv.FormatBool(c.AuthenticateAgents),
		"max_frameworks":                    strconv.Itoa(c.MaxFrameworks),
		"max_frameworks_per_principal":      strconv.Itoa(c.MaxFrameworksPerPrincipal),
		"max_requests_per_ip":               strconv.Itoa(c.MaxRequestsPerIP),
		"authenticate_http_readonly":        strconv.FormatBool(c.ReadOnlyAuth != nil),
		"authenticate_http_readwrite":       strconv.FormatBool(c.ReadWriteAuth != nil),
		"filter_gpu_resources":              "true",
		"min_allocatable_resources":         "cpus:0.01|mem:32",
	}
	if c.AdvertiseIP != "" {
		f["advertise_ip"] = c.AdvertiseIP
	}
	if c.AdvertisePort != 0 {
		f["advertise_port"] = strconv.Itoa(c.AdvertisePort)
	}
	if c.ZK != "" {
		f["zk"] = redactZK(c.ZK)
	}
	if c.OfferTimeout > 0 {
		f["offer_timeout"] = duration.Format(c.OfferTimeout)
	}
	if len(c.Roles) > 0 {
		f["roles"] = strings.Join(c.Roles, ",")
	}
	if len(weights) > 0 {
		f["weights"] = strings.Join(weights, ",")
	}
	if c.Cluster != "" {
		f["cluster"] = c.Cluster
	}
	for k, v := range c.Flags {
		if k == "zk" {
			v = redactZK(v)
		}
		f[k] = v
	}
	// What is really used, whatever the command line said: Mesos's
	// "replicated_log" and "quorum" would claim a replicated log that
	// mesolite does not have.
	f["registry"] = c.registryKind()
	delete(f, "quorum")
	f["registry_max_agent_age"] = duration.Format(c.RegistryMaxAgentAge)
	f["registry_max_agent_count"] = strconv.Itoa(c.RegistryMaxAgentCount)
	return f
}

// redactZK hides the password of zk://user:pass@... in what is shown.
func redactZK(zk string) string {
	rest, ok := strings.CutPrefix(zk, "zk://")
	if !ok {
		return zk
	}
	at := strings.LastIndex(rest, "@")
	slash := strings.Index(rest, "/")
	if at < 0 || (slash >= 0 && at > slash) {
		return zk
	}
	user, _, _ := strings.Cut(rest[:at], ":")
	return "zk://" + user + ":xxxxxx@" + rest[at+1:]
}
