package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/executor"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/containerizer"
	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/internal/duration"
	"github.com/mesolite/mesolite/internal/tlsconfig"
	"github.com/mesolite/mesolite/isolation"
	"github.com/mesolite/mesolite/resources"
	"github.com/mesolite/mesolite/sandbox"
	"google.golang.org/protobuf/proto"
)

// EnvLoggerMaxSize and EnvLoggerMaxFiles tell built-in executors how to
// rotate the task's stdout and stderr.
const (
	EnvLoggerMaxSize  = "MESOLITE_CONTAINER_LOGGER_MAX_SIZE"
	EnvLoggerMaxFiles = "MESOLITE_CONTAINER_LOGGER_MAX_FILES"
	// EnvContainerID tags every process of a container with its id, so
	// that an agent that crashed before it recorded a new container's
	// handle can still find (and end) what it started.
	EnvContainerID = "MESOLITE_CONTAINER_ID"
)

// runTask handles RUN_TASK: it finds or creates the task's executor and
// either hands the task to a subscribed executor or queues it.
func (a *Agent) runTask(ctx context.Context, fi *mesos.FrameworkInfo, task *mesos.TaskInfo) {
	fwID := fi.GetId().GetValue()
	taskID := task.GetTaskId().GetValue()
	log := a.log.With("framework_id", fwID, "task_id", taskID)
	ex, isCommand, err := a.executorFor(task)
	if err != nil {
		a.agentUpdate(ctx, fwID, task, mesos.TaskState_TASK_ERROR, mesos.TaskStatus_REASON_TASK_INVALID, err.Error(), nil)
		return
	}
	a.mu.Lock()
	if a.agentID == "" {
		a.mu.Unlock()
		log.Error("task arrived before registration; dropped")
		return
	}
	fw := a.frameworks[fwID]
	if fw == nil {
		fw = &framework{info: fi, executors: map[string]*executorState{}}
		a.frameworks[fwID] = fw
		// framework.info is written by launchExecutor (a new framework
		// has no executor yet), outside the lock.
	} else {
		fw.info = fi
	}
	if a.findTaskLocked(fwID, taskID) != nil {
		a.mu.Unlock()
		a.agentUpdate(ctx, fwID, task, mesos.TaskState_TASK_ERROR, mesos.TaskStatus_REASON_TASK_INVALID, "a task with id "+taskID+" already runs on this agent", nil)
		return
	}
	ts := &taskState{info: task, state: mesos.TaskState_TASK_STAGING}
	exID := ex.GetExecutorId().GetValue()
	es := fw.executors[exID]
	if es != nil && es.phase >= phaseKilling {
		a.mu.Unlock()
		a.agentUpdate(ctx, fwID, task, mesos.TaskState_TASK_LOST, mesos.TaskStatus_REASON_EXECUTOR_TERMINATED, "executor "+exID+" is shutting down", nil)
		return
	}
	if es != nil {
		taskPath := filepath.Join(a.meta.task(a.agentID, es.frameworkID, exID, es.containerID, taskID), "task.info")
		es.resources = append(es.resources, task.GetResources()...)
		if es.conn != nil {
			es.launched[taskID] = ts
			conn := es.conn
			res := append([]*mesos.Resource(nil), es.resources...)
			cid := es.containerID
			a.mu.Unlock()
			// Durable before the executor has the task, so that a
			// restarted agent knows it; no file I/O under the lock.
			a.checkpointTask(taskPath, task)
			if err := a.cz.Update(ctx, cid, res); err != nil {
				log.Warn("update container limits", "error", err)
			}
			if !conn.send(&executor.Event{Type: executor.Event_LAUNCH.Enum(), Launch: &executor.Event_Launch{Task: task}}) {
				// The executor went away (or stopped reading): it gets the
				// task when it subscribes again.
				a.mu.Lock()
				if es.launched[taskID] == ts {
					delete(es.launched, taskID)
					es.queued[taskID] = ts
				}
				a.mu.Unlock()
			}
			return
		}
		es.queued[taskID] = ts
		a.mu.Unlock()
		a.checkpointTask(taskPath, task)
		return
	}
	es = newExecutorState(ex, fwID, uuidString(newUUID()), phaseLaunching)
	es.commandTask = isCommand
	es.queued[taskID] = ts
	es.resources = append(append([]*mesos.Resource(nil), ex.GetResources()...), task.GetResources()...)
	es.checkpointed = make(chan struct{})
	es.started = make(chan struct{})
	fw.executors[exID] = es
	a.mu.Unlock()
	// The executor's and the task's checkpoints are written by
	// launchExecutor, before anything is launched.
	a.spawn(func() { a.launchExecutor(ctx, es, []*mesos.TaskInfo{task}, fi) })
}

