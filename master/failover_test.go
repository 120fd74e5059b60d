package master

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/agentpb"
	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/internal/testutil"
	"google.golang.org/protobuf/proto"
)

// frameworkState returns a framework's entry in /master/state and whether
// it is among the completed ones.
func frameworkState(t *testing.T, base, id string) (map[string]any, bool) {
	t.Helper()
	st := getJSON(t, base+"/master/state")
	for _, key := range []string{"frameworks", "completed_frameworks"} {
		for _, f := range st[key].([]any) {
			if fw := f.(map[string]any); fw["id"] == id {
				return fw, key == "completed_frameworks"
			}
		}
	}
	return nil, false
}

func TestFrameworkFailover(t *testing.T) {
	h := startMaster(t)
	agent := h.registerAgent(agentRegister("node1", 5051))
	info := frameworkInfo("durable")
	info.FailoverTimeout = proto.Float64(60)
	sc := h.subscribe(info, codec.JSON)
	o := sc.offer()
	sc.launch([]*mesos.OfferID{o.GetId()}, commandTask("keep", o.GetAgentId(), 1, 64))
	agent.next(agentpb.Event_RUN_TASK)

	// The scheduler goes away; its task keeps running.
	sc.close()
	testutil.Eventually(t, eventTimeout, 10*time.Millisecond, func() bool {
		fw, _ := frameworkState(t, h.base, sc.fwID)
		return fw != nil && fw["active"] == false
	}, "framework marked inactive")
	// An update while it is away waits for it.
	uuid := agent.update(sc.fwID, "keep", mesos.TaskState_TASK_RUNNING)
	h.advance(59 * time.Second)

	// Back within failover_timeout with its id: same framework, the
	// queued update, its task.
	info.Id = &mesos.FrameworkID{Value: proto.String(sc.fwID)}
	sc2 := h.subscribe(info, codec.Protobuf)
	if sc2.fwID != sc.fwID {
		t.Fatalf("re-subscribed as %s, want %s", sc2.fwID, sc.fwID)
	}
	up := sc2.next(scheduler.Event_UPDATE).GetUpdate().GetStatus()
	if string(up.GetUuid()) != string(uuid) || up.GetState() != mesos.TaskState_TASK_RUNNING {
		t.Fatalf("queued update %v", up)
	}
	if r := agent.next(agentpb.Event_RECONCILE).GetReconcile(); r.GetFrameworkId().GetValue() != sc.fwID {
		t.Fatalf("agent RECONCILE %v", r)
	}
	fw, _ := frameworkState(t, h.base, sc.fwID)
	if fw["active"] != true || len(fw["tasks"].([]any)) != 1 {
		t.Fatalf("framework after failover: %v", fmtJSON(fw))
	}

	// A second connection with the same id takes over; the first is told.
	sc3 := h.subscribe(info, codec.JSON)
	if e := sc2.next(scheduler.Event_ERROR).GetError(); !strings.Contains(e.GetMessage(), "failed over") {
		t.Fatalf("old connection got %v", e)
	}
	select {
	case <-sc2.closed:
	case <-time.After(eventTimeout):
		t.Fatal("old stream not closed after takeover")
	}
	// Mesos answers a stale stream id with 400.
	if status, _ := sc2.call(&scheduler.Call{Type: scheduler.Call_REVIVE.Enum()}); status != http.StatusBadRequest {
		t.Fatalf("call on the old stream id: %d, want 400", status)
	}

	// Gone for longer than failover_timeout: torn down.
	sc3.close()
	testutil.Eventually(t, eventTimeout, 10*time.Millisecond, func() bool {
		fw, _ := frameworkState(t, h.base, sc.fwID)
		return fw != nil && fw["active"] == false
	}, "framework marked inactive")
	h.advance(61 * time.Second)
	if ev := agent.next(agentpb.Event_SHUTDOWN_FRAMEWORK).GetShutdownFramework(); ev.GetFrameworkId().GetValue() != sc.fwID {
		t.Fatalf("SHUTDOWN_FRAMEWORK %v", ev)
	}
	fw, completed := frameworkState(t, h.base, sc.fwID)
	if !completed {
		t.Fatalf("framework not completed after failover timeout: %v", fmtJSON(fw))
	}
	if done := fw["completed_tasks"].([]any); len(done) != 1 || done[0].(map[string]any)["state"] != "TASK_KILLED" {
		t.Fatalf("completed tasks %v", fmtJSON(done))
	}

	// The id may not come back.
	late := openSubscribe(t, h.base, info, codec.JSON)
	if late.resp.StatusCode != http.StatusOK {
		t.Fatalf("late subscribe: %s", late.resp.Status)
	}
	if e := late.next(scheduler.Event_ERROR).GetError(); e.GetMessage() != "Framework has been removed" {
		t.Fatalf("late subscribe: %v", e)
	}
	// Updates from the agent for the removed framework make it shut the
	// framework down again.
	agent.update(sc.fwID, "keep", mesos.TaskState_TASK_RUNNING)
	agent.next(agentpb.Event_SHUTDOWN_FRAMEWORK)
}

