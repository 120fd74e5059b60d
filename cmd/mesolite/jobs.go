package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mesolite/mesolite/frameworks/ha"
	"github.com/mesolite/mesolite/httpauth"
	"github.com/mesolite/mesolite/internal/cliflags"
	"github.com/mesolite/mesolite/internal/tlsconfig"
	"github.com/mesolite/mesolite/jobs"
)

// jobsMain is `mesolite jobs`: the Chronos-compatible cron, a framework of
// the cluster like any other. Its flags are Chronos's where they apply,
// also read from CHRONOS_<FLAG>.
func jobsMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := cliflags.New("jobs", `mesolite jobs --master=HOST:PORT [flags]

Runs scheduled jobs on the cluster (ISO 8601 repeating intervals,
dependent jobs, retries) and serves Chronos's REST API (/scheduler/jobs,
/scheduler/iso8601, /scheduler/dependency, ...; also under /v1), so
Chronos's job definitions, scripts and clients work unchanged. Its state
(framework id, jobs with their counts, runs in flight) is kept in
--work_dir, or with --zk_hosts in ZooKeeper under --zk_path, where several
instances elect a leader: the others answer the API with 307 to it, and
one takes over when it dies. An instance that loses its ZooKeeper session
while leading exits (status 1); run it under a service manager that
restarts it.`)
	fs.NoArgs = true
	fs.EnvPrefix = "CHRONOS_"
	master := fs.String("master", "", "the Mesos master: host:port, zk://host:2181/mesos or file:///path (required)")
	zkHosts := fs.String("zk_hosts", "", "ZooKeeper hosts for the state and leader election: host1:2181,host2:2181\n(user:password@host1:2181,... for digest authentication); empty: one instance, state in --work_dir")
	zkPath := fs.String("zk_path", "/chronos/state", "ZooKeeper path of the state (<path>/state) and the election (<path>/leader)")
	zkTimeout := fs.Int64("zk_timeout", 10000, "ZooKeeper session timeout in milliseconds: a dead leader is replaced after about this long")
	httpAddr := fs.String("http_address", "127.0.0.1", "address the API listens on (0.0.0.0: every interface; say --http_credentials then)")
	creds := fs.String("http_credentials", "", "credentials required on the API and the page (HTTP Basic): user:password, or a file of\nMesos's credentials format (JSON {\"credentials\":[...]} or 'principal secret' lines)")
	httpPort := fs.Int("http_port", jobs.DefaultHTTPPort, "port the API listens on")
	hostname := fs.String("hostname", "", "hostname the API is reached at, for the framework's web UI link and /scheduler/leader\n(default: the system's hostname, or the listen address when that is loopback)")
	name := fs.String("mesos_framework_name", jobs.DefaultFrameworkName, "framework name")
	role := fs.String("mesos_role", "", "role the framework subscribes with (empty: *)")
	user := fs.String("user", "", "user jobs run as when they name no runAsUser (default: the current user)")
	failover := fs.Int64("failover_timeout", int64((7 * 24 * time.Hour).Seconds()), "seconds the master keeps the framework's tasks while it is away")
	workDir := fs.String("work_dir", "/var/lib/mesolite/jobs", "directory of the framework's state")
	disableAfter := fs.Int("disable_after_failures", 0, "disable a job after this many failures in a row (its retries done); 0: never")
	notifyURL := fs.String("http_notification_url", "", "URL each failed run (and each job disabled for failing) is POSTed to as JSON, for its owners")
	mailServer := fs.String("mail_server", "", "SMTP server (host:port) each failed run (and each job disabled for failing) is mailed through to the job's owners")
	mailFrom := fs.String("mail_from", "", "sender address of the failure mails (required with --mail_server)")
	mailUser := fs.String("mail_user", "", "user to authenticate to the SMTP server as (AUTH PLAIN, only over TLS or to loopback)")
	mailPassword := fs.String("mail_password", "", "password for --mail_user (prefer CHRONOS_MAIL_PASSWORD: a command line is visible to every user)")
	mailSSL := fs.Bool("mail_ssl", false, "connect to the SMTP server over TLS from the first byte (SMTPS, port 465); without it STARTTLS is used when offered")
	principal := fs.String("mesos_authentication_principal", "", "principal to authenticate with the master as")
	secretFile := fs.String("mesos_authentication_secret_file", "", "file holding the secret of --mesos_authentication_principal")
	ssl := defineSSLFlags(fs, "CA bundle (PEM) the master is verified with when the cluster speaks TLS, and, besides the system's roots,\n"+
		"the TLS certificates of --mail_server and an https --http_notification_url (with LIBPROCESS_SSL_ENABLED=true, LIBPROCESS_SSL_CA_FILE when this is empty)")
	taskCPU := fs.Float64("mesos_task_cpu", jobs.DefaultCPUs, "cpus of a job that gives none")
	taskMem := fs.Float64("mesos_task_mem", jobs.DefaultMem, "mem (MB) of a job that gives none")
	taskDisk := fs.Float64("mesos_task_disk", jobs.DefaultDisk, "disk (MB) of a job that gives none")
	taskEpsilon := fs.Int64("task_epsilon", 60, "epsilon in seconds of a job that gives none: a run missed by more is skipped")
	failureRetry := fs.Int64("failure_retry", jobs.DefaultRetryBackoff.Milliseconds(), "milliseconds before a failed run's first retry; each further one waits twice as long, up to 10 minutes")
	declineFor := fs.Int64("decline_offer_duration", 0, "milliseconds an offer that fits no due run is declined for (0: Mesos's default, 5 s);\nwith no run due, offers are declined until one is")
	minRevive := fs.Int64("min_revive_offers_interval", jobs.DefaultMinReviveInterval.Milliseconds(), "the fewest milliseconds between two requests for offers (REVIVE)")
	reconcile := fs.Int64("reconciliation_interval", 600, "seconds between two reconciliations of the runs' task states with the master")
	clusterName := fs.String("cluster_name", "", "the cluster's name, said in each failure notice (mail subject, webhook and chat messages)")
	webuiURL := fs.String("webui_url", "", "the framework's web UI link in the master's UI (default: this API's URL)")
	realm := fs.String("http_realm", "chronos", "the HTTP Basic realm of --http_credentials")
	notifyCreds := fs.String("http_notification_credentials", "", "user:password sent (HTTP Basic) with each POST to --http_notification_url")
	slackURL := fs.String("slack_url", "", "a Slack incoming webhook each failure notice is posted to as a message")
	mattermostURL := fs.String("mattermost_url", "", "a Mattermost incoming webhook each failure notice is posted to as a message")
	// Chronos's flags that have nothing to set here: accepted so that a
	// Chronos command line starts, and said in the log when given.
	horizon := fs.Int64("schedule_horizon", 60, "Chronos's scheduling look-ahead in seconds; no effect: runs are started at their time, with no look-ahead")
	_ = fs.Int64("leader_max_idle_time", 5000, "Chronos's look-ahead in milliseconds; no effect here")
	_ = fs.Bool("mesos_checkpoint", true, "Chronos's checkpointing switch; no effect: the framework always checkpoints, so runs survive an agent restart")
	_ = fs.Bool("revive_offers_for_new_jobs", false, "Chronos's switch; no effect: offers are revived whenever a run is due")
	_ = fs.Int("job_history_limit", 5, "Chronos's history view length; no effect here")
	var ignored []string
	for _, name := range []string{"cassandra_contact_points", "cassandra_port", "cassandra_keyspace", "cassandra_table", "cassandra_stat_count_table",
		"cassandra_consistency", "cassandra_ttl", "graphite_host_port", "graphite_reporting_interval", "graphite_group_prefix", "raven_dsn", "assets_path", "https_port"} {
		fs.Func(name, "Chronos's flag; no effect here (said in the log when given)", func(string) error {
			ignored = append(ignored, "--"+name)
			return nil
		})
	}
	keystore := fs.String("ssl_keystore_path", "", "Chronos's Java keystore: refused; serve https with --ssl_cert_file and --ssl_key_file (PEM)")
	_ = fs.String("ssl_keystore_password", "", "Chronos's keystore password; see --ssl_keystore_path")
	level := fs.String("logging_level", "INFO", "log level: ERROR, WARNING, INFO, DEBUG")
	format := fs.String("log_format", "text", "log format: text or json")
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "mesolite jobs:", err)
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "mesolite jobs:", err)
		return 1
	}
	switch {
	case *master == "":
		fmt.Fprintln(stderr, "mesolite jobs: --master is required")
		return 2
	case *disableAfter < 0:
		fmt.Fprintln(stderr, "mesolite jobs: --disable_after_failures must not be negative")
		return 2
	case *notifyURL != "" && !strings.HasPrefix(*notifyURL, "http://") && !strings.HasPrefix(*notifyURL, "https://"):
		fmt.Fprintln(stderr, "mesolite jobs: --http_notification_url must be an http:// or https:// URL")
		return 2
	case *failover < 0 || *zkTimeout <= 0:
		fmt.Fprintln(stderr, "mesolite jobs: --failover_timeout must not be negative, --zk_timeout must be positive")
		return 2
	case *keystore != "":
		fmt.Fprintln(stderr, "mesolite jobs: --ssl_keystore_path: a Java keystore is not read here; give the certificate and its key as PEM files with --ssl_cert_file and --ssl_key_file")
		return 2
	case !(*taskCPU > 0 && *taskMem > 0) || *taskDisk < 0 || *taskEpsilon < 0 || math.IsInf(*taskCPU+*taskMem+*taskDisk, 0):
		fmt.Fprintln(stderr, "mesolite jobs: --mesos_task_cpu and --mesos_task_mem must be positive, --mesos_task_disk and --task_epsilon not negative")
		return 2
	case *failureRetry <= 0 || *minRevive <= 0 || *reconcile <= 0 || *declineFor < 0 || *horizon <= 0:
		fmt.Fprintln(stderr, "mesolite jobs: --failure_retry, --min_revive_offers_interval, --reconciliation_interval and --schedule_horizon must be positive, --decline_offer_duration not negative")
		return 2
	case !validRealm(*realm):
		fmt.Fprintln(stderr, "mesolite jobs: --http_realm must be printable ASCII without quotes or backslashes")
		return 2
	case *notifyCreds != "" && !strings.Contains(*notifyCreds, ":"):
		fmt.Fprintln(stderr, "mesolite jobs: --http_notification_credentials must be user:password")
		return 2
	}
	log, err := newLogger(stderr, *level, *format)
	if err != nil {
		fmt.Fprintln(stderr, "mesolite jobs:", err)
		return 2
	}
	cfg := jobs.Config{
		Master: *master, HTTPPort: *httpPort, FrameworkName: *name, Role: *role, User: *user, WorkDir: *workDir,
		FailoverTimeout: time.Duration(*failover) * time.Second, Logger: log,
		DisableAfterFailures: *disableAfter, NotificationURL: *notifyURL, SlackURL: *slackURL, MattermostURL: *mattermostURL,
		ClusterName: *clusterName, WebUIURL: *webuiURL, Realm: *realm,
		Defaults:          jobs.JobDefaults{CPUs: *taskCPU, Mem: *taskMem, Disk: *taskDisk, Epsilon: fmt.Sprintf("PT%dS", *taskEpsilon)},
		RetryBackoff:      time.Duration(*failureRetry) * time.Millisecond,
		DeclineBusy:       time.Duration(*declineFor) * time.Millisecond,
		MinReviveInterval: time.Duration(*minRevive) * time.Millisecond,
		ReconcileInterval: time.Duration(*reconcile) * time.Second,
	}
	cfg.NotificationUser, cfg.NotificationPassword, _ = strings.Cut(*notifyCreds, ":")
	if len(ignored) > 0 {
		log.Warn("Chronos flags that have no effect here are ignored", "flags", ignored)
	}
	if *creds != "" {
		c, err := apiCredentials(*creds)
		if err != nil {
			fmt.Fprintln(stderr, "mesolite jobs: --http_credentials:", err)
			return 2
		}
		cfg.Credentials = c
	}
	if *principal != "" {
		cfg.Principal = *principal
		if *secretFile != "" {
			secret, err := httpauth.ReadSecretFile(*secretFile)
			if err != nil {
				fmt.Fprintln(stderr, "mesolite jobs: --mesos_authentication_secret_file:", err)
				return 2
			}
			cfg.Secret = secret
		}
	} else if *secretFile != "" {
		fmt.Fprintln(stderr, "mesolite jobs: --mesos_authentication_secret_file needs --mesos_authentication_principal")
		return 2
	}
	// The cluster's TLS as every mesolite command reads it: the API served
	// over https with a certificate, the master reached over https with the
	// cluster's CA.
	st, err := ssl.setup()
	if err != nil {
		fmt.Fprintln(stderr, "mesolite jobs: TLS:", err)
		return 2
	}
	// Unlike the other commands, --ssl_ca_file alone does not switch the
	// master to https here: jobs takes it for its mail server and webhooks
	// too, which a plain-http cluster may well have behind TLS.
	// A certificate, LIBPROCESS_SSL_ENABLED or an https:// master does.
	if _, envOn := tlsconfig.FromEnv(os.Getenv); st.server != nil || envOn || strings.HasPrefix(*master, "https://") {
		if cfg.MasterTLS, err = st.client(); err != nil {
			fmt.Fprintln(stderr, "mesolite jobs: TLS:", err)
			return 2
		}
	}
	cfg.HTTPS = st.server != nil
	// The receivers of notices may be public servers: the CA besides the
	// system's roots.
	var clientTLS *tls.Config
	if st.files.CA != "" {
		if clientTLS, err = (tlsconfig.Files{CA: st.files.CA}).ClientWithSystemRoots(); err != nil {
			fmt.Fprintln(stderr, "mesolite jobs:", err)
			return 2
		}
		cfg.NotificationTLS = clientTLS
	}
	if *mailServer != "" {
		cfg.Mail = &jobs.MailConfig{Server: *mailServer, From: *mailFrom, User: *mailUser, Password: *mailPassword, SSL: *mailSSL, TLS: clientTLS}
		if err := cfg.Mail.Validate(); err != nil {
			fmt.Fprintln(stderr, "mesolite jobs:", err)
			return 2
		}
	} else if *mailFrom != "" || *mailUser != "" || *mailPassword != "" || *mailSSL {
		fmt.Fprintln(stderr, "mesolite jobs: --mail_from, --mail_user, --mail_password and --mail_ssl need --mail_server")
		return 2
	}
	cfg.Hostname = *hostname
	if cfg.Hostname == "" {
		if ip := net.ParseIP(*httpAddr); ip != nil && ip.IsLoopback() {
			cfg.Hostname = *httpAddr
		} else if h, err := os.Hostname(); err == nil {
			cfg.Hostname = h
		}
	}
	var elect *ha.HA
	var svc *jobs.Service
	if *zkHosts != "" {
		var err error
		elect, err = ha.New(ha.Config{ZK: "zk://" + strings.TrimPrefix(*zkHosts, "zk://") + "/" + strings.Trim(*zkPath, "/"),
			Hostname: cfg.Hostname, Port: *httpPort, Scheme: st.scheme(), SessionTimeout: time.Duration(*zkTimeout) * time.Millisecond, Logger: log})
		if err != nil {
			return fail(fmt.Errorf("--zk_hosts, --zk_path: %w", err))
		}
	} else {
		var err error
		if svc, err = jobs.New(ctx, cfg); err != nil {
			return fail(err)
		}
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(*httpAddr, strconv.Itoa(*httpPort)))
	if err != nil {
		return fail(err)
	}
	if st.server != nil {
		ln = tls.NewListener(ln, st.server)
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() && len(cfg.Credentials) == 0 {
		log.Warn("the API listens beyond loopback without --http_credentials: anyone who reaches it can run commands on the cluster", "address", ln.Addr().String())
	}
	fmt.Fprintf(stdout, "mesolite jobs: Chronos API at %s://%s/scheduler/jobs (framework %q, master %s)\n", st.scheme(),
		net.JoinHostPort(cfg.Hostname, strconv.Itoa(*httpPort)), *name, *master)
	if elect != nil {
		err = jobs.RunHA(ctx, cfg, elect, ln)
	} else {
		err = svc.Run(ctx, ln)
	}
	if err != nil {
		log.Error("jobs stopped", "error", err)
		return 1
	}
	return 0
}
