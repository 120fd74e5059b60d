package agent

import (
	"context"
	"errors"
	"path/filepath"
	"time"

	"github.com/mesolite/mesolite/api/v1/executor"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/containerizer"
	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/executor/defaultexec"
	"google.golang.org/protobuf/proto"
)

// Task groups (LAUNCH_GROUP, Mesos's pods): the master sends RUN_TASK_GROUP
// with an executor of type DEFAULT, which the agent runs as the built-in
// default executor (`<self> executor default`, executor/defaultexec), in one
// container whose resources are the executor's plus all of its tasks'. The
// group reaches the executor as one LAUNCH_GROUP, whether it is subscribed
// already (a second group to the same executor) or subscribes later. The
// tasks are booked, checkpointed and recovered one by one, as any task is;
// only their delivery keeps them together.

// Where the containerizer nests (containerizer.Nester: the mesos
// containerizer with cgroups), each task of a group gets a cgroup of its
// own below its executor's container, with the task's own cpus and mem:
// the agent makes it before the executor has the task, the executor moves
// the task into it before the task runs, and the agent seals it at the
// task's first TASK_RUNNING (or terminal update) and removes it once the
// task is terminal. The nested container's id is
// defaultexec.NestedContainerID(executor's container, task id), which both
// sides compute. A task that hits its own memory limit fails with
// REASON_CONTAINER_LIMITATION_MEMORY; its executor's container lives on.

// errNestedImage is what a docker-image task in a group ends with.
const errNestedImage = "this agent cannot run tasks with a container image (docker) nested in a task group; launch them as tasks of their own"

// defaultExecutorCommand is the command that runs the default executor.
func (a *Agent) defaultExecutorCommand(user *string) *mesos.CommandInfo {
	return &mesos.CommandInfo{
		Shell:     proto.Bool(false),
		Value:     proto.String(a.cfg.Self),
		Arguments: []string{a.cfg.Self, "executor", "default"},
		User:      user,
	}
}

// isDefaultExecutor says whether es runs task groups.
func isDefaultExecutor(es *executorState) bool {
	return !es.commandTask && es.info.GetType() == mesos.ExecutorInfo_DEFAULT
}

// launchSpecExecutor is the ExecutorInfo the containerizer runs for es:
// its own, or for the default executor the same with the built-in command
// (es.info stays as the framework sent it, as the master knows it).
func (a *Agent) launchSpecExecutor(es *executorState) *mesos.ExecutorInfo {
	if !isDefaultExecutor(es) {
		return es.info
	}
	ei := proto.Clone(es.info).(*mesos.ExecutorInfo)
	var user *string
	if u := es.info.GetCommand().GetUser(); u != "" {
		user = proto.String(u)
	}
	env := es.info.GetCommand().GetEnvironment()
	ei.Command = a.defaultExecutorCommand(user)
	ei.Command.Environment = env
	return ei
}

