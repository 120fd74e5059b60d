package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/mesolite/mesolite/apps"
	"github.com/mesolite/mesolite/jobs"
	"github.com/mesolite/mesolite/master"
	"github.com/mesolite/mesolite/webui"
)

// localMain runs a master and an agent in one process: the embedded
// default for trying mesolite out on one machine.
func localMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if versionAsked(args) {
		return versionMain(ctx, nil, stdout, stderr)
	}
	f := newAgentFlags("local")
	f.fs.SetSynopsis(`mesolite local [--work_dir=DIR] [--ip=IP] [--master_port=5050] [--port=5051] [--apps_port=8080] [--jobs_port=4400] [agent flags]

Runs a master, an agent, the apps service (Marathon's API) and the jobs
service (Chronos's API) in one process, for trying mesolite out on one machine: the master's registry in
<work_dir>/master, the agent's sandboxes and state in <work_dir>/agent, the
apps' state in <work_dir>/apps. Every agent flag applies to the agent.`)
	masterPort := f.fs.Int("master_port", 5050, "port of the master")
	appsPort := f.fs.Int("apps_port", apps.DefaultHTTPPort, "port of the apps service (Marathon's API) beside them; 0: none")
	jobsPort := f.fs.Int("jobs_port", 4400, "port of the jobs service (Chronos's API) beside them; 0: none")
	*f.workDir = "/tmp/mesolite"
	f.fs.Lookup("work_dir").DefValue = "/tmp/mesolite"
	f.fs.Lookup("work_dir").Usage = "directory for both: the master's registry in <work_dir>/master, sandboxes and agent state in <work_dir>/agent"
	f.fs.SetOutput(stderr)
	if err := f.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "mesolite local:", err)
		return 2
	}
	lw, closeLog, err := logWriter(stderr, *f.logDir, "local")
	if err != nil {
		fmt.Fprintln(stderr, "mesolite local:", err)
		return 2
	}
	defer closeLog()
	log, err := newLogger(lw, *f.loggingLevel, *f.logFormat)
	if err != nil {
		fmt.Fprintln(stderr, "mesolite local:", err)
		return 2
	}
	warnUnknownEnv(log, f.fs)
	warnInertFlags(log, f.fs)
	root, err := filepath.Abs(*f.workDir)
	if err != nil {
		fmt.Fprintln(stderr, "mesolite local:", err)
		return 1
	}
	masterAddr := net.JoinHostPort(*f.ip, strconv.Itoa(*masterPort))
	mcfg := master.DefaultConfig()
	mcfg.IP, mcfg.Port, mcfg.WorkDir, mcfg.Logger = *f.ip, *masterPort, filepath.Join(root, "master"), log.With("process", "master")
	mcfg.UI = webui.Master(webui.Options{Title: "mesolite local"})
	// One certificate for both: the agent then trusts the master through
	// --ssl_ca_file, or through the certificate itself when self-signed.
	st, err := f.ssl.setup()
	if err != nil {
		fmt.Fprintln(stderr, "mesolite local: TLS:", err)
		return 1
	}
	mcfg.TLS = st.server
	m, err := master.New(mcfg)
	if err != nil {
		fmt.Fprintln(stderr, "mesolite local: master:", err)
		return 1
	}
	ml, err := net.Listen("tcp", masterAddr)
	if err != nil {
		fmt.Fprintln(stderr, "mesolite local:", err)
		return 1
	}
	*f.master = masterAddr
	*f.workDir = filepath.Join(root, "agent")
	a, err := f.buildAgent(ctx, log.With("process", "agent"), nil)
	if err != nil {
		fmt.Fprintln(stderr, "mesolite local: agent:", err)
		return 1
	}
	al, err := net.Listen("tcp", net.JoinHostPort(*f.ip, strconv.Itoa(*f.port)))
	if err != nil {
		fmt.Fprintln(stderr, "mesolite local:", err)
		return 1
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	wg.Add(2)
	go func() { defer wg.Done(); errc <- m.Run(ctx, ml) }()
	go func() { defer wg.Done(); errc <- a.Run(ctx, al) }()
	// The cluster's init: Marathon's API on --apps_port, a framework of
	// the master like any other, its state beside the master's.
	if *appsPort != 0 {
		acfg := apps.Config{Master: masterAddr, HTTPPort: *appsPort, FrameworkName: apps.DefaultFrameworkName,
			WorkDir: filepath.Join(root, "apps"), Hostname: *f.ip, Logger: log.With("process", "apps"),
			FailoverTimeout: 7 * 24 * time.Hour, TaskLaunchTimeout: apps.DefaultTaskLaunchTimeout,
			ServicePortMin: apps.DefaultServicePortMin, ServicePortMax: apps.DefaultServicePortMax}
		if acfg.MasterTLS, err = st.client(); err != nil {
			fmt.Fprintln(stderr, "mesolite local: apps: TLS:", err)
			cancel()
			wg.Wait()
			return 1
		}
		svc, err := apps.New(ctx, acfg)
		if err != nil {
			fmt.Fprintln(stderr, "mesolite local: apps:", err)
			cancel()
			wg.Wait()
			return 1
		}
		apl, err := net.Listen("tcp", net.JoinHostPort(*f.ip, strconv.Itoa(*appsPort)))
		if err != nil {
			fmt.Fprintln(stderr, "mesolite local: apps:", err)
			cancel()
			wg.Wait()
			return 1
		}
		wg.Add(1)
		go func() { defer wg.Done(); errc <- svc.Run(ctx, apl) }()
		fmt.Fprintf(stdout, "mesolite local: apps (Marathon API) http://%s/v2/apps\n", apl.Addr())
	}
	// The cluster's cron: Chronos's API on --jobs_port.
	if *jobsPort != 0 {
		jcfg := jobs.Config{Master: masterAddr, HTTPPort: *jobsPort, Hostname: *f.ip,
			FrameworkName: jobs.DefaultFrameworkName, FailoverTimeout: 7 * 24 * time.Hour,
			WorkDir: filepath.Join(root, "jobs"), Logger: log.With("process", "jobs")}
		if jcfg.MasterTLS, err = st.client(); err != nil {
			fmt.Fprintln(stderr, "mesolite local: jobs: TLS:", err)
			cancel()
			wg.Wait()
			return 1
		}
		jsvc, err := jobs.New(ctx, jcfg)
		if err != nil {
			fmt.Fprintln(stderr, "mesolite local: jobs:", err)
			cancel()
			wg.Wait()
			return 1
		}
		jl, err := net.Listen("tcp", net.JoinHostPort(*f.ip, strconv.Itoa(*jobsPort)))
		if err != nil {
			fmt.Fprintln(stderr, "mesolite local: jobs:", err)
			cancel()
			wg.Wait()
			return 1
		}
		wg.Add(1)
		go func() { defer wg.Done(); errc <- jsvc.Run(ctx, jl) }()
		fmt.Fprintf(stdout, "mesolite local: jobs (Chronos API) http://%s/scheduler/jobs\n", jl.Addr())
	}
	go func() {
		for i := 0; i < 100 && !a.Connected(); i++ {
			time.Sleep(50 * time.Millisecond)
		}
		scheme := st.scheme()
		fmt.Fprintf(stdout, "mesolite local: master %s://%s/  agent %s://%s/  work_dir %s\n", scheme, masterAddr, scheme, a.Endpoint(), root)
		if st.server != nil {
			ca := st.clusterCA
			if ca == "" {
				ca = "CA.pem"
			}
			fmt.Fprintf(stdout, "try: mesolite run --master=%s --ssl_ca_file=%s --name=hello --command='echo hello'\n", masterAddr, ca)
		} else {
			fmt.Fprintf(stdout, "try: mesolite run --master=%s --name=hello --command='echo hello'\n", masterAddr)
		}
	}()
	code := 0
	select {
	case <-ctx.Done():
	case err := <-errc:
		if err != nil {
			log.Error("stopped", "error", err)
			code = 1
		}
	}
	cancel()
	wg.Wait()
	return code
}
