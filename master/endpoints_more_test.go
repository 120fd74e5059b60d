package master

import (
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/agentpb"
	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/httpauth"
)

func do(t *testing.T, method, url, contentType, body string, hdr http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

// TestMesosEndpoints: the master endpoints Mesos tools call besides state:
// version, flags, roles, state-summary, weights, maintenance and quota
// (empty, and refusing changes this master does not make yet), teardown
// and logging/toggle through the operator API's checks.
func TestMesosEndpoints(t *testing.T) {
	rw, err := httpauth.New(httpauth.Options{Enabled: true, Realm: "mesos-master-readwrite",
		Credentials: []httpauth.Credential{{Principal: "ops", Secret: "ops-secret"}}})
	if err != nil {
		t.Fatal(err)
	}
	h := startMaster(t, func(cfg *Config) {
		cfg.ReadWriteAuth = rw.Wrap
		cfg.LoggingLevel = new(slog.LevelVar)
		cfg.Weights = map[string]float64{"web": 2}
	})
	agent := h.registerAgent(agentRegister("node1", 5051))
	sc := h.subscribe(frameworkInfo("fw"), codec.JSON)
	o := sc.offer()
	sc.launch([]*mesos.OfferID{o.GetId()}, commandTask("t1", o.GetAgentId(), 1, 64))
	agent.next(agentpb.Event_RUN_TASK)
	agent.update(sc.fwID, "t1", mesos.TaskState_TASK_RUNNING)
	sc.next(scheduler.Event_UPDATE)

	if v := getJSON(t, h.base+"/version"); v["version"] == "" || v["git_tag"] == nil {
		t.Errorf("/version %v", v)
	}
	if f := getJSON(t, h.base+"/master/flags")["flags"].(map[string]any); f["authenticate_http_readwrite"] != "true" {
		t.Errorf("/master/flags %v", f)
	}
	roles := getJSON(t, h.base+"/master/roles")["roles"].([]any)
	var star map[string]any
	for _, r := range roles {
		if r.(map[string]any)["name"] == "*" {
			star = r.(map[string]any)
		}
	}
	if star == nil || len(star["frameworks"].([]any)) != 1 {
		t.Errorf("/master/roles %v", roles)
	}
	sum := getJSON(t, h.base+"/master/state-summary")
	slaves, fws := sum["slaves"].([]any), sum["frameworks"].([]any)
	if len(slaves) != 1 || slaves[0].(map[string]any)["TASK_RUNNING"] != 1.0 || len(fws) != 1 ||
		fws[0].(map[string]any)["TASK_RUNNING"] != 1.0 || fws[0].(map[string]any)["tasks"] != nil ||
		len(fws[0].(map[string]any)["slave_ids"].([]any)) != 1 {
		t.Errorf("/master/state-summary %s", fmtJSON(sum))
	}
	if code, body := do(t, http.MethodGet, h.base+"/master/weights", "", "", nil); code != 200 || !strings.Contains(body, `"role":"web"`) {
		t.Errorf("/master/weights %d %s", code, body)
	}
	if code, _ := do(t, http.MethodGet, h.base+"/master/maintenance/status", "", "", nil); code != 200 {
		t.Errorf("maintenance/status %d", code)
	}

	// logging/toggle and teardown need the read-write credentials.
	if code, _ := do(t, http.MethodPost, h.base+"/logging/toggle?level=1&duration=1mins", "", "", nil); code != http.StatusUnauthorized {
		t.Errorf("logging/toggle without credentials: %d", code)
	}
	auth := basicAuth("ops", "ops-secret")
	if code, body := do(t, http.MethodPost, h.base+"/logging/toggle?level=1&duration=1mins", "", "", auth); code != 200 {
		t.Errorf("logging/toggle: %d %s", code, body)
	}
	if code, body := do(t, http.MethodPost, h.base+"/logging/toggle?level=x&duration=1mins", "", "", auth); code != 400 {
		t.Errorf("logging/toggle bad level: %d %s", code, body)
	}
	form := url.Values{"frameworkId": {sc.fwID}}.Encode()
	if code, _ := do(t, http.MethodPost, h.base+"/master/teardown", "application/x-www-form-urlencoded", form, nil); code != http.StatusUnauthorized {
		t.Errorf("teardown without credentials: %d", code)
	}
	if code, body := do(t, http.MethodPost, h.base+"/master/teardown", "application/x-www-form-urlencoded", "", auth); code != 400 || !strings.Contains(body, "frameworkId") {
		t.Errorf("teardown without frameworkId: %d %s", code, body)
	}
	if code, body := do(t, http.MethodPost, h.base+"/master/teardown", "application/x-www-form-urlencoded", form, auth); code != 200 {
		t.Fatalf("teardown: %d %s", code, body)
	}
	sc.skipUntil(scheduler.Event_ERROR)
	if kill := agent.next(agentpb.Event_SHUTDOWN_FRAMEWORK); kill.GetShutdownFramework().GetFrameworkId().GetValue() != sc.fwID {
		t.Fatalf("agent told %v", kill)
	}
}

func TestParseMesosDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"10secs": 10 * time.Second, "5mins": 5 * time.Minute, "1hrs": time.Hour,
		"2days": 48 * time.Hour, "250ms": 250 * time.Millisecond, "1.5secs": 1500 * time.Millisecond, "3s": 3 * time.Second} {
		if got, err := parseMesosDuration(in); err != nil || got != want {
			t.Errorf("%s: %v %v, want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "-1secs", "1 fortnight"} {
		if _, err := parseMesosDuration(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
