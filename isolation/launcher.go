package isolation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/mesolite/mesolite/internal/safefile"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/mesolite/mesolite/errdefs"
)

// Spec describes one executor to start.
type Spec struct {
	// Argv is the command; Argv[0] is looked up in Env's PATH when it has no '/'.
	Argv []string
	// Env is the executor's whole environment; the agent's is not inherited.
	Env []string
	// Dir is the working directory (the sandbox).
	Dir string
	// Stdout and Stderr take an open file, or else a path opened for append
	// (created 0644). Neither: /dev/null. Stdin is always /dev/null.
	Stdout, Stderr         *os.File
	StdoutPath, StderrPath string
	// Namespaces to create (linux launcher only). A pid namespace brings a
	// mount namespace, and the init becomes pid 1 inside it.
	Namespaces Namespaces
	// Hostname is set inside the container; needs NamespaceUTS.
	Hostname string
	// Cgroup is the container's cgroup. The executor starts inside it:
	// nothing it runs can escape before the cgroup holds it.
	Cgroup *Cgroup
	// StatusPath, when set, is where a supervising init (pid namespace)
	// writes the executor's wait status as it exits, so that a process
	// re-attached after an agent restart still has an exit status.
	StatusPath string
	// PidPath, when set, is where the launcher writes the started
	// process's Handle before that process runs anything of the
	// executor's (an init before it gets its spec; a directly started
	// executor right after its start): a restarted agent finds there a
	// container whose launch a crash cut off before the agent could
	// checkpoint it, and kills it (Mesos's forked.pid). Not fsynced: a
	// machine crash ends the process too.
	PidPath string
	// User, when set, is who the executor runs as; the init sets up the
	// namespaces as root first. nil keeps the launcher's own user.
	User *User
}

// Launcher starts executors (Mesos's launcher).
type Launcher interface {
	// Launch starts spec's executor and returns once it runs (or failed to
	// start: exec errors are reported here, not as an exit status). Errors
	// wrap errdefs.ErrInvalid for a spec this launcher cannot honour.
	Launch(ctx context.Context, spec Spec) (Process, error)
	// Kind is linux or posix.
	Kind() LauncherKind
	// Close stops the inits kept prestarted; running executors are not touched.
	Close() error
}

// Process is a launched (or re-attached) executor.
type Process interface {
	// Pid is the host pid: the init's under the linux launcher with a pid
	// namespace, else the executor's.
	Pid() int
	// Handle is what the agent checkpoints to re-attach after a restart.
	Handle() Handle
	// Wait blocks until the executor exits or ctx ends.
	Wait(ctx context.Context) (ExitStatus, error)
	// Signal delivers sig to the executor's process group (through the init,
	// which forwards it, when there is one; SIGKILL kills the init and with
	// it the whole pid namespace). Errors wrap os.ErrProcessDone once it exited.
	Signal(sig syscall.Signal) error
}

// Handle identifies a running executor across agent restarts. The start
// time guards against a recycled pid.
type Handle struct {
	Pid        int    `json:"pid"`
	StartTime  uint64 `json:"start_time"`
	StatusPath string `json:"status_path,omitempty"`
	// Supervised is true when Pid is an init that forwards signals and
	// writes StatusPath; otherwise signals go to Pid's process group.
	Supervised bool `json:"supervised,omitempty"`
}

// ExitStatus is how an executor ended.
type ExitStatus struct {
	// Known is false when nobody could observe the exit (a process
	// re-attached after an agent restart without a status file).
	Known bool
	// Code is the exit code, or 128+signal when killed by a signal.
	Code int
	// Signal is the signal that killed it, 0 when it exited.
	Signal syscall.Signal
}

// WaitStatus is the raw wait(2) status (Mesos's ContainerTermination.status).
func (s ExitStatus) WaitStatus() int {
	if s.Signal != 0 {
		return int(s.Signal) & 0x7f
	}
	return (s.Code & 0xff) << 8
}

