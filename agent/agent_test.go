package agent

import (
	"bytes"
	"context"
	"errors"
	"github.com/mesolite/mesolite/containerizer"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/agentpb"
	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/recordio"
	mesoscz "github.com/mesolite/mesolite/containerizer/mesos"
	"github.com/mesolite/mesolite/executor/command"
	"github.com/mesolite/mesolite/internal/testutil"
	"github.com/mesolite/mesolite/isolation"
	"google.golang.org/protobuf/proto"
)

// The test binary doubles as the agent binary: `<test> executor command`
// runs the built-in command executor, as `mesolite executor command` does.
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "executor" && os.Args[2] == "command" {
		os.Exit(command.Main(context.Background(), os.Args[3:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "launch" {
		os.Exit(isolation.InitMain(os.Args[2:]))
	}
	updateRetryMin = 300 * time.Millisecond
	os.Exit(m.Run())
}

// fakeMaster speaks the master side of the agent protocol, just enough to
// drive one agent from a test.
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

func TestCommandTaskLifecycle(t *testing.T) {
	tests := []struct {
		name    string
		cmd     string
		want    mesos.TaskState
		message string
		stdout  string
	}{
		{"finishes", "echo hello from the task", mesos.TaskState_TASK_FINISHED, "Command exited with status 0", "hello from the task\n"},
		{"fails with its exit status", "echo oops >&2; exit 3", mesos.TaskState_TASK_FAILED, "Command exited with status 3", ""},
		{"environment reaches the task", "echo $MESOS_SANDBOX | grep -q runs && echo ok", mesos.TaskState_TASK_FINISHED, "", "ok\n"},
	}
	fm := newFakeMaster(t, true)
	a := startAgent(t, fm, t.TempDir(), 0, nil)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := "task-" + strconv.Itoa(i)
			fm.events <- runTaskEvent(commandTask(id, tt.cmd))
			fm.waitState(id, mesos.TaskState_TASK_RUNNING, 10*time.Second)
			st := fm.waitState(id, tt.want, 10*time.Second)
			if tt.message != "" && st.GetMessage() != tt.message {
				t.Errorf("message %q, want %q", st.GetMessage(), tt.message)
			}
			if st.GetAgentId().GetValue() != "agent-1" || len(st.GetUuid()) != 16 || st.GetExecutorId().GetValue() != id {
				t.Errorf("update lacks agent id, uuid or executor id: %v", st)
			}
			if tt.stdout != "" {
				out := readSandboxFile(t, a.Agent, "fw-1", id, "stdout")
				if out != tt.stdout {
					t.Errorf("stdout %q, want %q", out, tt.stdout)
				}
			}
		})
	}
}

func readSandboxFile(t *testing.T, a *Agent, fw, ex, name string) string {
	t.Helper()
	dir := filepath.Join(a.cfg.WorkDir, "slaves", a.ID(), "frameworks", fw, "executors", ex, "runs", "latest")
	var b []byte
	testutil.Eventually(t, 5*time.Second, 20*time.Millisecond, func() bool {
		var err error
		b, err = os.ReadFile(filepath.Join(dir, name))
		return err == nil && len(b) > 0
	}, "sandbox %s of %s", name, ex)
	return string(b)
}

func TestKillTaskHonoursKillingState(t *testing.T) {
	fm := newFakeMaster(t, true)
	startAgent(t, fm, t.TempDir(), 0, nil)
	fm.events <- runTaskEvent(commandTask("sleeper", "trap 'exit 0' TERM; sleep 60 & wait"))
	fm.waitState("sleeper", mesos.TaskState_TASK_RUNNING, 10*time.Second)
	fm.events <- &agentpb.Event{Type: agentpb.Event_KILL_TASK.Enum(), KillTask: &agentpb.Event_KillTask{
		FrameworkId: testFramework.Id, TaskId: &mesos.TaskID{Value: proto.String("sleeper")}}}
	fm.waitState("sleeper", mesos.TaskState_TASK_KILLING, 5*time.Second)
	fm.waitState("sleeper", mesos.TaskState_TASK_KILLED, 10*time.Second)
}

