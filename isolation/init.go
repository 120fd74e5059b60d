package isolation

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// forwarded are the signals the init passes on to the executor's process
// group; SIGKILL and SIGSTOP cannot be caught and act on the init itself
// (SIGKILL of a pid namespace's init kills the whole namespace).
var forwarded = []os.Signal{
	unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT,
	unix.SIGUSR1, unix.SIGUSR2, unix.SIGWINCH, unix.SIGALRM,
}

// InitMain is the container init, the hidden "mesolite launch" subcommand:
// cmd/mesolite must call os.Exit(isolation.InitMain(args)) with the
// arguments after "launch" before doing anything else (no flag parsing, no
// logging setup). Launchers start it with a socket on fd 3 that brings the
// spec and the executor's stdout and stderr, and a status pipe on fd 4
// (--spec-fd, --status-fd).
//
// It reads the spec, which the launcher writes only once the init is in the
// container's cgroup, then: in a mount namespace makes every mount private;
// in a pid namespace mounts a fresh /proc; in a UTS namespace sets the
// hostname. Without a pid namespace it then execs the executor in place.
// With one it stays as pid 1: it starts the executor in its own session,
// forwards SIGTERM, SIGINT, SIGHUP and the like to its process group, reaps
// every orphan, and when the executor exits writes its wait status (status
// pipe and Spec.StatusPath) and exits with its code, or 128+signal. The
// kernel then kills whatever is left in the namespace.
func InitMain(args []string) int { return RunInit(args, InitOptions{}) }

// InitOptions change what the init does with the spec it receives.
type InitOptions struct {
	// InProcess may run the executor inside the init process instead of
	// exec'ing it, when the executor is this same binary and no pid
	// namespace needs the init to stay pid 1. Given the executor's argv it
	// returns the executor's main, or nil to exec as usual. The executor
	// then finds the environment, working directory, stdout and stderr it
	// would have had after exec; what it saves is a second start of the
	// runtime, the bulk of a prestarted launch's cost.
	InProcess func(argv []string) func() int
	// Warm, when set, runs in an init started ahead of its launch (the
	// launcher passes --warm) before it reports ready: one-time work the
	// executor it may become would otherwise do on the launch path.
	Warm func()
}