func TestTeardownAndNoFailoverTimeout(t *testing.T) {
	h := startMaster(t)
	agent := h.registerAgent(agentRegister("node1", 5051))
	sc := h.subscribe(frameworkInfo("brief"), codec.JSON)
	o := sc.offer()
	sc.launch([]*mesos.OfferID{o.GetId()}, commandTask("t", o.GetAgentId(), 1, 64))
	agent.next(agentpb.Event_RUN_TASK)
	sc.mustCall(&scheduler.Call{Type: scheduler.Call_TEARDOWN.Enum()})
	agent.next(agentpb.Event_SHUTDOWN_FRAMEWORK)
	select {
	case <-sc.closed:
	case <-time.After(eventTimeout):
		t.Fatal("stream not closed after TEARDOWN")
	}
	if _, completed := frameworkState(t, h.base, sc.fwID); !completed {
		t.Fatal("torn-down framework not completed")
	}

	// failover_timeout 0: a dropped connection tears it down at once.
	sc2 := h.subscribe(frameworkInfo("fragile"), codec.JSON)
	sc2.close()
	testutil.Eventually(t, eventTimeout, 10*time.Millisecond, func() bool {
		_, completed := frameworkState(t, h.base, sc2.fwID)
		return completed
	}, "framework without failover timeout removed on disconnect")
}

