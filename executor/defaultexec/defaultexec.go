package defaultexec

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mesolite/mesolite/api/v1/executor"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/validate"
	"github.com/mesolite/mesolite/executor/command"
	"github.com/mesolite/mesolite/executor/driver"
	"github.com/mesolite/mesolite/executor/health"
	"github.com/mesolite/mesolite/isolation"
	"google.golang.org/protobuf/proto"
)

// terminalAckTimeout bounds how long an executor whose tasks all ended
// waits for the agent's acknowledgements before it exits anyway.
const terminalAckTimeout = 30 * time.Second

// TasksDir is the directory of the executor's sandbox that holds one
// sandbox per task, as in Mesos.
const TasksDir = "tasks"

// envToken is the executor's credential on the agent's executor API; a
// task must never hold it (it could speak for its executor).
const envToken = driver.EnvToken

// Main runs the default executor until every task it was given ended and
// the agent has the terminal updates. args are ignored: everything comes
// from the environment.
func Main(ctx context.Context, args []string) int {
	if os.Getenv(gateEnv) == "1" {
		// Not the executor: one of its tasks, waiting to be placed in its
		// cgroup (see gate.go).
		return gateMain()
	}
	cfg, err := driver.ConfigFromEnv(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "default executor:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("component", "default-executor", "executor_id", cfg.ExecutorID)
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ex := New(cfg, log)
	d := driver.New(cfg, ex, log)
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(ctx) }()
	select {
	case err := <-runErr:
		ex.killAllNow()
		if err != nil {
			log.Error("executor driver stopped", "error", err)
			return 1
		}
		return 0
	case <-ex.done:
		log.Info("every task ended; leaving")
		d.Stop()
		return 0
	case <-ctx.Done():
		log.Warn("signalled; killing every task and leaving")
		ex.killAllNow()
		return 0
	}
}

type taskPhase int

const (
	phaseLaunching taskPhase = iota
	phaseRunning
	phaseKilling
	phaseTerminal
)

// killCause says why a task is being killed, which decides its terminal
// state and reason.
type killCause int

const (
	causeNone          killCause = iota
	causeKill                    // KILL from the framework, or SHUTDOWN
	causeGroup                   // another task of its group ended unsuccessfully
	causeUnhealthy               // its health check ran out of failures
	causeMaxCompletion           // max_completion_time passed
)

type group struct {
	tasks []*task
	// killing: the group's policy fired; its other tasks are being killed.
	killing bool
}

type task struct {
	info  *mesos.TaskInfo
	group *group
	cid   *mesos.ContainerID
	dir   string // the task's sandbox
	// cred is who the task runs as; nil: the executor's user.
	cred *syscall.Credential

	phase taskPhase
	// terminalSent: its terminal update is with the driver (kept until
	// the agent acknowledges it). Set after phaseTerminal, so the executor
	// does not leave between the two (maybeLeave).
	terminalSent bool
	cause        killCause
	causeMsg     string
	cmd          *exec.Cmd
	stopChecks   func()
	timer        *time.Timer // max_completion_time
	logs         []io.Closer // its stdout and stderr, closed once it ended
}

// Executor is the default executor; it is the driver's Handler.
type Executor struct {
	log *slog.Logger
	cfg driver.Config
	// nestedDirs are the executor's container's cgroup directories, below
	// which the agent makes each task's cgroup (isolation.NestedCgroupsEnv);
	// nil when it makes none.
	nestedDirs []string

	mu       sync.Mutex
	parent   *mesos.ContainerID // the executor's container, from SUBSCRIBED
	tasks    map[string]*task
	shutdown bool
	// exiting is set once every task is terminal and the executor waits
	// for the agent's acknowledgements to leave.
	exiting  bool
	done     chan struct{}
	doneOnce sync.Once
}

// New returns a default executor configured by cfg.
func New(cfg driver.Config, log *slog.Logger) *Executor {
	return &Executor{log: log, cfg: cfg, tasks: map[string]*task{}, done: make(chan struct{}),
		nestedDirs: isolation.NestedDirs(os.Getenv(isolation.NestedCgroupsEnv))}
}

// Done is closed once the executor has nothing left to do.
func (e *Executor) Done() <-chan struct{} { return e.done }

func (e *Executor) Subscribed(ctx context.Context, d *driver.Driver, ev *executor.Event_Subscribed) {
	e.mu.Lock()
	e.parent = ev.GetContainerId()
	e.mu.Unlock()
}

