package agent_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mesolite/mesolite/agent"
	"github.com/mesolite/mesolite/api/v1/mesos"
	mesoscz "github.com/mesolite/mesolite/containerizer/mesos"
	"github.com/mesolite/mesolite/internal/testutil"
	"google.golang.org/protobuf/proto"
)

// Tasks through a real cluster: launched, killed and observed by a
// framework, run by the command executor (or a custom one).

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
	c := newCluster(t, nil)
	a := c.startAgent(t, t.TempDir(), 0, nil)
	fw := c.subscribe(t, testFramework("test"))
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := "task-" + strconv.Itoa(i)
			fw.launch(a, commandTask(id, tt.cmd))
			fw.waitState(id, mesos.TaskState_TASK_RUNNING, 10*time.Second)
			st := fw.waitState(id, tt.want, 10*time.Second)
			if tt.message != "" && st.GetMessage() != tt.message {
				t.Errorf("message %q, want %q", st.GetMessage(), tt.message)
			}
			if st.GetAgentId().GetValue() != a.ID() || len(st.GetUuid()) != 16 || st.GetExecutorId().GetValue() != id {
				t.Errorf("update lacks agent id, uuid or executor id: %v", st)
			}
			if tt.stdout != "" {
				if out := a.sandboxFile(t, fw.ID(), id, "stdout"); out != tt.stdout {
					t.Errorf("stdout %q, want %q", out, tt.stdout)
				}
			}
		})
	}
}

func TestKillTaskHonoursKillingState(t *testing.T) {
	c := newCluster(t, nil)
	a := c.startAgent(t, t.TempDir(), 0, nil)
	fw := c.subscribe(t, testFramework("test"))
	fw.launch(a, commandTask("sleeper", "trap 'exit 0' TERM; sleep 60 & wait"))
	fw.waitState("sleeper", mesos.TaskState_TASK_RUNNING, 10*time.Second)
	fw.kill(a, "sleeper")
	fw.waitState("sleeper", mesos.TaskState_TASK_KILLING, 5*time.Second)
	fw.waitState("sleeper", mesos.TaskState_TASK_KILLED, 10*time.Second)
}

// TestKillUnknownTaskAnswersLost: the master passes a kill of a task it
// does not know on to the agent named (which might know it, after a
// failover), and the agent answers for itself.
func TestKillUnknownTaskAnswersLost(t *testing.T) {
	c := newCluster(t, nil)
	a := c.startAgent(t, t.TempDir(), 0, nil)
	fw := c.subscribe(t, testFramework("test"))
	fw.kill(a, "ghost")
	// The master says TASK_LOST too (REASON_RECONCILIATION): wait for
	// the agent's answer.
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := fw.waitState("ghost", mesos.TaskState_TASK_LOST, time.Until(deadline))
		if st.GetSource() == mesos.TaskStatus_SOURCE_AGENT {
			if st.GetReason() != mesos.TaskStatus_REASON_TASK_UNKNOWN {
				t.Fatalf("got %v", st)
			}
			return
		}
	}
}

func TestExecutorRegistrationTimeout(t *testing.T) {
	c := newCluster(t, nil)
	a := c.startAgent(t, t.TempDir(), 0, func(c *agent.Config) { c.ExecutorRegistrationTimeout = 500 * time.Millisecond })
	fw := c.subscribe(t, testFramework("test"))
	task := &mesos.TaskInfo{
		Name: proto.String("silent"), TaskId: &mesos.TaskID{Value: proto.String("silent")}, Resources: taskResources(),
		Executor: &mesos.ExecutorInfo{ExecutorId: &mesos.ExecutorID{Value: proto.String("never-subscribes")},
			Command: &mesos.CommandInfo{Value: proto.String("sleep 60")}},
	}
	fw.launch(a, task)
	st := fw.waitState("silent", mesos.TaskState_TASK_FAILED, 10*time.Second)
	if st.GetReason() != mesos.TaskStatus_REASON_EXECUTOR_REGISTRATION_TIMEOUT {
		t.Fatalf("reason %v (%s), want REASON_EXECUTOR_REGISTRATION_TIMEOUT", st.GetReason(), st.GetMessage())
	}
}

func TestAgentRestartRecoversRunningTask(t *testing.T) {
	c := newCluster(t, nil)
	dir := t.TempDir()
	a1 := c.startAgent(t, dir, 0, nil)
	fw := c.subscribe(t, testFramework("test"))
	fw.launch(a1, commandTask("survivor", "sleep 60"))
	fw.waitState("survivor", mesos.TaskState_TASK_RUNNING, 10*time.Second)
	a1.stop() // the executor keeps running, waiting for the agent

	a2 := c.startAgent(t, dir, a1.port, nil)
	if a2.ID() != a1.ID() {
		t.Fatalf("recovered agent id %q, want %q", a2.ID(), a1.ID())
	}
	// The recovered agent re-registered with the task and reaches the
	// executor again: a kill goes through it.
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() bool {
		es := a2.state(t).executor(fw.ID(), "survivor")
		return es != nil && es.Subscribed
	}, "executor resubscribed")
	fw.kill(a2, "survivor")
	fw.waitState("survivor", mesos.TaskState_TASK_KILLED, 10*time.Second)
}