func TestKillUnknownTaskAnswersLost(t *testing.T) {
	fm := newFakeMaster(t, true)
	startAgent(t, fm, t.TempDir(), 0, nil)
	fm.events <- &agentpb.Event{Type: agentpb.Event_KILL_TASK.Enum(), KillTask: &agentpb.Event_KillTask{
		FrameworkId: testFramework.Id, TaskId: &mesos.TaskID{Value: proto.String("ghost")}}}
	st := fm.waitState("ghost", mesos.TaskState_TASK_LOST, 5*time.Second)
	if st.GetReason() != mesos.TaskStatus_REASON_TASK_UNKNOWN || st.GetSource() != mesos.TaskStatus_SOURCE_AGENT {
		t.Fatalf("got %v", st)
	}
}

func TestExecutorRegistrationTimeout(t *testing.T) {
	fm := newFakeMaster(t, true)
	startAgent(t, fm, t.TempDir(), 0, func(c *Config) { c.ExecutorRegistrationTimeout = 500 * time.Millisecond })
	task := &mesos.TaskInfo{
		Name: proto.String("silent"), TaskId: &mesos.TaskID{Value: proto.String("silent")}, AgentId: &mesos.AgentID{Value: proto.String("agent-1")},
		Executor: &mesos.ExecutorInfo{ExecutorId: &mesos.ExecutorID{Value: proto.String("never-subscribes")},
			Command: &mesos.CommandInfo{Value: proto.String("sleep 60")}},
	}
	fm.events <- runTaskEvent(task)
	st := fm.waitState("silent", mesos.TaskState_TASK_FAILED, 10*time.Second)
	if st.GetReason() != mesos.TaskStatus_REASON_EXECUTOR_REGISTRATION_TIMEOUT {
		t.Fatalf("reason %v (%s), want REASON_EXECUTOR_REGISTRATION_TIMEOUT", st.GetReason(), st.GetMessage())
	}
}

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

func TestAgentRestartRecoversRunningTask(t *testing.T) {
	fm := newFakeMaster(t, true)
	dir := t.TempDir()
	a1 := startAgent(t, fm, dir, 0, nil)
	fm.events <- runTaskEvent(commandTask("survivor", "sleep 60"))
	fm.waitState("survivor", mesos.TaskState_TASK_RUNNING, 10*time.Second)
	a1.stop() // the executor keeps running, waiting for the agent

	a2 := startAgent(t, fm, dir, a1.port, nil)
	if a2.ID() != "agent-1" {
		t.Fatalf("recovered agent id %q", a2.ID())
	}
	// The recovered agent re-registered with the task and reaches the
	// executor again: a kill goes through it.
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() bool {
		a2.mu.Lock()
		defer a2.mu.Unlock()
		es := a2.lookupExecutorLocked("fw-1", "survivor")
		return es != nil && es.conn != nil
	}, "executor resubscribed")
	fm.events <- &agentpb.Event{Type: agentpb.Event_KILL_TASK.Enum(), KillTask: &agentpb.Event_KillTask{
		FrameworkId: testFramework.Id, TaskId: &mesos.TaskID{Value: proto.String("survivor")}}}
	fm.waitState("survivor", mesos.TaskState_TASK_KILLED, 10*time.Second)
}

