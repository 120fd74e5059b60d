package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mesolite/mesolite/apps"
	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/frameworks"
	"github.com/mesolite/mesolite/frameworks/ha"
	"github.com/mesolite/mesolite/httpauth"
	"github.com/mesolite/mesolite/internal/cliflags"
)

// appsMain is `mesolite apps`: the Marathon-compatible service runner, a
// framework of the cluster like any other. Its flags are Marathon's where
// they apply, with Marathon's units (seconds for --failover_timeout,
// milliseconds for --task_launch_timeout), and also read from
// MARATHON_<FLAG> as Marathon reads them.
func appsMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := cliflags.New("apps", `mesolite apps --master=HOST:PORT [flags]

Runs long-running apps on the cluster and serves Marathon's REST API
(/v2/apps, /v2/tasks, /v2/deployments, /v2/events, ...), so Marathon's
clients, load balancers and service discovery work unchanged. Its state
(framework id, apps, instances, deployments) is kept in --work_dir, or
with --zk in ZooKeeper (<path>/state), where several instances elect a
leader (<path>/leader): the others answer the API with 307 to it, and one
takes over when it dies. A restarted or new leader fails over to the
framework and keeps every instance running. An instance that loses its
ZooKeeper session while leading exits (status 1); run it under a service
manager that restarts it.`)
	fs.NoArgs = true
	fs.EnvPrefix = "MARATHON_"
	master := fs.String("master", "", "the Mesos master: host:port, zk://host:2181/mesos or file:///path (required)")
	zk := fs.String("zk", "", "ZooKeeper for the state and leader election: zk://[user:password@]host1:2181,host2:2181/marathon;\nempty: one instance, state in --work_dir")
	zkTimeout := fs.Int64("zk_session_timeout", 10000, "ZooKeeper session timeout in milliseconds: a dead leader is replaced after about this long")
	httpAddr := fs.String("http_address", "127.0.0.1", "address the API listens on (0.0.0.0: every interface; say --http_credentials then)")
	httpPort := fs.Int("http_port", apps.DefaultHTTPPort, "port the API listens on")
	hostname := fs.String("hostname", "", "hostname the API is reached at, for the framework's web UI link and /v2/leader\n(default: the system's hostname, or the listen address when that is loopback)")
	name := fs.String("framework_name", apps.DefaultFrameworkName, "framework name; mesos-dns names the apps' tasks <app>.<framework_name>.mesos")
	failover := fs.Int64("failover_timeout", int64((7 * 24 * time.Hour).Seconds()), "seconds the master keeps the framework's tasks while it is away (restarted, upgraded)")
	role := fs.String("mesos_role", "", "role the framework subscribes with (empty: *)")
	user := fs.String("mesos_user", "", "user tasks run as when an app names none (default: the current user)")
	workDir := fs.String("work_dir", "/var/lib/mesolite/apps", "directory of the framework's state")
	launchTimeout := fs.Int64("task_launch_timeout", apps.DefaultTaskLaunchTimeout.Milliseconds(), "milliseconds an instance may take from launch to TASK_RUNNING before it is killed and replaced")
	creds := fs.String("http_credentials", "", "credentials required on the API (HTTP Basic): user:password, or a file of\nMesos's credentials format (JSON {\"credentials\":[...]} or 'principal secret' lines)")
	principal := fs.String("mesos_authentication_principal", "", "principal to authenticate with the master as")
	secretFile := fs.String("mesos_authentication_secret_file", "", "file holding the secret of --mesos_authentication_principal")
	portMin := fs.Int("local_port_min", apps.DefaultServicePortMin, "lowest service port given to apps")
	portMax := fs.Int("local_port_max", apps.DefaultServicePortMax, "highest service port given to apps")
	level := fs.String("logging_level", "INFO", "log level: ERROR, WARNING, INFO, DEBUG (and Marathon's off, fatal, trace, all)")
	format := fs.String("log_format", "text", "log format: text or json")
	proxyConnect := fs.Int("leader_proxy_connection_timeout", 5000, "milliseconds a standby waits to connect to the leader it proxies a request to")
	proxyRead := fs.Int("leader_proxy_read_timeout", 10000, "milliseconds a standby waits for the leader's answer, and between its reads (event streams excepted)")
	ssl := defineSSLFlags(fs, "CA bundle the master is verified with (and the API's certificate chain, when served)")
	// Marathon's flags that set something here.
	zkOpTimeout := fs.Int64("zk_timeout", 10000, "Marathon's ZooKeeper request timeout in milliseconds; checked, no further effect:\nrequests to ZooKeeper are bounded by --zk_session_timeout")
	webuiURL := fs.String("webui_url", "", "the framework's web UI link in the master's UI (default: this API's URL)")
	realm := fs.String("http_realm", "marathon", "the HTTP Basic realm of --http_credentials")
	reconcile := fs.Int64("reconciliation_interval", frameworks.DefaultReconcileInterval.Milliseconds(), "milliseconds between two reconciliations of the instances' task states with the master")
	minRevive := fs.Int64("min_revive_offers_interval", frameworks.DefaultMinReviveInterval.Milliseconds(), "the fewest milliseconds between two requests for offers (REVIVE)")
	declineFor := fs.Int64("decline_offer_duration", frameworks.DefaultDeclineIdle.Milliseconds(), "milliseconds an offer is declined for when no instance waits for one\n(new work revives offers at once)")
	maxVersions := fs.Int("zk_max_versions", 50, "versions of each app kept (GET /v2/apps/<id>/versions)")
	killRetry := fs.Int64("kill_retry_timeout", 10000, "milliseconds a kill waits for its task to end before it is sent again")
	leaderUI := fs.String("mesos_leader_ui_url", "", "the master's web UI /v2/info names and the web page links tasks to\n(default: the leading master's, as found)")
	envPrefix := fs.String("env_vars_prefix", "", "prefix put before the names of the variables HOST and PORT* each task is given\n(MESOS_TASK_ID, MARATHON_APP_* and the app's own keep theirs)")
	allowOrigin := fs.String("access_control_allow_origin", "", "origins whose web pages may read the API (CORS: GET and HEAD, no cookies), comma-separated:\nhttp://localhost:8888,https://ops.example; * for any")
	checkpoint := marathonToggle(fs, "checkpoint", true, "checkpoint tasks (always: --disable_checkpoint has no effect and is said in the log)")
	haOn := marathonToggle(fs, "ha", true, "take part in leader election through --zk (always with --zk: --disable_ha has no effect and is said in the log)")
	mesosAuth := marathonToggle(fs, "mesos_authentication", false, "authenticate with the master (needs --mesos_authentication_principal, which alone turns it on)")
	disableHTTP := new(bool)
	fs.BoolFunc("disable_http", "serve only https: needs --ssl_cert_file and --ssl_key_file, with which the API speaks https only anyway", func(v string) error {
		// MARATHON_DISABLE_HTTP= (empty) turns it on, as Marathon reads it.
		b := true
		if v != "" {
			var err error
			if b, err = strconv.ParseBool(v); err != nil {
				return errors.New("not a boolean")
			}
		}
		*disableHTTP = b
		return nil
	})
	httpsPort := fs.Int("https_port", 8443, "port the API listens on with --ssl_cert_file (https) when given; else --http_port")
	httpsAddr := fs.String("https_address", "", "address the API listens on with --ssl_cert_file (https) when given; else --http_address")
	keystore := fs.String("ssl_keystore_path", "", "Marathon's Java keystore: refused; serve https with --ssl_cert_file and --ssl_key_file (PEM)")
	_ = fs.String("ssl_keystore_password", "", "Marathon's keystore password; see --ssl_keystore_path")
	// Marathon's flags that have nothing to set here: accepted so that a
	// Marathon command line starts. Those of integrations and features
	// mesolite has no counterpart of are said in the log when given; the
	// tuning of Marathon's internals (batching, timeouts of its storage
	// and its offer matching) is accepted quietly, as it tunes nothing
	// that exists here.
	var ignored []string
	note := func(name string) {
		if !slices.Contains(ignored, "--"+name) {
			ignored = append(ignored, "--"+name)
		}
	}
	for _, name := range []string{"artifact_store", "plugin_dir", "plugin_conf", "event_subscriber", "http_endpoints", "reporter_graphite",
		"reporter_datadog", "metrics_name_prefix", "metrics_statsd_host", "metrics_statsd_port", "assets_path", "enable_features", "deprecated_features",
		"default_accepted_resource_roles", "executor", "max_apps", "http_max_concurrent_requests", "gpu_scheduling_behavior",
		"mesos_bridge_name", "default_network_name", "backup_location", "draining_seconds", "sentry", "sentry_tags", "new_group_enforce_role"} {
		fs.Func(name, "Marathon's flag; no effect here (said in the log when given)", func(v string) error {
			if strings.HasPrefix(v, "--") {
				// "--artifact_store --http_credentials=..." would drop
				// the credentials without a word.
				return fmt.Errorf("takes a value, not the flag %q", v)
			}
			note(name)
			return nil
		})
	}
	for _, name := range []string{"tracing", "maintenance_mode", "leader_proxy_ssl_ignore_hostname", "metrics_prometheus", "metrics_statsd"} {
		for _, n := range []string{name, "disable_" + name} {
			fs.BoolFunc(n, "Marathon's switch; no effect here (said in the log when given)", func(string) error {
				note(n)
				return nil
			})
		}
	}
	for _, name := range []string{"reconciliation_initial_delay", "scale_apps_initial_delay", "scale_apps_interval", "max_tasks_per_offer",
		"max_instances_per_offer", "max_tasks_per_offer_cycle", "launch_token_refresh_interval", "launch_tokens", "offer_matching_timeout",
		"save_tasks_to_launch_timeout", "task_launch_confirm_timeout", "revive_offers_repetitions", "zk_compression_threshold", "zk_max_node_size",
		"marathon_store_timeout", "on_elected_prepare_timeout", "http_event_callback_slow_consumer_timeout", "task_lost_expunge_gc",
		"task_lost_expunge_initial_delay", "task_lost_expunge_interval", "task_reservation_timeout", "mesos_heartbeat_interval",
		"mesos_heartbeat_failure_threshold", "max_running_deployments", "zk_connection_timeout", "storage_compaction_interval",
		"storage_compaction_scan_batch_size", "group_versions_cache_size"} {
		fs.Func(name, "Marathon's tuning of its internals (a number); no effect here", func(v string) error {
			if n, err := strconv.ParseInt(v, 10, 64); err != nil || n < 0 {
				return errors.New("not a number that is not negative")
			}
			return nil
		})
	}
	for _, name := range []string{"zk_compression", "store_cache", "revive_offers_for_new_apps", "metrics", "suppress_offers"} {
		_ = marathonToggle(fs, name, true, "Marathon's switch of its internals; no effect here")
	}
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "mesolite apps:", err)
		return 2
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	fail := func(err error) int {
		fmt.Fprintln(stderr, "mesolite apps:", err)
		return 1
	}
	usage := func(msg string) int {
		fmt.Fprintln(stderr, "mesolite apps:", msg)
		return 2
	}
	switch {
	case *master == "":
		return usage("--master is required")
	case *failover < 0 || *launchTimeout <= 0 || *zkTimeout <= 0 || *proxyConnect <= 0 || *proxyRead <= 0:
		return usage("--failover_timeout, --task_launch_timeout, --zk_session_timeout and --leader_proxy_* must be positive")
	case *keystore != "":
		return usage("--ssl_keystore_path: a Java keystore is not read here; give the certificate and its key as PEM files with --ssl_cert_file and --ssl_key_file")
	case *zkOpTimeout <= 0 || *reconcile <= 0 || *minRevive <= 0 || *killRetry <= 0 || *declineFor <= 0:
		return usage("--zk_timeout, --reconciliation_interval, --min_revive_offers_interval, --kill_retry_timeout and --decline_offer_duration must be positive")
	case max(*zkOpTimeout, *reconcile, *minRevive, *killRetry, *declineFor) > maxFlagMillis:
		return usage("--zk_timeout, --reconciliation_interval, --min_revive_offers_interval, --kill_retry_timeout and --decline_offer_duration must be at most a year (in milliseconds)")
	case *maxVersions <= 0:
		return usage("--zk_max_versions must be positive")
	case *httpsPort <= 0 || *httpsPort > 65535:
		return usage("--https_port must be a port (1-65535)")
	case *mesosAuth && *principal == "":
		return usage("--mesos_authentication needs --mesos_authentication_principal (and --mesos_authentication_secret_file): the framework would subscribe unauthenticated")
	case *secretFile != "" && *principal == "":
		return usage("--mesos_authentication_secret_file needs --mesos_authentication_principal")
	case !webURL(*webuiURL) || !webURL(*leaderUI):
		return usage("--webui_url and --mesos_leader_ui_url must be http:// or https:// URLs")
	case strings.IndexFunc(*envPrefix, notEnvNameChar) >= 0 || *envPrefix != "" && (*envPrefix)[0] >= '0' && (*envPrefix)[0] <= '9':
		return usage("--env_vars_prefix must be letters, digits and underscores, not starting with a digit")
	case corsOrigins(*allowOrigin) == nil && *allowOrigin != "":
		return usage("--access_control_allow_origin must be * or origins (scheme://host[:port]), comma-separated")
	case !validRealm(*realm):
		return usage("--http_realm must be printable ASCII without quotes or backslashes")
	}
	if !*checkpoint {
		note("disable_checkpoint")
	}
	if !*haOn && *zk != "" {
		note("disable_ha")
	}
	log, err := newLogger(stderr, marathonLevel(*level), *format)
	if err != nil {
		return usage(err.Error())
	}
	cfg := apps.Config{
		Master: *master, FrameworkName: *name, Role: *role, User: *user, WorkDir: *workDir,
		FailoverTimeout:   time.Duration(*failover) * time.Second,
		TaskLaunchTimeout: time.Duration(*launchTimeout) * time.Millisecond,
		ServicePortMin:    *portMin, ServicePortMax: *portMax, Logger: log,
		LeaderProxyConnectTimeout: time.Duration(*proxyConnect) * time.Millisecond,
		LeaderProxyReadTimeout:    time.Duration(*proxyRead) * time.Millisecond,
		WebUIURL:                  *webuiURL, MesosLeaderUIURL: *leaderUI, Realm: *realm, MaxVersions: *maxVersions,
		EnvVarsPrefix: *envPrefix, AllowOrigins: corsOrigins(*allowOrigin),
		KillRetry:         time.Duration(*killRetry) * time.Millisecond,
		DeclineIdle:       time.Duration(*declineFor) * time.Millisecond,
		MinReviveInterval: time.Duration(*minRevive) * time.Millisecond,
		ReconcileInterval: time.Duration(*reconcile) * time.Millisecond,
	}
	if *creds != "" {
		c, err := apiCredentials(*creds)
		if err != nil {
			return usage("--http_credentials: " + err.Error())
		}
		cfg.Credentials = c
	}
	if *principal != "" {
		cfg.Principal = *principal
		if *secretFile != "" {
			secret, err := httpauth.ReadSecretFile(*secretFile)
			if err != nil {
				return fail(fmt.Errorf("--mesos_authentication_secret_file: %w", err))
			}
			cfg.Secret = secret
		}
	}
	st, err := ssl.setup()
	if err != nil {
		return fail(fmt.Errorf("TLS: %w", err))
	}
	if cfg.MasterTLS, err = st.client(); err != nil {
		return fail(fmt.Errorf("TLS: %w", err))
	}
	cfg.HTTPS = st.server != nil
	// One listener: https with a certificate (on --https_port and
	// --https_address when given, as Marathon serves https there), plain
	// http without.
	listenAddr, listenPort := *httpAddr, *httpPort
	switch {
	case cfg.HTTPS:
		if given["https_port"] {
			listenPort = *httpsPort
		}
		if given["https_address"] {
			if *httpsAddr != "" { // MARATHON_HTTPS_ADDRESS= is not every interface
				listenAddr = *httpsAddr
			}
		}
	case *disableHTTP:
		return usage("--disable_http: without https the API would not be served at all; give --ssl_cert_file and --ssl_key_file (PEM)")
	default:
		for _, n := range []string{"https_port", "https_address"} {
			if given[n] {
				note(n)
			}
		}
	}
	cfg.HTTPPort = listenPort
	cfg.Hostname = *hostname
	if cfg.Hostname == "" {
		if ip := net.ParseIP(listenAddr); ip != nil && ip.IsLoopback() {
			cfg.Hostname = listenAddr
		} else if h, err := os.Hostname(); err == nil {
			cfg.Hostname = h
		}
	}
	if len(ignored) > 0 {
		log.Warn("Marathon flags that have no effect here are ignored", "flags", ignored)
	}
	var elect *ha.HA
	var svc *apps.Service
	if *zk != "" {
		elect, err = ha.New(ha.Config{ZK: *zk, Hostname: cfg.Hostname, Port: listenPort, Scheme: map[bool]string{true: "https", false: "http"}[cfg.HTTPS],
			SessionTimeout: time.Duration(*zkTimeout) * time.Millisecond, Logger: log})
		if err != nil {
			return fail(fmt.Errorf("--zk: %w", err))
		}
	} else if svc, err = apps.New(ctx, cfg); err != nil {
		return fail(err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(listenAddr, strconv.Itoa(listenPort)))
	if err != nil {
		return fail(err)
	}
	if st.server != nil {
		ln = tls.NewListener(ln, st.server)
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() && len(cfg.Credentials) == 0 {
		log.Warn("the API listens beyond loopback without --http_credentials: anyone who reaches it can run commands on the cluster", "address", ln.Addr().String())
	}
	fmt.Fprintf(stdout, "mesolite apps: Marathon API at %s://%s/v2/apps (framework %q, master %s)\n", map[bool]string{true: "https", false: "http"}[cfg.HTTPS],
		net.JoinHostPort(cfg.Hostname, strconv.Itoa(listenPort)), *name, *master)
	if elect != nil {
		err = apps.RunHA(ctx, cfg, elect, ln)
	} else {
		err = svc.Run(ctx, ln)
	}
	if err != nil {
		log.Error("apps stopped", "error", err)
		return 1
	}
	return 0
}

// apiCredentials reads --http_credentials: Marathon's user:password, or a
// file of Mesos's credentials format (a value naming an existing file).
func apiCredentials(v string) ([]httpauth.Credential, error) {
	path := strings.TrimPrefix(v, "file://")
	if strings.HasPrefix(v, "file://") || strings.HasPrefix(v, "/") {
		return httpauth.LoadCredentials(path)
	}
	user, pass, ok := strings.Cut(v, ":")
	if !ok || user == "" || pass == "" {
		return nil, fmt.Errorf("want user:password or a credentials file: %w", errdefs.ErrInvalid)
	}
	return []httpauth.Credential{{Principal: user, Secret: pass}}, nil
}

// marathonToggle defines Marathon's switch name as --name and
// --disable_name (each also --name=false, and an empty value of its
// MARATHON_ variable meaning on), returning whether it is on.
func marathonToggle(fs *cliflags.FlagSet, name string, def bool, usage string) *bool {
	on := def
	set := func(neg bool) func(string) error {
		return func(v string) error {
			b := true
			if v != "" {
				var err error
				if b, err = strconv.ParseBool(v); err != nil {
					return errors.New("not a boolean")
				}
			}
			on = b != neg
			return nil
		}
	}
	fs.BoolFunc(name, usage, set(false))
	fs.BoolFunc("disable_"+name, "turns --"+name+" off", set(true))
	return &on
}

// validRealm says whether realm can be --http_realm: a realm httpauth
// takes, and not a flag taken as its value.
func validRealm(realm string) bool {
	return httpauth.ValidRealm(realm) == nil && !strings.HasPrefix(realm, "--")
}

// maxFlagMillis bounds the millisecond flags: a year, far below what a
// time.Duration holds (a larger one would overflow into the defaults).
const maxFlagMillis = 365 * 24 * 3600 * 1000

// marathonLevel reads Marathon's --logging_level values as the levels
// mesolite has: off and fatal as ERROR, trace and all as DEBUG.
func marathonLevel(l string) string {
	switch strings.ToLower(l) {
	case "off", "fatal":
		return "ERROR"
	case "trace", "all":
		return "DEBUG"
	}
	return l
}

// webURL: empty, or an absolute http(s) URL.
func webURL(v string) bool {
	if v == "" {
		return true
	}
	u, err := url.Parse(v)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// notEnvNameChar: r may not be in a variable's name (letters, digits, _).
func notEnvNameChar(r rune) bool {
	return !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9')
}

// corsOrigins reads --access_control_allow_origin: "*", or origins
// (scheme://host[:port], a trailing / dropped) separated by commas; nil
// when empty or when one is not an origin.
func corsOrigins(v string) []string {
	var out []string
	for o := range strings.SplitSeq(v, ",") {
		o = strings.TrimSuffix(strings.TrimSpace(o), "/")
		if o == "" {
			continue
		}
		if o != "*" {
			u, err := url.Parse(o)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil {
				return nil
			}
		}
		out = append(out, o)
	}
	return out
}
