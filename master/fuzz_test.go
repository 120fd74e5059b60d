package master

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mesolite/mesolite/api/v1/agentpb"
	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/api/v1/validate"
	"google.golang.org/protobuf/proto"
)

// fuzzMaster is a leading master with deterministic ids, one subscribed
// framework ("m-0000", stream "fw-stream"), one agent ("m-S0", stream
// "agent-stream") and an offer, driven through its handler without a
// network: the fuzzers reach the call handling, not just the decoder.
func fuzzMaster(t testing.TB, opts ...harnessOpt) *Master {
	t.Helper()
	cfg := DefaultConfig()
	cfg.IP, cfg.Hostname = "127.0.0.1", "127.0.0.1"
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, o := range opts {
		o(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	m.id = "m"
	m.becomeLeader()
	info := frameworkInfo("fuzz", mesos.FrameworkInfo_Capability_PARTITION_AWARE)
	info.Id = &mesos.FrameworkID{Value: proto.String("m-0000")}
	info.FailoverTimeout = proto.Float64(1e9)
	info.Principal = proto.String("victim")
	if err := m.installFramework(info, info.GetPrincipal(), nil, newStream("fw-stream", codec.JSON)); err != nil {
		t.Fatal(err)
	}
	reg, err := validateRegister(agentRegister("node", 5051))
	if err != nil {
		t.Fatal(err)
	}
	reg.id = "m-S0"
	if err := m.admitAgent(reg, newStream("agent-stream", codec.Protobuf), nil); err != nil {
		t.Fatal(err)
	}
	m.allocate()
	return m
}

func fuzzRequest(m *Master, path, contentType string, body []byte, header string) int {
	ctx, cancel := context.WithCancel(context.Background())
	// A cancelled context ends a SUBSCRIBE's stream right after its first
	// events, so the fuzzer does not hang on it.
	cancel()
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	if header != "" {
		req.Header.Set("Mesos-Stream-Id", header)
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, req)
	return rec.Code
}

var fuzzContentTypes = []string{codec.MediaTypeJSON, codec.MediaTypeProtobuf, "application/json; charset=utf-8", "text/plain", ""}

func FuzzSchedulerCall(f *testing.F) {
	seeds := []*scheduler.Call{
		{Type: scheduler.Call_SUBSCRIBE.Enum(), Subscribe: &scheduler.Call_Subscribe{FrameworkInfo: frameworkInfo("seed")}},
		{Type: scheduler.Call_REVIVE.Enum()},
		{Type: scheduler.Call_SUPPRESS.Enum(), Suppress: &scheduler.Call_Suppress{Roles: []string{"*"}}},
		{Type: scheduler.Call_DECLINE.Enum(), Decline: &scheduler.Call_Decline{OfferIds: []*mesos.OfferID{{Value: proto.String("m-O0")}}}},
		{Type: scheduler.Call_ACCEPT.Enum(), Accept: &scheduler.Call_Accept{
			OfferIds: []*mesos.OfferID{{Value: proto.String("m-O0")}},
			Operations: []*mesos.Offer_Operation{{Type: mesos.Offer_Operation_LAUNCH.Enum(), Launch: &mesos.Offer_Operation_Launch{
				TaskInfos: []*mesos.TaskInfo{commandTask("t", &mesos.AgentID{Value: proto.String("m-S0")}, 1, 64)}}}},
		}},
		{Type: scheduler.Call_ACCEPT.Enum(), Accept: &scheduler.Call_Accept{
			OfferIds: []*mesos.OfferID{{Value: proto.String("m-O0")}},
			Operations: []*mesos.Offer_Operation{{Type: mesos.Offer_Operation_LAUNCH_GROUP.Enum(), LaunchGroup: &mesos.Offer_Operation_LaunchGroup{
				Executor:  &mesos.ExecutorInfo{ExecutorId: &mesos.ExecutorID{Value: proto.String("e")}, Type: mesos.ExecutorInfo_DEFAULT.Enum()},
				TaskGroup: &mesos.TaskGroupInfo{Tasks: []*mesos.TaskInfo{commandTask("g", &mesos.AgentID{Value: proto.String("m-S0")}, 1, 64)}}}}},
		}},
		{Type: scheduler.Call_KILL.Enum(), Kill: &scheduler.Call_Kill{TaskId: &mesos.TaskID{Value: proto.String("t")}}},
		{Type: scheduler.Call_ACKNOWLEDGE.Enum(), Acknowledge: &scheduler.Call_Acknowledge{
			AgentId: &mesos.AgentID{Value: proto.String("m-S0")}, TaskId: &mesos.TaskID{Value: proto.String("t")}, Uuid: make([]byte, 16)}},
		{Type: scheduler.Call_RECONCILE.Enum(), Reconcile: &scheduler.Call_Reconcile{Tasks: []*scheduler.Call_Reconcile_Task{{TaskId: &mesos.TaskID{Value: proto.String("t")}}}}},
		{Type: scheduler.Call_MESSAGE.Enum(), Message: &scheduler.Call_Message{AgentId: &mesos.AgentID{Value: proto.String("m-S0")},
			ExecutorId: &mesos.ExecutorID{Value: proto.String("t")}, Data: []byte("x")}},
		{Type: scheduler.Call_SHUTDOWN.Enum(), Shutdown: &scheduler.Call_Shutdown{ExecutorId: &mesos.ExecutorID{Value: proto.String("e")}, AgentId: &mesos.AgentID{Value: proto.String("m-S0")}}},
		{Type: scheduler.Call_RECONCILE_OPERATIONS.Enum(), ReconcileOperations: &scheduler.Call_ReconcileOperations{}},
		{Type: scheduler.Call_TEARDOWN.Enum()},
	}
	for _, c := range seeds {
		if c.GetType() != scheduler.Call_SUBSCRIBE {
			c.FrameworkId = &mesos.FrameworkID{Value: proto.String("m-0000")}
		}
		for i, cd := range []codec.Codec{codec.JSON, codec.Protobuf} {
			data, err := cd.Marshal(c)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(uint8(i), data, true)
		}
	}
	f.Add(uint8(0), []byte(`{"type":"ACCEPT","framework_id":{"value":"m-0000"},"accept":{"offer_ids":null,"operations":[{"type":"LAUNCH"}]}}`), true)
	f.Add(uint8(0), []byte(`{"type":`), false)
	f.Add(uint8(1), []byte{0xff, 0x01}, true)

	m := fuzzMaster(f)
	f.Fuzz(func(t *testing.T, ct uint8, body []byte, withStream bool) {
		header := ""
		if withStream {
			header = "fw-stream"
		}
		code := fuzzRequest(m, "/api/v1/scheduler", fuzzContentTypes[int(ct)%len(fuzzContentTypes)], body, header)
		if code >= 500 {
			t.Fatalf("status %d for %q", code, body)
		}
	})
}

func FuzzAgentCall(f *testing.F) {
	seeds := []*agentpb.Call{
		agentRegister("n2", 5052),
		{Type: agentpb.Call_UPDATE.Enum(), Update: &agentpb.Call_Update{FrameworkId: &mesos.FrameworkID{Value: proto.String("m-0000")},
			Status: &mesos.TaskStatus{TaskId: &mesos.TaskID{Value: proto.String("t")}, State: mesos.TaskState_TASK_FINISHED.Enum(), Uuid: make([]byte, 16)}}},
		{Type: agentpb.Call_EXECUTOR_EXITED.Enum(), ExecutorExited: &agentpb.Call_ExecutorExited{FrameworkId: &mesos.FrameworkID{Value: proto.String("m-0000")}, ExecutorId: &mesos.ExecutorID{Value: proto.String("e")}}},
		{Type: agentpb.Call_MESSAGE.Enum(), Message: &agentpb.Call_Message{FrameworkId: &mesos.FrameworkID{Value: proto.String("m-0000")}, ExecutorId: &mesos.ExecutorID{Value: proto.String("e")}, Data: []byte("x")}},
		{Type: agentpb.Call_UPDATE_RESOURCES.Enum(), UpdateResources: &agentpb.Call_UpdateResources{Resources: []*mesos.Resource{scalarRes("cpus", 2)}}},
	}
	for _, c := range seeds {
		if c.GetType() != agentpb.Call_REGISTER {
			c.AgentId = &mesos.AgentID{Value: proto.String("m-S0")}
		}
		for i, cd := range []codec.Codec{codec.JSON, codec.Protobuf} {
			data, err := cd.Marshal(c)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(uint8(i), data)
		}
	}
	m := fuzzMaster(f)
	f.Fuzz(func(t *testing.T, ct uint8, body []byte) {
		code := fuzzRequest(m, "/api/v1/agent", fuzzContentTypes[int(ct)%len(fuzzContentTypes)], body, "agent-stream")
		if code >= 500 {
			t.Fatalf("status %d for %q", code, body)
		}
	})
}

// FuzzSubscribeValidation drives the decode and validation of a SUBSCRIBE
// (what the master keeps of a framework) with arbitrary bodies: whatever
// passes is within every cap, its failover_timeout is a finite number of
// seconds of at most a year, and its webui_url, if kept, is http(s).
func FuzzSubscribeValidation(f *testing.F) {
	for _, info := range []*mesos.FrameworkInfo{
		frameworkInfo("seed"),
		{User: proto.String("u"), Name: proto.String("n"), FailoverTimeout: proto.Float64(1e308), WebuiUrl: proto.String("javascript:alert(1)")},
		{User: proto.String("u"), Name: proto.String("n"), Roles: []string{"a", "b"}, Capabilities: []*mesos.FrameworkInfo_Capability{{Type: mesos.FrameworkInfo_Capability_MULTI_ROLE.Enum()}},
			Labels: &mesos.Labels{Labels: []*mesos.Label{{Key: proto.String("k"), Value: proto.String("v")}}}, WebuiUrl: proto.String("https://x/")},
	} {
		call := &scheduler.Call{Type: scheduler.Call_SUBSCRIBE.Enum(), Subscribe: &scheduler.Call_Subscribe{FrameworkInfo: info}}
		for i, cd := range []codec.Codec{codec.JSON, codec.Protobuf} {
			data, err := cd.Marshal(call)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(uint8(i), data)
		}
	}
	f.Add(uint8(0), []byte(`{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"u","name":"n","failover_timeout":"NaN"}}}`))
	f.Add(uint8(0), []byte(`{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"u","name":"n","failover_timeout":-1e308}}}`))
	m := fuzzMaster(f)
	f.Fuzz(func(t *testing.T, c uint8, body []byte) {
		cd := []codec.Codec{codec.JSON, codec.Protobuf}[int(c)%2]
		call := &scheduler.Call{}
		if cd.Unmarshal(body, call) != nil || validateSchedulerCall(call) != nil || call.GetType() != scheduler.Call_SUBSCRIBE {
			return
		}
		info := proto.Clone(call.GetSubscribe().GetFrameworkInfo()).(*mesos.FrameworkInfo)
		if m.validateFrameworkInfo(info, call.GetSubscribe().GetSuppressedRoles()) != nil {
			return
		}
		if n := proto.Size(info); n > validate.MaxFrameworkInfoSize {
			t.Fatalf("accepted a %d-byte FrameworkInfo", n)
		}
		for _, s := range []string{info.GetName(), info.GetPrincipal(), info.GetUser(), info.GetHostname(), info.GetRole()} {
			if len(s) > validate.MaxNameLen {
				t.Fatalf("accepted a %d-byte field", len(s))
			}
		}
		if ft := info.GetFailoverTimeout(); math.IsNaN(ft) || ft < 0 || ft > maxFailoverTimeout.Seconds() {
			t.Fatalf("accepted failover_timeout %v", ft)
		}
		if d := m.failoverTimeout(info); d < 0 || d > maxFailoverTimeout {
			t.Fatalf("failover timeout applied: %v", d)
		}
		if u := webURL(info.GetWebuiUrl()); u != "" && !strings.HasPrefix(strings.ToLower(u), "http") {
			t.Fatalf("webui_url %q would become a link", u)
		}
	})
}