// A framework that does not checkpoint has its executors told so
// (MESOS_CHECKPOINT=0) and, as in Mesos, loses its tasks with an agent
// restart: the recovered agent destroys what is left of them and reports
// TASK_LOST with REASON_AGENT_RESTARTED; a checkpointing framework's task on
// the same agent lives on.
func TestAgentRestartLosesTasksOfFrameworksThatDoNotCheckpoint(t *testing.T) {
	c := newCluster(t, nil)
	dir := t.TempDir()
	a1 := c.startAgent(t, dir, 0, nil)
	plain := testFramework("plain")
	plain.Checkpoint = proto.Bool(false)
	fw := c.subscribe(t, plain)
	kept := c.subscribe(t, testFramework("kept"))
	fw.launch(a1, commandTask("mortal", `echo "checkpoint=$MESOS_CHECKPOINT"; exec sleep 60`))
	kept.launch(a1, commandTask("survivor", `echo "checkpoint=$MESOS_CHECKPOINT"; exec sleep 60`))
	fw.waitState("mortal", mesos.TaskState_TASK_RUNNING, 10*time.Second)
	kept.waitState("survivor", mesos.TaskState_TASK_RUNNING, 10*time.Second)
	if out := a1.sandboxFile(t, fw.ID(), "mortal", "stdout"); !strings.Contains(out, "checkpoint=0") {
		t.Errorf("stdout of the task of a framework that does not checkpoint: %q, want checkpoint=0", out)
	}
	if out := a1.sandboxFile(t, kept.ID(), "survivor", "stdout"); !strings.Contains(out, "checkpoint=1") {
		t.Errorf("stdout of the task of a checkpointing framework: %q, want checkpoint=1", out)
	}
	a1.stop()

	a2 := c.startAgent(t, dir, a1.port, nil)
	st := fw.waitState("mortal", mesos.TaskState_TASK_LOST, 20*time.Second)
	if st.GetReason() != mesos.TaskStatus_REASON_AGENT_RESTARTED {
		t.Errorf("TASK_LOST reason %s (%q), want REASON_AGENT_RESTARTED", st.GetReason(), st.GetMessage())
	}
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() bool {
		es := a2.state(t).executor(kept.ID(), "survivor")
		return es != nil && es.Subscribed
	}, "the checkpointing framework's executor resubscribed")
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() bool {
		return a2.state(t).executor(fw.ID(), "mortal") == nil
	}, "the lost task's executor gone from the agent's live executors")
	kept.kill(a2, "survivor")
	kept.waitState("survivor", mesos.TaskState_TASK_KILLED, 10*time.Second)
}

func TestExecutorAPIRejectsBadCalls(t *testing.T) {
	c := newCluster(t, nil)
	a := c.startAgent(t, t.TempDir(), 0, nil)
	url := a.url("/api/v1/executor")
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

// TestMasterDownIsRetried: an agent whose master is not up says so, keeps
// serving and keeps trying; it registers once the master comes up.
func TestMasterDownIsRetried(t *testing.T) {
	// The master's port is held (a free port left unbound could be taken
	// meanwhile, by another process or by the agent's own dials
	// connecting to themselves) and every connection to it refused until
	// the master takes it over.
	ml, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	masterPort := ml.Addr().(*net.TCPAddr).Port
	refused := make(chan struct{})
	go func() {
		defer close(refused)
		for {
			c, err := ml.Accept()
			if err != nil {
				return // the deadline below: the master's turn
			}
			c.Close()
		}
	}()
	port := testutil.FreePort(t)
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuf
	self, _ := os.Executable()
	cz, err := mesoscz.New(mesoscz.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{Master: "127.0.0.1:" + strconv.Itoa(masterPort), IP: "127.0.0.1", Port: port, WorkDir: t.TempDir(), Self: self,
		RegistrationBackoffFactor: 20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))}, cz)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
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
	// The master comes up on its port: the agent's next try registers.
	_ = ml.(*net.TCPListener).SetDeadline(time.Now())
	<-refused
	_ = ml.(*net.TCPListener).SetDeadline(time.Time{})
	newClusterOn(t, ml, clusterConfig(t))
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() bool { return a.Connected() && a.ID() != "" }, "agent registered once the master is up")
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
			c := newCluster(t, nil)
			a := c.startAgent(t, t.TempDir(), 0, nil)
			fw := c.subscribe(t, testFramework("test"))
			env := []*mesos.Environment_Variable{}
			if enc == "protobuf" {
				env = append(env, &mesos.Environment_Variable{Name: proto.String("EXAMPLE_EXECUTOR_PROTOBUF"), Value: proto.String("1")})
			}
			ex := &mesos.ExecutorInfo{ExecutorId: &mesos.ExecutorID{Value: proto.String("custom")},
				Command: &mesos.CommandInfo{Value: proto.String(bin), Environment: &mesos.Environment{Variables: env}}}
			var tasks []*mesos.TaskInfo
			for _, id := range []string{"one", "two"} {
				tasks = append(tasks, &mesos.TaskInfo{Name: proto.String(id), TaskId: &mesos.TaskID{Value: proto.String(id)},
					Resources: taskResources(), Executor: ex, Data: []byte("echo task " + id)})
			}
			fw.launch(a, tasks...)
			for _, id := range []string{"one", "two"} {
				fw.waitState(id, mesos.TaskState_TASK_FINISHED, 15*time.Second)
			}
			if err := fw.Shutdown(context.Background(), ex.ExecutorId, &mesos.AgentID{Value: proto.String(a.ID())}); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() bool {
				es := a.state(t).executor(fw.ID(), "custom")
				return es == nil || es.Phase == "TERMINATED"
			}, "the executor shut down")
		})
	}
}

