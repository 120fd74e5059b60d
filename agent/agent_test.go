package agent

import (
	"bytes"
	"context"
	"github.com/mesolite/mesolite/containerizer"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/agentpb"
	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/recordio"
	mesoscz "github.com/mesolite/mesolite/containerizer/mesos"
	"github.com/mesolite/mesolite/executor/command"
	"github.com/mesolite/mesolite/executor/defaultexec"
	"github.com/mesolite/mesolite/internal/testutil"
	"github.com/mesolite/mesolite/isolation"
	"google.golang.org/protobuf/proto"
)

// The test binary doubles as the agent binary: `<test> executor command`
// runs the built-in command executor, as `mesolite executor command` does,
// and `<test> launch` the container init. The external tests (package
// agent_test, in a real cluster) share the binary and this TestMain.
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "executor" && os.Args[2] == "command" {
		os.Exit(command.Main(context.Background(), os.Args[3:]))
	}
	if len(os.Args) > 2 && os.Args[1] == "executor" && os.Args[2] == "default" {
		os.Exit(defaultexec.Main(context.Background(), os.Args[3:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "launch" {
		os.Exit(isolation.InitMain(os.Args[2:]))
	}
	updateRetryMin = 300 * time.Millisecond
	os.Exit(m.Run())
}

// fakeMaster speaks the master side of the agent protocol, just enough to
// drive one agent from a test. Tests of tasks launched, killed and
// observed through a framework run against the real master instead (see
// cluster_test.go, package agent_test); fakeMaster is kept for what a real
// master cannot be made to do:
//   - withhold acknowledgements (autoAck false), to see updates retried,
//     or not retried for a framework the master removed;
//   - send events a real master never sends, such as a RUN_TASK its own
//     validation refuses;
//   - show every UPDATE the agent sends, resends and duplicates included:
//     a real master acknowledges and drops a second terminal update of a
//     completed task, so a framework would never see the agent's mistake;
//   - and serve tests that look inside the agent (its executors' launch
//     contexts, update streams, checkpoints), which must be internal tests,
//     and those may not import the master (layercheck).
type fakeMaster struct {
	t       *testing.T
	srv     *httptest.Server
	events  chan *agentpb.Event
	updates chan *agentpb.Call_Update
	regs    chan *agentpb.Call_Register
	autoAck bool
}

func newFakeMaster(t *testing.T, autoAck bool) *fakeMaster {
	fm := &fakeMaster{t: t, events: make(chan *agentpb.Event, 64), updates: make(chan *agentpb.Call_Update, 256),
		regs: make(chan *agentpb.Call_Register, 8), autoAck: autoAck}
	fm.srv = httptest.NewServer(http.HandlerFunc(fm.serve))
	t.Cleanup(fm.srv.Close)
	return fm
}

func (fm *fakeMaster) addr() string {
	return strings.TrimPrefix(strings.TrimPrefix(fm.srv.URL, "http://"), "https://")
}

func (fm *fakeMaster) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	call := &agentpb.Call{}
	if err := codec.Protobuf.Unmarshal(body, call); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	switch call.GetType() {
	case agentpb.Call_REGISTER:
		fm.regs <- call.GetRegister()
		id := call.GetAgentId().GetValue()
		if id == "" {
			id = "agent-1"
		}
		w.Header().Set("Content-Type", codec.MediaTypeProtobuf)
		w.Header().Set("Mesos-Stream-Id", "stream-1")
		w.WriteHeader(http.StatusOK)
		rw := recordio.NewWriter(w)
		write := func(ev *agentpb.Event) error {
			b, err := codec.Protobuf.Marshal(ev)
			if err != nil {
				return err
			}
			return rw.WriteRecord(b)
		}
		_ = write(&agentpb.Event{Type: agentpb.Event_REGISTERED.Enum(), Registered: &agentpb.Event_Registered{
			AgentId:    &mesos.AgentID{Value: proto.String(id)},
			MasterInfo: &mesos.MasterInfo{Id: proto.String("m1"), Ip: proto.Uint32(0x7f000001), Port: proto.Uint32(5050), Hostname: proto.String("localhost")},
		}})
		for {
			select {
			case ev := <-fm.events:
				if write(ev) != nil {
					return
				}
			case <-r.Context().Done():
				return
			}
		}
	case agentpb.Call_UPDATE:
		u := call.GetUpdate()
		fm.updates <- u
		w.WriteHeader(http.StatusAccepted)
		if fm.autoAck {
			fm.ack(u)
		}
	default:
		w.WriteHeader(http.StatusAccepted)
	}
}

func (fm *fakeMaster) ack(u *agentpb.Call_Update) {
	fm.events <- &agentpb.Event{Type: agentpb.Event_ACKNOWLEDGE.Enum(), Acknowledge: &agentpb.Event_Acknowledge{
		FrameworkId: u.GetFrameworkId(), TaskId: u.GetStatus().GetTaskId(), Uuid: u.GetStatus().GetUuid()}}
}

// waitState returns the first update for task reaching state.
func (fm *fakeMaster) waitState(task string, state mesos.TaskState, timeout time.Duration) *mesos.TaskStatus {
	fm.t.Helper()
	deadline := time.After(timeout)
	var seen []string
	for {
		select {
		case u := <-fm.updates:
			st := u.GetStatus()
			if st.GetTaskId().GetValue() != task {
				continue
			}
			seen = append(seen, st.GetState().String()+"("+st.GetMessage()+")")
			if st.GetState() == state {
				return st
			}
		case <-deadline:
			fm.t.Fatalf("task %s did not reach %s in %s; saw %v", task, state, timeout, seen)
		}
	}
}

var testFramework = &mesos.FrameworkInfo{
	Id:   &mesos.FrameworkID{Value: proto.String("fw-1")},
	Name: proto.String("test"), User: proto.String("root"),
	Capabilities: []*mesos.FrameworkInfo_Capability{{Type: mesos.FrameworkInfo_Capability_TASK_KILLING_STATE.Enum()}},
}

func commandTask(id, cmd string) *mesos.TaskInfo {
	return &mesos.TaskInfo{
		Name: proto.String(id), TaskId: &mesos.TaskID{Value: proto.String(id)},
		AgentId:   &mesos.AgentID{Value: proto.String("agent-1")},
		Command:   &mesos.CommandInfo{Value: proto.String(cmd)},
		Resources: []*mesos.Resource{{Name: proto.String("cpus"), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(0.1)}}},
	}
}

func runTaskEvent(t *mesos.TaskInfo) *agentpb.Event {
	return &agentpb.Event{Type: agentpb.Event_RUN_TASK.Enum(), RunTask: &agentpb.Event_RunTask{Framework: testFramework, Task: t}}
}

type testAgent struct {
	*Agent
	cancel  context.CancelFunc
	done    chan error
	port    int
	stopped bool
}

func startAgent(t *testing.T, fm *fakeMaster, workDir string, port int, mutate func(*Config)) *testAgent {
	t.Helper()
	return startAgentOn(t, fm, workDir, port, mutate, func(cfg Config) containerizer.Containerizer {
		cz, err := mesoscz.New(mesoscz.Options{Logger: cfg.Logger})
		if err != nil {
			t.Fatal(err)
		}
		return cz
	})
}

// startAgentOn starts an agent registered with fm on the containerizer
// newCZ makes (given the final config), and stops it when the test ends.
func startAgentOn(t *testing.T, fm *fakeMaster, workDir string, port int, mutate func(*Config), newCZ func(Config) containerizer.Containerizer) *testAgent {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if port == 0 {
		port = testutil.FreePort(t)
	}
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Master: fm.addr(), IP: "127.0.0.1", Port: port, WorkDir: workDir, Self: self,
		RegistrationBackoffFactor: 50 * time.Millisecond,
		Logger:                    slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if mutate != nil {
		mutate(&cfg)
	}
	a, err := New(cfg, newCZ(cfg))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { killExecutorsUnder(workDir) })
	ta := &testAgent{Agent: a, cancel: cancel, done: make(chan error, 1), port: port}
	go func() { ta.done <- a.Run(ctx, l) }()
	t.Cleanup(ta.stop)
	select {
	case <-fm.regs:
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not register")
	}
	testutil.Eventually(t, 5*time.Second, 10*time.Millisecond, a.Connected, "agent connected")
	return ta
}