// runTaskGroup handles RUN_TASK_GROUP.
func (a *Agent) runTaskGroup(ctx context.Context, fi *mesos.FrameworkInfo, ex *mesos.ExecutorInfo, g *mesos.TaskGroupInfo) {
	fwID := fi.GetId().GetValue()
	tasks := g.GetTasks()
	fail := func(state mesos.TaskState, reason mesos.TaskStatus_Reason, msg string) {
		for _, t := range tasks {
			a.agentUpdate(ctx, fwID, t, state, reason, msg, nil)
		}
	}
	if len(tasks) == 0 {
		return
	}
	if ex.GetType() != mesos.ExecutorInfo_DEFAULT {
		fail(mesos.TaskState_TASK_ERROR, mesos.TaskStatus_REASON_TASK_GROUP_INVALID, "a task group needs an executor of type DEFAULT")
		return
	}
	// A nil ContainerInfo's type reads as DOCKER (its enum's first value).
	if c := ex.GetContainer(); c != nil && c.GetType() == mesos.ContainerInfo_DOCKER {
		fail(mesos.TaskState_TASK_FAILED, mesos.TaskStatus_REASON_TASK_GROUP_INVALID, "the default executor of a task group cannot run in a docker container on this agent")
		return
	}
	for _, t := range tasks {
		if c := t.GetContainer(); c != nil && (c.GetType() == mesos.ContainerInfo_DOCKER || c.GetMesos().GetImage() != nil) {
			fail(mesos.TaskState_TASK_FAILED, mesos.TaskStatus_REASON_TASK_GROUP_INVALID, errNestedImage+" (task "+t.GetTaskId().GetValue()+")")
			return
		}
	}
	exID := ex.GetExecutorId().GetValue()
	log := a.log.With("framework_id", fwID, "executor_id", exID)
	a.mu.Lock()
	if a.agentID == "" {
		a.mu.Unlock()
		log.Error("task group arrived before registration; dropped")
		return
	}
	fw := a.frameworks[fwID]
	if fw == nil {
		fw = &framework{info: fi, executors: map[string]*executorState{}}
		a.frameworks[fwID] = fw
	} else {
		fw.info = fi
	}
	for _, t := range tasks {
		if a.findTaskLocked(fwID, t.GetTaskId().GetValue()) != nil {
			a.mu.Unlock()
			fail(mesos.TaskState_TASK_ERROR, mesos.TaskStatus_REASON_TASK_GROUP_INVALID, "a task with id "+t.GetTaskId().GetValue()+" already runs on this agent")
			return
		}
	}
	es := fw.executors[exID]
	if es != nil && (es.phase >= phaseKilling || !isDefaultExecutor(es)) {
		a.mu.Unlock()
		fail(mesos.TaskState_TASK_LOST, mesos.TaskStatus_REASON_EXECUTOR_TERMINATED, "executor "+exID+" is shutting down or is not a default executor")
		return
	}
	var res []*mesos.Resource
	var states []*taskState
	for _, t := range tasks {
		states = append(states, &taskState{info: t, state: mesos.TaskState_TASK_STAGING, group: g})
		res = append(res, t.GetResources()...)
	}
	if es == nil {
		es = newExecutorState(ex, fwID, uuidString(newUUID()), phaseLaunching)
		for _, ts := range states {
			es.queued[ts.info.GetTaskId().GetValue()] = ts
		}
		es.resources = append(append([]*mesos.Resource(nil), ex.GetResources()...), res...)
		es.checkpointed = make(chan struct{})
		es.started = make(chan struct{})
		fw.executors[exID] = es
		a.mu.Unlock()
		log.Info("launching the default executor for a task group", "tasks", len(tasks))
		a.spawn(func() { a.launchExecutor(ctx, es, tasks, fi) })
		return
	}
	// A further group for a running (or starting) default executor.
	es.resources = append(es.resources, res...)
	paths := make([]string, len(tasks))
	for i, t := range tasks {
		paths[i] = filepath.Join(a.meta.task(a.agentID, fwID, exID, es.containerID, t.GetTaskId().GetValue()), "task.info")
	}
	conn := es.conn
	allRes := append([]*mesos.Resource(nil), es.resources...)
	cid := es.containerID
	for _, ts := range states {
		if conn != nil {
			es.launched[ts.info.GetTaskId().GetValue()] = ts
		} else {
			es.queued[ts.info.GetTaskId().GetValue()] = ts
		}
	}
	a.mu.Unlock()
	// Durable before the executor has the tasks; no file I/O under the lock.
	for i, t := range tasks {
		a.checkpointTask(paths[i], t)
	}
	if conn == nil {
		return
	}
	if err := a.cz.Update(ctx, cid, allRes); err != nil {
		log.Warn("update container limits", "error", err)
	}
	a.prepareNested(ctx, es, cid, tasks)
	if !conn.send(launchGroupEvent(g)) {
		// It gets the group when it subscribes again.
		a.mu.Lock()
		for _, ts := range states {
			id := ts.info.GetTaskId().GetValue()
			if es.launched[id] == ts {
				delete(es.launched, id)
				es.queued[id] = ts
			}
		}
		a.mu.Unlock()
	}
}

func launchGroupEvent(g *mesos.TaskGroupInfo) *executor.Event {
	return &executor.Event{Type: executor.Event_LAUNCH_GROUP.Enum(), LaunchGroup: &executor.Event_LaunchGroup{TaskGroup: g}}
}

// prepareNested makes the cgroups of tasks below the executor's container
// cid, where the containerizer nests; elsewhere the tasks share their
// executor's cgroup.
func (a *Agent) prepareNested(ctx context.Context, es *executorState, cid string, tasks []*mesos.TaskInfo) {
	n, ok := a.cz.(containerizer.Nester)
	if !ok || cid == "" {
		return
	}
	if es.started != nil {
		// The executor may have subscribed before its container's Launch
		// returned (it runs in place in a prestarted init).
		select {
		case <-es.started:
		case <-ctx.Done():
			return
		case <-time.After(time.Minute):
			a.log.Error("the executor's container launch has not returned; its tasks share its cgroup", "container_id", cid)
			return
		}
	}
	for _, t := range tasks {
		id := defaultexec.NestedContainerID(cid, t.GetTaskId().GetValue())
		err := n.PrepareNested(ctx, cid, id, t.GetResources())
		switch {
		case err == nil, errors.Is(err, errdefs.ErrConflict):
		case errors.Is(err, containerizer.ErrNotSupported):
			return
		default:
			a.log.Error("no cgroup of its own for a task of a group; it shares its executor's", "container_id", cid, "task_id", t.GetTaskId().GetValue(), "error", err)
		}
	}
}

// nestedOf is the nested container of taskID when es is a default
// executor, else "".
func nestedOf(es *executorState, cid, taskID string) string {
	if cid == "" || !isDefaultExecutor(es) {
		return ""
	}
	return defaultexec.NestedContainerID(cid, taskID)
}

// nestedUpdate follows a task's update in its nested cgroup: sealed once
// the task runs (or ended), removed once it ended.
func (a *Agent) nestedUpdate(ctx context.Context, nid string, state mesos.TaskState) {
	n, ok := a.cz.(containerizer.Nester)
	if !ok || nid == "" {
		return
	}
	terminal := mesos.IsTerminal(state)
	if state != mesos.TaskState_TASK_RUNNING && !terminal {
		return
	}
	if err := n.SealNested(ctx, nid); err != nil {
		a.log.Warn("seal a task's cgroup", "container_id", nid, "error", err)
	}
	if terminal {
		a.spawn(func() {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if err := n.DestroyNested(dctx, nid); err != nil {
				a.log.Warn("remove a task's cgroup", "container_id", nid, "error", err)
			}
		})
	}
}