// Launch runs a single task as a group of one: the default executor is
// given groups, but an agent that resends a task after its own restart
// sends it alone.
func (e *Executor) Launch(ctx context.Context, d *driver.Driver, t *mesos.TaskInfo) {
	e.LaunchGroup(ctx, d, &mesos.TaskGroupInfo{Tasks: []*mesos.TaskInfo{t}})
}

// LaunchGroup starts every task of g. A second group adds to the first.
func (e *Executor) LaunchGroup(ctx context.Context, d *driver.Driver, g *mesos.TaskGroupInfo) {
	grp := &group{}
	var fresh []*task
	e.mu.Lock()
	parent := e.parent
	for _, ti := range g.GetTasks() {
		id := ti.GetTaskId().GetValue()
		if e.tasks[id] != nil {
			continue // already ours (given again after an agent restart)
		}
		t := &task{info: ti, group: grp, cid: &mesos.ContainerID{Value: proto.String(NestedContainerID(parent.GetValue(), id)), Parent: parent}}
		grp.tasks = append(grp.tasks, t)
		e.tasks[id] = t
		fresh = append(fresh, t)
	}
	shutdown := e.shutdown
	e.exiting = false
	e.mu.Unlock()
	for _, t := range fresh {
		if shutdown {
			e.finish(ctx, d, t, &mesos.TaskStatus{State: mesos.TaskState_TASK_KILLED.Enum(), Message: proto.String("The executor is shutting down")})
			continue
		}
		// Each task starts on its own (a fork and exec, a request to
		// the agent per update): the driver's loop is not held, and its
		// updates stay in order.
		go e.start(ctx, d, t)
	}
}

// start prepares the task's sandbox and starts it.
func (e *Executor) start(ctx context.Context, d *driver.Driver, t *task) {
	e.send(ctx, d, t, &mesos.TaskStatus{State: mesos.TaskState_TASK_STARTING.Enum()})
	cmd, err := e.prepare(t)
	if err == nil {
		err = health.Validate(t.info.GetHealthCheck())
	}
	if err == nil {
		err = health.ValidateCheck(t.info.GetCheck())
	}
	// A task with a cgroup of its own starts in a gate, is moved into its
	// cgroup, and only then runs.
	var g *gated
	if err == nil && isolation.HasNested(e.nestedDirs, t.cid.GetValue()) {
		g, err = startGated(cmd, e.nestedDirs, t.cid.GetValue())
	}
	e.mu.Lock()
	if err == nil && t.phase != phaseLaunching {
		// Killed while it was being prepared.
		e.mu.Unlock()
		if g != nil {
			g.abort()
		}
		e.closeLogs(t)
		e.finish(ctx, d, t, e.killedStatus(t, "Killed before it started"))
		return
	}
	if err == nil && g != nil {
		cmd, err = g.release()
	} else if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		e.mu.Unlock()
		e.closeLogs(t)
		e.log.Warn("task not started", "task_id", t.info.GetTaskId().GetValue(), "error", err)
		e.finish(ctx, d, t, &mesos.TaskStatus{State: mesos.TaskState_TASK_FAILED.Enum(),
			Reason:  mesos.TaskStatus_REASON_CONTAINER_LAUNCH_FAILED.Enum(),
			Message: proto.String("Failed to launch nested container: " + err.Error())})
		return
	}
	t.cmd, t.phase = cmd, phaseRunning
	if mct := t.info.GetMaxCompletionTime(); mct != nil {
		t.timer = time.AfterFunc(time.Duration(mct.GetNanoseconds()), func() {
			e.kill(ctx, d, t, causeMaxCompletion, "", nil)
		})
	}
	e.mu.Unlock()
	e.log.Info("started task", "task_id", t.info.GetTaskId().GetValue(), "container_id", t.cid.GetValue(), "pid", cmd.Process.Pid, "own_cgroup", g != nil)
	e.send(ctx, d, t, &mesos.TaskStatus{State: mesos.TaskState_TASK_RUNNING.Enum()})
	e.startChecks(ctx, d, t, cmd.Env)
	go e.wait(ctx, d, t)
}

