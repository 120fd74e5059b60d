package scheduler_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	schedv1 "github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/internal/testutil"
	"github.com/mesolite/mesolite/internal/tlsconfig"
	"github.com/mesolite/mesolite/scheduler"
	"github.com/mesolite/mesolite/scheduler/schedulertest"
)

func testConfig(master string) scheduler.Config {
	return scheduler.Config{
		Master:     master,
		Framework:  &mesos.FrameworkInfo{Name: mesos.Ptr("test-framework"), User: mesos.Ptr("nobody")},
		BackoffMin: 10 * time.Millisecond,
		BackoffMax: 50 * time.Millisecond,
	}
}

func subscribe(t *testing.T, cfg scheduler.Config) *scheduler.Client {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c, err := scheduler.Subscribe(ctx, cfg)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// next returns the next event that is not a heartbeat.
func next(t *testing.T, c *scheduler.Client) *schedv1.Event {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				t.Fatalf("events closed: %v", c.Err())
			}
			if ev.GetType() != schedv1.Event_HEARTBEAT {
				return ev
			}
		case <-timeout:
			t.Fatal("no event within 10s")
		}
	}
}

func offer(id string) *mesos.Offer {
	return &mesos.Offer{
		Id:          &mesos.OfferID{Value: mesos.Ptr(id)},
		FrameworkId: &mesos.FrameworkID{Value: mesos.Ptr("fake-framework-0001")},
		AgentId:     &mesos.AgentID{Value: mesos.Ptr("agent-1")},
		Hostname:    mesos.Ptr("localhost"),
	}
}

func update(task string, state mesos.TaskState, uuid []byte) *schedv1.Event {
	return &schedv1.Event{
		Type: schedv1.Event_UPDATE.Enum(),
		Update: &schedv1.Event_Update{Status: &mesos.TaskStatus{
			TaskId:  &mesos.TaskID{Value: mesos.Ptr(task)},
			State:   state.Enum(),
			AgentId: &mesos.AgentID{Value: mesos.Ptr("agent-1")},
			Uuid:    uuid,
		}},
	}
}

func send(t *testing.T, m *schedulertest.Master, ev *schedv1.Event) {
	t.Helper()
	if err := m.Send(ev); err != nil {
		t.Fatal(err)
	}
}

func TestSubscribeLaunchAcknowledge(t *testing.T) {
	for _, cdc := range []codec.Codec{codec.JSON, codec.Protobuf} {
		t.Run(cdc.MediaType(), func(t *testing.T) {
			m := schedulertest.NewMaster(t)
			cfg := testConfig(m.Addr())
			cfg.Codec = cdc
			c := subscribe(t, cfg)

			ev := next(t, c)
			if ev.GetType() != schedv1.Event_SUBSCRIBED {
				t.Fatalf("first event %s, want SUBSCRIBED", ev.GetType())
			}
			if got := c.FrameworkID(); got != "fake-framework-0001" {
				t.Fatalf("FrameworkID %q", got)
			}
			if c.StreamID() != "stream-1" || c.Master() != m.Addr() {
				t.Fatalf("stream %q master %q", c.StreamID(), c.Master())
			}
			sub := m.WaitCall(t, schedv1.Call_SUBSCRIBE)
			if fi := sub.GetSubscribe().GetFrameworkInfo(); fi.GetName() != "test-framework" || fi.GetUser() != "nobody" || fi.Id != nil {
				t.Fatalf("SUBSCRIBE framework_info %v", fi)
			}

			send(t, m, &schedv1.Event{Type: schedv1.Event_OFFERS.Enum(), Offers: &schedv1.Event_Offers{Offers: []*mesos.Offer{offer("o1")}}})
			ev = next(t, c)
			if ev.GetType() != schedv1.Event_OFFERS {
				t.Fatalf("got %s, want OFFERS", ev.GetType())
			}
			task := &mesos.TaskInfo{
				Name:    mesos.Ptr("t"),
				TaskId:  &mesos.TaskID{Value: mesos.Ptr("t1")},
				Command: &mesos.CommandInfo{Value: mesos.Ptr("true")},
			}
			if err := c.Launch(context.Background(), ev.GetOffers().GetOffers()[0], task); err != nil {
				t.Fatalf("Launch: %v", err)
			}
			if task.AgentId != nil {
				t.Fatal("Launch changed the caller's task")
			}
			acc := m.WaitCall(t, schedv1.Call_ACCEPT)
			if acc.GetFrameworkId().GetValue() != "fake-framework-0001" {
				t.Fatalf("ACCEPT framework_id %v", acc.GetFrameworkId())
			}
			launched := acc.GetAccept().GetOperations()[0].GetLaunch().GetTaskInfos()[0]
			if acc.GetAccept().GetOfferIds()[0].GetValue() != "o1" || launched.GetAgentId().GetValue() != "agent-1" {
				t.Fatalf("ACCEPT %v", acc)
			}

			// Reconciliation answers carry no uuid and must not be acknowledged.
			send(t, m, update("t1", mesos.TaskState_TASK_STAGING, nil))
			next(t, c)
			uuid := []byte("0123456789abcdef")
			send(t, m, update("t1", mesos.TaskState_TASK_RUNNING, uuid))
			if st := next(t, c).GetUpdate().GetStatus(); st.GetState() != mesos.TaskState_TASK_RUNNING {
				t.Fatalf("update %v", st)
			}
			ack := m.WaitCall(t, schedv1.Call_ACKNOWLEDGE).GetAcknowledge()
			if !bytes.Equal(ack.GetUuid(), uuid) || ack.GetTaskId().GetValue() != "t1" || ack.GetAgentId().GetValue() != "agent-1" {
				t.Fatalf("ACKNOWLEDGE %v", ack)
			}
			if n := countCalls(m, schedv1.Call_ACKNOWLEDGE); n != 1 {
				t.Fatalf("%d acknowledgements, want 1", n)
			}
		})
	}
}

