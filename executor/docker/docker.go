package docker

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/go-connections/nat"
	"github.com/mesolite/mesolite/api/v1/executor"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/containerizer/docker/engine"
	"github.com/mesolite/mesolite/executor/command"
	"github.com/mesolite/mesolite/executor/driver"
	"github.com/mesolite/mesolite/executor/health"
	"github.com/mesolite/mesolite/internal/duration"
	"google.golang.org/protobuf/proto"
)

// DefaultGracePeriod is the kill grace period when the task's KillPolicy
// names none and the agent's --docker_stop_timeout is not set, as in Mesos.
const DefaultGracePeriod = 3 * time.Second

// Main runs the docker executor until its task ended and the agent has the
// terminal update. args are the flags after `executor docker`.
func Main(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("mesolite executor docker", flag.ContinueOnError)
	name := fs.String("container", os.Getenv("MESOS_CONTAINER_NAME"), "name of the docker container to run, created by the docker containerizer (default $MESOS_CONTAINER_NAME)")
	host := fs.String("docker", "", "dockerd address, unix:///path or tcp://host:port (default $DOCKER_HOST or the standard socket)")
	stopTimeout := fs.String("stop_timeout", "", "grace period between the stop signal and SIGKILL when the task's kill policy names none (the agent's --docker_stop_timeout; default "+duration.Format(DefaultGracePeriod)+")")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var grace time.Duration
	if *stopTimeout != "" {
		d, err := duration.Parse(*stopTimeout)
		if err != nil || d < 0 {
			fmt.Fprintf(os.Stderr, "docker executor: --stop_timeout=%q: not a duration\n", *stopTimeout)
			return 2
		}
		grace = d
	}
	if *name == "" {
		fmt.Fprintln(os.Stderr, "docker executor: no container name (--container or MESOS_CONTAINER_NAME)")
		return 2
	}
	cfg, err := driver.ConfigFromEnv(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "docker executor:", err)
		return 2
	}
	stdout, stderr, err := command.OpenLogs(cfg.Directory)
	if err != nil {
		fmt.Fprintln(os.Stderr, "docker executor:", err)
		return 1
	}
	defer stdout.Close()
	defer stderr.Close()
	log := slog.New(slog.NewTextHandler(stderr, nil)).With("component", "docker-executor", "container", *name)
	eng, err := engine.New(*host)
	if err != nil {
		log.Error("docker client", "error", err)
		return 1
	}
	defer eng.Close()
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ex := New(Options{Engine: eng, Container: *name, Stdout: stdout, Stderr: stderr, Logger: log, Config: cfg, StopTimeout: grace})
	return ex.Run(ctx)
}

// Options configure an Executor.
type Options struct {
	Engine    *engine.Engine
	Container string // docker container name
	// Stdout and Stderr receive the container's output.
	Stdout, Stderr io.Writer
	Logger         *slog.Logger
	Config         driver.Config
	// StopTimeout is the grace period of a kill whose task and call name
	// none (--docker_stop_timeout); DefaultGracePeriod when 0.
	StopTimeout time.Duration
}

// Executor runs one task's container. It is the driver's Handler.
type Executor struct {
	opts Options
	eng  *engine.Engine
	name string
	log  *slog.Logger

	runCtx    context.Context
	cancelRun context.CancelFunc

	mu          sync.Mutex
	task        *mesos.TaskInfo
	containerID string
	started     bool
	killing     bool
	killGrace   time.Duration
	terminal    bool
	// unhealthyKill: the task's health check asked for the kill.
	unhealthyKill bool
	done          chan struct{}
	doneOnce      sync.Once
}

// New returns an executor for one container.
func New(opts Options) *Executor {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Executor{
		opts:      opts,
		eng:       opts.Engine,
		name:      opts.Container,
		log:       opts.Logger,
		runCtx:    ctx,
		cancelRun: cancel,
		done:      make(chan struct{}),
	}
}

// Run talks to the agent until the task ended and its terminal update is
// acknowledged (0), or the agent is gone or ctx ends, in which case the
// container is stopped (1 and 0).
func (e *Executor) Run(ctx context.Context) int {
	defer e.cancelRun()
	d := driver.New(e.opts.Config, e, e.log)
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(ctx) }()
	select {
	case err := <-runErr:
		if err != nil {
			e.log.Error("executor driver stopped; stopping the container", "error", err)
			e.stopNow()
			return 1
		}
		return 0
	case <-e.done:
		d.Stop()
		return 0
	case <-ctx.Done():
		e.log.Info("executor told to stop; stopping the container")
		e.stopNow()
		return 0
	}
}