func TestAgentReregistrationReconciles(t *testing.T) {
	h := startMaster(t)
	agent := h.registerAgent(agentRegister("node1", 5051))
	sc := h.subscribe(frameworkInfo("tasks"), codec.JSON)
	pa := h.subscribe(frameworkInfo("pa", mesos.FrameworkInfo_Capability_PARTITION_AWARE), codec.JSON)
	pa.mustCall(&scheduler.Call{Type: scheduler.Call_SUPPRESS.Enum()})
	o := sc.offer()
	sc.launch([]*mesos.OfferID{o.GetId()}, commandTask("reported", o.GetAgentId(), 1, 64), commandTask("forgotten", o.GetAgentId(), 1, 64))
	agent.next(agentpb.Event_RUN_TASK)
	agent.next(agentpb.Event_RUN_TASK)
	agent.disconnect(h.m)

	// The agent comes back reporting one of the two, and a task of the
	// partition-aware framework the master never launched (adopted).
	call := agentRegister("node1", 5051)
	call.AgentId = &mesos.AgentID{Value: proto.String(agent.id)}
	aid := call.AgentId
	call.Register.Tasks = []*mesos.Task{
		{Name: proto.String("reported"), TaskId: &mesos.TaskID{Value: proto.String("reported")}, FrameworkId: &mesos.FrameworkID{Value: proto.String(sc.fwID)},
			AgentId: aid, State: mesos.TaskState_TASK_RUNNING.Enum(), Resources: []*mesos.Resource{scalarRes("cpus", 1), scalarRes("mem", 64)}},
		{Name: proto.String("stray"), TaskId: &mesos.TaskID{Value: proto.String("stray")}, FrameworkId: &mesos.FrameworkID{Value: proto.String(pa.fwID)},
			AgentId: aid, State: mesos.TaskState_TASK_RUNNING.Enum(), Resources: []*mesos.Resource{scalarRes("cpus", 0.5), scalarRes("mem", 32)}},
	}
	call.Register.Frameworks = []*mesos.FrameworkInfo{{User: proto.String("tester"), Name: proto.String("pa"), Id: &mesos.FrameworkID{Value: proto.String(pa.fwID)}}}
	// The agent's command executor for "reported": no framework id, its
	// own small allowance that the master does not book, and a sandbox.
	call.Register.Executors = []*mesos.ExecutorInfo{{ExecutorId: &mesos.ExecutorID{Value: proto.String("reported")},
		Resources: []*mesos.Resource{scalarRes("cpus", 0.1), scalarRes("mem", 32)}}}
	call.Register.Containers = []*agentpb.Call_ExecutorContainer{{FrameworkId: &mesos.FrameworkID{Value: proto.String(sc.fwID)},
		ExecutorId: &mesos.ExecutorID{Value: proto.String("reported")}, ContainerId: &mesos.ContainerID{Value: proto.String("c1")},
		Directory: proto.String("/var/lib/agent/slaves/x/frameworks/y/executors/reported/runs/c1")}}
	agent2 := h.registerAgent(call)
	if agent2.id != agent.id {
		t.Fatalf("re-registered with id %s, want %s", agent2.id, agent.id)
	}
	st := sc.next(scheduler.Event_UPDATE).GetUpdate().GetStatus()
	if st.GetTaskId().GetValue() != "forgotten" || st.GetState() != mesos.TaskState_TASK_LOST || st.GetReason() != mesos.TaskStatus_REASON_TASK_UNKNOWN {
		t.Fatalf("update for the forgotten task: %v", st)
	}
	fw, _ := frameworkState(t, h.base, pa.fwID)
	tasks := fw["tasks"].([]any)
	if len(tasks) != 1 || tasks[0].(map[string]any)["id"] != "stray" || tasks[0].(map[string]any)["state"] != "TASK_RUNNING" {
		t.Fatalf("adopted tasks %v", fmtJSON(tasks))
	}
	// Reported tasks hold their resources; the command executor's allowance
	// is not booked.
	state := getJSON(t, h.base+"/master/state")
	slave := state["slaves"].([]any)[0].(map[string]any)
	if got := slave["used_resources"].(map[string]any)["cpus"]; got != 1.5 {
		t.Fatalf("used cpus after re-registration: %v", got)
	}
	fw, _ = frameworkState(t, h.base, sc.fwID)
	task := fw["tasks"].([]any)[0].(map[string]any)
	sb := task["sandbox"].(map[string]any)
	if task["id"] != "reported" || sb["directory"] != "/var/lib/agent/slaves/x/frameworks/y/executors/reported/runs/c1" || sb["container_id"] != "c1" {
		t.Fatalf("task after re-registration: %v", fmtJSON(task))
	}
	if ex := fw["executors"].([]any); len(ex) != 0 {
		t.Fatalf("command executor booked as an executor: %v", fmtJSON(ex))
	}
}

func TestAgentRemovedAfterTimeout(t *testing.T) {
	h := startMaster(t, func(cfg *Config) {
		cfg.AgentPingTimeout = 10 * time.Second
		cfg.MaxAgentPingTimeouts = 3
	})
	agent := h.registerAgent(agentRegister("node1", 5051))
	sc := h.subscribe(frameworkInfo("plain"), codec.JSON)
	pa := h.subscribe(frameworkInfo("pa", mesos.FrameworkInfo_Capability_PARTITION_AWARE), codec.JSON)
	o := sc.offer()
	sc.launch([]*mesos.OfferID{o.GetId()}, commandTask("a", o.GetAgentId(), 1, 64))
	o2 := pa.offer()
	pa.launch([]*mesos.OfferID{o2.GetId()}, commandTask("b", o2.GetAgentId(), 1, 64))
	agent.next(agentpb.Event_RUN_TASK)
	agent.next(agentpb.Event_RUN_TASK)
	agent.disconnect(h.m)

	h.advance(29 * time.Second)
	sc.quiet(scheduler.Event_UPDATE, 100*time.Millisecond)
	h.advance(2 * time.Second)
	st := sc.next(scheduler.Event_UPDATE).GetUpdate().GetStatus()
	if st.GetState() != mesos.TaskState_TASK_LOST || st.GetReason() != mesos.TaskStatus_REASON_AGENT_REMOVED {
		t.Fatalf("non-partition-aware task: %v", st)
	}
	st = pa.next(scheduler.Event_UPDATE).GetUpdate().GetStatus()
	if st.GetState() != mesos.TaskState_TASK_UNREACHABLE || st.GetUnreachableTime() == nil {
		t.Fatalf("partition-aware task: %v", st)
	}
	if f := sc.next(scheduler.Event_FAILURE).GetFailure(); f.GetAgentId().GetValue() != agent.id || f.ExecutorId != nil {
		t.Fatalf("FAILURE %v", f)
	}
	state := getJSON(t, h.base+"/master/state")
	if n := len(state["slaves"].([]any)); n != 0 {
		t.Fatalf("%d slaves after removal", n)
	}
	metrics := getJSON(t, h.base+"/metrics/snapshot")
	if metrics["master/slave_removals"] != 1.0 || metrics["master/tasks_lost"] != 1.0 {
		t.Fatalf("metrics %v", metrics)
	}
}

