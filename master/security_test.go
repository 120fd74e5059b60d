package master

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/agentpb"
	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/recordio"
	"github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/api/v1/validate"
	"github.com/mesolite/mesolite/httpauth"
	"github.com/mesolite/mesolite/internal/testutil"
	"google.golang.org/protobuf/proto"
)

// Each test here is an attack that worked on the master before it was
// refused: it fails on the code without the refusal.

var testCredentials = []httpauth.Credential{
	{Principal: "victim", Secret: "victim-secret"},
	{Principal: "attacker", Secret: "attacker-secret"},
	{Principal: "agent", Secret: "agent-secret"},
	{Principal: "rogue-agent", Secret: "rogue-secret"},
}

func withAuth(frameworks, agents bool) harnessOpt {
	return func(cfg *Config) {
		cfg.AuthenticateFrameworks = frameworks
		cfg.AuthenticateAgents = agents
		cfg.Credentials = testCredentials
	}
}

func basicAuth(principal, secret string) http.Header {
	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	r.SetBasicAuth(principal, secret)
	return http.Header{"Authorization": r.Header["Authorization"]}
}

// subscribeWith subscribes with extra headers and waits for SUBSCRIBED.
func subscribeWith(t *testing.T, base string, info *mesos.FrameworkInfo, header http.Header) *schedClient {
	t.Helper()
	sc := openSubscribeWith(t, base, info, codec.JSON, header)
	if sc.resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(sc.resp.Body)
		t.Fatalf("SUBSCRIBE: %s: %s", sc.resp.Status, body)
	}
	sc.fwID = sc.next(scheduler.Event_SUBSCRIBED).GetSubscribed().GetFrameworkId().GetValue()
	return sc
}

