package master

import (
	"encoding/json"
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

// TestTasksEndpointNewestFirst: /master/tasks lists the newest tasks first
// (by their first status), so ?limit= shows the latest; order=asc
// reverses it, offset pages, and bad parameters are refused with a reason.
func TestTasksEndpointNewestFirst(t *testing.T) {
	h := startMaster(t)
	agent := h.registerAgent(agentRegister("node1", 5051))
	fw := h.subscribe(frameworkInfo("fw"), codec.JSON)
	// Ids sort the other way round from their start times.
	for _, id := range []string{"c", "b", "a"} {
		o := fw.offer()
		fw.launch([]*mesos.OfferID{o.GetId()}, commandTask(id, o.GetAgentId(), 0.1, 8))
		agent.next(agentpb.Event_RUN_TASK)
		agent.update(fw.fwID, id, mesos.TaskState_TASK_RUNNING)
		fw.next(scheduler.Event_UPDATE)
		h.advance(time.Second)
	}
	// d is staging: no status yet, so the newest.
	o := fw.offer()
	fw.launch([]*mesos.OfferID{o.GetId()}, commandTask("d", o.GetAgentId(), 0.1, 8))
	agent.next(agentpb.Event_RUN_TASK)

	ids := func(query string) string {
		t.Helper()
		var out []string
		for _, tj := range getJSON(t, h.base+"/master/tasks"+query)["tasks"].([]any) {
			out = append(out, tj.(map[string]any)["id"].(string))
		}
		return strings.Join(out, ",")
	}
	for _, tt := range []struct{ query, want string }{
		{"", "d,a,b,c"},
		{"?limit=2", "d,a"},
		{"?limit=2&offset=1", "a,b"},
		{"?order=desc", "d,a,b,c"},
		{"?order=asc", "c,b,a,d"},
		{"?order=asc&limit=1", "c"},
	} {
		if got := ids(tt.query); got != tt.want {
			t.Errorf("/master/tasks%s = %s, want %s", tt.query, got, tt.want)
		}
	}
	for _, bad := range []string{"?limit=-1", "?offset=x", "?order=up"} {
		resp, err := http.Get(h.base + "/master/tasks" + bad)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		code, body := resp.StatusCode, string(data)
		if code != http.StatusBadRequest || !strings.Contains(body, "Failed to parse") {
			t.Errorf("/master/tasks%s: %d %q", bad, code, body)
		}
	}
}

// TestMetricsSnapshotHasMesosKeys: the keys exporters and dashboards ask
// for are there with real values: message counters, registrar and
// allocator timers with their percentiles, revocable gauges, system
// figures, and terminal updates by source and reason.
func TestMetricsSnapshotHasMesosKeys(t *testing.T) {
	h := startMaster(t)
	agent := h.registerAgent(agentRegister("node1", 5051))
	fw := h.subscribe(frameworkInfo("fw"), codec.JSON)
	o := fw.offer()
	fw.launch([]*mesos.OfferID{o.GetId()}, commandTask("t1", o.GetAgentId(), 1, 64))
	agent.next(agentpb.Event_RUN_TASK)
	agent.update(fw.fwID, "t1", mesos.TaskState_TASK_FAILED)
	fw.next(scheduler.Event_UPDATE)

	m := getJSON(t, h.base+"/metrics/snapshot")
	for _, k := range []string{
		"master/messages_register_framework", "master/messages_status_update", "master/messages_launch_tasks",
		"master/messages_register_slave", "master/slave_shutdowns_scheduled", "master/recovery_slave_removals",
		"master/cpus_revocable_total", "master/mem_revocable_percent", "master/gpus_total",
		"registrar/state_fetch_ms", "registrar/state_store_ms", "registrar/state_store_ms/count",
		"allocator/mesos/allocation_run_ms", "allocator/mesos/allocation_run_ms/p50", "allocator/mesos/allocation_run_ms/max",
		"allocator/mesos/resources/cpus/total", "allocator/mesos/resources/mem/offered_or_allocated",
		"system/cpus_total", "system/load_1min", "system/mem_total_bytes",
		"master/tasks_error", "master/tasks_gone", "master/tasks_lost",
	} {
		if _, ok := m[k]; !ok {
			t.Errorf("/metrics/snapshot lacks %s", k)
		}
	}
	for k, want := range map[string]float64{
		"master/messages_register_framework":            1,
		"master/messages_status_update":                 1,
		"master/messages_launch_tasks":                  1,
		"master/tasks_failed":                           1,
		"master/task_failed/source_executor":            1,
		"allocator/mesos/resources/cpus/total":          4,
		"master/messages_register_slave":                1,
		"master/invalid_framework_to_executor_messages": 0,
	} {
		if m[k] != want {
			t.Errorf("%s = %v, want %v", k, m[k], want)
		}
	}
	if m["allocator/mesos/allocation_run_ms/count"].(float64) < 1 {
		t.Errorf("allocation timer without samples: %v", m["allocator/mesos/allocation_run_ms/count"])
	}
}

// A task's command shows in the state (what runs, for the web UI's task
// page), without its environment or URIs, which may carry credentials.
func TestStateShowsTheCommandWithoutItsSecrets(t *testing.T) {
	h := startMaster(t)
	agent := h.registerAgent(agentRegister("node1", 5051))
	fw := h.subscribe(frameworkInfo("cmd"), codec.JSON)
	o := fw.offer()
	task := commandTask("t1", o.GetAgentId(), 1, 64)
	task.Command = &mesos.CommandInfo{
		Value:       proto.String("./serve --port $PORT0"),
		Environment: &mesos.Environment{Variables: []*mesos.Environment_Variable{{Name: proto.String("DB_PASSWORD"), Value: proto.String("hunter2")}}},
		Uris:        []*mesos.CommandInfo_URI{{Value: proto.String("https://user:s3cret@artifacts.example/serve")}},
	}
	fw.launch([]*mesos.OfferID{o.GetId()}, task)
	agent.next(agentpb.Event_RUN_TASK)
	data, err := json.Marshal(getJSON(t, h.base+"/master/state"))
	if err != nil {
		t.Fatal(err)
	}
	var state struct {
		Frameworks []struct {
			Tasks []struct {
				Command struct {
					Value string `json:"value"`
					Shell bool   `json:"shell"`
				} `json:"command"`
			} `json:"tasks"`
		} `json:"frameworks"`
	}
	if err := json.Unmarshal(data, &state); err != nil {
		t.Fatal(err)
	}
	if len(state.Frameworks) != 1 || len(state.Frameworks[0].Tasks) != 1 || state.Frameworks[0].Tasks[0].Command.Value != "./serve --port $PORT0" {
		t.Fatalf("task command not in the state: %s", data)
	}
	for _, secret := range []string{"hunter2", "s3cret"} {
		if strings.Contains(string(data), secret) {
			t.Errorf("the state shows %q from the task's command", secret)
		}
	}
}
