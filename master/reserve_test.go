package master

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/mesolite/mesolite/api/v1/codec"
	masterpb "github.com/mesolite/mesolite/api/v1/master"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"google.golang.org/protobuf/proto"
)

func dynamic(name string, v float64, role string) *mesos.Resource {
	return &mesos.Resource{Name: proto.String(name), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(v)},
		Reservations: []*mesos.Resource_ReservationInfo{{Type: mesos.Resource_ReservationInfo_DYNAMIC.Enum(), Role: proto.String(role)}}}
}

func reserveCall(agentID string, rs ...*mesos.Resource) *masterpb.Call {
	return &masterpb.Call{Type: masterpb.Call_RESERVE_RESOURCES.Enum(), ReserveResources: &masterpb.Call_ReserveResources{AgentId: agentIDOf(agentID), Resources: rs}}
}

func unreserveCall(agentID string, rs ...*mesos.Resource) *masterpb.Call {
	return &masterpb.Call{Type: masterpb.Call_UNRESERVE_RESOURCES.Enum(), UnreserveResources: &masterpb.Call_UnreserveResources{AgentId: agentIDOf(agentID), Resources: rs}}
}

// offeredFor sums the scalar name over offer's resources reserved for role.
func offeredFor(o *mesos.Offer, name, role string) float64 {
	v := 0.0
	for _, r := range o.GetResources() {
		n := len(r.GetReservations())
		if r.GetName() == name && n > 0 && r.GetReservations()[n-1].GetRole() == role {
			v += r.GetScalar().GetValue()
		}
	}
	return v
}

// TestReserveResources: RESERVE_RESOURCES makes part of an agent's
// unreserved resources a dynamic reservation: offered only to frameworks
// of that role, kept when the agent re-registers and when the master
// restarts; UNRESERVE_RESOURCES gives it back. Reserving more than is free,
// a static or role-less reservation, or an unknown agent are refused.
func TestReserveResources(t *testing.T) {
	work := t.TempDir()
	h := startMaster(t, func(cfg *Config) { cfg.WorkDir = work })
	agent := h.registerAgent(agentRegister("node1", 5051))

	for _, tt := range []struct {
		name string
		call *masterpb.Call
		code int
		want string
	}{
		{"too much", reserveCall(agent.id, dynamic("cpus", 5, "web")), http.StatusConflict, "unreserved and unused"},
		{"static", reserveCall(agent.id, &mesos.Resource{Name: proto.String("cpus"), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(1)},
			Reservations: []*mesos.Resource_ReservationInfo{{Type: mesos.Resource_ReservationInfo_STATIC.Enum(), Role: proto.String("web")}}}), http.StatusBadRequest, "DYNAMIC"},
		{"unknown agent", reserveCall("nobody", dynamic("cpus", 1, "web")), http.StatusNotFound, "No agent"},
		{"nothing", reserveCall(agent.id), http.StatusBadRequest, "'resources'"},
		{"unreserve what is not", unreserveCall(agent.id, dynamic("cpus", 1, "web")), http.StatusBadRequest, "no such reservation"},
	} {
		code, body, _ := opPost(t, h.base+"/api/v1", codec.JSON, codec.JSON, tt.call, nil)
		if code != tt.code || !strings.Contains(string(body), tt.want) {
			t.Errorf("%s: %d %s", tt.name, code, body)
		}
	}

	code, body, _ := opPost(t, h.base+"/api/v1", codec.JSON, codec.JSON, reserveCall(agent.id, dynamic("cpus", 1.5, "web"), dynamic("mem", 512, "web")), nil)
	if code != http.StatusAccepted {
		t.Fatalf("RESERVE_RESOURCES: %d %s", code, body)
	}
	web := frameworkInfo("web-fw")
	web.Role = proto.String("web")
	other := frameworkInfo("other-fw")
	sc := h.subscribe(web, codec.JSON)
	wo := sc.offer()
	if offeredFor(wo, "cpus", "web") != 1.5 || offeredFor(wo, "mem", "web") != 512 {
		t.Fatalf("the web framework's offer: %v", wo.GetResources())
	}
	// Declined for a minute: what another role may have comes to it.
	sc.decline(wo, 60)
	oc := h.subscribe(other, codec.JSON)
	if o := oc.offer(); offeredFor(o, "cpus", "web") != 0 || scalarOf(o.GetResources(), "cpus") != 2.5 {
		t.Fatalf("another role was offered the reservation: %v", o.GetResources())
	}

	// The agent comes back with its static resources; the reservation is
	// the master's, and stays.
	agent.disconnect(h.m)
	call := agentRegister("node1", 5051)
	call.AgentId = agentIDOf(agent.id)
	agent = h.registerAgent(call)
	agents := opCall(t, h.base, codec.JSON, opType(masterpb.Call_GET_AGENTS)).GetGetAgents().GetAgents()
	if got := reservedIn(agents[0].GetTotalResources(), "web"); got != 1.5 {
		t.Fatalf("reserved cpus after re-registration: %v (%v)", got, agents[0].GetTotalResources())
	}

	// And a restarted master has it from the registry.
	h.stop()
	h = startMaster(t, func(cfg *Config) { cfg.WorkDir = work })
	agent = h.registerAgent(call)
	agents = opCall(t, h.base, codec.JSON, opType(masterpb.Call_GET_AGENTS)).GetGetAgents().GetAgents()
	if got := reservedIn(agents[0].GetTotalResources(), "web"); got != 1.5 {
		t.Fatalf("reserved cpus after a master restart: %v", got)
	}

	// Unreserved through the endpoint form.
	form := url.Values{"slaveId": {agent.id}, "resources": {`[{"name":"cpus","type":"SCALAR","scalar":{"value":1.5},"reservations":[{"type":"DYNAMIC","role":"web"}]},` +
		`{"name":"mem","type":"SCALAR","scalar":{"value":512},"reservations":[{"type":"DYNAMIC","role":"web"}]}]`}}
	if code, body := do(t, http.MethodPost, h.base+"/master/unreserve", "application/x-www-form-urlencoded", form.Encode(), nil); code != http.StatusAccepted {
		t.Fatalf("/master/unreserve: %d %s", code, body)
	}
	agents = opCall(t, h.base, codec.JSON, opType(masterpb.Call_GET_AGENTS)).GetGetAgents().GetAgents()
	if got := reservedIn(agents[0].GetTotalResources(), "web"); got != 0 || scalarOf(agents[0].GetTotalResources(), "cpus") != 4 {
		t.Fatalf("after unreserving: %v", agents[0].GetTotalResources())
	}
}