// readBody returns an error answer's body; a 200 may be an event stream
// that never ends, so its body is not read.
func readBody(resp *http.Response) string {
	if resp.StatusCode == http.StatusOK {
		return "(a stream)"
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return string(b)
}

// victimCluster is an agent and the victim framework (principal "victim")
// with one task running there.
type victimCluster struct {
	agent  *fakeAgent
	victim *schedClient
	task   string
}

func startVictim(t *testing.T, h *harness, fwHeader, agentHeader http.Header) *victimCluster {
	t.Helper()
	ag := registerAgentWith(t, h.base, agentRegister("node1", 5051), agentHeader)
	info := frameworkInfo("victim")
	info.Principal = proto.String("victim")
	info.FailoverTimeout = proto.Float64(3600)
	v := subscribeWith(t, h.base, info, fwHeader)
	o := v.offer()
	v.launch([]*mesos.OfferID{o.GetId()}, commandTask("secret-task", o.GetAgentId(), 1, 128))
	ag.next(agentpb.Event_RUN_TASK)
	ag.update(v.fwID, "secret-task", mesos.TaskState_TASK_RUNNING)
	v.ack(v.next(scheduler.Event_UPDATE).GetUpdate().GetStatus())
	return &victimCluster{agent: ag, victim: v, task: "secret-task"}
}

// stillOwned checks, without waiting for anything not to happen, that the
// victim still holds its subscription and its task runs: its stream id
// still works (a failover would have replaced it), a RECONCILE answers
// TASK_RUNNING first (a forged or master-made update would have come
// before it), and the agent got no KILL before the message sent after the
// attack.
func (vc *victimCluster) stillOwned(t *testing.T) {
	t.Helper()
	v := vc.victim
	v.mustCall(&scheduler.Call{Type: scheduler.Call_RECONCILE.Enum(), Reconcile: &scheduler.Call_Reconcile{
		Tasks: []*scheduler.Call_Reconcile_Task{{TaskId: &mesos.TaskID{Value: proto.String(vc.task)}}}}})
	if st := v.next(scheduler.Event_UPDATE).GetUpdate().GetStatus(); st.GetState() != mesos.TaskState_TASK_RUNNING || st.GetTaskId().GetValue() != vc.task {
		t.Fatalf("victim's task after the attack: %v", st)
	}
	v.mustCall(&scheduler.Call{Type: scheduler.Call_MESSAGE.Enum(), Message: &scheduler.Call_Message{
		AgentId: &mesos.AgentID{Value: proto.String(vc.agent.id)}, ExecutorId: &mesos.ExecutorID{Value: proto.String(vc.task)}, Data: []byte("sync")}})
	vc.agent.next(agentpb.Event_MESSAGE)
	for _, ev := range vc.agent.stash {
		if ev.GetType() == agentpb.Event_KILL_TASK || ev.GetType() == agentpb.Event_SHUTDOWN_FRAMEWORK || ev.GetType() == agentpb.Event_ERROR {
			t.Fatalf("the real agent got %s", ev)
		}
	}
}

// TestAttackFrameworkTakeover: a second framework SUBSCRIBEs with the
// victim's id (readable in /master/state). Before, that failed the victim
// over and let the caller kill its tasks.
func TestAttackFrameworkTakeover(t *testing.T) {
	tests := []struct {
		name            string
		auth            bool
		victim, attack  http.Header
		claim           string // FrameworkInfo.principal the attacker sends
		wantStatus      int
		wantBodyContain string
	}{
		{"auth off, another claimed principal", false, nil, nil, "attacker", http.StatusForbidden, "another principal"},
		{"auth off, no principal", false, nil, nil, "", http.StatusForbidden, "another principal"},
		{"auth on, another authenticated principal", true, basicAuth("victim", "victim-secret"), basicAuth("attacker", "attacker-secret"), "attacker", http.StatusForbidden, "another principal"},
		{"auth on, claims the victim's principal", true, basicAuth("victim", "victim-secret"), basicAuth("attacker", "attacker-secret"), "victim", http.StatusBadRequest, "does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := startMaster(t, withAuth(tt.auth, false))
			vc := startVictim(t, h, tt.victim, nil)
			fwID := vc.victim.fwID
			// Everything the attacker needs is public.
			if st := getJSON(t, h.base+"/master/state"); !strings.Contains(fmtJSON(st), fwID) {
				t.Fatalf("victim's id not in state")
			}
			info := frameworkInfo("attacker")
			info.Id = &mesos.FrameworkID{Value: proto.String(fwID)}
			if tt.claim != "" {
				info.Principal = proto.String(tt.claim)
			}
			sc := openSubscribeWith(t, h.base, info, codec.JSON, tt.attack)
			if body := readBody(sc.resp); sc.resp.StatusCode != tt.wantStatus || !strings.Contains(body, tt.wantBodyContain) {
				t.Fatalf("SUBSCRIBE with the victim's id: %s %q, want %d with %q", sc.resp.Status, body, tt.wantStatus, tt.wantBodyContain)
			}
			// Without the subscription the attacker has no stream id; a
			// KILL with the victim's id gets nowhere either.
			kill := &scheduler.Call{Type: scheduler.Call_KILL.Enum(), FrameworkId: info.Id,
				Kill: &scheduler.Call_Kill{TaskId: &mesos.TaskID{Value: proto.String(vc.task)}}}
			body, _ := codec.JSON.Marshal(kill)
			hdr := tt.attack.Clone()
			if hdr == nil {
				hdr = http.Header{}
			}
			hdr.Set("Mesos-Stream-Id", "guessed")
			// Refused: 403 for another principal, else 400 for the wrong
			// stream id, as Mesos answers it.
			if code, msg, _ := post(t, h.base+"/api/v1/scheduler", codec.MediaTypeJSON, body, hdr); code != http.StatusForbidden && code != http.StatusBadRequest {
				t.Fatalf("KILL by the attacker: %d %s", code, msg)
			}
			vc.stillOwned(t)
		})
	}
}

