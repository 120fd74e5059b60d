package master

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"testing"

	"github.com/mesolite/mesolite/api/v1/agentpb"
	"github.com/mesolite/mesolite/api/v1/codec"
	masterpb "github.com/mesolite/mesolite/api/v1/master"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"google.golang.org/protobuf/proto"
)

// The spliced encodings of GET_STATE, GET_TASKS and SUBSCRIBED are the
// bytes the codecs write for the whole message: on the first answer (the
// caches filled), on the next (read from them), and after tasks changed
// (their new records encoded, the old encodings not reused).
func TestStateEncodingMatchesCodec(t *testing.T) {
	h := startMaster(t)
	agent := h.registerAgent(agentRegister("node1", 5051))
	sc := h.subscribe(frameworkInfo("enc"), codec.JSON)
	o := sc.offer()
	var tasks []*mesos.TaskInfo
	for i := range 6 {
		ti := commandTask("t"+string(rune('0'+i)), o.GetAgentId(), 0.1, 32)
		ti.Labels = &mesos.Labels{Labels: []*mesos.Label{{Key: proto.String("k"), Value: proto.String("v\"\n")}}}
		tasks = append(tasks, ti)
	}
	sc.launch([]*mesos.OfferID{o.GetId()}, tasks...)
	for range tasks {
		agent.next(agentpb.Event_RUN_TASK)
	}
	fwID := sc.fwID

	check := func(step string) {
		t.Helper()
		for _, typ := range []masterpb.Call_Type{masterpb.Call_GET_STATE, masterpb.Call_GET_TASKS} {
			for _, c := range codecs {
				resp, encs, err := h.m.operatorAnswer(httptest.NewRequest("POST", "/api/v1", nil), opType(typ))
				if err != nil {
					t.Fatal(err)
				}
				want, err := c.Marshal(resp)
				if err != nil {
					t.Fatal(err)
				}
				for round := range 2 {
					enc, err := encs.encodeResponse(c, resp)
					if err != nil {
						t.Fatal(err)
					}
					if got := enc.Bytes(); !bytes.Equal(got, want) || enc.Len() != len(want) {
						t.Fatalf("%s: %s in %s, round %d: spliced\n%s\nwant\n%s", step, typ, c.MediaType(), round, got, want)
					}
				}
			}
		}
		for _, c := range codecs {
			s, err := h.m.addOperatorSubscriber(c, "test", nil)
			if err != nil {
				t.Fatal(err)
			}
			ev := s.queue[0]
			want, err := c.Marshal(ev.ev)
			if err != nil {
				t.Fatal(err)
			}
			enc, err := ev.encode(c)
			if err != nil {
				t.Fatal(err)
			}
			if got := enc.Bytes(); !bytes.Equal(got, want) {
				t.Fatalf("%s: SUBSCRIBED in %s: spliced\n%s\nwant\n%s", step, c.MediaType(), got, want)
			}
			h.m.mu.Lock()
			delete(h.m.ops.subs, s)
			h.m.mu.Unlock()
		}
	}
	check("staging")
	for _, ti := range tasks {
		agent.update(fwID, ti.GetTaskId().GetValue(), mesos.TaskState_TASK_RUNNING)
	}
	check("running")
	agent.update(fwID, "t0", mesos.TaskState_TASK_FINISHED)
	agent.update(fwID, "t1", mesos.TaskState_TASK_FAILED)
	check("some ended")

	// The answer after a change carries the change.
	resp, encs, err := h.m.operatorAnswer(httptest.NewRequest("POST", "/api/v1", nil), opType(masterpb.Call_GET_TASKS))
	if err != nil {
		t.Fatal(err)
	}
	enc, err := encs.encodeResponse(codec.Protobuf, resp)
	if err != nil {
		t.Fatal(err)
	}
	var back masterpb.Response
	if err := codec.Protobuf.Unmarshal(enc.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	want := map[string]mesos.TaskState{"t0": mesos.TaskState_TASK_FINISHED, "t1": mesos.TaskState_TASK_FAILED}
	all := append(back.GetGetTasks().GetTasks(), back.GetGetTasks().GetCompletedTasks()...)
	if len(all) != len(tasks) {
		t.Fatalf("%d tasks in the answer, want %d", len(all), len(tasks))
	}
	for _, tk := range all {
		w, ok := want[tk.GetTaskId().GetValue()]
		if !ok {
			w = mesos.TaskState_TASK_RUNNING
		}
		if tk.GetState() != w {
			t.Fatalf("task %s is %s in the answer, want %s", tk.GetTaskId().GetValue(), tk.GetState(), w)
		}
	}
}

// A change makes a new record: an answer holding the old one keeps what it
// said.
func TestTaskChangeLeavesRecordAlone(t *testing.T) {
	old := &mesos.Task{
		TaskId:   &mesos.TaskID{Value: proto.String("a")},
		State:    mesos.TaskState_TASK_RUNNING.Enum(),
		Statuses: []*mesos.TaskStatus{{State: mesos.TaskState_TASK_RUNNING.Enum()}},
	}
	tk := &task{t: old, enc: &taskEncoding{}}
	kept := proto.Clone(old)
	tk.change(func(n *mesos.Task) {
		n.State = mesos.TaskState_TASK_FINISHED.Enum()
		n.Statuses = append(n.Statuses, &mesos.TaskStatus{State: mesos.TaskState_TASK_FINISHED.Enum()})
		n.Statuses[0] = &mesos.TaskStatus{Message: proto.String("rewritten")}
	})
	if !proto.Equal(old, kept) {
		t.Fatalf("the old record changed: %v", old)
	}
	if tk.t == old || tk.enc != nil {
		t.Fatal("change kept the old record or its encodings")
	}
}

// /master/state and /master/tasks take a task's object from its cache while
// nothing it shows changed, and build it again when something did.
func TestStateJSONTaskCache(t *testing.T) {
	h := startMaster(t)
	agent := h.registerAgent(agentRegister("node1", 5051))
	sc := h.subscribe(frameworkInfo("cache"), codec.JSON)
	o := sc.offer()
	sc.launch([]*mesos.OfferID{o.GetId()}, commandTask("t1", o.GetAgentId(), 0.1, 32), commandTask("t2", o.GetAgentId(), 0.1, 32))
	agent.next(agentpb.Event_RUN_TASK)
	agent.next(agentpb.Event_RUN_TASK)
	get := func(path string) []byte {
		t.Helper()
		rec := httptest.NewRecorder()
		h.m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != 200 {
			t.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
		}
		return rec.Body.Bytes()
	}
	tasksOf := func(body []byte) map[string]string {
		t.Helper()
		var st struct {
			Frameworks []struct {
				Tasks []struct {
					ID, State   string
					ContainerID string `json:"container_id"`
				}
			}
			Tasks []struct{ ID, State string }
		}
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, fw := range st.Frameworks {
			for _, tk := range fw.Tasks {
				out[tk.ID] = tk.State + "/" + tk.ContainerID
			}
		}
		for _, tk := range st.Tasks {
			out["tasks:"+tk.ID] = tk.State
		}
		return out
	}
	first := get("/master/state")
	if second := get("/master/state"); !bytes.Equal(first, second) {
		t.Fatalf("two answers with nothing changed differ:\n%s\n%s", first, second)
	}
	if got := tasksOf(first); got["t1"] != "TASK_STAGING/" || got["t2"] != "TASK_STAGING/" {
		t.Fatalf("tasks %v", got)
	}
	agent.update(sc.fwID, "t1", mesos.TaskState_TASK_RUNNING)
	if got := tasksOf(get("/master/state")); got["t1"] != "TASK_RUNNING/c-t1" || got["t2"] != "TASK_STAGING/" {
		t.Fatalf("tasks after t1 ran: %v", got)
	}
	if got := tasksOf(get("/master/tasks")); got["tasks:t1"] != "TASK_RUNNING" || got["tasks:t2"] != "TASK_STAGING" {
		t.Fatalf("/master/tasks after t1 ran: %v", got)
	}
}