func reservedIn(rs []*mesos.Resource, role string) float64 {
	v := 0.0
	for _, r := range rs {
		n := len(r.GetReservations())
		if r.GetName() == "cpus" && n > 0 && r.GetReservations()[n-1].GetRole() == role {
			v += r.GetScalar().GetValue()
		}
	}
	return v
}

// TestUpdateWeights: UPDATE_WEIGHTS changes role weights (GET_WEIGHTS and
// /master/weights show them), refuses bad ones, and a restarted master
// keeps them.
func TestUpdateWeights(t *testing.T) {
	work := t.TempDir()
	h := startMaster(t, func(cfg *Config) { cfg.WorkDir = work; cfg.Weights = map[string]float64{"a": 2} })
	upd := func(role string, w float64) (int, string) {
		code, body, _ := opPost(t, h.base+"/api/v1", codec.JSON, codec.JSON, &masterpb.Call{Type: masterpb.Call_UPDATE_WEIGHTS.Enum(),
			UpdateWeights: &masterpb.Call_UpdateWeights{WeightInfos: []*mesos.WeightInfo{{Role: proto.String(role), Weight: proto.Float64(w)}}}}, nil)
		return code, string(body)
	}
	for _, bad := range []struct {
		role string
		w    float64
	}{{"*", 1}, {"b", 0}, {"b", -2}, {"has space", 1}} {
		if code, body := upd(bad.role, bad.w); code != http.StatusBadRequest {
			t.Errorf("weight %v for %q: %d %s", bad.w, bad.role, code, body)
		}
	}
	if code, body := upd("b", 3.5); code != http.StatusOK {
		t.Fatalf("UPDATE_WEIGHTS: %d %s", code, body)
	}
	if code, body := do(t, http.MethodPut, h.base+"/master/weights", "application/json", `[{"role":"c","weight":0.5}]`, nil); code != http.StatusOK {
		t.Fatalf("PUT /master/weights: %d %s", code, body)
	}
	want := "a=2 b=3.5 c=0.5"
	weights := func() map[string]float64 {
		m := map[string]float64{}
		for _, wi := range opCall(t, h.base, codec.JSON, opType(masterpb.Call_GET_WEIGHTS)).GetGetWeights().GetWeightInfos() {
			m[wi.GetRole()] = wi.GetWeight()
		}
		return m
	}
	if w := weights(); len(w) != 3 || w["a"] != 2 || w["b"] != 3.5 || w["c"] != 0.5 {
		t.Fatalf("GET_WEIGHTS %v, want %s", w, want)
	}
	h.stop()
	h = startMaster(t, func(cfg *Config) { cfg.WorkDir = work; cfg.Weights = map[string]float64{"a": 2} })
	if w := weights(); len(w) != 3 || w["b"] != 3.5 {
		t.Fatalf("GET_WEIGHTS after a restart %v", w)
	}
}