// killExecutorsUnder kills, when a test ends, the executors (and their
// process groups) whose sandbox is under workDir: they outlive a stopped
// agent by design, waiting to be recovered, and must not outlive the test.
func killExecutorsUnder(workDir string) {
	for _, pid := range isolation.FindByEnv(func(kv string) bool {
		dir, ok := strings.CutPrefix(kv, "MESOS_DIRECTORY=")
		return ok && strings.HasPrefix(dir, workDir+"/")
	}) {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

func (ta *testAgent) stop() {
	if ta.stopped {
		return
	}
	ta.stopped = true
	// Let executors that are ending finish their bookkeeping first, so the
	// work directory is quiet when the test removes it.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		ta.mu.Lock()
		busy := 0
		for _, fw := range ta.frameworks {
			for _, es := range fw.executors {
				if !es.live() || len(es.queued)+len(es.launched) == 0 {
					busy++
				}
			}
		}
		ta.mu.Unlock()
		if busy == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	ta.cancel()
	select {
	case <-ta.done:
	case <-time.After(5 * time.Second):
	}
}

// TestInvalidTaskIsAnError: a task with both a command and an executor is
// refused by the agent too. A real master refuses it first (TASK_ERROR
// from the master), so only a scripted RUN_TASK reaches the agent's check.
func TestInvalidTaskIsAnError(t *testing.T) {
	fm := newFakeMaster(t, true)
	startAgent(t, fm, t.TempDir(), 0, nil)
	task := commandTask("both", "true")
	task.Executor = &mesos.ExecutorInfo{ExecutorId: &mesos.ExecutorID{Value: proto.String("x")}, Command: &mesos.CommandInfo{Value: proto.String("true")}}
	fm.events <- runTaskEvent(task)
	st := fm.waitState("both", mesos.TaskState_TASK_ERROR, 5*time.Second)
	if !strings.Contains(st.GetMessage(), "both a command and an executor") {
		t.Fatalf("message %q", st.GetMessage())
	}
}

// TestUpdatesRetriedUntilAcknowledged withholds acknowledgements, which a
// real master (whose framework acknowledges) does not.
func TestUpdatesRetriedUntilAcknowledged(t *testing.T) {
	fm := newFakeMaster(t, false)
	startAgent(t, fm, t.TempDir(), 0, nil)
	fm.events <- runTaskEvent(commandTask("retry", "true"))
	first := fm.waitState("retry", mesos.TaskState_TASK_STARTING, 10*time.Second)
	// Not acknowledged: the same update (same uuid) comes again, and the
	// next one does not go out before it is acknowledged.
	again := fm.waitState("retry", mesos.TaskState_TASK_STARTING, 5*time.Second)
	if !bytes.Equal(first.GetUuid(), again.GetUuid()) {
		t.Fatalf("retried update has a new uuid")
	}
	fm.ack(&agentpb.Call_Update{FrameworkId: testFramework.Id, Status: again})
	running := fm.waitState("retry", mesos.TaskState_TASK_RUNNING, 5*time.Second)
	fm.ack(&agentpb.Call_Update{FrameworkId: testFramework.Id, Status: running})
	fin := fm.waitState("retry", mesos.TaskState_TASK_FINISHED, 5*time.Second)
	fm.ack(&agentpb.Call_Update{FrameworkId: testFramework.Id, Status: fin})
}