// prepare makes the task's sandbox, its logs and volumes, and its command.
// The sandbox is the task's user's (the executor runs as it), so it is
// reached through an os.Root of the executor's sandbox: nothing planted
// there (a symlink by another task) leads the executor out of it.
func (e *Executor) prepare(t *task) (*exec.Cmd, error) {
	ti := t.info
	id := ti.GetTaskId().GetValue()
	if err := validate.ID("task id", id); err != nil {
		return nil, err
	}
	if c := ti.GetContainer(); c != nil {
		if c.GetType() == mesos.ContainerInfo_DOCKER || c.GetMesos().GetImage() != nil {
			return nil, errors.New("this agent cannot run a task with a container image nested in a task group (docker-image tasks in a group are not supported); run it as a task of its own")
		}
	}
	ci := ti.GetCommand()
	if ci == nil || (ci.GetValue() == "" && len(ci.GetArguments()) == 0) {
		return nil, errors.New("task has no command")
	}
	cred, err := credential(ci.GetUser())
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(e.cfg.Directory)
	if err != nil {
		return nil, fmt.Errorf("open the executor's sandbox: %w", err)
	}
	defer root.Close()
	rel := path.Join(TasksDir, id)
	if err := root.MkdirAll(rel, 0o755); err != nil {
		return nil, fmt.Errorf("create the task's sandbox: %w", err)
	}
	t.dir = filepath.Join(e.cfg.Directory, TasksDir, id)
	if err := e.volumes(root, rel, ti.GetContainer().GetVolumes(), cred); err != nil {
		return nil, err
	}
	if cred != nil {
		// A root executor (an agent that does not switch users) hands the
		// new sandbox to the task's user; nothing in it is the task's
		// yet, and Lchown follows no link.
		if err := root.Lchown(rel, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("hand the task's sandbox to its user: %w", err)
		}
	}
	stdout, stderr, err := command.OpenLogs(t.dir)
	if err != nil {
		return nil, err
	}
	t.logs = []io.Closer{stdout, stderr}

	var cmd *exec.Cmd
	if ci.Shell == nil || ci.GetShell() {
		cmd = exec.Command("/bin/sh", "-c", ci.GetValue())
	} else {
		cmd = exec.Command(ci.GetValue())
		if args := ci.GetArguments(); len(args) > 0 {
			cmd.Args = args // as in Mesos, arguments include argv[0]
		}
	}
	cmd.Dir = t.dir
	cmd.Env = taskEnv(os.Environ(), t.dir, e.cfg.Directory)
	for _, v := range ci.GetEnvironment().GetVariables() {
		if v.GetType() == mesos.Environment_Variable_SECRET {
			return nil, fmt.Errorf("environment variable %s: secrets are not supported", v.GetName())
		}
		cmd.Env = append(cmd.Env, v.GetName()+"="+v.GetValue())
	}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = 2 * time.Second
	// Its own process group: a kill reaches whatever the task started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
	t.cred = cred
	return cmd, nil
}

// credential is who the task runs as. The executor already runs as the
// group's user (the agent switched to it); a task that names another user
// can run as it only when the executor is root (an agent that does not
// switch users), and is refused otherwise rather than run as the wrong one.
func credential(name string) (*syscall.Credential, error) {
	if name == "" {
		return nil, nil
	}
	u, err := isolation.LookupUser(name)
	if err != nil {
		return nil, err
	}
	if int(u.UID) == os.Geteuid() {
		return nil, nil
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("the task's user %q is not the executor's user (uid %d), which cannot switch users", name, os.Geteuid())
	}
	return &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: u.Groups}, nil
}

