package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/mesolite/mesolite/internal/testutil"
)

// stateJSON is a /master/state in Mesos's shape: an active framework with a
// running and a finished task, a completed framework with a task, and one
// agent; agentAddr is the agent's address in its pid.
func stateJSON(agentAddr string) string {
	return `{
  "frameworks": [{
    "id": "fw-1", "name": "mesolite-run", "active": true,
    "tasks": [{"id": "web.1", "name": "web", "framework_id": "fw-1", "executor_id": "", "slave_id": "agent-1",
               "state": "TASK_RUNNING", "statuses": [{"state": "TASK_RUNNING", "timestamp": 199}, {"state": "TASK_RUNNING", "timestamp": 200, "healthy": true}]}],
    "completed_tasks": [{"id": "hi.1", "name": "hi", "framework_id": "fw-1", "executor_id": "", "slave_id": "agent-1",
               "state": "TASK_FINISHED", "statuses": [{"state": "TASK_RUNNING", "timestamp": 100}, {"state": "TASK_FINISHED", "timestamp": 101}]}],
    "unreachable_tasks": []
  }],
  "completed_frameworks": [{
    "id": "fw-0", "name": "old", "active": false, "tasks": [],
    "completed_tasks": [{"id": "custom", "name": "c", "framework_id": "fw-0", "executor_id": "my-exec", "slave_id": "agent-gone",
               "state": "TASK_KILLED", "statuses": [{"state": "TASK_KILLED", "timestamp": 50}]}]
  }],
  "slaves": [{"id": "agent-1", "pid": "slave(1)@` + agentAddr + `", "hostname": "node-1", "port": 5051, "active": true}]
}`
}

func fakeStateMaster(t *testing.T, agentAddr string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/master/state" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(stateJSON(agentAddr)))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestTasksTable(t *testing.T) {
	srv := fakeStateMaster(t, "127.0.0.1:5051")
	// A follower redirects to the leader the way Mesos does.
	follower := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "//"+strings.TrimPrefix(srv.URL, "http://"))
		w.WriteHeader(http.StatusTemporaryRedirect)
	}))
	defer follower.Close()

	var out, errOut bytes.Buffer
	if code := Tasks(context.Background(), []string{"--master=" + follower.URL}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := [][]string{
		{"ID", "NAME", "STATE", "FRAMEWORK", "AGENT"},
		{"custom", "c", "TASK_KILLED", "old", "agent-gone"},
		{"hi.1", "hi", "TASK_FINISHED", "mesolite-run", "node-1"},
		{"web.1", "web", "TASK_RUNNING", "(healthy)", "mesolite-run", "node-1"},
	}
	if len(lines) != len(want) {
		t.Fatalf("table:\n%s", out.String())
	}
	for i, w := range want {
		if got := strings.Fields(lines[i]); strings.Join(got, " ") != strings.Join(w, " ") {
			t.Errorf("line %d: %q, want %q", i, got, w)
		}
	}
}

func TestTasksJSON(t *testing.T) {
	srv := fakeStateMaster(t, "127.0.0.1:5051")
	var out, errOut bytes.Buffer
	if code := Tasks(context.Background(), []string{"--master=" + srv.URL, "--json"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var rows []taskRow
	if err := json.Unmarshal(out.Bytes(), &rows); err != nil {
		t.Fatalf("%v:\n%s", err, out.String())
	}
	if len(rows) != 3 {
		t.Fatalf("rows %+v", rows)
	}
	custom := rows[0]
	if custom.ID != "custom" || custom.ExecutorID != "my-exec" || custom.Sandbox != "/frameworks/fw-0/executors/my-exec/runs/latest" {
		t.Fatalf("row %+v", custom)
	}
	if rows[2].ExecutorID != "web.1" || rows[2].AgentHostname != "node-1" || rows[2].FrameworkID != "fw-1" || rows[2].Health != "healthy" || rows[0].Health != "" {
		t.Fatalf("row %+v", rows[2])
	}
}

func TestTasksMasterUnreachable(t *testing.T) {
	addr := "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))
	var out, errOut bytes.Buffer
	code := Tasks(context.Background(), []string{"--master=" + addr}, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "cannot reach master at "+addr) {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
}

func TestTasksMasterFromEnvironment(t *testing.T) {
	srv := fakeStateMaster(t, "127.0.0.1:5051")
	t.Setenv("MESOS_MASTER", srv.URL)
	var out, errOut bytes.Buffer
	if code := Tasks(context.Background(), nil, &out, &errOut); code != 0 || !strings.Contains(out.String(), "web.1") {
		t.Fatalf("exit %d: %s%s", code, out.String(), errOut.String())
	}
}
