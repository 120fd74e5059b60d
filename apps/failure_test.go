package apps_test

import (
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/mesolite/mesolite/frameworks/clustertest"
	"github.com/mesolite/mesolite/internal/testutil"
	"github.com/mesolite/mesolite/sandbox"
)

// TestUnhealthyInstanceReplaced: an instance whose health check fails
// maxConsecutiveFailures times is killed by its executor and replaced; the
// app keeps its healthy count, and the failure is its lastTaskFailure.
func TestUnhealthyInstanceReplaced(t *testing.T) {
	c := clustertest.New(t)
	agent := c.AddAgent(t, clustertest.AgentOptions{Hostname: "127.0.0.1"})
	s := startApps(t, c.Addr, t.TempDir())
	s.mustCall(t, http.StatusCreated, "POST", "/v2/apps", webApp("/hc", 2, ""), nil)
	a := s.waitSettled(t, "/hc", 2, true)
	sick := a.Tasks[0]
	// Its page gone, the check gets 404.
	latest := sandbox.Layout{WorkDir: agent.WorkDir}.LatestLink(sick.SlaveID, s.svc.FrameworkID(), sick.ID)
	if err := os.Remove(filepath.Join(latest, "index.html")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 60*time.Second, 100*time.Millisecond, func() bool {
		ids := taskIDs(s.app(t, "/hc"))
		return !slices.Contains(ids, sick.ID) && s.settled(t, "/hc", 2, true)
	}, "the unhealthy instance replaced")
	var out struct {
		App struct {
			LastTaskFailure struct{ TaskID, State string }
		}
	}
	s.mustCall(t, http.StatusOK, "GET", "/v2/apps/hc?embed=app.lastTaskFailure", "", &out)
	if f := out.App.LastTaskFailure; f.TaskID != sick.ID || f.State != "TASK_KILLED" {
		t.Fatalf("lastTaskFailure %+v", f)
	}
}

// TestCrashLoopBacksOff: an app whose command fails at once is launched
// again with a growing delay, shown in /v2/queue; DELETE of the delay
// launches it at once.
func TestCrashLoopBacksOff(t *testing.T) {
	c := clustertest.New(t)
	c.AddAgent(t, clustertest.AgentOptions{Hostname: "127.0.0.1"})
	s := startApps(t, c.Addr, t.TempDir())
	s.mustCall(t, http.StatusCreated, "POST", "/v2/apps",
		`{"id":"/crash","cmd":"exit 3","cpus":0.1,"mem":16,"instances":1,"backoffSeconds":2,"backoffFactor":10,"maxLaunchDelaySeconds":60}`, nil)
	type queue struct {
		Queue []struct {
			Count int
			Delay struct {
				TimeLeftSeconds int
				Overdue         bool
			}
		}
	}
	// The second failure sets a delay of 2 x 10 = 20 s.
	testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, func() bool {
		var q queue
		s.mustCall(t, http.StatusOK, "GET", "/v2/queue", "", &q)
		return len(q.Queue) == 1 && q.Queue[0].Delay.TimeLeftSeconds > 5
	}, "a long launch delay after failures")
	var out struct {
		App struct {
			LastTaskFailure struct{ State, TaskID string }
		}
	}
	s.mustCall(t, http.StatusOK, "GET", "/v2/apps/crash", "", &out)
	if out.App.LastTaskFailure.State != "TASK_FAILED" {
		t.Fatalf("lastTaskFailure %+v", out.App.LastTaskFailure)
	}
	failures := func() string {
		s.mustCall(t, http.StatusOK, "GET", "/v2/apps/crash", "", &out)
		return out.App.LastTaskFailure.TaskID
	}
	before := failures()
	time.Sleep(time.Second)
	if failures() != before {
		t.Fatal("launched again within its delay")
	}
	if code, body := s.raw(t, "DELETE", "/v2/queue/crash/delay", "", ""); code != http.StatusNoContent {
		t.Fatalf("DELETE delay: %d %s", code, body)
	}
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() bool {
		var q queue
		s.mustCall(t, http.StatusOK, "GET", "/v2/queue", "", &q)
		return len(q.Queue) == 1 && q.Queue[0].Delay.TimeLeftSeconds > 0 && q.Queue[0].Delay.TimeLeftSeconds <= 2
	}, "launched again at once, failing again with the first delay")
}