// RunInit is InitMain with options.
func RunInit(args []string, opts InitOptions) int {
	fs := flag.NewFlagSet("launch", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	specFD := fs.Int("spec-fd", 3, "fd to read the launch spec from")
	statusFD := fs.Int("status-fd", 4, "fd to report progress to")
	warm := fs.Bool("warm", false, "started ahead of its launch: run InitOptions.Warm before reporting ready")
	if err := fs.Parse(args); err != nil {
		return 125
	}
	// Neither the spec socket nor the status pipe may leak into the executor.
	unix.CloseOnExec(*specFD)
	unix.CloseOnExec(*statusFD)
	status := os.NewFile(uintptr(*statusFD), "status")
	report := json.NewEncoder(status)
	fail := func(code int, format string, a ...any) int {
		msg := fmt.Sprintf(format, a...)
		_ = report.Encode(initMessage{Error: msg})
		fmt.Fprintln(os.Stderr, "mesolite launch: "+msg)
		return code
	}

	var pre *initProc
	if *warm {
		warmUp(opts.Warm)
		if os.Getpid() == 1 {
			pre = prestartExecutor(args)
		}
	}
	// A prestarted init counts as ready only from here: what came before
	// (the runtime's start, the warm-up) is what prestarting takes off the
	// launch path.
	_ = report.Encode(initMessage{Ready: true})
	cfg, err := receiveSpec(*specFD)
	if err != nil {
		if err == io.EOF {
			// The launcher gave up on us (could not place us in the cgroup),
			// or closed its prestarted inits.
			return 125
		}
		return fail(125, "read spec: %v", err)
	}
	if len(cfg.Argv) == 0 {
		return fail(125, "empty argv")
	}
	if cfg.Enter != nil {
		// A command entering a running container: join, then supervise it
		// from the thread that joined (enter.go).
		if err := enterTarget(cfg.Enter); err != nil {
			return fail(125, "enter container: %v", err)
		}
		path, err := lookPath(cfg.Argv[0], cfg.Env, cfg.Dir)
		if err != nil {
			return fail(127, "%v", err)
		}
		return supervise(cfg, path, report, status, nil)
	}
	if err := setupNamespaces(cfg); err != nil {
		return fail(125, "%v", err)
	}
	path, err := lookPath(cfg.Argv[0], cfg.Env, cfg.Dir)
	if err != nil {
		return fail(127, "%v", err)
	}
	if !cfg.Namespaces.Has(NamespacePID) {
		if pre != nil {
			pre.kill()
		}
		if cfg.Dir != "" {
			if err := os.Chdir(cfg.Dir); err != nil {
				return fail(125, "%v", err)
			}
		}
		// The namespaces are set up: from here on nothing needs root.
		exe := openExe(path, cfg.User)
		if err := cfg.User.become(); err != nil {
			return fail(125, "%v", err)
		}
		if main := inProcess(opts, path, cfg.Argv); main != nil {
			if err := replaceEnv(cfg.Env); err != nil {
				return fail(125, "%v", err)
			}
			// What exec would do to the status pipe (close-on-exec): the
			// launcher reads EOF after Exec and knows the executor runs.
			_ = report.Encode(initMessage{Exec: true})
			status.Close()
			return main()
		}
		_ = report.Encode(initMessage{Exec: true})
		err := execAs(path, exe, cfg.Argv, cfg.Env)
		return fail(127, "exec %s: %v", path, err)
	}
	if pre != nil && cfg.User == nil && inProcess(opts, path, cfg.Argv) == nil {
		// It would only exec: forking here does the same with one process
		// less to talk to. Reaped now, so the executor never sees it. For
		// a task user it stays: it switches to the user and execs from a
		// handle on the binary it opened as root (execAs), which a child
		// forked here as the user could not.
		pre.kill()
		pre = nil
	}
	if pre == nil && cfg.User != nil {
		// A child forked as the user could not exec a binary below a
		// directory it may not search: a root init of our own, with no
		// namespaces to enter, takes the spec and execs it as the user
		// (execAs).
		pre = prestartExecutor(args)
	}
	return supervise(cfg, path, report, status, pre)
}

// prestartExecutor starts, in an init started ahead that will stay pid 1
// of its pid namespace, the process its executor will run in: an init of
// its own (no namespaces to enter), warmed up and waiting for its spec like
// this one, so that starting the executor costs no runtime start either.
// The launcher moves it into the container's cgroup with its parent. nil
// when it cannot be had: the executor is then started when the spec comes.
func prestartExecutor(args []string) *initProc {
	self, err := os.Executable()
	if err != nil || len(os.Args) < len(args)+1 {
		return nil
	}
	// The arguments that selected the init ("launch"), without its flags.
	prefix := os.Args[1 : len(os.Args)-len(args)]
	opts := LauncherOptions{InitPath: self, InitArgs: prefix, InitEnv: os.Environ()}
	ip, err := startInit(opts, 0, true, "/", nil, nil, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mesolite launch: prestart executor process:", err)
		return nil
	}
	if err := ip.waitReady(); err != nil {
		ip.kill()
		fmt.Fprintln(os.Stderr, "mesolite launch: prestart executor process:", err)
		return nil
	}
	return ip
}

// warmUp does, in an init started ahead, one-time work of the process it
// will become, then collects the garbage of it, so neither the work nor a
// collection lands on the launch path.
func warmUp(extra func()) {
	// The first process start probes pidfd support with a throwaway child
	// (os.checkPidfd); FindProcess runs the same probe now.
	if p, err := os.FindProcess(os.Getpid()); err == nil {
		_ = p.Release()
	}
	if extra != nil {
		extra()
	}
	runtime.GC()
}

func setupNamespaces(cfg initConfig) error {
	if cfg.Namespaces.Has(NamespaceMount) {
		// Nothing mounted in here may propagate to the host, nor the host's
		// later mounts in here.
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			return fmt.Errorf("make mounts private: %w", err)
		}
	}
	if cfg.Namespaces.Has(NamespacePID) {
		if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return fmt.Errorf("mount /proc: %w", err)
		}
	}
	if cfg.Namespaces.Has(NamespaceUTS) && cfg.Hostname != "" {
		if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
			return fmt.Errorf("set hostname: %w", err)
		}
	}
	return nil
}