func (s ExitStatus) String() string {
	switch {
	case !s.Known:
		return "unknown exit status"
	case s.Signal != 0:
		return "killed by signal " + unix.SignalName(s.Signal)
	default:
		return fmt.Sprintf("exited with status %d", s.Code)
	}
}

func exitStatusFromWait(ws unix.WaitStatus) ExitStatus {
	if ws.Signaled() {
		return ExitStatus{Known: true, Code: 128 + int(ws.Signal()), Signal: ws.Signal()}
	}
	return ExitStatus{Known: true, Code: ws.ExitStatus()}
}

// LauncherOptions say how to start the init.
type LauncherOptions struct {
	// InitPath is the binary that runs InitMain; default /proc/self/exe (the
	// agent itself, even after its file was replaced).
	InitPath string
	// InitArgs come before the init's own flags; default ["launch"], so the
	// init runs as "mesolite launch --spec-fd=3 --status-fd=4".
	InitArgs []string
	// InitEnv is the init's environment (not the executor's). Default empty.
	InitEnv []string
	// Prestart keeps this many inits started ahead, per set of namespaces,
	// waiting for a spec: starting the init is a whole Go runtime start
	// (milliseconds) that would otherwise sit on every launch's path. Each
	// costs an idle process of a few MB. 0 starts every init on demand.
	Prestart int
	// Staging, when set, makes a cgroup for each prestarted init to wait
	// in (Manager.Staging): a launch with a cgroup then adopts it
	// (Cgroup.Adopt) instead of moving the init's processes into the
	// container's cgroup on the launch's path.
	Staging func(ctx context.Context) (*Cgroup, error)
	// Logger says what the launcher works around: a staging cgroup that
	// could not be made or adopted (the launch then moves the processes,
	// slower but the same). Default: nothing logged.
	Logger *slog.Logger
}

func (o LauncherOptions) withDefaults() LauncherOptions {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.InitPath == "" {
		o.InitPath = "/proc/self/exe"
	}
	if o.InitArgs == nil {
		o.InitArgs = []string{"launch"}
	}
	if o.InitEnv == nil {
		o.InitEnv = []string{}
	}
	return o
}

// NewLauncher returns the launcher of kind.
func NewLauncher(kind LauncherKind, opts LauncherOptions) (Launcher, error) {
	switch kind {
	case LauncherLinux:
		return NewLinuxLauncher(opts), nil
	case LauncherPosix:
		return NewPosixLauncher(opts), nil
	}
	return nil, fmt.Errorf("launcher %q: %w", kind, errdefs.ErrInvalid)
}

// LinuxLauncher starts executors under an init in fresh namespaces.
type LinuxLauncher struct{ pool *initPool }

// NewLinuxLauncher returns a linux launcher.
func NewLinuxLauncher(opts LauncherOptions) *LinuxLauncher {
	return &LinuxLauncher{pool: newInitPool(opts.withDefaults())}
}

// Prestart starts LauncherOptions.Prestart inits for containers with
// namespaces ns now, instead of at the first such launch.
func (l *LinuxLauncher) Prestart(ns Namespaces) {
	if ns.Has(NamespacePID) {
		ns |= NamespaceMount
	}
	l.pool.fill(ns)
}

// Close stops the prestarted inits.
func (l *LinuxLauncher) Close() error { return l.pool.close() }

// Kind is LauncherLinux.
func (l *LinuxLauncher) Kind() LauncherKind { return LauncherLinux }

// Launch starts spec. With namespaces, the init (InitPath) is cloned into
// them, waits until it is in the cgroup, mounts a fresh /proc for a pid
// namespace, sets the hostname, and runs the executor.
func (l *LinuxLauncher) Launch(ctx context.Context, spec Spec) (Process, error) {
	if spec.Namespaces.Has(NamespacePID) {
		spec.Namespaces |= NamespaceMount
	}
	return launch(ctx, l.pool, spec)
}

