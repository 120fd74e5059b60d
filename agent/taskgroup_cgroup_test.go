package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mesolite/mesolite/agent"
	"github.com/mesolite/mesolite/api/v1/agentapi"
	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/containerizer"
	mesoscz "github.com/mesolite/mesolite/containerizer/mesos"
	"github.com/mesolite/mesolite/internal/testutil"
	"github.com/mesolite/mesolite/isolation"
	"google.golang.org/protobuf/proto"
)

// groupTask is a command task of a group with its own cpus and mem.
func groupTask(id, cmd string, cpus, mem float64) *mesos.TaskInfo {
	t := commandTask(id, cmd)
	t.Resources = []*mesos.Resource{
		{Name: proto.String("cpus"), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(cpus)}},
		{Name: proto.String("mem"), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(mem)}},
	}
	return t
}

// isolatedAgent starts an agent of c on the mesos containerizer with
// cgroups (cpu, mem, pids) and a pid namespace under a cgroups root of the
// test's, which the test removes.
func isolatedAgent(t *testing.T, c *cluster, mutate func(*agent.Config)) (*testAgent, *mesoscz.Containerizer, string) {
	t.Helper()
	testutil.RequireRoot(t)
	root := fmt.Sprintf("mesolite-agent-test-%d-%d", os.Getpid(), time.Now().UnixNano()%1e9)
	t.Cleanup(func() { removeTestCgroups(root) })
	cz := isolatedCz(t, root)
	return c.startAgentOn(t, traversableDir(t), 0, mutate, cz), cz, root
}

// removeTestCgroups removes whatever a failed test left under cgroups root
// root: its cgroups, in every hierarchy.
func removeTestCgroups(root string) {
	dirs, _ := filepath.Glob(filepath.Join(isolation.DefaultCgroupsHierarchy, "*", root))
	dirs = append(dirs, filepath.Join(isolation.DefaultCgroupsHierarchy, root))
	for _, d := range dirs {
		subs, _ := filepath.Glob(filepath.Join(d, "*", "*"))
		for i := len(subs) - 1; i >= 0; i-- {
			_ = os.Remove(subs[i])
		}
		subs, _ = filepath.Glob(filepath.Join(d, "*"))
		for _, s := range subs {
			_ = os.Remove(s)
		}
		_ = os.Remove(d)
	}
}

