package agent_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/agent"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/internal/testutil"
	"github.com/mesolite/mesolite/scheduler"
	"google.golang.org/protobuf/proto"
)

// Task groups run in a real cluster: the master validates LAUNCH_GROUP and
// sends RUN_TASK_GROUP, the agent starts the built-in default executor
// (`<test> executor default`, see TestMain), which runs each task as a
// nested container and reports per task.

// groupExecutor is a DEFAULT executor as frameworks send it: no command.
func groupExecutor(id string) *mesos.ExecutorInfo {
	return &mesos.ExecutorInfo{
		Type:       mesos.ExecutorInfo_DEFAULT.Enum(),
		ExecutorId: &mesos.ExecutorID{Value: proto.String(id)},
		Resources:  taskResources(),
	}
}

// launchGroup launches tasks as one group of executor ex on an offer of a.
func (fw *framework) launchGroup(a *testAgent, ex *mesos.ExecutorInfo, tasks ...*mesos.TaskInfo) {
	fw.t.Helper()
	var offer *mesos.Offer
	deadline := time.After(10 * time.Second)
	for offer == nil {
		fw.mu.Lock()
		for i, o := range fw.offers {
			if o.GetAgentId().GetValue() == a.ID() {
				offer = o
				fw.offers = append(fw.offers[:i], fw.offers[i+1:]...)
				break
			}
		}
		changed := fw.changed
		fw.mu.Unlock()
		if offer != nil {
			break
		}
		select {
		case <-changed:
		case <-deadline:
			fw.t.Fatalf("no offer from agent %s", a.ID())
		}
	}
	for _, t := range tasks {
		t.AgentId = offer.GetAgentId()
	}
	op := &mesos.Offer_Operation{
		Type:        mesos.Offer_Operation_LAUNCH_GROUP.Enum(),
		LaunchGroup: &mesos.Offer_Operation_LaunchGroup{Executor: ex, TaskGroup: &mesos.TaskGroupInfo{Tasks: tasks}},
	}
	// What the executor said, when the test fails.
	fw.t.Cleanup(func() {
		if fw.t.Failed() {
			b, _ := os.ReadFile(filepath.Join(a.groupSandbox(fw.ID(), ex.GetExecutorId().GetValue()), "stderr"))
			fw.t.Logf("executor %s stderr:\n%s", ex.GetExecutorId().GetValue(), b)
		}
	})
	if err := fw.Accept(context.Background(), []*mesos.OfferID{offer.GetId()}, []*mesos.Offer_Operation{op}, scheduler.RefuseFor(0)); err != nil {
		fw.t.Fatalf("launch group: %v", err)
	}
}

// groupSandbox is the executor's sandbox (its latest run) on agent a.
func (ta *testAgent) groupSandbox(fwID, exID string) string {
	return filepath.Join(ta.workDir, "slaves", ta.ID(), "frameworks", fwID, "executors", exID, "runs", "latest")
}

// One task fails: the other, still running, is killed by the group's
// policy; each has its own sandbox with its output; statuses carry the
// nested container id whose parent is the executor's container.
func TestTaskGroupFailureKillsTheGroup(t *testing.T) {
	c := newCluster(t, nil)
	a := c.startAgent(t, t.TempDir(), 0, nil)
	fw := c.subscribe(t, testFramework("pods"))
	fw.launchGroup(a, groupExecutor("pod1"),
		commandTask("sleeper", "echo sleeping; sleep 60"),
		commandTask("failer", "echo failing; sleep 0.5; exit 3"))

	run := fw.waitState("sleeper", mesos.TaskState_TASK_RUNNING, 10*time.Second)
	cid := run.GetContainerStatus().GetContainerId()
	if cid.GetValue() == "" || cid.GetParent().GetValue() == "" {
		t.Fatalf("TASK_RUNNING container_status %v: want a nested container id with a parent", run.GetContainerStatus())
	}
	failed := fw.waitState("failer", mesos.TaskState_TASK_FAILED, 10*time.Second)
	fcid := failed.GetContainerStatus().GetContainerId()
	if fcid.GetParent().GetValue() != cid.GetParent().GetValue() || fcid.GetValue() == cid.GetValue() {
		t.Errorf("container ids %v and %v: want two nested containers of one parent", cid, fcid)
	}
	killed := fw.waitState("sleeper", mesos.TaskState_TASK_KILLED, 10*time.Second)
	if killed.GetContainerStatus().GetContainerId().GetValue() != cid.GetValue() {
		t.Errorf("TASK_KILLED of container %v, want %v", killed.GetContainerStatus().GetContainerId(), cid)
	}
	dir := a.groupSandbox(fw.ID(), "pod1")
	for task, want := range map[string]string{"sleeper": "sleeping\n", "failer": "failing\n"} {
		b, err := os.ReadFile(filepath.Join(dir, "tasks", task, "stdout"))
		if err != nil || string(b) != want {
			t.Errorf("tasks/%s/stdout = %q, %v; want %q", task, b, err, want)
		}
	}
	// All its tasks ended and acknowledged, the executor goes.
	testutil.Eventually(t, 15*time.Second, 20*time.Millisecond, func() bool {
		es := a.state(t).executor(fw.ID(), "pod1")
		return es == nil
	}, "the default executor still runs after its tasks ended")
}

