package master

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/agentpb"
	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/scheduler"
	"google.golang.org/protobuf/proto"
)

func TestLaunchValidation(t *testing.T) {
	h := startMaster(t)
	h.registerAgent(agentRegister("node1", 5051))
	sc := h.subscribe(frameworkInfo("validator"), codec.JSON)
	pa := h.subscribe(frameworkInfo("partition-aware", mesos.FrameworkInfo_Capability_PARTITION_AWARE), codec.JSON)
	// Only the validator gets offers; the other one borrows them.
	pa.mustCall(&scheduler.Call{Type: scheduler.Call_SUPPRESS.Enum()})

	// A task that exists already, for the duplicate case.
	o := sc.offer()
	sc.launch([]*mesos.OfferID{o.GetId()}, commandTask("existing", o.GetAgentId(), 0.5, 64))

	type result struct {
		state  mesos.TaskState
		reason mesos.TaskStatus_Reason
		msg    string
	}
	tests := []struct {
		name  string
		fw    *schedClient
		build func(o *mesos.Offer) ([]*mesos.OfferID, []*mesos.TaskInfo)
		want  []result
	}{
		{"rescinded offer", sc, func(o *mesos.Offer) ([]*mesos.OfferID, []*mesos.TaskInfo) {
			return []*mesos.OfferID{{Value: proto.String("gone-O1")}}, []*mesos.TaskInfo{commandTask("t1", o.GetAgentId(), 1, 64)}
		}, []result{{mesos.TaskState_TASK_LOST, mesos.TaskStatus_REASON_INVALID_OFFERS, "is no longer valid"}}},
		{"rescinded offer, partition aware", pa, func(o *mesos.Offer) ([]*mesos.OfferID, []*mesos.TaskInfo) {
			return []*mesos.OfferID{{Value: proto.String("gone-O2")}}, []*mesos.TaskInfo{commandTask("t1", o.GetAgentId(), 1, 64)}
		}, []result{{mesos.TaskState_TASK_DROPPED, mesos.TaskStatus_REASON_INVALID_OFFERS, "is no longer valid"}}},
		{"foreign offer", pa, func(o *mesos.Offer) ([]*mesos.OfferID, []*mesos.TaskInfo) {
			// o was made to the other framework.
			return []*mesos.OfferID{o.GetId()}, []*mesos.TaskInfo{commandTask("t2", o.GetAgentId(), 1, 64)}
		}, []result{{mesos.TaskState_TASK_DROPPED, mesos.TaskStatus_REASON_INVALID_OFFERS, "invalid framework"}}},
		{"duplicate offer", sc, func(o *mesos.Offer) ([]*mesos.OfferID, []*mesos.TaskInfo) {
			return []*mesos.OfferID{o.GetId(), o.GetId()}, []*mesos.TaskInfo{commandTask("t3", o.GetAgentId(), 1, 64)}
		}, []result{{mesos.TaskState_TASK_LOST, mesos.TaskStatus_REASON_INVALID_OFFERS, "Duplicate offer"}}},
		{"too many resources", sc, func(o *mesos.Offer) ([]*mesos.OfferID, []*mesos.TaskInfo) {
			return []*mesos.OfferID{o.GetId()}, []*mesos.TaskInfo{commandTask("big", o.GetAgentId(), 64, 64)}
		}, []result{{mesos.TaskState_TASK_ERROR, mesos.TaskStatus_REASON_TASK_INVALID, "more resources"}}},
		{"second task overflows", sc, func(o *mesos.Offer) ([]*mesos.OfferID, []*mesos.TaskInfo) {
			return []*mesos.OfferID{o.GetId()}, []*mesos.TaskInfo{commandTask("fits", o.GetAgentId(), 3, 64), commandTask("spills", o.GetAgentId(), 1, 64)}
		}, []result{{mesos.TaskState_TASK_STAGING, 0, ""}, {mesos.TaskState_TASK_ERROR, mesos.TaskStatus_REASON_TASK_INVALID, "more resources"}}},
		{"duplicate task id", sc, func(o *mesos.Offer) ([]*mesos.OfferID, []*mesos.TaskInfo) {
			return []*mesos.OfferID{o.GetId()}, []*mesos.TaskInfo{commandTask("existing", o.GetAgentId(), 0.1, 32)}
		}, []result{{mesos.TaskState_TASK_ERROR, mesos.TaskStatus_REASON_TASK_INVALID, "duplicate ID: existing"}}},
		{"duplicate within one accept", sc, func(o *mesos.Offer) ([]*mesos.OfferID, []*mesos.TaskInfo) {
			return []*mesos.OfferID{o.GetId()}, []*mesos.TaskInfo{commandTask("twin", o.GetAgentId(), 0.1, 32), commandTask("twin", o.GetAgentId(), 0.1, 32)}
		}, []result{{mesos.TaskState_TASK_STAGING, 0, ""}, {mesos.TaskState_TASK_ERROR, mesos.TaskStatus_REASON_TASK_INVALID, "duplicate ID: twin"}}},
		{"command and executor", sc, func(o *mesos.Offer) ([]*mesos.OfferID, []*mesos.TaskInfo) {
			ti := commandTask("both", o.GetAgentId(), 0.1, 32)
			ti.Executor = &mesos.ExecutorInfo{ExecutorId: &mesos.ExecutorID{Value: proto.String("e")}, Command: &mesos.CommandInfo{Value: proto.String("x")}}
			return []*mesos.OfferID{o.GetId()}, []*mesos.TaskInfo{ti}
		}, []result{{mesos.TaskState_TASK_ERROR, mesos.TaskStatus_REASON_TASK_INVALID, "not both"}}},
		{"neither command nor executor", sc, func(o *mesos.Offer) ([]*mesos.OfferID, []*mesos.TaskInfo) {
			ti := commandTask("none", o.GetAgentId(), 0.1, 32)
			ti.Command = nil
			return []*mesos.OfferID{o.GetId()}, []*mesos.TaskInfo{ti}
		}, []result{{mesos.TaskState_TASK_ERROR, mesos.TaskStatus_REASON_TASK_INVALID, "at least one"}}},
		{"wrong agent", sc, func(o *mesos.Offer) ([]*mesos.OfferID, []*mesos.TaskInfo) {
			return []*mesos.OfferID{o.GetId()}, []*mesos.TaskInfo{commandTask("lost", &mesos.AgentID{Value: proto.String("elsewhere")}, 0.1, 32)}
		}, []result{{mesos.TaskState_TASK_ERROR, mesos.TaskStatus_REASON_TASK_INVALID, "invalid agent: elsewhere"}}},
		{"bad task id", sc, func(o *mesos.Offer) ([]*mesos.OfferID, []*mesos.TaskInfo) {
			return []*mesos.OfferID{o.GetId()}, []*mesos.TaskInfo{commandTask("a/b", o.GetAgentId(), 0.1, 32)}
		}, []result{{mesos.TaskState_TASK_ERROR, mesos.TaskStatus_REASON_TASK_INVALID, "invalid characters"}}},
		{"negative resources", sc, func(o *mesos.Offer) ([]*mesos.OfferID, []*mesos.TaskInfo) {
			return []*mesos.OfferID{o.GetId()}, []*mesos.TaskInfo{commandTask("neg", o.GetAgentId(), -1, 32)}
		}, []result{{mesos.TaskState_TASK_ERROR, mesos.TaskStatus_REASON_TASK_INVALID, "invalid resources"}}},
		{"port not offered", sc, func(o *mesos.Offer) ([]*mesos.OfferID, []*mesos.TaskInfo) {
			ti := commandTask("port80", o.GetAgentId(), 0.1, 32)
			ti.Resources = append(ti.Resources, &mesos.Resource{Name: proto.String("ports"), Type: mesos.Value_RANGES.Enum(),
				Ranges: &mesos.Value_Ranges{Range: []*mesos.Value_Range{{Begin: proto.Uint64(80), End: proto.Uint64(80)}}}})
			return []*mesos.OfferID{o.GetId()}, []*mesos.TaskInfo{ti}
		}, []result{{mesos.TaskState_TASK_ERROR, mesos.TaskStatus_REASON_TASK_INVALID, "more resources"}}},
		{"inconsistent executors", sc, func(o *mesos.Offer) ([]*mesos.OfferID, []*mesos.TaskInfo) {
			mk := func(id, cmd string) *mesos.TaskInfo {
				ti := commandTask(id, o.GetAgentId(), 0.1, 32)
				ti.Command = nil
				ti.Executor = &mesos.ExecutorInfo{ExecutorId: &mesos.ExecutorID{Value: proto.String("shared")}, Command: &mesos.CommandInfo{Value: proto.String(cmd)}}
				return ti
			}
			return []*mesos.OfferID{o.GetId()}, []*mesos.TaskInfo{mk("e1", "run"), mk("e2", "different")}
		}, []result{{mesos.TaskState_TASK_STAGING, 0, ""}, {mesos.TaskState_TASK_ERROR, mesos.TaskStatus_REASON_TASK_INVALID, "not compatible"}}},
	}
	var last *mesos.Offer
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The validator holds the agent's offer; the other framework
			// gets it only when the test needs a foreign offer.
			if last == nil {
				last = sc.offer()
			}
			ids, tasks := tt.build(last)
			tt.fw.launch(ids, tasks...)
			for i, want := range tt.want {
				if want.state == mesos.TaskState_TASK_STAGING {
					h.m.mu.Lock()
					fw := h.m.frameworks[tt.fw.fwID]
					ok := fw != nil && fw.tasks[tasks[i].GetTaskId().GetValue()] != nil
					h.m.mu.Unlock()
					if !ok {
						t.Fatalf("task %d (%s) was not launched", i, tasks[i].GetTaskId().GetValue())
					}
					continue
				}
				st := tt.fw.next(scheduler.Event_UPDATE).GetUpdate().GetStatus()
				if st.GetState() != want.state || st.GetReason() != want.reason || !strings.Contains(st.GetMessage(), want.msg) {
					t.Fatalf("update %s %s %q, want %s %s containing %q", st.GetState(), st.GetReason(), st.GetMessage(), want.state, want.reason, want.msg)
				}
				if st.GetUuid() != nil || st.GetSource() != mesos.TaskStatus_SOURCE_MASTER {
					t.Fatalf("master-made update with uuid or wrong source: %v", st)
				}
			}
			// An offer the validator used comes back as a new one with
			// whatever was not launched (filters 0).
			for _, id := range ids {
				if tt.fw == sc && id.GetValue() == last.GetId().GetValue() {
					last = nil
					break
				}
			}
		})
	}
}

