package master

import (
	"net/http"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/agentpb"
	"github.com/mesolite/mesolite/api/v1/codec"
	masterpb "github.com/mesolite/mesolite/api/v1/master"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/scheduler"
	"google.golang.org/protobuf/proto"
)

// TestDrainAgent: DRAIN_AGENT deactivates the agent and kills its tasks
// with the drain's grace period (capping the task's own); the agent is
// DRAINING until its last task ends, then DRAINED (and, with mark_gone,
// gone); REACTIVATE_AGENT ends a drain.
func TestDrainAgent(t *testing.T) {
	h := startMaster(t)
	agent := h.registerAgent(agentRegister("node1", 5051))
	fw := h.subscribe(frameworkInfo("fw"), codec.JSON)
	o := fw.offer()
	t1 := commandTask("t1", o.GetAgentId(), 1, 64)
	t1.KillPolicy = &mesos.KillPolicy{GracePeriod: &mesos.DurationInfo{Nanoseconds: proto.Int64(int64(time.Minute))}}
	fw.launch([]*mesos.OfferID{o.GetId()}, t1, commandTask("t2", o.GetAgentId(), 1, 64))
	agent.next(agentpb.Event_RUN_TASK)
	agent.next(agentpb.Event_RUN_TASK)
	agent.update(fw.fwID, "t1", mesos.TaskState_TASK_RUNNING)
	agent.update(fw.fwID, "t2", mesos.TaskState_TASK_RUNNING)
	fw.next(scheduler.Event_UPDATE)
	fw.next(scheduler.Event_UPDATE)

	if code, body, _ := opPost(t, h.base+"/api/v1", codec.JSON, codec.JSON, &masterpb.Call{Type: masterpb.Call_DRAIN_AGENT.Enum(),
		DrainAgent: &masterpb.Call_DrainAgent{AgentId: agentIDOf("nobody")}}, nil); code != http.StatusNotFound {
		t.Fatalf("drain of an unknown agent: %d %s", code, body)
	}
	grace := &mesos.DurationInfo{Nanoseconds: proto.Int64(int64(5 * time.Second))}
	mustOp(t, h.base, &masterpb.Call{Type: masterpb.Call_DRAIN_AGENT.Enum(), DrainAgent: &masterpb.Call_DrainAgent{AgentId: agentIDOf(agent.id), MaxGracePeriod: grace}}, nil)
	for range 2 {
		k := agent.next(agentpb.Event_KILL_TASK).GetKillTask()
		if k.GetKillPolicy().GetGracePeriod().GetNanoseconds() != int64(5*time.Second) {
			t.Fatalf("kill of %s with grace %v, want the drain's 5s", k.GetTaskId().GetValue(), k.GetKillPolicy())
		}
	}
	drainState := func() (mesos.DrainState, bool) {
		agents := opCall(t, h.base, codec.JSON, opType(masterpb.Call_GET_AGENTS)).GetGetAgents().GetAgents()
		if len(agents) == 0 {
			return 0, false
		}
		return agents[0].GetDrainInfo().GetState(), agents[0].GetActive()
	}
	if st, active := drainState(); st != mesos.DrainState_DRAINING || active {
		t.Fatalf("after DRAIN_AGENT: %s active=%v", st, active)
	}
	agent.update(fw.fwID, "t1", mesos.TaskState_TASK_KILLED)
	if st, _ := drainState(); st != mesos.DrainState_DRAINING {
		t.Fatalf("with a task left: %s", st)
	}
	agent.update(fw.fwID, "t2", mesos.TaskState_TASK_KILLED)
	if st, _ := drainState(); st != mesos.DrainState_DRAINED {
		t.Fatalf("with no task left: %s", st)
	}
	slaves := getJSON(t, h.base+"/master/state")["slaves"].([]any)
	if di, _ := slaves[0].(map[string]any)["drain_info"].(map[string]any); di["state"] != "DRAINED" {
		t.Fatalf("/master/state drain_info %v", slaves[0])
	}
	mustOp(t, h.base, &masterpb.Call{Type: masterpb.Call_REACTIVATE_AGENT.Enum(), ReactivateAgent: &masterpb.Call_ReactivateAgent{AgentId: agentIDOf(agent.id)}}, nil)
	if st, active := drainState(); st != mesos.DrainState_UNKNOWN || !active {
		t.Fatalf("after REACTIVATE_AGENT: %s active=%v", st, active)
	}

	// mark_gone: a drained agent with no tasks is gone at once.
	mustOp(t, h.base, &masterpb.Call{Type: masterpb.Call_DRAIN_AGENT.Enum(), DrainAgent: &masterpb.Call_DrainAgent{AgentId: agentIDOf(agent.id), MarkGone: proto.Bool(true)}}, nil)
	if _, ok := drainState(); ok {
		t.Fatal("a drained agent with mark_gone is still listed")
	}
}

// TestAgentMarksSurviveRestart: a drain, a deactivation and a mark gone
// are in the registry: a restarted master keeps the drained agent
// deactivated and draining state, and still refuses the gone agent.
func TestAgentMarksSurviveRestart(t *testing.T) {
	work := t.TempDir()
	h := startMaster(t, func(cfg *Config) { cfg.WorkDir = work })
	drained := h.registerAgent(agentRegister("node1", 5051))
	gone := h.registerAgent(agentRegister("node2", 5052))
	mustOp(t, h.base, &masterpb.Call{Type: masterpb.Call_DRAIN_AGENT.Enum(), DrainAgent: &masterpb.Call_DrainAgent{AgentId: agentIDOf(drained.id)}}, nil)
	mustOp(t, h.base, &masterpb.Call{Type: masterpb.Call_MARK_AGENT_GONE.Enum(), MarkAgentGone: &masterpb.Call_MarkAgentGone{AgentId: agentIDOf(gone.id)}}, nil)
	h.stop()

	h = startMaster(t, func(cfg *Config) { cfg.WorkDir = work })
	call := agentRegister("node1", 5051)
	call.AgentId = agentIDOf(drained.id)
	h.registerAgent(call)
	agents := opCall(t, h.base, codec.JSON, opType(masterpb.Call_GET_AGENTS)).GetGetAgents().GetAgents()
	if len(agents) != 1 || agents[0].GetActive() || agents[0].GetDrainInfo().GetState() != mesos.DrainState_DRAINED {
		t.Fatalf("after a restart: %v", agents)
	}
	back := agentRegister("node2", 5052)
	back.AgentId = agentIDOf(gone.id)
	resp, cancel := openRegister(t, h.base, back, nil)
	cancel()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("REGISTER of a gone agent after a restart: %s", resp.Status)
	}
}
