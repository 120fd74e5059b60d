package master

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/mesolite/mesolite/api/v1/agentpb"
	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/recordio"
	"github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/internal/testutil"
	"google.golang.org/protobuf/proto"
)

// eventTimeout bounds every wait for an event.
const eventTimeout = 10 * time.Second

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// testLogger writes the master's log into the test's output.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// harness is a running master on a loopback port.
type harness struct {
	t     *testing.T
	m     *Master
	base  string // http://127.0.0.1:port
	clock *fakeClock
	stop  func()
}

type harnessOpt func(*Config)

func withFakeClock(c *fakeClock) harnessOpt { return func(cfg *Config) { cfg.Clock = c } }

// startMaster runs a master with a fake clock (time only moves when a test
// says so) and returns once it leads.
func startMaster(t *testing.T, opts ...harnessOpt) *harness {
	t.Helper()
	clk := newFakeClock()
	cfg := DefaultConfig()
	cfg.IP = "127.0.0.1"
	cfg.Hostname = "127.0.0.1"
	cfg.Clock = clk
	cfg.Logger = testLogger(t)
	cfg.AllocationInterval = 20 * time.Millisecond
	for _, o := range opts {
		o(&cfg)
	}
	if c, ok := cfg.Clock.(*fakeClock); ok {
		clk = c
	} else {
		clk = nil
	}
	h := &harness{t: t, clock: clk}
	h.m, h.base, h.stop = runMaster(t, cfg)
	testutil.Eventually(t, eventTimeout, 10*time.Millisecond, h.m.isLeader, "master elected")
	return h
}

// runMaster starts Run on a fresh loopback listener; stop ends it and waits.
func runMaster(t *testing.T, cfg Config) (*Master, string, func()) {
	t.Helper()
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, ln) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return m, "http://" + ln.Addr().String(), stop
}

func (h *harness) advance(d time.Duration) {
	h.t.Helper()
	h.clock.Advance(d)
	h.m.housekeeping()
	h.m.allocate()
}

// post sends one call body and returns the status and body.
func post(t testing.TB, url, contentType string, body []byte, header http.Header) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data), resp.Header
}

func getJSON(t testing.TB, url string) map[string]any {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	var v map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return v
}

// ---- a scheduler speaking the v1 API ----

type schedClient struct {
	t        *testing.T
	base     string
	codec    codec.Codec
	resp     *http.Response
	streamID string
	fwID     string
	events   chan *scheduler.Event
	stash    []*scheduler.Event
	closed   chan struct{}
	cancel   context.CancelFunc
	header   http.Header
}

func frameworkInfo(name string, caps ...mesos.FrameworkInfo_Capability_Type) *mesos.FrameworkInfo {
	info := &mesos.FrameworkInfo{User: proto.String("tester"), Name: proto.String(name)}
	for _, c := range caps {
		info.Capabilities = append(info.Capabilities, &mesos.FrameworkInfo_Capability{Type: c.Enum()})
	}
	return info
}

// subscribe opens a SUBSCRIBE stream and waits for SUBSCRIBED.
func (h *harness) subscribe(info *mesos.FrameworkInfo, c codec.Codec) *schedClient {
	h.t.Helper()
	return subscribeTo(h.t, h.base, info, c)
}

func subscribeTo(t *testing.T, base string, info *mesos.FrameworkInfo, c codec.Codec) *schedClient {
	t.Helper()
	sc := openSubscribe(t, base, info, c)
	if sc.resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(sc.resp.Body)
		t.Fatalf("SUBSCRIBE: %s: %s", sc.resp.Status, body)
	}
	ev := sc.next(scheduler.Event_SUBSCRIBED)
	sc.fwID = ev.GetSubscribed().GetFrameworkId().GetValue()
	return sc
}

func openSubscribe(t *testing.T, base string, info *mesos.FrameworkInfo, c codec.Codec) *schedClient {
	t.Helper()
	return openSubscribeWith(t, base, info, c, nil)
}

// openSubscribeWith sends SUBSCRIBE with extra headers (credentials), which
// the client's later calls carry too.
func openSubscribeWith(t *testing.T, base string, info *mesos.FrameworkInfo, c codec.Codec, header http.Header) *schedClient {
	t.Helper()
	call := &scheduler.Call{Type: scheduler.Call_SUBSCRIBE.Enum(), Subscribe: &scheduler.Call_Subscribe{FrameworkInfo: info}}
	if info.Id != nil {
		call.FrameworkId = info.Id
	}
	body, err := c.Marshal(call)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1/scheduler", bytes.NewReader(body))
	req.Header.Set("Content-Type", c.MediaType())
	req.Header.Set("Accept", c.MediaType())
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	sc := &schedClient{t: t, base: base, codec: c, resp: resp, streamID: resp.Header.Get("Mesos-Stream-Id"),
		events: make(chan *scheduler.Event, 1000), closed: make(chan struct{}), cancel: cancel, header: header}
	t.Cleanup(sc.close)
	if resp.StatusCode == http.StatusOK {
		go sc.read()
	} else {
		close(sc.closed)
	}
	return sc
}