func (e *Executor) stopNow() {
	grace := e.defaultGrace()
	ctx, cancel := context.WithTimeout(context.Background(), grace+10*time.Second)
	defer cancel()
	if err := e.eng.Stop(ctx, e.name, e.stopSignal(ctx), grace); err != nil {
		e.log.Warn("stop container", "error", err)
	}
}

// Subscribed implements driver.Handler.
func (e *Executor) Subscribed(ctx context.Context, d *driver.Driver, ev *executor.Event_Subscribed) {
	e.mu.Lock()
	e.containerID = ev.GetContainerId().GetValue()
	e.mu.Unlock()
}

// Launch implements driver.Handler: the container is started on a
// goroutine, since handlers must not block.
func (e *Executor) Launch(ctx context.Context, d *driver.Driver, task *mesos.TaskInfo) {
	e.mu.Lock()
	if e.task != nil {
		e.mu.Unlock()
		e.send(ctx, d, task.GetTaskId(), mesos.TaskState_TASK_FAILED, nil, "the docker executor runs one task; it already runs "+e.task.GetTaskId().GetValue(), nil)
		return
	}
	e.task = task
	e.mu.Unlock()
	go e.run(ctx, d, task)
}

func (e *Executor) run(ctx context.Context, d *driver.Driver, task *mesos.TaskInfo) {
	log := e.log.With("task_id", task.GetTaskId().GetValue())
	e.send(ctx, d, task.GetTaskId(), mesos.TaskState_TASK_STARTING, nil, "", nil)
	ins, err := e.eng.Inspect(ctx, e.name)
	if err != nil {
		e.launchFailed(ctx, d, "Failed to find container "+e.name+": "+err.Error())
		return
	}
	tty := ins.Config != nil && ins.Config.Tty
	logDone, err := e.eng.Attach(e.runCtx, e.name, tty, e.opts.Stdout, e.opts.Stderr)
	if err != nil {
		e.launchFailed(ctx, d, "Failed to attach to container "+e.name+": "+err.Error())
		return
	}
	e.mu.Lock()
	killed := e.killing
	e.mu.Unlock()
	if killed {
		e.finish(ctx, d, mesos.TaskState_TASK_KILLED, nil, "Task killed before its container started")
		return
	}
	if err := e.eng.Start(ctx, e.name); err != nil {
		fmt.Fprintf(e.opts.Stderr, "Failed to start container %s: %v\n", e.name, err)
		e.launchFailed(ctx, d, "Failed to start container "+e.name+": "+err.Error())
		return
	}
	e.mu.Lock()
	e.started = true
	killed = e.killing
	grace := e.killGrace
	e.mu.Unlock()
	if killed {
		go e.stop(grace)
	}
	ins, raw, err := e.eng.InspectRaw(ctx, e.name)
	if err != nil {
		log.Warn("inspect running container", "error", err)
	}
	log.Info("container started", "pid", pidOf(ins))
	e.send(ctx, d, task.GetTaskId(), mesos.TaskState_TASK_RUNNING, nil, "", func(st *mesos.TaskStatus) {
		st.ContainerStatus = e.containerStatus(ins)
		if len(raw) > 0 {
			st.Data = raw
		}
	})
	stopChecks := e.startChecks(ctx, d, task, ins)
	defer stopChecks()

	x, err := e.wait(ctx)
	if err != nil {
		e.finish(ctx, d, mesos.TaskState_TASK_FAILED, mesos.TaskStatus_REASON_EXECUTOR_TERMINATED.Enum(), "Lost the container "+e.name+": "+err.Error())
		return
	}
	// The output ends with the container; a little more to copy the rest.
	select {
	case <-logDone:
	case <-time.After(5 * time.Second):
		log.Warn("container output did not end 5s after the container exited")
	}
	msg := "Container exited with status " + strconv.Itoa(x.Code)
	if x.Error != "" {
		msg += ": " + x.Error
	}
	e.mu.Lock()
	killed = e.killing
	e.mu.Unlock()
	switch {
	case x.OOMKilled:
		oom := engine.OOMMessage(e.name, x.MemoryLimit)
		fmt.Fprintln(e.opts.Stderr, oom)
		e.finish(ctx, d, mesos.TaskState_TASK_FAILED, mesos.TaskStatus_REASON_CONTAINER_LIMITATION_MEMORY.Enum(), oom)
	case killed && e.isUnhealthyKill():
		e.finishStatus(ctx, d, &mesos.TaskStatus{State: mesos.TaskState_TASK_KILLED.Enum(), Healthy: proto.Bool(false),
			Reason:  mesos.TaskStatus_REASON_TASK_HEALTH_CHECK_STATUS_UPDATED.Enum(),
			Message: proto.String(msg + " (killed: it failed its health check)")})
	case killed:
		e.finish(ctx, d, mesos.TaskState_TASK_KILLED, nil, msg)
	case x.Code == 0:
		e.finish(ctx, d, mesos.TaskState_TASK_FINISHED, nil, msg)
	default:
		e.finish(ctx, d, mesos.TaskState_TASK_FAILED, nil, msg)
	}
}

