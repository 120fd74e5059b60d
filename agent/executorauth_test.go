package agent

import (
	"fmt"
	"github.com/mesolite/mesolite/isolation"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/agentpb"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/internal/testutil"
	"google.golang.org/protobuf/proto"
)

var otherFramework = &mesos.FrameworkInfo{
	Id:   &mesos.FrameworkID{Value: proto.String("fw-victim")},
	Name: proto.String("victim"),
	User: proto.String("root"),
}

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
func executorToken(t *testing.T, a *testAgent, fwID, exID string) string {
	t.Helper()
	a.mu.Lock()
	es := a.lookupExecutorLocked(fwID, exID)
	pid := 0
	if es != nil && es.handle != nil {
		pid = es.handle.Pid
	}
	a.mu.Unlock()
	for _, p := range descendantsOf(pid) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/environ")
		if err != nil {
			continue
		}
		for _, kv := range strings.Split(string(b), "\x00") {
			if v, ok := strings.CutPrefix(kv, EnvExecutorToken+"="); ok {
				return v
			}
		}
	}
	t.Fatalf("no process of executor %s holds a token", exID)
	return ""
}

func descendantsOf(root int) []int {
	out := []int{root}
	for i := 0; i < len(out); i++ {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", out[i], out[i]))
		for _, f := range strings.Fields(string(b)) {
			if p, err := strconv.Atoi(f); err == nil {
				out = append(out, p)
			}
		}
	}
	return out
}

func taskStateOf(a *testAgent, fwID, taskID string) mesos.TaskState {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ts := a.findTaskLocked(fwID, taskID); ts != nil {
		return ts.state
	}
	return -1
}

// TestExecutorAPIRefusesStrangers runs the attacks of a process on the
// agent's host (and of one executor against another) on the executor API,
// while two frameworks' tasks run.
func TestExecutorAPIRefusesStrangers(t *testing.T) {
	fm := newFakeMaster(t, true)
	a := startAgent(t, fm, t.TempDir(), 0, nil)
	url := "http://" + a.Endpoint() + "/api/v1/executor"

	mine := commandTask("mine", "sleep 30")
	fm.events <- runTaskEvent(mine)
	victim := commandTask("victim-task", "sleep 30")
	fm.events <- &agentpb.Event{Type: agentpb.Event_RUN_TASK.Enum(), RunTask: &agentpb.Event_RunTask{Framework: otherFramework, Task: victim}}
	myFW, vFW := testFramework.GetId().GetValue(), otherFramework.GetId().GetValue()
	testutil.Eventually(t, 15*time.Second, 20*time.Millisecond, func() bool {
		return taskStateOf(a, myFW, "mine") == mesos.TaskState_TASK_RUNNING && taskStateOf(a, vFW, "victim-task") == mesos.TaskState_TASK_RUNNING
	}, "both tasks running")
	myToken := executorToken(t, a, myFW, "mine")

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
	if s := taskStateOf(a, vFW, "victim-task"); s != mesos.TaskState_TASK_RUNNING {
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
			fm := newFakeMaster(t, true)
			a := startAgent(t, fm, t.TempDir(), 0, func(c *Config) { c.AuthenticateHTTPExecutors = mandatory })
			fwID := testFramework.GetId().GetValue()
			body := `{"type":"MESSAGE","framework_id":{"value":"` + fwID + `"},"executor_id":{"value":"insider"},"message":{"data":"aGk="}}`
			// The task, a process of the executor's container, makes the
			// call over its own connection and records the status line.
			script := fmt.Sprintf(`bash -c 'b=%q; exec 3<>/dev/tcp/127.0.0.1/%d; printf "POST /api/v1/executor HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: %%d\r\nConnection: close\r\n\r\n%%s" ${#b} "$b" >&3; head -1 <&3 > status'; sleep 30`,
				body, a.port)
			fm.events <- runTaskEvent(commandTask("insider", script))
			fm.waitState("insider", mesos.TaskState_TASK_RUNNING, 15*time.Second)
			var status string
			testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() bool {
				status = readSandboxFile(t, a.Agent, fwID, "insider", "status")
				return status != ""
			}, "the task never called the agent")
			want := "202"
			if mandatory {
				want = "401"
			}
			if !strings.Contains(status, " "+want+" ") {
				t.Fatalf("call from inside the container answered %q, want %s", strings.TrimSpace(status), want)
			}
			// The same call from the test process, outside the container.
			if code, resp := postExecutorCall(t, "http://"+a.Endpoint()+"/api/v1/executor", body, ""); code != http.StatusUnauthorized {
				t.Fatalf("call from outside the container: %d %s, want 401", code, resp)
			}
		})
	}
}

// BenchmarkExecutorAuth is what authentication adds to each executor
// call: a token's signature check, and for an executor that sends none,
// the proof from /proc that the connection is its container's (paid once
// per connection).
func BenchmarkExecutorAuth(b *testing.B) {
	tok, err := loadExecutorTokens(filepath.Join(b.TempDir(), "key"))
	if err != nil {
		b.Fatal(err)
	}
	signed := tok.sign(tokenClaims{FrameworkID: "fw", ExecutorID: "ex", ContainerID: "c"})
	b.Run("token", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := tok.verify(signed); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("peer-proof", func(b *testing.B) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		s, err := l.Accept()
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		peer, _ := isolation.AddrPortOf(s.RemoteAddr())
		local, _ := isolation.AddrPortOf(s.LocalAddr())
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := isolation.SocketOwnerIn(os.Getpid(), peer, local); err != nil {
				b.Fatal(err)
			}
		}
	})
}
