package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/mesolite/mesolite/httpauth"
	"github.com/mesolite/mesolite/internal/acls"
	"github.com/mesolite/mesolite/internal/cliflags"
	"github.com/mesolite/mesolite/internal/version"
	"github.com/mesolite/mesolite/master"
	"github.com/mesolite/mesolite/webui"
)

type masterFlags struct {
	fs                                                               *cliflags.FlagSet
	ip, advertiseIP, hostname, workDir, zk                           *string
	port                                                             *int
	offerTimeout, reregisterTimeout                                  *time.Duration
	pingTimeout, heartbeat, allocInterval                            *time.Duration
	clusterName                                                      *string
	authReadonly, authReadwrite                                      *bool
	httpCredentials, tokenFile, acls                                 *string
	authFrameworks, authHTTPFrameworks                               *bool
	authAgents                                                       *bool
	credentials                                                      *string
	maxFrameworks, maxPerPrincipal, maxIP                            *int
	loggingLevel, logFormat, logDir, externalLogFile                 *string
	ssl                                                              *sslFlags
	registry                                                         *string
	advertisePort                                                    *int
	hostnameLookup                                                   *bool
	quorum, maxPingTimeouts                                          *int
	zkSessionTimeout, registryMaxAgentAge                            *time.Duration
	maxCompletedFrameworks, maxCompletedTasks, registryMaxAgentCount *int
}

