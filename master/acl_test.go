package master

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/agentpb"
	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/maintenance"
	masterpb "github.com/mesolite/mesolite/api/v1/master"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/httpauth"
	"github.com/mesolite/mesolite/internal/acls"
	"google.golang.org/protobuf/proto"
)

// TestACLs: with --acls, who may tear down, reserve, set quota and
// weights is checked (403 naming the refusal), and state endpoints and
// operator calls show a caller only the frameworks and tasks it may see.
func TestACLs(t *testing.T) {
	rules, err := acls.Parse(`{
	  "teardown_frameworks": [{"principals": {"values": ["ops"]}, "framework_principals": {"type": "ANY"}},
	                          {"principals": {"type": "ANY"}, "framework_principals": {"type": "NONE"}}],
	  "reserve_resources": [{"principals": {"values": ["ops"]}, "roles": {"type": "ANY"}},
	                        {"principals": {"type": "ANY"}, "roles": {"type": "NONE"}}],
	  "update_quotas": [{"principals": {"values": ["ops"]}, "roles": {"type": "ANY"}},
	                    {"principals": {"type": "ANY"}, "roles": {"type": "NONE"}}],
	  "update_weights": [{"principals": {"type": "ANY"}, "roles": {"type": "NONE"}}],
	  "view_frameworks": [{"principals": {"values": ["ops"]}, "users": {"type": "ANY"}},
	                      {"principals": {"type": "ANY"}, "users": {"values": ["tester"]}},
	                      {"principals": {"type": "ANY"}, "users": {"type": "NONE"}}],
	  "view_tasks": [{"principals": {"values": ["dev"]}, "users": {"type": "NONE"}}]
	}`)
	if err != nil {
		t.Fatal(err)
	}
	ro, err := httpauth.New(httpauth.Options{Enabled: true, Realm: "mesos", Credentials: []httpauth.Credential{
		{Principal: "ops", Secret: "ops-secret"}, {Principal: "dev", Secret: "dev-secret"}}})
	if err != nil {
		t.Fatal(err)
	}
	h := startMaster(t, func(cfg *Config) { cfg.ACLs = rules; cfg.ReadOnlyAuth = ro.Wrap })
	agent := h.registerAgent(agentRegister("node1", 5051))
	mine := h.subscribe(frameworkInfo("mine"), codec.JSON) // user "tester"
	rootInfo := frameworkInfo("roots")
	rootInfo.User = proto.String("root")
	h.subscribe(rootInfo, codec.JSON)
	ops, dev := basicAuth("ops", "ops-secret"), basicAuth("dev", "dev-secret")

	for _, tt := range []struct {
		name string
		call *masterpb.Call
	}{
		{"teardown", &masterpb.Call{Type: masterpb.Call_TEARDOWN.Enum(), Teardown: &masterpb.Call_Teardown{FrameworkId: &mesos.FrameworkID{Value: proto.String(mine.fwID)}}}},
		{"reserve", reserveCall(agent.id, dynamic("cpus", 1, "web"))},
		{"quota", quotaCall(true, nil)},
		{"weights", &masterpb.Call{Type: masterpb.Call_UPDATE_WEIGHTS.Enum(), UpdateWeights: &masterpb.Call_UpdateWeights{WeightInfos: []*mesos.WeightInfo{{Role: proto.String("web"), Weight: proto.Float64(2)}}}}},
	} {
		if tt.name == "quota" {
			tt.call = quotaCall(true, quotaConfig{Role: "web", Limits: map[string]float64{"cpus": 1}}.proto())
		}
		if code, body, _ := opPost(t, h.base+"/api/v1", codec.JSON, codec.JSON, tt.call, dev); code != http.StatusForbidden {
			t.Errorf("%s by dev: %d %s", tt.name, code, body)
		}
	}
	if code, body, _ := opPost(t, h.base+"/api/v1", codec.JSON, codec.JSON, reserveCall(agent.id, dynamic("cpus", 1, "web")), ops); code != http.StatusAccepted {
		t.Errorf("reserve by ops: %d %s", code, body)
	}

	names := func(hdr http.Header) map[string]bool {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, h.base+"/master/state", nil)
		for k, v := range hdr {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st struct {
			Frameworks []struct{ Name string } `json:"frameworks"`
		}
		if err := decodeJSON(resp, &st); err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, f := range st.Frameworks {
			out[f.Name] = true
		}
		return out
	}
	if got := names(ops); !got["mine"] || !got["roots"] {
		t.Errorf("ops sees %v, want both", got)
	}
	if got := names(dev); !got["mine"] || got["roots"] {
		t.Errorf("dev sees %v, want only the tester's framework", got)
	}
	resp := opCallWith(t, h.base, opType(masterpb.Call_GET_FRAMEWORKS), dev)
	if fws := resp.GetGetFrameworks().GetFrameworks(); len(fws) != 1 || fws[0].GetFrameworkInfo().GetName() != "mine" {
		t.Errorf("GET_FRAMEWORKS for dev: %v", fws)
	}
	mustOp(t, h.base, &masterpb.Call{Type: masterpb.Call_TEARDOWN.Enum(), Teardown: &masterpb.Call_Teardown{FrameworkId: &mesos.FrameworkID{Value: proto.String(mine.fwID)}}}, ops)
}