// TestAttackAgentIDHijack: a process that is not the agent REGISTERs with
// a real agent's id. Before, the master took it for the agent: the real
// one was disconnected, its running tasks reported lost, and its tasks
// (with their secrets) went to the impostor.
func TestAttackAgentIDHijack(t *testing.T) {
	tests := []struct {
		name      string
		auth      bool
		real      http.Header
		rogue     func(realID string) http.Header
		wantInMsg string
	}{
		{"auth off, no token", false, nil, func(string) http.Header { return nil }, "another agent"},
		{"auth off, a made-up token", false, nil, func(string) http.Header { return http.Header{AgentTokenHeader: {strings.Repeat("0", 64)}} }, "another agent"},
		{"auth on, another principal with no token", true, basicAuth("agent", "agent-secret"),
			func(string) http.Header { return basicAuth("rogue-agent", "rogue-secret") }, "another principal"},
		{"auth on, another principal with the stolen token", true, basicAuth("agent", "agent-secret"), func(id string) http.Header {
			h := basicAuth("rogue-agent", "rogue-secret")
			tok, _ := agentTokens.Load(id)
			h.Set(AgentTokenHeader, tok.(string))
			return h
		}, "another principal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := startMaster(t, withAuth(false, tt.auth))
			vc := startVictim(t, h, nil, tt.real)
			call := agentRegister("evil", 6666)
			call.AgentId = &mesos.AgentID{Value: proto.String(vc.agent.id)}
			resp, cancel := openRegister(t, h.base, call, tt.rogue(vc.agent.id))
			defer cancel()
			if body := readBody(resp); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, tt.wantInMsg) {
				t.Fatalf("REGISTER with the real agent's id: %s %q", resp.Status, body)
			}
			// The real agent keeps its stream, its tasks keep running.
			if code, msg := vc.agent.call(&agentpb.Call{Type: agentpb.Call_UPDATE_RESOURCES.Enum(), UpdateResources: &agentpb.Call_UpdateResources{
				Resources: agentRegister("node1", 5051).GetRegister().GetAgentInfo().GetResources()}}); code != http.StatusAccepted {
				t.Fatalf("real agent's call after the attack: %d %s", code, msg)
			}
			vc.stillOwned(t)
			// The real agent itself may come back with its id and token.
			vc.agent.disconnect(h.m)
			back := agentRegister("node1", 5051)
			back.AgentId = call.AgentId
			header := tt.real.Clone()
			if header == nil {
				header = http.Header{}
			}
			tok, _ := agentTokens.Load(vc.agent.id)
			header.Set(AgentTokenHeader, tok.(string))
			registerAgentWith(t, h.base, back, header)
		})
	}
}

// TestAttackForgedStatusUpdate: a second agent sends updates for a task
// the master placed on another agent, on its calls or in a REGISTER's task
// report. Before, the framework was told its task finished (or was lost)
// while it kept running.
func TestAttackForgedStatusUpdate(t *testing.T) {
	h := startMaster(t)
	vc := startVictim(t, h, nil, nil)
	rogue := h.registerAgent(agentRegister("node2", 5052))

	code, body := rogue.call(&agentpb.Call{Type: agentpb.Call_UPDATE.Enum(), Update: &agentpb.Call_Update{
		FrameworkId: &mesos.FrameworkID{Value: proto.String(vc.victim.fwID)},
		Status: &mesos.TaskStatus{
			TaskId: &mesos.TaskID{Value: proto.String(vc.task)}, State: mesos.TaskState_TASK_FINISHED.Enum(),
			Source: mesos.TaskStatus_SOURCE_EXECUTOR.Enum(), Uuid: make([]byte, 16),
			AgentId: &mesos.AgentID{Value: proto.String(vc.agent.id)},
		},
		LatestState: mesos.TaskState_TASK_FINISHED.Enum(),
	}})
	if code != http.StatusForbidden || !strings.Contains(body, "is not on agent") {
		t.Fatalf("forged UPDATE: %d %s", code, body)
	}
	// Messages to a framework with nothing on the agent are refused too.
	if code, body := rogue.call(&agentpb.Call{Type: agentpb.Call_MESSAGE.Enum(), Message: &agentpb.Call_Message{
		FrameworkId: &mesos.FrameworkID{Value: proto.String(vc.victim.fwID)}, ExecutorId: &mesos.ExecutorID{Value: proto.String(vc.task)}, Data: []byte("x")}}); code != http.StatusForbidden {
		t.Fatalf("forged MESSAGE: %d %s", code, body)
	}

	// The same claim in a re-registration's task report.
	rogue.disconnect(h.m)
	re := agentRegister("node2", 5052)
	re.AgentId = &mesos.AgentID{Value: proto.String(rogue.id)}
	re.Register.Frameworks = []*mesos.FrameworkInfo{{Id: &mesos.FrameworkID{Value: proto.String(vc.victim.fwID)}, User: proto.String("x"), Name: proto.String("x")}}
	re.Register.Tasks = []*mesos.Task{{
		Name: proto.String(vc.task), TaskId: &mesos.TaskID{Value: proto.String(vc.task)},
		FrameworkId: &mesos.FrameworkID{Value: proto.String(vc.victim.fwID)}, AgentId: re.AgentId,
		State: mesos.TaskState_TASK_FAILED.Enum(),
	}}
	h.registerAgent(re)
	vc.stillOwned(t)
	h.m.mu.Lock()
	placed := h.m.frameworks[vc.victim.fwID].tasks[vc.task].agentID
	h.m.mu.Unlock()
	if placed != vc.agent.id {
		t.Fatalf("task now booked on %s, want %s", placed, vc.agent.id)
	}
}