func newMasterFlags(name string) *masterFlags {
	fs := cliflags.New(name, `mesolite master --work_dir=DIR [flags]

Runs a master: agents register with it, frameworks subscribe through the
Mesos v1 scheduler HTTP API and get resource offers. With --zk, several
masters elect a leader through ZooKeeper; the others redirect to it.`)
	fs.NoArgs = true
	f := &masterFlags{fs: fs}
	f.ip = fs.String("ip", "127.0.0.1", "IP address to listen on")
	f.port = fs.Int("port", 5050, "port to listen on")
	f.advertiseIP = fs.String("advertise_ip", "", "IP address agents and frameworks use to reach this master (default: --ip)")
	f.advertisePort = fs.Int("advertise_port", 0, "port agents and frameworks use to reach this master, behind a NAT or a port mapping (default: --port)")
	f.hostname = fs.String("hostname", "", "hostname the master advertises (default: the system hostname, or the IP with --hostname_lookup=false)")
	f.hostnameLookup = fs.Bool("hostname_lookup", true, "without --hostname, advertise the system's hostname; false: advertise the IP")
	f.workDir = fs.String("work_dir", "/var/lib/mesolite/master", "directory of the master's registry (agents and frameworks survive a restart)")
	f.zk = fs.String("zk", "", "ZooKeeper URL for leader election, e.g. zk://host1:2181,host2:2181/mesos (empty: standalone)")
	f.offerTimeout = fs.Duration("offer_timeout", 0, "rescind offers a framework holds longer than this (0: never)")
	f.reregisterTimeout = fs.Duration("agent_reregister_timeout", 10*time.Minute, "how long agents known from the registry have to re-register with a new leader (or a\n"+
		"restarted master) before their tasks are lost; until then reconciliation about\n"+
		"their tasks stays silent")
	f.pingTimeout = fs.Duration("agent_ping_timeout", 15*time.Second, "how long an agent has to answer a ping (pings go this often on its event\n"+
		"stream); after --max_agent_ping_timeouts unanswered ones it is unreachable")
	f.maxPingTimeouts = fs.Int("max_agent_ping_timeouts", 5, "a disconnected agent is removed after agent_ping_timeout times this (or\n"+
		"agent_reregister_timeout if shorter)")
	f.zkSessionTimeout = fs.Duration("zk_session_timeout", 10*time.Second, "ZooKeeper session timeout: how long a dead leader keeps leading before\n"+
		"another master takes over")
	f.registry = fs.String("registry", master.RegistryReplicatedLog, "replicated_log: a durable registry (in ZooKeeper with --zk, shared by every master;\n"+
		"in --work_dir without); in_memory: nothing survives the process")
	f.quorum = fs.Int("quorum", 0, "accepted for Mesos command lines and unused: with --zk the ZooKeeper\n"+
		"ensemble's own quorum replicates the registry")
	f.maxCompletedFrameworks = fs.Int("max_completed_frameworks", 50, "completed frameworks kept (in the registry too, with their completed tasks)")
	f.maxCompletedTasks = fs.Int("max_completed_tasks_per_framework", 1000, "completed tasks kept per framework (in the registry too)")
	f.registryMaxAgentAge = fs.Duration("registry_max_agent_age", 14*24*time.Hour, "how long the registry remembers an agent removed as unreachable")
	f.registryMaxAgentCount = fs.Int("registry_max_agent_count", 100*1024, "most agents removed as unreachable the registry remembers")
	f.heartbeat = fs.Duration("heartbeat_interval", 15*time.Second, "HEARTBEAT interval on scheduler streams")
	f.allocInterval = fs.Duration("allocation_interval", time.Second, "how often offers are made")
	f.clusterName = fs.String("cluster", "", "a name for the cluster, shown in the web UI")
	f.authReadonly = fs.Bool("authenticate_http_readonly", false, "require credentials for the read-only endpoints (state, metrics, UI, the operator API)")
	f.authReadwrite = fs.Bool("authenticate_http_readwrite", false, "require credentials for the operator API's calls that change the cluster\n"+
		"(TEARDOWN, MARK_AGENT_GONE, DEACTIVATE_AGENT, SET_LOGGING_LEVEL, ...)")
	f.httpCredentials = fs.String("http_credentials", "", "JSON credentials file for HTTP Basic authentication")
	f.acls = fs.String("acls", "", "Mesos's ACLs, JSON or file:///path: who may tear down frameworks, reserve and unreserve\n"+
		"resources, set quota and weights, and see which frameworks, tasks and executors (see docs/security.md)")
	f.tokenFile = fs.String("http_token_file", "", "file holding a bearer token accepted for HTTP authentication")
	f.authFrameworks = fs.Bool("authenticate_frameworks", false, "require frameworks to authenticate (HTTP Basic on /api/v1/scheduler with --credentials); a framework id then belongs to the authenticated principal")
	f.authHTTPFrameworks = fs.Bool("authenticate_http_frameworks", false, "the same as --authenticate_frameworks: mesolite has only the HTTP scheduler API")
	f.authAgents = fs.Bool("authenticate_agents", false, "require agents to authenticate (HTTP Basic on /api/v1/agent with --credentials; agents pass --credential)")
	f.credentials = fs.String("credentials", "", "file of the principals and secrets frameworks and agents authenticate with: JSON {\"credentials\":[{\"principal\":\"p\",\"secret\":\"s\"}]} or 'principal secret' lines")
	f.maxFrameworks = fs.Int("max_frameworks", 1000, "most frameworks the master holds at once; more SUBSCRIBEs are refused")
	f.maxPerPrincipal = fs.Int("max_frameworks_per_principal", 0, "most frameworks of one principal (0: no cap beyond --max_frameworks)")
	f.maxIP = fs.Int("max_requests_per_ip", 1024, "most requests (event streams included) one client address may have in progress; more get 429")
	f.loggingLevel = fs.String("logging_level", "INFO", "log level: ERROR, WARNING, INFO, DEBUG")
	f.logFormat = fs.String("log_format", "text", "log format: text or json")
	f.logDir = fs.String("log_dir", "", "directory to also write the log to (mesolite-master.log, appended; rotate with copytruncate); default: stderr only")
	f.externalLogFile = fs.String("external_log_file", "", "a log file of this master written by something else (journald's export, syslog), served at /master/log\n"+
		"of the files API in place of --log_dir's file; the master does not write it")
	f.ssl = defineSSLFlags(fs, "CA bundle of the cluster's certificates (the master calls no peer; accepted so that one\n"+
		"environment serves every process)")
	fs.Inert(append(mesosMasterOnlyFlags, mesosCommonFlags...)...)
	return f
}

