package apps

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/frameworks"
)

// recordingMaster is the engine's master, recording kills.
type recordingMaster struct{ kills []string }

func (m *recordingMaster) Kill(taskID, _ string) { m.kills = append(m.kills, taskID) }
func (m *recordingMaster) Revive()               {}

// TestUnreachableLifecycle walks instances through the unreachable
// strategy's deadlines, set back in time rather than waited for:
// unreachable (still counted), inactive (replaced), back (not counted,
// killed once expungeAfterSeconds have passed), and expunged while away.
func TestUnreachableLifecycle(t *testing.T) {
	store, err := frameworks.OpenLocalStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	m := &recordingMaster{}
	e := newEngine(engineConfig{Logger: slog.New(slog.DiscardHandler), ServicePortMin: 10000, ServicePortMax: 20000,
		MaxVersions: 5, KillRetry: time.Hour, TaskLaunchTimeout: time.Hour}, store, newEventBus(1))
	e.master = m
	ctx := context.Background()
	run := func(fn func(tx *txn) error) {
		t.Helper()
		errc := make(chan error, 1)
		e.commit(ctx, []*request{{fn: fn, done: errc}})
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	a := mustChecked(t, `{"id":"/u","cmd":"x","instances":2,"unreachableStrategy":{"inactiveAfterSeconds":60,"expungeAfterSeconds":120}}`)
	var st *appState
	run(func(tx *txn) error {
		if _, err := e.create(tx, a); err != nil {
			return err
		}
		st = e.apps["/u"]
		for _, id := range []string{"u.1", "u.2"} {
			i := &Instance{TaskID: id, AppID: "/u", Condition: Running, ConfigVersion: a.configVersion(), LaunchedAt: tx.now, StartedAt: tx.now}
			st.instances[id], e.byTask[id] = i, i
		}
		return nil
	})
	update := func(id string, s mesos.TaskState) {
		run(func(tx *txn) error {
			e.update(tx, &mesos.TaskStatus{TaskId: &mesos.TaskID{Value: proto.String(id)}, State: s.Enum()})
			return nil
		})
	}
	tick := func() { run(e.tick) }
	ago := func(id string, d time.Duration) { e.byTask[id].UnreachableSince = time.Now().Add(-d) }

	update("u.1", mesos.TaskState_TASK_UNREACHABLE)
	update("u.2", mesos.TaskState_TASK_UNREACHABLE)
	tick()
	if c := e.byTask["u.1"].Condition; c != Unreachable || st.toLaunch != 0 {
		t.Fatalf("unreachable for a moment: %s, %d to launch", c, st.toLaunch)
	}
	ago("u.1", 61*time.Second)
	ago("u.2", 61*time.Second)
	tick()
	if c := e.byTask["u.1"].Condition; c != UnreachableInactive || !e.byTask["u.1"].Replaced || st.toLaunch != 2 {
		t.Fatalf("past inactiveAfterSeconds: %s, %d to launch", c, st.toLaunch)
	}
	// u.1 comes back: it runs beside its replacement, not counted, until
	// expungeAfterSeconds.
	update("u.1", mesos.TaskState_TASK_RUNNING)
	tick()
	if c := e.byTask["u.1"].Condition; c != Running || st.toLaunch != 2 || len(m.kills) != 0 {
		t.Fatalf("back before expungeAfterSeconds: %s, %d to launch, kills %v", c, st.toLaunch, m.kills)
	}
	ago("u.1", 121*time.Second)
	ago("u.2", 121*time.Second)
	tick()
	if c := e.byTask["u.1"].Condition; c != Killing {
		t.Fatalf("back past expungeAfterSeconds: %s", c)
	}
	if e.byTask["u.2"] != nil || !slices.Contains(m.kills, "u.2") || !slices.Contains(m.kills, "u.1") {
		t.Fatalf("u.2 not expunged: kills %v", m.kills)
	}
	// The expunged instance is gone from the store too.
	if _, err := store.Get(ctx, bucketInstances, "u.2"); err == nil {
		t.Fatal("an expunged instance is still stored")
	}
	// A task of no instance that reports running is killed.
	m.kills = nil
	update("u.2", mesos.TaskState_TASK_RUNNING)
	if !slices.Equal(m.kills, []string{"u.2"}) {
		t.Fatalf("expunged task back: kills %v", m.kills)
	}

	// "disabled": waited for, never replaced.
	b := mustChecked(t, `{"id":"/d","cmd":"x","instances":1,"unreachableStrategy":"disabled"}`)
	run(func(tx *txn) error {
		if _, err := e.create(tx, b); err != nil {
			return err
		}
		i := &Instance{TaskID: "d.1", AppID: "/d", Condition: Running, ConfigVersion: b.configVersion(), LaunchedAt: tx.now}
		e.apps["/d"].instances["d.1"], e.byTask["d.1"] = i, i
		return nil
	})
	update("d.1", mesos.TaskState_TASK_UNREACHABLE)
	ago("d.1", 1000*time.Hour)
	tick()
	if c := e.byTask["d.1"].Condition; c != Unreachable || e.apps["/d"].toLaunch != 0 {
		t.Fatalf("disabled: %s, %d to launch", c, e.apps["/d"].toLaunch)
	}
	var raw map[string]any
	if err := json.Unmarshal(b.UnreachableStrategy, &raw); err == nil {
		t.Fatalf("disabled kept as %s", b.UnreachableStrategy)
	}
}

// TestServiceHealthChecks: the results of the checks the service runs
// itself make an instance's health (with the executor's, for the
// Mesos-native one); failures before the first success within the grace
// period do not count; maxConsecutiveFailures failures kill it.
func TestServiceHealthChecks(t *testing.T) {
	store, err := frameworks.OpenLocalStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	m := &recordingMaster{}
	e := newEngine(engineConfig{Logger: slog.New(slog.DiscardHandler), ServicePortMin: 10000, ServicePortMax: 20000,
		MaxVersions: 5, KillRetry: time.Hour, TaskLaunchTimeout: time.Hour, Tick: time.Hour}, store, newEventBus(1))
	e.master = m
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.run(ctx) }()
	defer func() { cancel(); <-done }()

	a := mustChecked(t, `{"id":"/h","cmd":"x","instances":1,"healthChecks":[
		{"protocol":"HTTP","gracePeriodSeconds":0,"maxConsecutiveFailures":2},
		{"protocol":"TCP","gracePeriodSeconds":300,"maxConsecutiveFailures":1},
		{"protocol":"MESOS_TCP"}]}`)
	var i *Instance
	if err := e.do(ctx, func(tx *txn) error {
		if _, err := e.create(tx, a); err != nil {
			return err
		}
		i = &Instance{TaskID: "h.1", AppID: "/h", Condition: Running, ConfigVersion: a.configVersion(), LaunchedAt: tx.now, StartedAt: tx.now,
			Ports: []uint64{31000}}
		e.apps["/h"].instances["h.1"], e.byTask["h.1"] = i, i
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	health := func() string {
		var out string
		e.do(ctx, func(tx *txn) error {
			switch h := i.health(a); {
			case h == nil:
				out = "unknown"
			case *h:
				out = "healthy"
			default:
				out = "unhealthy"
			}
			return nil
		})
		return out
	}
	boom := errors.New("connection refused")
	// The TCP check fails within its grace period: not counted.
	e.healthResult(ctx, "h.1", 1, boom)
	e.healthResult(ctx, "h.1", 0, nil)
	if got := health(); got != "unknown" {
		t.Fatalf("with the TCP check in its grace period and no Mesos result: %s", got)
	}
	e.healthResult(ctx, "h.1", 1, nil)
	yes := true
	e.do(ctx, func(tx *txn) error { i.Healthy = &yes; return nil })
	if got := health(); got != "healthy" {
		t.Fatalf("all three checks passing: %s", got)
	}
	e.healthResult(ctx, "h.1", 0, boom)
	if got := health(); got != "unhealthy" || len(m.kills) != 0 {
		t.Fatalf("one HTTP failure: %s, kills %v", got, m.kills)
	}
	e.healthResult(ctx, "h.1", 0, boom)
	e.do(ctx, func(tx *txn) error { return nil })
	if !slices.Equal(m.kills, []string{"h.1"}) {
		t.Fatalf("two HTTP failures (maxConsecutiveFailures 2): kills %v", m.kills)
	}
}
