package master

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/mesolite/mesolite/api/v1/codec"
	masterpb "github.com/mesolite/mesolite/api/v1/master"
	"github.com/mesolite/mesolite/api/v1/mesos"
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
