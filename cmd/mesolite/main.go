// Command mesolite is the one binary of mesolite: the master, the node
// agent, the artifact server and the client commands, plus the hidden
// subcommands the agent starts itself as (executors, the fetcher, the
// container init).
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/mesolite/mesolite/cli"
	"github.com/mesolite/mesolite/fetcher"
	"github.com/mesolite/mesolite/internal/cliflags"
	"github.com/mesolite/mesolite/internal/version"
)

type subcommand struct {
	summary string
	hidden  bool
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

func commands() map[string]subcommand {
	return map[string]subcommand{
		"master":            {summary: "run a master", run: masterMain},
		"agent":             {summary: "run a node agent", run: agentMain},
		"apps":              {summary: "run long-running apps with Marathon's REST API (a built-in framework)", run: appsMain},
		"jobs":              {summary: "run scheduled jobs with Chronos's REST API (a built-in framework, the cluster's cron)", run: jobsMain},
		"local":             {summary: "run a master and an agent in one process, for trying mesolite out", run: localMain},
		"version":           {summary: "print the version", run: versionMain},
		"completion":        {summary: "print a bash or zsh completion script (source <(mesolite completion bash))", run: completionMain},
		"run":               {summary: "run one task and follow it to its end", run: cli.Run},
		"tasks":             {summary: "list the cluster's tasks", run: cli.Tasks},
		"logs":              {summary: "print or follow a task's stdout/stderr", run: cli.Logs},
		"kill":              {summary: "kill a task (by id, name or id prefix)", run: cli.Kill},
		"exec":              {summary: "run a command inside a running task's container (-i stdin, -t terminal)", run: cli.Exec},
		"attach":            {summary: "follow a running task's own output (-i: type into its terminal)", run: cli.Attach},
		"agents":            {summary: "list the cluster's agents", run: cli.Agents},
		"frameworks":        {summary: "list the cluster's frameworks", run: cli.Frameworks},
		"teardown":          {summary: "tear a framework down (kill its tasks, forget it)", run: cli.Teardown},
		"maintenance":       {summary: "maintenance schedules, machines down and up, agent drains", run: cli.Maintenance},
		"example-framework": {summary: "keep N Docker containers of an image running (the Mesos+Docker tutorial's framework)", run: cli.ExampleFramework},
		"executor":          {summary: "built-in executors (started by the agent)", hidden: true, run: executorMain},
		"fetch":             {summary: "fetch URIs into a sandbox (started by the agent)", hidden: true, run: fetchMain},
		"launch":            {summary: "container init (started by the agent)", hidden: true, run: launchMain},
		"artifacts":         {summary: "serve executor binaries and archives over HTTP, or push one", run: artifactsMain},
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "help" || args[0] == "--help" || args[0] == "-h" {
		usage(stdout, cmds)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "mesolite: unknown command %q\n\n", args[0])
		usage(stderr, cmds)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return c.run(ctx, args[1:], stdout, stderr)
}

func usage(w io.Writer, cmds map[string]subcommand) {
	fmt.Fprintf(w, "mesolite %s: a Mesos-compatible cluster agent and master\n\nUsage: mesolite <command> [flags]\n\nCommands:\n", version.String())
	var names []string
	for n, c := range cmds {
		if !c.hidden {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-18s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'mesolite <command> --help' for the flags of a command. Every flag can also be set as MESOS_<FLAG> in the environment.")
}

func versionMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fmt.Fprintf(stdout, "mesolite %s (Mesos API %s)\n", version.String(), version.MesosVersion)
	return 0
}

// warnUnknownEnv says which MESOS_* variables name no flag of the command:
// the command line refuses an unknown flag, and the environment must not
// ignore one without a word (MESOS_LOG_DIR where there is no --log_dir).
func warnUnknownEnv(log *slog.Logger, fs *cliflags.FlagSet) {
	if unknown := fs.UnknownEnv(os.Environ()); len(unknown) > 0 {
		log.Warn("environment variables that name no flag of this command are ignored", "variables", unknown)
	}
}

// newLogger makes the process logger: text on w, or JSON with
// --log_format=json; --logging_level picks the level (Mesos's names). An
// unknown level or format is an error, not INFO.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	log, _, err := newLoggerLevel(w, level, format)
	return log, err
}

// newLoggerLevel is newLogger with the level as a variable, for a process
// whose level an operator may move (the master's SET_LOGGING_LEVEL).
func newLoggerLevel(w io.Writer, level, format string) (*slog.Logger, *slog.LevelVar, error) {
	var l slog.Level
	switch strings.ToUpper(level) {
	case "ERROR":
		l = slog.LevelError
	case "WARNING", "WARN":
		l = slog.LevelWarn
	case "INFO":
		l = slog.LevelInfo
	case "DEBUG":
		l = slog.LevelDebug
	default:
		return nil, nil, fmt.Errorf("--logging_level=%s: not a level (ERROR, WARNING, INFO or DEBUG)", level)
	}
	lv := new(slog.LevelVar)
	lv.Set(l)
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), lv, nil
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), lv, nil
	}
	return nil, nil, fmt.Errorf("--log_format=%s: not a format (text or json)", format)
}

// logWriter is where a long-running command logs: stderr, and with
// --log_dir also <log_dir>/mesolite-<role>.log, appended to (rotate it with
// logrotate's copytruncate). The file is opened without following a
// symlink planted in its place.
func logWriter(stderr io.Writer, dir, role string) (io.Writer, func(), error) {
	if dir == "" {
		return stderr, func() {}, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("--log_dir: %w", err)
	}
	path := filepath.Join(dir, "mesolite-"+role+".log")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o640)
	if err != nil {
		return nil, nil, fmt.Errorf("--log_dir: %w", err)
	}
	return io.MultiWriter(stderr, f), func() { _ = f.Close() }, nil
}

// attachedLog is the log file a master or agent serves at /master/log or
// /slave/log, as Mesos does: --external_log_file (written by someone else:
// journald's export, a syslog file), else the file --log_dir writes; ""
// when the log goes to stderr only.
func attachedLog(logDir, external, role string) string {
	if external != "" {
		if abs, err := filepath.Abs(external); err == nil {
			return abs
		}
		return external
	}
	if logDir == "" {
		return ""
	}
	path := filepath.Join(logDir, "mesolite-"+role+".log")
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return path
}

// fetchMain is the hidden `mesolite fetch`: one fetch in a child process.
func fetchMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return fetcher.ChildMain(ctx, args, os.Stdin, stderr)
}