func (sc *schedClient) read() {
	defer close(sc.closed)
	dec := recordio.NewDecoder(sc.resp.Body, sc.codec, 0)
	for {
		ev := &scheduler.Event{}
		if err := dec.Decode(ev); err != nil {
			return
		}
		sc.events <- ev
	}
}

func (sc *schedClient) close() {
	sc.cancel()
	sc.resp.Body.Close()
}

// next returns the next event of type typ. Heartbeats are skipped; offers
// and rescinds, which arrive whenever resources free up, are kept aside for
// a later next(OFFERS); anything else fails the test.
func (sc *schedClient) next(typ scheduler.Event_Type) *scheduler.Event {
	sc.t.Helper()
	for i, ev := range sc.stash {
		if ev.GetType() == typ {
			sc.stash = append(sc.stash[:i:i], sc.stash[i+1:]...)
			return ev
		}
	}
	timeout := time.After(eventTimeout)
	for {
		select {
		case ev := <-sc.events:
			switch {
			case ev.GetType() == typ:
				return ev
			case ev.GetType() == scheduler.Event_HEARTBEAT:
			case ev.GetType() == scheduler.Event_OFFERS || ev.GetType() == scheduler.Event_RESCIND:
				sc.stash = append(sc.stash, ev)
			default:
				sc.t.Fatalf("framework %s: got event %s, want %s: %v", sc.fwID, ev.GetType(), typ, ev)
			}
		case <-timeout:
			sc.t.Fatalf("framework %s: no %s event within %s", sc.fwID, typ, eventTimeout)
		}
	}
}

// skipUntil returns the next event of typ, ignoring any other.
func (sc *schedClient) skipUntil(typ scheduler.Event_Type) *scheduler.Event {
	sc.t.Helper()
	timeout := time.After(eventTimeout)
	for {
		select {
		case ev := <-sc.events:
			if ev.GetType() == typ {
				return ev
			}
		case <-timeout:
			sc.t.Fatalf("framework %s: no %s event within %s", sc.fwID, typ, eventTimeout)
		}
	}
}

// quiet fails if an event of typ arrives within d.
func (sc *schedClient) quiet(typ scheduler.Event_Type, d time.Duration) {
	sc.t.Helper()
	for _, ev := range sc.stash {
		if ev.GetType() == typ {
			sc.t.Fatalf("framework %s: unexpected %s event: %v", sc.fwID, typ, ev)
		}
	}
	timeout := time.After(d)
	for {
		select {
		case ev := <-sc.events:
			if ev.GetType() == typ {
				sc.t.Fatalf("framework %s: unexpected %s event: %v", sc.fwID, typ, ev)
			}
		case <-timeout:
			return
		}
	}
}

// call posts a call on this subscription and returns status and body.
func (sc *schedClient) call(c *scheduler.Call) (int, string) {
	sc.t.Helper()
	if c.FrameworkId == nil {
		c.FrameworkId = &mesos.FrameworkID{Value: proto.String(sc.fwID)}
	}
	body, err := sc.codec.Marshal(c)
	if err != nil {
		sc.t.Fatal(err)
	}
	h := sc.header.Clone()
	if h == nil {
		h = http.Header{}
	}
	h.Set("Mesos-Stream-Id", sc.streamID)
	status, resp, _ := post(sc.t, sc.base+"/api/v1/scheduler", sc.codec.MediaType(), body, h)
	return status, resp
}

func (sc *schedClient) mustCall(c *scheduler.Call) {
	sc.t.Helper()
	if status, body := sc.call(c); status != http.StatusAccepted {
		sc.t.Fatalf("%s: %d %s", c.GetType(), status, body)
	}
}

func (sc *schedClient) offer() *mesos.Offer {
	sc.t.Helper()
	ev := sc.next(scheduler.Event_OFFERS)
	if len(ev.GetOffers().GetOffers()) == 0 {
		sc.t.Fatal("OFFERS event without offers")
	}
	return ev.GetOffers().GetOffers()[0]
}

