package schedulertest

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/recordio"
	schedv1 "github.com/mesolite/mesolite/api/v1/scheduler"
	"google.golang.org/protobuf/proto"
)

// Master is the fake master. Set the exported fields before the first
// request.
type Master struct {
	Server *httptest.Server
	// Mux serves everything; /api/v1/scheduler is already on it.
	Mux *http.ServeMux
	// FrameworkID is what SUBSCRIBED assigns to a framework without an id.
	FrameworkID string
	// HeartbeatInterval goes into SUBSCRIBED; the fake sends HEARTBEAT
	// events at that pace only when SendHeartbeats is set.
	HeartbeatInterval time.Duration
	SendHeartbeats    bool
	// OnCall, if set, sees every call the master accepts (SUBSCRIBE
	// included) before the answer goes out.
	OnCall func(*schedv1.Call)

	mu         sync.Mutex
	refuse     int // status SUBSCRIBE answers with, 0 to accept
	refusal    string
	cond       *sync.Cond
	calls      []*schedv1.Call
	taken      map[*schedv1.Call]bool // handed out by WaitCall
	subscribes int
	sub        *subscriber
}

type subscriber struct {
	streamID string
	events   chan *schedv1.Event
	gone     chan struct{}
	drop     chan struct{}
	once     sync.Once
}

func (s *subscriber) cut() { s.once.Do(func() { close(s.drop) }) }

// NewMaster starts a fake master, closed when the test ends.
func NewMaster(t testing.TB) *Master {
	t.Helper()
	return newMaster(t, false)
}

// NewTLSMaster is NewMaster serving https only, with httptest's
// certificate for 127.0.0.1 (Server.Certificate).
func NewTLSMaster(t testing.TB) *Master {
	t.Helper()
	return newMaster(t, true)
}

func newMaster(t testing.TB, https bool) *Master {
	t.Helper()
	m := &Master{
		Mux:               http.NewServeMux(),
		FrameworkID:       "fake-framework-0001",
		HeartbeatInterval: 15 * time.Second,
	}
	m.cond = sync.NewCond(&m.mu)
	m.taken = map[*schedv1.Call]bool{}
	m.Mux.HandleFunc("POST /api/v1/scheduler", m.serveScheduler)
	m.Server = httptest.NewUnstartedServer(m.Mux)
	if https {
		m.Server.StartTLS()
	} else {
		m.Server.Start()
	}
	t.Cleanup(func() {
		m.DropStream()
		m.Server.Close()
	})
	return m
}

// Addr is the master's host:port.
func (m *Master) Addr() string {
	return strings.TrimPrefix(strings.TrimPrefix(m.Server.URL, "http://"), "https://")
}

// Subscribes counts the SUBSCRIBE calls answered with a stream.
func (m *Master) Subscribes() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.subscribes
}

// Calls returns every call received so far, in order.
func (m *Master) Calls() []*schedv1.Call {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*schedv1.Call(nil), m.calls...)
}

// WaitCall waits up to 10 seconds for the first call of type typ not yet
// returned by an earlier WaitCall for that type, and fails the test
// without one.
func (m *Master) WaitCall(t testing.TB, typ schedv1.Call_Type) *schedv1.Call {
	t.Helper()
	c, ok := m.waitCall(typ, 10*time.Second)
	if !ok {
		t.Fatalf("fake master: no %s call within 10s; calls so far: %v", typ, callTypes(m.Calls()))
	}
	return c
}

func (m *Master) waitCall(typ schedv1.Call_Type, timeout time.Duration) (*schedv1.Call, bool) {
	deadline := time.Now().Add(timeout)
	wake := time.AfterFunc(timeout, func() {
		m.mu.Lock()
		m.cond.Broadcast()
		m.mu.Unlock()
	})
	defer wake.Stop()
	m.mu.Lock()
	defer m.mu.Unlock()
	for {
		for _, c := range m.calls {
			if c.GetType() == typ && !m.taken[c] {
				m.taken[c] = true
				return c, true
			}
		}
		if time.Now().After(deadline) {
			return nil, false
		}
		m.cond.Wait()
	}
}

func callTypes(calls []*schedv1.Call) []string {
	var out []string
	for _, c := range calls {
		out = append(out, c.GetType().String())
	}
	return out
}

// Send queues an event on the current subscription's stream. It fails if
// no scheduler is subscribed.
func (m *Master) Send(ev *schedv1.Event) error {
	m.mu.Lock()
	s := m.sub
	m.mu.Unlock()
	if s == nil {
		return fmt.Errorf("fake master: no subscriber for %s", ev.GetType())
	}
	select {
	case s.events <- ev:
		return nil
	case <-s.gone:
		return fmt.Errorf("fake master: subscriber gone before %s", ev.GetType())
	case <-time.After(10 * time.Second):
		return fmt.Errorf("fake master: %s not taken within 10s", ev.GetType())
	}
}

