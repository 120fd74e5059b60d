package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
	schedv1 "github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/detector/zktest"
	"github.com/mesolite/mesolite/internal/testutil"
	"github.com/mesolite/mesolite/scheduler"
)

// haCluster is masters electing a leader in one real ZooKeeper, sharing
// their registry there, and one agent that finds the leader through it.
type haCluster struct {
	zkURL     string
	masters   []*proc
	ports     []int
	agent     *proc
	agentAddr string
	agentDir  string
	agentArgs []string
}

// masterFlags keep failovers short: a dead leader's ZooKeeper session
// expires in 2 s.
func (c *haCluster) startMaster(t *testing.T, i int) {
	t.Helper()
	c.masters[i] = start(t, fmt.Sprintf("master%d", i), "master", "--ip=127.0.0.1", "--port="+strconv.Itoa(c.ports[i]),
		"--work_dir="+t.TempDir(), "--zk="+c.zkURL, "--zk_session_timeout=2secs", "--quorum=2",
		"--agent_reregister_timeout=2mins", "--agent_ping_timeout=1secs", "--max_agent_ping_timeouts=3",
		"--allocation_interval=100ms")
}

func (c *haCluster) startAgent(t *testing.T) {
	t.Helper()
	port, _ := strconv.Atoi(strings.TrimPrefix(c.agentAddr, "127.0.0.1:"))
	args := append([]string{"agent", "--master=" + c.zkURL, "--ip=127.0.0.1", "--port=" + strconv.Itoa(port),
		"--work_dir=" + c.agentDir, "--resources=cpus:8;mem:4096;disk:1024;ports:[31000-31100]",
		"--registration_backoff_factor=100ms"}, c.agentArgs...)
	c.agent = start(t, "agent", args...)
}

func startHA(t *testing.T, masters int) *haCluster {
	t.Helper()
	zk := zktest.Start(t)
	c := &haCluster{zkURL: zk.URL("/mesolite"), masters: make([]*proc, masters), ports: make([]int, masters),
		agentAddr: "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t)), agentDir: t.TempDir()}
	for i := range masters {
		c.ports[i] = testutil.FreePort(t)
		c.startMaster(t, i)
	}
	c.startAgent(t)
	return c
}

// haState is what the failover tests read of /master/state.
type haState struct {
	Elected bool `json:"elected"`
	Flags   map[string]string
	Slaves  []struct {
		ID     string `json:"id"`
		Active bool   `json:"active"`
	} `json:"slaves"`
	Frameworks []struct {
		ID     string `json:"id"`
		Active bool   `json:"active"`
		Tasks  []struct {
			ID    string `json:"id"`
			State string `json:"state"`
		} `json:"tasks"`
	} `json:"frameworks"`
}

// leader returns the index of the master that leads and its state.
func (c *haCluster) leader() (int, *haState) {
	for i, m := range c.masters {
		select {
		case <-m.done:
			continue
		default:
		}
		var st haState
		if err := getJSON("http://127.0.0.1:"+strconv.Itoa(c.ports[i])+"/master/state", &st); err == nil && st.Elected {
			return i, &st
		}
	}
	return -1, nil
}

// recovered reports whether the leader has the agent connected, every
// framework in fwIDs subscribed, and tasks tasks running.
func (st *haState) recovered(fwIDs []string, tasks int) bool {
	active := 0
	for _, s := range st.Slaves {
		if s.Active {
			active++
		}
	}
	if active != 1 {
		return false
	}
	running := 0
	for _, id := range fwIDs {
		found := false
		for _, f := range st.Frameworks {
			if f.ID == id && f.Active {
				found = true
				for _, tk := range f.Tasks {
					if tk.State == "TASK_RUNNING" {
						running++
					}
				}
			}
		}
		if !found {
			return false
		}
	}
	return running == tasks
}

// testFramework launches tasks through the scheduler library and keeps
// every update it gets.
type testFramework struct {
	t      *testing.T
	name   string
	client *scheduler.Client
	mu     sync.Mutex
	states map[string][]mesos.TaskState
	want   int
	cancel context.CancelFunc
	done   chan struct{}
}

func startFramework(t *testing.T, master, name string, tasks int, caps ...mesos.FrameworkInfo_Capability_Type) *testFramework {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	info := &mesos.FrameworkInfo{Name: mesos.Ptr(name), FailoverTimeout: mesos.Ptr(300.0), Checkpoint: mesos.Ptr(true)}
	for _, c := range caps {
		info.Capabilities = append(info.Capabilities, &mesos.FrameworkInfo_Capability{Type: c.Enum()})
	}
	client, err := scheduler.Subscribe(ctx, scheduler.Config{Master: master, Framework: info, BackoffMax: 2 * time.Second})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	f := &testFramework{t: t, name: name, client: client, states: map[string][]mesos.TaskState{}, want: tasks, cancel: cancel, done: make(chan struct{})}
	go f.loop(ctx)
	t.Cleanup(f.stop)
	return f
}

func (f *testFramework) stop() {
	f.cancel()
	<-f.done
}

func (f *testFramework) loop(ctx context.Context) {
	defer close(f.done)
	launched := 0
	for ev := range f.client.Events() {
		switch ev.GetType() {
		case schedv1.Event_OFFERS:
			for _, o := range ev.GetOffers().GetOffers() {
				var tasks []*mesos.TaskInfo
				for launched < f.want && len(tasks) < f.want {
					id := fmt.Sprintf("%s-%02d", f.name, launched)
					tasks = append(tasks, &mesos.TaskInfo{
						Name: mesos.Ptr(id), TaskId: &mesos.TaskID{Value: mesos.Ptr(id)}, AgentId: o.GetAgentId(),
						Resources: []*mesos.Resource{scalar("cpus", 0.05), scalar("mem", 16)},
						Command:   &mesos.CommandInfo{Value: mesos.Ptr("sleep 600")},
					})
					launched++
				}
				var err error
				if len(tasks) > 0 {
					err = f.client.Launch(ctx, o, tasks...)
				} else {
					err = f.client.Decline(ctx, scheduler.RefuseFor(time.Hour), o.GetId())
				}
				if err != nil && ctx.Err() == nil {
					f.t.Logf("%s: %v", f.client.FrameworkID(), err)
				}
			}
		case schedv1.Event_UPDATE:
			st := ev.GetUpdate().GetStatus()
			f.mu.Lock()
			f.states[st.GetTaskId().GetValue()] = append(f.states[st.GetTaskId().GetValue()], st.GetState())
			f.mu.Unlock()
		}
	}
}

// latest returns the latest state of every task.
func (f *testFramework) latest() map[string]mesos.TaskState {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]mesos.TaskState{}
	for id, ss := range f.states {
		out[id] = ss[len(ss)-1]
	}
	return out
}

