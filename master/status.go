package master

import (
	"bytes"
	"net/http"
	"slices"

	"github.com/mesolite/mesolite/api/v1/agentpb"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/master/store"
	"google.golang.org/protobuf/proto"
)

// setTaskState records a status of a task: latest is the newest state the
// agent knows (it may be ahead of st while older updates wait for their
// acknowledgement). When latest is terminal the task's resources go back
// to the allocator.
func (m *Master) setTaskState(t *task, st *mesos.TaskStatus, latest mesos.TaskState) {
	prev, prevUpdate := t.state(), t.t.StatusUpdateState
	// Keep statuses lean: data can be large and is the framework's.
	kept := proto.Clone(st).(*mesos.TaskStatus)
	kept.Data = nil
	t.change(func(n *mesos.Task) {
		n.State = latest.Enum()
		n.StatusUpdateState = st.State
		n.StatusUpdateUuid = st.Uuid
		if k := len(n.Statuses); k == 0 || !proto.Equal(n.Statuses[k-1], kept) {
			n.Statuses = append(n.Statuses, kept)
			if len(n.Statuses) > maxStatusesPerTask {
				n.Statuses = slices.Delete(n.Statuses, 0, len(n.Statuses)-maxStatusesPerTask)
			}
		}
	})
	if cid := st.GetContainerStatus().GetContainerId(); cid != nil {
		for cid.GetParent() != nil {
			cid = cid.GetParent()
		}
		t.containerID = cid.GetValue()
	}
	if mesos.IsTerminal(latest) && !t.released {
		t.released = true
		m.alloc.Recover(t.fw.id, t.agentID, t.role, t.res, 0)
		m.triggerAllocation()
		m.checkDrainedLocked(m.agents[t.agentID])
	}
	if prev != latest && mesos.IsTerminal(latest) {
		m.counters.terminal[latest]++
		if st.GetState() == latest {
			if m.counters.terminalBy == nil {
				m.counters.terminalBy = map[string]uint64{}
			}
			m.counters.terminalBy[terminalKey(st)]++
		}
	}
	// Agents resend updates until acknowledged: only a change is news.
	if prev != latest || prevUpdate == nil || *prevUpdate != st.GetState() {
		m.opTaskUpdatedLocked(t, kept, latest)
	}
}

// completeTask moves a task out of the active books into the framework's
// completed tasks.
func (m *Master) completeTask(t *task) {
	fw := t.fw
	if !t.released {
		t.released = true
		m.alloc.Recover(fw.id, t.agentID, t.role, t.res, 0)
	}
	if fw.tasks[t.id()] == t {
		delete(fw.tasks, t.id())
		delete(fw.delivered, t.id())
	}
	if a := m.agents[t.agentID]; a != nil {
		a.removeTask(t)
	}
	fw.completedTasks = append(fw.completedTasks, t)
	ops := []store.Op{store.PutTask{FrameworkID: fw.id, Task: completedTaskRecord(t, m.clock.Now())}}
	if n := len(fw.completedTasks) - m.cfg.MaxCompletedTasksPerFramework; n > 0 {
		for _, old := range fw.completedTasks[:n] {
			if old.id() != t.id() {
				ops = append(ops, store.RemoveTask{FrameworkID: fw.id, TaskID: old.id()})
			}
		}
		fw.completedTasks = slices.Delete(fw.completedTasks, 0, n)
	}
	m.persist(ops...)
}

// removeExecutor forgets an executor and recovers its resources.
func (m *Master) removeExecutor(a *agent, fw *framework, e *executor) {
	id := e.info.GetExecutorId().GetValue()
	if es := fw.executors[e.agentID]; es != nil && es[id] == e {
		delete(es, id)
		if len(es) == 0 {
			delete(fw.executors, e.agentID)
		}
		m.alloc.Recover(fw.id, e.agentID, e.role, e.res, 0)
	}
	if a != nil {
		if es := a.executors[fw.id]; es != nil && es[id] == e {
			delete(es, id)
			if len(es) == 0 {
				delete(a.executors, fw.id)
			}
		}
	}
}