// startChecks runs the task's health check and check against its
// container: commands with `docker exec` in it (the task's filesystem,
// user and environment), HTTP and TCP at the container's address (the
// task's own ports, not the mapped ones, as in Mesos), or 127.0.0.1 on the
// host's network.
func (e *Executor) startChecks(ctx context.Context, d *driver.Driver, task *mesos.TaskInfo, ins container.InspectResponse) func() {
	host := "127.0.0.1"
	if ins.ContainerJSONBase != nil && ins.HostConfig != nil && !ins.HostConfig.NetworkMode.IsHost() {
		if v4, _ := engine.IPAddresses(ins); len(v4) > 0 {
			host = v4[0]
		}
	}
	target := health.Target{Host: host, Command: func(ctx context.Context, c *mesos.CommandInfo) (int32, error) {
		cmd := []string{"/bin/sh", "-c", c.GetValue()}
		if c.Shell != nil && !c.GetShell() {
			// Mesos's arguments start with argv[0]; exec runs value.
			cmd = []string{c.GetValue()}
			if args := c.GetArguments(); len(args) > 1 {
				cmd = append(cmd, args[1:]...)
			}
		}
		var env []string
		for _, v := range c.GetEnvironment().GetVariables() {
			env = append(env, v.GetName()+"="+v.GetValue())
		}
		code, err := e.eng.Exec(ctx, e.name, engine.ExecOptions{Cmd: cmd, Env: env})
		return int32(code), err
	}}
	return health.Start(ctx, task, target, time.Now(), health.Hooks{
		Send: func(st *mesos.TaskStatus) {
			e.send(ctx, d, st.GetTaskId(), st.GetState(), st.Reason, st.GetMessage(), func(out *mesos.TaskStatus) {
				out.Healthy, out.CheckStatus = st.Healthy, st.CheckStatus
			})
		},
		Kill: func(r health.Report) {
			fmt.Fprintf(e.opts.Stderr, "Task failed %d health checks in a row (last: %s); killing it\n", r.Failures, r.Message)
			e.mu.Lock()
			e.unhealthyKill = true
			e.mu.Unlock()
			e.Kill(ctx, d, task.GetTaskId(), nil)
		},
		Ended: func() bool {
			e.mu.Lock()
			defer e.mu.Unlock()
			return e.killing || e.terminal
		},
		Log: e.log,
	})
}

func (e *Executor) isUnhealthyKill() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.unhealthyKill
}

