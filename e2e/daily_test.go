package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/internal/testutil"
)

// The client commands of daily use (issue 15), run as the built binary
// against a master and an agent: run's exit status, output and refusals,
// kill, logs by name with --tail and a waiting --follow, tasks' filters,
// and the completion script.
func TestDailyCommands(t *testing.T) {
	c := startCluster(t)
	master := "--master=" + c.masterAddr

	t.Run("run exits with the task's status and shows its output", func(t *testing.T) {
		out, code := mesolite(t, 60*time.Second, "run", master, "--name=three", "--command=echo about to fail; echo oops >&2; exit 3")
		if code != 3 {
			t.Fatalf("run exited %d, want 3:\n%s", code, out)
		}
		for _, w := range []string{"TASK_FAILED: Command exited with status 3", "--- stdout ---\nabout to fail\n", "oops\n"} {
			if !strings.Contains(out, w) {
				t.Errorf("run output lacks %q:\n%s", w, out)
			}
		}
	})

	t.Run("run refuses what no agent can fit", func(t *testing.T) {
		for _, tt := range []struct{ resources, why string }{
			{"cpu:1;mem:32", "no agent has a resource 'cpu' (did you mean cpus?)"},
			{"cpus:8;mem:32", "the largest agent offers 2 cpus, the task asks 8"},
		} {
			start := time.Now()
			out, code := mesolite(t, 60*time.Second, "run", master, "--name=big", "--command=true", "--resources="+tt.resources)
			if code != 1 || !strings.Contains(out, tt.why) {
				t.Fatalf("run --resources=%s exited %d:\n%s", tt.resources, code, out)
			}
			if d := time.Since(start); d > 20*time.Second {
				t.Errorf("refusing --resources=%s took %s", tt.resources, d)
			}
		}
	})

	t.Run("run prints the URL of its port", func(t *testing.T) {
		out, code := mesolite(t, 60*time.Second, "run", master, "--name=porty", "--command=true", "--resources=cpus:0.1;mem:32;ports:[31042-31042]")
		if code != 0 || !strings.Contains(out, "port 31042: http://127.0.0.1:31042\n") {
			t.Fatalf("run exited %d:\n%s", code, out)
		}
	})

	t.Run("logs --follow waits for the task, kill ends it, run says so", func(t *testing.T) {
		follow := exec.Command(binary, "logs", master, "ticker", "--follow")
		followOut := &testutil.SyncBuffer{}
		follow.Stdout, follow.Stderr = followOut, followOut
		if err := follow.Start(); err != nil {
			t.Fatal(err)
		}
		defer follow.Process.Kill()
		testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() bool {
			return strings.Contains(followOut.String(), `waiting up to 30secs for task "ticker" to appear`)
		}, "logs --follow waiting:\n%s", followOut)

		run := exec.Command(binary, "run", master, "--name=ticker", "--command=for i in $(seq 1 1000); do echo tick $i; sleep 0.05; done")
		runOut := &testutil.SyncBuffer{}
		run.Stdout, run.Stderr = runOut, runOut
		if err := run.Start(); err != nil {
			t.Fatal(err)
		}
		defer run.Process.Kill()
		testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() bool {
			return strings.Contains(followOut.String(), "tick 3\n")
		}, "logs --follow printing the ticks:\n%s\nrun:\n%s", followOut, runOut)

		out, code := mesolite(t, 30*time.Second, "logs", master, "ticker", "--tail=1")
		if code != 0 || !strings.HasPrefix(out, "tick ") || strings.Count(out, "\n") != 1 {
			t.Fatalf("logs --tail=1 exited %d: %q", code, out)
		}

		out, code = mesolite(t, 30*time.Second, "tasks", master, "--state=running", "--json")
		var rows []struct{ ID, Name, State string }
		if code != 0 || json.Unmarshal([]byte(out), &rows) != nil || len(rows) != 1 || rows[0].Name != "ticker" {
			t.Fatalf("tasks --state=running exited %d:\n%s", code, out)
		}

		// The completion scripts offer the running task to kill.
		bash, err := exec.LookPath("bash")
		testutil.Require(t, err == nil, "bash is not installed")
		prog := "source <(" + binary + " completion bash)\n" +
			"COMP_LINE='" + binary + " kill " + master + " ti'\nCOMP_WORDS=(" + binary + " kill ti)\nCOMP_CWORD=2\n_mesolite\n" +
			`printf '%s\n' "${COMPREPLY[@]}"` + "\n"
		if got, err := exec.Command(bash, "--norc", "-c", prog).CombinedOutput(); err != nil || !strings.Contains(string(got), "ticker\n") || !strings.Contains(string(got), "ticker.") {
			t.Errorf("bash completed kill ti with %q (%v)", got, err)
		}
		zsh, err := exec.LookPath("zsh")
		testutil.Require(t, err == nil, "zsh is not installed (apt-get install zsh)")
		script, _ := mesolite(t, 30*time.Second, "completion", "zsh")
		scriptFile := filepath.Join(t.TempDir(), "_mesolite")
		if err := os.WriteFile(scriptFile, []byte(script), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := testutil.ZshComplete(t, zsh, filepath.Dir(binary), scriptFile, "mesolite kill "+master+" ti"); !slices.Contains(got, "ticker") {
			t.Errorf("zsh completed kill ti with %q", got)
		}

		out, code = mesolite(t, 60*time.Second, "kill", master, "ticker")
		if code != 0 || !strings.Contains(out, "TASK_KILLED") {
			t.Fatalf("kill exited %d:\n%s", code, out)
		}
		done := make(chan error, 1)
		go func() { done <- run.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("run did not end after the kill:\n%s", runOut)
		}
		if code := run.ProcessState.ExitCode(); code != 137 || !strings.Contains(runOut.String(), "is killed with it") {
			t.Fatalf("run exited %d after the kill:\n%s", code, runOut)
		}
		fdone := make(chan error, 1)
		go func() { fdone <- follow.Wait() }()
		select {
		case <-fdone:
		case <-time.After(30 * time.Second):
			t.Fatalf("logs --follow did not end with the task:\n%s", followOut)
		}
		if code := follow.ProcessState.ExitCode(); code != 0 {
			t.Fatalf("logs --follow exited %d:\n%s", code, followOut)
		}

		out, code = mesolite(t, 30*time.Second, "kill", master, "ticker")
		if code != 1 || !strings.Contains(out, "has already ended: TASK_KILLED") {
			t.Fatalf("second kill exited %d:\n%s", code, out)
		}
	})

	t.Run("completion", func(t *testing.T) {
		out, code := mesolite(t, 30*time.Second, "completion", "bash")
		if code != 0 || !strings.Contains(out, "complete -o default -o bashdefault -F _mesolite mesolite") || !strings.Contains(out, "kill) flags=") {
			t.Fatalf("completion bash exited %d:\n%.500s", code, out)
		}
		bash, err := exec.LookPath("bash")
		testutil.Require(t, err == nil, "bash is not installed")
		prog := "source <(" + binary + " completion bash)\nCOMP_WORDS=(mesolite logs --ta)\nCOMP_CWORD=2\n_mesolite\necho \"${COMPREPLY[@]}\"\n"
		got, err := exec.Command(bash, "--norc", "-c", prog).CombinedOutput()
		if err != nil || strings.TrimSpace(string(got)) != "--tail=" {
			t.Fatalf("bash completed %q (%v)", got, err)
		}
	})
}