// Tasks of a group share files through the executor's sandbox: a
// SANDBOX_PATH volume of type PARENT, as Mesos's pods do.
func TestTaskGroupSharedVolume(t *testing.T) {
	c := newCluster(t, nil)
	a := c.startAgent(t, t.TempDir(), 0, nil)
	fw := c.subscribe(t, testFramework("pods"))
	shared := &mesos.ContainerInfo{Type: mesos.ContainerInfo_MESOS.Enum(), Volumes: []*mesos.Volume{{
		ContainerPath: proto.String("shared"), Mode: mesos.Volume_RW.Enum(),
		Source: &mesos.Volume_Source{Type: mesos.Volume_Source_SANDBOX_PATH.Enum(), SandboxPath: &mesos.Volume_Source_SandboxPath{
			Type: mesos.Volume_Source_SandboxPath_PARENT.Enum(), Path: proto.String("volumes/shared")}},
	}}}
	writer := commandTask("writer", `echo hello-from-writer > "$MESOS_SANDBOX/shared/msg"`)
	writer.Container = shared
	reader := commandTask("reader", `for i in $(seq 100); do [ -s shared/msg ] && exec cat shared/msg; sleep 0.1; done; exit 1`)
	reader.Container = shared
	fw.launchGroup(a, groupExecutor("pod2"), writer, reader)
	fw.waitState("writer", mesos.TaskState_TASK_FINISHED, 15*time.Second)
	fw.waitState("reader", mesos.TaskState_TASK_FINISHED, 15*time.Second)
	b, err := os.ReadFile(filepath.Join(a.groupSandbox(fw.ID(), "pod2"), "tasks", "reader", "stdout"))
	if err != nil || string(b) != "hello-from-writer\n" {
		t.Errorf("reader's stdout %q, %v", b, err)
	}
}

// KILL of one task kills it; the rest of its group follows (Mesos's
// default executor ends a group one of whose tasks was killed).
func TestTaskGroupKillOneTask(t *testing.T) {
	c := newCluster(t, nil)
	a := c.startAgent(t, t.TempDir(), 0, nil)
	fw := c.subscribe(t, testFramework("pods"))
	fw.launchGroup(a, groupExecutor("pod3"), commandTask("a", "sleep 60"), commandTask("b", "sleep 60"))
	fw.waitState("a", mesos.TaskState_TASK_RUNNING, 10*time.Second)
	fw.waitState("b", mesos.TaskState_TASK_RUNNING, 10*time.Second)
	fw.kill(a, "a")
	fw.waitState("a", mesos.TaskState_TASK_KILLED, 10*time.Second)
	st := fw.waitState("b", mesos.TaskState_TASK_KILLED, 10*time.Second)
	if st.GetMessage() == "" {
		t.Error("the group's kill says nothing of why")
	}
}

// A second group to the same executor runs beside the first; a task past
// its max_completion_time fails with REASON_MAX_COMPLETION_TIME_REACHED.
func TestTaskGroupSecondGroupAndMaxCompletionTime(t *testing.T) {
	c := newCluster(t, nil)
	a := c.startAgent(t, t.TempDir(), 0, nil)
	fw := c.subscribe(t, testFramework("pods"))
	fw.launchGroup(a, groupExecutor("pod4"), commandTask("first", "sleep 60"))
	first := fw.waitState("first", mesos.TaskState_TASK_RUNNING, 10*time.Second)
	slow := commandTask("slow", "sleep 60")
	slow.MaxCompletionTime = &mesos.DurationInfo{Nanoseconds: proto.Int64(int64(300 * time.Millisecond))}
	fw.launchGroup(a, groupExecutor("pod4"), slow)
	run := fw.waitState("slow", mesos.TaskState_TASK_RUNNING, 10*time.Second)
	if run.GetContainerStatus().GetContainerId().GetParent().GetValue() != first.GetContainerStatus().GetContainerId().GetParent().GetValue() {
		t.Errorf("the second group runs in another executor container")
	}
	st := fw.waitState("slow", mesos.TaskState_TASK_FAILED, 10*time.Second)
	if st.GetReason() != mesos.TaskStatus_REASON_MAX_COMPLETION_TIME_REACHED {
		t.Errorf("reason %v (%s), want REASON_MAX_COMPLETION_TIME_REACHED", st.GetReason(), st.GetMessage())
	}
	// The first group is another group: it runs on.
	time.Sleep(200 * time.Millisecond)
	if s := a.state(t).taskState(fw.ID(), "first"); s != "TASK_RUNNING" {
		t.Errorf("first group's task %s, want TASK_RUNNING", s)
	}
	fw.kill(a, "first")
	fw.waitState("first", mesos.TaskState_TASK_KILLED, 10*time.Second)
}