// executorFor returns the task's executor, synthesizing the command
// executor for a command task the way Mesos does (executor id = task id).
func (a *Agent) executorFor(task *mesos.TaskInfo) (*mesos.ExecutorInfo, bool, error) {
	hasCmd, hasEx := task.GetCommand() != nil, task.GetExecutor() != nil
	switch {
	case hasCmd && hasEx:
		return nil, false, fmt.Errorf("task %s has both a command and an executor: %w", task.GetTaskId().GetValue(), errdefs.ErrInvalid)
	case !hasCmd && !hasEx:
		return nil, false, fmt.Errorf("task %s has neither a command nor an executor: %w", task.GetTaskId().GetValue(), errdefs.ErrInvalid)
	case hasEx:
		return task.GetExecutor(), false, nil
	}
	name := "Command Executor (Task: " + task.GetTaskId().GetValue() + ") (Command: " + describeCommand(task.GetCommand()) + ")"
	ex := &mesos.ExecutorInfo{
		Type:       mesos.ExecutorInfo_DEFAULT.Enum(),
		ExecutorId: &mesos.ExecutorID{Value: proto.String(task.GetTaskId().GetValue())},
		Name:       proto.String(name),
		Source:     proto.String(task.GetTaskId().GetValue()),
		Command: &mesos.CommandInfo{
			Shell:     proto.Bool(false),
			Value:     proto.String(a.cfg.Self),
			Arguments: []string{a.cfg.Self, "executor", "command"},
		},
		Container: task.GetContainer(),
		Labels:    task.GetLabels(),
		// Mesos gives the command executor a small allowance on top of the task.
		Resources: []*mesos.Resource{
			{Name: proto.String("cpus"), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(0.1)}},
			{Name: proto.String("mem"), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(32)}},
		},
	}
	return ex, true, nil
}

func describeCommand(c *mesos.CommandInfo) string {
	if c.Shell == nil || c.GetShell() {
		return "sh -c '" + c.GetValue() + "'"
	}
	return "[" + strings.Join(append([]string{c.GetValue()}, c.GetArguments()...), ", ") + "]"
}

// checkpointFrameworkInfo writes a framework's framework.info unless it
// holds these very bytes already. The caller holds metaMu shared.
func (a *Agent) checkpointFrameworkInfo(agentID, fwID string, fi *mesos.FrameworkInfo) error {
	path := filepath.Join(a.meta.framework(agentID, fwID), "framework.info")
	b, err := codec.JSON.Marshal(fi)
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", path, err)
	}
	key := agentID + "/" + fwID
	a.fwInfoMu.Lock()
	same := bytes.Equal(a.fwInfoWritten[key], b)
	a.fwInfoMu.Unlock()
	if same {
		return nil
	}
	if err := writeFileAtomic(path, b); err != nil {
		return err
	}
	a.fwInfoMu.Lock()
	a.fwInfoWritten[key] = b
	a.fwInfoMu.Unlock()
	return nil
}

// removeFrameworkCheckpoints removes the checkpoint directory of a
// framework with no executor left, unless a launch brought the framework
// back meanwhile (its checkpoints are being written there).
func (a *Agent) removeFrameworkCheckpoints(fwID string) {
	a.metaMu.Lock()
	defer a.metaMu.Unlock()
	a.mu.Lock()
	back, agentID := a.frameworks[fwID] != nil, a.agentID
	a.mu.Unlock()
	if back {
		return
	}
	a.fwInfoMu.Lock()
	delete(a.fwInfoWritten, agentID+"/"+fwID)
	a.fwInfoMu.Unlock()
	if err := os.RemoveAll(a.meta.framework(agentID, fwID)); err != nil {
		a.log.Warn("remove checkpoints", "framework_id", fwID, "error", err)
	}
}

func (a *Agent) checkpointTask(path string, task *mesos.TaskInfo) {
	if err := checkpointProto(path, task); err != nil {
		a.log.Error("checkpoint task", "task_id", task.GetTaskId().GetValue(), "error", err)
	}
}

func (a *Agent) findTaskLocked(fwID, taskID string) *taskState {
	fw := a.frameworks[fwID]
	if fw == nil {
		return nil
	}
	for _, es := range fw.executors {
		for _, m := range []map[string]*taskState{es.queued, es.launched, es.terminal} {
			if ts := m[taskID]; ts != nil {
				return ts
			}
		}
	}
	return nil
}

func (a *Agent) executorOfTaskLocked(fwID, taskID string) *executorState {
	fw := a.frameworks[fwID]
	if fw == nil {
		return nil
	}
	for _, es := range fw.executors {
		if es.queued[taskID] != nil || es.launched[taskID] != nil || es.terminal[taskID] != nil {
			return es
		}
	}
	return nil
}

