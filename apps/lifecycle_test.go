package apps_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/frameworks/clustertest"
	"github.com/mesolite/mesolite/internal/testutil"
)

// TestAppLifecycle drives one app through its life on a real cluster with
// real processes: created with 3 instances serving HTTP on $PORT0 and
// health-checked by the agent; a killed instance comes back; scaled down
// and up; rolled to a new command without ever having fewer healthy
// instances than minimumHealthCapacity says; deleted.
func TestAppLifecycle(t *testing.T) {
	c := clustertest.New(t)
	c.AddAgent(t, clustertest.AgentOptions{Hostname: "127.0.0.1"})
	s := startApps(t, c.Addr, t.TempDir())

	var created struct {
		ID          string `json:"id"`
		Ports       []int  `json:"ports"`
		Deployments []struct{ ID string }
	}
	s.mustCall(t, http.StatusCreated, "POST", "/v2/apps", webApp("/prod/web", 3, ""), &created)
	if created.ID != "/prod/web" || len(created.Ports) != 1 || created.Ports[0] != 10000 || len(created.Deployments) != 1 {
		t.Fatalf("created %+v", created)
	}
	a := s.waitSettled(t, "/prod/web", 3, true)
	hosts := map[string]bool{}
	for _, task := range a.Tasks {
		if !strings.HasPrefix(task.ID, "prod_web.") || len(task.Ports) != 1 || task.Ports[0] < 31000 || task.Ports[0] > 31999 ||
			!slices.Equal(task.ServicePorts, []int{10000}) || task.Host != "127.0.0.1" {
			t.Fatalf("task %+v", task)
		}
		// $PORT0 is the port the task got: it serves there.
		url := fmt.Sprintf("http://127.0.0.1:%d/", task.Ports[0])
		if code, body := get(t, url); code != 200 || body != "ok" {
			t.Fatalf("GET %s: %d %s", url, code, body)
		}
		hosts[fmt.Sprint(task.Ports[0])] = true
	}
	if len(hosts) != 3 {
		t.Fatalf("ports not distinct: %v", a.Tasks)
	}

	// A killed instance is replaced.
	before := taskIDs(a)
	var killed struct{ Task taskView }
	s.mustCall(t, http.StatusOK, "DELETE", "/v2/apps/prod/web/tasks/"+before[0], "", &killed)
	if killed.Task.ID != before[0] {
		t.Fatalf("killed %+v", killed)
	}
	testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, func() bool {
		ids := taskIDs(s.app(t, "/prod/web"))
		return len(ids) == 3 && !slices.Contains(ids, before[0]) && s.settled(t, "/prod/web", 3, true)
	}, "the killed instance replaced")

	// Scale down, then up.
	var dep struct{ DeploymentID, Version string }
	s.mustCall(t, http.StatusOK, "PUT", "/v2/apps/prod/web", `{"instances":1}`, &dep)
	if dep.DeploymentID == "" {
		t.Fatalf("PUT answered %+v", dep)
	}
	s.waitSettled(t, "/prod/web", 1, true)
	s.mustCall(t, http.StatusOK, "PATCH", "/v2/apps/prod/web", `{"instances":4}`, nil)
	a = s.waitSettled(t, "/prod/web", 4, true)
	oldVersion := a.Tasks[0].Version
	oldIDs := taskIDs(a)

	// A new command rolls the instances: never fewer healthy ones than
	// minimumHealthCapacity x 4 = 2.
	evs := s.events(t, "instance_changed_event", "health_status_changed_event", "deployment_success")
	s.mustCall(t, http.StatusOK, "PUT", "/v2/apps/prod/web", webApp("/prod/web", 4,
		`,"env":{"V":"2"},"upgradeStrategy":{"minimumHealthCapacity":0.5,"maximumOverCapacity":0}`), &dep)
	healthy := map[string]bool{}
	for _, id := range oldIDs {
		healthy[id] = true
	}
	var seq []int
	deadline := time.After(60 * time.Second)
	for done := false; !done; {
		select {
		case ev := <-evs:
			switch ev["eventType"] {
			case "deployment_success":
				done = ev["id"] == dep.DeploymentID
			case "health_status_changed_event":
				healthy[ev["taskId"].(string)] = ev["alive"].(bool)
			case "instance_changed_event":
				if cond := ev["condition"]; cond != "Running" && cond != "Staging" && cond != "Starting" && cond != "Provisioned" {
					healthy[ev["instanceId"].(string)] = false
				}
			}
			n := 0
			for _, ok := range healthy {
				if ok {
					n++
				}
			}
			if len(seq) == 0 || seq[len(seq)-1] != n {
				seq = append(seq, n)
			}
		case <-deadline:
			t.Fatalf("the rolling restart did not end; healthy counts so far %v", seq)
		}
	}
	t.Logf("healthy instances during the rolling restart: %v", seq)
	for _, n := range seq {
		if n < 2 {
			t.Fatalf("healthy instances went down to %d (< 2): %v", n, seq)
		}
	}
	if seq[len(seq)-1] != 4 || slices.Max(seq) > 4 {
		t.Fatalf("healthy counts %v: want at most 4 and 4 at the end", seq)
	}
	a = s.waitSettled(t, "/prod/web", 4, true)
	for _, task := range a.Tasks {
		if task.Version == oldVersion || slices.Contains(oldIDs, task.ID) {
			t.Fatalf("task %s of the old version after the restart", task.ID)
		}
	}

	// Delete: the instances stop and the app is gone.
	fw := s.svc.FrameworkID()
	s.mustCall(t, http.StatusOK, "DELETE", "/v2/apps/prod/web", "", nil)
	if code := s.call(t, "GET", "/v2/apps/prod/web", "", nil); code != http.StatusNotFound {
		t.Fatalf("GET after DELETE: %d", code)
	}
	testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, func() bool {
		return len(c.RunningTasks(t, fw)) == 0
	}, "every instance stopped")
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() bool {
		var list struct{ Apps []appView }
		s.mustCall(t, http.StatusOK, "GET", "/v2/apps", "", &list)
		var deps []any
		s.mustCall(t, http.StatusOK, "GET", "/v2/deployments", "", &deps)
		return len(list.Apps) == 0 && len(deps) == 0
	}, "no app and no deployment left")
}