// TestCompletedHistoryIsBounded: ended executors of a framework are kept
// up to --max_completed_executors_per_framework.
func TestCompletedHistoryIsBounded(t *testing.T) {
	c := newCluster(t, nil)
	a := c.startAgent(t, t.TempDir(), 0, func(c *agent.Config) { c.MaxCompletedExecutorsPerFramework = 2 })
	fw := c.subscribe(t, testFramework("test"))
	// A running task keeps the framework (and its history) alive.
	fw.launch(a, commandTask("keeper", "sleep 60"))
	fw.waitState("keeper", mesos.TaskState_TASK_RUNNING, 15*time.Second)
	for _, id := range []string{"a", "b", "c", "d"} {
		fw.launch(a, commandTask(id, "true"))
		fw.waitState(id, mesos.TaskState_TASK_FINISHED, 15*time.Second)
	}
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() bool {
		f := a.state(t).framework(fw.ID())
		return f != nil && len(f.CompletedExecutors) == 2
	}, "completed executors not bounded to 2")
}

// TestFrameworkCheckpointsFollowItsExecutors: a framework's framework.info
// is written by its first launch and again only when the framework's info
// changed (not by every launch); its checkpoint directory goes with its
// last executor and comes back with its next launch, and an agent
// restarted then recovers that task.
func TestFrameworkCheckpointsFollowItsExecutors(t *testing.T) {
	c := newCluster(t, nil)
	dir := t.TempDir()
	a1 := c.startAgent(t, dir, 0, nil)
	fw := c.subscribe(t, testFramework("test"))
	fwDir := filepath.Join(dir, "meta", "slaves", a1.ID(), "frameworks", fw.ID())
	info := filepath.Join(fwDir, "framework.info")
	fw.launch(a1, commandTask("first", "sleep 60"))
	fw.waitState("first", mesos.TaskState_TASK_RUNNING, 10*time.Second)
	st1, err := os.Stat(info)
	if err != nil {
		t.Fatal(err)
	}
	fw.launch(a1, commandTask("second", "sleep 60"))
	fw.waitState("second", mesos.TaskState_TASK_RUNNING, 10*time.Second)
	st2, err := os.Stat(info)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(st1, st2) {
		t.Errorf("framework.info written again by a launch with the same framework info")
	}
	fw.kill(a1, "first")
	fw.kill(a1, "second")
	fw.waitState("first", mesos.TaskState_TASK_KILLED, 10*time.Second)
	fw.waitState("second", mesos.TaskState_TASK_KILLED, 10*time.Second)
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() bool {
		_, err := os.Stat(fwDir)
		return os.IsNotExist(err)
	}, "the framework's checkpoints gone with its last executor")

	fw.launch(a1, commandTask("third", "sleep 60"))
	fw.waitState("third", mesos.TaskState_TASK_RUNNING, 10*time.Second)
	if _, err := os.Stat(info); err != nil {
		t.Fatalf("framework.info not written again after its directory went: %v", err)
	}
	a1.stop()
	a2 := c.startAgent(t, dir, a1.port, nil)
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() bool {
		es := a2.state(t).executor(fw.ID(), "third")
		return es != nil && es.Subscribed
	}, "the task launched after the directory came back recovered")
	fw.kill(a2, "third")
	fw.waitState("third", mesos.TaskState_TASK_KILLED, 10*time.Second)
}
