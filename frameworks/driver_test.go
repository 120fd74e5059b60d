package frameworks_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/frameworks"
	"github.com/mesolite/mesolite/frameworks/clustertest"
	"github.com/mesolite/mesolite/internal/testutil"
	"google.golang.org/protobuf/proto"
)

func TestMain(m *testing.M) { clustertest.Main(m) }

// testScheduler launches the tasks it is given on the first offers that
// take them and records what the driver tells it.
type testScheduler struct {
	mu         sync.Mutex
	queue      []*mesos.TaskInfo
	known      map[string]string // task id -> agent id, not terminal
	registered []string
	updates    []*mesos.TaskStatus
}

func newTestScheduler(tasks ...*mesos.TaskInfo) *testScheduler {
	return &testScheduler{queue: tasks, known: map[string]string{}}
}

func (s *testScheduler) Registered(_ context.Context, id string, _ *mesos.MasterInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.registered = append(s.registered, id)
}

func (s *testScheduler) KnownTasks() []frameworks.TaskRef {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []frameworks.TaskRef
	for id, agent := range s.known {
		out = append(out, frameworks.TaskRef{TaskID: id, AgentID: agent})
	}
	return out
}

func (s *testScheduler) Offers(_ context.Context, offers []*mesos.Offer) ([]frameworks.Launch, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []frameworks.Launch
	for _, o := range offers {
		if len(s.queue) == 0 {
			break
		}
		t := s.queue[0]
		s.queue = s.queue[1:]
		s.known[t.GetTaskId().GetValue()] = o.GetAgentId().GetValue()
		out = append(out, frameworks.Launch{Offer: o, Tasks: []*mesos.TaskInfo{t}})
	}
	return out, len(s.queue) > 0
}

func (s *testScheduler) Update(_ context.Context, st *mesos.TaskStatus, ack func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.updates = append(s.updates, st)
	if mesos.IsTerminal(st.GetState()) {
		delete(s.known, st.GetTaskId().GetValue())
	}
	ack()
}

func (s *testScheduler) LaunchFailed(_ context.Context, tasks []*mesos.TaskInfo, _ error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range tasks {
		delete(s.known, t.GetTaskId().GetValue())
	}
}

func (s *testScheduler) Wants() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue) > 0
}

func (s *testScheduler) add(t *mesos.TaskInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queue = append(s.queue, t)
}

// update returns the first update about task in state, nil if none yet.
func (s *testScheduler) update(task string, state mesos.TaskState, reconciliation bool) *mesos.TaskStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range s.updates {
		if u.GetTaskId().GetValue() == task && u.GetState() == state &&
			reconciliation == (u.GetReason() == mesos.TaskStatus_REASON_RECONCILIATION && u.Reason != nil) {
			return u
		}
	}
	return nil
}

func sleepTask(id string) *mesos.TaskInfo {
	return &mesos.TaskInfo{
		Name:    proto.String(id),
		TaskId:  &mesos.TaskID{Value: proto.String(id)},
		Command: &mesos.CommandInfo{Value: proto.String("sleep 600")},
		Resources: []*mesos.Resource{
			{Name: proto.String("cpus"), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(0.1)}},
			{Name: proto.String("mem"), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(32)}},
		},
	}
}

// runDriver runs a driver on the store in dir until stop is called.
func runDriver(t *testing.T, master, dir string, s frameworks.Scheduler) (d *frameworks.Driver, stop func()) {
	t.Helper()
	store, err := frameworks.OpenLocalStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d, err = frameworks.NewDriver(ctx, frameworks.DriverConfig{
		Master:    master,
		Framework: &mesos.FrameworkInfo{Name: proto.String("driver-test"), WebuiUrl: proto.String("http://127.0.0.1:8080")},
		Store:     store,
		Logger:    clustertest.Logger(),
		// Short enough that a test sees a declined agent offered again.
		DeclineIdle: time.Second, DeclineBusy: 100 * time.Millisecond,
		MinReviveInterval: 50 * time.Millisecond, ReconcileBackoffMin: 100 * time.Millisecond,
	}, s)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("the driver did not stop")
			}
			store.Close()
		})
	}
	t.Cleanup(stop)
	return d, stop
}

// TestDriverFailover: a framework that stops and starts again on the same
// store fails over to its framework id; its running task is reconciled
// (explicitly: answered with REASON_RECONCILIATION) and left running; a
// task it knows that the master does not is answered TASK_LOST.
func TestDriverFailover(t *testing.T) {
	c := clustertest.New(t)
	c.AddAgent(t, clustertest.AgentOptions{})
	dir := t.TempDir()

	s1 := newTestScheduler(sleepTask("sleeper-1"))
	d1, stop1 := runDriver(t, c.Addr, dir, s1)
	testutil.Eventually(t, 20*time.Second, 20*time.Millisecond, func() bool {
		return s1.update("sleeper-1", mesos.TaskState_TASK_RUNNING, false) != nil
	}, "sleeper-1 running")
	id := d1.FrameworkID()
	f := c.Framework(t, id)
	if f == nil || !f.Checkpoint || f.FailoverTimeout != frameworks.DefaultFailoverTimeout.Seconds() || f.WebUIURL != "http://127.0.0.1:8080" {
		t.Fatalf("framework as the master has it: %+v", f)
	}
	stop1()
	testutil.Eventually(t, 5*time.Second, 20*time.Millisecond, func() bool {
		f := c.Framework(t, id)
		return f != nil && !f.Active
	}, "framework inactive")

	s2 := newTestScheduler()
	s2.known["sleeper-1"] = ""
	s2.known["ghost-1"] = ""
	d2, _ := runDriver(t, c.Addr, dir, s2)
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() bool {
		return s2.update("sleeper-1", mesos.TaskState_TASK_RUNNING, true) != nil &&
			s2.update("ghost-1", mesos.TaskState_TASK_LOST, true) != nil
	}, "reconciliation answers")
	if d2.FrameworkID() != id || !slices.Equal(s2.registered, []string{id}) {
		t.Fatalf("after the restart: framework %s, registered %v; want %s", d2.FrameworkID(), s2.registered, id)
	}
	if !slices.Contains(c.RunningTasks(t, id), "sleeper-1") {
		t.Fatal("the task did not survive the framework's restart")
	}

	// No work: offers are suppressed; work again: revived, and launched.
	testutil.Eventually(t, 5*time.Second, 20*time.Millisecond, func() bool {
		return len(c.Framework(t, id).SuppressedRoles) > 0
	}, "offers suppressed without work")
	s2.add(sleepTask("sleeper-2"))
	d2.Revive()
	testutil.Eventually(t, 20*time.Second, 20*time.Millisecond, func() bool {
		return s2.update("sleeper-2", mesos.TaskState_TASK_RUNNING, false) != nil
	}, "sleeper-2 running after a revive")
}