// volumes makes the task's SANDBOX_PATH volumes: PARENT shares a directory
// of the executor's sandbox (Mesos's way for tasks of a group to share
// files), SELF another directory of the task's own. The tasks run in the
// executor's mount namespace as an unprivileged user, so a volume is a
// symlink at container_path to the shared directory, both inside the
// executor's sandbox; other volume kinds are refused.
func (e *Executor) volumes(root *os.Root, taskRel string, vols []*mesos.Volume, cred *syscall.Credential) error {
	for _, v := range vols {
		sp := v.GetSource().GetSandboxPath()
		if v.GetSource().GetType() != mesos.Volume_Source_SANDBOX_PATH || sp == nil {
			return fmt.Errorf("volume %q: only SANDBOX_PATH volumes are supported for tasks in a group", v.GetContainerPath())
		}
		cp, src := v.GetContainerPath(), sp.GetPath()
		if !local(cp) || !local(src) {
			return fmt.Errorf("volume %q: container_path and sandbox_path.path must be relative paths inside the sandbox", cp)
		}
		var target string // relative to the executor's sandbox
		switch sp.GetType() {
		case mesos.Volume_Source_SandboxPath_PARENT:
			target = path.Clean(src)
		case mesos.Volume_Source_SandboxPath_SELF:
			target = path.Join(taskRel, src)
		default:
			return fmt.Errorf("volume %q: unknown sandbox_path type", cp)
		}
		_, statErr := root.Lstat(target)
		if err := root.MkdirAll(target, 0o755); err != nil {
			return fmt.Errorf("volume %q: %w", cp, err)
		}
		if cred != nil && errors.Is(statErr, os.ErrNotExist) {
			// Made now, for this task: its user's.
			if err := root.Lchown(target, int(cred.Uid), int(cred.Gid)); err != nil {
				return fmt.Errorf("volume %q: %w", cp, err)
			}
		}
		link := path.Join(taskRel, cp)
		if dir := path.Dir(link); dir != taskRel {
			if err := root.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("volume %q: %w", cp, err)
			}
		}
		// An absolute target: the link is read by the task, in the
		// executor's mount namespace, where the sandbox has this path.
		if err := root.Symlink(filepath.Join(e.cfg.Directory, target), link); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("volume %q: %w", cp, err)
		}
	}
	return nil
}

// local: a relative path that stays below where it starts.
func local(p string) bool { return p != "" && filepath.IsLocal(p) }

// taskEnv is the task's environment: the executor's, less its credential,
// with MESOS_SANDBOX the task's own sandbox (as Mesos's nested containers
// have it) and the executor's sandbox beside it.
func taskEnv(env []string, dir, parent string) []string {
	out := make([]string, 0, len(env)+2)
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case envToken, "MESOS_SANDBOX", "MESOS_DIRECTORY", isolation.NestedCgroupsEnv:
			continue
		}
		out = append(out, kv)
	}
	return append(out, "MESOS_SANDBOX="+dir, "MESOS_DIRECTORY="+dir)
}

// startChecks runs the task's health check and check from the executor,
// which shares the task's namespaces: HTTP and TCP probes reach it on
// 127.0.0.1, commands run beside it with its environment and sandbox.
func (e *Executor) startChecks(ctx context.Context, d *driver.Driver, t *task, env []string) {
	target := health.Target{Host: "127.0.0.1", Command: health.ExecCommandAs(t.dir, env, t.cred)}
	stop := health.Start(ctx, t.info, target, time.Now(), health.Hooks{
		Send: func(st *mesos.TaskStatus) { e.send(ctx, d, t, st) },
		Kill: func(r health.Report) {
			e.kill(ctx, d, t, causeUnhealthy, fmt.Sprintf("it failed %d health checks in a row (last: %s)", r.Failures, r.Message), nil)
		},
		Ended: func() bool {
			e.mu.Lock()
			defer e.mu.Unlock()
			return t.phase >= phaseKilling
		},
		Log: e.log,
	})
	e.mu.Lock()
	t.stopChecks = stop
	ended := t.phase == phaseTerminal
	e.mu.Unlock()
	if ended {
		stop()
	}
}

func (e *Executor) wait(ctx context.Context, d *driver.Driver, t *task) {
	err := t.cmd.Wait()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) && !errors.Is(err, exec.ErrWaitDelay) {
		e.log.Warn("wait for task", "task_id", t.info.GetTaskId().GetValue(), "error", err)
	}
	// Whatever the task left in its group goes with it.
	_ = syscall.Kill(-t.cmd.Process.Pid, syscall.SIGKILL)
	e.closeLogs(t)
	ws, _ := t.cmd.ProcessState.Sys().(syscall.WaitStatus)
	msg := describe(ws)
	e.mu.Lock()
	cause, why := t.cause, t.causeMsg
	e.mu.Unlock()
	var st *mesos.TaskStatus
	switch {
	case cause == causeMaxCompletion:
		st = &mesos.TaskStatus{State: mesos.TaskState_TASK_FAILED.Enum(), Reason: mesos.TaskStatus_REASON_MAX_COMPLETION_TIME_REACHED.Enum(),
			Message: proto.String(msg + " (killed: its max_completion_time passed)")}
	case cause != causeNone:
		st = e.killedStatus(t, msg)
		if why != "" {
			st.Message = proto.String(msg + " (killed: " + why + ")")
		}
	case ws.Exited() && ws.ExitStatus() == 0:
		st = &mesos.TaskStatus{State: mesos.TaskState_TASK_FINISHED.Enum(), Message: proto.String(msg)}
	default:
		st = &mesos.TaskStatus{State: mesos.TaskState_TASK_FAILED.Enum(), Message: proto.String(msg)}
	}
	e.finish(ctx, d, t, st)
}