func supervise(cfg initConfig, path string, report *json.Encoder, status *os.File, pre *initProc) int {
	sigs := make(chan os.Signal, 64)
	// Subscribed before the executor starts, so its SIGCHLD cannot be missed.
	signal.Notify(sigs, append([]os.Signal{unix.SIGCHLD, killGroupSignal}, forwarded...)...)
	child := 0
	if pre != nil {
		// The process started ahead becomes the executor, in its own
		// session as below. Its exit is reaped by the loop below, never by
		// exec.Cmd: only deliver, not handoff, which would wait for it.
		spec := Spec{Argv: cfg.Argv, Env: cfg.Env, Dir: cfg.Dir, User: cfg.User}
		if _, _, err := pre.deliver(context.Background(), spec, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "mesolite launch: prestarted executor process failed, starting a fresh one:", err)
		} else {
			child = pre.cmd.Process.Pid
		}
	}
	if child == 0 {
		cmd := &exec.Cmd{
			Path:        path,
			Args:        cfg.Argv,
			Env:         cfg.Env,
			Dir:         cfg.Dir,
			Stdin:       os.Stdin,
			Stdout:      os.Stdout,
			Stderr:      os.Stderr,
			SysProcAttr: &syscall.SysProcAttr{Setsid: true, Credential: cfg.User.credential()},
		}
		if cfg.TTY {
			// Its stdin (fd 0 in the child) is a terminal's slave side.
			cmd.SysProcAttr.Setctty, cmd.SysProcAttr.Ctty = true, 0
		}
		// No Pdeathsig for an entered command, though in the container's
		// pid namespace it outlives an init killed outright: Go's child
		// compares getppid() with the parent's pid to catch a parent that
		// died early, and across a pid namespace getppid() is 0, so it
		// would kill itself at once. Killing goes through the init
		// (killGroupSignal) instead.
		if err := cmd.Start(); err != nil {
			_ = report.Encode(initMessage{Error: err.Error()})
			fmt.Fprintln(os.Stderr, "mesolite launch: "+err.Error())
			return 127
		}
		child = cmd.Process.Pid
	}
	_ = report.Encode(initMessage{Started: child})

	// Reaping is ours (wait4 on any pid), not exec.Cmd's; a SIGCHLD lost to a
	// full channel is caught by the ticker.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case sig := <-sigs:
			if sig == killGroupSignal {
				// Not reaped yet (that happens only here), so the group id
				// is still the executor's.
				_ = unix.Kill(-child, unix.SIGKILL)
				continue
			}
			if sig != unix.SIGCHLD {
				_ = unix.Kill(-child, sig.(syscall.Signal))
				continue
			}
		case <-tick.C:
		}
		if ws, ok := reap(child); ok {
			if cfg.StatusPath != "" {
				if err := writeStatusFile(cfg.StatusPath, ws); err != nil {
					fmt.Fprintln(os.Stderr, "mesolite launch: write status:", err)
				}
			}
			w := int(ws)
			_ = report.Encode(initMessage{Exit: &w})
			status.Close()
			return exitStatusFromWait(ws).Code
		}
	}
}

// reap collects every exited child; ok once child is among them.
func reap(child int) (unix.WaitStatus, bool) {
	var found unix.WaitStatus
	ok := false
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return found, ok
		}
		if pid == child {
			found, ok = ws, true
		}
	}
}

// openExe keeps a handle on the executor's binary, taken while the init
// is still root: an executor switched to a task user may not be allowed to
// walk to the binary's directory (a root-only install or build directory)
// though it may run the file itself. -1 when it cannot be had.
func openExe(path string, u *User) int {
	// Only our own binary: a framework's executor the user cannot reach
	// must stay out of its reach, not be run for it from root's view.
	if u == nil || !sameFile(path, "/proc/self/exe") {
		return -1
	}
	fd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	return fd
}

// execAs execs path; refused for want of search permission on its
// directories, it execs the handle openExe took (execveat, AT_EMPTY_PATH),
// which needs only the file's own execute bit.
func execAs(path string, exe int, argv, env []string) error {
	err := unix.Exec(path, argv, env)
	if !errors.Is(err, unix.EACCES) || exe < 0 {
		return err
	}
	empty, _ := syscall.BytePtrFromString("")
	argvp, err1 := syscall.SlicePtrFromStrings(argv)
	envp, err2 := syscall.SlicePtrFromStrings(env)
	if err1 != nil || err2 != nil {
		return err
	}
	_, _, errno := unix.Syscall6(unix.SYS_EXECVEAT, uintptr(exe), uintptr(unsafe.Pointer(empty)),
		uintptr(unsafe.Pointer(&argvp[0])), uintptr(unsafe.Pointer(&envp[0])), unix.AT_EMPTY_PATH, 0)
	return errno
}

// inProcess returns the executor's main when opts allow running argv in
// this process: path must be this very binary (not merely one of the same
// name: an upgraded binary on disk must be exec'ed).
func inProcess(opts InitOptions, path string, argv []string) func() int {
	if opts.InProcess == nil || !sameFile(path, "/proc/self/exe") {
		return nil
	}
	return opts.InProcess(argv)
}

func sameFile(a, b string) bool {
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	return err == nil && os.SameFile(fa, fb)
}

// replaceEnv makes env the process environment, as exec with it would.
func replaceEnv(env []string) error {
	os.Clearenv()
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			continue
		}
		if err := os.Setenv(k, v); err != nil {
			return fmt.Errorf("set %s: %w", k, err)
		}
	}
	return nil
}