func TestRestartKeepsAgentAndFrameworkIDs(t *testing.T) {
	dir := t.TempDir()
	cfg := func() Config {
		c := DefaultConfig()
		c.IP, c.Hostname, c.WorkDir = "127.0.0.1", "127.0.0.1", dir
		c.Logger = testLogger(t)
		c.AllocationInterval = 20 * time.Millisecond
		return c
	}
	m1, base1, stop1 := runMaster(t, cfg())
	testutil.Eventually(t, eventTimeout, 10*time.Millisecond, m1.isLeader, "first master elected")
	agent := registerAgentAt(t, base1, agentRegister("node1", 5051))
	info := frameworkInfo("survivor")
	info.FailoverTimeout = proto.Float64(3600)
	sc := subscribeTo(t, base1, info, codec.JSON)
	doomed := subscribeTo(t, base1, frameworkInfo("doomed"), codec.JSON)
	doomed.mustCall(&scheduler.Call{Type: scheduler.Call_TEARDOWN.Enum()})
	testutil.Eventually(t, eventTimeout, 10*time.Millisecond, func() bool {
		_, completed := frameworkState(t, base1, doomed.fwID)
		return completed
	}, "teardown recorded")
	stop1()

	m2, base2, _ := runMaster(t, cfg())
	testutil.Eventually(t, eventTimeout, 10*time.Millisecond, m2.isLeader, "second master elected")
	if m2.ID() == m1.ID() {
		t.Fatal("a restarted master keeps its id")
	}
	slaves := getJSON(t, base2+"/master/slaves")
	rec := slaves["recovered_slaves"].([]any)
	if len(rec) != 1 || rec[0].(map[string]any)["id"] != agent.id {
		t.Fatalf("recovered_slaves %v", fmtJSON(rec))
	}
	if fw, _ := frameworkState(t, base2, sc.fwID); fw == nil || fw["recovered"] != true {
		t.Fatalf("framework not recovered: %v", fmtJSON(fw))
	}

	call := agentRegister("node1", 5051)
	call.AgentId = &mesos.AgentID{Value: proto.String(agent.id)}
	agent2 := registerAgentAt(t, base2, call)
	if agent2.id != agent.id {
		t.Fatalf("agent id %s after restart, want %s", agent2.id, agent.id)
	}
	info.Id = &mesos.FrameworkID{Value: proto.String(sc.fwID)}
	sc2 := subscribeTo(t, base2, info, codec.JSON)
	if sc2.fwID != sc.fwID {
		t.Fatalf("framework id %s after restart, want %s", sc2.fwID, sc.fwID)
	}
	fresh := subscribeTo(t, base2, frameworkInfo("fresh"), codec.JSON)
	if !strings.HasPrefix(fresh.fwID, m2.ID()+"-") {
		t.Fatalf("new framework id %s lacks the new master's id %s", fresh.fwID, m2.ID())
	}
	again := openSubscribe(t, base2, &mesos.FrameworkInfo{User: proto.String("u"), Name: proto.String("doomed"), Id: &mesos.FrameworkID{Value: proto.String(doomed.fwID)}}, codec.JSON)
	if e := again.next(scheduler.Event_ERROR).GetError(); e.GetMessage() != "Framework has been removed" {
		t.Fatalf("torn-down framework re-subscribing after restart: %v", e)
	}
}

