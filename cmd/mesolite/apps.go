package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mesolite/mesolite/apps"
	"github.com/mesolite/mesolite/errdefs"
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
	level := fs.String("logging_level", "INFO", "log level: ERROR, WARNING, INFO, DEBUG")
	format := fs.String("log_format", "text", "log format: text or json")
	proxyConnect := fs.Int("leader_proxy_connection_timeout", 5000, "milliseconds a standby waits to connect to the leader it proxies a request to")
	proxyRead := fs.Int("leader_proxy_read_timeout", 10000, "milliseconds a standby waits for the leader's answer, and between its reads (event streams excepted)")
	ssl := defineSSLFlags(fs, "CA bundle the master is verified with (and the API's certificate chain, when served)")
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "mesolite apps:", err)
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "mesolite apps:", err)
		return 1
	}
	switch {
	case *master == "":
		fmt.Fprintln(stderr, "mesolite apps: --master is required")
		return 2
	case *failover < 0 || *launchTimeout <= 0 || *zkTimeout <= 0 || *proxyConnect <= 0 || *proxyRead <= 0:
		fmt.Fprintln(stderr, "mesolite apps: --failover_timeout, --task_launch_timeout, --zk_session_timeout and --leader_proxy_* must be positive")
		return 2
	}
	log, err := newLogger(stderr, *level, *format)
	if err != nil {
		fmt.Fprintln(stderr, "mesolite apps:", err)
		return 2
	}
	cfg := apps.Config{
		Master: *master, HTTPPort: *httpPort, FrameworkName: *name, Role: *role, User: *user, WorkDir: *workDir,
		FailoverTimeout:   time.Duration(*failover) * time.Second,
		TaskLaunchTimeout: time.Duration(*launchTimeout) * time.Millisecond,
		ServicePortMin:    *portMin, ServicePortMax: *portMax, Logger: log,
		LeaderProxyConnectTimeout: time.Duration(*proxyConnect) * time.Millisecond,
		LeaderProxyReadTimeout:    time.Duration(*proxyRead) * time.Millisecond,
	}
	cfg.Hostname = *hostname
	if cfg.Hostname == "" {
		if ip := net.ParseIP(*httpAddr); ip != nil && ip.IsLoopback() {
			cfg.Hostname = *httpAddr
		} else if h, err := os.Hostname(); err == nil {
			cfg.Hostname = h
		}
	}
	if *creds != "" {
		c, err := apiCredentials(*creds)
		if err != nil {
			return fail(fmt.Errorf("--http_credentials: %w", err))
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
	var elect *ha.HA
	var svc *apps.Service
	if *zk != "" {
		elect, err = ha.New(ha.Config{ZK: *zk, Hostname: cfg.Hostname, Port: *httpPort, Scheme: map[bool]string{true: "https", false: "http"}[cfg.HTTPS],
			SessionTimeout: time.Duration(*zkTimeout) * time.Millisecond, Logger: log})
		if err != nil {
			return fail(fmt.Errorf("--zk: %w", err))
		}
	} else if svc, err = apps.New(ctx, cfg); err != nil {
		return fail(err)
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
	fmt.Fprintf(stdout, "mesolite apps: Marathon API at %s://%s/v2/apps (framework %q, master %s)\n", map[bool]string{true: "https", false: "http"}[cfg.HTTPS],
		net.JoinHostPort(cfg.Hostname, strconv.Itoa(*httpPort)), *name, *master)
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