func TestTaskLifecycleWithFakeAgent(t *testing.T) {
	for _, c := range []codec.Codec{codec.JSON, codec.Protobuf} {
		t.Run(c.MediaType(), func(t *testing.T) {
			h := startMaster(t)
			agent := h.registerAgent(agentRegister("node1", 5051))
			sc := h.subscribe(frameworkInfo("lifecycle"), c)
			o := sc.offer()
			sc.launch([]*mesos.OfferID{o.GetId()}, commandTask("web-1", o.GetAgentId(), 1, 512))

			run := agent.next(agentpb.Event_RUN_TASK).GetRunTask()
			if run.GetFramework().GetId().GetValue() != sc.fwID || run.GetTask().GetTaskId().GetValue() != "web-1" {
				t.Fatalf("RUN_TASK %v", run)
			}
			for _, r := range run.GetTask().GetResources() {
				if r.GetAllocationInfo().GetRole() != "*" {
					t.Fatalf("task resources sent to the agent lack allocation_info: %v", r)
				}
			}
			state := getJSON(t, h.base+"/master/state")
			fw := state["frameworks"].([]any)[0].(map[string]any)
			if used := fw["used_resources"].(map[string]any); used["cpus"] != 1.0 || used["mem"] != 512.0 {
				t.Fatalf("used_resources %v", used)
			}

			for _, st := range []mesos.TaskState{mesos.TaskState_TASK_STARTING, mesos.TaskState_TASK_RUNNING} {
				id := agent.update(sc.fwID, "web-1", st)
				up := sc.next(scheduler.Event_UPDATE).GetUpdate().GetStatus()
				if up.GetState() != st || !bytes.Equal(up.GetUuid(), id) || up.GetAgentId().GetValue() != agent.id {
					t.Fatalf("UPDATE %v, want %s with the agent's uuid", up, st)
				}
				sc.ack(up)
				ack := agent.next(agentpb.Event_ACKNOWLEDGE).GetAcknowledge()
				if !bytes.Equal(ack.GetUuid(), id) || ack.GetTaskId().GetValue() != "web-1" || ack.GetFrameworkId().GetValue() != sc.fwID {
					t.Fatalf("ACKNOWLEDGE %v", ack)
				}
			}
			metrics := getJSON(t, h.base+"/metrics/snapshot")
			if metrics["master/tasks_running"] != 1.0 || metrics["master/cpus_used"] != 1.0 || metrics["master/elected"] != 1.0 {
				t.Fatalf("metrics %v", metrics)
			}
			tasks := getJSON(t, h.base+"/master/tasks")["tasks"].([]any)
			task := tasks[0].(map[string]any)
			if task["state"] != "TASK_RUNNING" || task["slave_id"] != agent.id || len(task["statuses"].([]any)) != 2 {
				t.Fatalf("task %v", fmtJSON(task))
			}
			sb := task["sandbox"].(map[string]any)
			if sb["agent_address"] != "127.0.0.1:5051" || sb["path"] != "/frameworks/"+sc.fwID+"/executors/web-1/runs/latest" || sb["container_id"] != "c-web-1" {
				t.Fatalf("sandbox %v", sb)
			}

			// Kill: the agent is told; the task ends KILLED.
			sc.mustCall(&scheduler.Call{Type: scheduler.Call_KILL.Enum(), Kill: &scheduler.Call_Kill{TaskId: &mesos.TaskID{Value: proto.String("web-1")}}})
			if k := agent.next(agentpb.Event_KILL_TASK).GetKillTask(); k.GetTaskId().GetValue() != "web-1" {
				t.Fatalf("KILL_TASK %v", k)
			}
			agent.update(sc.fwID, "web-1", mesos.TaskState_TASK_KILLED)
			up := sc.next(scheduler.Event_UPDATE).GetUpdate().GetStatus()
			// Terminal: the resources come back before the acknowledgement.
			o2 := sc.offer()
			if got := o2.GetResources(); len(got) == 0 {
				t.Fatal("empty offer")
			}
			sc.ack(up)
			agent.next(agentpb.Event_ACKNOWLEDGE)
			state = getJSON(t, h.base+"/master/state")
			fw = state["frameworks"].([]any)[0].(map[string]any)
			if n := len(fw["tasks"].([]any)); n != 0 {
				t.Fatalf("%d active tasks after the terminal ack", n)
			}
			done := fw["completed_tasks"].([]any)
			if len(done) != 1 || done[0].(map[string]any)["state"] != "TASK_KILLED" {
				t.Fatalf("completed_tasks %v", fmtJSON(done))
			}
			slave := state["slaves"].([]any)[0].(map[string]any)
			if slave["used_resources"].(map[string]any)["cpus"] != 0.0 || slave["pid"] != "slave(1)@127.0.0.1:5051" || slave["active"] != true {
				t.Fatalf("slave %v", fmtJSON(slave))
			}
			metrics = getJSON(t, h.base+"/metrics/snapshot")
			if metrics["master/tasks_killed"] != 1.0 || metrics["master/tasks_running"] != 0.0 {
				t.Fatalf("metrics after kill %v", metrics)
			}
			resp, err := http.Get(h.base + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(body), "mesolite_master_tasks_killed_total 1") || !strings.Contains(string(body), "mesolite_master_cpus_total 4") {
				t.Fatalf("prometheus output lacks master metrics:\n%s", body)
			}
		})
	}
}

