// Package command is the built-in command executor: the agent starts it for
// a task that has a command and no executor of its own. It runs the command
// (`/bin/sh -c value` when shell is true, value with arguments otherwise) in
// its own process group, writes the command's output to the sandbox's stdout
// and stderr with rotation, and reports TASK_STARTING, TASK_RUNNING and the
// terminal state. A kill sends SIGTERM to the whole group, then SIGKILL once
// the kill policy's grace period has passed.
package command

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/mesolite/mesolite/api/v1/executor"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/executor/driver"
	"github.com/mesolite/mesolite/executor/health"
	"github.com/mesolite/mesolite/sandbox"
	"google.golang.org/protobuf/proto"
)

// terminalAckTimeout bounds how long an executor whose task ended waits for
// the agent to acknowledge the terminal update before it exits anyway.
const terminalAckTimeout = 30 * time.Second

// DefaultGracePeriod is the kill grace period when the task's KillPolicy
// names none, as in Mesos.
const DefaultGracePeriod = 3 * time.Second

// Environment variables (ours) that tell executors how to rotate task logs.
const (
	EnvLoggerMaxSize  = "MESOLITE_CONTAINER_LOGGER_MAX_SIZE"
	EnvLoggerMaxFiles = "MESOLITE_CONTAINER_LOGGER_MAX_FILES"
)

// Main runs the command executor until its task ended and the agent has the
// terminal update. args are ignored: everything comes from the environment.
func Main(ctx context.Context, args []string) int {
	cfg, err := driver.ConfigFromEnv(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "command executor:", err)
		return 2
	}
	stdout, stderr, err := OpenLogs(cfg.Directory)
	if err != nil {
		fmt.Fprintln(os.Stderr, "command executor:", err)
		return 1
	}
	defer stdout.Close()
	defer stderr.Close()
	log := slog.New(slog.NewTextHandler(stderr, nil)).With("component", "command-executor")
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ex := &Executor{log: log, stdout: stdout, stderr: stderr, cfg: cfg, done: make(chan struct{})}
	d := driver.New(cfg, ex, log)
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(ctx) }()
	select {
	case err := <-runErr:
		if err != nil {
			log.Error("executor driver stopped", "error", err)
			ex.killNow()
			return 1
		}
		return 0
	case <-ex.done:
		d.Stop()
		return 0
	case <-ctx.Done():
		ex.killNow()
		return 0
	}
}

// OpenLogs opens the sandbox's stdout and stderr through rotating writers
// configured by the agent's environment.
func OpenLogs(dir string) (io.WriteCloser, io.WriteCloser, error) {
	maxSize, maxFiles := int64(10<<20), 5
	if v, err := strconv.ParseInt(os.Getenv(EnvLoggerMaxSize), 10, 64); err == nil && v > 0 {
		maxSize = v
	}
	if v, err := strconv.Atoi(os.Getenv(EnvLoggerMaxFiles)); err == nil && v > 0 {
		maxFiles = v
	}
	out, err := sandbox.NewRotatingWriter(filepath.Join(dir, "stdout"), maxSize, maxFiles)
	if err != nil {
		return nil, nil, fmt.Errorf("open sandbox stdout: %w", err)
	}
	errw, err := sandbox.NewRotatingWriter(filepath.Join(dir, "stderr"), maxSize, maxFiles)
	if err != nil {
		out.Close()
		return nil, nil, fmt.Errorf("open sandbox stderr: %w", err)
	}
	return out, errw, nil
}

// Executor runs one task. It is the driver's Handler.
type Executor struct {
	log            *slog.Logger
	stdout, stderr io.Writer
	cfg            driver.Config

	mu         sync.Mutex
	task       *mesos.TaskInfo
	cmd        *exec.Cmd
	killing    bool
	terminal   []byte // uuid of the terminal update, once sent
	done       chan struct{}
	doneOnce   sync.Once
	shutdownAt time.Time
	// stopChecks ends the task's health check and check, once it ends;
	// unhealthyKill says its health check asked for the kill.
	stopChecks    func()
	unhealthyKill bool
}

func (e *Executor) Subscribed(ctx context.Context, d *driver.Driver, ev *executor.Event_Subscribed) {}

