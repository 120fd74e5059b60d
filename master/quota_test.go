package master

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/mesolite/mesolite/api/v1/codec"
	masterpb "github.com/mesolite/mesolite/api/v1/master"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/quota"
	"google.golang.org/protobuf/proto"
)

func quotaCall(force bool, configs ...*quota.QuotaConfig) *masterpb.Call {
	return &masterpb.Call{Type: masterpb.Call_UPDATE_QUOTA.Enum(), UpdateQuota: &masterpb.Call_UpdateQuota{Force: proto.Bool(force), QuotaConfigs: configs}}
}

func scalarMap(kv ...any) map[string]*mesos.Value_Scalar {
	m := map[string]*mesos.Value_Scalar{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i].(string)] = &mesos.Value_Scalar{Value: proto.Float64(kv[i+1].(float64))}
	}
	return m
}

// TestQuota: UPDATE_QUOTA limits what a role is offered, GET_QUOTA and
// /master/quota show it (with the deprecated infos), bad configs and
// guarantees beyond the cluster are refused unless forced, a restarted
// master keeps it, and REMOVE_QUOTA (DELETE /master/quota/ROLE) lifts it.
func TestQuota(t *testing.T) {
	work := t.TempDir()
	h := startMaster(t, func(cfg *Config) { cfg.WorkDir = work })
	h.registerAgent(agentRegister("node1", 5051))

	for _, tt := range []struct {
		name string
		call *masterpb.Call
		want string
	}{
		{"star", quotaCall(false, &quota.QuotaConfig{Role: proto.String("*"), Limits: scalarMap("cpus", 1.0)}), "Invalid quota role"},
		{"ports", quotaCall(false, &quota.QuotaConfig{Role: proto.String("web"), Limits: scalarMap("ports", 1.0)}), "cpus, mem, disk and gpus"},
		{"guarantee over limit", quotaCall(false, &quota.QuotaConfig{Role: proto.String("web"), Guarantees: scalarMap("cpus", 2.0), Limits: scalarMap("cpus", 1.0)}), "above its limit"},
		{"beyond the cluster", quotaCall(false, &quota.QuotaConfig{Role: proto.String("web"), Guarantees: scalarMap("cpus", 40.0)}), "use 'force'"},
		{"twice", quotaCall(false, &quota.QuotaConfig{Role: proto.String("web")}, &quota.QuotaConfig{Role: proto.String("web")}), "appears twice"},
	} {
		if code, body, _ := opPost(t, h.base+"/api/v1", codec.JSON, codec.JSON, tt.call, nil); code != http.StatusBadRequest || !strings.Contains(string(body), tt.want) {
			t.Errorf("%s: %d %s", tt.name, code, body)
		}
	}
	mustOp(t, h.base, quotaCall(false, &quota.QuotaConfig{Role: proto.String("web"), Guarantees: scalarMap("cpus", 0.5), Limits: scalarMap("cpus", 1.5, "mem", 512.0)}), nil)
	mustOp(t, h.base, quotaCall(true, &quota.QuotaConfig{Role: proto.String("big"), Guarantees: scalarMap("cpus", 100.0)}), nil)

	web := frameworkInfo("web-fw")
	web.Role = proto.String("web")
	sc := h.subscribe(web, codec.JSON)
	o := sc.offer()
	if scalarOf(o.GetResources(), "cpus") != 1.5 || scalarOf(o.GetResources(), "mem") != 512 {
		t.Fatalf("offer to a role limited to 1.5 cpus and 512 MB: %v", o.GetResources())
	}

	st := opCall(t, h.base, codec.JSON, opType(masterpb.Call_GET_QUOTA)).GetGetQuota().GetStatus()
	if len(st.GetConfigs()) != 2 || st.GetConfigs()[1].GetRole() != "web" || st.GetConfigs()[1].GetLimits()["cpus"].GetValue() != 1.5 ||
		len(st.GetInfos()) != 2 || st.GetInfos()[1].GetGuarantee()[0].GetScalar().GetValue() != 0.5 {
		t.Fatalf("GET_QUOTA %v", st)
	}
	m := getJSON(t, h.base+"/metrics/snapshot")
	if m["allocator/mesos/quota/roles/web/resources/cpus/limit"] != 1.5 || m["allocator/mesos/quota/roles/web/resources/cpus/guarantee"] != 0.5 {
		t.Errorf("quota metrics %v %v", m["allocator/mesos/quota/roles/web/resources/cpus/limit"], m["allocator/mesos/quota/roles/web/resources/cpus/guarantee"])
	}

	h.stop()
	h = startMaster(t, func(cfg *Config) { cfg.WorkDir = work })
	code, body := do(t, http.MethodGet, h.base+"/master/quota", "", "", nil)
	var status struct {
		Configs []struct {
			Role   string                             `json:"role"`
			Limits map[string]struct{ Value float64 } `json:"limits"`
		} `json:"configs"`
	}
	if err := json.Unmarshal([]byte(body), &status); code != 200 || err != nil || len(status.Configs) != 2 || status.Configs[1].Limits["cpus"].Value != 1.5 {
		t.Fatalf("/master/quota after a restart: %d %v %s", code, err, body)
	}
	if code, body := do(t, http.MethodDelete, h.base+"/master/quota/web", "", "", nil); code != http.StatusOK {
		t.Fatalf("DELETE /master/quota/web: %d %s", code, body)
	}
	if code, body := do(t, http.MethodDelete, h.base+"/master/quota/web", "", "", nil); code != http.StatusBadRequest {
		t.Fatalf("second DELETE: %d %s", code, body)
	}
	if st := opCall(t, h.base, codec.JSON, opType(masterpb.Call_GET_QUOTA)).GetGetQuota().GetStatus(); len(st.GetConfigs()) != 1 {
		t.Fatalf("after REMOVE_QUOTA: %v", st)
	}
}
