package master

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/agentpb"
	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/detector/zktest"
	"github.com/mesolite/mesolite/internal/testutil"
	"github.com/mesolite/mesolite/master/store/zkstore"
	"google.golang.org/protobuf/proto"
)

func zkConfig(t *testing.T, url string) Config {
	c := DefaultConfig()
	c.IP, c.Hostname = "127.0.0.1", "127.0.0.1"
	c.ZK = url
	c.ZKSessionTimeout = 4 * time.Second
	c.Logger = testLogger(t)
	c.AllocationInterval = 20 * time.Millisecond
	c.WorkDir = t.TempDir() // unused with --zk: the registry is in ZooKeeper
	return c
}

// TestFailoverSharesTheRegistry: the next leader knows the agents and
// frameworks the first admitted (from ZooKeeper, not its own disk), stays
// silent about tasks of agents that have not re-registered, and learns
// them when they do.
func TestFailoverSharesTheRegistry(t *testing.T) {
	zk := zktest.Start(t)
	url := zk.URL("/mesolite/shared")
	m1, base1, stop1 := runMaster(t, zkConfig(t, url))
	testutil.Eventually(t, 20*time.Second, 20*time.Millisecond, m1.isLeader, "first master elected")
	m2, base2, _ := runMaster(t, zkConfig(t, url))

	agent := registerAgentAt(t, base1, agentRegister("node1", 5051))
	info := frameworkInfo("survivor")
	info.FailoverTimeout = proto.Float64(3600)
	sc := subscribeTo(t, base1, info, codec.JSON)
	o := sc.offer()
	sc.launch([]*mesos.OfferID{o.GetId()}, commandTask("t1", o.GetAgentId(), 1, 64))
	agent.next(agentpb.Event_RUN_TASK)
	agent.update(sc.fwID, "t1", mesos.TaskState_TASK_RUNNING)
	sc.next(scheduler.Event_UPDATE)
	doomed := subscribeTo(t, base1, frameworkInfo("doomed"), codec.JSON)
	doomed.mustCall(&scheduler.Call{Type: scheduler.Call_TEARDOWN.Enum()})
	testutil.Eventually(t, eventTimeout, 10*time.Millisecond, func() bool {
		_, completed := frameworkState(t, base1, doomed.fwID)
		return completed
	}, "teardown recorded")
	flags := getJSON(t, base1+"/master/state")["flags"].(map[string]any)
	if flags["registry"] != "zookeeper" || flags["quorum"] != nil {
		t.Fatalf("flags say registry %v quorum %v, want zookeeper and no quorum", flags["registry"], flags["quorum"])
	}

	stop1()
	testutil.Eventually(t, 20*time.Second, 20*time.Millisecond, m2.isLeader, "second master elected")
	slaves := getJSON(t, base2+"/master/slaves")
	if rec := slaves["recovered_slaves"].([]any); len(rec) != 1 || rec[0].(map[string]any)["id"] != agent.id {
		t.Fatalf("recovered_slaves on the new leader: %v", fmtJSON(rec))
	}
	if _, completed := frameworkState(t, base2, doomed.fwID); !completed {
		t.Fatal("the torn-down framework is not among the new leader's completed frameworks")
	}

	// The framework comes back first; its task's agent has not: silence,
	// whether it names the agent or not.
	info.Id = &mesos.FrameworkID{Value: proto.String(sc.fwID)}
	sc2 := subscribeTo(t, base2, info, codec.JSON)
	sc2.mustCall(&scheduler.Call{Type: scheduler.Call_RECONCILE.Enum(), Reconcile: &scheduler.Call_Reconcile{Tasks: []*scheduler.Call_Reconcile_Task{
		{TaskId: &mesos.TaskID{Value: proto.String("t1")}, AgentId: &mesos.AgentID{Value: proto.String(agent.id)}},
		{TaskId: &mesos.TaskID{Value: proto.String("t1")}},
	}}})
	sc2.quiet(scheduler.Event_UPDATE, 300*time.Millisecond)

	// The agent re-registers (its token still good) with its task.
	call := agentRegister("node1", 5051)
	call.AgentId = &mesos.AgentID{Value: proto.String(agent.id)}
	call.Register.Tasks = []*mesos.Task{runningTask("t1", sc.fwID, agent.id)}
	registerAgentAt(t, base2, call)
	sc2.mustCall(&scheduler.Call{Type: scheduler.Call_RECONCILE.Enum(), Reconcile: &scheduler.Call_Reconcile{}})
	if st := sc2.skipUntil(scheduler.Event_UPDATE).GetUpdate().GetStatus(); st.GetTaskId().GetValue() != "t1" || st.GetState() != mesos.TaskState_TASK_RUNNING {
		t.Fatalf("reconciliation after the agent returned: %v", st)
	}
	again := openSubscribe(t, base2, &mesos.FrameworkInfo{User: proto.String("u"), Name: proto.String("doomed"), Id: &mesos.FrameworkID{Value: proto.String(doomed.fwID)}}, codec.JSON)
	if e := again.next(scheduler.Event_ERROR).GetError(); e.GetMessage() != "Framework has been removed" {
		t.Fatalf("torn-down framework re-subscribing after failover: %v", e)
	}
}

// TestDeposedLeaderStepsDown: when another master has claimed the registry
// (it was elected while this one was cut off), this master's next registry
// write is refused; it answers 503 and Run returns.
func TestDeposedLeaderStepsDown(t *testing.T) {
	zk := zktest.Start(t)
	url := zk.URL("/mesolite/deposed")
	m, err := New(zkConfig(t, url))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, ln) }()
	base := "http://" + ln.Addr().String()
	testutil.Eventually(t, 20*time.Second, 20*time.Millisecond, m.isLeader, "elected")
	registerAgentAt(t, base, agentRegister("node1", 5051))

	// Another master claims the registry.
	sctx, scancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer scancel()
	other, err := zkstore.Open(sctx, zkstore.Config{URL: url, Owner: "usurper"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	snap, err := other.Load(sctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Agents) != 1 {
		t.Fatalf("the usurper reads %d agents, want 1", len(snap.Agents))
	}

	sc := openSubscribe(t, base, frameworkInfo("late"), codec.JSON)
	body := readBody(sc.resp)
	if sc.resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("SUBSCRIBE on a deposed master: %s %q", sc.resp.Status, body)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "deposed") {
			t.Fatalf("Run returned %v, want deposed", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a deposed master keeps running")
	}
	snap, err = other.Load(sctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Frameworks) != 0 {
		t.Fatalf("the deposed master wrote a framework: %+v", snap.Frameworks)
	}
}