// launchExecutor creates the sandbox, fetches URIs and starts the
// container for the tasks that made it (one, or a task group). The
// registration timeout starts only once Launch returned, so slow pulls and
// fetches cannot time executors out.
func (a *Agent) launchExecutor(ctx context.Context, es *executorState, tasks []*mesos.TaskInfo, fi *mesos.FrameworkInfo) {
	if es.started != nil {
		defer close(es.started)
	}
	firstTask := tasks[0]
	// es.ctx ends when the launch is called off (a kill, a shutdown): the
	// fetch, the pull and the start observe it. Updates and the
	// bookkeeping after use ctx, which does not end with them.
	ctx = context.WithoutCancel(ctx)
	launchCtx := es.ctx
	a.mu.Lock()
	agentID := a.agentID
	a.mu.Unlock()
	exID := es.info.GetExecutorId().GetValue()
	log := a.log.With("framework_id", es.frameworkID, "executor_id", exID, "container_id", es.containerID)
	runID := sandbox.RunID{AgentID: agentID, FrameworkID: es.frameworkID, ExecutorID: exID, ContainerID: es.containerID}
	// Checkpoints first, so a restarted agent knows of any container it
	// may have started. They and the sandbox are separate files, each a
	// few directory and file creations (a millisecond or more on a VM's
	// disk), so they are made side by side, outside the agent's lock.
	var wg sync.WaitGroup
	a.metaMu.RLock()
	wg.Go(func() {
		// The framework's info as of its newest launch.
		if err := a.checkpointFrameworkInfo(agentID, es.frameworkID, fi); err != nil {
			log.Error("checkpoint framework", "error", err)
		}
	})
	wg.Go(func() {
		if err := checkpointProto(filepath.Join(a.meta.executor(agentID, es.frameworkID, exID), "executor.info"), es.info); err != nil {
			log.Error("checkpoint executor", "error", err)
		}
	})
	for _, t := range tasks {
		taskDir := a.meta.task(agentID, es.frameworkID, exID, es.containerID, t.GetTaskId().GetValue())
		wg.Go(func() {
			if err := checkpointProto(filepath.Join(taskDir, "task.info"), t); err != nil {
				log.Error("checkpoint task", "task_id", t.GetTaskId().GetValue(), "error", err)
			}
		})
	}
	dir, err := a.layout.CreateRun(runID)
	wg.Wait()
	a.metaMu.RUnlock()
	close(es.checkpointed)
	if err != nil {
		a.failLaunch(ctx, es, mesos.TaskStatus_REASON_CONTAINER_LAUNCH_FAILED, "Failed to create sandbox: "+err.Error())
		return
	}
	a.mu.Lock()
	es.directory = dir
	a.mu.Unlock()
	if fh := a.filesHandler(); fh != nil {
		fh.Attach(runID)
	}
	runAs := a.taskUser(es, firstTask, fi)
	if err := a.checkRootTask(es, runAs); err != nil {
		a.failLaunch(ctx, es, mesos.TaskStatus_REASON_CONTAINER_LAUNCH_FAILED, "Failed to launch container: "+err.Error())
		return
	}
	if runAs != "" {
		// The user must exist before anything runs as it; the sandbox is
		// then the user's, so the task (and the fetch, and the executor)
		// write there as it and never as root.
		u, err := isolation.LookupUser(runAs)
		if err != nil {
			a.failLaunch(ctx, es, mesos.TaskStatus_REASON_CONTAINER_LAUNCH_FAILED, "Failed to launch container: "+err.Error())
			return
		}
		if err := chownSandbox(dir, u); err != nil {
			a.failLaunch(ctx, es, mesos.TaskStatus_REASON_CONTAINER_LAUNCH_FAILED, "Failed to hand the sandbox to user "+runAs+": "+err.Error())
			return
		}
	}

	uris := es.info.GetCommand().GetUris()
	if es.commandTask {
		uris = firstTask.GetCommand().GetUris()
	}
	if len(uris) > 0 {
		if a.cfg.Fetch == nil {
			a.failLaunch(ctx, es, mesos.TaskStatus_REASON_CONTAINER_LAUNCH_FAILED, "Failed to fetch URIs: this agent has no fetcher")
			return
		}
		a.sendStarting(ctx, es, fmt.Sprintf("Fetching %d URI(s)", len(uris)))
		a.mu.Lock()
		disk := diskBytes(es.resources)
		a.mu.Unlock()
		req := FetchRequest{URIs: uris, Dir: dir, User: runAs, MaxBytes: disk,
			Progress: func(msg string) { a.sendStarting(ctx, es, msg) }}
		if err := a.cfg.Fetch(launchCtx, req); err != nil {
			a.metricsInc(func(m *agentMetrics) { m.fetchFailed++ })
			a.failLaunch(ctx, es, mesos.TaskStatus_REASON_CONTAINER_LAUNCH_FAILED, "Failed to fetch URIs: "+err.Error())
			return
		}
		a.metricsInc(func(m *agentMetrics) { m.fetchOK++ })
	}

	// es.resources shrinks as tasks end (a kill may come now): read it
	// under the lock.
	a.mu.Lock()
	launchRes := append([]*mesos.Resource(nil), es.resources...)
	a.mu.Unlock()
	spec := containerizer.LaunchSpec{
		ContainerID: es.containerID,
		Executor:    a.launchSpecExecutor(es),
		Framework:   fi,
		SandboxDir:  dir,
		Env:         a.executorEnv(es, dir, fi),
		Resources:   launchRes,
		StdoutPath:  filepath.Join(dir, "stdout"),
		StderrPath:  filepath.Join(dir, "stderr"),
		User:        runAs,
		Progress:    func(msg string) { a.sendStarting(ctx, es, msg) },
	}
	if es.commandTask {
		spec.Task = firstTask
	}
	handle, err := a.cz.Launch(launchCtx, spec)
	if err != nil {
		reason := mesos.TaskStatus_REASON_CONTAINER_LAUNCH_FAILED
		state := mesos.TaskState_TASK_FAILED
		if errors.Is(err, errdefs.ErrInvalid) {
			state, reason = mesos.TaskState_TASK_ERROR, mesos.TaskStatus_REASON_TASK_INVALID
		}
		log.Warn("container launch failed", "error", err)
		a.metricsInc(func(m *agentMetrics) { m.launchErrors++ })
		a.failLaunchState(ctx, es, state, reason, "Failed to launch container: "+err.Error())
		return
	}
	a.mu.Lock()
	es.handle = &handle
	if es.phase == phaseKilling {
		// Killed while the container started: nothing may keep running.
		a.mu.Unlock()
		log.Info("launch called off by a kill; destroying the new container")
		a.spawn(func() { a.awaitContainer(es) })
		a.destroy(es)
		return
	}
	// An executor that subscribed before Launch returned is running
	// already, and needs no registration timer.
	registering := a.setPhaseLocked(es, phaseRegistering)
	if err := writeJSONAtomic(filepath.Join(a.meta.run(agentID, es.frameworkID, exID, es.containerID), "handle.json"), handle); err != nil {
		log.Error("checkpoint container handle", "error", err)
	}
	if registering {
		timeout := a.cfg.ExecutorRegistrationTimeout
		es.regTimer = time.AfterFunc(timeout, func() { a.registrationTimedOut(es, timeout) })
	}
	a.mu.Unlock()
	a.metricsInc(func(m *agentMetrics) { m.containersLaunched++ })
	log.Info("executor launched", "pid", handle.Pid, "containerizer", handle.Containerizer)
	a.spawn(func() { a.awaitContainer(es) })
}