// isolatedCz is a mesos containerizer with cgroups (cpu, mem, pids) and a
// pid namespace under cgroups root root.
func isolatedCz(t *testing.T, root string) *mesoscz.Containerizer {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	set, err := isolation.ParseIsolation("cgroups/cpu,cgroups/mem,cgroups/pids,namespaces/pid")
	if err != nil {
		t.Fatal(err)
	}
	cz, err := mesoscz.New(mesoscz.Options{
		Logger: testLogger(), Isolation: set,
		Isolator: isolation.Options{CgroupsRoot: root},
		Launcher: isolation.LauncherOptions{InitPath: self, InitArgs: []string{"launch"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cz.Close() })
	return cz
}

// memCgroupOf is the v1 memory (or v2) cgroup path a task printed from
// /proc/self/cgroup.
func memCgroupOf(out string) string {
	for _, l := range strings.Split(out, "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) == 3 && (f[1] == "memory" || (f[0] == "0" && f[1] == "")) {
			return f[2]
		}
	}
	return ""
}

// Each task of a group runs in a cgroup of its own below its executor's
// container, with its own limits: one that outgrows its memory fails with
// REASON_CONTAINER_LIMITATION_MEMORY while the container and a task of
// another group of the same executor live on; the nested containers show
// in /containers and GET_CONTAINERS with their own statistics; their
// cgroups go once the tasks ended.
func TestTaskGroupTasksHaveTheirOwnCgroups(t *testing.T) {
	c := newCluster(t, nil)
	a, cz, root := isolatedAgent(t, c, nil)
	fw := c.subscribe(t, testFramework("pods"))
	ex := groupExecutor("pod-cg")

	// A group whose task stays, to watch.
	calm := groupTask("calm", "cat /proc/self/cgroup; exec sleep 60", 0.2, 48)
	calm.Command.User = proto.String("nobody")
	fw.launchGroup(a, ex, calm)
	running := fw.waitState("calm", mesos.TaskState_TASK_RUNNING, 20*time.Second)
	parent := running.GetContainerStatus().GetContainerId().GetParent().GetValue()
	calmCID := running.GetContainerStatus().GetContainerId().GetValue()
	if parent == "" || calmCID == "" {
		t.Fatalf("TASK_RUNNING container_status %v: want a nested container id", running.GetContainerStatus())
	}
	sandbox := a.groupSandbox(fw.ID(), "pod-cg")
	var out string
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() bool {
		b, _ := os.ReadFile(filepath.Join(sandbox, "tasks", "calm", "stdout"))
		out = string(b)
		return memCgroupOf(out) != ""
	}, "calm printed its cgroups")
	if got, want := memCgroupOf(out), "/"+root+"/"+parent+"/"+calmCID; got != want {
		t.Errorf("calm runs in memory cgroup %q, want its own %q:\n%s", got, want, out)
	}

	// A second group: its hog outgrows its 32 MB, its sibling is killed by
	// the group's policy (Mesos's), calm of the first group lives on.
	fw.launchGroup(a, ex,
		groupTask("hog", "head -c 268435456 /dev/zero | tail", 0.1, 32),
		groupTask("mate", "exec sleep 60", 0.1, 32))
	failed := fw.waitState("hog", mesos.TaskState_TASK_FAILED, 30*time.Second)
	if failed.GetReason() != mesos.TaskStatus_REASON_CONTAINER_LIMITATION_MEMORY || !strings.Contains(failed.GetMessage(), "Memory limit exceeded: Requested: 32MB") {
		t.Errorf("hog: %s %s %q, want REASON_CONTAINER_LIMITATION_MEMORY for its own 32MB", failed.GetState(), failed.GetReason(), failed.GetMessage())
	}
	if cs := failed.GetContainerStatus().GetContainerId(); cs.GetParent().GetValue() != parent || cs.GetValue() == calmCID {
		t.Errorf("hog's container %v, want a nested container of %s", cs, parent)
	}
	killed := fw.waitState("mate", mesos.TaskState_TASK_KILLED, 20*time.Second)
	if killed.GetReason() == mesos.TaskStatus_REASON_CONTAINER_LIMITATION_MEMORY {
		t.Errorf("mate was killed for a limitation: %v", killed)
	}

	// calm still runs, in a container that still runs.
	time.Sleep(300 * time.Millisecond)
	if s := a.state(t).taskState(fw.ID(), "calm"); s != "TASK_RUNNING" {
		t.Fatalf("calm is %s after its sibling group's OOM, want TASK_RUNNING", s)
	}
	if es := a.state(t).executor(fw.ID(), "pod-cg"); es == nil {
		t.Fatal("the executor's container went with the OOM of one task")
	}

	// calm's nested container, with its own statistics and limits.
	resp := a.opCall(t, codec.JSON, &agentapi.Call{Type: agentapi.Call_GET_CONTAINERS.Enum(),
		GetContainers: &agentapi.Call_GetContainers{ShowNested: proto.Bool(true)}})
	var nested *agentapi.Response_GetContainers_Container
	for _, ct := range resp.GetGetContainers().GetContainers() {
		if ct.GetContainerId().GetValue() == calmCID {
			nested = ct
		}
	}
	if nested == nil || nested.GetContainerId().GetParent().GetValue() != parent {
		t.Fatalf("GET_CONTAINERS show_nested lacks calm's nested container %s: %v", calmCID, resp.GetGetContainers().GetContainers())
	}
	if st := nested.GetResourceStatistics(); st.GetMemLimitBytes() != 48<<20 || st.GetProcesses() != 1 {
		t.Errorf("calm's statistics %v: want its own 48 MB limit and its one process", st)
	}
	var list []map[string]any
	r, err := a.client.Get(a.url("/containers"))
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(r.Body).Decode(&list)
	r.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range list {
		if e["container_id"] == calmCID && e["parent_container_id"] == parent {
			st, _ := e["statistics"].(map[string]any)
			found = st["mem_limit_bytes"] == float64(48<<20)
		}
	}
	if !found {
		t.Errorf("/containers lacks calm's nested container with its 48 MB: %v", list)
	}

	// The ended tasks' cgroups are gone; calm's stays until it ends.
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() bool {
		ids, err := cz.Nested(t.Context(), parent)
		return err == nil && len(ids) == 1 && ids[0] == calmCID
	}, "only calm's nested cgroup left")
	fw.kill(a, "calm")
	fw.waitState("calm", mesos.TaskState_TASK_KILLED, 20*time.Second)
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() bool {
		_, err := os.Stat(filepath.Join(isolation.DefaultCgroupsHierarchy, "memory", root, parent))
		if testutil.CgroupV2() {
			_, err = os.Stat(filepath.Join(isolation.DefaultCgroupsHierarchy, root, parent))
		}
		return os.IsNotExist(err)
	}, "the executor's cgroup removed once its tasks ended")
}