// statusUpdate handles an UPDATE from an agent: the task's state is
// tracked and the update goes to the framework as is (uuid included), or
// waits for it to re-subscribe.
func (m *Master) statusUpdate(a *agent, u *agentpb.Call_Update) error {
	fwID := u.GetFrameworkId().GetValue()
	st := proto.Clone(u.GetStatus()).(*mesos.TaskStatus)
	// An agent speaks for itself only, whatever its update says.
	st.AgentId = &mesos.AgentID{Value: proto.String(a.id)}
	if st.Source == nil {
		st.Source = mesos.TaskStatus_SOURCE_AGENT.Enum()
	}
	if st.Timestamp == nil {
		st.Timestamp = proto.Float64(timestamp(m.clock.Now()))
	}
	fw := m.frameworks[fwID]
	if fw == nil {
		m.counters.invalidStatusUpdates++
		if m.removedFWs[fwID] {
			// The framework is gone and nobody will acknowledge the
			// update: the master does, so the agent stops resending it,
			// and tells the agent again to shut the framework down.
			if uuid := st.GetUuid(); len(uuid) > 0 {
				m.sendAgent(a, &agentpb.Event{
					Type: agentpb.Event_ACKNOWLEDGE.Enum(),
					Acknowledge: &agentpb.Event_Acknowledge{
						FrameworkId: &mesos.FrameworkID{Value: proto.String(fwID)},
						TaskId:      st.GetTaskId(),
						Uuid:        uuid,
					},
				})
			}
			m.sendAgent(a, shutdownFramework(fwID))
			return nil
		}
		m.log.Warn("status update for an unknown framework dropped", "framework_id", fwID, "agent_id", a.id, "task_id", st.GetTaskId().GetValue())
		return nil
	}
	taskID := st.GetTaskId().GetValue()
	t := fw.tasks[taskID]
	// Delivered once per uuid: a resend of an update the framework
	// already acknowledged (the agent restarted before the acknowledgement
	// reached it), or of any update of a task complete here (complete means
	// its terminal update was acknowledged, and updates are acknowledged in
	// order), is acknowledged to the agent and not delivered again.
	if uuid := st.GetUuid(); len(uuid) > 0 &&
		((t != nil && t.agentID == a.id && fw.delivered[taskID] != nil && fw.delivered[taskID].wasAcked(uuid)) || (t == nil && completedOn(fw, taskID, a.id))) {
		m.sendAgent(a, &agentpb.Event{
			Type: agentpb.Event_ACKNOWLEDGE.Enum(),
			Acknowledge: &agentpb.Event_Acknowledge{
				FrameworkId: &mesos.FrameworkID{Value: proto.String(fwID)},
				TaskId:      st.GetTaskId(),
				Uuid:        uuid,
			},
		})
		m.log.Debug("resent update already acknowledged by the framework: acknowledged for it", "framework_id", fwID, "task_id", taskID, "agent_id", a.id)
		return nil
	}
	if d := fw.delivered[taskID]; d != nil && len(st.GetUuid()) > 0 && t != nil && t.agentID == a.id && fw.stream != nil &&
		d.lastOn == fw.stream && bytes.Equal(d.lastUUID, st.GetUuid()) {
		m.log.Debug("resent update already delivered on the framework's stream: its acknowledgement will follow", "framework_id", fwID, "task_id", taskID, "agent_id", a.id)
		return nil
	}
	switch {
	case t != nil && t.agentID == a.id:
		latest := st.GetState()
		if u.LatestState != nil {
			latest = u.GetLatestState()
		}
		m.setTaskState(t, st, latest)
	case t == nil && completedOn(fw, taskID, a.id):
		// A retried update of a task already complete here.
	case t == nil && a.expectUpdates[fwID+"/"+taskID]:
		// The answer to a KILL of a task the master did not know.
		if mesos.IsTerminal(st.GetState()) {
			delete(a.expectUpdates, fwID+"/"+taskID)
		}
	default:
		// Forwarding would let any agent tell a framework that its tasks
		// elsewhere finished, failed or were lost.
		m.counters.invalidStatusUpdates++
		placedOn := ""
		if t != nil {
			placedOn = t.agentID
		}
		m.log.Warn("status update for a task the master did not place on this agent refused", "framework_id", fwID, "task_id", taskID, "agent_id", a.id, "placed_on", placedOn, "state", st.GetState().String())
		return httpErr(http.StatusForbidden, "Task '%s' of framework '%s' is not on agent '%s'", taskID, fwID, a.id)
	}
	m.counters.validStatusUpdates++
	m.sendFramework(fw, &scheduler.Event{Type: scheduler.Event_UPDATE.Enum(), Update: &scheduler.Event_Update{Status: st}})
	if t != nil && len(st.GetUuid()) > 0 && fw.stream != nil {
		d := fw.delivery(taskID)
		d.lastUUID, d.lastOn = st.GetUuid(), fw.stream
	}
	return nil
}

// completedOn reports whether the framework's completed task taskID ran on
// agentID.
func completedOn(fw *framework, taskID, agentID string) bool {
	for _, t := range fw.completedTasks {
		if t.agentID == agentID && t.id() == taskID {
			return true
		}
	}
	return false
}