// TestAuthenticationRequired: with --authenticate_frameworks and
// --authenticate_agents, a caller without valid credentials is refused
// with a challenge; with them it gets in.
func TestAuthenticationRequired(t *testing.T) {
	h := startMaster(t, withAuth(true, true))
	fwInfo := func() *mesos.FrameworkInfo {
		info := frameworkInfo("fw")
		info.Principal = proto.String("victim")
		return info
	}
	tests := []struct {
		name   string
		header http.Header
		want   int
	}{
		{"no credentials", nil, http.StatusUnauthorized},
		{"wrong secret", basicAuth("victim", "guess"), http.StatusUnauthorized},
		{"unknown principal", basicAuth("nobody", "victim-secret"), http.StatusUnauthorized},
		{"bearer instead of basic", http.Header{"Authorization": {"Bearer victim-secret"}}, http.StatusUnauthorized},
		{"valid credentials", basicAuth("victim", "victim-secret"), http.StatusOK},
	}
	for _, tt := range tests {
		t.Run("framework/"+tt.name, func(t *testing.T) {
			sc := openSubscribeWith(t, h.base, fwInfo(), codec.JSON, tt.header)
			defer sc.close()
			if sc.resp.StatusCode != tt.want {
				t.Fatalf("SUBSCRIBE: %s, want %d", sc.resp.Status, tt.want)
			}
			if tt.want == http.StatusUnauthorized && !strings.Contains(sc.resp.Header.Get("WWW-Authenticate"), SchedulerRealm) {
				t.Errorf("challenge = %q", sc.resp.Header.Get("WWW-Authenticate"))
			}
		})
		t.Run("agent/"+tt.name, func(t *testing.T) {
			header := tt.header
			if tt.want == http.StatusOK {
				header = basicAuth("agent", "agent-secret")
			}
			resp, cancel := openRegister(t, h.base, agentRegister("node-"+strings.ReplaceAll(tt.name, " ", "-"), 5051), header)
			defer cancel()
			defer resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("REGISTER: %s, want %d", resp.Status, tt.want)
			}
		})
	}
	// The state says so, as Mesos's does.
	flags := getJSON(t, h.base+"/master/state")["flags"].(map[string]any)
	if flags["authenticate_frameworks"] != "true" || flags["authenticate_agents"] != "true" {
		t.Errorf("flags: %v", flags)
	}
}