func (e *Executor) Launch(ctx context.Context, d *driver.Driver, task *mesos.TaskInfo) {
	e.mu.Lock()
	if e.task != nil {
		e.mu.Unlock()
		e.send(ctx, d, task.GetTaskId(), mesos.TaskState_TASK_FAILED, nil, "the command executor runs one task; it already runs "+e.task.GetTaskId().GetValue())
		return
	}
	e.task = task
	e.mu.Unlock()
	// TASK_STARTING goes out while the command starts: each is a few
	// milliseconds (a request to the agent, a fork and exec), and the order
	// of updates is kept by waiting for it before sending the next.
	starting := make(chan struct{})
	go func() {
		defer close(starting)
		e.send(ctx, d, task.GetTaskId(), mesos.TaskState_TASK_STARTING, nil, "")
	}()

	cmd, err := e.buildCommand(task)
	if err == nil {
		err = health.Validate(task.GetHealthCheck())
	}
	if err == nil {
		err = health.ValidateCheck(task.GetCheck())
	}
	if err == nil {
		err = cmd.Start()
	}
	<-starting
	if err != nil {
		fmt.Fprintf(e.stderr, "Failed to launch command: %v\n", err)
		e.finish(ctx, d, mesos.TaskState_TASK_FAILED, mesos.TaskStatus_REASON_COMMAND_EXECUTOR_FAILED.Enum(), "Failed to launch command: "+err.Error())
		return
	}
	e.mu.Lock()
	e.cmd = cmd
	e.mu.Unlock()
	e.log.Info("started command", "task_id", task.GetTaskId().GetValue(), "pid", cmd.Process.Pid)
	e.send(ctx, d, task.GetTaskId(), mesos.TaskState_TASK_RUNNING, nil, "")
	e.startChecks(ctx, d, task, cmd.Env)
	go e.wait(ctx, d, cmd)
}

// startChecks runs the task's health check and check from the executor,
// which shares the task's namespaces: HTTP and TCP probes reach it on
// 127.0.0.1, commands run beside it with its environment and sandbox. A
// health check that runs out of consecutive failures kills the task.
func (e *Executor) startChecks(ctx context.Context, d *driver.Driver, task *mesos.TaskInfo, env []string) {
	target := health.Target{Host: "127.0.0.1", Command: health.ExecCommand(e.cfg.Directory, env)}
	stop := health.Start(ctx, task, target, time.Now(), health.Hooks{
		Send: func(st *mesos.TaskStatus) { e.sendStatus(ctx, d, st) },
		Kill: func(r health.Report) {
			fmt.Fprintf(e.stderr, "Task failed %d health checks in a row (last: %s); killing it\n", r.Failures, r.Message)
			e.mu.Lock()
			e.unhealthyKill = true
			e.mu.Unlock()
			e.Kill(ctx, d, task.GetTaskId(), nil)
		},
		Ended: func() bool {
			e.mu.Lock()
			defer e.mu.Unlock()
			return e.killing || e.terminal != nil
		},
		Log: e.log,
	})
	e.mu.Lock()
	e.stopChecks = stop
	ended := e.terminal != nil
	e.mu.Unlock()
	if ended {
		stop()
	}
}

func (e *Executor) buildCommand(task *mesos.TaskInfo) (*exec.Cmd, error) {
	ci := task.GetCommand()
	if ci == nil || (ci.GetValue() == "" && len(ci.GetArguments()) == 0) {
		return nil, errors.New("task has no command")
	}
	var cmd *exec.Cmd
	if ci.Shell == nil || ci.GetShell() {
		cmd = exec.Command("/bin/sh", "-c", ci.GetValue())
	} else {
		args := ci.GetArguments()
		cmd = exec.Command(ci.GetValue())
		if len(args) > 0 {
			// As in Mesos, arguments include argv[0].
			cmd.Args = args
		}
	}
	cmd.Dir = e.cfg.Directory
	cmd.Env = driver.TaskEnviron()
	for _, v := range ci.GetEnvironment().GetVariables() {
		if v.GetType() == mesos.Environment_Variable_SECRET {
			return nil, fmt.Errorf("environment variable %s: secrets are not supported", v.GetName())
		}
		cmd.Env = append(cmd.Env, v.GetName()+"="+v.GetValue())
	}
	cmd.Stdout = e.stdout
	cmd.Stderr = e.stderr
	// A daemon the command left behind may hold the pipes open; do not wait
	// for it forever once the command itself exited.
	cmd.WaitDelay = 2 * time.Second
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd, nil
}

func (e *Executor) wait(ctx context.Context, d *driver.Driver, cmd *exec.Cmd) {
	err := cmd.Wait()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) && !errors.Is(err, exec.ErrWaitDelay) {
		e.log.Warn("wait for command", "error", err)
	}
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	msg := describe(ws)
	fmt.Fprintln(e.stderr, msg)
	e.mu.Lock()
	killing, unhealthy := e.killing, e.unhealthyKill
	e.mu.Unlock()
	switch {
	case killing && unhealthy:
		// As Mesos reports it: killed for its health, still unhealthy.
		e.finishStatus(ctx, d, &mesos.TaskStatus{State: mesos.TaskState_TASK_KILLED.Enum(), Healthy: proto.Bool(false),
			Reason:  mesos.TaskStatus_REASON_TASK_HEALTH_CHECK_STATUS_UPDATED.Enum(),
			Message: proto.String(msg + " (killed: it failed its health check)")})
	case killing:
		e.finish(ctx, d, mesos.TaskState_TASK_KILLED, nil, msg)
	case ws.Exited() && ws.ExitStatus() == 0:
		e.finish(ctx, d, mesos.TaskState_TASK_FINISHED, nil, msg)
	default:
		e.finish(ctx, d, mesos.TaskState_TASK_FAILED, nil, msg)
	}
}

