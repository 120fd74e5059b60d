package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/mesolite/mesolite/internal/safefile"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mesolite/mesolite/agent"
	"github.com/mesolite/mesolite/containerizer"
	"github.com/mesolite/mesolite/containerizer/composing"
	"github.com/mesolite/mesolite/containerizer/docker"
	mesoscz "github.com/mesolite/mesolite/containerizer/mesos"
	"github.com/mesolite/mesolite/detector"
	"github.com/mesolite/mesolite/fetcher"
	"github.com/mesolite/mesolite/httpauth"
	"github.com/mesolite/mesolite/internal/acls"
	"github.com/mesolite/mesolite/internal/cliflags"
	"github.com/mesolite/mesolite/internal/version"
	"github.com/mesolite/mesolite/isolation"
	"github.com/mesolite/mesolite/resources"
	"github.com/mesolite/mesolite/sandbox"
	"github.com/mesolite/mesolite/webui"
)

// agentFlags are the agent's flags, Mesos names and defaults.
type agentFlags struct {
	fs *cliflags.FlagSet

	master, ip, advertiseIP, hostname, workDir   *string
	port, advertisePort                          *int
	hostnameLookup                               *bool
	defaultRole, executorEnv                     *string
	dockerConfig                                 *string
	dockerStopTimeout                            *time.Duration
	resources, attributes                        *string
	containerizers, isolation, launcher          *string
	cgroupsRoot, cgroupsHierarchy                *string
	cgroupsEnableCFS                             *bool
	pidsLimit                                    *int64
	execRegTimeout, execShutdownGrace, recoveryT *time.Duration
	regBackoff                                   *time.Duration
	frameworksHome, fetcherCacheDir, hadoopHome  *string
	fetcherCacheSize, fetcherMaxSize             *string
	fetcherStall                                 *time.Duration
	sandboxDirectory                             *string
	docker, dockerSocket                         *string
	dockerKillOrphans, dockerAllowPrivileged     *bool
	dockerVolumePaths, dockerAllowedParams       *string
	dockerRemoveDelay                            *time.Duration
	loggerMaxSize                                *string
	loggerMaxFiles                               *int
	gcDelay, diskWatch                           *time.Duration
	gcHeadroom                                   *float64
	authReadonly, authReadwrite                  *bool
	acls                                         *string
	httpCredentials, tokenFile                   *string
	loggingLevel, logFormat, logDir              *string
	externalLogFile                              *string
	switchUser, authExecutors, allowRootTasks    *bool
	maxCompletedExecutors, maxCompletedTasks     *int
	credential                                   *string
	ssl                                          *sslFlags
}