func countCalls(m *schedulertest.Master, typ schedv1.Call_Type) int {
	n := 0
	for _, c := range m.Calls() {
		if c.GetType() == typ {
			n++
		}
	}
	return n
}

func TestManualAcknowledge(t *testing.T) {
	m := schedulertest.NewMaster(t)
	cfg := testConfig(m.Addr())
	cfg.ManualAcknowledge = true
	c := subscribe(t, cfg)
	next(t, c)
	send(t, m, update("t1", mesos.TaskState_TASK_RUNNING, []byte("u1")))
	st := next(t, c).GetUpdate().GetStatus()
	if err := c.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	m.WaitCall(t, schedv1.Call_RECONCILE)
	if n := countCalls(m, schedv1.Call_ACKNOWLEDGE); n != 0 {
		t.Fatalf("%d acknowledgements with ManualAcknowledge", n)
	}
	if err := c.Acknowledge(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	m.WaitCall(t, schedv1.Call_ACKNOWLEDGE)
	err := c.Acknowledge(context.Background(), &mesos.TaskStatus{TaskId: st.TaskId, State: st.State})
	if !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("acknowledging an update without uuid: %v", err)
	}
}

func TestCalls(t *testing.T) {
	m := schedulertest.NewMaster(t)
	c := subscribe(t, testConfig(m.Addr()))
	next(t, c)
	ctx := context.Background()
	taskID := &mesos.TaskID{Value: mesos.Ptr("t1")}
	agentID := &mesos.AgentID{Value: mesos.Ptr("a1")}
	tests := []struct {
		typ   schedv1.Call_Type
		do    func() error
		check func(*schedv1.Call) bool
	}{
		{schedv1.Call_DECLINE, func() error { return c.Decline(ctx, scheduler.RefuseFor(time.Minute), offer("o2").Id) },
			func(call *schedv1.Call) bool {
				return call.GetDecline().GetFilters().GetRefuseSeconds() == 60 && call.GetDecline().GetOfferIds()[0].GetValue() == "o2"
			}},
		{schedv1.Call_KILL, func() error { return c.Kill(ctx, taskID, agentID) },
			func(call *schedv1.Call) bool { return call.GetKill().GetTaskId().GetValue() == "t1" }},
		{schedv1.Call_REVIVE, func() error { return c.Revive(ctx, "web") },
			func(call *schedv1.Call) bool { return call.GetRevive().GetRoles()[0] == "web" }},
		{schedv1.Call_SUPPRESS, func() error { return c.Suppress(ctx) },
			func(call *schedv1.Call) bool { return call.Suppress == nil }},
		{schedv1.Call_RECONCILE, func() error { return c.Reconcile(ctx, scheduler.ReconcileTask("t1", "a1")) },
			func(call *schedv1.Call) bool {
				return call.GetReconcile().GetTasks()[0].GetAgentId().GetValue() == "a1"
			}},
		{schedv1.Call_SHUTDOWN, func() error { return c.Shutdown(ctx, &mesos.ExecutorID{Value: mesos.Ptr("e1")}, agentID) },
			func(call *schedv1.Call) bool { return call.GetShutdown().GetExecutorId().GetValue() == "e1" }},
		{schedv1.Call_MESSAGE, func() error { return c.Message(ctx, agentID, &mesos.ExecutorID{Value: mesos.Ptr("e1")}, []byte("hi")) },
			func(call *schedv1.Call) bool { return string(call.GetMessage().GetData()) == "hi" }},
	}
	for _, tt := range tests {
		t.Run(tt.typ.String(), func(t *testing.T) {
			if err := tt.do(); err != nil {
				t.Fatal(err)
			}
			call := m.WaitCall(t, tt.typ)
			if call.GetFrameworkId().GetValue() != "fake-framework-0001" || !tt.check(call) {
				t.Fatalf("call %v", call)
			}
		})
	}
}