func describe(ws syscall.WaitStatus) string {
	if ws.Signaled() {
		return "Command terminated with signal " + ws.Signal().String()
	}
	return "Command exited with status " + strconv.Itoa(ws.ExitStatus())
}

func (e *Executor) finish(ctx context.Context, d *driver.Driver, state mesos.TaskState, reason *mesos.TaskStatus_Reason, msg string) {
	st := &mesos.TaskStatus{State: state.Enum(), Reason: reason}
	if msg != "" {
		st.Message = proto.String(msg)
	}
	e.finishStatus(ctx, d, st)
}

// finishStatus sends the task's terminal update st (its task id filled
// in) and leaves once the agent has it.
func (e *Executor) finishStatus(ctx context.Context, d *driver.Driver, st *mesos.TaskStatus) {
	e.mu.Lock()
	st.TaskId = e.task.GetTaskId()
	if e.stopChecks != nil {
		e.stopChecks()
	}
	e.mu.Unlock()
	e.sendStatus(ctx, d, st)
	e.mu.Lock()
	e.terminal = []byte("sent")
	e.mu.Unlock()
	// Leave once the agent holds the terminal update; give up waiting after
	// a while so a lost ack cannot keep the executor alive for ever.
	go func() {
		wctx, cancel := context.WithTimeout(ctx, terminalAckTimeout)
		defer cancel()
		d.WaitAcknowledged(wctx)
		e.doneOnce.Do(func() { close(e.done) })
	}()
}

func (e *Executor) send(ctx context.Context, d *driver.Driver, id *mesos.TaskID, state mesos.TaskState, reason *mesos.TaskStatus_Reason, msg string) {
	st := &mesos.TaskStatus{TaskId: id, State: state.Enum(), Reason: reason}
	if msg != "" {
		st.Message = proto.String(msg)
	}
	e.sendStatus(ctx, d, st)
}

func (e *Executor) sendStatus(ctx context.Context, d *driver.Driver, st *mesos.TaskStatus) {
	if err := d.SendStatus(ctx, st); err != nil {
		e.log.Warn("send status update (kept for resend)", "state", st.GetState().String(), "error", err)
	}
}

func (e *Executor) Kill(ctx context.Context, d *driver.Driver, taskID *mesos.TaskID, policy *mesos.KillPolicy) {
	e.mu.Lock()
	if e.task == nil || e.task.GetTaskId().GetValue() != taskID.GetValue() {
		e.mu.Unlock()
		e.log.Warn("kill for an unknown task ignored", "task_id", taskID.GetValue())
		return
	}
	if e.killing || e.terminal != nil {
		e.mu.Unlock()
		return
	}
	e.killing = true
	cmd := e.cmd
	grace := DefaultGracePeriod
	if p := e.task.GetKillPolicy().GetGracePeriod(); p != nil {
		grace = time.Duration(p.GetNanoseconds())
	}
	if p := policy.GetGracePeriod(); p != nil {
		grace = time.Duration(p.GetNanoseconds())
	}
	e.mu.Unlock()
	if d.FrameworkInfo().HasCapability(mesos.FrameworkInfo_Capability_TASK_KILLING_STATE) {
		e.send(ctx, d, taskID, mesos.TaskState_TASK_KILLING, nil, "")
	}
	if cmd == nil || cmd.Process == nil {
		e.finish(ctx, d, mesos.TaskState_TASK_KILLED, nil, "Killed before the command started")
		return
	}
	e.log.Info("killing command", "task_id", taskID.GetValue(), "grace_period", grace)
	pgid := cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	go func() {
		t := time.NewTimer(grace)
		defer t.Stop()
		<-t.C
		// The group may outlive its leader; kill whatever is left of it.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}()
}

func (e *Executor) killNow() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cmd != nil && e.cmd.Process != nil {
		_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL)
	}
}

func (e *Executor) LaunchGroup(ctx context.Context, d *driver.Driver, g *mesos.TaskGroupInfo) {
	for _, t := range g.GetTasks() {
		e.send(ctx, d, t.GetTaskId(), mesos.TaskState_TASK_FAILED, nil, "the command executor does not run task groups")
	}
}

func (e *Executor) Acknowledged(ctx context.Context, d *driver.Driver, id *mesos.TaskID, uuid []byte) {
}

func (e *Executor) Message(ctx context.Context, d *driver.Driver, data []byte) {
	e.log.Info("framework message", "bytes", len(data))
}

func (e *Executor) Shutdown(ctx context.Context, d *driver.Driver) {
	e.mu.Lock()
	task := e.task
	e.mu.Unlock()
	if task == nil {
		e.doneOnce.Do(func() { close(e.done) })
		return
	}
	grace := e.cfg.ShutdownGracePeriod
	e.Kill(ctx, d, task.GetTaskId(), &mesos.KillPolicy{GracePeriod: &mesos.DurationInfo{Nanoseconds: proto.Int64(int64(grace))}})
}

func (e *Executor) Error(ctx context.Context, d *driver.Driver, message string) {
	e.log.Error("agent reported an error", "message", message)
}