// The executor itself runs as the tasks' user (--switch_user, the
// framework's user): it places each task in its cgroup with only the
// task's cgroup.procs delegated to it, which the task's first
// TASK_RUNNING takes back; the task runs as the user, in its own cgroup.
func TestTaskGroupUnprivilegedExecutorPlacesItsTasks(t *testing.T) {
	c := newCluster(t, nil)
	a, _, root := isolatedAgent(t, c, func(cfg *agent.Config) { cfg.SwitchUser = true })
	info := testFramework("pods-as-nobody")
	info.User = proto.String("nobody")
	fw := c.subscribe(t, info)
	fw.launchGroup(a, groupExecutor("pod-nobody"), groupTask("placed", "id -u; cat /proc/self/cgroup; exec sleep 60", 0.1, 40))
	running := fw.waitState("placed", mesos.TaskState_TASK_RUNNING, 20*time.Second)
	parent := running.GetContainerStatus().GetContainerId().GetParent().GetValue()
	nested := running.GetContainerStatus().GetContainerId().GetValue()
	var out string
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() bool {
		b, _ := os.ReadFile(filepath.Join(a.groupSandbox(fw.ID(), "pod-nobody"), "tasks", "placed", "stdout"))
		out = string(b)
		return memCgroupOf(out) != ""
	}, "the task printed its cgroups")
	if !strings.HasPrefix(out, "65534\n") || memCgroupOf(out) != "/"+root+"/"+parent+"/"+nested {
		t.Errorf("the task ran as %q in %q, want nobody in its own cgroup /%s/%s/%s", strings.SplitN(out, "\n", 2)[0], memCgroupOf(out), root, parent, nested)
	}
	// Sealed once it ran: the procs file is root's again; the container's
	// own never was nobody's on v1 (on v2 it is the common ancestor, in
	// which the kernel takes no process).
	procs := filepath.Join(isolation.DefaultCgroupsHierarchy, "memory", root, parent, nested, "cgroup.procs")
	own := filepath.Join(isolation.DefaultCgroupsHierarchy, "memory", root, parent, "cgroup.procs")
	if testutil.CgroupV2() {
		procs = filepath.Join(isolation.DefaultCgroupsHierarchy, root, parent, nested, "cgroup.procs")
		own = filepath.Join(isolation.DefaultCgroupsHierarchy, root, parent, "leaf", "cgroup.procs")
	}
	testutil.Eventually(t, 5*time.Second, 20*time.Millisecond, func() bool {
		fi, err := os.Stat(procs)
		return err == nil && fi.Sys().(*syscall.Stat_t).Uid == 0
	}, "the task's cgroup.procs sealed (root's) after TASK_RUNNING")
	if fi, err := os.Stat(own); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("the executor's own cgroup.procs %s: %v, want root's", own, err)
	}
	fw.kill(a, "placed")
	fw.waitState("placed", mesos.TaskState_TASK_KILLED, 20*time.Second)
}