func TestUnreachableMaster(t *testing.T) {
	addr := "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))
	_, err := scheduler.Subscribe(context.Background(), testConfig(addr))
	if err == nil {
		t.Fatal("Subscribe to a closed port succeeded")
	}
	var ue *scheduler.UnreachableError
	if !errors.As(err, &ue) || !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("error %T %v, want *UnreachableError wrapping ErrUnavailable", err, err)
	}
	if want := "cannot reach master at " + addr + ": "; !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("error %q, want prefix %q", err, want)
	}
}

func TestSubscribeRefused(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "Framework is not authorized", http.StatusForbidden)
	}))
	defer srv.Close()
	_, err := scheduler.Subscribe(context.Background(), testConfig(srv.URL))
	if !errors.Is(err, errdefs.ErrForbidden) || !strings.Contains(err.Error(), "Framework is not authorized") {
		t.Fatalf("error %v, want ErrForbidden with the master's reason", err)
	}
}

func TestRedirectToLeader(t *testing.T) {
	leader := schedulertest.NewMaster(t)
	var redirected int
	follower := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		redirected++
		w.Header().Set("Location", "//"+leader.Addr())
		w.WriteHeader(http.StatusTemporaryRedirect)
	}))
	defer follower.Close()

	c := subscribe(t, testConfig(follower.URL))
	next(t, c)
	if c.Master() != leader.Addr() || redirected != 1 {
		t.Fatalf("subscribed with %s after %d redirects, want %s after 1", c.Master(), redirected, leader.Addr())
	}
	if err := c.Revive(context.Background()); err != nil {
		t.Fatal(err)
	}
	leader.WaitCall(t, schedv1.Call_REVIVE)
	if redirected != 1 {
		t.Fatal("a call went to the follower")
	}
}

func TestRedirectLoop(t *testing.T) {
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "//"+strings.TrimPrefix(srv.URL, "http://"))
		w.WriteHeader(http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	_, err := scheduler.Subscribe(context.Background(), testConfig(srv.URL))
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "redirects") {
		t.Fatalf("error %v", err)
	}
}

func TestResubscribeAfterStreamLoss(t *testing.T) {
	m := schedulertest.NewMaster(t)
	c := subscribe(t, testConfig(m.Addr()))
	next(t, c)
	m.WaitCall(t, schedv1.Call_SUBSCRIBE)

	m.DropStream()
	ev := next(t, c)
	if ev.GetType() != schedv1.Event_SUBSCRIBED {
		t.Fatalf("after the stream loss got %s, want a new SUBSCRIBED", ev.GetType())
	}
	again := m.WaitCall(t, schedv1.Call_SUBSCRIBE)
	if again.GetFrameworkId().GetValue() != "fake-framework-0001" ||
		again.GetSubscribe().GetFrameworkInfo().GetId().GetValue() != "fake-framework-0001" {
		t.Fatalf("re-SUBSCRIBE without the framework id: %v", again)
	}
	if c.StreamID() != "stream-2" {
		t.Fatalf("stream id %q after re-subscribing, want stream-2", c.StreamID())
	}
	if err := c.Revive(context.Background()); err != nil {
		t.Fatalf("call after re-subscribing: %v", err)
	}
}

func TestMissedHeartbeats(t *testing.T) {
	m := schedulertest.NewMaster(t)
	m.HeartbeatInterval = 20 * time.Millisecond
	cfg := testConfig(m.Addr())
	cfg.MissedHeartbeats = 3
	c := subscribe(t, cfg)
	next(t, c)
	// The fake sends no heartbeats: after 3 silent intervals the client
	// must give up on the stream and subscribe again.
	if ev := next(t, c); ev.GetType() != schedv1.Event_SUBSCRIBED {
		t.Fatalf("got %s, want SUBSCRIBED again", ev.GetType())
	}
	if m.Subscribes() < 2 {
		t.Fatalf("%d subscriptions", m.Subscribes())
	}
}