func (f *masterFlags) config(log *slog.Logger) master.Config {
	cfg := master.DefaultConfig()
	cfg.IP = *f.ip
	cfg.Port = *f.port
	cfg.AdvertiseIP = *f.advertiseIP
	cfg.AdvertisePort = *f.advertisePort
	cfg.Hostname = *f.hostname
	cfg.NoHostnameLookup = !*f.hostnameLookup
	cfg.WorkDir = *f.workDir
	cfg.ZK = *f.zk
	cfg.OfferTimeout = *f.offerTimeout
	cfg.AgentReregisterTimeout = *f.reregisterTimeout
	cfg.AgentPingTimeout = *f.pingTimeout
	cfg.MaxAgentPingTimeouts = *f.maxPingTimeouts
	cfg.ZKSessionTimeout = *f.zkSessionTimeout
	cfg.Registry = *f.registry
	cfg.Quorum = *f.quorum
	cfg.MaxCompletedFrameworks = *f.maxCompletedFrameworks
	cfg.MaxCompletedTasksPerFramework = *f.maxCompletedTasks
	cfg.RegistryMaxAgentAge = *f.registryMaxAgentAge
	cfg.RegistryMaxAgentCount = *f.registryMaxAgentCount
	cfg.HeartbeatInterval = *f.heartbeat
	cfg.AllocationInterval = *f.allocInterval
	cfg.Cluster = *f.clusterName
	cfg.AuthenticateFrameworks = *f.authFrameworks
	cfg.AuthenticateHTTPFrameworks = *f.authHTTPFrameworks
	cfg.AuthenticateAgents = *f.authAgents
	cfg.MaxFrameworks = *f.maxFrameworks
	cfg.MaxFrameworksPerPrincipal = *f.maxPerPrincipal
	cfg.MaxRequestsPerIP = *f.maxIP
	// The version reported is the Mesos release whose APIs are spoken (tools
	// gate features on it); this build's own is /version's git_tag.
	cfg.Version = version.MesosVersion
	cfg.UI = webui.Master(webui.Options{Title: *f.clusterName})
	cfg.Logger = log
	flags := map[string]string{}
	f.fs.VisitAll(func(fl *flag.Flag) { flags[fl.Name] = fl.Value.String() })
	cfg.Flags = flags
	return cfg
}

func masterMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if versionAsked(args) {
		return versionMain(ctx, nil, stdout, stderr)
	}
	f := newMasterFlags("master")
	f.fs.SetOutput(stderr)
	if err := f.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "mesolite master:", err)
		return 2
	}
	lw, closeLog, err := logWriter(stderr, *f.logDir, "master")
	if err != nil {
		fmt.Fprintln(stderr, "mesolite master:", err)
		return 2
	}
	defer closeLog()
	log, level, err := newLoggerLevel(lw, *f.loggingLevel, *f.logFormat)
	if err != nil {
		fmt.Fprintln(stderr, "mesolite master:", err)
		return 2
	}
	warnUnknownEnv(log, f.fs)
	warnInertFlags(log, f.fs)
	cfg := f.config(log)
	cfg.LoggingLevel = level
	cfg.LogFile = attachedLog(*f.logDir, *f.externalLogFile, "master")
	auth, err := httpauth.New(httpauth.Options{
		Enabled: *f.authReadonly, Realm: "mesos-master-readonly", CredentialsFile: *f.httpCredentials, TokenFile: *f.tokenFile, Logger: log,
	})
	if err != nil {
		fmt.Fprintln(stderr, "mesolite master: http authentication:", err)
		return 1
	}
	if *f.authReadonly {
		cfg.ReadOnlyAuth = auth.Wrap
	}
	if *f.authReadwrite {
		rw, err := httpauth.New(httpauth.Options{
			Enabled: true, Realm: "mesos-master-readwrite", CredentialsFile: *f.httpCredentials, TokenFile: *f.tokenFile, Logger: log,
		})
		if err != nil {
			fmt.Fprintln(stderr, "mesolite master: http authentication:", err)
			return 1
		}
		cfg.ReadWriteAuth = rw.Wrap
	}
	if a, err := acls.Parse(*f.acls); err != nil {
		fmt.Fprintln(stderr, "mesolite master:", err)
		return 2
	} else {
		cfg.ACLs = a
	}
	if *f.credentials != "" {
		creds, err := httpauth.LoadCredentials(*f.credentials)
		if err != nil {
			fmt.Fprintln(stderr, "mesolite master: --credentials:", err)
			return 1
		}
		cfg.Credentials = creds
	}
	st, err := f.ssl.setup()
	if err != nil {
		fmt.Fprintln(stderr, "mesolite master: TLS:", err)
		return 1
	}
	cfg.TLS = st.server
	if *f.quorum > 0 {
		log.Info("--quorum is ignored: the registry is not a replicated log; with --zk the ZooKeeper ensemble replicates it", "quorum", *f.quorum)
	}
	m, err := master.New(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "mesolite master:", err)
		return 1
	}
	l, err := net.Listen("tcp", net.JoinHostPort(*f.ip, strconv.Itoa(*f.port)))
	if err != nil {
		fmt.Fprintln(stderr, "mesolite master:", err)
		return 1
	}
	if err := m.Run(ctx, l); err != nil && ctx.Err() == nil {
		log.Error("master stopped", "error", err)
		return 1
	}
	return 0
}