// diskBytes is the disk the resources declare, in bytes (Mesos counts
// disk in MB); 0 when none is declared.
func diskBytes(res []*mesos.Resource) int64 {
	return int64(scalarOf(res, "disk") * 1024 * 1024)
}

// taskUser is who the executor and its tasks run as (Mesos's
// --switch_user): the command's user, else the framework's. Empty when the
// agent does not switch (the flag is off, or it is not root) or the user
// is root already.
func (a *Agent) taskUser(es *executorState, firstTask *mesos.TaskInfo, fi *mesos.FrameworkInfo) string {
	if !a.cfg.SwitchUser || os.Geteuid() != 0 {
		return ""
	}
	name := es.info.GetCommand().GetUser()
	if es.commandTask {
		name = firstTask.GetCommand().GetUser()
	}
	if name == "" {
		name = fi.GetUser()
	}
	if u, err := isolation.LookupUser(name); name == "root" || (err == nil && u.UID == 0) {
		return ""
	}
	return name
}

// checkRootTask refuses, with --allow_root_tasks=false, an executor that
// would run as root on the host: the agent is root and the task names
// root (or a user of uid 0), or names no user to switch to. Docker tasks
// run as their image's user in their own namespaces and are left to the
// docker policy.
func (a *Agent) checkRootTask(es *executorState, runAs string) error {
	if !a.cfg.RefuseRootTasks || os.Geteuid() != 0 || runAs != "" || (es.info.GetContainer() != nil && es.info.GetContainer().GetType() == mesos.ContainerInfo_DOCKER) {
		return nil
	}
	return fmt.Errorf("tasks may not run as root on this agent (its --allow_root_tasks is false): name a user in CommandInfo.user or FrameworkInfo.user: %w", errdefs.ErrForbidden)
}

// chownSandbox hands the new sandbox and the logs the agent created in it
// to u. Nothing in it is the task's yet, so there is nothing to follow.
func chownSandbox(dir string, u *isolation.User) error {
	for _, p := range []string{dir, filepath.Join(dir, sandbox.StdoutFile), filepath.Join(dir, sandbox.StderrFile)} {
		if err := os.Lchown(p, int(u.UID), int(u.GID)); err != nil {
			return err
		}
	}
	return nil
}

// sendStarting reports pre-start progress (fetch, pull) on every queued
// task as TASK_STARTING with a message.
func (a *Agent) sendStarting(ctx context.Context, es *executorState, msg string) {
	a.mu.Lock()
	var tasks []*taskState
	for _, ts := range es.queued {
		tasks = append(tasks, ts)
	}
	a.mu.Unlock()
	for _, ts := range tasks {
		a.agentUpdate(ctx, es.frameworkID, ts.info, mesos.TaskState_TASK_STARTING, 0, msg, nil)
	}
}

func (a *Agent) failLaunch(ctx context.Context, es *executorState, reason mesos.TaskStatus_Reason, msg string) {
	a.failLaunchState(ctx, es, mesos.TaskState_TASK_FAILED, reason, msg)
}

func (a *Agent) failLaunchState(ctx context.Context, es *executorState, state mesos.TaskState, reason mesos.TaskStatus_Reason, msg string) {
	a.executorTerminated(ctx, es, &containerizer.Termination{ExitStatus: -1, Reason: reason, Message: msg, Limitation: true}, state)
}

func (a *Agent) registrationTimedOut(es *executorState, timeout time.Duration) {
	a.mu.Lock()
	if es.phase != phaseRegistering {
		a.mu.Unlock()
		return
	}
	es.cause = causeRegistrationTimeout
	a.setPhaseLocked(es, phaseKilling)
	a.mu.Unlock()
	a.log.Warn("executor did not subscribe in time; destroying its container", "executor_id", es.info.GetExecutorId().GetValue(), "timeout", timeout)
	a.destroy(es)
}

// awaitContainer waits for es's container to end and reports it. When the
// agent stops first, it returns without a word: the container outlives the
// agent, and the next run recovers it.
func (a *Agent) awaitContainer(es *executorState) {
	ctx := a.runCtx()
	term, err := a.cz.Wait(ctx, es.containerID)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		term = containerizer.Termination{ExitStatus: -1, Message: "lost track of the container: " + err.Error()}
	}
	// Commands entered into it go with it, whatever their isolation.
	a.endSessionsOf(es.containerID)
	a.executorTerminated(context.WithoutCancel(ctx), es, &term, mesos.TaskState_TASK_FAILED)
}