func TestHeartbeatsKeepStream(t *testing.T) {
	m := schedulertest.NewMaster(t)
	m.HeartbeatInterval = 20 * time.Millisecond
	m.SendHeartbeats = true
	cfg := testConfig(m.Addr())
	cfg.MissedHeartbeats = 10
	c := subscribe(t, cfg)
	next(t, c)
	heartbeats := 0
	for heartbeats < 10 {
		ev := <-c.Events()
		switch ev.GetType() {
		case schedv1.Event_HEARTBEAT:
			heartbeats++
		default:
			t.Fatalf("got %s between heartbeats", ev.GetType())
		}
	}
	if m.Subscribes() != 1 {
		t.Fatalf("%d subscriptions while heartbeats flowed", m.Subscribes())
	}
}

func TestSlowConsumerIsNotAMissedHeartbeat(t *testing.T) {
	m := schedulertest.NewMaster(t)
	m.HeartbeatInterval = 10 * time.Millisecond
	m.SendHeartbeats = true
	cfg := testConfig(m.Addr())
	cfg.MissedHeartbeats = 10
	c := subscribe(t, cfg)
	next(t, c)
	time.Sleep(500 * time.Millisecond) // the caller is busy for 5 silences; the stream must wait
	for range 5 {
		<-c.Events()
	}
	if m.Subscribes() != 1 {
		t.Fatalf("%d subscriptions after a slow consumer", m.Subscribes())
	}
}