func newAgentFlags(name string) *agentFlags {
	fs := cliflags.New(name, `mesolite agent --master=HOST:PORT --work_dir=DIR [flags]

Runs a node agent: registers with the master, offers this machine's
resources, and runs tasks as Docker containers or as processes under cgroup
and namespace isolation, keeping each task's sandbox under --work_dir.`)
	fs.NoArgs = true
	f := &agentFlags{fs: fs}
	f.master = fs.String("master", "127.0.0.1:5050", "the master: host:port, zk://host1:port1,host2:port2/path, or file:///path/to/file holding one of those")
	f.ip = fs.String("ip", "127.0.0.1", "IP address to listen on")
	f.port = fs.Int("port", 5051, "port to listen on")
	f.advertiseIP = fs.String("advertise_ip", "", "IP address the master and executors use to reach this agent (default: --ip)")
	f.advertisePort = fs.Int("advertise_port", 0, "port the master and executors use to reach this agent, behind a NAT or a port mapping (default: --port)")
	f.hostname = fs.String("hostname", "", "hostname the agent reports to the master (default: the system hostname, or the IP with --hostname_lookup=false)")
	f.hostnameLookup = fs.Bool("hostname_lookup", true, "without --hostname, report the system's hostname; false: report the advertised IP")
	f.workDir = fs.String("work_dir", "/var/lib/mesolite/agent", "directory for sandboxes and checkpointed state")
	f.resources = fs.String("resources", "", "total consumable resources, e.g. 'cpus:4;mem:8192;disk:10000;ports:[31000-32000]' or a JSON array of Resource objects, or file:///path holding either; what is left out is detected")
	f.attributes = fs.String("attributes", "", "attributes of this machine, e.g. 'rack:2;os:debian', or file:///path holding them")
	f.containerizers = fs.String("containerizers", "mesos", "comma-separated containerizers in order of preference: mesos, docker")
	f.isolation = fs.String("isolation", "posix/cpu,posix/mem", "isolation mechanisms for the mesos containerizer, e.g. cgroups/cpu,cgroups/mem,cgroups/pids,namespaces/pid,namespaces/ipc,namespaces/uts,filesystem/linux (posix/cpu,posix/mem only report usage)")
	f.launcher = fs.String("launcher", "", "process launcher: linux (namespaces, needs root) or posix (default: linux as root, posix otherwise)")
	f.cgroupsRoot = fs.String("cgroups_root", "mesolite", "name of the cgroup under which every container's cgroup is created")
	f.cgroupsHierarchy = fs.String("cgroups_hierarchy", "/sys/fs/cgroup", "where the cgroup hierarchies are mounted")
	f.pidsLimit = fs.Int64("cgroups_pids_limit", mesoscz.DefaultPidsLimit, "pids.max of each container under cgroups/pids (processes plus threads)")
	f.cgroupsEnableCFS = fs.Bool("cgroups_enable_cfs", false, "cap cpu time with CFS bandwidth control (hard limit) in addition to cpu shares")
	f.execRegTimeout = fs.Duration("executor_registration_timeout", time.Minute, "how long an executor may take to subscribe once its container runs (image pull and fetch are not counted)")
	f.execShutdownGrace = fs.Duration("executor_shutdown_grace_period", 5*time.Second, "how long an executor has to shut down before its container is destroyed")
	f.recoveryT = fs.Duration("recovery_timeout", 15*time.Minute, "how long executors wait for a restarting agent, and the agent for their resubscription")
	f.regBackoff = fs.Duration("registration_backoff_factor", time.Second, "base of the exponential backoff between attempts to (re-)register with the master")
	f.frameworksHome = fs.String("frameworks_home", "", "directory prepended to relative executor and URI paths")
	f.fetcherCacheDir = fs.String("fetcher_cache_dir", "", "fetcher cache directory (default: <work_dir>/fetch)")
	f.fetcherCacheSize = fs.String("fetcher_cache_size", "2GB", "size of the fetcher cache; 0 disables caching")
	f.fetcherStall = fs.Duration("fetcher_stall_timeout", time.Minute, "a download that receives less than 1KB/s averaged over this long fails")
	f.fetcherMaxSize = fs.String("fetcher_max_size", "10GB", "most one task's fetch may write into its sandbox, downloads and extracted archives together (the task's disk, when smaller, bounds it too); 0 leaves only the task's disk")
	f.hadoopHome = fs.String("hadoop_home", "", "Hadoop installation for hdfs://, s3://, s3a://, gs:// and other URIs that are not http(s), file or git (default: $HADOOP_HOME, then hadoop on PATH)")
	f.sandboxDirectory = fs.String("sandbox_directory", "/mnt/mesos/sandbox", "where Docker containers see their sandbox")
	f.docker = fs.String("docker", "docker", "the docker CLI (only used to report versions; the engine API is used directly)")
	f.dockerSocket = fs.String("docker_socket", "/var/run/docker.sock", "the Docker engine's socket")
	f.dockerKillOrphans = fs.Bool("docker_kill_orphans", true, "stop and remove containers of this agent that belong to no known task at start")
	f.dockerRemoveDelay = fs.Duration("docker_remove_delay", 6*time.Hour, "how long to keep an exited Docker container before removing it")
	f.dockerVolumePaths = fs.String("docker_volume_allowed_paths", "", "comma-separated host paths Docker tasks may bind-mount (with everything below them); the sandbox always may")
	f.dockerAllowedParams = fs.String("docker_allowed_parameters", "", "comma-separated escapes from the container Docker tasks may ask for: device, cap-add, security-opt, sysctl, pid, ipc, uts, userns, cgroupns, oom-kill-disable, cgroup-parent, volume-driver, named-volume, network-container, log-driver, ulimit-priority, resource-overrides")
	f.dockerAllowPrivileged = fs.Bool("docker_allow_privileged", false, "let tasks ask for privileged Docker containers")
	f.dockerConfig = fs.String("docker_config", "", "docker config.json with registry credentials for image pulls: its JSON, a path, or file:///path\n"+
		"(a .docker/config.json or .dockercfg a task fetched into its sandbox wins for that task)")
	f.dockerStopTimeout = fs.Duration("docker_stop_timeout", 0, "grace period between the stop signal and SIGKILL for a Docker task whose kill policy names none (0: 3secs)")
	f.defaultRole = fs.String("default_role", "*", "role that statically reserves the resources --resources gives without a role and the detected ones (*: unreserved)")
	f.executorEnv = fs.String("executor_environment_variables", "", "JSON object (or file:///path) of the environment every executor and its tasks get, e.g.\n"+
		"'{\"PATH\":\"/bin:/usr/bin\",\"LANG\":\"C.UTF-8\"}', in place of the agent's PATH; MESOS_* and MESOLITE_* variables are the agent's to set")
	f.loggerMaxSize = fs.String("container_logger_max_size", "10MB", "rotate a task's stdout/stderr when it reaches this size")
	f.loggerMaxFiles = fs.Int("container_logger_max_files", 5, "rotated stdout/stderr files kept per task")
	f.gcDelay = fs.Duration("gc_delay", 7*24*time.Hour, "maximum time an ended executor's sandbox is kept (less under disk pressure)")
	f.gcHeadroom = fs.Float64("gc_disk_headroom", 0.1, "fraction of disk to keep free: sandboxes age faster as usage approaches it")
	f.diskWatch = fs.Duration("disk_watch_interval", time.Minute, "how often disk usage is checked for sandbox collection")
	f.authReadonly = fs.Bool("authenticate_http_readonly", false, "require credentials for the read-only endpoints (state, files, metrics, UI, the operator API)")
	f.authReadwrite = fs.Bool("authenticate_http_readwrite", false, "require credentials for the operator API's calls that change the agent or run processes in\n"+
		"its containers (LAUNCH_NESTED_CONTAINER_SESSION, i.e. mesolite exec; ATTACH_CONTAINER_INPUT, SET_LOGGING_LEVEL, ...);\n"+
		"without it anyone who reaches the agent's port may run commands in its tasks")
	f.acls = fs.String("acls", "", "Mesos's ACLs, JSON or file:///path: who may read which users' sandboxes (access_sandboxes)\n"+
		"and run commands in or attach to their containers (launch_nested_containers_sessions, attach_containers_input/output)")
	f.httpCredentials = fs.String("http_credentials", "", "JSON credentials file for HTTP Basic authentication: {\"credentials\":[{\"principal\":\"p\",\"secret\":\"s\"}]}")
	f.tokenFile = fs.String("http_token_file", "", "file holding a bearer token accepted for HTTP authentication")
	f.maxCompletedExecutors = fs.Int("max_completed_executors_per_framework", 150, "ended executors of each framework kept in /state")
	f.maxCompletedTasks = fs.Int("max_completed_tasks_per_executor", 200, "ended tasks of each executor kept in /state")
	f.allowRootTasks = fs.Bool("allow_root_tasks", true, "let a task run as root on the host (it names root, or --switch_user is off on a root agent); set false on machines shared with untrusted frameworks")
	f.switchUser = fs.Bool("switch_user", true, "run executors and tasks as the task's user (CommandInfo.user, else FrameworkInfo.user); false runs them as the agent's user")
	f.authExecutors = fs.Bool("authenticate_http_executors", false, "require every executor call to carry its MESOS_EXECUTOR_AUTHENTICATION_TOKEN (without it, executors that send no token are accepted only from inside their own container)")
	f.credential = fs.String("credential", "", "file holding the principal and secret this agent authenticates with to the master: JSON {\"principal\":\"p\",\"secret\":\"s\"} or one line 'principal secret'")
	f.loggingLevel = fs.String("logging_level", "INFO", "log level: ERROR, WARNING, INFO, DEBUG")
	f.logFormat = fs.String("log_format", "text", "log format: text or json")
	f.logDir = fs.String("log_dir", "", "directory to also write the log to (mesolite-agent.log, appended; rotate with copytruncate); default: stderr only")
	f.externalLogFile = fs.String("external_log_file", "", "a log file of this agent written by something else (journald's export, syslog), served at /slave/log\n"+
		"of the files API in place of --log_dir's file; the agent does not write it")
	f.ssl = defineSSLFlags(fs, "CA bundle that verifies the master, and that executors (LIBPROCESS_SSL_CA_FILE) and fetches\n"+
		"trust; giving it makes the agent reach the master over https. Default with a certificate: the\n"+
		"certificate itself when it is self-signed, else the system's roots")
	fs.Inert(append(mesosAgentOnlyFlags, mesosCommonFlags...)...)
	return f
}