func TestExecutorAPIRejectsBadCalls(t *testing.T) {
	fm := newFakeMaster(t, true)
	a := startAgent(t, fm, t.TempDir(), 0, nil)
	url := "http://" + a.Endpoint() + "/api/v1/executor"
	tests := []struct {
		name, ctype, body string
		want              int
	}{
		{"malformed json", "application/json", `{"type":`, http.StatusBadRequest},
		{"no ids", "application/json", `{"type":"SUBSCRIBE","subscribe":{}}`, http.StatusBadRequest},
		// Unknown and known executors answer a caller without a token alike.
		{"unknown executor", "application/json", `{"type":"SUBSCRIBE","framework_id":{"value":"x"},"executor_id":{"value":"y"},"subscribe":{}}`, http.StatusUnauthorized},
		{"update without uuid", "application/json", `{"type":"UPDATE","framework_id":{"value":"x"},"executor_id":{"value":"y"},"update":{"status":{"task_id":{"value":"t"},"state":"TASK_RUNNING"}}}`, http.StatusBadRequest},
		{"bad media type", "text/plain", `{}`, http.StatusUnsupportedMediaType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Post(url, tt.ctype, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, b, tt.want)
			}
			if len(bytes.TrimSpace(b)) == 0 {
				t.Fatal("error without a reason")
			}
		})
	}
}

func TestMasterDownIsRetried(t *testing.T) {
	fm := newFakeMaster(t, true)
	addr := fm.addr()
	fm.srv.Close() // nobody listens there now
	port := testutil.FreePort(t)
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuf
	self, _ := os.Executable()
	a, err := New(Config{Master: addr, IP: "127.0.0.1", Port: port, WorkDir: t.TempDir(), Self: self,
		RegistrationBackoffFactor: 20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))}, mustPosix(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, l) }()
	testutil.Eventually(t, 5*time.Second, 20*time.Millisecond, func() bool {
		return strings.Contains(logs.String(), "cannot reach master")
	}, "a clear log line about the unreachable master")
	// The agent keeps serving while it retries.
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/health")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("agent not healthy while the master is down: %v", err)
	}
	resp.Body.Close()
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func buildExampleExecutor(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "example-executor")
	out, err := exec.Command("go", "build", "-o", bin, "../examples/executor").CombinedOutput()
	if err != nil {
		t.Fatalf("build example executor: %v\n%s", err, out)
	}
	return bin
}

func TestCustomExecutorRunsTwoTasks(t *testing.T) {
	for _, enc := range []string{"json", "protobuf"} {
		t.Run(enc, func(t *testing.T) {
			bin := buildExampleExecutor(t)
			fm := newFakeMaster(t, true)
			startAgent(t, fm, t.TempDir(), 0, nil)
			env := []*mesos.Environment_Variable{}
			if enc == "protobuf" {
				env = append(env, &mesos.Environment_Variable{Name: proto.String("EXAMPLE_EXECUTOR_PROTOBUF"), Value: proto.String("1")})
			}
			ex := &mesos.ExecutorInfo{ExecutorId: &mesos.ExecutorID{Value: proto.String("custom")},
				Command: &mesos.CommandInfo{Value: proto.String(bin), Environment: &mesos.Environment{Variables: env}}}
			for _, id := range []string{"one", "two"} {
				fm.events <- runTaskEvent(&mesos.TaskInfo{Name: proto.String(id), TaskId: &mesos.TaskID{Value: proto.String(id)},
					AgentId: &mesos.AgentID{Value: proto.String("agent-1")}, Executor: ex, Data: []byte("echo task " + id)})
			}
			// Updates of the two tasks interleave; collect until both finished.
			done := map[string]bool{}
			deadline := time.After(15 * time.Second)
			for len(done) < 2 {
				select {
				case u := <-fm.updates:
					st := u.GetStatus()
					if st.GetState() == mesos.TaskState_TASK_FINISHED {
						done[st.GetTaskId().GetValue()] = true
					}
					if st.GetState() == mesos.TaskState_TASK_FAILED {
						t.Fatalf("task failed: %v", st)
					}
				case <-deadline:
					t.Fatalf("tasks finished: %v", done)
				}
			}
			fm.events <- &agentpb.Event{Type: agentpb.Event_SHUTDOWN_EXECUTOR.Enum(), ShutdownExecutor: &agentpb.Event_ShutdownExecutor{
				FrameworkId: testFramework.Id, ExecutorId: ex.ExecutorId}}
		})
	}
}

func mustPosix(t *testing.T) *mesoscz.Containerizer {
	t.Helper()
	cz, err := mesoscz.New(mesoscz.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return cz
}