// killedStatus is TASK_KILLED as the task's kill cause words it.
func (e *Executor) killedStatus(t *task, msg string) *mesos.TaskStatus {
	st := &mesos.TaskStatus{State: mesos.TaskState_TASK_KILLED.Enum(), Message: proto.String(msg)}
	e.mu.Lock()
	unhealthy := t.cause == causeUnhealthy
	e.mu.Unlock()
	if unhealthy {
		st.Healthy = proto.Bool(false)
		st.Reason = mesos.TaskStatus_REASON_TASK_HEALTH_CHECK_STATUS_UPDATED.Enum()
	}
	return st
}

func describe(ws syscall.WaitStatus) string {
	if ws.Signaled() {
		return "Command terminated with signal " + ws.Signal().String()
	}
	return "Command exited with status " + strconv.Itoa(ws.ExitStatus())
}

func (e *Executor) closeLogs(t *task) {
	for _, c := range t.logs {
		c.Close()
	}
}

// finish sends the task's terminal update, applies the group's policy (an
// unsuccessful end kills the rest of the group) and, once every task is
// terminal, lets the executor leave when the agent has the updates.
func (e *Executor) finish(ctx context.Context, d *driver.Driver, t *task, st *mesos.TaskStatus) {
	e.mu.Lock()
	if t.phase == phaseTerminal {
		e.mu.Unlock()
		return
	}
	t.phase = phaseTerminal
	if t.timer != nil {
		t.timer.Stop()
	}
	stop := t.stopChecks
	var others []*task
	if st.GetState() != mesos.TaskState_TASK_FINISHED && !t.group.killing {
		t.group.killing = true
		for _, o := range t.group.tasks {
			if o != t && o.phase < phaseKilling {
				others = append(others, o)
			}
		}
	}
	e.mu.Unlock()
	if stop != nil {
		stop()
	}
	e.send(ctx, d, t, st)
	e.mu.Lock()
	t.terminalSent = true
	e.mu.Unlock()
	id := t.info.GetTaskId().GetValue()
	for _, o := range others {
		e.kill(ctx, d, o, causeGroup, fmt.Sprintf("task %s of its group ended in %s", id, st.GetState()), nil)
	}
	e.maybeLeave(ctx, d)
}

// maybeLeave ends the executor once every task is terminal and the agent
// acknowledged their updates, unless a new group arrived meanwhile.
func (e *Executor) maybeLeave(ctx context.Context, d *driver.Driver) {
	e.mu.Lock()
	for _, t := range e.tasks {
		if t.phase != phaseTerminal || !t.terminalSent {
			// Its own finish calls here again once its update is sent.
			e.mu.Unlock()
			return
		}
	}
	if e.exiting {
		e.mu.Unlock()
		return
	}
	e.exiting = true
	e.mu.Unlock()
	go func() {
		wctx, cancel := context.WithTimeout(ctx, terminalAckTimeout)
		defer cancel()
		d.WaitAcknowledged(wctx)
		e.mu.Lock()
		leave := e.exiting
		for _, t := range e.tasks {
			leave = leave && t.phase == phaseTerminal && t.terminalSent
		}
		if !leave {
			// A new group arrived meanwhile: its tasks' ends try again.
			e.exiting = false
		}
		e.mu.Unlock()
		if leave {
			e.doneOnce.Do(func() { close(e.done) })
		}
	}()
}

// send sends st for t, with the task's id and nested container.
func (e *Executor) send(ctx context.Context, d *driver.Driver, t *task, st *mesos.TaskStatus) {
	st.TaskId = t.info.GetTaskId()
	st.ContainerStatus = &mesos.ContainerStatus{ContainerId: t.cid}
	if err := d.SendStatus(ctx, st); err != nil {
		e.log.Warn("send status update (kept for resend)", "task_id", st.GetTaskId().GetValue(), "state", st.GetState().String(), "error", err)
	}
}