func (f *agentFlags) values() map[string]string {
	m := map[string]string{}
	f.fs.VisitAll(func(fl *flag.Flag) { m[fl.Name] = fl.Value.String() })
	return m
}

// buildAgent turns parsed flags into a running-ready agent. level is the
// logger's level, which the operator API may move; nil keeps it fixed.
func (f *agentFlags) buildAgent(ctx context.Context, log *slog.Logger, level *slog.LevelVar) (*agent.Agent, error) {
	// Everything below (the sandbox collector first) expects the work
	// directory to exist, as it does from the second start on.
	if err := os.MkdirAll(*f.workDir, 0o755); err != nil {
		return nil, fmt.Errorf("--work_dir: %w", err)
	}
	res, err := resources.Parse(*f.resources)
	if err != nil {
		return nil, fmt.Errorf("--resources: %w", err)
	}
	attrs, err := resources.ParseAttributes(*f.attributes)
	if err != nil {
		return nil, fmt.Errorf("--attributes: %w", err)
	}
	st, err := f.ssl.setup()
	if err != nil {
		return nil, fmt.Errorf("TLS: %w", err)
	}
	masterTLS, err := st.client()
	if err != nil {
		return nil, fmt.Errorf("TLS: %w", err)
	}
	execEnv, err := parseExecutorEnv(*f.executorEnv)
	if err != nil {
		return nil, fmt.Errorf("--executor_environment_variables: %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	execBin := executorBinary(ctx, self, log)
	cz, err := f.buildContainerizer(ctx, log, execBin)
	if err != nil {
		return nil, err
	}
	cfg := agent.Config{
		Master:                            *f.master,
		IP:                                *f.ip,
		Port:                              *f.port,
		AdvertiseIP:                       *f.advertiseIP,
		AdvertisePort:                     *f.advertisePort,
		Hostname:                          *f.hostname,
		NoHostnameLookup:                  !*f.hostnameLookup,
		DefaultRole:                       *f.defaultRole,
		LogFile:                           attachedLog(*f.logDir, *f.externalLogFile, "agent"),
		ExecutorEnvironment:               execEnv,
		WorkDir:                           *f.workDir,
		Resources:                         res,
		Attributes:                        attrs,
		Version:                           version.MesosVersion, // as the master reports it; the build in /version
		ExecutorRegistrationTimeout:       *f.execRegTimeout,
		ExecutorShutdownGracePeriod:       *f.execShutdownGrace,
		RecoveryTimeout:                   *f.recoveryT,
		RegistrationBackoffFactor:         *f.regBackoff,
		SandboxDirectory:                  *f.sandboxDirectory,
		ContainerLoggerMaxFiles:           *f.loggerMaxFiles,
		SwitchUser:                        *f.switchUser,
		RefuseRootTasks:                   !*f.allowRootTasks,
		MaxCompletedExecutorsPerFramework: *f.maxCompletedExecutors,
		MaxCompletedTasksPerExecutor:      *f.maxCompletedTasks,
		AuthenticateHTTPExecutors:         *f.authExecutors,
		TLS:                               st.server,
		MasterTLS:                         masterTLS,
		Flags:                             f.values(),
		Logger:                            log,
		LoggingLevel:                      level,
		Self:                              execBin,
	}
	if st.server != nil {
		cfg.ExecutorCAFile = st.clusterCA
	}
	gc, err := sandbox.NewGC(sandbox.GCOptions{
		Root: *f.workDir, Delay: *f.gcDelay, DiskHeadroom: *f.gcHeadroom, DiskWatchInterval: *f.diskWatch, Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("sandbox gc: %w", err)
	}
	go func() {
		if err := gc.Run(ctx); err != nil && ctx.Err() == nil {
			log.Error("sandbox gc stopped", "error", err)
		}
	}()
	cfg.GC = gc
	cfg.Collected = gc.Collected
	fetch, cacheDir, err := f.fetchFunc(log, st.clusterCA)
	if err != nil {
		return nil, err
	}
	cfg.Fetch = fetch
	cfg.GCMetrics = func() map[string]float64 {
		m := map[string]float64{
			"gc/path_removals_pending":   float64(gc.Pending()),
			"gc/path_removals_succeeded": float64(gc.CollectedCount()),
			"gc/path_removals_failed":    float64(gc.Failures()),
		}
		if cacheDir != "" {
			if u, err := fetcher.ReadCacheUsage(cacheDir); err == nil {
				m["containerizer/fetcher/cache_size_used_bytes"] = float64(u.Bytes)
				m["containerizer/fetcher/cache_entries"] = float64(u.Entries)
			}
		}
		return m
	}
	auth, err := httpauth.New(httpauth.Options{
		Enabled: *f.authReadonly, Realm: "mesos-agent-readonly", CredentialsFile: *f.httpCredentials, TokenFile: *f.tokenFile, Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("http authentication: %w", err)
	}
	cfg.Wrap = auth.Wrap
	rules, err := acls.Parse(*f.acls)
	if err != nil {
		return nil, err
	}
	cfg.ACLs = rules
	if *f.authReadwrite {
		rw, err := httpauth.New(httpauth.Options{
			Enabled: true, Realm: httpauth.AgentReadwriteRealm, CredentialsFile: *f.httpCredentials, TokenFile: *f.tokenFile, Logger: log,
		})
		if err != nil {
			return nil, fmt.Errorf("http authentication: %w", err)
		}
		cfg.ReadWriteAuth = rw.Wrap
	} else {
		log.Warn("--authenticate_http_readwrite is off: anyone who can reach this agent's port may run commands in its tasks (mesolite exec, LAUNCH_NESTED_CONTAINER_SESSION) as the tasks' users")
	}
	cfg.ExtraHandlers = map[string]http.Handler{"/": auth.Wrap(webui.Agent(webui.Options{}))}
	if *f.credential != "" {
		c, err := httpauth.LoadCredential(*f.credential)
		if err != nil {
			return nil, fmt.Errorf("--credential: %w", err)
		}
		cfg.Credential = c
	}
	if n, err := sandbox.ParseBytes(*f.loggerMaxSize); err != nil {
		return nil, fmt.Errorf("--container_logger_max_size: %w", err)
	} else {
		cfg.ContainerLoggerMaxSize = n
	}
	a, err := agent.New(cfg, cz)
	if err != nil {
		return nil, err
	}
	// Every form of --master (host:port, zk://, file://) goes through the
	// detector, which follows leader changes in ZooKeeper.
	d, err := detector.New(*f.master)
	if err != nil {
		return nil, fmt.Errorf("--master: %w", err)
	}
	a.SetLeaderFunc(func(ctx context.Context) (string, error) {
		mi, err := d.Leader(ctx)
		if err != nil {
			return "", err
		}
		if mi.Scheme == "https" {
			// --master=https://...: https even without TLS flags.
			return "https://" + mi.Addr(), nil
		}
		return mi.Addr(), nil
	})
	return a, nil
}

// buildContainerizer builds the containerizers --containerizers names; the
// mesos containerizer's inits are runs of execBin (executorBinary).
func (f *agentFlags) buildContainerizer(ctx context.Context, log *slog.Logger, execBin string) (containerizer.Containerizer, error) {
	var named []composing.Named
	for _, name := range strings.Split(*f.containerizers, ",") {
		switch strings.TrimSpace(name) {
		case "docker":
			o := docker.DefaultOptions()
			abs, err := filepath.Abs(*f.workDir)
			if err != nil {
				return nil, err
			}
			self, err := os.Executable()
			if err != nil {
				return nil, err
			}
			o.Owner = abs
			o.DockerHost = *f.dockerSocket
			if strings.Contains(*f.docker, "://") {
				o.DockerHost = *f.docker
			}
			o.PublishIP = *f.ip
			o.SandboxDirectory = *f.sandboxDirectory
			o.KillOrphans = *f.dockerKillOrphans
			o.RemoveDelay = *f.dockerRemoveDelay
			o.AllowPrivileged = *f.dockerAllowPrivileged
			o.Policy.VolumeAllowedPaths = splitList(*f.dockerVolumePaths)
			o.Policy.AllowedParameters = splitList(*f.dockerAllowedParams)
			o.EnableCFS = *f.cgroupsEnableCFS
			o.StopTimeout = *f.dockerStopTimeout
			if *f.dockerConfig != "" {
				cfg, err := cliflags.ReadValue(*f.dockerConfig)
				if err != nil {
					return nil, fmt.Errorf("--docker_config: %w", err)
				}
				if !json.Valid([]byte(cfg)) && strings.HasPrefix(strings.TrimSpace(cfg), "{") {
					return nil, errors.New("--docker_config: not valid JSON")
				}
				o.DockerConfig = cfg
			}
			o.ExecutorCommand = []string{self, "executor", "docker"}
			o.Logger = log
			cz, err := docker.New(ctx, o)
			if err != nil {
				return nil, fmt.Errorf("docker containerizer: %w", err)
			}
			named = append(named, composing.Named{Name: docker.Name, Containerizer: cz})
		case "mesos":
			cz, err := f.mesosContainerizer(log, execBin)
			if err != nil {
				return nil, err
			}
			named = append(named, composing.Named{Name: mesoscz.Name, Containerizer: cz})
		case "":
		default:
			return nil, fmt.Errorf("--containerizers: unknown containerizer %q (known: mesos, docker)", name)
		}
	}
	if len(named) == 0 {
		return nil, errors.New("--containerizers: name at least one containerizer")
	}
	return composing.New(named...), nil
}

// mesosContainerizer builds the mesos containerizer with the isolation
// the flags ask for; a host that cannot give it refuses to start. Its
// inits (kept prestarted) are runs of execBin: the built-in executors run
// in place in one only when they are runs of that same binary.
func (f *agentFlags) mesosContainerizer(log *slog.Logger, execBin string) (*mesoscz.Containerizer, error) {
	set, err := isolation.ParseIsolation(*f.isolation)
	if err != nil {
		return nil, fmt.Errorf("--isolation: %w", err)
	}
	kind, err := isolation.ParseLauncher(*f.launcher)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(*f.workDir)
	if err != nil {
		return nil, err
	}
	cz, err := mesoscz.New(mesoscz.Options{
		Logger:    log,
		Isolation: set,
		Isolator: isolation.Options{
			CgroupsRoot: *f.cgroupsRoot, CgroupsHierarchy: *f.cgroupsHierarchy,
			EnableCFS: *f.cgroupsEnableCFS, Launcher: kind,
		},
		Launcher:   isolation.LauncherOptions{InitPath: execBin, InitArgs: []string{"launch"}, Prestart: 2},
		RuntimeDir: filepath.Join(abs, "containers"),
		PidsLimit:  *f.pidsLimit,
	})
	if err != nil {
		return nil, fmt.Errorf("mesos containerizer: %w", err)
	}
	return cz, nil
}

// fetchFunc runs every fetch in a `mesolite fetch` child process, so a
// crash or hang in a download or an archive cannot take the agent down.
func (f *agentFlags) fetchFunc(log *slog.Logger, caFile string) (agent.FetchFunc, string, error) {
	size, err := sandbox.ParseBytes(*f.fetcherCacheSize)
	if err != nil {
		return nil, "", fmt.Errorf("--fetcher_cache_size: %w", err)
	}
	maxSize, err := sandbox.ParseBytes(*f.fetcherMaxSize)
	if err != nil {
		return nil, "", fmt.Errorf("--fetcher_max_size: %w", err)
	}
	if maxSize == 0 {
		// 0 on the flag: no cap of the agent's own.
		maxSize = -1
	}
	cacheDir := *f.fetcherCacheDir
	if cacheDir == "" && size > 0 {
		cacheDir = filepath.Join(*f.workDir, "fetch")
	}
	if size == 0 {
		cacheDir = ""
	}
	if cacheDir != "" {
		if cacheDir, err = filepath.Abs(cacheDir); err != nil {
			return nil, "", err
		}
	}
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	opts := fetcher.Options{
		Binary: self,
		Args:   []string{"fetch"},
		Config: fetcher.Config{
			FrameworksHome: *f.frameworksHome,
			HadoopHome:     *f.hadoopHome,
			CacheDir:       cacheDir,
			CacheSize:      size,
			StallTimeout:   *f.fetcherStall,
			MaxSize:        maxSize,
			CAFile:         caFile,
		},
		// The stall timeout catches a dead server; this bounds a fetch that
		// trickles for ever.
		Timeout: time.Hour,
		Logger:  log,
	}
	// One child waits for the next fetch, so that a cache hit does not pay
	// for a process start; it exits on its own (stdin EOF) with the agent.
	opts.Pool = fetcher.NewChildPool(opts, 1)
	opts.Pool.Fill()
	return func(ctx context.Context, fr agent.FetchRequest) error {
		dir := fr.Dir
		req := fetcher.Request{SandboxDir: dir, User: fr.User, MaxBytes: fr.MaxBytes}
		if fr.Progress != nil {
			req.Progress = func(p fetcher.Progress) { fr.Progress(p.String()) }
		}
		for _, u := range fr.URIs {
			req.URIs = append(req.URIs, fetcher.URI{Value: u.GetValue(), Executable: u.GetExecutable(),
				Extract: u.GetExtract(), Cache: u.GetCache(), OutputFile: u.GetOutputFile()})
		}
		stderr, err := safefile.OpenAppend(filepath.Join(dir, "stderr"), 0o644, log)
		if err != nil {
			return fmt.Errorf("open sandbox stderr: %w", err)
		}
		defer stderr.Close()
		return fetcher.RunChild(ctx, opts, req, stderr)
	}, cacheDir, nil
}

// splitList reads a comma-separated flag, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func agentMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if versionAsked(args) {
		return versionMain(ctx, nil, stdout, stderr)
	}
	f := newAgentFlags("agent")
	f.fs.SetOutput(stderr)
	if err := f.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "mesolite agent:", err)
		return 2
	}
	lw, closeLog, err := logWriter(stderr, *f.logDir, "agent")
	if err != nil {
		fmt.Fprintln(stderr, "mesolite agent:", err)
		return 2
	}
	defer closeLog()
	log, level, err := newLoggerLevel(lw, *f.loggingLevel, *f.logFormat)
	if err != nil {
		fmt.Fprintln(stderr, "mesolite agent:", err)
		return 2
	}
	warnUnknownEnv(log, f.fs)
	warnInertFlags(log, f.fs)
	a, err := f.buildAgent(ctx, log, level)
	if err != nil {
		fmt.Fprintln(stderr, "mesolite agent:", err)
		return 1
	}
	l, err := net.Listen("tcp", net.JoinHostPort(*f.ip, strconv.Itoa(*f.port)))
	if err != nil {
		fmt.Fprintln(stderr, "mesolite agent:", err)
		return 1
	}
	if err := a.Run(ctx, l); err != nil {
		log.Error("agent stopped", "error", err)
		return 1
	}
	return 0
}