// A restarted agent recovers a running group: the default executor
// resubscribes and a kill reaches its tasks.
func TestTaskGroupRecoveredAfterAgentRestart(t *testing.T) {
	c := newCluster(t, nil)
	dir := t.TempDir()
	a1 := c.startAgent(t, dir, 0, nil)
	fw := c.subscribe(t, testFramework("pods"))
	fw.launchGroup(a1, groupExecutor("pod5"), commandTask("x", "sleep 60"), commandTask("y", "sleep 60"))
	fw.waitState("x", mesos.TaskState_TASK_RUNNING, 10*time.Second)
	fw.waitState("y", mesos.TaskState_TASK_RUNNING, 10*time.Second)
	a1.stop()

	a2 := c.startAgent(t, dir, a1.port, nil)
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() bool {
		es := a2.state(t).executor(fw.ID(), "pod5")
		return es != nil && es.Subscribed && len(es.Tasks) == 2
	}, "default executor resubscribed with its two tasks")
	fw.kill(a2, "y")
	fw.waitState("y", mesos.TaskState_TASK_KILLED, 10*time.Second)
	fw.waitState("x", mesos.TaskState_TASK_KILLED, 10*time.Second)
}

// A task of a group that names its user runs as it (the executor is root
// here: the framework's user is root), in a sandbox of its own that is
// that user's.
func TestTaskGroupTaskRunsAsItsUser(t *testing.T) {
	testutil.RequireRoot(t)
	c := newCluster(t, nil)
	a := c.startAgent(t, traversableDir(t), 0, nil)
	fw := c.subscribe(t, testFramework("pods"))
	task := commandTask("whoami", `id -u; touch "$MESOS_SANDBOX/mine"; sleep 3`)
	task.Command.User = proto.String("nobody")
	// Its health check runs as it too.
	task.HealthCheck = &mesos.HealthCheck{
		Type:                mesos.HealthCheck_COMMAND.Enum(),
		Command:             &mesos.CommandInfo{Value: proto.String(`[ "$(id -u)" = 65534 ]`)},
		DelaySeconds:        proto.Float64(0),
		IntervalSeconds:     proto.Float64(0.1),
		ConsecutiveFailures: proto.Uint32(1),
	}
	fw.launchGroup(a, groupExecutor("pod6"), task)
	fw.waitState("whoami", mesos.TaskState_TASK_RUNNING, 10*time.Second)
	if st := fw.waitState("whoami", mesos.TaskState_TASK_RUNNING, 10*time.Second); !st.GetHealthy() {
		t.Errorf("health check as the task's user: healthy=%v (%s)", st.GetHealthy(), st.GetMessage())
	}
	fw.waitState("whoami", mesos.TaskState_TASK_FINISHED, 10*time.Second)
	dir := filepath.Join(a.groupSandbox(fw.ID(), "pod6"), "tasks", "whoami")
	b, err := os.ReadFile(filepath.Join(dir, "stdout"))
	if err != nil || string(b) != "65534\n" {
		t.Errorf("the task ran as uid %q (%v), want nobody's 65534", b, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "mine")); err != nil {
		t.Errorf("the task could not write its own sandbox: %v", err)
	}
}