// PosixLauncher starts executors as plain children in their own session.
type PosixLauncher struct{ pool *initPool }

// NewPosixLauncher returns a posix launcher.
func NewPosixLauncher(opts LauncherOptions) *PosixLauncher {
	return &PosixLauncher{pool: newInitPool(opts.withDefaults())}
}

// Prestart starts LauncherOptions.Prestart inits now. The posix launcher
// uses an init only to join a cgroup where clone3 cannot (cgroup v1).
func (l *PosixLauncher) Prestart() { l.pool.fill(0) }

// Close stops the prestarted inits.
func (l *PosixLauncher) Close() error { return l.pool.close() }

// Kind is LauncherPosix.
func (l *PosixLauncher) Kind() LauncherKind { return LauncherPosix }

// Launch starts spec without namespaces. A cgroup is joined atomically with
// clone3 on v2; on v1 the init is used only to wait until it is in the
// cgroup, then it execs the executor (as Mesos's launch helper does).
func (l *PosixLauncher) Launch(ctx context.Context, spec Spec) (Process, error) {
	if spec.Namespaces != 0 || spec.Hostname != "" {
		return nil, fmt.Errorf("posix launcher cannot create namespaces (%s): %w", spec.Namespaces, errdefs.ErrInvalid)
	}
	return launch(ctx, l.pool, spec)
}

// initConfig is what the parent sends the init over the spec socket.
type initConfig struct {
	Argv       []string   `json:"argv"`
	Env        []string   `json:"env"`
	Dir        string     `json:"dir"`
	Namespaces Namespaces `json:"namespaces"`
	Hostname   string     `json:"hostname,omitempty"`
	StatusPath string     `json:"status_path,omitempty"`
	User       *User      `json:"user,omitempty"`
	// TTY: stdin is a terminal, to become the executor's controlling one.
	TTY bool `json:"tty,omitempty"`
	// Enter, when set, makes the init join a running container's
	// namespaces instead of creating any (enter.go).
	Enter *enterConfig `json:"enter,omitempty"`
}

// initMessage is what the init reports over the status pipe: Ready once its
// runtime is up and it waits for the spec, Exec before it
// execs the executor itself, Started once a supervised executor runs, Exit
// with its wait status, Error when it could not.
type initMessage struct {
	Ready   bool   `json:"ready,omitempty"`
	Exec    bool   `json:"exec,omitempty"`
	Started int    `json:"started,omitempty"`
	Exit    *int   `json:"exit,omitempty"`
	Error   string `json:"error,omitempty"`
}

func validateSpec(spec Spec) error {
	if len(spec.Argv) == 0 || spec.Argv[0] == "" {
		return fmt.Errorf("launch: empty argv: %w", errdefs.ErrInvalid)
	}
	if spec.Hostname != "" && !spec.Namespaces.Has(NamespaceUTS) {
		// Without its own UTS namespace it would rename the host.
		return fmt.Errorf("launch: hostname %q needs a UTS namespace: %w", spec.Hostname, errdefs.ErrInvalid)
	}
	if spec.Stdout != nil && spec.StdoutPath != "" || spec.Stderr != nil && spec.StderrPath != "" {
		return fmt.Errorf("launch: give a file or a path for stdout/stderr, not both: %w", errdefs.ErrInvalid)
	}
	return nil
}

func openOutput(f *os.File, path string) (*os.File, bool, error) {
	if f != nil || path == "" {
		return f, false, nil
	}
	// The path is in a sandbox the task may have written before (a
	// relaunch): never follow what it planted there.
	f, err := safefile.OpenAppend(path, 0o644, nil)
	if err != nil {
		return nil, false, fmt.Errorf("launch: %w", err)
	}
	return f, true, nil
}