// maxExecutorEnv caps --executor_environment_variables.
const maxExecutorEnv = 256

// parseExecutorEnv reads --executor_environment_variables: a JSON object of
// names to string values, or file:///path holding one.
func parseExecutorEnv(v string) (map[string]string, error) {
	v, err := cliflags.ReadValue(v)
	if err != nil || strings.TrimSpace(v) == "" {
		return nil, err
	}
	var env map[string]string
	if err := json.Unmarshal([]byte(v), &env); err != nil {
		return nil, fmt.Errorf("want a JSON object of names to strings: %w", err)
	}
	if len(env) > maxExecutorEnv {
		return nil, fmt.Errorf("%d variables, at most %d", len(env), maxExecutorEnv)
	}
	for name, val := range env {
		switch {
		case name == "" || strings.ContainsAny(name, "=\x00"):
			return nil, fmt.Errorf("%q is not a variable name", name)
		case strings.HasPrefix(name, "MESOS_"), strings.HasPrefix(name, "MESOLITE_"):
			return nil, fmt.Errorf("%s: MESOS_* and MESOLITE_* variables are set by the agent for each executor", name)
		case strings.ContainsRune(val, 0):
			return nil, fmt.Errorf("%s: the value holds a NUL byte", name)
		}
	}
	return env, nil
}
