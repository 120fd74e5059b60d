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