// saw reports whether task id ever reported state.
func (f *testFramework) saw(id string, state mesos.TaskState) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.states[id] {
		if s == state {
			return true
		}
	}
	return false
}

func (f *testFramework) terminal() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for id, ss := range f.states {
		for _, s := range ss {
			if mesos.IsTerminal(s) {
				out = append(out, id+":"+s.String())
			}
		}
	}
	return out
}

func scalar(name string, v float64) *mesos.Resource {
	return &mesos.Resource{Name: mesos.Ptr(name), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: mesos.Ptr(v)}}
}

// TestLeaderKilledFiveTimes: three masters on one ZooKeeper; the leader is
// killed (SIGKILL) five times in a row while a `mesolite run
// --master=zk://` task and 20 tasks of a second framework run. Every task
// stays TASK_RUNNING, nobody gets a terminal update, and the time from the
// kill to the agent and both frameworks being back with the new leader is
// logged per failover.
func TestLeaderKilledFiveTimes(t *testing.T) {
	c := startHA(t, 3)
	testutil.Eventually(t, 60*time.Second, 50*time.Millisecond, func() bool {
		_, st := c.leader()
		return st != nil && len(st.Slaves) == 1 && st.Slaves[0].Active
	}, "a leader with the agent")
	if _, st := c.leader(); st.Flags["registry"] != "zookeeper" || st.Flags["quorum"] != "" {
		t.Fatalf("flags: registry %q quorum %q, want zookeeper and none", st.Flags["registry"], st.Flags["quorum"])
	}

	run := exec.Command(binary, "run", "--master="+c.zkURL, "--name=survivor", "--id=survivor-1", "--command=sleep 600")
	runOut := &testutil.SyncBuffer{}
	run.Stdout, run.Stderr = runOut, runOut
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	runDone := make(chan struct{})
	go func() { _ = run.Wait(); close(runDone) }()
	t.Cleanup(func() {
		_ = run.Process.Kill()
		<-runDone
		if t.Failed() {
			t.Logf("---- run output ----\n%s", runOut.String())
		}
	})
	testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, func() bool { return strings.Contains(runOut.String(), "TASK_RUNNING") }, "run's task running")
	fw := startFramework(t, c.zkURL, "twenty", 20)
	testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, func() bool {
		n := 0
		for _, s := range fw.latest() {
			if s == mesos.TaskState_TASK_RUNNING {
				n++
			}
		}
		return n == 20
	}, "20 tasks running")
	runFW := ""
	_, st := c.leader()
	for _, f := range st.Frameworks {
		if f.ID != fw.client.FrameworkID() {
			runFW = f.ID
		}
	}
	fwIDs := []string{runFW, fw.client.FrameworkID()}
	if !st.recovered(fwIDs, 21) {
		t.Fatalf("before the failovers: %+v", st)
	}

	var total time.Duration
	for round := 1; round <= 5; round++ {
		i, _ := c.leader()
		if i < 0 {
			t.Fatal("no leader")
		}
		killed := time.Now()
		c.masters[i].kill9()
		var took time.Duration
		testutil.Eventually(t, 60*time.Second, 20*time.Millisecond, func() bool {
			j, st := c.leader()
			if j < 0 || j == i || !st.recovered(fwIDs, 21) {
				return false
			}
			took = time.Since(killed)
			return true
		}, "failover %d: a new leader with the agent, both frameworks and 21 running tasks", round)
		total += took
		t.Logf("failover %d: master%d killed; agent and both frameworks back with the new leader in %s", round, i, took.Round(time.Millisecond))
		select {
		case <-runDone:
			t.Fatalf("failover %d: run ended", round)
		default:
		}
		if term := fw.terminal(); len(term) > 0 {
			t.Fatalf("failover %d: terminal updates %v", round, term)
		}
		c.startMaster(t, i) // back as a follower
	}
	t.Logf("5 failovers, mean recovery %s (ZooKeeper session timeout 2s)", (total / 5).Round(time.Millisecond))
	for _, bad := range []string{"TASK_LOST", "TASK_KILLED", "TASK_UNKNOWN", "TASK_GONE", "TASK_FAILED", "TASK_FINISHED", "TASK_UNREACHABLE"} {
		if strings.Contains(runOut.String(), bad) {
			t.Fatalf("run saw %s:\n%s", bad, runOut.String())
		}
	}
}