func TestKillAndReconcile(t *testing.T) {
	h := startMaster(t)
	agent := h.registerAgent(agentRegister("node1", 5051))
	sc := h.subscribe(frameworkInfo("reconciler"), codec.JSON)
	pa := h.subscribe(frameworkInfo("pa", mesos.FrameworkInfo_Capability_PARTITION_AWARE), codec.JSON)
	o := sc.offer()
	sc.launch([]*mesos.OfferID{o.GetId()}, commandTask("known", o.GetAgentId(), 1, 64))
	agent.next(agentpb.Event_RUN_TASK)
	agent.update(sc.fwID, "known", mesos.TaskState_TASK_RUNNING)
	sc.ack(sc.skipUntil(scheduler.Event_UPDATE).GetUpdate().GetStatus())

	tid := func(s string) *mesos.TaskID { return &mesos.TaskID{Value: proto.String(s)} }
	aid := &mesos.AgentID{Value: proto.String(agent.id)}
	tests := []struct {
		name   string
		fw     *schedClient
		tasks  []*scheduler.Call_Reconcile_Task
		states []mesos.TaskState
		msg    string
	}{
		{"known task", sc, []*scheduler.Call_Reconcile_Task{{TaskId: tid("known")}}, []mesos.TaskState{mesos.TaskState_TASK_RUNNING}, "Latest task state"},
		{"unknown task", sc, []*scheduler.Call_Reconcile_Task{{TaskId: tid("ghost")}}, []mesos.TaskState{mesos.TaskState_TASK_LOST}, "unknown"},
		{"unknown task, partition aware", pa, []*scheduler.Call_Reconcile_Task{{TaskId: tid("ghost")}}, []mesos.TaskState{mesos.TaskState_TASK_UNKNOWN}, "unknown"},
		{"unknown to a live agent, partition aware", pa, []*scheduler.Call_Reconcile_Task{{TaskId: tid("ghost"), AgentId: aid}}, []mesos.TaskState{mesos.TaskState_TASK_GONE}, "unknown to the agent"},
		{"implicit", sc, nil, []mesos.TaskState{mesos.TaskState_TASK_RUNNING}, "Latest task state"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fw.mustCall(&scheduler.Call{Type: scheduler.Call_RECONCILE.Enum(), Reconcile: &scheduler.Call_Reconcile{Tasks: tt.tasks}})
			for _, want := range tt.states {
				st := tt.fw.skipUntil(scheduler.Event_UPDATE).GetUpdate().GetStatus()
				if st.GetState() != want || st.GetReason() != mesos.TaskStatus_REASON_RECONCILIATION || st.Uuid != nil || !strings.Contains(st.GetMessage(), tt.msg) {
					t.Fatalf("reconciliation answer %v, want %s", st, want)
				}
			}
			tt.fw.quiet(scheduler.Event_UPDATE, 50*time.Millisecond)
		})
	}

	// KILL of an unknown task: TASK_LOST at once.
	sc.mustCall(&scheduler.Call{Type: scheduler.Call_KILL.Enum(), Kill: &scheduler.Call_Kill{TaskId: tid("ghost")}})
	st := sc.next(scheduler.Event_UPDATE).GetUpdate().GetStatus()
	if st.GetState() != mesos.TaskState_TASK_LOST || st.GetTaskId().GetValue() != "ghost" {
		t.Fatalf("kill of unknown task: %v", st)
	}

	// MESSAGE goes to the executor through the agent, and back.
	sc.mustCall(&scheduler.Call{Type: scheduler.Call_MESSAGE.Enum(), Message: &scheduler.Call_Message{
		AgentId: aid, ExecutorId: &mesos.ExecutorID{Value: proto.String("known")}, Data: []byte("ping")}})
	if msg := agent.next(agentpb.Event_MESSAGE).GetMessage(); string(msg.GetData()) != "ping" || msg.GetFrameworkId().GetValue() != sc.fwID {
		t.Fatalf("MESSAGE %v", msg)
	}
	status, body := agent.call(&agentpb.Call{Type: agentpb.Call_MESSAGE.Enum(), Message: &agentpb.Call_Message{
		FrameworkId: &mesos.FrameworkID{Value: proto.String(sc.fwID)}, ExecutorId: &mesos.ExecutorID{Value: proto.String("known")}, Data: []byte("pong")}})
	if status != http.StatusAccepted {
		t.Fatalf("agent MESSAGE: %d %s", status, body)
	}
	if msg := sc.next(scheduler.Event_MESSAGE).GetMessage(); string(msg.GetData()) != "pong" || msg.GetAgentId().GetValue() != agent.id {
		t.Fatalf("framework MESSAGE %v", msg)
	}

	// SHUTDOWN of an executor is forwarded.
	sc.mustCall(&scheduler.Call{Type: scheduler.Call_SHUTDOWN.Enum(), Shutdown: &scheduler.Call_Shutdown{
		ExecutorId: &mesos.ExecutorID{Value: proto.String("known")}, AgentId: aid}})
	agent.next(agentpb.Event_SHUTDOWN_EXECUTOR)

	// EXECUTOR_EXITED becomes FAILURE.
	status, body = agent.call(&agentpb.Call{Type: agentpb.Call_EXECUTOR_EXITED.Enum(), ExecutorExited: &agentpb.Call_ExecutorExited{
		FrameworkId: &mesos.FrameworkID{Value: proto.String(sc.fwID)}, ExecutorId: &mesos.ExecutorID{Value: proto.String("known")}, Status: proto.Int32(9)}})
	if status != http.StatusAccepted {
		t.Fatalf("EXECUTOR_EXITED: %d %s", status, body)
	}
	if f := sc.next(scheduler.Event_FAILURE).GetFailure(); f.GetStatus() != 9 || f.GetExecutorId().GetValue() != "known" {
		t.Fatalf("FAILURE %v", f)
	}
}