func TestErrorEventStops(t *testing.T) {
	m := schedulertest.NewMaster(t)
	c := subscribe(t, testConfig(m.Addr()))
	next(t, c)
	send(t, m, &schedv1.Event{Type: schedv1.Event_ERROR.Enum(), Error: &schedv1.Event_Error{Message: mesos.Ptr("Framework has been removed")}})
	if ev := next(t, c); ev.GetType() != schedv1.Event_ERROR {
		t.Fatalf("got %s, want ERROR", ev.GetType())
	}
	select {
	case _, ok := <-c.Events():
		if ok {
			t.Fatal("event after ERROR")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("events not closed after ERROR")
	}
	if err := c.Err(); err == nil || !strings.Contains(err.Error(), "Framework has been removed") {
		t.Fatalf("Err %v", err)
	}
	if m.Subscribes() != 1 {
		t.Fatal("re-subscribed after ERROR")
	}
}

func TestTeardown(t *testing.T) {
	m := schedulertest.NewMaster(t)
	m.OnCall = func(call *schedv1.Call) {
		if call.GetType() == schedv1.Call_TEARDOWN {
			go m.DropStream()
		}
	}
	c := subscribe(t, testConfig(m.Addr()))
	next(t, c)
	go func() {
		for range c.Events() {
		}
	}()
	if err := c.Teardown(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-c.Done()
	if c.Err() != nil {
		t.Fatalf("Err after Teardown: %v", c.Err())
	}
	if err := c.Revive(context.Background()); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("call after Teardown: %v", err)
	}
	if m.Subscribes() != 1 {
		t.Fatal("re-subscribed after Teardown")
	}
}

func TestContextEndsClient(t *testing.T) {
	m := schedulertest.NewMaster(t)
	ctx, cancel := context.WithCancel(context.Background())
	c, err := scheduler.Subscribe(ctx, testConfig(m.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	for range c.Events() {
	}
	if !errors.Is(c.Err(), context.Canceled) {
		t.Fatalf("Err %v, want context.Canceled", c.Err())
	}
}

func TestReconnectTimeout(t *testing.T) {
	m := schedulertest.NewMaster(t)
	cfg := testConfig(m.Addr())
	cfg.ReconnectTimeout = 200 * time.Millisecond
	c := subscribe(t, cfg)
	next(t, c)
	m.DropStream()
	m.Server.Close()
	for range c.Events() {
	}
	var ue *scheduler.UnreachableError
	if err := c.Err(); !errors.As(err, &ue) || !strings.Contains(err.Error(), "gave up re-subscribing") {
		t.Fatalf("Err %v", err)
	}
}

func TestCallWhileDisconnected(t *testing.T) {
	m := schedulertest.NewMaster(t)
	c := subscribe(t, testConfig(m.Addr()))
	next(t, c)
	// Refuse to take the framework back: the client stays between streams.
	m.RefuseSubscribe(http.StatusServiceUnavailable, "electing a leader")
	m.DropStream()
	testutil.Eventually(t, 10*time.Second, 5*time.Millisecond, func() bool { return c.StreamID() == "" }, "stream id cleared")
	if err := c.Revive(context.Background()); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("call between streams: %v", err)
	}
}

func TestResolveMaster(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "master")
	if err := os.WriteFile(file, []byte("10.0.0.1:5050\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	httpsFile := filepath.Join(dir, "https-master")
	if err := os.WriteFile(httpsFile, []byte("https://10.0.0.2:5050\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	loop := filepath.Join(dir, "loop")
	if err := os.WriteFile(loop, []byte("file://"+loop), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		in, want       string
		https, wantErr bool
	}{
		{in: "127.0.0.1:5050", want: "127.0.0.1:5050"},
		{in: "master.example", want: "master.example:5050"},
		{in: "http://127.0.0.1:5051/", want: "127.0.0.1:5051"},
		{in: "http://m:1/master", want: "m:1"},
		{in: "https://m:1/master", want: "m:1", https: true},
		{in: "https://m", want: "m:5050", https: true},
		{in: "[::1]:5050", want: "[::1]:5050"},
		{in: "::1", want: "[::1]:5050"},
		{in: "file://" + file, want: "10.0.0.1:5050"},
		{in: "file://" + httpsFile, want: "10.0.0.2:5050", https: true},
		{in: "file://" + loop, wantErr: true},
		{in: "file:///nonexistent/master", wantErr: true},
		{in: "zk://zk1:2181/mesos", wantErr: true},
		{in: "", wantErr: true},
		{in: "a b:1", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, https, err := scheduler.ResolveMasterScheme(context.Background(), tt.in)
			if (err != nil) != tt.wantErr || got != tt.want || https != tt.https {
				t.Fatalf("ResolveMasterScheme(%q) = %q, %v, %v; want %q, %v, error %v", tt.in, got, https, err, tt.want, tt.https, tt.wantErr)
			}
			if hp, _ := scheduler.ResolveMaster(context.Background(), tt.in); hp != got {
				t.Fatalf("ResolveMaster(%q) = %q, want %q", tt.in, hp, got)
			}
		})
	}
}

func TestMasterFromLocation(t *testing.T) {
	tests := []struct{ in, want string }{
		{"//10.0.0.2:5050", "10.0.0.2:5050"},
		{"//m2:5050/api/v1/scheduler", "m2:5050"},
		{"http://m2:5050/master/state", "m2:5050"},
		{"m2:5050", "m2:5050"},
		{"//m2", "m2:5050"},
	}
	for _, tt := range tests {
		got, err := scheduler.MasterFromLocation(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("MasterFromLocation(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	if _, err := scheduler.MasterFromLocation(""); err == nil {
		t.Error("empty Location accepted")
	}
}

// A TLS master is reached over https and verified: with its CA the client
// subscribes and calls; without it, or speaking plain http, it refuses
// and says why.
func TestSubscribeOverTLS(t *testing.T) {
	m := schedulertest.NewTLSMaster(t)
	trusted := x509.NewCertPool()
	trusted.AddCert(m.Server.Certificate())
	tests := []struct {
		name    string
		master  string
		tls     *tls.Config
		wantErr error
	}{
		{name: "trusted", master: m.Addr(), tls: &tls.Config{RootCAs: trusted}},
		{name: "https master, trusted", master: "https://" + m.Addr(), tls: &tls.Config{RootCAs: trusted}},
		{name: "https master, system roots", master: "https://" + m.Addr(), wantErr: tlsconfig.ErrUntrusted},
		{name: "another CA", master: m.Addr(), tls: &tls.Config{RootCAs: x509.NewCertPool()}, wantErr: tlsconfig.ErrUntrusted},
		{name: "plain http", master: m.Addr(), wantErr: tlsconfig.ErrPlainToTLS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(tt.master)
			cfg.TLS = tt.tls
			if tt.wantErr != nil {
				_, err := scheduler.Subscribe(context.Background(), cfg)
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Subscribe: %v, want %v", err, tt.wantErr)
				}
				return
			}
			c := subscribe(t, cfg)
			next(t, c)
			if err := c.Revive(context.Background()); err != nil {
				t.Fatalf("REVIVE over https: %v", err)
			}
			m.WaitCall(t, schedv1.Call_REVIVE)
			c.Close()
		})
	}
}
