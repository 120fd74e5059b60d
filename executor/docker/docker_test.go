package docker_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"github.com/mesolite/mesolite/internal/testutil"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/containerizer/docker/dockertest"
	"github.com/mesolite/mesolite/containerizer/docker/engine"
	dockerexec "github.com/mesolite/mesolite/executor/docker"
	"github.com/mesolite/mesolite/executor/driver"
	"google.golang.org/protobuf/proto"
)

type run struct {
	agent    *dockertest.FakeAgent
	stdout   *testutil.SyncBuffer
	stderr   *testutil.SyncBuffer
	exitCode chan int
}

// start creates a container running cmd (unless cmd is nil) and runs an
// executor for it against a fake agent.
func start(t *testing.T, cmd []string, fw *mesos.FrameworkInfo, mutate ...func(*mesos.TaskInfo)) *run {
	t.Helper()
	return startWith(t, 0, cmd, fw, mutate...)
}

// startWith is start with the executor's --stop_timeout (0: its default).
func startWith(t *testing.T, stopTimeout time.Duration, cmd []string, fw *mesos.FrameworkInfo, mutate ...func(*mesos.TaskInfo)) *run {
	t.Helper()
	dockertest.Images(t)
	eng, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	name := engine.ContainerName("exectest-" + id)
	if cmd != nil {
		_, err := eng.Create(context.Background(), name, &container.Config{Image: dockertest.BusyboxImage, Cmd: cmd, Labels: map[string]string{engine.LabelOwner: "exectest"}},
			&container.HostConfig{NetworkMode: "none"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = eng.Remove(context.Background(), name) })
	}
	task := &mesos.TaskInfo{
		Name:      proto.String("t"),
		TaskId:    &mesos.TaskID{Value: proto.String("task-" + id)},
		AgentId:   &mesos.AgentID{Value: proto.String("fake-agent")},
		Resources: []*mesos.Resource{},
	}
	for _, m := range mutate {
		m(task)
	}
	agent := dockertest.NewFakeAgent(t, fw, task, "c-"+id)
	r := &run{agent: agent, stdout: &testutil.SyncBuffer{}, stderr: &testutil.SyncBuffer{}, exitCode: make(chan int, 1)}
	ex := dockerexec.New(dockerexec.Options{
		Engine:      eng,
		Container:   name,
		Stdout:      r.stdout,
		Stderr:      r.stderr,
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		StopTimeout: stopTimeout,
		Config: driver.Config{
			AgentEndpoint:       agent.Endpoint,
			FrameworkID:         fw.GetId().GetValue(),
			ExecutorID:          task.GetTaskId().GetValue(),
			Directory:           t.TempDir(),
			ShutdownGracePeriod: 2 * time.Second,
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { r.exitCode <- ex.Run(ctx) }()
	return r
}

func (r *run) exited(t *testing.T) int {
	t.Helper()
	select {
	case c := <-r.exitCode:
		return c
	case <-time.After(30 * time.Second):
		t.Fatal("executor did not exit after the terminal update")
		return -1
	}
}

func fw(caps ...mesos.FrameworkInfo_Capability_Type) *mesos.FrameworkInfo {
	f := &mesos.FrameworkInfo{User: proto.String("root"), Name: proto.String("t"), Id: &mesos.FrameworkID{Value: proto.String("fw")}}
	for _, c := range caps {
		f.Capabilities = append(f.Capabilities, &mesos.FrameworkInfo_Capability{Type: c.Enum()})
	}
	return f
}

func TestRunsContainerToCompletion(t *testing.T) {
	tests := []struct {
		name    string
		cmd     []string
		state   mesos.TaskState
		message string
	}{
		{"finished", []string{"sh", "-c", "echo out; echo err >&2"}, mesos.TaskState_TASK_FINISHED, "Container exited with status 0"},
		{"failed", []string{"sh", "-c", "echo out; echo err >&2; exit 5"}, mesos.TaskState_TASK_FAILED, "Container exited with status 5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := start(t, tt.cmd, fw())
			st := r.agent.WaitState(t, tt.state, time.Minute)
			if st.GetMessage() != tt.message {
				t.Errorf("message %q, want %q", st.GetMessage(), tt.message)
			}
			if code := r.exited(t); code != 0 {
				t.Errorf("executor exit code %d", code)
			}
			if r.stdout.String() != "out\n" || !strings.Contains(r.stderr.String(), "err\n") {
				t.Errorf("stdout %q stderr %q", r.stdout.String(), r.stderr.String())
			}
			running := r.agent.WaitState(t, mesos.TaskState_TASK_RUNNING, time.Second)
			if running.GetContainerStatus().GetExecutorPid() == 0 || running.GetContainerStatus().GetContainerId().GetValue() == "" {
				t.Errorf("container_status %v", running.GetContainerStatus())
			}
		})
	}
}

func TestMissingContainerFailsLaunch(t *testing.T) {
	r := start(t, nil, fw())
	st := r.agent.WaitState(t, mesos.TaskState_TASK_FAILED, time.Minute)
	if st.GetReason() != mesos.TaskStatus_REASON_CONTAINER_LAUNCH_FAILED || !strings.Contains(st.GetMessage(), "Failed to find container") {
		t.Errorf("status %v", st)
	}
	r.exited(t)
}

func TestShutdownKillsWithGracePeriod(t *testing.T) {
	r := start(t, []string{"sh", "-c", "trap 'echo term' TERM; echo ready; while true; do sleep 0.1; done"}, fw(mesos.FrameworkInfo_Capability_TASK_KILLING_STATE))
	r.agent.WaitState(t, mesos.TaskState_TASK_RUNNING, time.Minute)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(r.stdout.String(), "ready") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	begin := time.Now()
	r.agent.Shutdown()
	r.agent.WaitState(t, mesos.TaskState_TASK_KILLED, time.Minute)
	if took := time.Since(begin); took < 2*time.Second {
		t.Errorf("killed after %s, before the 2s shutdown grace period", took)
	}
	if !strings.Contains(r.stdout.String(), "term") {
		t.Errorf("the container did not get SIGTERM first: %q", r.stdout.String())
	}
	states := r.agent.States()
	if states[len(states)-2] != mesos.TaskState_TASK_KILLING {
		t.Errorf("states %v, want TASK_KILLING before TASK_KILLED", states)
	}
	r.exited(t)
}

// The agent's --docker_stop_timeout is the grace period of a kill when the
// task and the call name none (3 s by default, as in Mesos): a container
// that ignores SIGTERM is killed no sooner.
func TestStopTimeoutIsTheDefaultGrace(t *testing.T) {
	const stop = 5 * time.Second
	r := startWith(t, stop, []string{"sh", "-c", "trap '' TERM; echo ready; while true; do sleep 0.1; done"}, fw(mesos.FrameworkInfo_Capability_TASK_KILLING_STATE))
	r.agent.WaitState(t, mesos.TaskState_TASK_RUNNING, time.Minute)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(r.stdout.String(), "ready") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	begin := time.Now()
	r.agent.Kill(nil)
	r.agent.WaitState(t, mesos.TaskState_TASK_KILLED, time.Minute)
	if took := time.Since(begin); took < stop-500*time.Millisecond {
		t.Errorf("killed after %s, before the %s stop timeout", took, stop)
	}
	r.exited(t)
}

func TestMainRefusesABadStopTimeout(t *testing.T) {
	// Refused before anything else is looked at: the same call with a good
	// value gets past it to the missing executor environment (also 2), so
	// the check is on stderr's words.
	t.Setenv("MESOS_CONTAINER_NAME", "x")
	stderr := os.Stderr
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	os.Stderr = w
	code := dockerexec.Main(context.Background(), []string{"--stop_timeout=soon"})
	os.Stderr = stderr
	w.Close()
	out, _ := io.ReadAll(r)
	if !strings.Contains(string(out), "--stop_timeout") {
		t.Errorf("stderr %q, want --stop_timeout named", out)
	}
	if code != 2 {
		t.Errorf("--stop_timeout=soon: exit %d, want 2", code)
	}
}

func TestMainNeedsContainerAndEnvironment(t *testing.T) {
	t.Setenv("MESOS_CONTAINER_NAME", "")
	if code := dockerexec.Main(context.Background(), nil); code != 2 {
		t.Errorf("without a container name: exit %d, want 2", code)
	}
	t.Setenv("MESOS_AGENT_ENDPOINT", "")
	if code := dockerexec.Main(context.Background(), []string{"--container=x"}); code != 2 {
		t.Errorf("without the executor environment: exit %d, want 2", code)
	}
}

// TestHealthCheckInContainerKills: a COMMAND health check runs inside the
// container (docker exec: the container's filesystem); once the file it
// tests is gone, three failures kill the task, reported as Mesos does.
func TestHealthCheckInContainerKills(t *testing.T) {
	r := start(t, []string{"sh", "-c", "touch /tmp/ok; sleep 1.5; rm /tmp/ok; sleep 60"}, fw(), func(task *mesos.TaskInfo) {
		task.HealthCheck = &mesos.HealthCheck{Type: mesos.HealthCheck_COMMAND.Enum(),
			Command:      &mesos.CommandInfo{Value: proto.String("test -f /tmp/ok")},
			DelaySeconds: proto.Float64(0.2), IntervalSeconds: proto.Float64(0.2), TimeoutSeconds: proto.Float64(5),
			GracePeriodSeconds: proto.Float64(1), ConsecutiveFailures: proto.Uint32(2)}
	})
	st := r.agent.WaitState(t, mesos.TaskState_TASK_KILLED, time.Minute)
	if st.Healthy == nil || st.GetHealthy() || st.GetReason() != mesos.TaskStatus_REASON_TASK_HEALTH_CHECK_STATUS_UPDATED {
		t.Fatalf("terminal update %v", st)
	}
	var healthy, unhealthy int
	for _, u := range r.agent.Updates() {
		if u.GetState() == mesos.TaskState_TASK_RUNNING && u.Healthy != nil {
			if u.GetHealthy() {
				healthy++
			} else {
				unhealthy++
			}
		}
	}
	if healthy != 1 || unhealthy != 2 {
		t.Fatalf("health updates: %d healthy, %d unhealthy; want 1 and 2", healthy, unhealthy)
	}
	r.exited(t)
}
