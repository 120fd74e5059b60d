package master

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/agentpb"
	"github.com/mesolite/mesolite/api/v1/codec"
	masterpb "github.com/mesolite/mesolite/api/v1/master"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/recordio"
	"github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/httpauth"
	"github.com/mesolite/mesolite/internal/testutil"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

var codecs = []codec.Codec{codec.JSON, codec.Protobuf}

// opPost sends an operator call encoded with c to path, asking for an
// answer in accept.
func opPost(t *testing.T, url string, c, accept codec.Codec, call *masterpb.Call, header http.Header) (int, []byte, http.Header) {
	t.Helper()
	body, err := c.Marshal(call)
	if err != nil {
		t.Fatal(err)
	}
	h := header.Clone()
	if h == nil {
		h = http.Header{}
	}
	h.Set("Accept", accept.MediaType())
	status, resp, rh := post(t, url, c.MediaType(), body, h)
	return status, []byte(resp), rh
}

// opCall sends call to /api/v1 in c and decodes the Response, which must
// be a 200 in c.
func opCall(t *testing.T, base string, c codec.Codec, call *masterpb.Call) *masterpb.Response {
	t.Helper()
	status, body, h := opPost(t, base+"/api/v1", c, c, call, nil)
	if status != http.StatusOK {
		t.Fatalf("%s: %d %s", call.GetType(), status, body)
	}
	if ct := h.Get("Content-Type"); ct != c.MediaType() {
		t.Fatalf("%s: Content-Type %q, want %q", call.GetType(), ct, c.MediaType())
	}
	resp := &masterpb.Response{}
	if err := c.Unmarshal(body, resp); err != nil {
		t.Fatalf("%s: %v", call.GetType(), err)
	}
	return resp
}

func opType(typ masterpb.Call_Type) *masterpb.Call { return &masterpb.Call{Type: typ.Enum()} }

// mustOp sends a call that changes the cluster and expects an empty 200.
func mustOp(t *testing.T, base string, call *masterpb.Call, header http.Header) {
	t.Helper()
	status, body, _ := opPost(t, base+"/api/v1", codec.JSON, codec.JSON, call, header)
	if status != http.StatusOK || len(body) != 0 {
		t.Fatalf("%s: %d %q", call.GetType(), status, body)
	}
}

func agentIDOf(id string) *mesos.AgentID { return &mesos.AgentID{Value: proto.String(id)} }

// ---- an operator subscriber ----

type opStream struct {
	t      *testing.T
	resp   *http.Response
	events chan *masterpb.Event
	cancel context.CancelFunc
	closed chan struct{}
}

func openOperatorStream(t *testing.T, base string, c codec.Codec) *opStream {
	t.Helper()
	return openOperatorStreamWith(t, base, c, nil)
}

// openOperatorStreamWith subscribes with header's credentials.
func openOperatorStreamWith(t *testing.T, base string, c codec.Codec, header http.Header) *opStream {
	t.Helper()
	body, err := c.Marshal(opType(masterpb.Call_SUBSCRIBE))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1", bytes.NewReader(body))
	req.Header.Set("Content-Type", c.MediaType())
	req.Header.Set("Accept", c.MediaType())
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(resp.Body)
		cancel()
		t.Fatalf("SUBSCRIBE: %s: %s", resp.Status, data)
	}
	if ct := resp.Header.Get("Content-Type"); ct != c.MediaType() || resp.ContentLength != -1 {
		cancel()
		t.Fatalf("SUBSCRIBE answered Content-Type %q, Content-Length %d", ct, resp.ContentLength)
	}
	s := &opStream{t: t, resp: resp, events: make(chan *masterpb.Event, 1000), cancel: cancel, closed: make(chan struct{})}
	t.Cleanup(s.close)
	go func() {
		defer close(s.closed)
		dec := recordio.NewDecoder(resp.Body, c, 0)
		for {
			ev := &masterpb.Event{}
			if err := dec.Decode(ev); err != nil {
				return
			}
			s.events <- ev
		}
	}()
	return s
}

func (s *opStream) close() {
	s.cancel()
	s.resp.Body.Close()
}

// next returns the next event other than HEARTBEAT, which must be of typ.
func (s *opStream) next(typ masterpb.Event_Type) *masterpb.Event {
	s.t.Helper()
	timeout := time.After(eventTimeout)
	for {
		select {
		case ev := <-s.events:
			if ev.GetType() == masterpb.Event_HEARTBEAT {
				continue
			}
			if ev.GetType() != typ {
				s.t.Fatalf("operator event %s, want %s: %v", ev.GetType(), typ, ev)
			}
			return ev
		case <-timeout:
			s.t.Fatalf("no operator event %s within %s", typ, eventTimeout)
		}
	}
}

// quiet fails if an event other than HEARTBEAT arrives within d.
func (s *opStream) quiet(d time.Duration) {
	s.t.Helper()
	timeout := time.After(d)
	for {
		select {
		case ev := <-s.events:
			if ev.GetType() != masterpb.Event_HEARTBEAT {
				s.t.Fatalf("unexpected operator event %v", ev)
			}
		case <-timeout:
			return
		}
	}
}

// executorTask is a task with its own executor, so that GET_EXECUTORS has
// something to say.
func executorTask(id string, agentID *mesos.AgentID) *mesos.TaskInfo {
	ti := commandTask(id, agentID, 1, 256)
	ti.Command = nil
	ti.Executor = &mesos.ExecutorInfo{
		Type:       mesos.ExecutorInfo_CUSTOM.Enum(),
		ExecutorId: &mesos.ExecutorID{Value: proto.String("exec-" + id)},
		Command:    &mesos.CommandInfo{Value: proto.String("./executor")},
		Resources:  []*mesos.Resource{scalarRes("cpus", 0.1), scalarRes("mem", 32)},
	}
	return ti
}

// runningCluster is a master with an agent and a framework running one
// task (with its own executor), the task reported RUNNING.
func runningCluster(t *testing.T, opts ...harnessOpt) (*harness, *fakeAgent, *schedClient) {
	t.Helper()
	h := startMaster(t, opts...)
	agent := h.registerAgent(agentRegister("node1", 5051))
	sc := h.subscribe(frameworkInfo("ops"), codec.JSON)
	o := sc.offer()
	sc.launch([]*mesos.OfferID{o.GetId()}, executorTask("web-1", o.GetAgentId()))
	agent.next(agentpb.Event_RUN_TASK)
	agent.update(sc.fwID, "web-1", mesos.TaskState_TASK_RUNNING)
	sc.ack(sc.next(scheduler.Event_UPDATE).GetUpdate().GetStatus())
	return h, agent, sc
}