// executorTerminated fails every non-terminal task of an executor whose
// container ended, tells the master, and schedules the sandbox for GC.
func (a *Agent) executorTerminated(ctx context.Context, es *executorState, term *containerizer.Termination, state mesos.TaskState) {
	a.mu.Lock()
	if !a.setPhaseLocked(es, phaseTerminated) {
		a.mu.Unlock()
		return
	}
	es.endedAt = time.Now()
	if es.regTimer != nil {
		es.regTimer.Stop()
	}
	if es.conn != nil {
		es.conn.close()
	}
	reason, msg := term.Reason, term.Message
	switch {
	case es.cause == causeAgentRestarted:
		reason = mesos.TaskStatus_REASON_AGENT_RESTARTED
		msg = "The agent restarted and the framework does not checkpoint (FrameworkInfo.checkpoint is false)"
		state = mesos.TaskState_TASK_LOST
	case term.Limitation:
	case es.cause == causeRegistrationTimeout:
		reason = mesos.TaskStatus_REASON_EXECUTOR_REGISTRATION_TIMEOUT
		msg = "Executor did not register within " + duration.Format(a.cfg.ExecutorRegistrationTimeout)
	case es.cause == causeReregistrationTimeout:
		reason = mesos.TaskStatus_REASON_EXECUTOR_REREGISTRATION_TIMEOUT
		msg = "Executor did not reregister within " + duration.Format(a.cfg.RecoveryTimeout) + " of the agent's restart"
	case es.commandTask:
		reason = mesos.TaskStatus_REASON_COMMAND_EXECUTOR_FAILED
		msg = "Command executor terminated" + exitSuffix(term.ExitStatus)
	default:
		reason = mesos.TaskStatus_REASON_EXECUTOR_TERMINATED
		msg = "Executor terminated" + exitSuffix(term.ExitStatus)
	}
	type pend struct {
		ts    *taskState
		state mesos.TaskState
	}
	var fails []pend
	for _, m := range []map[string]*taskState{es.queued, es.launched} {
		for _, ts := range m {
			st := state
			if ts.killRequested || es.cause == causeKilled {
				st = mesos.TaskState_TASK_KILLED
			}
			fails = append(fails, pend{ts, st})
		}
	}
	exID := es.info.GetExecutorId().GetValue()
	runDir := a.meta.run(a.agentID, es.frameworkID, exID, es.containerID)
	dir := es.directory
	a.mu.Unlock()

	_ = writeFileAtomic(filepath.Join(runDir, "terminated"), []byte(time.Now().UTC().Format(time.RFC3339)))
	for _, p := range fails {
		a.agentUpdate(ctx, es.frameworkID, p.ts.info, p.state, reason, msg, nil)
	}
	a.destroy(es)
	a.master.executorExited(ctx, es.frameworkID, exID, term.ExitStatus)
	if a.cfg.GC != nil && dir != "" {
		if err := a.cfg.GC.Schedule(dir, es.endedAt); err != nil {
			a.log.Warn("schedule sandbox for collection", "directory", dir, "error", err)
		}
	}
	a.log.Info("executor terminated", "framework_id", es.frameworkID, "executor_id", exID, "container_id", es.containerID, "message", msg)
	a.maybeForgetExecutor(es)
}

func exitSuffix(status int) string {
	if status < 0 {
		return ""
	}
	return fmt.Sprintf(" (wait status %d)", status)
}

// maxCompletedFrameworks is how many ended frameworks /state keeps (a
// constant in Mesos's agent too).
const maxCompletedFrameworks = 50

// maybeForgetExecutor moves an executor to the completed list once it is
// terminated and every task's terminal update has been acknowledged (or
// its framework is gone), and removes its checkpoints.
func (a *Agent) maybeForgetExecutor(es *executorState) {
	a.mu.Lock()
	if es.live() || len(es.queued)+len(es.launched)+len(es.terminal) > 0 {
		a.mu.Unlock()
		return
	}
	fw := a.frameworks[es.frameworkID]
	exID := es.info.GetExecutorId().GetValue()
	if fw == nil || fw.executors[exID] != es {
		a.mu.Unlock()
		return
	}
	delete(fw.executors, exID)
	fw.completed = append(fw.completed, es)
	if n := a.cfg.MaxCompletedExecutorsPerFramework; len(fw.completed) > n {
		fw.completed = fw.completed[len(fw.completed)-n:]
	}
	var tasks []string
	for _, ts := range es.finished {
		tasks = append(tasks, ts.info.GetTaskId().GetValue())
	}
	// Checkpoints of a finished executor are no longer needed for recovery.
	runDir := a.meta.run(a.agentID, es.frameworkID, exID, es.containerID)
	last := len(fw.executors) == 0
	if last {
		delete(a.frameworks, es.frameworkID)
		a.completed = append(a.completed, fw)
		if len(a.completed) > maxCompletedFrameworks {
			a.completed = a.completed[len(a.completed)-maxCompletedFrameworks:]
		}
	}
	a.mu.Unlock()
	for _, t := range tasks {
		a.sum.DropTask(es.frameworkID, t)
	}
	// No file I/O under the agent's lock.
	if err := os.RemoveAll(runDir); err != nil {
		a.log.Warn("remove checkpoints", "path", runDir, "error", err)
	}
	if last {
		a.removeFrameworkCheckpoints(es.frameworkID)
	}
}

// trimFinishedLocked keeps the newest --max_completed_tasks_per_executor
// finished tasks of es and returns the ids it let go, whose update streams
// the caller drops (outside the lock).
func (a *Agent) trimFinishedLocked(es *executorState) []string {
	n := a.cfg.MaxCompletedTasksPerExecutor
	if len(es.finished) <= n {
		return nil
	}
	var out []string
	for _, ts := range es.finished[:len(es.finished)-n] {
		out = append(out, ts.info.GetTaskId().GetValue())
	}
	es.finished = append([]*taskState(nil), es.finished[len(es.finished)-n:]...)
	return out
}

