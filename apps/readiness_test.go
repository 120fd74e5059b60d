package apps_test

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/mesolite/mesolite/frameworks/clustertest"
	"github.com/mesolite/mesolite/internal/testutil"
)

// readyApp serves HTTP on its port named http at once, and /ready only
// after readyAfter seconds; the apps service runs its HTTP and TCP health
// checks and its readiness check itself.
func readyApp(id, env string, instances int) string {
	return `{"id":"` + id + `","cmd":"echo ok > index.html && (sleep 5 && echo yes > ready) & exec busybox httpd -f -p 127.0.0.1:$PORT0 -h .",
		"cpus":0.05,"mem":16,"instances":` + string(rune('0'+instances)) + `,"env":{"V":"` + env + `"},
		"portDefinitions":[{"port":0,"name":"http"}],
		"healthChecks":[{"protocol":"HTTP","portIndex":0,"path":"/","intervalSeconds":1,"timeoutSeconds":0,"delaySeconds":0,"gracePeriodSeconds":30},
			{"protocol":"TCP","portIndex":0,"intervalSeconds":1,"timeoutSeconds":0,"delaySeconds":0}],
		"readinessChecks":[{"name":"ready","portName":"http","path":"/ready","intervalSeconds":2,"timeoutSeconds":1,"preserveLastResponse":true}]}`
}

type readinessView struct {
	Name         string
	TaskID       string
	Ready        bool
	LastResponse *struct {
		Status int
		Body   string
	}
}

// TestReadinessAndServiceHealthChecks: HTTP and TCP health checks run by
// the apps service count in tasksHealthy and healthCheckResults; a
// deployment waits for the readiness check (its last response shown by
// embed=apps.readiness), and a rolling restart kills no old instance
// before a new one is ready.
func TestReadinessAndServiceHealthChecks(t *testing.T) {
	c := clustertest.New(t)
	c.AddAgent(t, clustertest.AgentOptions{Hostname: "127.0.0.1"})
	s := startApps(t, c.Addr, t.TempDir())

	s.mustCall(t, http.StatusCreated, "POST", "/v2/apps", readyApp("/rd", "1", 2), nil)
	// Healthy by both checks before ready: the deployment waits, and
	// shows why.
	testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, func() bool {
		var out struct {
			Apps []struct {
				TasksHealthy          int
				Deployments           []struct{ ID string }
				ReadinessCheckResults []readinessView
			}
		}
		s.mustCall(t, http.StatusOK, "GET", "/v2/apps?embed=apps.readiness&embed=apps.counts&embed=apps.deployments", "", &out)
		a := out.Apps[0]
		if len(a.Deployments) != 1 || len(a.ReadinessCheckResults) != 2 {
			return false
		}
		for _, r := range a.ReadinessCheckResults {
			if r.Ready || r.Name != "ready" || r.LastResponse == nil || r.LastResponse.Status != 404 {
				return false
			}
		}
		if a.TasksHealthy != 2 {
			return false
		}
		var deps []struct {
			CurrentActions []struct {
				Action                string
				ReadinessCheckResults []readinessView
			}
		}
		s.mustCall(t, http.StatusOK, "GET", "/v2/deployments", "", &deps)
		return len(deps) == 1 && len(deps[0].CurrentActions) == 1 && len(deps[0].CurrentActions[0].ReadinessCheckResults) == 2
	}, "healthy instances that are not ready yet, with their 404 shown in the app and the deployment")
	a := s.waitSettled(t, "/rd", 2, true)
	for _, task := range a.Tasks {
		if len(task.HealthCheckResults) != 2 || !task.HealthCheckResults[0].Alive || !task.HealthCheckResults[1].Alive {
			t.Fatalf("task %s health %+v", task.ID, task.HealthCheckResults)
		}
	}
	old := taskIDs(a)

	// A restart: the old instances stay until new ones are ready, which
	// takes them 5 s.
	evs := s.events(t, "instance_changed_event", "deployment_success")
	var dep struct{ DeploymentID string }
	s.mustCall(t, http.StatusOK, "PUT", "/v2/apps/rd", readyApp("/rd", "2", 2), &dep)
	var firstNew, firstOldKill time.Time
	for done := false; !done; {
		select {
		case ev := <-evs:
			switch {
			case ev["eventType"] == "deployment_success":
				done = ev["id"] == dep.DeploymentID
			case ev["condition"] == "Provisioned" && firstNew.IsZero():
				firstNew = time.Now()
			case ev["condition"] == "Killing" && slices.Contains(old, ev["instanceId"].(string)) && firstOldKill.IsZero():
				firstOldKill = time.Now()
			}
		case <-time.After(60 * time.Second):
			t.Fatal("the restart did not end")
		}
	}
	if firstNew.IsZero() || firstOldKill.Sub(firstNew) < 4*time.Second {
		t.Fatalf("an old instance was killed %s after the first new one was launched: before it could be ready", firstOldKill.Sub(firstNew))
	}
	s.waitSettled(t, "/rd", 2, true)
}
