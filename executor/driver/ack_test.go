package driver

import (
	"context"
	"io"
	"log/slog"
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

// fakeAgent is the agent's side of the executor API, just enough to
// subscribe an executor, take its updates and acknowledge them on demand.
type fakeAgent struct {
	events  chan *executor.Event // written to the subscription stream
	updates chan *mesos.TaskStatus

	mu   sync.Mutex
	seen map[string]bool // uuids: a resent update is dropped, as the agent does
}

func (a *fakeAgent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	call := &executor.Call{}
	if err := codec.JSON.Unmarshal(body, call); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	switch call.GetType() {
	case executor.Call_SUBSCRIBE:
		w.Header().Set("Content-Type", codec.MediaTypeJSON)
		w.WriteHeader(http.StatusOK)
		enc := recordio.NewEncoder(w, codec.JSON)
		_ = enc.Encode(&executor.Event{Type: executor.Event_SUBSCRIBED.Enum(), Subscribed: &executor.Event_Subscribed{
			ExecutorInfo:  &mesos.ExecutorInfo{ExecutorId: call.ExecutorId},
			FrameworkInfo: &mesos.FrameworkInfo{User: proto.String("u"), Name: proto.String("f"), Id: call.FrameworkId},
			AgentInfo:     &mesos.AgentInfo{Hostname: proto.String("h")},
			ContainerId:   &mesos.ContainerID{Value: proto.String("c")},
		}})
		for {
			select {
			case ev := <-a.events:
				if enc.Encode(ev) != nil {
					return
				}
			case <-r.Context().Done():
				return
			}
		}
	case executor.Call_UPDATE:
		w.WriteHeader(http.StatusAccepted)
		st := call.GetUpdate().GetStatus()
		a.mu.Lock()
		dup := a.seen[string(st.GetUuid())]
		a.seen[string(st.GetUuid())] = true
		a.mu.Unlock()
		if !dup {
			a.updates <- st
		}
	}
}

type subscribedHandler struct {
	nopHandler
	subscribed chan struct{}
}

func (h subscribedHandler) Subscribed(context.Context, *Driver, *executor.Event_Subscribed) {
	close(h.subscribed)
}

type nopHandler struct{}

func (nopHandler) Subscribed(context.Context, *Driver, *executor.Event_Subscribed) {}
func (nopHandler) Launch(context.Context, *Driver, *mesos.TaskInfo)                {}
func (nopHandler) LaunchGroup(context.Context, *Driver, *mesos.TaskGroupInfo)      {}
func (nopHandler) Kill(context.Context, *Driver, *mesos.TaskID, *mesos.KillPolicy) {}
func (nopHandler) Acknowledged(context.Context, *Driver, *mesos.TaskID, []byte)    {}
func (nopHandler) Message(context.Context, *Driver, []byte)                        {}
func (nopHandler) Shutdown(context.Context, *Driver)                               {}
func (nopHandler) Error(context.Context, *Driver, string)                          {}

func TestWaitAcknowledged(t *testing.T) {
	agent := &fakeAgent{events: make(chan *executor.Event, 4), updates: make(chan *mesos.TaskStatus, 4), seen: map[string]bool{}}
	srv := httptest.NewServer(agent)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h := subscribedHandler{subscribed: make(chan struct{})}
	d := New(Config{AgentEndpoint: strings.TrimPrefix(srv.URL, "http://"), FrameworkID: "fw", ExecutorID: "ex"}, h, slog.New(slog.DiscardHandler))
	go func() { _ = d.Run(ctx) }()
	defer d.Stop()
	select {
	case <-h.subscribed:
	case <-ctx.Done():
		t.Fatal("executor did not subscribe")
	}

	if !d.WaitAcknowledged(ctx) {
		t.Fatal("WaitAcknowledged with nothing sent = false, want true at once")
	}
	for _, state := range []mesos.TaskState{mesos.TaskState_TASK_RUNNING, mesos.TaskState_TASK_FINISHED} {
		if err := d.SendStatus(ctx, &mesos.TaskStatus{TaskId: &mesos.TaskID{Value: proto.String("t")}, State: state.Enum()}); err != nil {
			t.Fatal(err)
		}
	}
	var sent []*mesos.TaskStatus
	for range 2 {
		sent = append(sent, <-agent.updates)
	}

	short, stop := context.WithTimeout(ctx, 50*time.Millisecond)
	defer stop()
	if d.WaitAcknowledged(short) {
		t.Fatal("WaitAcknowledged before any ack = true")
	}

	done := make(chan bool, 1)
	go func() { done <- d.WaitAcknowledged(ctx) }()
	ack := func(st *mesos.TaskStatus) {
		agent.events <- &executor.Event{Type: executor.Event_ACKNOWLEDGED.Enum(), Acknowledged: &executor.Event_Acknowledged{TaskId: st.TaskId, Uuid: st.Uuid}}
	}
	ack(sent[0])
	select {
	case <-done:
		t.Fatal("WaitAcknowledged returned with one of two updates acknowledged")
	case <-time.After(100 * time.Millisecond):
	}
	ack(sent[1])
	if !<-done {
		t.Fatal("WaitAcknowledged = false after both acks")
	}
	if n := d.Unacknowledged(); n != 0 {
		t.Errorf("Unacknowledged = %d after both acks", n)
	}
}
