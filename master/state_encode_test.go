package master

import (
	"bytes"
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