// TestAttackHugeFrameworkName replays what grew a master to 1 GB: five
// SUBSCRIBEs with 31 MB names and failover_timeout 1e308. They are refused
// with 400 and leave neither the heap, the registry nor /master/state
// bigger.
func TestAttackHugeFrameworkName(t *testing.T) {
	workDir := t.TempDir()
	h := startMaster(t, func(cfg *Config) { cfg.WorkDir = workDir })
	name := strings.Repeat("A", 31<<20)
	body := []byte(`{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"x","failover_timeout":1e308,"name":"` + name + `"}}}`)
	name = ""

	before := heapInUse()
	for i := range 5 {
		code, msg, _ := post(t, h.base+"/api/v1/scheduler", codec.MediaTypeJSON, body, nil)
		if code != http.StatusBadRequest || !strings.Contains(msg, "'FrameworkInfo.name'") || len(msg) > 4096 {
			t.Fatalf("SUBSCRIBE %d with a 31 MB name: %d %.200q", i, code, msg)
		}
	}
	body = nil
	if grown := int64(heapInUse()) - int64(before); grown > 8<<20 {
		t.Errorf("heap grew by %d MB after five refused SUBSCRIBEs", grown>>20)
	}
	resp, err := http.Get(h.base + "/master/state")
	if err != nil {
		t.Fatal(err)
	}
	state, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(state) > 64<<10 {
		t.Errorf("/master/state is %d bytes", len(state))
	}
	if fi, err := os.Stat(filepath.Join(workDir, "registry.db")); err != nil || fi.Size() > 1<<20 {
		t.Errorf("registry: %v, %d bytes", err, fi.Size())
	}

	// A body over the cap is not even read.
	big := bytes.Repeat([]byte(" "), maxBodyBytes+1)
	if code, msg, _ := post(t, h.base+"/api/v1/scheduler", codec.MediaTypeJSON, big, nil); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("body over the cap: %d %.200q", code, msg)
	}
	if code, msg, _ := post(t, h.base+"/master/redirect", "text/plain", bytes.Repeat([]byte("x"), maxSmallBody+1), nil); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("body over the cap of a small endpoint: %d %.200q", code, msg)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestFrameworkInfoCaps: every free-text field of FrameworkInfo is capped.
func TestFrameworkInfoCaps(t *testing.T) {
	h := startMaster(t)
	long := func(n int) string { return strings.Repeat("x", n) }
	labels := func(n, size int) *mesos.Labels {
		l := &mesos.Labels{}
		for i := range n {
			l.Labels = append(l.Labels, &mesos.Label{Key: proto.String(fmt.Sprint("k", i)), Value: proto.String(long(size))})
		}
		return l
	}
	tests := []struct {
		name  string
		edit  func(*mesos.FrameworkInfo)
		field string
	}{
		{"name", func(i *mesos.FrameworkInfo) { i.Name = proto.String(long(validate.MaxNameLen + 1)) }, "'FrameworkInfo.name'"},
		{"principal", func(i *mesos.FrameworkInfo) { i.Principal = proto.String(long(validate.MaxNameLen + 1)) }, "'FrameworkInfo.principal'"},
		{"hostname", func(i *mesos.FrameworkInfo) { i.Hostname = proto.String(long(validate.MaxNameLen + 1)) }, "'FrameworkInfo.hostname'"},
		{"user", func(i *mesos.FrameworkInfo) { i.User = proto.String(long(validate.MaxNameLen + 1)) }, "'FrameworkInfo.user'"},
		{"role", func(i *mesos.FrameworkInfo) { i.Role = proto.String(long(validate.MaxNameLen + 1)) }, "'FrameworkInfo.role'"},
		{"webui_url", func(i *mesos.FrameworkInfo) { i.WebuiUrl = proto.String("http://x/" + long(validate.MaxMessageLen)) }, "'FrameworkInfo.webui_url'"},
		{"label count", func(i *mesos.FrameworkInfo) { i.Labels = labels(validate.MaxLabels+1, 1) }, "'FrameworkInfo.labels'"},
		{"label size", func(i *mesos.FrameworkInfo) { i.Labels = labels(1, validate.MaxLabelLen+1) }, "'FrameworkInfo.labels'"},
		{"capabilities", func(i *mesos.FrameworkInfo) {
			for range validate.MaxCapabilities + 1 {
				i.Capabilities = append(i.Capabilities, &mesos.FrameworkInfo_Capability{Type: mesos.FrameworkInfo_Capability_GPU_RESOURCES.Enum()})
			}
		}, "'FrameworkInfo.capabilities'"},
		{"roles", func(i *mesos.FrameworkInfo) {
			i.Capabilities = []*mesos.FrameworkInfo_Capability{{Type: mesos.FrameworkInfo_Capability_MULTI_ROLE.Enum()}}
			for n := range validate.MaxRoles + 1 {
				i.Roles = append(i.Roles, fmt.Sprint("r", n))
			}
		}, "'FrameworkInfo.roles'"},
		{"whole message", func(i *mesos.FrameworkInfo) { i.Labels = labels(validate.MaxLabels, validate.MaxLabelLen) }, "FrameworkInfo is"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info := frameworkInfo("capped")
			tt.edit(info)
			sc := openSubscribe(t, h.base, info, codec.Protobuf)
			if body := readBody(sc.resp); sc.resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, tt.field) {
				t.Fatalf("SUBSCRIBE: %s %.300q, want 400 naming %s", sc.resp.Status, body, tt.field)
			}
		})
	}
}