// maxExpectedUpdates bounds expectUpdates per agent: a framework could
// otherwise grow it with KILLs of made-up tasks.
const maxExpectedUpdates = 1024

func shutdownFramework(fwID string) *agentpb.Event {
	return &agentpb.Event{
		Type:              agentpb.Event_SHUTDOWN_FRAMEWORK.Enum(),
		ShutdownFramework: &agentpb.Event_ShutdownFramework{FrameworkId: &mesos.FrameworkID{Value: proto.String(fwID)}},
	}
}

// acknowledge forwards a framework's ACKNOWLEDGE to the agent; a task
// whose terminal update is acknowledged is complete.
func (m *Master) acknowledge(fw *framework, ack *scheduler.Call_Acknowledge) {
	uuid := ack.GetUuid()
	taskID := ack.GetTaskId().GetValue()
	fw.pending = slices.DeleteFunc(fw.pending, func(ev *scheduler.Event) bool {
		return bytes.Equal(ev.GetUpdate().GetStatus().GetUuid(), uuid)
	})
	a := m.agents[ack.GetAgentId().GetValue()]
	if a == nil {
		m.counters.invalidAcks++
		m.log.Warn("acknowledgement for an unknown agent dropped", "framework_id", fw.id, "agent_id", ack.GetAgentId().GetValue(), "task_id", taskID)
		return
	}
	m.counters.validAcks++
	if t := fw.tasks[taskID]; t != nil && t.agentID == a.id {
		if d := fw.delivery(taskID); !d.wasAcked(uuid) {
			d.acked = append(d.acked, bytes.Clone(uuid))
			if len(d.acked) > maxAckedPerTask {
				d.acked = d.acked[len(d.acked)-maxAckedPerTask:]
			}
		}
	}
	if !m.sendAgent(a, &agentpb.Event{
		Type: agentpb.Event_ACKNOWLEDGE.Enum(),
		Acknowledge: &agentpb.Event_Acknowledge{
			FrameworkId: &mesos.FrameworkID{Value: proto.String(fw.id)},
			TaskId:      ack.GetTaskId(),
			Uuid:        uuid,
		},
	}) {
		// The agent resends the update when it is back; the framework
		// acknowledges it again.
		m.log.Debug("acknowledgement not forwarded: agent disconnected", "agent_id", a.id, "task_id", taskID)
	}
	if t := fw.tasks[taskID]; t != nil && t.agentID == a.id &&
		mesos.IsTerminal(t.t.GetStatusUpdateState()) && bytes.Equal(t.t.GetStatusUpdateUuid(), uuid) {
		m.completeTask(t)
	}
}

// kill handles KILL.
func (m *Master) kill(fw *framework, k *scheduler.Call_Kill) {
	taskID := k.GetTaskId().GetValue()
	t := fw.tasks[taskID]
	if t == nil {
		// The agent might know a task the master lost (after a failover);
		// tell it too, then answer as Mesos does.
		if a := m.agents[k.GetAgentId().GetValue()]; a != nil {
			if m.sendAgent(a, killEvent(fw.id, k.GetTaskId(), k.GetKillPolicy())) && len(a.expectUpdates) < maxExpectedUpdates {
				if a.expectUpdates == nil {
					a.expectUpdates = make(map[string]bool)
				}
				a.expectUpdates[fw.id+"/"+taskID] = true
			}
		}
		m.masterUpdate(fw, k.GetTaskId(), k.GetAgentId(), mesos.TaskState_TASK_LOST, mesos.TaskStatus_REASON_RECONCILIATION, "Attempted to kill an unknown task")
		return
	}
	if mesos.IsTerminal(t.state()) {
		// Already over: resend the latest state so the framework sees it.
		m.reconcileTask(fw, t)
		return
	}
	t.killRequested = true
	if k.KillPolicy != nil {
		t.killPolicy = k.GetKillPolicy()
	}
	if !m.sendAgent(m.agents[t.agentID], killEvent(fw.id, t.t.GetTaskId(), t.killPolicy)) {
		m.log.Info("kill deferred until the agent re-registers", "framework_id", fw.id, "task_id", taskID, "agent_id", t.agentID)
	}
}

func killEvent(fwID string, taskID *mesos.TaskID, policy *mesos.KillPolicy) *agentpb.Event {
	return &agentpb.Event{
		Type: agentpb.Event_KILL_TASK.Enum(),
		KillTask: &agentpb.Event_KillTask{
			FrameworkId: &mesos.FrameworkID{Value: proto.String(fwID)},
			TaskId:      taskID,
			KillPolicy:  policy,
		},
	}
}

