package master

import (
	"encoding/json"
	"testing"

	"github.com/mesolite/mesolite/api/v1/agentpb"
	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/scheduler"
	"google.golang.org/protobuf/proto"
)

// TestStateLabelsArePlainArrays: /master/state and /master/tasks write
// labels as Mesos does, a plain array of {key, value}, for tasks, their
// statuses and frameworks; exporters decode them into []label.
func TestStateLabelsArePlainArrays(t *testing.T) {
	h := startMaster(t)
	agent := h.registerAgent(agentRegister("node1", 5051))
	info := frameworkInfo("labelled")
	info.Labels = &mesos.Labels{Labels: []*mesos.Label{{Key: proto.String("team"), Value: proto.String("infra")}}}
	fw := h.subscribe(info, codec.JSON)
	o := fw.offer()
	task := commandTask("t1", o.GetAgentId(), 1, 64)
	task.Labels = &mesos.Labels{Labels: []*mesos.Label{{Key: proto.String("tier"), Value: proto.String("web")}, {Key: proto.String("canary")}}}
	fw.launch([]*mesos.OfferID{o.GetId()}, task)
	agent.next(agentpb.Event_RUN_TASK)
	agent.update(fw.fwID, "t1", mesos.TaskState_TASK_RUNNING)
	fw.next(scheduler.Event_UPDATE)

	type label struct {
		Key   string `json:"key"`
		Value string `json:"value"`
	}
	type taskJSON struct {
		ID       string  `json:"id"`
		Labels   []label `json:"labels"`
		Statuses []struct {
			Labels []label `json:"labels"`
		} `json:"statuses"`
	}
	var state struct {
		Frameworks []struct {
			Labels []label    `json:"labels"`
			Tasks  []taskJSON `json:"tasks"`
		} `json:"frameworks"`
	}
	decode := func(url string, v any) {
		t.Helper()
		data, err := json.Marshal(getJSON(t, url))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, v); err != nil {
			t.Fatalf("%s does not decode as Mesos's shapes: %v\n%s", url, err, data)
		}
	}
	decode(h.base+"/master/state", &state)
	if len(state.Frameworks) != 1 || len(state.Frameworks[0].Tasks) != 1 {
		t.Fatalf("state: %+v", state)
	}
	if got := state.Frameworks[0].Labels; len(got) != 1 || got[0] != (label{"team", "infra"}) {
		t.Fatalf("framework labels %+v", got)
	}
	if got := state.Frameworks[0].Tasks[0].Labels; len(got) != 2 || got[0] != (label{"tier", "web"}) || got[1] != (label{Key: "canary"}) {
		t.Fatalf("task labels %+v", got)
	}
	var tasks struct {
		Tasks []taskJSON `json:"tasks"`
	}
	decode(h.base+"/master/tasks", &tasks)
	if len(tasks.Tasks) != 1 || len(tasks.Tasks[0].Labels) != 2 {
		t.Fatalf("/master/tasks: %+v", tasks)
	}
}