func launch(ctx context.Context, pool *initPool, spec Spec) (Process, error) {
	if err := validateSpec(spec); err != nil {
		return nil, err
	}
	stdout, closeOut, err := openOutput(spec.Stdout, spec.StdoutPath)
	if err != nil {
		return nil, err
	}
	if closeOut {
		defer stdout.Close()
	}
	stderr, closeErr, err := openOutput(spec.Stderr, spec.StderrPath)
	if err != nil {
		return nil, err
	}
	if closeErr {
		defer stderr.Close()
	}

	var cgfd *os.File
	if spec.Cgroup != nil {
		if cgfd, err = spec.Cgroup.b.intoCgroupFD(); err != nil {
			return nil, fmt.Errorf("launch: open cgroup %s: %w", spec.Cgroup, err)
		}
		if cgfd != nil {
			defer cgfd.Close()
		}
	}
	if spec.Namespaces == 0 && pool.opts.Prestart > 0 && sameFile(spec.Argv[0], pool.opts.InitPath) {
		// The executor is our own binary: a prestarted init can become it
		// in place (RunInit's InProcess), with no runtime start on the
		// launch path. Without an idle one, go on as usual and refill.
		defer pool.refill(0)
		if ip := pool.take(0); ip != nil {
			if p, retry, err := ip.handoff(ctx, spec, stdout, stderr); !retry {
				return p, err
			}
		}
	}
	// A task user goes through an init, which switches to the user only
	// after it opened the executor's binary as root (see execAs).
	if spec.Namespaces == 0 && spec.User == nil && (spec.Cgroup == nil || cgfd != nil) {
		p, err := launchDirect(spec, stdout, stderr, cgfd)
		if err == nil || cgfd == nil {
			return p, err
		}
		// clone3(CLONE_INTO_CGROUP) needs Linux 5.7; an exec error would come
		// back from the init too, so just try the slower way.
	}
	defer pool.refill(spec.Namespaces)
	if ip := pool.take(spec.Namespaces); ip != nil {
		p, retry, err := ip.handoff(ctx, spec, stdout, stderr)
		if !retry {
			return p, err
		}
		// The prestarted init died while it waited; start a fresh one.
	}
	ip, err := startInit(pool.opts, spec.Namespaces, false, spec.Dir, stdout, stderr, cgfd)
	if err != nil && cgfd != nil {
		ip, err = startInit(pool.opts, spec.Namespaces, false, spec.Dir, stdout, stderr, nil)
	}
	if err != nil {
		return nil, err
	}
	p, _, err := ip.handoff(ctx, spec, stdout, stderr)
	return p, err
}

// launchDirect starts the executor itself: no namespaces, and either no
// cgroup or one clone3 puts it into before it runs a single instruction.
func launchDirect(spec Spec, stdout, stderr, cgfd *os.File) (Process, error) {
	path, err := lookPath(spec.Argv[0], spec.Env, spec.Dir)
	if err != nil {
		return nil, fmt.Errorf("launch %q: %w", spec.Argv[0], err)
	}
	cmd := &exec.Cmd{
		Path:        path,
		Args:        spec.Argv,
		Env:         nonNil(spec.Env),
		Dir:         spec.Dir,
		Stdout:      stdout,
		Stderr:      stderr,
		SysProcAttr: &syscall.SysProcAttr{Setsid: true, Credential: spec.User.credential()},
	}
	if cgfd != nil {
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = int(cgfd.Fd())
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("launch %q: %w", spec.Argv[0], err)
	}
	c := newChild(cmd, false, spec.StatusPath, nil, nil)
	if err := writePidFile(spec.PidPath, c.handle); err != nil {
		_ = syscall.Kill(-c.handle.Pid, syscall.SIGKILL)
		_ = c.cmd.Process.Kill()
		<-c.done
		return nil, fmt.Errorf("launch %q: %w", spec.Argv[0], err)
	}
	return c, nil
}

// writePidFile writes h to path (nothing when path is empty), replacing
// what was there.
func writePidFile(path string, h Handle) error {
	if path == "" {
		return nil
	}
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	return nil
}

