package apps_test

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/mesolite/mesolite/frameworks/clustertest"
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
	fw := s1.svc.FrameworkID()
	var versions struct{ Versions []string }
	s1.mustCall(t, http.StatusOK, "GET", "/v2/apps/sleeper/versions", "", &versions)
	s1.stop()

	if got := c.RunningTasks(t, fw); len(got) != 2 {
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
	if !slices.Equal(running, before) {
		t.Fatalf("the master runs %v, want %v", running, before)
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