func scalarOf(rs []*mesos.Resource, name string) float64 {
	v := 0.0
	for _, r := range rs {
		if r.GetName() == name {
			v += r.GetScalar().GetValue()
		}
	}
	return v
}

// Every served call, in both encodings, on both paths, decoded into the
// api/v1/master types.
func TestOperatorCalls(t *testing.T) {
	h, agent, sc := runningCluster(t)
	for _, c := range codecs {
		for _, path := range []string{"/api/v1", "/master/api/v1"} {
			t.Run(c.MediaType()+path, func(t *testing.T) {
				call := func(typ masterpb.Call_Type) *masterpb.Response {
					t.Helper()
					status, body, hdr := opPost(t, h.base+path, c, c, opType(typ), nil)
					if status != http.StatusOK || hdr.Get("Content-Type") != c.MediaType() {
						t.Fatalf("%s: %d %s %s", typ, status, hdr.Get("Content-Type"), body)
					}
					resp := &masterpb.Response{}
					if err := c.Unmarshal(body, resp); err != nil {
						t.Fatalf("%s: %v", typ, err)
					}
					if resp.GetType().String() != typ.String() {
						t.Fatalf("%s answered with type %s", typ, resp.GetType())
					}
					return resp
				}
				if !call(masterpb.Call_GET_HEALTH).GetGetHealth().GetHealthy() {
					t.Error("GET_HEALTH: not healthy")
				}
				flags := map[string]string{}
				for _, f := range call(masterpb.Call_GET_FLAGS).GetGetFlags().GetFlags() {
					flags[f.GetName()] = f.GetValue()
				}
				if flags["allocator"] != "HierarchicalDRF" || flags["agent_ping_timeout"] != "15secs" {
					t.Errorf("GET_FLAGS: %v", flags)
				}
				if v := call(masterpb.Call_GET_VERSION).GetGetVersion().GetVersionInfo().GetVersion(); v != h.m.cfg.Version {
					t.Errorf("GET_VERSION: %q", v)
				}
				metrics := map[string]float64{}
				for _, mt := range call(masterpb.Call_GET_METRICS).GetGetMetrics().GetMetrics() {
					metrics[mt.GetName()] = mt.GetValue()
				}
				if metrics["master/slaves_active"] != 1 || metrics["master/tasks_running"] != 1 || metrics["master/elected"] != 1 {
					t.Errorf("GET_METRICS: %v", metrics)
				}
				if call(masterpb.Call_GET_LOGGING_LEVEL).GetGetLoggingLevel().GetLevel() != 0 {
					t.Error("GET_LOGGING_LEVEL: not 0")
				}

				agents := call(masterpb.Call_GET_AGENTS).GetGetAgents().GetAgents()
				if len(agents) != 1 {
					t.Fatalf("GET_AGENTS: %v", agents)
				}
				a := agents[0]
				if a.GetAgentInfo().GetId().GetValue() != agent.id || !a.GetActive() || a.GetDeactivated() || a.GetPid() != "slave(1)@127.0.0.1:5051" ||
					scalarOf(a.GetTotalResources(), "cpus") != 4 || scalarOf(a.GetAllocatedResources(), "cpus") != 1.1 || a.GetRegisteredTime() == nil {
					t.Errorf("GET_AGENTS: %v", a)
				}
				for _, r := range a.GetAllocatedResources() {
					if r.GetAllocationInfo().GetRole() != "*" {
						t.Errorf("allocated resource without its allocation role: %v", r)
					}
				}

				fws := call(masterpb.Call_GET_FRAMEWORKS).GetGetFrameworks().GetFrameworks()
				if len(fws) != 1 || fws[0].GetFrameworkInfo().GetId().GetValue() != sc.fwID || !fws[0].GetActive() || !fws[0].GetConnected() ||
					fws[0].GetRecovered() || scalarOf(fws[0].GetAllocatedResources(), "cpus") != 1.1 {
					t.Errorf("GET_FRAMEWORKS: %v", fws)
				}

				execs := call(masterpb.Call_GET_EXECUTORS).GetGetExecutors().GetExecutors()
				if len(execs) != 1 || execs[0].GetExecutorInfo().GetExecutorId().GetValue() != "exec-web-1" ||
					execs[0].GetAgentId().GetValue() != agent.id || execs[0].GetExecutorInfo().GetFrameworkId().GetValue() != sc.fwID {
					t.Errorf("GET_EXECUTORS: %v", execs)
				}

				tasks := call(masterpb.Call_GET_TASKS).GetGetTasks()
				if len(tasks.GetTasks()) != 1 || tasks.GetTasks()[0].GetState() != mesos.TaskState_TASK_RUNNING ||
					tasks.GetTasks()[0].GetTaskId().GetValue() != "web-1" || len(tasks.GetTasks()[0].GetStatuses()) != 1 {
					t.Errorf("GET_TASKS: %v", tasks)
				}

				st := call(masterpb.Call_GET_STATE).GetGetState()
				if len(st.GetGetAgents().GetAgents()) != 1 || len(st.GetGetFrameworks().GetFrameworks()) != 1 ||
					len(st.GetGetTasks().GetTasks()) != 1 || len(st.GetGetExecutors().GetExecutors()) != 1 {
					t.Errorf("GET_STATE: %v", st)
				}

				roles := call(masterpb.Call_GET_ROLES).GetGetRoles().GetRoles()
				if len(roles) != 1 || roles[0].GetName() != "*" || roles[0].GetWeight() != 1 || len(roles[0].GetFrameworks()) != 1 ||
					roles[0].GetFrameworks()[0].GetValue() != sc.fwID || scalarOf(roles[0].GetResources(), "cpus") != 1.1 {
					t.Errorf("GET_ROLES: %v", roles)
				}

				mi := call(masterpb.Call_GET_MASTER).GetGetMaster()
				if mi.GetMasterInfo().GetId() != h.m.ID() || mi.GetStartTime() == 0 || mi.GetElectedTime() == 0 {
					t.Errorf("GET_MASTER: %v", mi)
				}

				ops := call(masterpb.Call_GET_OPERATIONS)
				if ops.GetOperations == nil || len(ops.GetGetOperations().GetOperations()) != 0 {
					t.Errorf("GET_OPERATIONS: %v", ops)
				}
			})
		}
	}
	// The answer's encoding is the one asked for, whatever the call's.
	for _, pair := range [][2]codec.Codec{{codec.JSON, codec.Protobuf}, {codec.Protobuf, codec.JSON}} {
		status, body, hdr := opPost(t, h.base+"/api/v1", pair[0], pair[1], opType(masterpb.Call_GET_HEALTH), nil)
		resp := &masterpb.Response{}
		if status != http.StatusOK || hdr.Get("Content-Type") != pair[1].MediaType() || pair[1].Unmarshal(body, resp) != nil || !resp.GetGetHealth().GetHealthy() {
			t.Errorf("%s call, %s answer: %d %s %q", pair[0].MediaType(), pair[1].MediaType(), status, hdr.Get("Content-Type"), body)
		}
	}
	// No Accept: JSON, as Mesos answers.
	body, _ := codec.Protobuf.Marshal(opType(masterpb.Call_GET_HEALTH))
	status, resp, hdr := post(t, h.base+"/api/v1", codec.MediaTypeProtobuf, body, nil)
	if status != http.StatusOK || hdr.Get("Content-Type") != codec.MediaTypeJSON || !strings.Contains(resp, `"healthy":true`) {
		t.Errorf("no Accept: %d %s %s", status, hdr.Get("Content-Type"), resp)
	}
}