// TestFailoverTimeoutClamped: a framework asking to be kept for 1e308
// seconds is kept for a year; what is not a number of seconds is refused.
func TestFailoverTimeoutClamped(t *testing.T) {
	h := startMaster(t)
	year := maxFailoverTimeout.Seconds()
	tests := []struct {
		json string
		want float64 // -1: refused with 400
	}{
		{"1e308", year},
		{"1e12", year},
		{"3600", 3600},
		{"0", 0},
		{`"NaN"`, -1},
		{`"Infinity"`, -1},
		{"-1", -1},
	}
	for _, tt := range tests {
		t.Run(tt.json, func(t *testing.T) {
			body := []byte(`{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"x","name":"ft","failover_timeout":` + tt.json + `}}}`)
			req, _ := http.NewRequest(http.MethodPost, h.base+"/api/v1/scheduler", bytes.NewReader(body))
			req.Header.Set("Content-Type", codec.MediaTypeJSON)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if tt.want < 0 {
				if msg := readBody(resp); resp.StatusCode != http.StatusBadRequest || !strings.Contains(msg, "failover_timeout") {
					t.Fatalf("%s: %s %s", tt.json, resp.Status, msg)
				}
				return
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: %s %s", tt.json, resp.Status, readBody(resp))
			}
			ev := &scheduler.Event{}
			if err := recordio.NewDecoder(resp.Body, codec.JSON, 0).Decode(ev); err != nil {
				t.Fatal(err)
			}
			id := ev.GetSubscribed().GetFrameworkId().GetValue()
			h.m.mu.Lock()
			applied := h.m.frameworks[id].failoverTimeout
			h.m.mu.Unlock()
			if want := time.Duration(tt.want * float64(time.Second)); applied != want {
				t.Errorf("failover timeout applied: %v, want %v", applied, want)
			}
			if got := stateFramework(t, h.base, id)["failover_timeout"]; got != tt.want {
				t.Errorf("state shows failover_timeout %v, want %v", got, tt.want)
			}
		})
	}
	if math.IsInf(year, 0) || year != 365*24*3600 {
		t.Fatalf("cap is %v", year)
	}
}

// TestFrameworkCountCaps: a master holds at most --max_frameworks
// frameworks, and --max_frameworks_per_principal of one principal.
func TestFrameworkCountCaps(t *testing.T) {
	tests := []struct {
		name         string
		total, per   int
		principals   []string // of the frameworks that fit
		refused      string
		wantInReason string
	}{
		{"total", 2, 0, []string{"a", "b"}, "c", "--max_frameworks"},
		{"per principal", 10, 2, []string{"a", "a", "b"}, "a", "--max_frameworks_per_principal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := startMaster(t, func(cfg *Config) { cfg.MaxFrameworks, cfg.MaxFrameworksPerPrincipal = tt.total, tt.per })
			for _, p := range tt.principals {
				info := frameworkInfo("fits")
				info.Principal = proto.String(p)
				h.subscribe(info, codec.JSON)
			}
			info := frameworkInfo("one too many")
			info.Principal = proto.String(tt.refused)
			sc := openSubscribe(t, h.base, info, codec.JSON)
			if body := readBody(sc.resp); sc.resp.StatusCode != http.StatusForbidden || !strings.Contains(body, tt.wantInReason) {
				t.Fatalf("SUBSCRIBE past the cap: %s %q", sc.resp.Status, body)
			}
		})
	}
}