func TestRecoveredAgentRemovedIfItDoesNotReturn(t *testing.T) {
	dir := t.TempDir()
	clk := newFakeClock()
	cfg := DefaultConfig()
	cfg.IP, cfg.Hostname, cfg.WorkDir, cfg.Clock = "127.0.0.1", "127.0.0.1", dir, clk
	cfg.Logger = testLogger(t)
	m1, base1, stop1 := runMaster(t, cfg)
	testutil.Eventually(t, eventTimeout, 10*time.Millisecond, m1.isLeader, "elected")
	registerAgentAt(t, base1, agentRegister("node1", 5051))
	stop1()

	m2, base2, _ := runMaster(t, cfg)
	testutil.Eventually(t, eventTimeout, 10*time.Millisecond, m2.isLeader, "elected")
	clk.Advance(cfg.AgentReregisterTimeout + time.Second)
	m2.housekeeping()
	if rec := getJSON(t, base2+"/master/slaves")["recovered_slaves"].([]any); len(rec) != 0 {
		t.Fatalf("recovered agent kept past agent_reregister_timeout: %v", fmtJSON(rec))
	}
}

func TestAgentProtocolErrors(t *testing.T) {
	h := startMaster(t)
	agent := h.registerAgent(agentRegister("node1", 5051))
	pb := func(c *agentpb.Call) []byte {
		data, err := codec.Protobuf.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	oldVersion := agentRegister("node2", 5052)
	oldVersion.Register.ProtocolVersion = proto.Uint32(2)
	badRes := agentRegister("node3", 5053, &mesos.Resource{Name: proto.String("cpus"), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(-4)}})
	update := &agentpb.Call{Type: agentpb.Call_UPDATE_RESOURCES.Enum(), AgentId: &mesos.AgentID{Value: proto.String(agent.id)},
		UpdateResources: &agentpb.Call_UpdateResources{Resources: []*mesos.Resource{scalarRes("cpus", 8), scalarRes("mem", 1024)}}}
	noAgent := proto.Clone(update).(*agentpb.Call)
	noAgent.AgentId = nil
	tests := []struct {
		name     string
		body     []byte
		stream   string
		want     int
		wantBody string
	}{
		{"newer protocol", pb(oldVersion), "", http.StatusBadRequest, "protocol version 2"},
		{"invalid resources", pb(badRes), "", http.StatusBadRequest, "resources"},
		{"no register", pb(&agentpb.Call{Type: agentpb.Call_REGISTER.Enum()}), "", http.StatusBadRequest, "register"},
		{"unknown call", pb(&agentpb.Call{}), agent.streamID, http.StatusBadRequest, "call type"},
		{"no agent id", pb(noAgent), agent.streamID, http.StatusBadRequest, "agent_id"},
		{"no stream id", pb(update), "", http.StatusBadRequest, "Mesos-Stream-Id"},
		{"wrong stream id", pb(update), "old-stream", http.StatusForbidden, "stream ID"},
		{"unknown agent", pb(&agentpb.Call{Type: agentpb.Call_UPDATE_RESOURCES.Enum(), AgentId: &mesos.AgentID{Value: proto.String("nobody")},
			UpdateResources: &agentpb.Call_UpdateResources{}}), agent.streamID, http.StatusForbidden, "not registered"},
		{"update resources", pb(update), agent.streamID, http.StatusAccepted, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := http.Header{}
			if tt.stream != "" {
				hdr.Set("Mesos-Stream-Id", tt.stream)
			}
			status, body, _ := post(t, h.base+"/api/v1/agent", codec.MediaTypeProtobuf, tt.body, hdr)
			if status != tt.want || !strings.Contains(body, tt.wantBody) {
				t.Fatalf("%d %q, want %d containing %q", status, body, tt.want, tt.wantBody)
			}
		})
	}
	sc := h.subscribe(frameworkInfo("sees-8"), codec.JSON)
	if cpus := sc.offer().GetResources()[0]; cpus.GetName() != "cpus" || cpus.GetScalar().GetValue() != 8 {
		t.Fatalf("offer after UPDATE_RESOURCES: %v", cpus)
	}
}