// GET_STATE and /master/state are built from the same books: they list the
// same agents, frameworks and tasks in the same states and with the same
// resources.
func TestOperatorStateAgreesWithStateJSON(t *testing.T) {
	h, agent, sc := runningCluster(t)
	// A completed task, and one more framework, without tasks (subscribed
	// after the launch: with no share yet it would be offered everything).
	o := sc.offer()
	sc.launch([]*mesos.OfferID{o.GetId()}, commandTask("batch-1", o.GetAgentId(), 0.5, 64))
	agent.next(agentpb.Event_RUN_TASK)
	agent.update(sc.fwID, "batch-1", mesos.TaskState_TASK_FINISHED)
	sc.ack(sc.next(scheduler.Event_UPDATE).GetUpdate().GetStatus())
	agent.next(agentpb.Event_ACKNOWLEDGE)
	h.subscribe(frameworkInfo("idle"), codec.JSON)

	st := opCall(t, h.base, codec.JSON, opType(masterpb.Call_GET_STATE)).GetGetState()
	js := getJSON(t, h.base+"/master/state")

	slaves := js["slaves"].([]any)
	if len(slaves) != len(st.GetGetAgents().GetAgents()) {
		t.Fatalf("%d slaves, %d agents", len(slaves), len(st.GetGetAgents().GetAgents()))
	}
	for i, s := range slaves {
		s := s.(map[string]any)
		a := st.GetGetAgents().GetAgents()[i]
		if s["id"] != a.GetAgentInfo().GetId().GetValue() || s["active"] != a.GetActive() || s["version"] != a.GetVersion() ||
			s["used_resources"].(map[string]any)["cpus"] != scalarOf(a.GetAllocatedResources(), "cpus") {
			t.Errorf("slave %v\nagent %v", fmtJSON(s), a)
		}
	}
	fws := js["frameworks"].([]any)
	if len(fws) != len(st.GetGetFrameworks().GetFrameworks()) {
		t.Fatalf("%d frameworks in /master/state, %d in GET_STATE", len(fws), len(st.GetGetFrameworks().GetFrameworks()))
	}
	var liveTasks, doneTasks []string
	for i, f := range fws {
		f := f.(map[string]any)
		p := st.GetGetFrameworks().GetFrameworks()[i]
		if f["id"] != p.GetFrameworkInfo().GetId().GetValue() || f["active"] != p.GetActive() || f["connected"] != p.GetConnected() ||
			f["used_resources"].(map[string]any)["cpus"] != scalarOf(p.GetAllocatedResources(), "cpus") {
			t.Errorf("framework %v\nproto %v", fmtJSON(f), p)
		}
		for _, tk := range f["tasks"].([]any) {
			tk := tk.(map[string]any)
			liveTasks = append(liveTasks, tk["id"].(string)+"="+tk["state"].(string))
		}
		for _, tk := range f["completed_tasks"].([]any) {
			tk := tk.(map[string]any)
			doneTasks = append(doneTasks, tk["id"].(string)+"="+tk["state"].(string))
		}
	}
	var pLive, pDone []string
	for _, tk := range st.GetGetTasks().GetTasks() {
		pLive = append(pLive, tk.GetTaskId().GetValue()+"="+tk.GetState().String())
	}
	for _, tk := range st.GetGetTasks().GetCompletedTasks() {
		pDone = append(pDone, tk.GetTaskId().GetValue()+"="+tk.GetState().String())
	}
	if strings.Join(liveTasks, ",") != strings.Join(pLive, ",") || strings.Join(doneTasks, ",") != strings.Join(pDone, ",") ||
		strings.Join(pDone, ",") != "batch-1=TASK_FINISHED" {
		t.Errorf("tasks: /master/state %v %v, GET_STATE %v %v", liveTasks, doneTasks, pLive, pDone)
	}
}