// ReadPidFile reads a Handle written to Spec.PidPath.
func ReadPidFile(path string) (Handle, error) {
	var h Handle
	b, err := os.ReadFile(path)
	if err != nil {
		return h, err
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return h, fmt.Errorf("read pid file %s: %w", path, err)
	}
	return h, nil
}

func cloneFlags(ns Namespaces) uintptr {
	var f uintptr
	if ns.Has(NamespacePID) {
		f |= unix.CLONE_NEWPID
	}
	if ns.Has(NamespaceMount) {
		f |= unix.CLONE_NEWNS
	}
	if ns.Has(NamespaceIPC) {
		f |= unix.CLONE_NEWIPC
	}
	if ns.Has(NamespaceUTS) {
		f |= unix.CLONE_NEWUTS
	}
	return f
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// lookPath resolves name as a shell would for the executor: as given when it
// holds a '/', relative to dir; else along env's PATH, not the agent's.
func lookPath(name string, env []string, dir string) (string, error) {
	if strings.Contains(name, "/") {
		p := name
		if !filepath.IsAbs(p) && dir != "" {
			p = filepath.Join(dir, p)
		}
		if err := executable(p); err != nil {
			return "", err
		}
		return p, nil
	}
	path := defaultPath
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, d := range filepath.SplitList(path) {
		if d == "" {
			d = "."
		}
		p := filepath.Join(d, name)
		if !filepath.IsAbs(p) && dir != "" {
			p = filepath.Join(dir, p)
		}
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%q not found in PATH %q: %w", name, path, exec.ErrNotFound)
}

func executable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return &os.PathError{Op: "exec", Path: p, Err: syscall.EACCES}
	}
	return nil
}

// child is a process this agent started and can wait for.
type child struct {
	cmd        *exec.Cmd
	handle     Handle
	supervised bool
	done       chan struct{}
	status     ExitStatus
	err        error
}

func newChild(cmd *exec.Cmd, supervised bool, statusPath string, statR *os.File, dec *json.Decoder) *child {
	pid := cmd.Process.Pid
	c := &child{
		cmd:        cmd,
		supervised: supervised,
		done:       make(chan struct{}),
		handle:     Handle{Pid: pid, StartTime: startTime(pid), StatusPath: statusPath, Supervised: supervised},
	}
	go func() {
		var exit *int
		if dec != nil {
			for {
				var msg initMessage
				if err := dec.Decode(&msg); err != nil {
					break
				}
				if msg.Exit != nil {
					exit = msg.Exit
				}
			}
			statR.Close()
		}
		err := cmd.Wait()
		switch {
		case exit != nil:
			// The executor's own status, not the init's 128+n rendering of it.
			c.status = exitStatusFromWait(unix.WaitStatus(*exit))
		case cmd.ProcessState != nil:
			c.status = exitStatusFromWait(unix.WaitStatus(cmd.ProcessState.Sys().(syscall.WaitStatus)))
		default:
			c.err = err
		}
		close(c.done)
	}()
	return c
}

func (c *child) Pid() int       { return c.handle.Pid }
func (c *child) Handle() Handle { return c.handle }

func (c *child) Wait(ctx context.Context) (ExitStatus, error) {
	select {
	case <-c.done:
		return c.status, c.err
	case <-ctx.Done():
		return ExitStatus{}, ctx.Err()
	}
}

func (c *child) Signal(sig syscall.Signal) error {
	select {
	case <-c.done:
		return fmt.Errorf("signal pid %d: %w", c.handle.Pid, os.ErrProcessDone)
	default:
	}
	if c.supervised {
		// Through the pidfd the runtime holds: never a recycled pid.
		return c.cmd.Process.Signal(sig)
	}
	// Until Wait reaps it the pid (and so the group id) cannot be reused.
	if err := unix.Kill(-c.handle.Pid, sig); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("signal group %d: %w", c.handle.Pid, os.ErrProcessDone)
		}
		return fmt.Errorf("signal group %d: %w", c.handle.Pid, err)
	}
	return nil
}
