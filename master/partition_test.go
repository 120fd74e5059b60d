package master

import (
	"fmt"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/agentpb"
	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/scheduler"
	"google.golang.org/protobuf/proto"
)

// runningTask is a task as an agent reports it when it re-registers.
func runningTask(id, fwID, agentID string) *mesos.Task {
	return &mesos.Task{Name: proto.String(id), TaskId: &mesos.TaskID{Value: proto.String(id)},
		FrameworkId: &mesos.FrameworkID{Value: proto.String(fwID)}, AgentId: &mesos.AgentID{Value: proto.String(agentID)},
		State: mesos.TaskState_TASK_RUNNING.Enum(), Resources: []*mesos.Resource{scalarRes("cpus", 1), scalarRes("mem", 64)}}
}

// TestAgentReturningAfterRemoval: an agent removed for not coming back in
// time returns with its tasks. The plain framework, told TASK_LOST, has
// its task killed; the PARTITION_AWARE one, told TASK_UNREACHABLE, hears
// TASK_RUNNING again. Reconciliation said TASK_UNREACHABLE meanwhile.
func TestAgentReturningAfterRemoval(t *testing.T) {
	h := startMaster(t, func(cfg *Config) {
		cfg.AgentPingTimeout = 10 * time.Second
		cfg.MaxAgentPingTimeouts = 3
	})
	agent := h.registerAgent(agentRegister("node1", 5051))
	plain := h.subscribe(frameworkInfo("plain"), codec.JSON)
	pa := h.subscribe(frameworkInfo("pa", mesos.FrameworkInfo_Capability_PARTITION_AWARE), codec.JSON)
	o := plain.offer()
	plain.launch([]*mesos.OfferID{o.GetId()}, commandTask("p1", o.GetAgentId(), 1, 64))
	o2 := pa.offer()
	pa.launch([]*mesos.OfferID{o2.GetId()}, commandTask("a1", o2.GetAgentId(), 1, 64))
	agent.next(agentpb.Event_RUN_TASK)
	agent.next(agentpb.Event_RUN_TASK)
	agent.update(plain.fwID, "p1", mesos.TaskState_TASK_RUNNING)
	agent.update(pa.fwID, "a1", mesos.TaskState_TASK_RUNNING)
	plain.next(scheduler.Event_UPDATE)
	pa.next(scheduler.Event_UPDATE)
	agent.disconnect(h.m)
	h.advance(31 * time.Second)
	if st := plain.skipUntil(scheduler.Event_UPDATE).GetUpdate().GetStatus(); st.GetState() != mesos.TaskState_TASK_LOST {
		t.Fatalf("plain framework after removal: %v", st)
	}
	if st := pa.skipUntil(scheduler.Event_UPDATE).GetUpdate().GetStatus(); st.GetState() != mesos.TaskState_TASK_UNREACHABLE {
		t.Fatalf("partition-aware framework after removal: %v", st)
	}

	// While it is away, reconciliation says where the task is.
	pa.mustCall(&scheduler.Call{Type: scheduler.Call_RECONCILE.Enum(), Reconcile: &scheduler.Call_Reconcile{Tasks: []*scheduler.Call_Reconcile_Task{
		{TaskId: &mesos.TaskID{Value: proto.String("a1")}, AgentId: &mesos.AgentID{Value: proto.String(agent.id)}}}}})
	if st := pa.skipUntil(scheduler.Event_UPDATE).GetUpdate().GetStatus(); st.GetState() != mesos.TaskState_TASK_UNREACHABLE || st.GetReason() != mesos.TaskStatus_REASON_RECONCILIATION {
		t.Fatalf("reconciling a task of an unreachable agent: %v", st)
	}
	if n := getJSON(t, h.base+"/metrics/snapshot")["master/slaves_unreachable"]; n != 1.0 {
		t.Fatalf("master/slaves_unreachable = %v", n)
	}

	// It comes back, with its token, still running both.
	call := agentRegister("node1", 5051)
	call.AgentId = &mesos.AgentID{Value: proto.String(agent.id)}
	call.Register.Tasks = []*mesos.Task{runningTask("p1", plain.fwID, agent.id), runningTask("a1", pa.fwID, agent.id)}
	back := h.registerAgent(call)
	if back.id != agent.id {
		t.Fatalf("came back as %s, want %s", back.id, agent.id)
	}
	kill := back.next(agentpb.Event_KILL_TASK).GetKillTask()
	if kill.GetTaskId().GetValue() != "p1" || kill.GetFrameworkId().GetValue() != plain.fwID {
		t.Fatalf("KILL_TASK %v, want p1 of the plain framework", kill)
	}
	st := pa.skipUntil(scheduler.Event_UPDATE).GetUpdate().GetStatus()
	if st.GetTaskId().GetValue() != "a1" || st.GetState() != mesos.TaskState_TASK_RUNNING || st.GetReason() != mesos.TaskStatus_REASON_AGENT_REREGISTERED {
		t.Fatalf("partition-aware framework after the agent returned: %v", st)
	}
	// The agent's answer to the kill reaches the plain framework.
	back.update(plain.fwID, "p1", mesos.TaskState_TASK_KILLED)
	if st := plain.skipUntil(scheduler.Event_UPDATE).GetUpdate().GetStatus(); st.GetState() != mesos.TaskState_TASK_KILLED {
		t.Fatalf("plain framework after the kill: %v", st)
	}
	fw, _ := frameworkState(t, h.base, pa.fwID)
	if tasks := fw["tasks"].([]any); len(tasks) != 1 || tasks[0].(map[string]any)["state"] != "TASK_RUNNING" {
		t.Fatalf("partition-aware framework's tasks: %v", fmtJSON(fw))
	}
	if done := fw["completed_tasks"].([]any); len(done) != 0 {
		t.Fatalf("the returned task is still among the completed: %v", fmtJSON(done))
	}
	if n := getJSON(t, h.base+"/metrics/snapshot")["master/slaves_unreachable"]; n != 0.0 {
		t.Fatalf("master/slaves_unreachable after the return = %v", n)
	}
}

