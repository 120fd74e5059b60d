package apps_test

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/mesolite/mesolite/frameworks/clustertest"
	"github.com/mesolite/mesolite/internal/testutil"
)

// TestRestartAdoptsInstances: the apps service stopped and started again
// on the same work_dir fails over to its framework id and keeps the
// instances that run: none is killed, none launched, and the app, its
// versions and a deployment still running carry on.
func TestRestartAdoptsInstances(t *testing.T) {
	c := clustertest.New(t)
	c.AddAgent(t, clustertest.AgentOptions{Hostname: "127.0.0.1"})
	dir := t.TempDir()
	s1 := startApps(t, c.Addr, dir)
	s1.mustCall(t, http.StatusCreated, "POST", "/v2/apps", `{"id":"/sleeper","cmd":"sleep 600","cpus":0.1,"mem":32,"instances":2}`, nil)
	a := s1.waitSettled(t, "/sleeper", 2, false)
	before := taskIDs(a)
	// An app whose deployment cannot end: two instances, one agent, one
	// per host. It must still be running after the restart.
	var stuck struct{ Deployments []struct{ ID string } }
	s1.mustCall(t, http.StatusCreated, "POST", "/v2/apps",
		`{"id":"/stuck","cmd":"sleep 600","cpus":0.1,"mem":32,"instances":2,"constraints":[["hostname","UNIQUE"]]}`, &stuck)
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() bool { return s1.app(t, "/stuck").TasksRunning == 1 }, "one /stuck instance running")
	stuckTask := taskIDs(s1.app(t, "/stuck"))
	fw := s1.svc.FrameworkID()
	var versions struct{ Versions []string }
	s1.mustCall(t, http.StatusOK, "GET", "/v2/apps/sleeper/versions", "", &versions)
	s1.stop()

	if got := c.RunningTasks(t, fw); len(got) != 3 {
		t.Fatalf("the instances did not outlive the framework: %v", got)
	}
	s2 := startApps(t, c.Addr, dir)
	if s2.svc.FrameworkID() != fw {
		t.Fatalf("framework id %s after the restart, want %s", s2.svc.FrameworkID(), fw)
	}
	// Long enough for reconciliation and a few rounds of the engine.
	time.Sleep(2 * time.Second)
	a = s2.waitSettled(t, "/sleeper", 2, false)
	if after := taskIDs(a); !slices.Equal(after, before) {
		t.Fatalf("tasks %v after the restart, want %v", after, before)
	}
	running := c.RunningTasks(t, fw)
	slices.Sort(running)
	if want := slices.Sorted(slices.Values(append(slices.Clone(before), stuckTask...))); !slices.Equal(running, want) {
		t.Fatalf("the master runs %v, want %v", running, want)
	}
	st := s2.app(t, "/stuck")
	if len(st.Deployments) != 1 || st.Deployments[0].ID != stuck.Deployments[0].ID || !slices.Equal(taskIDs(st), stuckTask) {
		t.Fatalf("/stuck after the restart: deployments %v, tasks %v; want %v and %v", st.Deployments, taskIDs(st), stuck.Deployments, stuckTask)
	}
	if f := c.Framework(t, fw); f == nil || !f.Active {
		t.Fatal("the framework is not active again")
	}
	var again struct{ Versions []string }
	s2.mustCall(t, http.StatusOK, "GET", "/v2/apps/sleeper/versions", "", &again)
	if !slices.Equal(again.Versions, versions.Versions) {
		t.Fatalf("versions %v, want %v", again.Versions, versions.Versions)
	}
	// The engine still acts on them: a scale down kills one of them.
	s2.mustCall(t, http.StatusOK, "PUT", "/v2/apps/sleeper", `{"instances":1}`, nil)
	s2.waitSettled(t, "/sleeper", 1, false)
}