// SUBSCRIBE: SUBSCRIBED with the state, then the events of what happens,
// in an order that never names what was not announced.
func TestOperatorSubscribeEvents(t *testing.T) {
	for _, c := range codecs {
		t.Run(c.MediaType(), func(t *testing.T) {
			h := startMaster(t, func(cfg *Config) {
				cfg.AgentPingTimeout = 10 * time.Second
				cfg.MaxAgentPingTimeouts = 3
				cfg.HeartbeatInterval = 100 * time.Millisecond
			})
			ops := openOperatorStream(t, h.base, c)
			sub := ops.next(masterpb.Event_SUBSCRIBED).GetSubscribed()
			if sub.GetHeartbeatIntervalSeconds() != 0.1 || sub.GetGetState() == nil || len(sub.GetGetState().GetGetAgents().GetAgents()) != 0 {
				t.Fatalf("SUBSCRIBED %v", sub)
			}
			// A heartbeat comes within a few intervals.
			select {
			case ev := <-ops.events:
				if ev.GetType() != masterpb.Event_HEARTBEAT {
					t.Fatalf("event %v before anything happened", ev)
				}
			case <-time.After(eventTimeout):
				t.Fatal("no HEARTBEAT")
			}

			agent := h.registerAgent(agentRegister("node1", 5051))
			added := ops.next(masterpb.Event_AGENT_ADDED).GetAgentAdded().GetAgent()
			if added.GetAgentInfo().GetId().GetValue() != agent.id || !added.GetActive() || scalarOf(added.GetTotalResources(), "mem") != 4096 {
				t.Fatalf("AGENT_ADDED %v", added)
			}
			sc := h.subscribe(frameworkInfo("watched"), codec.JSON)
			fa := ops.next(masterpb.Event_FRAMEWORK_ADDED).GetFrameworkAdded().GetFramework()
			if fa.GetFrameworkInfo().GetId().GetValue() != sc.fwID || !fa.GetConnected() || fa.GetFrameworkInfo().GetName() != "watched" {
				t.Fatalf("FRAMEWORK_ADDED %v", fa)
			}
			o := sc.offer()
			sc.launch([]*mesos.OfferID{o.GetId()}, commandTask("web-1", o.GetAgentId(), 1, 128))
			ta := ops.next(masterpb.Event_TASK_ADDED).GetTaskAdded().GetTask()
			if ta.GetTaskId().GetValue() != "web-1" || ta.GetState() != mesos.TaskState_TASK_STAGING || ta.GetFrameworkId().GetValue() != sc.fwID ||
				ta.GetAgentId().GetValue() != agent.id {
				t.Fatalf("TASK_ADDED %v", ta)
			}
			agent.next(agentpb.Event_RUN_TASK)
			agent.update(sc.fwID, "web-1", mesos.TaskState_TASK_RUNNING)
			tu := ops.next(masterpb.Event_TASK_UPDATED).GetTaskUpdated()
			if tu.GetState() != mesos.TaskState_TASK_RUNNING || tu.GetStatus().GetState() != mesos.TaskState_TASK_RUNNING ||
				tu.GetStatus().GetTaskId().GetValue() != "web-1" || tu.GetFrameworkId().GetValue() != sc.fwID {
				t.Fatalf("TASK_UPDATED %v", tu)
			}
			// The agent resends the update (no acknowledgement yet): no news.
			up := sc.next(scheduler.Event_UPDATE).GetUpdate().GetStatus()
			sc.ack(up)
			ops.quiet(200 * time.Millisecond)

			// A second subscriber's SUBSCRIBED has it all.
			late := openOperatorStream(t, h.base, c)
			st := late.next(masterpb.Event_SUBSCRIBED).GetSubscribed().GetGetState()
			if len(st.GetGetAgents().GetAgents()) != 1 || len(st.GetGetFrameworks().GetFrameworks()) != 1 || len(st.GetGetTasks().GetTasks()) != 1 ||
				st.GetGetTasks().GetTasks()[0].GetState() != mesos.TaskState_TASK_RUNNING {
				t.Fatalf("late SUBSCRIBED %v", st)
			}
			late.close()

			// The operator tears the framework down: its task is killed,
			// then the framework is gone.
			mustOp(t, h.base, &masterpb.Call{Type: masterpb.Call_TEARDOWN.Enum(), Teardown: &masterpb.Call_Teardown{
				FrameworkId: &mesos.FrameworkID{Value: proto.String(sc.fwID)}}}, nil)
			if tu := ops.next(masterpb.Event_TASK_UPDATED).GetTaskUpdated(); tu.GetState() != mesos.TaskState_TASK_KILLED {
				t.Fatalf("TASK_UPDATED after teardown %v", tu)
			}
			if fr := ops.next(masterpb.Event_FRAMEWORK_REMOVED).GetFrameworkRemoved(); fr.GetFrameworkInfo().GetId().GetValue() != sc.fwID {
				t.Fatalf("FRAMEWORK_REMOVED %v", fr)
			}

			// The agent goes and does not come back in time.
			agent.disconnect(h.m)
			h.advance(31 * time.Second)
			if ar := ops.next(masterpb.Event_AGENT_REMOVED).GetAgentRemoved(); ar.GetAgentId().GetValue() != agent.id {
				t.Fatalf("AGENT_REMOVED %v", ar)
			}
			metrics := opCall(t, h.base, codec.JSON, opType(masterpb.Call_GET_METRICS)).GetGetMetrics().GetMetrics()
			for _, mt := range metrics {
				if mt.GetName() == "master/operator_event_stream_subscribers" && mt.GetValue() != 1 {
					t.Errorf("%s = %v", mt.GetName(), mt.GetValue())
				}
			}
		})
	}
}

// A framework that disconnects and comes back is FRAMEWORK_UPDATED, twice;
// an agent that re-registers after a disconnection is not news.
func TestOperatorFrameworkUpdated(t *testing.T) {
	h := startMaster(t, func(cfg *Config) { cfg.FrameworkFailoverTimeout = time.Hour })
	agent := h.registerAgent(agentRegister("node1", 5051))
	ops := openOperatorStream(t, h.base, codec.JSON)
	ops.next(masterpb.Event_SUBSCRIBED)
	sc := h.subscribe(frameworkInfo("flaky"), codec.JSON)
	ops.next(masterpb.Event_FRAMEWORK_ADDED)
	sc.close()
	if fu := ops.next(masterpb.Event_FRAMEWORK_UPDATED).GetFrameworkUpdated().GetFramework(); fu.GetConnected() || fu.GetActive() {
		t.Fatalf("FRAMEWORK_UPDATED on disconnection %v", fu)
	}
	info := frameworkInfo("flaky")
	info.Id = &mesos.FrameworkID{Value: proto.String(sc.fwID)}
	h.subscribe(info, codec.JSON)
	if fu := ops.next(masterpb.Event_FRAMEWORK_UPDATED).GetFrameworkUpdated().GetFramework(); !fu.GetConnected() || fu.GetReregisteredTime() == nil {
		t.Fatalf("FRAMEWORK_UPDATED on re-subscription %v", fu)
	}
	agent.disconnect(h.m)
	reg := agentRegister("node1", 5051)
	reg.AgentId = agentIDOf(agent.id)
	h.registerAgent(reg)
	h.m.allocate()
	ops.quiet(200 * time.Millisecond)
}

// stuckWriter is a connection that takes nothing: every write blocks until
// release is closed.
type stuckWriter struct {
	header  http.Header
	release chan struct{}
}

func (w *stuckWriter) Header() http.Header { return w.header }
func (w *stuckWriter) WriteHeader(int)     {}
func (w *stuckWriter) Write(p []byte) (int, error) {
	<-w.release
	return 0, errors.New("connection closed")
}

