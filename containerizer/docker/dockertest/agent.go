package dockertest

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/executor"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/recordio"
	"google.golang.org/protobuf/proto"
)

// FakeAgent is the agent's side of the v1 executor API for one executor:
// it answers SUBSCRIBE with SUBSCRIBED and a LAUNCH of its task, records
// every UPDATE and acknowledges it, and lets a test send KILL and SHUTDOWN.
type FakeAgent struct {
	// Endpoint is host:port, the MESOS_AGENT_ENDPOINT for the executor.
	Endpoint string

	srv         *httptest.Server
	framework   *mesos.FrameworkInfo
	task        *mesos.TaskInfo
	containerID string

	mu         sync.Mutex
	updates    []*mesos.TaskStatus
	events     chan *executor.Event
	launched   bool
	subscribed chan struct{}
	changed    chan struct{}
}

// NewFakeAgent serves the executor API on a loopback port until the test ends.
func NewFakeAgent(t testing.TB, fw *mesos.FrameworkInfo, task *mesos.TaskInfo, containerID string) *FakeAgent {
	t.Helper()
	a := &FakeAgent{
		framework:   fw,
		task:        task,
		containerID: containerID,
		events:      make(chan *executor.Event, 16),
		subscribed:  make(chan struct{}),
		changed:     make(chan struct{}),
	}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.srv.Close)
	a.Endpoint = strings.TrimPrefix(a.srv.URL, "http://")
	return a
}

// Env is the executor environment pointing at this agent.
func (a *FakeAgent) Env(sandbox string) []string {
	return []string{
		"MESOS_AGENT_ENDPOINT=" + a.Endpoint,
		"MESOS_FRAMEWORK_ID=" + a.framework.GetId().GetValue(),
		"MESOS_EXECUTOR_ID=" + a.task.GetTaskId().GetValue(),
		"MESOS_SLAVE_ID=fake-agent",
		"MESOS_DIRECTORY=" + sandbox,
		"MESOS_SANDBOX=" + sandbox,
		"MESOS_CHECKPOINT=0",
	}
}

func (a *FakeAgent) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c, err := codec.ForContentType(r.Header.Get("Content-Type"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusUnsupportedMediaType)
		return
	}
	call := &executor.Call{}
	if err := c.Unmarshal(body, call); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	switch call.GetType() {
	case executor.Call_SUBSCRIBE:
		a.stream(w, r, c, call)
	case executor.Call_UPDATE:
		st := call.GetUpdate().GetStatus()
		a.mu.Lock()
		a.updates = append(a.updates, st)
		close(a.changed)
		a.changed = make(chan struct{})
		a.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		a.events <- &executor.Event{Type: executor.Event_ACKNOWLEDGED.Enum(), Acknowledged: &executor.Event_Acknowledged{TaskId: st.GetTaskId(), Uuid: st.GetUuid()}}
	default:
		w.WriteHeader(http.StatusAccepted)
	}
}

func (a *FakeAgent) stream(w http.ResponseWriter, r *http.Request, c codec.Codec, call *executor.Call) {
	w.Header().Set("Content-Type", c.MediaType())
	w.WriteHeader(http.StatusOK)
	enc := recordio.NewEncoder(w, c)
	sub := &executor.Event{Type: executor.Event_SUBSCRIBED.Enum(), Subscribed: &executor.Event_Subscribed{
		ExecutorInfo:  &mesos.ExecutorInfo{ExecutorId: &mesos.ExecutorID{Value: a.task.GetTaskId().Value}},
		FrameworkInfo: a.framework,
		AgentInfo:     &mesos.AgentInfo{Hostname: proto.String("localhost"), Id: &mesos.AgentID{Value: proto.String("fake-agent")}},
		ContainerId:   &mesos.ContainerID{Value: proto.String(a.containerID)},
	}}
	if err := enc.Encode(sub); err != nil {
		return
	}
	a.mu.Lock()
	launch := !a.launched
	a.launched = true
	if launch {
		close(a.subscribed)
	}
	a.mu.Unlock()
	if launch {
		if err := enc.Encode(&executor.Event{Type: executor.Event_LAUNCH.Enum(), Launch: &executor.Event_Launch{Task: a.task}}); err != nil {
			return
		}
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case ev := <-a.events:
			if err := enc.Encode(ev); err != nil {
				return
			}
		}
	}
}

// Subscribed is closed once the executor subscribed and got its LAUNCH.
func (a *FakeAgent) Subscribed() <-chan struct{} { return a.subscribed }

// Kill asks the executor to kill the task.
func (a *FakeAgent) Kill(policy *mesos.KillPolicy) {
	a.events <- &executor.Event{Type: executor.Event_KILL.Enum(), Kill: &executor.Event_Kill{TaskId: a.task.GetTaskId(), KillPolicy: policy}}
}

// Shutdown asks the executor to shut down.
func (a *FakeAgent) Shutdown() {
	a.events <- &executor.Event{Type: executor.Event_SHUTDOWN.Enum()}
}

// Updates returns the statuses received so far.
func (a *FakeAgent) Updates() []*mesos.TaskStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*mesos.TaskStatus(nil), a.updates...)
}

// States lists the states received so far, in order.
func (a *FakeAgent) States() []mesos.TaskState {
	var out []mesos.TaskState
	for _, u := range a.Updates() {
		out = append(out, u.GetState())
	}
	return out
}

// WaitState blocks until a status with state arrives and returns it, or
// fails the test after timeout.
func (a *FakeAgent) WaitState(t testing.TB, state mesos.TaskState, timeout time.Duration) *mesos.TaskStatus {
	t.Helper()
	st, err := a.AwaitState(state, timeout)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// AwaitState is WaitState for code without a testing.TB (benchmarks loops).
func (a *FakeAgent) AwaitState(state mesos.TaskState, timeout time.Duration) (*mesos.TaskStatus, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		a.mu.Lock()
		for _, u := range a.updates {
			if u.GetState() == state {
				a.mu.Unlock()
				return u, nil
			}
		}
		changed := a.changed
		a.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			return nil, fmt.Errorf("no %v within %s; got %v", state, timeout, a.States())
		}
	}
}

// LoopbackIP is the address tests publish ports on.
var LoopbackIP = net.IPv4(127, 0, 0, 1).String()