func (sc *schedClient) decline(o *mesos.Offer, refuse float64) {
	sc.t.Helper()
	sc.mustCall(&scheduler.Call{Type: scheduler.Call_DECLINE.Enum(), Decline: &scheduler.Call_Decline{
		OfferIds: []*mesos.OfferID{o.GetId()}, Filters: &mesos.Filters{RefuseSeconds: proto.Float64(refuse)}}})
}

func (sc *schedClient) launch(offerIDs []*mesos.OfferID, tasks ...*mesos.TaskInfo) {
	sc.t.Helper()
	sc.mustCall(&scheduler.Call{Type: scheduler.Call_ACCEPT.Enum(), Accept: &scheduler.Call_Accept{
		OfferIds:   offerIDs,
		Operations: []*mesos.Offer_Operation{{Type: mesos.Offer_Operation_LAUNCH.Enum(), Launch: &mesos.Offer_Operation_Launch{TaskInfos: tasks}}},
		Filters:    &mesos.Filters{RefuseSeconds: proto.Float64(0)},
	}})
}

func (sc *schedClient) ack(st *mesos.TaskStatus) {
	sc.t.Helper()
	sc.mustCall(&scheduler.Call{Type: scheduler.Call_ACKNOWLEDGE.Enum(), Acknowledge: &scheduler.Call_Acknowledge{
		AgentId: st.GetAgentId(), TaskId: st.GetTaskId(), Uuid: st.GetUuid()}})
}

func scalarRes(name string, v float64) *mesos.Resource {
	return &mesos.Resource{Name: proto.String(name), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(v)}}
}

func commandTask(id string, agentID *mesos.AgentID, cpus, mem float64) *mesos.TaskInfo {
	return &mesos.TaskInfo{
		Name:      proto.String(id),
		TaskId:    &mesos.TaskID{Value: proto.String(id)},
		AgentId:   agentID,
		Resources: []*mesos.Resource{scalarRes("cpus", cpus), scalarRes("mem", mem)},
		Command:   &mesos.CommandInfo{Value: proto.String("echo hi")},
	}
}

// ---- an agent speaking the master-agent protocol ----

type fakeAgent struct {
	t        *testing.T
	base     string
	codec    codec.Codec
	id       string
	streamID string
	resp     *http.Response
	events   chan *agentpb.Event
	stash    []*agentpb.Event
	closed   chan struct{}
	cancel   context.CancelFunc
	// header goes with every call (credentials)
	header http.Header
}

func agentRegister(hostname string, port int, res ...*mesos.Resource) *agentpb.Call {
	if len(res) == 0 {
		res = []*mesos.Resource{scalarRes("cpus", 4), scalarRes("mem", 4096), scalarRes("disk", 10000),
			{Name: proto.String("ports"), Type: mesos.Value_RANGES.Enum(), Ranges: &mesos.Value_Ranges{Range: []*mesos.Value_Range{{Begin: proto.Uint64(31000), End: proto.Uint64(32000)}}}}}
	}
	return &agentpb.Call{
		Type: agentpb.Call_REGISTER.Enum(),
		Register: &agentpb.Call_Register{
			ProtocolVersion: proto.Uint32(ProtocolVersion),
			AgentInfo: &mesos.AgentInfo{
				Hostname:  proto.String(hostname),
				Resources: res,
				Attributes: []*mesos.Attribute{{Name: proto.String("rack"), Type: mesos.Value_TEXT.Enum(),
					Text: &mesos.Value_Text{Value: proto.String("r1")}}},
			},
			Address: &mesos.Address{Ip: proto.String("127.0.0.1"), Port: proto.Int32(int32(port))},
			Version: proto.String("test"),
		},
	}
}

// registerAgent registers (or, with call.agent_id set, re-registers) and
// waits for REGISTERED.
func (h *harness) registerAgent(call *agentpb.Call) *fakeAgent {
	h.t.Helper()
	return registerAgentAt(h.t, h.base, call)
}

// agentTokens are the registration tokens masters handed the fake agents,
// by agent id: what a real agent checkpoints beside its agent.info, so
// that re-registrations with an id present its token as a real agent does.
var agentTokens sync.Map

func registerAgentAt(t *testing.T, base string, call *agentpb.Call) *fakeAgent {
	t.Helper()
	header := http.Header{}
	if tok, ok := agentTokens.Load(call.GetAgentId().GetValue()); ok {
		header.Set(AgentTokenHeader, tok.(string))
	}
	return registerAgentWith(t, base, call, header)
}