// A subscriber that does not read is dropped once its queue is full, and
// the master goes on serving meanwhile: agents register, state is read.
func TestOperatorSlowSubscriberDropped(t *testing.T) {
	h := startMaster(t)
	h.m.mu.Lock()
	h.m.ops.maxQueue = 4
	h.m.mu.Unlock()
	slow, err := h.m.addOperatorSubscriber(codec.JSON, "slow-subscriber", nil)
	if err != nil {
		t.Fatal(err)
	}
	w := &stuckWriter{header: http.Header{}, release: make(chan struct{})}
	served := make(chan error, 1)
	go func() { served <- h.m.serveOperatorSubscriber(context.Background(), w, slow) }()
	// A subscriber that reads keeps up and stays.
	fast := openOperatorStream(t, h.base, codec.JSON)
	fast.next(masterpb.Event_SUBSCRIBED)

	start := time.Now()
	for i := range 8 {
		h.registerAgent(agentRegister("node"+string(rune('a'+i)), 5051+i))
		fast.next(masterpb.Event_AGENT_ADDED)
	}
	testutil.Eventually(t, eventTimeout, 10*time.Millisecond, func() bool {
		h.m.mu.Lock()
		defer h.m.mu.Unlock()
		_, there := h.m.ops.subs[slow]
		return !there
	}, "the slow subscriber is dropped")
	// The master answered all along, with the stuck subscriber's write
	// still blocked.
	if n := len(opCall(t, h.base, codec.JSON, opType(masterpb.Call_GET_AGENTS)).GetGetAgents().GetAgents()); n != 8 {
		t.Fatalf("%d agents", n)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("registrations took %s with a stuck subscriber", d)
	}
	h.m.mu.Lock()
	n := len(h.m.ops.subs)
	h.m.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d subscribers left, want the reading one", n)
	}
	close(w.release)
	select {
	case err := <-served:
		if err == nil {
			t.Fatal("serve of a dropped subscriber ended without an error")
		}
	case <-time.After(eventTimeout):
		t.Fatal("the dropped subscriber's handler did not return")
	}
	slow.mu.Lock()
	reason := slow.reason
	slow.mu.Unlock()
	if !errors.Is(reason, errOperatorOverflow) {
		t.Fatalf("dropped for %v", reason)
	}
}

// With read-write authentication, the calls that change the cluster need
// credentials; reading does not (that is read-only authentication's).
func TestOperatorReadWriteAuth(t *testing.T) {
	rw, err := httpauth.New(httpauth.Options{Enabled: true, Realm: "mesos-master-readwrite",
		Credentials: []httpauth.Credential{{Principal: "ops", Secret: "ops-secret"}}})
	if err != nil {
		t.Fatal(err)
	}
	h := startMaster(t, func(cfg *Config) { cfg.ReadWriteAuth = rw.Wrap; cfg.LoggingLevel = new(slog.LevelVar) })
	agent := h.registerAgent(agentRegister("node1", 5051))
	sc := h.subscribe(frameworkInfo("precious"), codec.JSON)
	teardown := &masterpb.Call{Type: masterpb.Call_TEARDOWN.Enum(), Teardown: &masterpb.Call_Teardown{FrameworkId: &mesos.FrameworkID{Value: proto.String(sc.fwID)}}}
	changes := []*masterpb.Call{
		teardown,
		{Type: masterpb.Call_MARK_AGENT_GONE.Enum(), MarkAgentGone: &masterpb.Call_MarkAgentGone{AgentId: agentIDOf(agent.id)}},
		{Type: masterpb.Call_DEACTIVATE_AGENT.Enum(), DeactivateAgent: &masterpb.Call_DeactivateAgent{AgentId: agentIDOf(agent.id)}},
		{Type: masterpb.Call_SET_LOGGING_LEVEL.Enum(), SetLoggingLevel: &masterpb.Call_SetLoggingLevel{Level: proto.Uint32(1), Duration: &mesos.DurationInfo{Nanoseconds: proto.Int64(int64(time.Minute))}}},
		// Not served yet, and still not for everyone to try.
		{Type: masterpb.Call_REMOVE_QUOTA.Enum(), RemoveQuota: &masterpb.Call_RemoveQuota{Role: proto.String("r")}},
	}
	for _, call := range changes {
		for _, hdr := range []http.Header{nil, basicAuth("ops", "wrong"), basicAuth("intruder", "ops-secret")} {
			status, body, rh := opPost(t, h.base+"/api/v1", codec.JSON, codec.JSON, call, hdr)
			if status != http.StatusUnauthorized || !strings.Contains(rh.Get("WWW-Authenticate"), "mesos-master-readwrite") {
				t.Fatalf("%s with %v: %d %s", call.GetType(), hdr, status, body)
			}
		}
	}
	// Nothing happened.
	st := opCall(t, h.base, codec.JSON, opType(masterpb.Call_GET_STATE)).GetGetState()
	if len(st.GetGetFrameworks().GetFrameworks()) != 1 || len(st.GetGetAgents().GetAgents()) != 1 || !st.GetGetAgents().GetAgents()[0].GetActive() {
		t.Fatalf("state after refused calls: %v", st)
	}
	if opCall(t, h.base, codec.JSON, opType(masterpb.Call_GET_LOGGING_LEVEL)).GetGetLoggingLevel().GetLevel() != 0 {
		t.Fatal("logging level changed without credentials")
	}
	mustOp(t, h.base, teardown, basicAuth("ops", "ops-secret"))
	if ev := sc.skipUntil(scheduler.Event_ERROR); ev == nil {
		t.Fatal("no ERROR")
	}
	if fws := opCall(t, h.base, codec.JSON, opType(masterpb.Call_GET_FRAMEWORKS)).GetGetFrameworks(); len(fws.GetFrameworks()) != 0 || len(fws.GetCompletedFrameworks()) != 1 {
		t.Fatalf("after an authenticated TEARDOWN: %v", fws)
	}
	flags := getJSON(t, h.base+"/master/state")["flags"].(map[string]any)
	if flags["authenticate_http_readwrite"] != "true" {
		t.Errorf("flags %v", flags)
	}
}