// TestRequestsPerIPCapped: one client address holds at most
// --max_requests_per_ip requests, event streams included; past it, 429.
// Streams still work: the server has no write timeout.
func TestRequestsPerIPCapped(t *testing.T) {
	h := startMaster(t, func(cfg *Config) { cfg.MaxRequestsPerIP = 2 })
	first := h.subscribe(frameworkInfo("one"), codec.JSON)
	h.subscribe(frameworkInfo("two"), codec.JSON)
	resp, err := http.Get(h.base + "/master/state")
	if err != nil {
		t.Fatal(err)
	}
	if msg := readBody(resp); resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(msg, "--max_requests_per_ip") {
		t.Fatalf("third request: %s %s", resp.Status, msg)
	}
	resp.Body.Close()
	first.close()
	testutil.Eventually(t, eventTimeout, 10*time.Millisecond, func() bool {
		resp, err := http.Get(h.base + "/master/state")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "a request once a stream ended")
	if srv := h.m.newServer(t.Context()); srv.WriteTimeout != 0 || srv.ReadHeaderTimeout == 0 || srv.IdleTimeout == 0 {
		t.Errorf("server timeouts: write %v, read header %v, idle %v", srv.WriteTimeout, srv.ReadHeaderTimeout, srv.IdleTimeout)
	}
}

// TestTaskAndStatusCaps: TaskInfo's free text is capped at ACCEPT (the
// task fails with TASK_ERROR), and an agent's status update at UPDATE.
func TestTaskAndStatusCaps(t *testing.T) {
	h := startMaster(t)
	ag := h.registerAgent(agentRegister("node1", 5051))
	sc := h.subscribe(frameworkInfo("tasks"), codec.Protobuf)
	long := strings.Repeat("x", validate.MaxArgLen+1)
	tests := []struct {
		name string
		edit func(*mesos.TaskInfo)
	}{
		{"name", func(ti *mesos.TaskInfo) { ti.Name = proto.String(long) }},
		{"data", func(ti *mesos.TaskInfo) { ti.Data = make([]byte, validate.MaxDataLen+1) }},
		{"label", func(ti *mesos.TaskInfo) { ti.Labels = &mesos.Labels{Labels: []*mesos.Label{{Key: proto.String(long)}}} }},
		{"command value", func(ti *mesos.TaskInfo) { ti.Command.Value = proto.String(long) }},
		{"argument count", func(ti *mesos.TaskInfo) { ti.Command.Arguments = make([]string, validate.MaxArgs+1) }},
		{"environment", func(ti *mesos.TaskInfo) {
			ti.Command.Environment = &mesos.Environment{}
			for range validate.MaxEnvVars + 1 {
				ti.Command.Environment.Variables = append(ti.Command.Environment.Variables, &mesos.Environment_Variable{Name: proto.String("A")})
			}
		}},
		{"URIs", func(ti *mesos.TaskInfo) {
			for range validate.MaxURIs + 1 {
				ti.Command.Uris = append(ti.Command.Uris, &mesos.CommandInfo_URI{Value: proto.String("http://x/y")})
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := sc.offer()
			ti := commandTask("big-"+strings.ReplaceAll(tt.name, " ", "-"), o.GetAgentId(), 1, 64)
			tt.edit(ti)
			sc.launch([]*mesos.OfferID{o.GetId()}, ti)
			st := sc.next(scheduler.Event_UPDATE).GetUpdate().GetStatus()
			if st.GetState() != mesos.TaskState_TASK_ERROR || !strings.Contains(st.GetMessage(), "allowed") {
				t.Fatalf("oversized task: %v", st)
			}
		})
	}
	t.Run("status message from an agent", func(t *testing.T) {
		code, body := ag.call(&agentpb.Call{Type: agentpb.Call_UPDATE.Enum(), Update: &agentpb.Call_Update{
			FrameworkId: &mesos.FrameworkID{Value: proto.String(sc.fwID)},
			Status: &mesos.TaskStatus{TaskId: &mesos.TaskID{Value: proto.String("t")}, State: mesos.TaskState_TASK_RUNNING.Enum(),
				Message: proto.String(strings.Repeat("m", validate.MaxMessageLen+1))},
		}})
		if code != http.StatusBadRequest || !strings.Contains(body, "status.message") {
			t.Fatalf("oversized status: %d %s", code, body)
		}
	})
}

// TestErrorBodiesNameNoHostPath: a failing registry write answers without
// the registry's path, which the log keeps.
func TestErrorBodiesNameNoHostPath(t *testing.T) {
	workDir := t.TempDir()
	h := startMaster(t, func(cfg *Config) { cfg.WorkDir = workDir })
	if err := h.m.reg.Close(); err != nil {
		t.Fatal(err)
	}
	sc := openSubscribe(t, h.base, frameworkInfo("x"), codec.JSON)
	body := readBody(sc.resp)
	if sc.resp.StatusCode < 500 || strings.Contains(body, workDir) || strings.Contains(body, "registry.db") {
		t.Fatalf("SUBSCRIBE with a broken registry: %s %q", sc.resp.Status, body)
	}
}

// TestSecurityHeaders: every answer of the master says nosniff and may not
// be framed; JSON answers may run nothing.
func TestSecurityHeaders(t *testing.T) {
	h := startMaster(t)
	for _, p := range []string{"/master/state", "/metrics/snapshot", "/health", "/nonexistent"} {
		resp, err := http.Get(h.base + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		csp := resp.Header.Get("Content-Security-Policy")
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" || !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("%s: nosniff %q, CSP %q", p, resp.Header.Get("X-Content-Type-Options"), csp)
		}
	}
}

// stateFramework returns the framework id's object in /master/state.
func stateFramework(t *testing.T, base, id string) map[string]any {
	t.Helper()
	for _, fw := range getJSON(t, base+"/master/state")["frameworks"].([]any) {
		if f := fw.(map[string]any); f["id"] == id {
			return f
		}
	}
	t.Fatalf("framework %s not in state", id)
	return nil
}

// TestAttackJavascriptWebUIURL: a framework registers webui_url
// "javascript:...", which the UI rendered as a link that ran in the
// master's origin. SUBSCRIBE now drops it; http(s) URLs stay.
func TestAttackJavascriptWebUIURL(t *testing.T) {
	h := startMaster(t)
	tests := []struct{ url, want string }{
		{"javascript:fetch('/master/state').then(r=>r.text()).then(alert)", ""},
		{"JaVaScRiPt:alert(1)", ""},
		{" javascript:alert(1)", ""},
		{"data:text/html,<script>alert(1)</script>", ""},
		{"/relative/to/the/master", ""},
		{"http://fw.example:8080/ui", "http://fw.example:8080/ui"},
		{"https://fw.example/ui", "https://fw.example/ui"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			info := frameworkInfo("ui")
			info.WebuiUrl = proto.String(tt.url)
			sc := h.subscribe(info, codec.JSON)
			if got := stateFramework(t, h.base, sc.fwID)["webui_url"]; got != tt.want {
				t.Errorf("webui_url in state = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLoadCredentialsForMaster(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "creds.json")
	data, _ := json.Marshal(map[string]any{"credentials": testCredentials})
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	creds, err := httpauth.LoadCredentials(p)
	if err != nil || len(creds) != len(testCredentials) {
		t.Fatalf("%v %v", creds, err)
	}
	cfg := DefaultConfig()
	cfg.AuthenticateAgents = true
	if _, err := New(cfg); err == nil {
		t.Fatal("--authenticate_agents without --credentials accepted")
	}
}