// TestRemovedFrameworkUpdatesAcknowledged: an update for a torn-down
// framework is acknowledged by the master, so the agent stops resending
// it, and the agent is told again to shut the framework down.
func TestRemovedFrameworkUpdatesAcknowledged(t *testing.T) {
	h := startMaster(t)
	agent := h.registerAgent(agentRegister("node1", 5051))
	other := h.registerAgent(agentRegister("node2", 5052))
	sc := h.subscribe(frameworkInfo("gone"), codec.JSON)
	o := sc.offer()
	sc.launch([]*mesos.OfferID{o.GetId()}, commandTask("t", o.GetAgentId(), 1, 64))
	runOn := agent
	if o.GetAgentId().GetValue() == other.id {
		runOn = other
	}
	runOn.next(agentpb.Event_RUN_TASK)
	sc.mustCall(&scheduler.Call{Type: scheduler.Call_TEARDOWN.Enum()})
	// Every agent hears of the teardown, not only the one with the task.
	for _, a := range []*fakeAgent{agent, other} {
		if ev := a.next(agentpb.Event_SHUTDOWN_FRAMEWORK); ev.GetShutdownFramework().GetFrameworkId().GetValue() != sc.fwID {
			t.Fatalf("agent %s: %v", a.id, ev)
		}
	}
	uuid := runOn.update(sc.fwID, "t", mesos.TaskState_TASK_KILLED)
	ack := runOn.next(agentpb.Event_ACKNOWLEDGE).GetAcknowledge()
	if string(ack.GetUuid()) != string(uuid) || ack.GetTaskId().GetValue() != "t" || ack.GetFrameworkId().GetValue() != sc.fwID {
		t.Fatalf("ACKNOWLEDGE %v", ack)
	}
	runOn.next(agentpb.Event_SHUTDOWN_FRAMEWORK)
}

// TestRemovedFrameworksBounded: the ids of torn-down frameworks are kept
// up to a bound, oldest forgotten first.
func TestRemovedFrameworksBounded(t *testing.T) {
	h := startMaster(t, func(cfg *Config) { cfg.MaxCompletedFrameworks = 2 })
	keep := h.m.keepRemoved()
	h.m.mu.Lock()
	defer h.m.mu.Unlock()
	for i := range keep + 5 {
		fw := newFramework(fmt.Sprintf("fw-%05d", i), frameworkInfo("x"))
		h.m.markRemoved(fw)
	}
	if len(h.m.removedFWs) != keep || len(h.m.removedOrder) != keep || len(h.m.completed) != 2 {
		t.Fatalf("removed %d (order %d), completed %d; want %d, %d, 2", len(h.m.removedFWs), len(h.m.removedOrder), len(h.m.completed), keep, keep)
	}
}