// With read-only authentication every operator call needs credentials,
// SUBSCRIBE included; the scheduler and agent APIs keep their own rules.
func TestOperatorReadOnlyAuth(t *testing.T) {
	ro, err := httpauth.New(httpauth.Options{Enabled: true, Realm: "mesos-master-readonly",
		Credentials: []httpauth.Credential{{Principal: "viewer", Secret: "viewer-secret"}}})
	if err != nil {
		t.Fatal(err)
	}
	h := startMaster(t, func(cfg *Config) { cfg.ReadOnlyAuth = ro.Wrap })
	for _, path := range []string{"/api/v1", "/master/api/v1"} {
		for _, typ := range []masterpb.Call_Type{masterpb.Call_GET_STATE, masterpb.Call_SUBSCRIBE} {
			if status, body, _ := opPost(t, h.base+path, codec.JSON, codec.JSON, opType(typ), nil); status != http.StatusUnauthorized {
				t.Fatalf("%s %s without credentials: %d %s", path, typ, status, body)
			}
		}
		if status, body, _ := opPost(t, h.base+path, codec.JSON, codec.JSON, opType(masterpb.Call_GET_STATE), basicAuth("viewer", "viewer-secret")); status != http.StatusOK {
			t.Fatalf("%s GET_STATE with credentials: %d %s", path, status, body)
		}
	}
	h.registerAgent(agentRegister("node1", 5051))
}

func TestOperatorCallErrors(t *testing.T) {
	h := startMaster(t)
	jsonBody := func(s string) []byte { return []byte(s) }
	big := append([]byte(`{"type":"GET_HEALTH","x":"`), bytes.Repeat([]byte("a"), 100<<10)...)
	big = append(big, '"', '}')
	tests := []struct {
		name        string
		method      string
		contentType string
		accept      string
		body        []byte
		chunked     bool
		want        int
		wantBody    string
	}{
		{"GET", http.MethodGet, "", "", nil, false, http.StatusMethodNotAllowed, "Expecting a 'POST' request"},
		{"no content type", http.MethodPost, "", "", jsonBody(`{"type":"GET_HEALTH"}`), false, http.StatusUnsupportedMediaType, "Content-Type"},
		{"text", http.MethodPost, "text/plain", "", jsonBody(`{"type":"GET_HEALTH"}`), false, http.StatusUnsupportedMediaType, "text/plain"},
		{"not acceptable", http.MethodPost, codec.MediaTypeJSON, "text/html", jsonBody(`{"type":"GET_HEALTH"}`), false, http.StatusNotAcceptable, "text/html"},
		{"malformed", http.MethodPost, codec.MediaTypeJSON, "", jsonBody(`{"type":`), false, http.StatusBadRequest, "Failed to parse body into Call"},
		{"no type", http.MethodPost, codec.MediaTypeJSON, "", jsonBody(`{}`), false, http.StatusBadRequest, "Expecting 'type' to be present"},
		{"unknown type name", http.MethodPost, codec.MediaTypeJSON, "", jsonBody(`{"type":"GET_EVERYTHING"}`), false, http.StatusBadRequest, "'type'"},
		{"UNKNOWN", http.MethodPost, codec.MediaTypeJSON, "", jsonBody(`{"type":"UNKNOWN"}`), false, http.StatusBadRequest, "Unknown call type"},
		{"missing message", http.MethodPost, codec.MediaTypeJSON, "", jsonBody(`{"type":"TEARDOWN"}`), false, http.StatusBadRequest, "Expecting 'teardown' to be present"},
		{"missing required field", http.MethodPost, codec.MediaTypeJSON, "", jsonBody(`{"type":"TEARDOWN","teardown":{}}`), false, http.StatusBadRequest, "teardown.framework_id"},
		{"master files", http.MethodPost, codec.MediaTypeJSON, "", jsonBody(`{"type":"READ_FILE","read_file":{"path":"/master/log","offset":0}}`), false, http.StatusNotFound, "attaches no files"},
		{"teardown of nothing", http.MethodPost, codec.MediaTypeJSON, "", jsonBody(`{"type":"TEARDOWN","teardown":{"framework_id":{"value":"nope"}}}`), false, http.StatusBadRequest, "No framework found"},
		{"gone of nothing", http.MethodPost, codec.MediaTypeJSON, "", jsonBody(`{"type":"MARK_AGENT_GONE","mark_agent_gone":{"agent_id":{"value":"nope"}}}`), false, http.StatusNotFound, "nope"},
		{"deactivate nothing", http.MethodPost, codec.MediaTypeJSON, "", jsonBody(`{"type":"DEACTIVATE_AGENT","deactivate_agent":{"agent_id":{"value":"nope"}}}`), false, http.StatusNotFound, "nope"},
		{"fixed logging level", http.MethodPost, codec.MediaTypeJSON, "", jsonBody(`{"type":"SET_LOGGING_LEVEL","set_logging_level":{"level":1,"duration":{"nanoseconds":1000000000}}}`), false, http.StatusNotImplemented, "logging level is fixed"},
		{"oversized", http.MethodPost, codec.MediaTypeJSON, "", big, false, http.StatusRequestEntityTooLarge, "larger than"},
		{"oversized, chunked", http.MethodPost, codec.MediaTypeJSON, "", big, true, http.StatusRequestEntityTooLarge, "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader = bytes.NewReader(tt.body)
			if tt.chunked {
				body = io.MultiReader(bytes.NewReader(tt.body))
			}
			req, _ := http.NewRequest(tt.method, h.base+"/api/v1", body)
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			if tt.accept != "" {
				req.Header.Set("Accept", tt.accept)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			data, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.want || !strings.Contains(string(data), tt.wantBody) {
				t.Fatalf("%d %q, want %d with %q", resp.StatusCode, data, tt.want, tt.wantBody)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("error answered as %q", ct)
			}
		})
	}
	// The master is fine after all that.
	if !opCall(t, h.base, codec.JSON, opType(masterpb.Call_GET_HEALTH)).GetGetHealth().GetHealthy() {
		t.Fatal("unhealthy")
	}
}