// openRegister sends a REGISTER with exactly the given headers and returns
// the answer, whatever it is.
func openRegister(t *testing.T, base string, call *agentpb.Call, header http.Header) (*http.Response, context.CancelFunc) {
	t.Helper()
	c := codec.Protobuf
	body, err := c.Marshal(call)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1/agent", bytes.NewReader(body))
	req.Header.Set("Content-Type", c.MediaType())
	req.Header.Set("Accept", c.MediaType())
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	return resp, cancel
}

func registerAgentWith(t *testing.T, base string, call *agentpb.Call, header http.Header) *fakeAgent {
	t.Helper()
	c := codec.Protobuf
	resp, cancel := openRegister(t, base, call, header)
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(resp.Body)
		cancel()
		t.Fatalf("REGISTER: %s: %s", resp.Status, data)
	}
	a := &fakeAgent{t: t, base: base, codec: c, resp: resp, streamID: resp.Header.Get("Mesos-Stream-Id"),
		events: make(chan *agentpb.Event, 1000), closed: make(chan struct{}), cancel: cancel, header: header}
	t.Cleanup(a.close)
	go a.read()
	ev := a.next(agentpb.Event_REGISTERED)
	a.id = ev.GetRegistered().GetAgentId().GetValue()
	if tok := resp.Header.Get(AgentTokenHeader); tok != "" {
		agentTokens.Store(a.id, tok)
	}
	return a
}

func (a *fakeAgent) read() {
	defer close(a.closed)
	dec := recordio.NewDecoder(a.resp.Body, a.codec, 0)
	for {
		ev := &agentpb.Event{}
		if err := dec.Decode(ev); err != nil {
			return
		}
		a.events <- ev
	}
}

func (a *fakeAgent) close() {
	a.cancel()
	a.resp.Body.Close()
}

// disconnect drops the stream and waits until the master noticed.
func (a *fakeAgent) disconnect(m *Master) {
	a.t.Helper()
	a.close()
	testutil.Eventually(a.t, eventTimeout, 10*time.Millisecond, func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		ag := m.agents[a.id]
		return ag == nil || !ag.connected
	}, "master notices agent %s left", a.id)
}

// next returns the next event of type typ; pings are skipped and other
// events kept aside for a later next.
func (a *fakeAgent) next(typ agentpb.Event_Type) *agentpb.Event {
	a.t.Helper()
	for i, ev := range a.stash {
		if ev.GetType() == typ {
			a.stash = append(a.stash[:i:i], a.stash[i+1:]...)
			return ev
		}
	}
	timeout := time.After(eventTimeout)
	for {
		select {
		case ev := <-a.events:
			switch ev.GetType() {
			case typ:
				return ev
			case agentpb.Event_PING:
			default:
				a.stash = append(a.stash, ev)
			}
		case <-timeout:
			a.t.Fatalf("agent %s: no %s event within %s", a.id, typ, eventTimeout)
		}
	}
}

func (a *fakeAgent) call(c *agentpb.Call) (int, string) {
	a.t.Helper()
	c.AgentId = &mesos.AgentID{Value: proto.String(a.id)}
	body, err := a.codec.Marshal(c)
	if err != nil {
		a.t.Fatal(err)
	}
	h := a.header.Clone()
	if h == nil {
		h = http.Header{}
	}
	h.Set("Mesos-Stream-Id", a.streamID)
	status, resp, _ := post(a.t, a.base+"/api/v1/agent", a.codec.MediaType(), body, h)
	return status, resp
}

// update sends a status update with a fresh uuid and returns the uuid.
func (a *fakeAgent) update(fwID, taskID string, state mesos.TaskState) []byte {
	a.t.Helper()
	id := uuid.New()
	status, body := a.call(&agentpb.Call{Type: agentpb.Call_UPDATE.Enum(), Update: &agentpb.Call_Update{
		FrameworkId: &mesos.FrameworkID{Value: proto.String(fwID)},
		Status: &mesos.TaskStatus{
			TaskId: &mesos.TaskID{Value: proto.String(taskID)},
			State:  state.Enum(),
			Source: mesos.TaskStatus_SOURCE_EXECUTOR.Enum(),
			Uuid:   id[:],
			ContainerStatus: &mesos.ContainerStatus{
				ContainerId: &mesos.ContainerID{Value: proto.String("c-" + taskID)},
			},
		},
		LatestState: state.Enum(),
	}})
	if status != http.StatusAccepted {
		a.t.Fatalf("UPDATE: %d %s", status, body)
	}
	return id[:]
}

func fmtJSON(v any) string {
	data, _ := json.MarshalIndent(v, "", "  ")
	return string(data)
}

func ioCopy(w io.Writer, resp *http.Response) (int64, error) { return io.Copy(w, resp.Body) }