// A health check runs per task: a task that fails it is killed with
// REASON_TASK_HEALTH_CHECK_STATUS_UPDATED, and its group with it.
func TestTaskGroupHealthCheckKills(t *testing.T) {
	c := newCluster(t, nil)
	a := c.startAgent(t, t.TempDir(), 0, nil)
	fw := c.subscribe(t, testFramework("pods"))
	sick := commandTask("sick", "sleep 60")
	sick.HealthCheck = &mesos.HealthCheck{
		Type:                mesos.HealthCheck_COMMAND.Enum(),
		Command:             &mesos.CommandInfo{Value: proto.String("exit 1")},
		DelaySeconds:        proto.Float64(0),
		IntervalSeconds:     proto.Float64(0.2),
		GracePeriodSeconds:  proto.Float64(0),
		ConsecutiveFailures: proto.Uint32(1),
	}
	fw.launchGroup(a, groupExecutor("pod7"), sick, commandTask("well", "sleep 60"))
	st := fw.waitState("sick", mesos.TaskState_TASK_KILLED, 15*time.Second)
	if st.GetReason() != mesos.TaskStatus_REASON_TASK_HEALTH_CHECK_STATUS_UPDATED || st.GetHealthy() {
		t.Errorf("sick ended %v healthy=%v (%s), want killed unhealthy for its health check", st.GetReason(), st.GetHealthy(), st.GetMessage())
	}
	fw.waitState("well", mesos.TaskState_TASK_KILLED, 10*time.Second)
}

// Tasks with a container image cannot run nested: a docker one is refused
// by the master (as Mesos's), a mesos-containerizer image by the agent,
// each saying so, and the whole group with it.
func TestTaskGroupImageTasksRefused(t *testing.T) {
	c := newCluster(t, nil)
	a := c.startAgent(t, t.TempDir(), 0, nil)
	fw := c.subscribe(t, testFramework("pods"))

	docker := commandTask("in-docker", "true")
	docker.Container = &mesos.ContainerInfo{Type: mesos.ContainerInfo_DOCKER.Enum(), Docker: &mesos.ContainerInfo_DockerInfo{Image: proto.String("busybox")}}
	fw.launchGroup(a, groupExecutor("pod8"), docker, commandTask("plain8", "sleep 60"))
	st := fw.waitState("in-docker", mesos.TaskState_TASK_ERROR, 10*time.Second)
	if st.GetReason() != mesos.TaskStatus_REASON_TASK_GROUP_INVALID || !strings.Contains(st.GetMessage(), "Docker ContainerInfo is not supported on the task") {
		t.Errorf("docker task in a group: %v %q", st.GetReason(), st.GetMessage())
	}
	fw.waitState("plain8", mesos.TaskState_TASK_ERROR, 10*time.Second)

	image := commandTask("with-image", "true")
	image.Container = &mesos.ContainerInfo{Type: mesos.ContainerInfo_MESOS.Enum(), Mesos: &mesos.ContainerInfo_MesosInfo{
		Image: &mesos.Image{Type: mesos.Image_DOCKER.Enum(), Docker: &mesos.Image_Docker{Name: proto.String("busybox")}}}}
	fw.launchGroup(a, groupExecutor("pod9"), image, commandTask("plain9", "sleep 60"))
	st = fw.waitState("with-image", mesos.TaskState_TASK_FAILED, 10*time.Second)
	if !strings.Contains(st.GetMessage(), "cannot run tasks with a container image") {
		t.Errorf("image task in a group: %q", st.GetMessage())
	}
	fw.waitState("plain9", mesos.TaskState_TASK_FAILED, 10*time.Second)
}

// A kill of a group's task before its executor started (here: while the
// executor's URI is fetched) ends the whole group, and the launch with it.
func TestTaskGroupKilledBeforeTheExecutorStarted(t *testing.T) {
	fetching, fetchDone := make(chan struct{}), make(chan error, 1)
	c := newCluster(t, nil)
	a := c.startAgent(t, t.TempDir(), 0, func(c *agent.Config) {
		c.Fetch = func(ctx context.Context, fr agent.FetchRequest) error {
			close(fetching)
			<-ctx.Done()
			fetchDone <- ctx.Err()
			return ctx.Err()
		}
	})
	fw := c.subscribe(t, testFramework("pods"))
	ex := groupExecutor("pod10")
	ex.Command = &mesos.CommandInfo{Uris: []*mesos.CommandInfo_URI{{Value: proto.String("http://127.0.0.1:1/never")}}}
	fw.launchGroup(a, ex, commandTask("k1", "sleep 60"), commandTask("k2", "sleep 60"))
	select {
	case <-fetching:
	case <-time.After(10 * time.Second):
		t.Fatal("the executor's fetch never started")
	}
	fw.kill(a, "k1")
	fw.waitState("k1", mesos.TaskState_TASK_KILLED, 10*time.Second)
	st := fw.waitState("k2", mesos.TaskState_TASK_KILLED, 10*time.Second)
	if !strings.Contains(st.GetMessage(), "k1") {
		t.Errorf("k2 killed with %q, want it to name k1", st.GetMessage())
	}
	select {
	case <-fetchDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the fetch went on after the group was killed")
	}
}
