package agent_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/agent"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/internal/testutil"
	"github.com/mesolite/mesolite/isolation"
)

func postExecutorCall(t *testing.T, url, body, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, string(b)
}

// executorToken reads the token the agent gave a running executor from its
// environment, as an attacker holding one executor would have it.
func executorToken(t *testing.T, a *testAgent, exID string) string {
	t.Helper()
	for _, pid := range isolation.FindByEnv(func(kv string) bool {
		dir, ok := strings.CutPrefix(kv, "MESOS_DIRECTORY=")
		return ok && strings.HasPrefix(dir, a.workDir+"/")
	}) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
		if err != nil {
			continue
		}
		env := strings.Split(string(b), "\x00")
		if !slices.Contains(env, "MESOS_EXECUTOR_ID="+exID) {
			continue
		}
		for _, kv := range env {
			if v, ok := strings.CutPrefix(kv, agent.EnvExecutorToken+"="); ok {
				return v
			}
		}
	}
	t.Fatalf("no process of executor %s holds a token", exID)
	return ""
}

// TestExecutorAPIRefusesStrangers runs the attacks of a process on the
// agent's host (and of one executor against another) on the executor API,
// while two frameworks' tasks run.
func TestExecutorAPIRefusesStrangers(t *testing.T) {
	c := newCluster(t, nil)
	a := c.startAgent(t, t.TempDir(), 0, nil)
	url := a.url("/api/v1/executor")
	mineFW := c.subscribe(t, testFramework("test"))
	victimFW := c.subscribe(t, testFramework("victim"))

	mineFW.launch(a, commandTask("mine", "sleep 30"))
	victimFW.launch(a, commandTask("victim-task", "sleep 30"))
	myFW, vFW := mineFW.ID(), victimFW.ID()
	mineFW.waitState("mine", mesos.TaskState_TASK_RUNNING, 15*time.Second)
	victimFW.waitState("victim-task", mesos.TaskState_TASK_RUNNING, 15*time.Second)
	myToken := executorToken(t, a, "mine")

	escape := filepath.Join(t.TempDir(), "escaped")
	update := func(fw, ex, task, state string) string {
		return `{"type":"UPDATE","framework_id":{"value":"` + fw + `"},"executor_id":{"value":"` + ex + `"},` +
			`"update":{"status":{"task_id":{"value":"` + task + `"},"state":"` + state + `","uuid":"AAECAwQFBgcICQoLDA0ODw=="}}}`
	}
	tests := []struct {
		name, body, token string
		want              int
	}{
		{"task id that is a path", update(myFW, "mine", "../../../../../../../.."+escape, "TASK_RUNNING"), myToken, http.StatusBadRequest},
		{"executor id that is a path", update(myFW, "../../x", "mine", "TASK_RUNNING"), "", http.StatusBadRequest},
		{"finish another framework's task without a token", update(vFW, "victim-task", "victim-task", "TASK_FINISHED"), "", http.StatusUnauthorized},
		{"finish another framework's task with another executor's token", update(vFW, "victim-task", "victim-task", "TASK_FINISHED"), myToken, http.StatusForbidden},
		{"finish another executor's task under its own name", update(myFW, "mine", "victim-task", "TASK_FINISHED"), myToken, http.StatusForbidden},
		{"forged token", update(vFW, "victim-task", "victim-task", "TASK_FINISHED"), myToken[:len(myToken)-4] + "AAAA", http.StatusUnauthorized},
		{"subscribe as another framework's executor", `{"type":"SUBSCRIBE","framework_id":{"value":"` + vFW + `"},"executor_id":{"value":"victim-task"},"subscribe":{}}`, "", http.StatusUnauthorized},
		{"subscribe with another executor's token", `{"type":"SUBSCRIBE","framework_id":{"value":"` + vFW + `"},"executor_id":{"value":"victim-task"},"subscribe":{}}`, myToken, http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := postExecutorCall(t, url, tt.body, tt.token)
			if code != tt.want {
				t.Fatalf("status %d (%s), want %d", code, body, tt.want)
			}
			if strings.Contains(body, "executor_info") || strings.Contains(body, "sleep 30") {
				t.Fatalf("the refusal leaked the executor's info: %s", body)
			}
		})
	}
	if _, err := os.Stat(escape); !os.IsNotExist(err) {
		t.Fatalf("an executor call created %s outside the agent's work dir: %v", escape, err)
	}
	if s := a.state(t).taskState(vFW, "victim-task"); s != mesos.TaskState_TASK_RUNNING.String() {
		t.Fatalf("victim task is %v after the attacks, want TASK_RUNNING", s)
	}
	// The real executor's own token still works for its own task.
	if code, body := postExecutorCall(t, url, `{"type":"MESSAGE","framework_id":{"value":"`+myFW+`"},"executor_id":{"value":"mine"},"message":{"data":"aGk="}}`, myToken); code != http.StatusAccepted {
		t.Fatalf("own token refused: %d %s", code, body)
	}
}