// TestKillAppTask: `mesolite kill` of an app's task goes through the apps
// service's Marathon API (found by the web UI address the framework
// registered): the task is killed and the app starts a replacement.
func TestKillAppTask(t *testing.T) {
	c := startCluster(t)
	master := "--master=" + c.masterAddr
	port := testutil.FreePort(t)
	api := "http://127.0.0.1:" + strconv.Itoa(port)
	start(t, "apps", "apps", master, "--http_address=127.0.0.1", "--http_port="+strconv.Itoa(port), "--hostname=127.0.0.1",
		"--work_dir="+t.TempDir())
	testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, func() bool {
		resp, err := http.Get(api + "/ping")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "apps answering at %s", api)
	resp, err := http.Post(api+"/v2/apps", "application/json", strings.NewReader(`{"id": "/sleepy", "cmd": "sleep 1000", "cpus": 0.1, "mem": 32, "instances": 1}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("POST /v2/apps: %s", resp.Status)
	}
	defer func() {
		req, _ := http.NewRequest(http.MethodDelete, api+"/v2/apps/sleepy", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
		testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, func() bool { return len(runningTasks(t, c)) == 0 }, "the app's tasks gone")
	}()
	var first string
	testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, func() bool {
		ids := runningTasks(t, c)
		if len(ids) == 1 {
			first = ids[0]
		}
		return first != ""
	}, "the app's task running")

	out, code := mesolite(t, 60*time.Second, "kill", master, first)
	if code != 0 || !strings.Contains(out, "Marathon API at http://127.0.0.1:"+strconv.Itoa(port)) || !strings.Contains(out, "task "+first+": TASK_KILLED") {
		t.Fatalf("kill exited %d:\n%s", code, out)
	}
	testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, func() bool {
		ids := runningTasks(t, c)
		return len(ids) == 1 && ids[0] != first
	}, "a replacement of the killed task running")
}

// runningTasks are the ids of the tasks the master lists as running.
func runningTasks(t *testing.T, c *cluster) []string {
	t.Helper()
	out, code := mesolite(t, 30*time.Second, "tasks", "--master="+c.masterAddr, "--state=running", "--json")
	var rows []struct{ ID string }
	if code != 0 || json.Unmarshal([]byte(out), &rows) != nil {
		t.Fatalf("tasks exited %d:\n%s", code, out)
	}
	var ids []string
	for _, r := range rows {
		ids = append(ids, r.ID)
	}
	return ids
}
