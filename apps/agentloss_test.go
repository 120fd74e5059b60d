package apps_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/mesolite/mesolite/frameworks/clustertest"
	"github.com/mesolite/mesolite/internal/testutil"
	"github.com/mesolite/mesolite/master"
)

// TestAgentLostInstancesMove: when an agent goes away for good, the
// master reports its tasks lost and the app's instances are started on the
// agent that is left.
func TestAgentLostInstancesMove(t *testing.T) {
	c := clustertest.New(t, func(cfg *master.Config) {
		cfg.AgentPingTimeout, cfg.MaxAgentPingTimeouts = 200*time.Millisecond, 3
	})
	first := c.AddAgent(t, clustertest.AgentOptions{Hostname: "first"})
	s := startApps(t, c.Addr, t.TempDir())
	s.mustCall(t, http.StatusCreated, "POST", "/v2/apps",
		`{"id":"/mover","cmd":"sleep 600","cpus":0.1,"mem":16,"instances":2}`, nil)
	a := s.waitSettled(t, "/mover", 2, false)
	for _, task := range a.Tasks {
		if task.Host != "first" {
			t.Fatalf("task %+v not on the only agent", task)
		}
	}
	c.AddAgent(t, clustertest.AgentOptions{Hostname: "second"})
	first.Stop()
	testutil.Eventually(t, 60*time.Second, 100*time.Millisecond, func() bool {
		a := s.app(t, "/mover")
		if len(a.Tasks) != 2 || a.TasksRunning != 2 {
			return false
		}
		for _, task := range a.Tasks {
			if task.Host != "second" {
				return false
			}
		}
		return true
	}, "both instances running on the second agent")
}

// TestUnreachableStrategy: the framework is PARTITION_AWARE, so a lost
// agent's tasks are TASK_UNREACHABLE. An app with inactiveAfterSeconds
// keeps its unreachable instance (shown Unreachable, still counted) until
// then, and only then starts a replacement; an app whose strategy is
// "disabled" waits for its instance.
func TestUnreachableStrategy(t *testing.T) {
	c := clustertest.New(t, func(cfg *master.Config) {
		cfg.AgentPingTimeout, cfg.MaxAgentPingTimeouts = 200*time.Millisecond, 3
	})
	first := c.AddAgent(t, clustertest.AgentOptions{Hostname: "first"})
	s := startApps(t, c.Addr, t.TempDir())
	s.mustCall(t, http.StatusCreated, "POST", "/v2/apps",
		`{"id":"/patient","cmd":"sleep 600","cpus":0.1,"mem":16,"instances":1,"unreachableStrategy":{"inactiveAfterSeconds":4,"expungeAfterSeconds":600}}`, nil)
	s.mustCall(t, http.StatusCreated, "POST", "/v2/apps",
		`{"id":"/waiter","cmd":"sleep 600","cpus":0.1,"mem":16,"instances":1,"unreachableStrategy":"disabled"}`, nil)
	s.waitSettled(t, "/patient", 1, false)
	s.waitSettled(t, "/waiter", 1, false)
	evs := s.events(t, "instance_changed_event")
	c.AddAgent(t, clustertest.AgentOptions{Hostname: "second"})
	first.Stop()

	var unreachableAt, inactiveAt time.Time
	for inactiveAt.IsZero() {
		select {
		case ev := <-evs:
			if ev["runSpecId"] != "/patient" {
				continue
			}
			switch ev["condition"] {
			case "Unreachable":
				unreachableAt = time.Now()
				a := s.app(t, "/patient")
				if len(a.Tasks) != 1 || a.Tasks[0].State != "TASK_UNREACHABLE" {
					t.Fatalf("the unreachable instance is not shown as such: %+v", a.Tasks)
				}
			case "UnreachableInactive":
				inactiveAt = time.Now()
			case "Provisioned":
				if inactiveAt.IsZero() {
					t.Fatal("a replacement before inactiveAfterSeconds")
				}
			}
		case <-time.After(60 * time.Second):
			t.Fatal("no unreachable instance became inactive")
		}
	}
	if unreachableAt.IsZero() || inactiveAt.Sub(unreachableAt) < 3500*time.Millisecond {
		t.Fatalf("inactive %s after unreachable, want 4 s", inactiveAt.Sub(unreachableAt))
	}
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, func() bool {
		a := s.app(t, "/patient")
		for _, task := range a.Tasks {
			if task.Host == "second" && task.State == "TASK_RUNNING" {
				return true
			}
		}
		return false
	}, "a replacement running on the second agent")
	a := s.app(t, "/waiter")
	if len(a.Tasks) != 1 || a.Tasks[0].Host != "first" || a.Tasks[0].State != "TASK_UNREACHABLE" {
		t.Fatalf("the disabled strategy's instance: %+v", a.Tasks)
	}
}
