package isolation

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mesolite/mesolite/errdefs"
)

// Entering a running container (a nested container session, `mesolite
// exec`): a fresh init, started as for a launch (into the container's
// cgroup before it runs anything of the spec's), is given a target
// process of the container instead of namespaces to create. It joins that
// process's namespaces (setns(2) from /proc/PID/ns on one OS thread, with
// its own filesystem context, so a multithreaded runtime may join a mount
// namespace), then starts the command from that thread, so that the
// command is born inside the namespaces, the pid namespace included, as
// the container's user, in its working directory. It supervises the
// command as a pid 1 init supervises an executor: forwards signals,
// reports the wait status and exits with it.

// EnterSpec is a command to run inside a running container.
type EnterSpec struct {
	// Pid is a process of the container (its init, or its executor)
	// whose namespaces the command joins; StartTime, when set, is that
	// process's start time (Handle.StartTime), which tells it from a
	// process that took a recycled pid.
	Pid       int
	StartTime uint64
	// Argv is the command; Argv[0] is looked up along Env's PATH, in the
	// container's mount namespace.
	Argv []string
	// Env is the command's whole environment.
	Env []string
	// Dir is the working directory, as the container sees it.
	Dir string
	// User runs the command; nil keeps the launcher's user.
	User *User
	// Cgroup is the container's cgroup; the command starts inside it.
	Cgroup *Cgroup
	// Stdin, Stdout and Stderr are the command's; nil: /dev/null.
	Stdin, Stdout, Stderr *os.File
	// TTY makes Stdin (a terminal's slave side) the command's controlling
	// terminal, in a session of its own.
	TTY bool
}

// The namespaces a command entering a container joins, when the target's
// differ from the launcher's own, in the order they are joined: the mount
// namespace last, since /proc is read before it (every handle is opened
// first anyway). user namespaces are not joined: mesolite creates none,
// and joining one would change what the launcher's credentials mean.
var enterNamespaces = []string{"ipc", "uts", "net", "cgroup", "pid", "mnt"}

// nsFlag is the CLONE_NEW* flag of a namespace's /proc/PID/ns name.
func nsFlag(name string) int {
	switch name {
	case "ipc":
		return unix.CLONE_NEWIPC
	case "uts":
		return unix.CLONE_NEWUTS
	case "net":
		return unix.CLONE_NEWNET
	case "cgroup":
		return unix.CLONE_NEWCGROUP
	case "pid":
		return unix.CLONE_NEWPID
	case "mnt":
		return unix.CLONE_NEWNS
	}
	return 0
}

// namespacesToJoin lists the namespaces of pid that differ from this
// process's: those a command entering its container must join. A host
// process (posix isolation) has none, and entering it needs no privilege.
func namespacesToJoin(pid int) ([]string, error) {
	var out []string
	for _, name := range enterNamespaces {
		theirs, err := os.Stat("/proc/" + strconv.Itoa(pid) + "/ns/" + name)
		if err != nil {
			if os.IsNotExist(err) && name == "cgroup" {
				continue // a kernel without cgroup namespaces
			}
			return nil, fmt.Errorf("namespaces of pid %d: %w", pid, err)
		}
		ours, err := os.Stat("/proc/self/ns/" + name)
		if err != nil {
			return nil, fmt.Errorf("own namespaces: %w", err)
		}
		if !os.SameFile(theirs, ours) {
			out = append(out, name)
		}
	}
	return out, nil
}

// enterConfig is the part of an init's spec that makes it enter.
type enterConfig struct {
	Pid        int      `json:"pid"`
	StartTime  uint64   `json:"start_time,omitempty"`
	Namespaces []string `json:"namespaces,omitempty"`
}

