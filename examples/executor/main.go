// Command executor is a small custom executor written with mesolite's
// executor driver: it runs every task it is given (several at once) as
// `/bin/sh -c <task.data or task.command.value>` and reports
// TASK_STARTING, TASK_RUNNING and the terminal state of each. Ship it to
// agents as a URI (the artifact server) and name it in
// TaskInfo.executor.command, or try it with
//
//	mesolite run --executor_command=./executor --uri=http://.../executor,executable --command='echo hi'
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/mesolite/mesolite/api/v1/executor"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/executor/driver"
	"google.golang.org/protobuf/proto"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("component", "example-executor")
	cfg, err := driver.ConfigFromEnv(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "example executor:", err)
		os.Exit(2)
	}
	cfg.Protobuf = os.Getenv("EXAMPLE_EXECUTOR_PROTOBUF") == "1"
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ex := &exampleExecutor{log: log, running: map[string]*exec.Cmd{}, quit: make(chan struct{})}
	d := driver.New(cfg, ex, log)
	errc := make(chan error, 1)
	go func() { errc <- d.Run(ctx) }()
	select {
	case err := <-errc:
		if err != nil {
			log.Error("driver stopped", "error", err)
			os.Exit(1)
		}
	case <-ex.quit:
		// Give the agent the last updates before leaving.
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		d.WaitAcknowledged(wctx)
		cancel()
		d.Stop()
	}
}

type exampleExecutor struct {
	log      *slog.Logger
	mu       sync.Mutex
	running  map[string]*exec.Cmd
	launched int
	quit     chan struct{}
	quitOnce sync.Once
}

func (e *exampleExecutor) Subscribed(ctx context.Context, d *driver.Driver, ev *executor.Event_Subscribed) {
	e.log.Info("subscribed", "framework", ev.GetFrameworkInfo().GetName(), "container_id", ev.GetContainerId().GetValue())
}

func (e *exampleExecutor) Launch(ctx context.Context, d *driver.Driver, task *mesos.TaskInfo) {
	id := task.GetTaskId()
	script := string(task.GetData())
	if script == "" {
		script = task.GetCommand().GetValue()
	}
	send := func(state mesos.TaskState, msg string) {
		st := &mesos.TaskStatus{TaskId: id, State: state.Enum()}
		if msg != "" {
			st.Message = proto.String(msg)
		}
		if err := d.SendStatus(ctx, st); err != nil {
			e.log.Warn("send status", "error", err)
		}
	}
	send(mesos.TaskState_TASK_STARTING, "")
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.Env = os.Environ()
	for _, v := range task.GetCommand().GetEnvironment().GetVariables() {
		cmd.Env = append(cmd.Env, v.GetName()+"="+v.GetValue())
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		send(mesos.TaskState_TASK_FAILED, "start: "+err.Error())
		return
	}
	e.mu.Lock()
	e.running[id.GetValue()] = cmd
	e.launched++
	e.mu.Unlock()
	send(mesos.TaskState_TASK_RUNNING, fmt.Sprintf("running under the example executor (pid %d)", cmd.Process.Pid))
	go func() {
		err := cmd.Wait()
		e.mu.Lock()
		delete(e.running, id.GetValue())
		e.mu.Unlock()
		if err != nil {
			send(mesos.TaskState_TASK_FAILED, err.Error())
		} else {
			send(mesos.TaskState_TASK_FINISHED, "done")
		}
	}()
}

func (e *exampleExecutor) LaunchGroup(ctx context.Context, d *driver.Driver, g *mesos.TaskGroupInfo) {
	for _, t := range g.GetTasks() {
		e.Launch(ctx, d, t)
	}
}

func (e *exampleExecutor) Kill(ctx context.Context, d *driver.Driver, id *mesos.TaskID, p *mesos.KillPolicy) {
	e.mu.Lock()
	cmd := e.running[id.GetValue()]
	e.mu.Unlock()
	if cmd != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}

func (e *exampleExecutor) Acknowledged(ctx context.Context, d *driver.Driver, id *mesos.TaskID, uuid []byte) {
}

func (e *exampleExecutor) Message(ctx context.Context, d *driver.Driver, data []byte) {
	_ = d.SendMessage(ctx, append([]byte("echo: "), data...))
}

func (e *exampleExecutor) Shutdown(ctx context.Context, d *driver.Driver) {
	e.mu.Lock()
	for _, cmd := range e.running {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	e.mu.Unlock()
	e.quitOnce.Do(func() { close(e.quit) })
}

func (e *exampleExecutor) Error(ctx context.Context, d *driver.Driver, msg string) {
	e.log.Error("agent error", "message", msg)
}