// terminalAcked is called when a task's terminal update was acknowledged.
func (a *Agent) terminalAcked(fwID, taskID string) {
	a.mu.Lock()
	es := a.executorOfTaskLocked(fwID, taskID)
	if es == nil {
		a.mu.Unlock()
		return
	}
	var trimmed []string
	if ts := es.terminal[taskID]; ts != nil {
		delete(es.terminal, taskID)
		es.finished = append(es.finished, ts)
		trimmed = a.trimFinishedLocked(es)
	}
	a.mu.Unlock()
	for _, t := range trimmed {
		a.sum.DropTask(fwID, t)
	}
	a.maybeForgetExecutor(es)
}

// agentUpdate generates a status update on the agent's behalf (source
// SOURCE_AGENT) and feeds it to the status update manager.
func (a *Agent) agentUpdate(ctx context.Context, fwID string, task *mesos.TaskInfo, state mesos.TaskState, reason mesos.TaskStatus_Reason, msg string, cs *mesos.ContainerStatus) {
	st := &mesos.TaskStatus{
		TaskId:          task.GetTaskId(),
		State:           state.Enum(),
		Source:          mesos.TaskStatus_SOURCE_AGENT.Enum(),
		Uuid:            newUUID(),
		Timestamp:       proto.Float64(float64(time.Now().UnixNano()) / 1e9),
		ContainerStatus: cs,
	}
	if msg != "" {
		st.Message = proto.String(msg)
	}
	if state != mesos.TaskState_TASK_STARTING || reason != 0 {
		if reason != 0 || state == mesos.TaskState_TASK_FAILED {
			st.Reason = reason.Enum()
		}
	}
	a.mu.Lock()
	if es := a.executorOfTaskLocked(fwID, task.GetTaskId().GetValue()); es != nil {
		st.ExecutorId = es.info.GetExecutorId()
	}
	a.mu.Unlock()
	if _, err := a.handleUpdate(ctx, fwID, st); err != nil {
		// An update the agent made (a task failed, lost, killed) must not
		// vanish because a checkpoint failed (a full disk): it is retried
		// until it can be checkpointed, and said so loudly meanwhile.
		a.log.Error("cannot checkpoint a status update; retrying", "framework_id", fwID, "task_id", task.GetTaskId().GetValue(), "state", state.String(), "error", err)
		a.spawn(func() { a.retryUpdate(fwID, st) })
	}
}

// retryUpdate checkpoints and sends st until it succeeds or the agent
// stops (the next run then reports the task from its recovered state).
func (a *Agent) retryUpdate(fwID string, st *mesos.TaskStatus) {
	ctx := a.runCtx()
	backoff := time.Second
	for attempt := 2; ; attempt++ {
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		if _, err := a.handleUpdate(ctx, fwID, st); err == nil {
			a.log.Info("status update checkpointed after retries", "framework_id", fwID, "task_id", st.GetTaskId().GetValue(), "attempts", attempt)
			return
		} else {
			a.log.Error("cannot checkpoint a status update; retrying", "framework_id", fwID, "task_id", st.GetTaskId().GetValue(), "attempt", attempt, "error", err)
		}
		backoff = min(backoff*2, time.Minute)
	}
}

// handleUpdate records a status update from an executor or the agent:
// fills agent id and timestamp, moves the task between sets, checkpoints
// and forwards it. It returns false for a duplicate.
func (a *Agent) handleUpdate(ctx context.Context, fwID string, st *mesos.TaskStatus) (bool, error) {
	a.mu.Lock()
	if _, gone := a.gone[fwID]; gone {
		// The framework was removed: its tasks end, but nobody is left to
		// tell. The task still moves to terminal so its executor can be
		// forgotten.
		if es := a.executorOfTaskLocked(fwID, st.GetTaskId().GetValue()); es != nil && mesos.IsTerminal(st.GetState()) {
			taskID := st.GetTaskId().GetValue()
			for _, m := range []map[string]*taskState{es.queued, es.launched, es.terminal} {
				if ts := m[taskID]; ts != nil {
					delete(m, taskID)
					ts.state = st.GetState()
					ts.statuses = append(ts.statuses, st)
					es.finished = append(es.finished, ts)
					a.trimFinishedLocked(es) // a gone framework has no streams
				}
			}
		}
		a.mu.Unlock()
		return false, nil
	}
	if es := a.executorOfTaskLocked(fwID, st.GetTaskId().GetValue()); es != nil && es.checkpointed != nil {
		ready := es.checkpointed
		a.mu.Unlock()
		<-ready
		a.mu.Lock()
	}
	if st.AgentId == nil && a.agentID != "" {
		st.AgentId = &mesos.AgentID{Value: proto.String(a.agentID)}
	}
	if st.Timestamp == nil {
		st.Timestamp = proto.Float64(float64(time.Now().UnixNano()) / 1e9)
	}
	taskID := st.GetTaskId().GetValue()
	es := a.executorOfTaskLocked(fwID, taskID)
	var path string
	var freed bool
	var res []*mesos.Resource
	var cid string
	if es != nil {
		ts := es.queued[taskID]
		if ts == nil {
			ts = es.launched[taskID]
		}
		if ts == nil {
			ts = es.terminal[taskID]
		}
		if ts != nil && !mesos.IsTerminal(ts.state) {
			ts.state = st.GetState()
			ts.statuses = append(ts.statuses, st)
			if len(ts.statuses) > 50 {
				ts.statuses = ts.statuses[len(ts.statuses)-50:]
			}
			if mesos.IsTerminal(st.GetState()) {
				delete(es.queued, taskID)
				delete(es.launched, taskID)
				es.terminal[taskID] = ts
				es.resources = subtractResources(es.resources, ts.info.GetResources())
				freed, res, cid = true, append([]*mesos.Resource(nil), es.resources...), es.containerID
			}
		}
		path = filepath.Join(a.meta.task(a.agentID, fwID, es.info.GetExecutorId().GetValue(), es.containerID, taskID), "task.updates")
	} else {
		// An update for a task the agent no longer tracks (a kill of an
		// unknown task): keep its stream beside the framework.
		path = filepath.Join(a.meta.framework(a.agentID, fwID), "orphan-tasks", taskID, "task.updates")
	}
	a.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, fmt.Errorf("checkpoint update: %w", err)
	}
	dup, err := a.sum.Update(ctx, fwID, st, path)
	if err != nil {
		return false, err
	}
	if !dup {
		a.metricsInc(func(m *agentMetrics) { m.updates[st.GetState()]++ })
	}
	if freed && len(res) > 0 && !dup {
		if err := a.cz.Update(ctx, cid, res); err != nil && !errors.Is(err, containerizer.ErrUnknownContainer) {
			a.log.Debug("shrink container limits", "container_id", cid, "error", err)
		}
	}
	return !dup, nil
}