// DropStream ends the current subscription's stream, as a master that
// fails over would; calls then answer 403 until the next SUBSCRIBE.
func (m *Master) DropStream() {
	m.mu.Lock()
	s := m.sub
	m.sub = nil
	m.mu.Unlock()
	if s != nil {
		s.cut()
		<-s.gone
	}
}

// RefuseSubscribe makes later SUBSCRIBE calls fail with status and reason
// (a master in an election, one that refuses the framework); status 0
// accepts them again.
func (m *Master) RefuseSubscribe(status int, reason string) {
	m.mu.Lock()
	m.refuse, m.refusal = status, reason
	m.mu.Unlock()
}

// Subscribed reports whether a scheduler holds a stream now.
func (m *Master) Subscribed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sub != nil
}

func (m *Master) serveScheduler(w http.ResponseWriter, r *http.Request) {
	in, err := codec.ForContentType(r.Header.Get("Content-Type"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	call := new(schedv1.Call)
	if err := in.Unmarshal(body, call); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if call.GetType() == schedv1.Call_SUBSCRIBE {
		m.subscribe(w, r, call)
		return
	}
	m.mu.Lock()
	s := m.sub
	m.mu.Unlock()
	if s == nil || r.Header.Get("Mesos-Stream-Id") != s.streamID {
		http.Error(w, "framework is not subscribed", http.StatusForbidden)
		return
	}
	m.record(call)
	w.WriteHeader(http.StatusAccepted)
}

func (m *Master) record(call *schedv1.Call) {
	if f := m.onCall(); f != nil {
		f(call)
	}
	m.mu.Lock()
	m.calls = append(m.calls, call)
	m.cond.Broadcast()
	m.mu.Unlock()
}

func (m *Master) onCall() func(*schedv1.Call) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.OnCall
}

func (m *Master) subscribe(w http.ResponseWriter, r *http.Request, call *schedv1.Call) {
	out, err := codec.ForAccept(r.Header.Get("Accept"), nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotAcceptable)
		return
	}
	m.mu.Lock()
	refuse, refusal := m.refuse, m.refusal
	m.mu.Unlock()
	if refuse != 0 {
		http.Error(w, refusal, refuse)
		return
	}
	m.DropStream()
	m.mu.Lock()
	m.subscribes++
	s := &subscriber{
		streamID: fmt.Sprintf("stream-%d", m.subscribes),
		events:   make(chan *schedv1.Event),
		gone:     make(chan struct{}),
		drop:     make(chan struct{}),
	}
	m.sub = s
	fwID := call.GetSubscribe().GetFrameworkInfo().GetId().GetValue()
	if fwID == "" {
		fwID = m.FrameworkID
	}
	interval := m.HeartbeatInterval
	heartbeats := m.SendHeartbeats
	m.mu.Unlock()
	defer close(s.gone)
	// Recorded in the background, so that an OnCall that Sends finds the
	// stream below already reading.
	go m.record(call)

	w.Header().Set("Content-Type", out.MediaType())
	w.Header().Set("Mesos-Stream-Id", s.streamID)
	w.WriteHeader(http.StatusOK)
	enc := recordio.NewEncoder(w, out)
	subscribed := &schedv1.Event{
		Type: schedv1.Event_SUBSCRIBED.Enum(),
		Subscribed: &schedv1.Event_Subscribed{
			FrameworkId:              &mesos.FrameworkID{Value: mesos.Ptr(fwID)},
			HeartbeatIntervalSeconds: mesos.Ptr(interval.Seconds()),
			MasterInfo: &mesos.MasterInfo{
				Id: mesos.Ptr("fake-master"), Ip: mesos.Ptr(uint32(0x7f000001)), Port: mesos.Ptr(uint32(5050)),
			},
		},
	}
	if err := enc.Encode(subscribed); err != nil {
		return
	}
	var tick <-chan time.Time
	if heartbeats && interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		var ev *schedv1.Event
		select {
		case <-r.Context().Done():
			m.forget(s)
			return
		case <-s.drop:
			return
		case <-tick:
			ev = &schedv1.Event{Type: schedv1.Event_HEARTBEAT.Enum()}
		case ev = <-s.events:
		}
		if err := enc.Encode(proto.Clone(ev)); err != nil {
			m.forget(s)
			return
		}
	}
}

// forget drops s as the subscriber after its client went away.
func (m *Master) forget(s *subscriber) {
	m.mu.Lock()
	if m.sub == s {
		m.sub = nil
	}
	m.mu.Unlock()
}
