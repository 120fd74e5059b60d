package zkstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/detector/zktest"
	"github.com/mesolite/mesolite/master/store"
	"google.golang.org/protobuf/proto"
)

func open(t *testing.T, url, owner string) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Open(ctx, Config{URL: url, SessionTimeout: 4 * time.Second, Owner: owner})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func load(t *testing.T, s *Store) *store.Snapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	snap, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func apply(s *Store, ops ...store.Op) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return s.Apply(ctx, ops)
}

func task(id string, state mesos.TaskState) store.CompletedTask {
	return store.CompletedTask{
		Task: &mesos.Task{
			Name: proto.String(id), TaskId: &mesos.TaskID{Value: proto.String(id)},
			FrameworkId: &mesos.FrameworkID{Value: proto.String("fw")}, AgentId: &mesos.AgentID{Value: proto.String("a")},
			State: state.Enum(),
		},
		CompletedAt: time.Unix(1_700_000_000, 0).UTC(),
	}
}

func TestRoundTripAndCompareAndSet(t *testing.T) {
	zk := zktest.Start(t)
	url := zk.URL("/mesolite/reg")
	now := time.Unix(1_700_000_000, 0).UTC()
	info := &mesos.AgentInfo{Hostname: proto.String("node1"), Port: proto.Int32(5051)}
	fwInfo := &mesos.FrameworkInfo{User: proto.String("u"), Name: proto.String("n"), FailoverTimeout: proto.Float64(60)}

	a := open(t, url, "master-a")
	if err := apply(a, store.PutAgent{Agent: store.Agent{ID: "x"}}); err == nil {
		t.Fatal("Apply before Load (no claim) succeeded")
	}
	if snap := load(t, a); len(snap.Agents)+len(snap.Frameworks)+len(snap.Tasks) != 0 {
		t.Fatalf("fresh registry not empty: %+v", snap)
	}
	err := apply(a,
		store.PutAgent{Agent: store.Agent{ID: "m-S0", Info: info, Address: "10.0.0.1:5051", RegisteredAt: now, TokenHash: []byte{1, 2}}},
		store.PutAgent{Agent: store.Agent{ID: "m-S1", Info: info, Address: "10.0.0.2:5051", RegisteredAt: now}},
		store.RemoveAgent{ID: "m-S1"},
		store.PutAgent{Agent: store.Agent{ID: "weird/../id %", Info: info, Address: "10.0.0.3:5051", RegisteredAt: now, UnreachableAt: now}},
		store.PutFramework{Framework: store.Framework{ID: "m-0000", Info: fwInfo, RegisteredAt: now, Principal: "p"}},
		store.PutTask{FrameworkID: "m-0000", Task: task("t1", mesos.TaskState_TASK_FINISHED)},
		store.PutTask{FrameworkID: "m-0000", Task: task("t2", mesos.TaskState_TASK_FAILED)},
		store.RemoveTask{FrameworkID: "m-0000", TaskID: "t1"},
		store.PutFramework{Framework: store.Framework{ID: "m-0001", Info: fwInfo, RegisteredAt: now, Completed: true, CompletedAt: now}},
		store.PutTask{FrameworkID: "m-0001", Task: task("t3", mesos.TaskState_TASK_KILLED)},
	)
	if err != nil {
		t.Fatal(err)
	}
	// Idempotent puts: the second write of a record replaces it.
	if err := apply(a, store.PutAgent{Agent: store.Agent{ID: "m-S0", Info: info, Address: "10.0.0.9:5051", RegisteredAt: now, TokenHash: []byte{1, 2}}}); err != nil {
		t.Fatal(err)
	}

	// A second master is elected and claims the registry: it reads what
	// the first wrote.
	b := open(t, url, "master-b")
	snap := load(t, b)
	if len(snap.Agents) != 2 || snap.Agents[0].ID != "m-S0" || snap.Agents[0].Address != "10.0.0.9:5051" ||
		string(snap.Agents[0].TokenHash) != "\x01\x02" || !proto.Equal(snap.Agents[0].Info, info) {
		t.Fatalf("agents %+v", snap.Agents)
	}
	if snap.Agents[1].ID != "weird/../id %" || !snap.Agents[1].UnreachableAt.Equal(now) {
		t.Fatalf("escaped agent %+v", snap.Agents[1])
	}
	if len(snap.Frameworks) != 2 || snap.Frameworks[0].Principal != "p" || !snap.Frameworks[1].Completed || !proto.Equal(snap.Frameworks[0].Info, fwInfo) {
		t.Fatalf("frameworks %+v", snap.Frameworks)
	}
	if ts := snap.Tasks["m-0000"]; len(ts) != 1 || ts[0].Task.GetTaskId().GetValue() != "t2" || ts[0].Task.GetState() != mesos.TaskState_TASK_FAILED {
		t.Fatalf("tasks %+v", snap.Tasks)
	}

	// The deposed master's write is refused, and changes nothing.
	err = apply(a, store.RemoveAgent{ID: "m-S0"}, store.PutAgent{Agent: store.Agent{ID: "ghost", Info: info, RegisteredAt: now}})
	if !errors.Is(err, ErrDeposed) {
		t.Fatalf("deposed leader's write: %v, want ErrDeposed", err)
	}
	// The new leader writes on.
	if err := apply(b, store.RemoveFramework{ID: "m-0001"}, store.RemoveTasks{FrameworkID: "m-0000"}); err != nil {
		t.Fatal(err)
	}
	c := open(t, url, "master-c")
	snap = load(t, c)
	if len(snap.Agents) != 2 || snap.Agents[0].ID != "m-S0" {
		t.Fatalf("agents after the refused write: %+v", snap.Agents)
	}
	if len(snap.Frameworks) != 1 || len(snap.Tasks) != 0 {
		t.Fatalf("after removals: frameworks %+v tasks %+v", snap.Frameworks, snap.Tasks)
	}
	if err := apply(b, store.RemoveAgent{ID: "m-S0"}); !errors.Is(err, ErrDeposed) {
		t.Fatalf("second leader's write after a third claimed: %v", err)
	}
}