// subtractResources is what is left of an executor's resources a once a
// task's resources b are gone. It is exact: a task's ports leave the rest
// of the port range, its set items the rest of the set, and reservations
// stay apart. The result keeps the allocation role a's resources carry (a
// MULTI_ROLE framework's executor has one). Resources that do not parse,
// which the master never sends, are kept as they are: a container keeps
// its limits rather than lose them.
func subtractResources(a, b []*mesos.Resource) []*mesos.Resource {
	have, err := resources.FromProto(a)
	if err != nil {
		return slices.Clone(a)
	}
	gone, err := resources.FromProto(b)
	if err != nil {
		return slices.Clone(a)
	}
	role := ""
	if roles, _ := resources.AllocationRoles(a); len(roles) == 1 {
		role = roles[0]
	}
	return have.Subtract(gone).ToProto(role)
}

// killTask handles KILL_TASK from the master.
func (a *Agent) killTask(ctx context.Context, fwID string, taskID *mesos.TaskID, policy *mesos.KillPolicy) {
	a.mu.Lock()
	es := a.executorOfTaskLocked(fwID, taskID.GetValue())
	if es == nil {
		a.mu.Unlock()
		a.agentUpdate(ctx, fwID, &mesos.TaskInfo{TaskId: taskID}, mesos.TaskState_TASK_LOST, mesos.TaskStatus_REASON_TASK_UNKNOWN, "Cannot kill task: unknown to this agent", nil)
		return
	}
	if ts := es.queued[taskID.GetValue()]; ts != nil {
		// A task of a group goes with its group, as the default executor
		// would have ended it.
		var infos []*mesos.TaskInfo
		for _, q := range es.queued {
			if q == ts || (ts.group != nil && q.group == ts.group) {
				q.killRequested = true
				infos = append(infos, q.info)
			}
		}
		empty := len(es.queued) == len(infos) && len(es.launched) == 0
		a.mu.Unlock()
		for _, info := range infos {
			msg := "Killed before the executor started"
			if info != ts.info {
				msg += " (with task " + taskID.GetValue() + " of its group)"
			}
			a.agentUpdate(ctx, fwID, info, mesos.TaskState_TASK_KILLED, 0, msg, nil)
		}
		if empty {
			// Its only task is gone: the launch is called off (the fetch or
			// pull in progress ends at once) and the container destroyed.
			a.mu.Lock()
			if es.phase < phaseKilling {
				es.cause = causeKilled
				a.setPhaseLocked(es, phaseKilling)
			}
			a.mu.Unlock()
			// Off the caller (the master link): Destroy retries for as long
			// as it fails, and no later event may wait for it.
			a.spawn(func() { a.destroy(es) })
		}
		return
	}
	ts := es.launched[taskID.GetValue()]
	if ts == nil {
		a.mu.Unlock()
		return // already terminal
	}
	ts.killRequested = true
	conn := es.conn
	a.mu.Unlock()
	if conn == nil || !conn.send(&executor.Event{Type: executor.Event_KILL.Enum(), Kill: &executor.Event_Kill{TaskId: taskID, KillPolicy: policy}}) {
		// No executor to ask: destroy the container; its tasks end KILLED.
		a.mu.Lock()
		if es.phase < phaseKilling {
			es.cause = causeKilled
			a.setPhaseLocked(es, phaseKilling)
		}
		a.mu.Unlock()
		// Off the caller (the master link): Destroy retries for as long
		// as it fails, and no later event may wait for it.
		a.spawn(func() { a.destroy(es) })
	}
}

// shutdownExecutor asks an executor to shut down and destroys its container
// after the shutdown grace period.
func (a *Agent) shutdownExecutor(ctx context.Context, fwID, exID string) {
	a.mu.Lock()
	fw := a.frameworks[fwID]
	if fw == nil || fw.executors[exID] == nil {
		a.mu.Unlock()
		return
	}
	es := fw.executors[exID]
	if !es.live() {
		a.mu.Unlock()
		return
	}
	if es.phase < phaseKilling {
		es.cause = causeKilled
		a.setPhaseLocked(es, phaseKilling)
	}
	conn := es.conn
	grace := a.cfg.ExecutorShutdownGracePeriod
	a.mu.Unlock()
	if conn != nil && conn.send(&executor.Event{Type: executor.Event_SHUTDOWN.Enum()}) {
		a.spawn(func() {
			t := time.NewTimer(grace)
			defer t.Stop()
			select {
			case <-t.C:
			case <-conn.done:
				// Give the executor's exit a moment, then make sure.
				select {
				case <-t.C:
				case <-a.runCtx().Done():
					return
				}
			case <-a.runCtx().Done():
				return
			}
			a.destroy(es)
		})
		return
	}
	// Off the caller (the master link): Destroy retries for as long
	// as it fails, and no later event may wait for it.
	a.spawn(func() { a.destroy(es) })
}