// TestExecutorWithoutTokenProvedByContainer is an executor library that
// sends no token: a process inside the executor's container is accepted
// (proved from its connection), the same call from outside is not, and
// with --authenticate_http_executors neither is.
func TestExecutorWithoutTokenProvedByContainer(t *testing.T) {
	_, err := exec.LookPath("bash")
	testutil.Require(t, err == nil, "bash (for /dev/tcp) is needed to call the agent from inside a task")
	for _, mandatory := range []bool{false, true} {
		t.Run("authenticate_http_executors="+strconv.FormatBool(mandatory), func(t *testing.T) {
			c := newCluster(t, nil)
			a := c.startAgent(t, t.TempDir(), 0, func(c *agent.Config) { c.AuthenticateHTTPExecutors = mandatory })
			fw := c.subscribe(t, testFramework("test"))
			body := `{"type":"MESSAGE","framework_id":{"value":"` + fw.ID() + `"},"executor_id":{"value":"insider"},"message":{"data":"aGk="}}`
			// The task, a process of the executor's container, makes the
			// call over its own connection and records the status line.
			script := fmt.Sprintf(`bash -c 'b=%q; exec 3<>/dev/tcp/127.0.0.1/%d; printf "POST /api/v1/executor HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: %%d\r\nConnection: close\r\n\r\n%%s" ${#b} "$b" >&3; head -1 <&3 > status'; sleep 30`,
				body, a.port)
			fw.launch(a, commandTask("insider", script))
			fw.waitState("insider", mesos.TaskState_TASK_RUNNING, 15*time.Second)
			status := a.sandboxFile(t, fw.ID(), "insider", "status")
			want := "202"
			if mandatory {
				want = "401"
			}
			if !strings.Contains(status, " "+want+" ") {
				t.Fatalf("call from inside the container answered %q, want %s", strings.TrimSpace(status), want)
			}
			// The same call from the test process, outside the container.
			if code, resp := postExecutorCall(t, a.url("/api/v1/executor"), body, ""); code != http.StatusUnauthorized {
				t.Fatalf("call from outside the container: %d %s, want 401", code, resp)
			}
		})
	}
}

// TestUnknownExecutorIsShutDown: an executor whose token this agent
// signed but which it does not run any more (ended and forgotten here, as
// one of a launch a crash cut off is never known) gets SHUTDOWN as the
// answer to its SUBSCRIBE, as Mesos's agent answers it, instead of a 400
// that would have it reconnect until its recovery timeout; a stranger's
// SUBSCRIBE without a token still learns nothing.
func TestUnknownExecutorIsShutDown(t *testing.T) {
	c := newCluster(t, nil)
	a := c.startAgent(t, t.TempDir(), 0, func(cfg *agent.Config) { cfg.MaxCompletedExecutorsPerFramework = 1 })
	url := a.url("/api/v1/executor")
	fw := c.subscribe(t, testFramework("test"))
	fw.launch(a, commandTask("first", "sleep 1"))
	fw.waitState("first", mesos.TaskState_TASK_RUNNING, 15*time.Second)
	token := executorToken(t, a, "first")
	fw.waitState("first", mesos.TaskState_TASK_FINISHED, 15*time.Second)
	// A second executor's end pushes the first out of the agent's books.
	fw.launch(a, commandTask("second", "true"))
	fw.waitState("second", mesos.TaskState_TASK_FINISHED, 15*time.Second)
	subscribe := `{"type":"SUBSCRIBE","framework_id":{"value":"` + fw.ID() + `"},"executor_id":{"value":"first"},"subscribe":{}}`
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() bool {
		code, body := postExecutorCall(t, url, subscribe, token)
		return code == http.StatusOK && strings.Contains(body, `"SHUTDOWN"`) && !strings.Contains(body, "SUBSCRIBED")
	}, "SUBSCRIBE of the forgotten executor answered with SHUTDOWN")
	if code, body := postExecutorCall(t, url, subscribe, ""); code != http.StatusUnauthorized {
		t.Fatalf("SUBSCRIBE without a token: %d %s, want 401", code, body)
	}
	other := `{"type":"SUBSCRIBE","framework_id":{"value":"` + fw.ID() + `"},"executor_id":{"value":"not-first"},"subscribe":{}}`
	if code, body := postExecutorCall(t, url, other, token); code != http.StatusBadRequest || strings.Contains(body, "SHUTDOWN") {
		t.Fatalf("SUBSCRIBE of another unknown executor with first's token: %d %s, want 400", code, body)
	}
}