func TestOperatorLoggingLevel(t *testing.T) {
	level := new(slog.LevelVar)
	h := startMaster(t, func(cfg *Config) { cfg.LoggingLevel = level })
	set := func(v uint32, d time.Duration) {
		t.Helper()
		mustOp(t, h.base, &masterpb.Call{Type: masterpb.Call_SET_LOGGING_LEVEL.Enum(), SetLoggingLevel: &masterpb.Call_SetLoggingLevel{
			Level: proto.Uint32(v), Duration: &mesos.DurationInfo{Nanoseconds: proto.Int64(int64(d))}}}, nil)
	}
	get := func() uint32 {
		return opCall(t, h.base, codec.Protobuf, opType(masterpb.Call_GET_LOGGING_LEVEL)).GetGetLoggingLevel().GetLevel()
	}
	set(1, time.Hour)
	if get() != 1 || level.Level() != slog.LevelDebug {
		t.Fatalf("level %d (%s) after SET 1", get(), level.Level())
	}
	// A later SET replaces the earlier one, revert included.
	set(3, 300*time.Millisecond)
	if get() != 3 || level.Level() != slog.LevelDebug-2 {
		t.Fatalf("level %d (%s) after SET 3", get(), level.Level())
	}
	testutil.Eventually(t, eventTimeout, 20*time.Millisecond, func() bool { return get() == 0 && level.Level() == slog.LevelInfo },
		"the level reverts after the duration")
	status, body, _ := opPost(t, h.base+"/api/v1", codec.JSON, codec.JSON, &masterpb.Call{Type: masterpb.Call_SET_LOGGING_LEVEL.Enum(),
		SetLoggingLevel: &masterpb.Call_SetLoggingLevel{Level: proto.Uint32(1), Duration: &mesos.DurationInfo{Nanoseconds: proto.Int64(0)}}}, nil)
	if status != http.StatusBadRequest || level.Level() != slog.LevelInfo {
		t.Fatalf("zero duration: %d %s", status, body)
	}
}

func TestOperatorDeactivateAgent(t *testing.T) {
	h := startMaster(t)
	agent := h.registerAgent(agentRegister("node1", 5051))
	sc := h.subscribe(frameworkInfo("offered"), codec.JSON)
	o := sc.offer()
	deactivate := &masterpb.Call{Type: masterpb.Call_DEACTIVATE_AGENT.Enum(), DeactivateAgent: &masterpb.Call_DeactivateAgent{AgentId: agentIDOf(agent.id)}}
	mustOp(t, h.base, deactivate, nil)
	if r := sc.next(scheduler.Event_RESCIND).GetRescind(); r.GetOfferId().GetValue() != o.GetId().GetValue() {
		t.Fatalf("RESCIND %v", r)
	}
	h.m.allocate()
	sc.quiet(scheduler.Event_OFFERS, 200*time.Millisecond)
	a := opCall(t, h.base, codec.JSON, opType(masterpb.Call_GET_AGENTS)).GetGetAgents().GetAgents()[0]
	if a.GetActive() || !a.GetDeactivated() {
		t.Fatalf("deactivated agent %v", a)
	}
	if s := getJSON(t, h.base+"/master/state")["slaves"].([]any)[0].(map[string]any); s["active"] != false {
		t.Fatalf("/master/state says the deactivated agent is active: %v", fmtJSON(s))
	}
	mustOp(t, h.base, deactivate, nil) // idempotent

	// Reconnecting does not make it active again.
	agent.disconnect(h.m)
	reg := agentRegister("node1", 5051)
	reg.AgentId = agentIDOf(agent.id)
	h.registerAgent(reg)
	h.m.allocate()
	sc.quiet(scheduler.Event_OFFERS, 200*time.Millisecond)

	mustOp(t, h.base, &masterpb.Call{Type: masterpb.Call_REACTIVATE_AGENT.Enum(), ReactivateAgent: &masterpb.Call_ReactivateAgent{AgentId: agentIDOf(agent.id)}}, nil)
	if o := sc.offer(); o.GetAgentId().GetValue() != agent.id {
		t.Fatalf("offer %v", o)
	}
	if a := opCall(t, h.base, codec.JSON, opType(masterpb.Call_GET_AGENTS)).GetGetAgents().GetAgents()[0]; !a.GetActive() || a.GetDeactivated() {
		t.Fatalf("reactivated agent %v", a)
	}
}

func TestOperatorMarkAgentGone(t *testing.T) {
	h := startMaster(t)
	agent := h.registerAgent(agentRegister("node1", 5051))
	plain := h.subscribe(frameworkInfo("plain"), codec.JSON)
	pa := h.subscribe(frameworkInfo("pa", mesos.FrameworkInfo_Capability_PARTITION_AWARE), codec.JSON)
	o := plain.offer()
	plain.launch([]*mesos.OfferID{o.GetId()}, commandTask("a", o.GetAgentId(), 1, 64))
	o2 := pa.offer()
	pa.launch([]*mesos.OfferID{o2.GetId()}, commandTask("b", o2.GetAgentId(), 1, 64))
	agent.next(agentpb.Event_RUN_TASK)
	agent.next(agentpb.Event_RUN_TASK)
	ops := openOperatorStream(t, h.base, codec.Protobuf)
	ops.next(masterpb.Event_SUBSCRIBED)

	gone := &masterpb.Call{Type: masterpb.Call_MARK_AGENT_GONE.Enum(), MarkAgentGone: &masterpb.Call_MarkAgentGone{AgentId: agentIDOf(agent.id)}}
	mustOp(t, h.base, gone, nil)
	st := plain.next(scheduler.Event_UPDATE).GetUpdate().GetStatus()
	if st.GetState() != mesos.TaskState_TASK_LOST || st.GetReason() != mesos.TaskStatus_REASON_AGENT_REMOVED_BY_OPERATOR {
		t.Fatalf("non-partition-aware task: %v", st)
	}
	st = pa.next(scheduler.Event_UPDATE).GetUpdate().GetStatus()
	if st.GetState() != mesos.TaskState_TASK_GONE_BY_OPERATOR || st.GetReason() != mesos.TaskStatus_REASON_AGENT_REMOVED_BY_OPERATOR {
		t.Fatalf("partition-aware task: %v", st)
	}
	if f := plain.next(scheduler.Event_FAILURE).GetFailure(); f.GetAgentId().GetValue() != agent.id {
		t.Fatalf("FAILURE %v", f)
	}
	// The agent is told to end what it runs, then its stream ends.
	shut := map[string]bool{}
	for range 2 {
		shut[agent.next(agentpb.Event_SHUTDOWN_FRAMEWORK).GetShutdownFramework().GetFrameworkId().GetValue()] = true
	}
	if !shut[plain.fwID] || !shut[pa.fwID] {
		t.Fatalf("SHUTDOWN_FRAMEWORK for %v", shut)
	}
	select {
	case <-agent.closed:
	case <-time.After(eventTimeout):
		t.Fatal("the gone agent's stream did not end")
	}
	// Operator subscribers hear of both tasks, then of the agent.
	for range 2 {
		if tu := ops.next(masterpb.Event_TASK_UPDATED).GetTaskUpdated(); tu.GetStatus().GetReason() != mesos.TaskStatus_REASON_AGENT_REMOVED_BY_OPERATOR {
			t.Fatalf("TASK_UPDATED %v", tu)
		}
	}
	if ar := ops.next(masterpb.Event_AGENT_REMOVED).GetAgentRemoved(); ar.GetAgentId().GetValue() != agent.id {
		t.Fatalf("AGENT_REMOVED %v", ar)
	}
	if n := len(opCall(t, h.base, codec.JSON, opType(masterpb.Call_GET_AGENTS)).GetGetAgents().GetAgents()); n != 0 {
		t.Fatalf("%d agents after MARK_AGENT_GONE", n)
	}
	mustOp(t, h.base, gone, nil) // idempotent

	// It may not come back, token and all.
	reg := agentRegister("node1", 5051)
	reg.AgentId = agentIDOf(agent.id)
	header := http.Header{}
	if tok, ok := agentTokens.Load(agent.id); ok {
		header.Set(AgentTokenHeader, tok.(string))
	}
	resp, cancel := openRegister(t, h.base, reg, header)
	defer cancel()
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(data), "marked gone") {
		t.Fatalf("REGISTER of a gone agent: %s %s", resp.Status, data)
	}
	// Other agents still register, with their calls passing the gate.
	other := h.registerAgent(agentRegister("node2", 5052))
	if other.id == agent.id {
		t.Fatal("same id")
	}
	if status, body := other.call(&agentpb.Call{Type: agentpb.Call_UPDATE_RESOURCES.Enum(), UpdateResources: &agentpb.Call_UpdateResources{
		Resources: []*mesos.Resource{scalarRes("cpus", 2), scalarRes("mem", 1024)}}}); status != http.StatusAccepted {
		t.Fatalf("UPDATE_RESOURCES: %d %s", status, body)
	}
}