// shutdownFramework ends a framework the master removed (teardown, or
// failed over past its timeout): its executors are shut down and their
// containers destroyed, its updates are dropped instead of resent (nobody
// will acknowledge them), and once its executors are gone it is forgotten,
// checkpoints included.
func (a *Agent) shutdownFramework(ctx context.Context, fwID string) {
	a.mu.Lock()
	fw := a.frameworks[fwID]
	var ids []string
	if fw != nil {
		for id := range fw.executors {
			ids = append(ids, id)
		}
	}
	a.markFrameworkGoneLocked(fwID)
	a.mu.Unlock()
	if n := a.sum.DropFramework(fwID); n > 0 {
		a.log.Info("dropped the unacknowledged updates of a removed framework", "framework_id", fwID, "updates", n)
	}
	for _, id := range ids {
		a.shutdownExecutor(ctx, fwID, id)
	}
	if fw == nil {
		a.spawn(func() { a.removeFrameworkCheckpoints(fwID) })
	}
}

// maxGoneFrameworks bounds the memory of removed framework ids.
const maxGoneFrameworks = 1024

// markFrameworkGoneLocked remembers that the master removed fwID: updates
// for it are no longer checkpointed or sent, and its executors are
// forgotten as soon as they end.
func (a *Agent) markFrameworkGoneLocked(fwID string) {
	if a.gone == nil {
		a.gone = map[string]time.Time{}
	}
	if len(a.gone) >= maxGoneFrameworks {
		oldest, at := "", time.Time{}
		for id, t := range a.gone {
			if oldest == "" || t.Before(at) {
				oldest, at = id, t
			}
		}
		delete(a.gone, oldest)
	}
	a.gone[fwID] = time.Now()
}

func checkpointEnv(fi *mesos.FrameworkInfo) string {
	if fi.GetCheckpoint() {
		return "1"
	}
	return "0"
}

// executorEnv is the environment Mesos gives every executor.
func (a *Agent) executorEnv(es *executorState, dir string, fi *mesos.FrameworkInfo) []string {
	a.mu.Lock()
	agentID := a.agentID
	a.mu.Unlock()
	env := []string{
		"MESOS_FRAMEWORK_ID=" + es.frameworkID,
		"MESOS_EXECUTOR_ID=" + es.info.GetExecutorId().GetValue(),
		"MESOS_DIRECTORY=" + dir,
		"MESOS_SANDBOX=" + dir,
		"MESOS_AGENT_ENDPOINT=" + a.Endpoint(),
		"MESOS_SLAVE_ID=" + agentID,
		"MESOS_SLAVE_PID=slave(1)@" + a.Endpoint(),
		// As in Mesos: the executors of a framework that checkpoints wait
		// for a restarting agent; the others end with it (the agent
		// destroys what is left of them when it recovers).
		"MESOS_CHECKPOINT=" + checkpointEnv(fi),
		"MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD=" + duration.Format(a.cfg.ExecutorShutdownGracePeriod),
		"MESOS_RECOVERY_TIMEOUT=" + duration.Format(a.cfg.RecoveryTimeout),
		"MESOS_SUBSCRIPTION_BACKOFF_MAX=" + duration.Format(a.cfg.SubscriptionBackoffMax),
		"MESOS_HTTP_COMMAND_EXECUTOR=1",
		fmt.Sprintf("%s=%d", EnvLoggerMaxSize, a.cfg.ContainerLoggerMaxSize),
		fmt.Sprintf("%s=%d", EnvLoggerMaxFiles, a.cfg.ContainerLoggerMaxFiles),
		EnvContainerID + "=" + es.containerID,
		EnvExecutorToken + "=" + a.tokens.sign(tokenClaims{FrameworkID: es.frameworkID, ExecutorID: es.info.GetExecutorId().GetValue(), ContainerID: es.containerID}),
	}
	if a.cfg.TLS != nil {
		// Mesos's variables, which our executor driver and libprocess-based
		// executors both read: the agent's executor API is https only.
		env = append(env, tlsconfig.EnvEnabled+"=true")
		if a.cfg.ExecutorCAFile != "" {
			env = append(env, tlsconfig.EnvCA+"="+a.cfg.ExecutorCAFile)
		}
	}
	if _, ok := a.cfg.ExecutorEnvironment["PATH"]; !ok {
		if p := os.Getenv("PATH"); p != "" && a.cfg.ExecutorEnvironment == nil {
			env = append(env, "PATH="+p)
		} else {
			env = append(env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
		}
	}
	for _, v := range es.info.GetCommand().GetEnvironment().GetVariables() {
		if v.GetType() != mesos.Environment_Variable_SECRET {
			env = append(env, v.GetName()+"="+v.GetValue())
		}
	}
	// --executor_environment_variables, when given, is the executors' base
	// environment: a name the agent or the executor's CommandInfo sets
	// keeps that value (the flag refuses MESOS_* and MESOLITE_*). Without
	// it executors get the agent's PATH, set above.
	set := map[string]bool{}
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		set[name] = true
	}
	for _, name := range slices.Sorted(maps.Keys(a.cfg.ExecutorEnvironment)) {
		if !set[name] {
			env = append(env, name+"="+a.cfg.ExecutorEnvironment[name])
		}
	}
	return env
}