func opCallWith(t *testing.T, base string, call *masterpb.Call, header http.Header) *masterpb.Response {
	t.Helper()
	status, body, _ := opPost(t, base+"/api/v1", codec.JSON, codec.JSON, call, header)
	if status != http.StatusOK {
		t.Fatalf("%s: %d %s", call.GetType(), status, body)
	}
	resp := &masterpb.Response{}
	if err := codec.JSON.Unmarshal(body, resp); err != nil {
		t.Fatal(err)
	}
	return resp
}

func decodeJSON(resp *http.Response, v any) error {
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s", resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// TestACLsOfFrameworksAndMachines: register_frameworks refuses a role
// (403 at SUBSCRIBE and UPDATE_FRAMEWORK), run_tasks a user (TASK_ERROR,
// REASON_TASK_UNAUTHORIZED); the maintenance, drain and gone calls check
// their machines and agents; GET_QUOTA and the maintenance answers show
// only what the caller may see; an operator event stream carries only the
// frameworks and tasks its subscriber may see.
func TestACLsOfFrameworksAndMachines(t *testing.T) {
	rules, err := acls.Parse(`{
	  "register_frameworks": [{"principals": {"type": "NONE"}, "roles": {"values": ["secret"]}}],
	  "run_tasks": [{"principals": {"type": "NONE"}, "users": {"values": ["mallory"]}}],
	  "start_maintenances": [{"principals": {"values": ["ops"]}, "machines": {"type": "ANY"}},
	                         {"principals": {"type": "ANY"}, "machines": {"type": "NONE"}}],
	  "update_maintenance_schedules": [{"principals": {"values": ["dev"]}, "machines": {"values": ["node2"]}},
	                                   {"principals": {"values": ["dev"]}, "machines": {"type": "NONE"}}],
	  "get_maintenance_schedules": [{"principals": {"values": ["dev"]}, "machines": {"values": ["node2"]}},
	                                {"principals": {"values": ["dev"]}, "machines": {"type": "NONE"}}],
	  "mark_agents_gone": [{"principals": {"values": ["ops"]}, "agents": {"type": "ANY"}},
	                       {"principals": {"type": "ANY"}, "agents": {"type": "NONE"}}],
	  "drain_agents": [{"principals": {"type": "ANY"}, "agents": {"type": "NONE"}}],
	  "get_quotas": [{"principals": {"values": ["dev"]}, "roles": {"type": "NONE"}}],
	  "view_frameworks": [{"principals": {"values": ["dev"]}, "users": {"values": ["tester"]}},
	                      {"principals": {"values": ["dev"]}, "users": {"type": "NONE"}}]
	}`)
	if err != nil {
		t.Fatal(err)
	}
	ro, err := httpauth.New(httpauth.Options{Enabled: true, Realm: "mesos", Credentials: []httpauth.Credential{
		{Principal: "ops", Secret: "ops-secret"}, {Principal: "dev", Secret: "dev-secret"}}})
	if err != nil {
		t.Fatal(err)
	}
	h := startMaster(t, func(cfg *Config) { cfg.ACLs = rules; cfg.ReadOnlyAuth = ro.Wrap })
	ops, dev := basicAuth("ops", "ops-secret"), basicAuth("dev", "dev-secret")
	agent := h.registerAgent(agentRegister("node1", 5051))
	devStream := openOperatorStreamWith(t, h.base, codec.JSON, dev)
	devStream.next(masterpb.Event_SUBSCRIBED)

	// register_frameworks.
	secret := frameworkInfo("secret-role")
	secret.Role = proto.String("secret")
	sc := openSubscribe(t, h.base, secret, codec.JSON)
	if body, _ := io.ReadAll(sc.resp.Body); sc.resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "role 'secret'") {
		t.Fatalf("SUBSCRIBE with a refused role: %s %s", sc.resp.Status, body)
	}
	mine := h.subscribe(frameworkInfo("mine"), codec.JSON) // user "tester"
	devStream.next(masterpb.Event_FRAMEWORK_ADDED)
	upd := proto.Clone(frameworkInfo("mine")).(*mesos.FrameworkInfo)
	upd.Id = &mesos.FrameworkID{Value: proto.String(mine.fwID)}
	upd.Role = proto.String("secret")
	if code, body := mine.call(&scheduler.Call{Type: scheduler.Call_UPDATE_FRAMEWORK.Enum(), FrameworkId: upd.Id,
		UpdateFramework: &scheduler.Call_UpdateFramework{FrameworkInfo: upd}}); code != http.StatusForbidden {
		t.Fatalf("UPDATE_FRAMEWORK to a refused role: %d %s", code, body)
	}

	// run_tasks: the root task is refused, the other launched.
	o := mine.offer()
	asRoot := commandTask("as-root", o.GetAgentId(), 0.1, 32)
	asRoot.Command.User = proto.String("mallory")
	mine.launch([]*mesos.OfferID{o.GetId()}, asRoot, commandTask("plain", o.GetAgentId(), 0.1, 32))
	st := mine.next(scheduler.Event_UPDATE).GetUpdate().GetStatus()
	if st.GetTaskId().GetValue() != "as-root" || st.GetState() != mesos.TaskState_TASK_ERROR || st.GetReason() != mesos.TaskStatus_REASON_TASK_UNAUTHORIZED {
		t.Fatalf("task as root: %v", st)
	}
	if ev := agent.next(agentpb.Event_RUN_TASK); ev.GetRunTask().GetTask().GetTaskId().GetValue() != "plain" {
		t.Fatalf("the agent was asked to run %v", ev.GetRunTask().GetTask().GetTaskId())
	}
	devStream.next(masterpb.Event_TASK_ADDED)
	// What the launch left is offered to mine again; keep it for roots.
	mine.decline(mine.offer(), 3600)

	// Events of a framework dev may not see do not reach its stream.
	rootInfo := frameworkInfo("roots")
	rootInfo.User = proto.String("root")
	roots := h.subscribe(rootInfo, codec.JSON)
	o = roots.offer()
	roots.launch([]*mesos.OfferID{o.GetId()}, commandTask("hidden", o.GetAgentId(), 0.1, 32))
	agent.next(agentpb.Event_RUN_TASK)
	agent.update(roots.fwID, "hidden", mesos.TaskState_TASK_RUNNING)
	agent.update(mine.fwID, "plain", mesos.TaskState_TASK_RUNNING)
	if ev := devStream.next(masterpb.Event_TASK_UPDATED); ev.GetTaskUpdated().GetStatus().GetTaskId().GetValue() != "plain" {
		t.Fatalf("dev's stream got %v", ev)
	}
	devStream.quiet(200 * time.Millisecond)
	// A new stream's snapshot is filtered the same way.
	snap := openOperatorStreamWith(t, h.base, codec.Protobuf, dev).next(masterpb.Event_SUBSCRIBED).GetSubscribed().GetGetState()
	if fws := snap.GetGetFrameworks().GetFrameworks(); len(fws) != 1 || fws[0].GetFrameworkInfo().GetName() != "mine" {
		t.Fatalf("dev's SUBSCRIBED frameworks: %v", fws)
	}
	if ts := snap.GetGetTasks().GetTasks(); len(ts) != 1 || ts[0].GetTaskId().GetValue() != "plain" {
		t.Fatalf("dev's SUBSCRIBED tasks: %v", ts)
	}

	// Maintenance: dev may schedule node2 only, and sees only node2.
	window := func(hosts ...string) *masterpb.Call {
		w := &maintenance.Window{Unavailability: &mesos.Unavailability{Start: &mesos.TimeInfo{Nanoseconds: proto.Int64(time.Unix(1_900_000_000, 0).UnixNano())}}}
		for _, host := range hosts {
			w.MachineIds = append(w.MachineIds, machine(host, ""))
		}
		return &masterpb.Call{Type: masterpb.Call_UPDATE_MAINTENANCE_SCHEDULE.Enum(),
			UpdateMaintenanceSchedule: &masterpb.Call_UpdateMaintenanceSchedule{Schedule: &maintenance.Schedule{Windows: []*maintenance.Window{w}}}}
	}
	if code, body, _ := opPost(t, h.base+"/api/v1", codec.JSON, codec.JSON, window("node1", "node2"), dev); code != http.StatusForbidden {
		t.Fatalf("dev scheduling node1: %d %s", code, body)
	}
	mustOp(t, h.base, window("node1", "node2"), ops)
	got := opCallWith(t, h.base, opType(masterpb.Call_GET_MAINTENANCE_SCHEDULE), dev).GetGetMaintenanceSchedule().GetSchedule().GetWindows()
	if len(got) != 1 || len(got[0].GetMachineIds()) != 1 || got[0].GetMachineIds()[0].GetHostname() != "node2" {
		t.Fatalf("dev's schedule: %v", got)
	}
	if n := len(opCallWith(t, h.base, opType(masterpb.Call_GET_MAINTENANCE_SCHEDULE), ops).GetGetMaintenanceSchedule().GetSchedule().GetWindows()[0].GetMachineIds()); n != 2 {
		t.Fatalf("ops sees %d machines, want 2", n)
	}
	start := &masterpb.Call{Type: masterpb.Call_START_MAINTENANCE.Enum(), StartMaintenance: &masterpb.Call_StartMaintenance{Machines: []*mesos.MachineID{machine("node2", "")}}}
	if code, body, _ := opPost(t, h.base+"/api/v1", codec.JSON, codec.JSON, start, dev); code != http.StatusForbidden {
		t.Fatalf("START_MAINTENANCE by dev: %d %s", code, body)
	}
	mustOp(t, h.base, start, ops)

	// Agents: nobody may drain; dev may not mark gone.
	drain := &masterpb.Call{Type: masterpb.Call_DRAIN_AGENT.Enum(), DrainAgent: &masterpb.Call_DrainAgent{AgentId: agentIDOf(agent.id)}}
	if code, body, _ := opPost(t, h.base+"/api/v1", codec.JSON, codec.JSON, drain, ops); code != http.StatusForbidden {
		t.Fatalf("DRAIN_AGENT: %d %s", code, body)
	}
	gone := &masterpb.Call{Type: masterpb.Call_MARK_AGENT_GONE.Enum(), MarkAgentGone: &masterpb.Call_MarkAgentGone{AgentId: agentIDOf(agent.id)}}
	if code, body, _ := opPost(t, h.base+"/api/v1", codec.JSON, codec.JSON, gone, dev); code != http.StatusForbidden {
		t.Fatalf("MARK_AGENT_GONE by dev: %d %s", code, body)
	}

	// Quota: dev sees none.
	mustOp(t, h.base, quotaCall(true, quotaConfig{Role: "web", Limits: map[string]float64{"cpus": 1}}.proto()), ops)
	if qs := opCallWith(t, h.base, opType(masterpb.Call_GET_QUOTA), ops).GetGetQuota().GetStatus().GetConfigs(); len(qs) != 1 {
		t.Fatalf("ops sees quotas %v", qs)
	}
	if qs := opCallWith(t, h.base, opType(masterpb.Call_GET_QUOTA), dev).GetGetQuota().GetStatus().GetConfigs(); len(qs) != 0 {
		t.Fatalf("dev sees quotas %v", qs)
	}
}