// cloneTask copies every field of the task record: a field added to
// mesos.Task later must be copied too (or a status update loses it).
func TestCloneTaskCopiesEveryField(t *testing.T) {
	src := &mesos.Task{}
	m := src.ProtoReflect()
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		switch {
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			mp.Set(protoreflect.ValueOfString("k").MapKey(), mp.NewValue())
		case fd.IsList():
			l := m.Mutable(fd).List()
			l.Append(l.NewElement())
		case fd.Kind() == protoreflect.MessageKind:
			m.Set(fd, protoreflect.ValueOfMessage(m.NewField(fd).Message()))
		case fd.Kind() == protoreflect.StringKind:
			m.Set(fd, protoreflect.ValueOfString("x"))
		case fd.Kind() == protoreflect.BytesKind:
			m.Set(fd, protoreflect.ValueOfBytes([]byte("x")))
		case fd.Kind() == protoreflect.EnumKind:
			m.Set(fd, protoreflect.ValueOfEnum(1))
		case fd.Kind() == protoreflect.BoolKind:
			m.Set(fd, protoreflect.ValueOfBool(true))
		default:
			t.Fatalf("mesos.Task.%s: kind %s not handled by this test", fd.Name(), fd.Kind())
		}
	}
	got := cloneTask(src)
	if !proto.Equal(got, src) {
		t.Fatalf("cloneTask lost fields:\n got %v\nwant %v", got, src)
	}
	// Later changes to the record leave the copy alone.
	src.Statuses[0] = &mesos.TaskStatus{Message: proto.String("changed")}
	if got.Statuses[0].Message != nil {
		t.Fatal("the copy shares the status slice")
	}
}

// Many subscribers and a busy master: run with -race.
func TestOperatorSubscribersConcurrent(t *testing.T) {
	h := startMaster(t)
	var wg sync.WaitGroup
	streams := make([]*opStream, 4)
	for i := range streams {
		streams[i] = openOperatorStream(t, h.base, codecs[i%2])
		streams[i].next(masterpb.Event_SUBSCRIBED)
	}
	agent := h.registerAgent(agentRegister("node1", 5051))
	sc := h.subscribe(frameworkInfo("busy"), codec.JSON)
	o := sc.offer()
	var tasks []*mesos.TaskInfo
	for i := range 10 {
		tasks = append(tasks, commandTask("t"+string(rune('0'+i)), o.GetAgentId(), 0.1, 32))
	}
	sc.launch([]*mesos.OfferID{o.GetId()}, tasks...)
	for range tasks {
		agent.next(agentpb.Event_RUN_TASK)
	}
	body, _ := codec.Protobuf.Marshal(opType(masterpb.Call_GET_STATE))
	for _, ti := range tasks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Post(h.base+"/api/v1", codec.MediaTypeProtobuf, bytes.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			data, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || codec.JSON.Unmarshal(data, &masterpb.Response{}) != nil {
				t.Errorf("GET_STATE: %s %s", resp.Status, data)
			}
		}()
		agent.update(sc.fwID, ti.GetTaskId().GetValue(), mesos.TaskState_TASK_RUNNING)
	}
	wg.Wait()
	// Every subscriber hears everything, each task's TASK_ADDED before its
	// TASK_UPDATED, and the agent and framework before any task.
	for _, s := range streams {
		seen := map[string]bool{}
		for len(seen) < 2+2*len(tasks) {
			var ev *masterpb.Event
			select {
			case ev = <-s.events:
			case <-time.After(eventTimeout):
				t.Fatalf("events so far: %v", seen)
			}
			switch ev.GetType() {
			case masterpb.Event_AGENT_ADDED, masterpb.Event_FRAMEWORK_ADDED:
				seen[ev.GetType().String()] = true
			case masterpb.Event_TASK_ADDED:
				if !seen["AGENT_ADDED"] || !seen["FRAMEWORK_ADDED"] {
					t.Fatalf("TASK_ADDED before its agent and framework: %v", seen)
				}
				seen["added/"+ev.GetTaskAdded().GetTask().GetTaskId().GetValue()] = true
			case masterpb.Event_TASK_UPDATED:
				id := ev.GetTaskUpdated().GetStatus().GetTaskId().GetValue()
				if !seen["added/"+id] {
					t.Fatalf("TASK_UPDATED of %s before its TASK_ADDED", id)
				}
				seen["updated/"+id] = true
			case masterpb.Event_HEARTBEAT:
			default:
				t.Fatalf("event %v", ev)
			}
		}
	}
}