// An agent restart keeps the tasks' cgroups: the new agent's containerizer
// finds them below the recovered container, with their own limits and
// usage, and removes them with their tasks.
func TestTaskGroupCgroupsRecovered(t *testing.T) {
	c := newCluster(t, nil)
	a1, _, root := isolatedAgent(t, c, nil)
	fw := c.subscribe(t, testFramework("pods-recovered"))
	fw.launchGroup(a1, groupExecutor("pod-rec"), groupTask("r1", "exec sleep 60", 0.1, 40), groupTask("r2", "exec sleep 60", 0.1, 40))
	st := fw.waitState("r1", mesos.TaskState_TASK_RUNNING, 20*time.Second)
	fw.waitState("r2", mesos.TaskState_TASK_RUNNING, 20*time.Second)
	parent := st.GetContainerStatus().GetContainerId().GetParent().GetValue()
	r1 := st.GetContainerStatus().GetContainerId().GetValue()
	a1.stop()

	cz2 := isolatedCz(t, root)
	a2 := c.startAgentOn(t, a1.workDir, a1.port, nil, cz2)
	testutil.Eventually(t, 15*time.Second, 20*time.Millisecond, func() bool {
		es := a2.state(t).executor(fw.ID(), "pod-rec")
		return es != nil && es.Subscribed && len(es.Tasks) == 2
	}, "the default executor resubscribed with its two tasks")
	ids, err := cz2.Nested(t.Context(), parent)
	if err != nil || len(ids) != 2 {
		t.Fatalf("recovered nested cgroups of %s: %v, %v; want the two tasks'", parent, ids, err)
	}
	u, err := cz2.Usage(t.Context(), r1)
	if err != nil || u.GetMemLimitBytes() != 40<<20 || u.GetProcesses() != 1 {
		t.Errorf("r1's usage after the restart: %v, %v; want its 40 MB and its one process", u, err)
	}
	fw.kill(a2, "r2")
	fw.waitState("r2", mesos.TaskState_TASK_KILLED, 20*time.Second)
	fw.waitState("r1", mesos.TaskState_TASK_KILLED, 20*time.Second)
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() bool {
		ents, _ := os.ReadDir(filepath.Join(isolation.DefaultCgroupsHierarchy, "memory", root))
		if testutil.CgroupV2() {
			ents, _ = os.ReadDir(filepath.Join(isolation.DefaultCgroupsHierarchy, root))
		}
		for _, e := range ents {
			if e.IsDir() {
				return false
			}
		}
		return true
	}, "the container's cgroups removed once its tasks ended")
}

