package defaultexec

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"

	"github.com/mesolite/mesolite/isolation"
)

// A task with a cgroup of its own must be in it before it runs a single
// instruction of its own: what it allocates first is charged where it
// runs (cgroup v1 never moves the charge), and a process cannot be moved
// between fork and exec by os/exec. So the executor starts the task as a
// gate, its own binary again with gateEnv set, which waits on a pipe (fd
// 3); the executor moves the gate into the task's cgroup, then writes the
// task's command (and user) down the pipe; the gate switches to the user
// and execs the command, in place: same pid, same process group.

// gateEnv marks a process as a gate.
const gateEnv = "MESOLITE_DEFAULT_EXECUTOR_GATE"

// gateExit is the gate's status when it never got to exec the task.
const gateExit = 127

type gateOrder struct {
	Path   string   `json:"path"`
	Argv   []string `json:"argv"`
	UID    *uint32  `json:"uid,omitempty"`
	GID    uint32   `json:"gid,omitempty"`
	Groups []uint32 `json:"groups,omitempty"`
}

// gated is a task started in its gate and placed, not yet running.
type gated struct {
	cmd   *exec.Cmd // the gate
	task  *exec.Cmd // what it will exec
	order *os.File  // the pipe's write end
}

// startGated starts cmd's gate (with cmd's directory, environment and
// output, no credential: the gate switches itself) and moves it into
// nested cgroup id below dirs.
func startGated(cmd *exec.Cmd, dirs []string, id string) (*gated, error) {
	if cmd.Err != nil {
		return nil, cmd.Err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the executor's binary: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	// Named as the default executor, not with os.Args: an executor running
	// in place in a prestarted init has the init's arguments
	// (`mesolite launch ...`), which would start an init that reads its
	// spec from the gate's pipe.
	//
	// Through /proc/self/exe: an executor that runs in place in a
	// prestarted init, as the tasks' user, was never exec'd as that user,
	// who may not search the directories on the binary's path; the magic
	// link needs only the file's own execute bit.
	gate := exec.Command("/proc/self/exe", "executor", "default")
	gate.Args[0] = self
	gate.Env = append(slices.Clip(cmd.Env), gateEnv+"=1")
	gate.Dir, gate.Stdout, gate.Stderr, gate.WaitDelay = cmd.Dir, cmd.Stdout, cmd.Stderr, cmd.WaitDelay
	gate.ExtraFiles = []*os.File{r}
	gate.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = gate.Start()
	r.Close()
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("start the task's gate: %w", err)
	}
	g := &gated{cmd: gate, task: cmd, order: w}
	if err := isolation.PlaceNested(dirs, id, gate.Process.Pid); err != nil {
		g.abort()
		return nil, fmt.Errorf("move the task into its cgroup: %w", err)
	}
	return g, nil
}

// release lets the gate exec the task; the gate is then the task's
// process (exec keeps the pid).
func (g *gated) release() (*exec.Cmd, error) {
	o := gateOrder{Path: g.task.Path, Argv: g.task.Args}
	if c := g.task.SysProcAttr.Credential; c != nil {
		o.UID, o.GID, o.Groups = &c.Uid, c.Gid, c.Groups
	}
	err := json.NewEncoder(g.order).Encode(o)
	g.order.Close()
	if err != nil {
		_ = g.cmd.Process.Kill()
		_ = g.cmd.Wait()
		return nil, fmt.Errorf("release the task's gate: %w", err)
	}
	return g.cmd, nil
}

// abort ends a gate that must not run its task.
func (g *gated) abort() {
	g.order.Close()
	_ = g.cmd.Process.Kill()
	_ = g.cmd.Wait()
}

// gateMain is the gate: wait for the order, become the task.
func gateMain() int {
	f := os.NewFile(3, "gate")
	var o gateOrder
	err := json.NewDecoder(io.LimitReader(f, 1<<20)).Decode(&o)
	f.Close()
	if err != nil {
		// The executor gave up on the task (closed the pipe): nothing to say.
		return gateExit
	}
	if len(o.Argv) == 0 || o.Path == "" {
		fmt.Fprintln(os.Stderr, "default executor: the task has no command")
		return gateExit
	}
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, gateEnv+"=") })
	if o.UID != nil {
		groups := make([]int, len(o.Groups))
		for i, g := range o.Groups {
			groups[i] = int(g)
		}
		if err := errors.Join(syscall.Setgroups(groups), syscall.Setgid(int(o.GID)), syscall.Setuid(int(*o.UID))); err != nil {
			fmt.Fprintln(os.Stderr, "default executor: switch to the task's user:", err)
			return gateExit
		}
	}
	err = syscall.Exec(o.Path, o.Argv, env)
	fmt.Fprintf(os.Stderr, "default executor: exec %s: %v\n", o.Path, err)
	return gateExit
}