func TestLaunchGroupAndExecutors(t *testing.T) {
	h := startMaster(t)
	agent := h.registerAgent(agentRegister("node1", 5051))
	sc := h.subscribe(frameworkInfo("grouper"), codec.JSON)
	o := sc.offer()
	exec := &mesos.ExecutorInfo{
		Type:       mesos.ExecutorInfo_DEFAULT.Enum(),
		ExecutorId: &mesos.ExecutorID{Value: proto.String("default-1")},
		Resources:  []*mesos.Resource{scalarRes("cpus", 0.1), scalarRes("mem", 32)},
	}
	t1, t2 := commandTask("g1", o.GetAgentId(), 0.5, 64), commandTask("g2", o.GetAgentId(), 0.5, 64)
	sc.mustCall(&scheduler.Call{Type: scheduler.Call_ACCEPT.Enum(), Accept: &scheduler.Call_Accept{
		OfferIds: []*mesos.OfferID{o.GetId()},
		Operations: []*mesos.Offer_Operation{{Type: mesos.Offer_Operation_LAUNCH_GROUP.Enum(), LaunchGroup: &mesos.Offer_Operation_LaunchGroup{
			Executor: exec, TaskGroup: &mesos.TaskGroupInfo{Tasks: []*mesos.TaskInfo{t1, t2}}}}},
		Filters: &mesos.Filters{RefuseSeconds: proto.Float64(0)},
	}})
	g := agent.next(agentpb.Event_RUN_TASK_GROUP).GetRunTaskGroup()
	if len(g.GetTaskGroup().GetTasks()) != 2 || g.GetExecutor().GetFrameworkId().GetValue() != sc.fwID {
		t.Fatalf("RUN_TASK_GROUP %v", g)
	}
	// The executor is known now: the next offer lists it, and its
	// resources count as used.
	o2 := sc.offer()
	if len(o2.GetExecutorIds()) != 1 || o2.GetExecutorIds()[0].GetValue() != "default-1" {
		t.Fatalf("executor_ids %v", o2.GetExecutorIds())
	}
	got := 0.0
	for _, r := range o2.GetResources() {
		if r.GetName() == "cpus" {
			got = r.GetScalar().GetValue()
		}
	}
	if got != 2.9 {
		t.Fatalf("offered cpus %v, want 4 - 1 - 0.1", got)
	}
	// A group with a task that has its own executor is refused whole.
	bad := commandTask("g3", o.GetAgentId(), 0.1, 32)
	bad.Executor = exec
	sc.mustCall(&scheduler.Call{Type: scheduler.Call_ACCEPT.Enum(), Accept: &scheduler.Call_Accept{
		OfferIds: []*mesos.OfferID{o2.GetId()},
		Operations: []*mesos.Offer_Operation{{Type: mesos.Offer_Operation_LAUNCH_GROUP.Enum(), LaunchGroup: &mesos.Offer_Operation_LaunchGroup{
			Executor: exec, TaskGroup: &mesos.TaskGroupInfo{Tasks: []*mesos.TaskInfo{commandTask("g4", o.GetAgentId(), 0.1, 32), bad}}}}},
	}})
	for range 2 {
		st := sc.next(scheduler.Event_UPDATE).GetUpdate().GetStatus()
		if st.GetState() != mesos.TaskState_TASK_ERROR || st.GetReason() != mesos.TaskStatus_REASON_TASK_GROUP_INVALID {
			t.Fatalf("%v", st)
		}
	}
	state := getJSON(t, h.base+"/master/state")
	fw := state["frameworks"].([]any)[0].(map[string]any)
	if ex := fw["executors"].([]any); len(ex) != 1 || ex[0].(map[string]any)["executor_id"] != "default-1" {
		t.Fatalf("executors %v", fmtJSON(ex))
	}
}