// Enter starts spec's command inside the running container of spec.Pid,
// through an init started with opts (the agent's own binary, `launch`),
// and returns once the command runs. The Process's Pid is the init's;
// Signal reaches the command's process group through it (SIGKILL: every
// process of that group, then the init). Errors: errdefs.ErrInvalid for a
// bad spec, errdefs.ErrNotFound when the target process is gone.
func Enter(ctx context.Context, opts LauncherOptions, spec EnterSpec) (Process, error) {
	opts = opts.withDefaults()
	if len(spec.Argv) == 0 || spec.Argv[0] == "" {
		return nil, fmt.Errorf("enter: empty argv: %w", errdefs.ErrInvalid)
	}
	if spec.Pid <= 0 {
		return nil, fmt.Errorf("enter: no target process: %w", errdefs.ErrInvalid)
	}
	if st, state, ok := procStat(spec.Pid); !ok || state == 'Z' || (spec.StartTime != 0 && st != spec.StartTime) {
		return nil, fmt.Errorf("enter: process %d of the container is gone: %w", spec.Pid, errdefs.ErrNotFound)
	}
	join, err := namespacesToJoin(spec.Pid)
	if err != nil {
		return nil, fmt.Errorf("enter: %w", err)
	}
	var cgfd *os.File
	if spec.Cgroup != nil {
		if cgfd, err = spec.Cgroup.b.intoCgroupFD(); err != nil {
			return nil, fmt.Errorf("enter: open cgroup %s: %w", spec.Cgroup, err)
		}
		if cgfd != nil {
			defer cgfd.Close()
		}
	}
	cfg := initConfig{
		Argv: spec.Argv, Env: nonNil(spec.Env), Dir: spec.Dir, User: spec.User, TTY: spec.TTY,
		Enter: &enterConfig{Pid: spec.Pid, StartTime: spec.StartTime, Namespaces: join},
	}
	// Always a cold init: its stdin, stdout and stderr are the command's
	// from its clone on, and its working directory is not yet the
	// container's (it joins the mount namespace first).
	ip, err := startInitIO(opts, 0, false, "/", spec.Stdin, spec.Stdout, spec.Stderr, cgfd)
	if err != nil && cgfd != nil {
		ip, err = startInitIO(opts, 0, false, "/", spec.Stdin, spec.Stdout, spec.Stderr, nil)
	}
	if err != nil {
		return nil, err
	}
	if spec.Cgroup != nil && !ip.inCgroup {
		if err := spec.Cgroup.AddProcess(ip.cmd.Process.Pid); err != nil {
			ip.kill()
			return nil, fmt.Errorf("enter: %w", err)
		}
	}
	supervised, _, err := ip.deliverConfig(ctx, cfg, spec.Argv[0], spec.Stdout, spec.Stderr)
	if err != nil {
		return nil, err
	}
	if !supervised {
		// An entering init always supervises; anything else is a bug.
		ip.kill()
		return nil, fmt.Errorf("enter: init did not supervise the command")
	}
	return &entered{child: newChild(ip.cmd, true, "", ip.statR, ip.dec)}, nil
}

// entered is an entered command's init. Its SIGKILL reaches the command's
// whole process group first: the init forwards what it can catch, and the
// command, in the container's pid namespace, would not die with it.
type entered struct{ *child }

// enterKillGrace is how long the init has to kill the command's group,
// reap it and report, before it is killed itself.
const enterKillGrace = 2 * time.Second

func (e *entered) Signal(sig syscall.Signal) error {
	if sig != syscall.SIGKILL {
		return e.child.Signal(sig)
	}
	if err := e.child.Signal(killGroupSignal); err != nil {
		return err
	}
	select {
	case <-e.done:
		return nil
	case <-time.After(enterKillGrace):
		return e.child.Signal(syscall.SIGKILL)
	}
}

// enterTarget is the init's side: it joins the namespaces of cfg.Pid on
// this (locked) OS thread, which the init then starts the command from.
// The thread never runs anything else: the init exits when the command
// does.
func enterTarget(cfg *enterConfig) error {
	runtime.LockOSThread()
	// The mount namespace may be joined only by a thread whose filesystem
	// context (root, cwd) is its own; Go's threads share theirs.
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("unshare filesystem context: %w", err)
	}
	fds := make([]int, 0, len(cfg.Namespaces))
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for _, name := range cfg.Namespaces {
		if nsFlag(name) == 0 {
			return fmt.Errorf("unknown namespace %q", name)
		}
		fd, err := unix.Open("/proc/"+strconv.Itoa(cfg.Pid)+"/ns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %s namespace of pid %d: %w", name, cfg.Pid, err)
		}
		fds = append(fds, fd)
	}
	// Checked after the handles are open: had the container's process
	// died and its pid gone to another before that, its start time would
	// differ now; the handles name the container's namespaces.
	if st, state, ok := procStat(cfg.Pid); !ok || state == 'Z' || (cfg.StartTime != 0 && st != cfg.StartTime) {
		return fmt.Errorf("process %d of the container is gone", cfg.Pid)
	}
	for i, name := range cfg.Namespaces {
		if err := unix.Setns(fds[i], nsFlag(name)); err != nil {
			return fmt.Errorf("join %s namespace of pid %d: %w", name, cfg.Pid, err)
		}
	}
	return nil
}

// killGroupSignal, sent to an init, makes it SIGKILL its executor's (or
// entered command's) whole process group, which it alone can do without
// racing the group's end: it reaps the group's leader itself, so the
// group id cannot be taken by another process while it handles this. A
// real-time signal nobody else sends.
const killGroupSignal = syscall.Signal(40)