func TestManyOpsSplitIntoTransactions(t *testing.T) {
	zk := zktest.Start(t)
	s := open(t, zk.URL("/mesolite/many"), "m")
	load(t, s)
	var ops []store.Op
	big := strings.Repeat("x", 8<<10)
	for i := range 1500 {
		ct := task(fmt.Sprintf("t%04d", i), mesos.TaskState_TASK_FINISHED)
		ct.Task.Name = proto.String(big)
		ops = append(ops, store.PutTask{FrameworkID: "fw", Task: ct})
	}
	if err := apply(s, ops...); err != nil {
		t.Fatal(err)
	}
	snap := load(t, open(t, zk.URL("/mesolite/many"), "m2"))
	if n := len(snap.Tasks["fw"]); n != 1500 {
		t.Fatalf("%d tasks read back, want 1500", n)
	}
	huge := task("huge", mesos.TaskState_TASK_FINISHED)
	huge.Task.Name = proto.String(strings.Repeat("x", 2<<20))
	if err := apply(s, store.PutTask{FrameworkID: "fw", Task: huge}); err == nil {
		t.Fatal("a record over the znode limit was accepted")
	}
}

func TestEscape(t *testing.T) {
	for _, id := range []string{"abc", "a.b-c_d", ".", "..", "a/b", "%41", "ünï", "a b"} {
		t.Run(id, func(t *testing.T) {
			n := escape(id)
			if strings.Contains(n, "/") || n == "." || n == ".." {
				t.Fatalf("escape(%q) = %q is not a znode name", id, n)
			}
			if got := unescape(n); got != id {
				t.Fatalf("unescape(escape(%q)) = %q", id, got)
			}
		})
	}
}

// TestSettingsAndReservations: the ZooKeeper registry keeps settings and
// dynamic reservations as the local one does, for the next leader.
func TestSettingsAndReservations(t *testing.T) {
	zk := zktest.Start(t)
	url := zk.URL("/mesolite/reg")
	s := open(t, url, "m1")
	load(t, s)
	reserved := &mesos.Resource{Name: proto.String("mem"), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(64)},
		Reservations: []*mesos.Resource_ReservationInfo{{Type: mesos.Resource_ReservationInfo_DYNAMIC.Enum(), Role: proto.String("db")}}}
	if err := apply(s, store.PutSetting{Key: "weights", Value: []byte(`{"db":3}`)}, store.PutSetting{Key: "maintenance", Value: []byte(`{}`)},
		store.PutAgent{Agent: store.Agent{ID: "a1", Info: &mesos.AgentInfo{Hostname: proto.String("h")}, Reserved: []*mesos.Resource{reserved}}}); err != nil {
		t.Fatal(err)
	}
	if err := apply(s, store.PutSetting{Key: "maintenance"}, store.PutSetting{Key: "weights", Value: []byte(`{"db":4}`)}); err != nil {
		t.Fatal(err)
	}
	if err := apply(s, store.PutSetting{Key: "../escape", Value: []byte("x")}); err == nil {
		t.Fatal("a setting key with a path in it was accepted")
	}
	next := open(t, url, "m2")
	snap := load(t, next)
	if len(snap.Settings) != 1 || string(snap.Settings["weights"]) != `{"db":4}` {
		t.Fatalf("settings %q", snap.Settings)
	}
	if len(snap.Agents) != 1 || len(snap.Agents[0].Reserved) != 1 || !proto.Equal(snap.Agents[0].Reserved[0], reserved) {
		t.Fatalf("agents %v", snap.Agents)
	}
}