// reconcile answers RECONCILE from the master's books: the latest state of
// each task (REASON_RECONCILIATION, no uuid), every task when none is
// named. Like Mesos, the master stays silent where the truth may still
// arrive: about tasks on an agent known from the registry that has not
// re-registered yet (after a failover), or on a disconnected agent, and
// about tasks named without an agent while any agent is still recovering.
// Only when the agent is back without the task, or the task's agent is
// unknown, does it say TASK_LOST (TASK_GONE / TASK_UNKNOWN for
// PARTITION_AWARE frameworks); tasks of an agent removed as unreachable
// are TASK_UNREACHABLE (TASK_LOST).
func (m *Master) reconcile(fw *framework, r *scheduler.Call_Reconcile) {
	if len(r.GetTasks()) == 0 {
		for _, id := range sortedTaskIDs(fw.tasks) {
			m.reconcileTask(fw, fw.tasks[id])
		}
		return
	}
	recovering := false
	for _, a := range m.agents {
		if a.recovered {
			recovering = true
			break
		}
	}
	for _, rt := range r.GetTasks() {
		taskID := rt.GetTaskId().GetValue()
		if t := fw.tasks[taskID]; t != nil {
			m.reconcileTask(fw, t)
			continue
		}
		agentID := rt.GetAgentId().GetValue()
		a := m.agents[agentID]
		_, unreachable := m.unreachable[agentID]
		switch {
		case agentID != "" && a != nil && a.connected:
			if t := completedTask(fw, taskID, agentID); t != nil {
				// It ended here; say how rather than that it is gone.
				m.reconcileTask(fw, t)
				continue
			}
			state := mesos.TaskState_TASK_LOST
			if fw.partitionAware {
				state = mesos.TaskState_TASK_GONE
			}
			m.masterUpdate(fw, rt.GetTaskId(), rt.GetAgentId(), state, mesos.TaskStatus_REASON_RECONCILIATION, "Reconciliation: Task is unknown to the agent")
		case agentID != "" && a != nil:
			// The agent is recovering (known from the registry) or
			// disconnected; it reports its tasks when it re-registers.
		case agentID != "" && unreachable:
			state := mesos.TaskState_TASK_LOST
			if fw.partitionAware {
				state = mesos.TaskState_TASK_UNREACHABLE
			}
			m.masterUpdate(fw, rt.GetTaskId(), rt.GetAgentId(), state, mesos.TaskStatus_REASON_RECONCILIATION, "Reconciliation: Task is unreachable")
		case agentID == "" && recovering:
			// Any recovering agent may run it.
		default:
			if t := completedTask(fw, taskID, agentID); t != nil {
				m.reconcileTask(fw, t)
				continue
			}
			state := mesos.TaskState_TASK_LOST
			if fw.partitionAware {
				state = mesos.TaskState_TASK_UNKNOWN
			}
			m.masterUpdate(fw, rt.GetTaskId(), rt.GetAgentId(), state, mesos.TaskStatus_REASON_RECONCILIATION, "Reconciliation: Task is unknown")
		}
	}
}

// completedTask finds the newest completed task of fw with this id (on
// agentID, when given).
func completedTask(fw *framework, taskID, agentID string) *task {
	for i := len(fw.completedTasks) - 1; i >= 0; i-- {
		t := fw.completedTasks[i]
		if t.id() == taskID && (agentID == "" || t.agentID == agentID) {
			return t
		}
	}
	return nil
}

func (m *Master) reconcileTask(fw *framework, t *task) {
	st := &mesos.TaskStatus{
		TaskId:    t.t.GetTaskId(),
		State:     t.t.State,
		Source:    mesos.TaskStatus_SOURCE_MASTER.Enum(),
		Reason:    mesos.TaskStatus_REASON_RECONCILIATION.Enum(),
		Message:   proto.String("Reconciliation: Latest task state"),
		AgentId:   t.t.GetAgentId(),
		Timestamp: proto.Float64(timestamp(m.clock.Now())),
	}
	if t.t.ExecutorId != nil {
		st.ExecutorId = t.t.ExecutorId
	}
	if n := len(t.t.Statuses); n > 0 {
		last := t.t.Statuses[n-1]
		st.Healthy, st.Labels, st.ContainerStatus, st.CheckStatus = last.Healthy, last.Labels, last.ContainerStatus, last.CheckStatus
	}
	m.sendFramework(fw, &scheduler.Event{Type: scheduler.Event_UPDATE.Enum(), Update: &scheduler.Event_Update{Status: st}})
}