// A session (mesolite exec) into a task of a group names the task's nested
// container as its parent: it starts in the task's sandbox with its
// MESOS_SANDBOX, in its cgroup, and WAIT finds it by that same id.
func TestSessionInATaskOfAGroup(t *testing.T) {
	c := newCluster(t, nil)
	a, _, root := isolatedAgent(t, c, nil)
	fw := c.subscribe(t, testFramework("pods-exec"))
	fw.launchGroup(a, groupExecutor("pod-exec"), groupTask("inner", "exec sleep 60", 0.1, 40))
	st := fw.waitState("inner", mesos.TaskState_TASK_RUNNING, 20*time.Second)
	task := st.GetContainerStatus().GetContainerId()
	sid := &mesos.ContainerID{Value: proto.String("sess-inner"), Parent: task}
	call := &agentapi.Call{Type: agentapi.Call_LAUNCH_NESTED_CONTAINER_SESSION.Enum(), LaunchNestedContainerSession: &agentapi.Call_LaunchNestedContainerSession{
		ContainerId: sid, Command: &mesos.CommandInfo{Value: proto.String(`pwd; echo "$MESOS_SANDBOX"; cat /proc/self/cgroup`)}}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stdout, stderr := output(t, a.startSession(t, ctx, codec.JSON, call, nil), codec.JSON)
	dir := filepath.Join(a.groupSandbox(fw.ID(), "pod-exec"), "tasks", "inner")
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	lines := strings.SplitN(stdout, "\n", 3)
	if len(lines) < 3 || lines[0] != dir || lines[1] != dir {
		t.Errorf("session in the task: %q (stderr %q), want it in %s with MESOS_SANDBOX naming it", stdout, stderr, dir)
	}
	if got, want := memCgroupOf(stdout), "/"+root+"/"+task.GetParent().GetValue()+"/"+task.GetValue(); got != want {
		t.Errorf("session in memory cgroup %q, want the task's %q", got, want)
	}
	resp := a.opCall(t, codec.JSON, &agentapi.Call{Type: agentapi.Call_WAIT_NESTED_CONTAINER.Enum(),
		WaitNestedContainer: &agentapi.Call_WaitNestedContainer{ContainerId: sid}})
	if resp.GetWaitNestedContainer().GetExitStatus() != 0 {
		t.Errorf("WAIT of the session: %v", resp)
	}
	fw.kill(a, "inner")
	fw.waitState("inner", mesos.TaskState_TASK_KILLED, 20*time.Second)
}

// slowReturnCz is a containerizer whose Launch returns only a while after
// its container runs, as a mesos containerizer's may when the executor runs
// in place in a prestarted init: the executor subscribes before Launch
// returned. Its PrepareNested holds the agent to the contract that nested
// containers are asked of a launched container.
type slowReturnCz struct {
	*mesoscz.Containerizer
	mu       sync.Mutex
	returned map[string]bool
	early    []string // PrepareNested calls before their parent's Launch returned
	nested   chan string
}

func (c *slowReturnCz) Launch(ctx context.Context, spec containerizer.LaunchSpec) (containerizer.Handle, error) {
	h, err := c.Containerizer.Launch(ctx, spec)
	if err != nil {
		return h, err
	}
	// The executor runs and subscribes meanwhile; an agent that asks for
	// its tasks' cgroups now does so too early. The wait ends at the first
	// such call, or after a while on an agent that waits.
	select {
	case <-c.nested:
	case <-time.After(2 * time.Second):
	}
	c.mu.Lock()
	c.returned[spec.ContainerID] = true
	c.mu.Unlock()
	return h, nil
}

func (c *slowReturnCz) PrepareNested(ctx context.Context, parent, id string, resources []*mesos.Resource) error {
	c.mu.Lock()
	early := !c.returned[parent]
	if early {
		c.early = append(c.early, id)
	}
	c.mu.Unlock()
	if early {
		select {
		case c.nested <- id:
		default:
		}
	}
	return c.Containerizer.PrepareNested(ctx, parent, id, resources)
}

// An executor that subscribes before its container's Launch returned gets
// its group's tasks only with their own cgroups, made once the launch
// returned (CI once found a group's tasks in their executor's cgroup: the
// agent had asked for the nested cgroups of a container the containerizer
// did not track yet).
func TestTaskGroupCgroupsWaitForTheLaunch(t *testing.T) {
	c := newCluster(t, nil)
	testutil.RequireRoot(t)
	root := fmt.Sprintf("mesolite-agent-test-%d-%d", os.Getpid(), time.Now().UnixNano()%1e9)
	cz := &slowReturnCz{Containerizer: isolatedCz(t, root), returned: map[string]bool{}, nested: make(chan string, 1)}
	t.Cleanup(func() { removeTestCgroups(root) })
	a := c.startAgentOn(t, traversableDir(t), 0, nil, cz)
	fw := c.subscribe(t, testFramework("pods"))
	fw.launchGroup(a, groupExecutor("pod-early"), groupTask("early", "cat /proc/self/cgroup; exec sleep 60", 0.2, 48))
	running := fw.waitState("early", mesos.TaskState_TASK_RUNNING, 20*time.Second)
	parent := running.GetContainerStatus().GetContainerId().GetParent().GetValue()
	nested := running.GetContainerStatus().GetContainerId().GetValue()
	cz.mu.Lock()
	early := cz.early
	cz.mu.Unlock()
	if len(early) > 0 {
		t.Errorf("the agent asked for nested cgroups %v before their container's Launch returned", early)
	}
	var out string
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() bool {
		b, _ := os.ReadFile(filepath.Join(a.groupSandbox(fw.ID(), "pod-early"), "tasks", "early", "stdout"))
		out = string(b)
		return memCgroupOf(out) != ""
	}, "the task printed its cgroups")
	if got, want := memCgroupOf(out), "/"+root+"/"+parent+"/"+nested; got != want {
		t.Errorf("the task runs in memory cgroup %q, want its own %q:\n%s", got, want, out)
	}
	fw.kill(a, "early")
	fw.waitState("early", mesos.TaskState_TASK_KILLED, 20*time.Second)
}