// wait waits for the container to exit, riding out a dockerd restart.
func (e *Executor) wait(ctx context.Context) (engine.Exit, error) {
	backoff := 500 * time.Millisecond
	var down time.Time
	for {
		x, err := e.eng.Wait(ctx, e.name)
		if err == nil || !engine.IsUnavailable(err) {
			return x, err
		}
		if down.IsZero() {
			down = time.Now()
			e.log.Warn("dockerd unreachable while waiting for the container; retrying", "error", err)
		}
		if time.Since(down) > 10*time.Minute {
			return x, err
		}
		select {
		case <-ctx.Done():
			return x, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

func pidOf(ins container.InspectResponse) int {
	if ins.State == nil {
		return 0
	}
	return ins.State.Pid
}

// containerStatus reports the container's addresses the way Mesos does:
// network_infos[].ip_addresses, with the port mappings dockerd made. A
// container on the host network reports the agent's address.
func (e *Executor) containerStatus(ins container.InspectResponse) *mesos.ContainerStatus {
	e.mu.Lock()
	cid := e.containerID
	e.mu.Unlock()
	cs := &mesos.ContainerStatus{ExecutorPid: proto.Uint32(uint32(os.Getpid()))}
	if cid != "" {
		cs.ContainerId = &mesos.ContainerID{Value: proto.String(cid)}
	}
	if ins.ContainerJSONBase == nil {
		return cs
	}
	v4, v6 := engine.IPAddresses(ins)
	ni := &mesos.NetworkInfo{}
	for _, ip := range v4 {
		ni.IpAddresses = append(ni.IpAddresses, &mesos.NetworkInfo_IPAddress{Protocol: mesos.NetworkInfo_IPv4.Enum(), IpAddress: proto.String(ip)})
	}
	for _, ip := range v6 {
		ni.IpAddresses = append(ni.IpAddresses, &mesos.NetworkInfo_IPAddress{Protocol: mesos.NetworkInfo_IPv6.Enum(), IpAddress: proto.String(ip)})
	}
	if ins.HostConfig != nil {
		mode := ins.HostConfig.NetworkMode
		switch {
		case mode.IsHost():
			if host, _, err := net.SplitHostPort(e.opts.Config.AgentEndpoint); err == nil {
				ni.IpAddresses = append(ni.IpAddresses, &mesos.NetworkInfo_IPAddress{Protocol: mesos.NetworkInfo_IPv4.Enum(), IpAddress: proto.String(host)})
			}
		case mode.IsUserDefined():
			ni.Name = proto.String(mode.UserDefined())
		}
	}
	if ins.NetworkSettings != nil {
		ports := make([]nat.Port, 0, len(ins.NetworkSettings.Ports))
		for p := range ins.NetworkSettings.Ports {
			ports = append(ports, p)
		}
		sort.Slice(ports, func(i, j int) bool { return ports[i] < ports[j] })
		for _, p := range ports {
			port, proto := uint32(p.Int()), p.Proto()
			for _, b := range ins.NetworkSettings.Ports[p] {
				hp, err := strconv.ParseUint(b.HostPort, 10, 32)
				if err != nil {
					continue
				}
				ni.PortMappings = append(ni.PortMappings, &mesos.NetworkInfo_PortMapping{HostPort: ptr(uint32(hp)), ContainerPort: ptr(port), Protocol: ptr(proto)})
			}
		}
	}
	cs.NetworkInfos = []*mesos.NetworkInfo{ni}
	return cs
}

func ptr[T any](v T) *T { return &v }

func (e *Executor) launchFailed(ctx context.Context, d *driver.Driver, msg string) {
	e.log.Error("launch failed", "error", msg)
	e.finish(ctx, d, mesos.TaskState_TASK_FAILED, mesos.TaskStatus_REASON_CONTAINER_LAUNCH_FAILED.Enum(), msg)
}

func (e *Executor) finish(ctx context.Context, d *driver.Driver, state mesos.TaskState, reason *mesos.TaskStatus_Reason, msg string) {
	st := &mesos.TaskStatus{State: state.Enum(), Reason: reason}
	if msg != "" {
		st.Message = proto.String(msg)
	}
	e.finishStatus(ctx, d, st)
}

// finishStatus sends the terminal update st (its task id filled in) once,
// and leaves when the agent has it.
func (e *Executor) finishStatus(ctx context.Context, d *driver.Driver, st *mesos.TaskStatus) {
	e.mu.Lock()
	if e.terminal {
		e.mu.Unlock()
		return
	}
	e.terminal = true
	st.TaskId = e.task.GetTaskId()
	e.mu.Unlock()
	if err := d.SendStatus(ctx, st); err != nil {
		e.log.Warn("send status update (kept for resend)", "state", st.GetState().String(), "error", err)
	}
	// Leave once the agent holds the terminal update; a lost ack must not
	// keep the executor alive for ever.
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		d.WaitAcknowledged(wctx)
		e.doneOnce.Do(func() { close(e.done) })
	}()
}

func (e *Executor) send(ctx context.Context, d *driver.Driver, id *mesos.TaskID, state mesos.TaskState, reason *mesos.TaskStatus_Reason, msg string, fill func(*mesos.TaskStatus)) {
	st := &mesos.TaskStatus{TaskId: id, State: state.Enum(), Reason: reason}
	if msg != "" {
		st.Message = proto.String(msg)
	}
	if fill != nil {
		fill(st)
	}
	if err := d.SendStatus(ctx, st); err != nil {
		e.log.Warn("send status update (kept for resend)", "state", state.String(), "error", err)
	}
}

// defaultGrace is the grace period of a kill that names none.
func (e *Executor) defaultGrace() time.Duration {
	if e.opts.StopTimeout > 0 {
		return e.opts.StopTimeout
	}
	return DefaultGracePeriod
}

// Kill implements driver.Handler.
func (e *Executor) Kill(ctx context.Context, d *driver.Driver, taskID *mesos.TaskID, policy *mesos.KillPolicy) {
	e.mu.Lock()
	if e.task == nil || e.task.GetTaskId().GetValue() != taskID.GetValue() {
		e.mu.Unlock()
		e.log.Warn("kill for an unknown task ignored", "task_id", taskID.GetValue())
		return
	}
	if e.killing || e.terminal {
		e.mu.Unlock()
		return
	}
	e.killing = true
	grace := e.defaultGrace()
	if p := e.task.GetKillPolicy().GetGracePeriod(); p != nil {
		grace = time.Duration(p.GetNanoseconds())
	}
	if p := policy.GetGracePeriod(); p != nil {
		grace = time.Duration(p.GetNanoseconds())
	}
	e.killGrace = grace
	started := e.started
	e.mu.Unlock()
	if d.FrameworkInfo().HasCapability(mesos.FrameworkInfo_Capability_TASK_KILLING_STATE) {
		e.send(ctx, d, taskID, mesos.TaskState_TASK_KILLING, nil, "", nil)
	}
	e.log.Info("killing container", "task_id", taskID.GetValue(), "grace_period", grace)
	if started {
		go e.stop(grace)
	}
}

// stop stops the container: its stop signal, then SIGKILL after grace.
func (e *Executor) stop(grace time.Duration) {
	ctx, cancel := context.WithTimeout(e.runCtx, grace+time.Minute)
	defer cancel()
	if err := e.eng.Stop(ctx, e.name, e.stopSignal(ctx), grace); err != nil && !errors.Is(err, context.Canceled) {
		e.log.Warn("stop container", "error", err)
	}
}

// stopSignal is the image's or task's STOPSIGNAL, SIGTERM by default.
func (e *Executor) stopSignal(ctx context.Context) string {
	ins, err := e.eng.Inspect(ctx, e.name)
	if err == nil && ins.Config != nil && ins.Config.StopSignal != "" {
		return ins.Config.StopSignal
	}
	return "SIGTERM"
}

// LaunchGroup implements driver.Handler: task groups need the default
// executor, which this is not.
func (e *Executor) LaunchGroup(ctx context.Context, d *driver.Driver, g *mesos.TaskGroupInfo) {
	for _, t := range g.GetTasks() {
		e.send(ctx, d, t.GetTaskId(), mesos.TaskState_TASK_FAILED, nil, "the docker executor does not run task groups", nil)
	}
}

// Acknowledged implements driver.Handler.
func (e *Executor) Acknowledged(ctx context.Context, d *driver.Driver, id *mesos.TaskID, uuid []byte) {
}

// Message implements driver.Handler.
func (e *Executor) Message(ctx context.Context, d *driver.Driver, data []byte) {
	e.log.Info("framework message", "bytes", len(data))
}

// Shutdown implements driver.Handler: the task is killed with the
// executor shutdown grace period.
func (e *Executor) Shutdown(ctx context.Context, d *driver.Driver) {
	e.mu.Lock()
	task := e.task
	e.mu.Unlock()
	if task == nil {
		e.doneOnce.Do(func() { close(e.done) })
		return
	}
	grace := e.opts.Config.ShutdownGracePeriod
	e.Kill(ctx, d, task.GetTaskId(), &mesos.KillPolicy{GracePeriod: &mesos.DurationInfo{Nanoseconds: proto.Int64(int64(grace))}})
}

// Error implements driver.Handler.
func (e *Executor) Error(ctx context.Context, d *driver.Driver, message string) {
	e.log.Error("agent reported an error", "message", message)
}