// Kill kills one task; as its end is unsuccessful, the rest of its group
// follows.
func (e *Executor) Kill(ctx context.Context, d *driver.Driver, taskID *mesos.TaskID, policy *mesos.KillPolicy) {
	e.mu.Lock()
	t := e.tasks[taskID.GetValue()]
	e.mu.Unlock()
	if t == nil {
		e.log.Warn("kill for an unknown task ignored", "task_id", taskID.GetValue())
		return
	}
	e.kill(ctx, d, t, causeKill, "", policy)
}

// kill moves t to killing: SIGTERM to its process group, SIGKILL after the
// grace period (policy's, else the task's kill policy's, else Mesos's 3s).
func (e *Executor) kill(ctx context.Context, d *driver.Driver, t *task, cause killCause, why string, policy *mesos.KillPolicy) {
	e.mu.Lock()
	if t.phase >= phaseKilling {
		e.mu.Unlock()
		return
	}
	launching := t.phase == phaseLaunching
	t.phase, t.cause, t.causeMsg = phaseKilling, cause, why
	cmd := t.cmd
	grace := command.DefaultGracePeriod
	if p := t.info.GetKillPolicy().GetGracePeriod(); p != nil {
		grace = time.Duration(p.GetNanoseconds())
	}
	if p := policy.GetGracePeriod(); p != nil {
		grace = time.Duration(p.GetNanoseconds())
	}
	e.mu.Unlock()
	if d.FrameworkInfo().HasCapability(mesos.FrameworkInfo_Capability_TASK_KILLING_STATE) {
		e.send(ctx, d, t, &mesos.TaskStatus{State: mesos.TaskState_TASK_KILLING.Enum()})
	}
	if launching {
		// start sees the phase and reports the task killed.
		return
	}
	e.log.Info("killing task", "task_id", t.info.GetTaskId().GetValue(), "grace_period", grace, "cause", int(cause))
	pgid := cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	go func() {
		timer := time.NewTimer(grace)
		defer timer.Stop()
		<-timer.C
		// Not once the task was reaped: its group id may name another
		// process group by now.
		e.mu.Lock()
		defer e.mu.Unlock()
		if t.phase != phaseTerminal {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
	}()
}

// killAllNow kills every task's process group at once: the executor is
// leaving and its tasks must not outlive it.
func (e *Executor) killAllNow() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, t := range e.tasks {
		if t.cmd != nil && t.cmd.Process != nil && t.phase != phaseTerminal {
			_ = syscall.Kill(-t.cmd.Process.Pid, syscall.SIGKILL)
		}
	}
}

func (e *Executor) Acknowledged(ctx context.Context, d *driver.Driver, id *mesos.TaskID, uuid []byte) {
}

func (e *Executor) Message(ctx context.Context, d *driver.Driver, data []byte) {
	e.log.Info("framework message", "bytes", len(data))
}

// Shutdown kills every task with the shutdown grace period; the executor
// leaves once they are terminal.
func (e *Executor) Shutdown(ctx context.Context, d *driver.Driver) {
	e.mu.Lock()
	e.shutdown = true
	var all []*task
	for _, t := range e.tasks {
		all = append(all, t)
	}
	e.mu.Unlock()
	if len(all) == 0 {
		e.doneOnce.Do(func() { close(e.done) })
		return
	}
	policy := &mesos.KillPolicy{GracePeriod: &mesos.DurationInfo{Nanoseconds: proto.Int64(int64(e.cfg.ShutdownGracePeriod))}}
	for _, t := range all {
		e.kill(ctx, d, t, causeKill, "the executor was shut down", policy)
	}
}

func (e *Executor) Error(ctx context.Context, d *driver.Driver, message string) {
	e.log.Error("agent reported an error", "message", message)
}

// NestedContainerID is the id of the nested container of task taskID in
// the executor's container parent: a UUID (as Mesos's are) named by the
// two, so the agent, which makes the task's cgroup before the executor
// has the task, knows it without being told.
func NestedContainerID(parent, taskID string) string {
	sum := sha256.Sum256([]byte(parent + "\x00" + taskID))
	b := sum[:16]
	b[6] = (b[6] & 0x0f) | 0x50
	b[8] = (b[8] & 0x3f) | 0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