// TestAgentRemovedAndReturning: the agent dies and stays away past its
// removal timeout (its tasks keep running), so the plain framework is told
// TASK_LOST and the PARTITION_AWARE one TASK_UNREACHABLE. When the agent
// comes back, the plain framework's task is killed and the PARTITION_AWARE
// framework's is reported TASK_RUNNING again.
func TestAgentRemovedAndReturning(t *testing.T) {
	c := startHA(t, 1)
	testutil.Eventually(t, 60*time.Second, 50*time.Millisecond, func() bool {
		_, st := c.leader()
		return st != nil && len(st.Slaves) == 1 && st.Slaves[0].Active
	}, "a leader with the agent")
	plain := startFramework(t, c.zkURL, "plain", 1)
	pa := startFramework(t, c.zkURL, "aware", 1, mesos.FrameworkInfo_Capability_PARTITION_AWARE)
	testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, func() bool {
		return plain.latest()["plain-00"] == mesos.TaskState_TASK_RUNNING && pa.latest()["aware-00"] == mesos.TaskState_TASK_RUNNING
	}, "both tasks running")

	c.agent.kill9()
	testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, func() bool {
		return plain.latest()["plain-00"] == mesos.TaskState_TASK_LOST && pa.latest()["aware-00"] == mesos.TaskState_TASK_UNREACHABLE
	}, "TASK_LOST and TASK_UNREACHABLE after the agent was removed")

	c.startAgent(t)
	testutil.Eventually(t, 60*time.Second, 50*time.Millisecond, func() bool {
		return plain.saw("plain-00", mesos.TaskState_TASK_KILLED) && pa.latest()["aware-00"] == mesos.TaskState_TASK_RUNNING
	}, "the plain framework's task killed, the partition-aware one's running again")
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(c.ports[0]) + "/master/state")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// TestStoppedAgentRemovedAndReturning: an agent stopped with SIGSTOP keeps
// its connection open (the kernel takes the master's pings), so only its
// missing PONGs show it. The master removes it after the ping budget
// (1 s x 3 here): TASK_LOST for the plain framework, TASK_UNREACHABLE for
// the partition-aware one. Continued, it comes back: the plain task is
// killed, the partition-aware one runs on.
func TestStoppedAgentRemovedAndReturning(t *testing.T) {
	c := startHA(t, 1)
	testutil.Eventually(t, 60*time.Second, 50*time.Millisecond, func() bool {
		_, st := c.leader()
		return st != nil && len(st.Slaves) == 1 && st.Slaves[0].Active
	}, "a leader with the agent")
	plain := startFramework(t, c.zkURL, "plain", 1)
	pa := startFramework(t, c.zkURL, "aware", 1, mesos.FrameworkInfo_Capability_PARTITION_AWARE)
	testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, func() bool {
		return plain.latest()["plain-00"] == mesos.TaskState_TASK_RUNNING && pa.latest()["aware-00"] == mesos.TaskState_TASK_RUNNING
	}, "both tasks running")

	if err := c.agent.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	cont := func() { _ = c.agent.cmd.Process.Signal(syscall.SIGCONT) }
	t.Cleanup(cont) // stop() cannot end a stopped agent
	testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, func() bool {
		return plain.latest()["plain-00"] == mesos.TaskState_TASK_LOST && pa.latest()["aware-00"] == mesos.TaskState_TASK_UNREACHABLE
	}, "TASK_LOST and TASK_UNREACHABLE for the stopped agent's tasks")
	t.Logf("stopped agent removed after %s", time.Since(stopped).Round(100*time.Millisecond))

	cont()
	testutil.Eventually(t, 60*time.Second, 50*time.Millisecond, func() bool {
		return plain.saw("plain-00", mesos.TaskState_TASK_KILLED) && pa.latest()["aware-00"] == mesos.TaskState_TASK_RUNNING
	}, "the plain framework's task killed, the partition-aware one's running again")
}
