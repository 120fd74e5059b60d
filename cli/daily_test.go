package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	schedv1 "github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/containerizer"
	"github.com/mesolite/mesolite/containerizer/fake"
	"github.com/mesolite/mesolite/internal/testutil"
	"github.com/mesolite/mesolite/scheduler"
)

// The daily commands against a real master and agent (issue 15): kill,
// tasks' filters, logs by name with --tail and a waiting --follow, and
// what run says and answers when its task ends.

// cmdResult is a command's exit status and output.
type cmdResult struct {
	code        int
	out, errOut string
}

func runCommand(t *testing.T, cmd func(context.Context, []string, io.Writer, io.Writer) int, args ...string) cmdResult {
	t.Helper()
	var out, errOut testutil.SyncBuffer
	code := cmd(context.Background(), args, &out, &errOut)
	return cmdResult{code, out.String(), errOut.String()}
}

// launchedID is the task id a run printed it launched.
func (r *run) launchedID(t *testing.T) string {
	t.Helper()
	_, rest, ok := strings.Cut(r.out.String(), "launching task ")
	id, _, _ := strings.Cut(rest, " ")
	if !ok || id == "" {
		t.Fatalf("no task launched:\n%s", r.out.String())
	}
	return id
}

// TestRunExitStatusAndOutput: a run exits with its task's own status
// (128+signal for a signal, 137 for a kill) and prints the end of the
// task's stdout and stderr, unless told not to.
func TestRunExitStatusAndOutput(t *testing.T) {
	c := newTestCluster(t)
	c.addAgent(t, "node", "cpus:4;mem:4096;disk:100", nil)
	tests := []struct {
		name    string
		args    []string
		code    int
		want    []string
		notWant []string
	}{
		{"exit 3", []string{"--command=echo before; exit 3"}, 3,
			[]string{"TASK_FAILED: Command exited with status 3", "--- stdout ---\nbefore\n"}, nil},
		{"finished, stdout and stderr", []string{"--command=echo out; echo err >&2"}, 0,
			[]string{"TASK_FINISHED", "--- stdout ---\nout\n", "err\n"}, nil},
		{"only the last lines", []string{"--command=seq 1 30", "--output_lines=3"}, 0,
			[]string{"--- last 3 lines of stdout ---\n28\n29\n30\n"}, []string{"\n27\n"}},
		{"no output asked", []string{"--command=echo quiet", "--output_lines=0"}, 0,
			nil, []string{"--- stdout", "quiet"}},
		{"signal", []string{"--command=kill -9 $$"}, 128 + 9,
			[]string{"Command terminated with signal killed"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startRun(context.Background(), append([]string{"--master=" + c.addr, "--name=x"}, tt.args...)...)
			code, out, errOut := r.wait(t)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\n%s\n%s", code, tt.code, out, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(out, w) {
					t.Errorf("output has %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestRunRefusesUnsatisfiable: a request no agent could ever fit ends the
// run within a few checks, with the reason; one that fits an agent busy
// with another task waits.
func TestRunRefusesUnsatisfiable(t *testing.T) {
	old := fitCheckInterval
	fitCheckInterval = 50 * time.Millisecond
	t.Cleanup(func() { fitCheckInterval = old })
	c := newTestCluster(t)
	c.addAgent(t, "node-a", "cpus:2;mem:1024;disk:100;ports:[31000-31010]", nil)
	c.addAgent(t, "node-b", "cpus:1;mem:4096;disk:100;ports:[31000-31010]", nil)
	tests := []struct {
		name, resources, why string
	}{
		{"a typo", "cpu:1;mem:32", "no agent has a resource 'cpu' (did you mean cpus?)"},
		{"more than the largest agent", "cpus:8;mem:32", "the largest agent offers 2 cpus, the task asks 8"},
		{"no agent has both", "cpus:2;mem:2048", "node-a: mem: want 2048, the agent has 1024"},
		{"a port no agent has", "cpus:0.1;mem:32;ports:[40000-40000]", "node-a: ports: [40000-40000] not among the agent's ([31000-31010])"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startRun(context.Background(), "--master="+c.addr, "--name=big", "--command=true", "--resources="+tt.resources)
			code, out, errOut := r.wait(t)
			if code != exitFail || !strings.Contains(errOut, "mesolite run: no agent can run the task: "+tt.why) {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
			}
			if c.framework(t, r.frameworkID(t), true) == nil {
				t.Fatal("framework not torn down")
			}
		})
	}

	t.Run("busy agents are waited for", func(t *testing.T) {
		hog := startRun(context.Background(), "--master="+c.addr, "--name=hog", "--command=sleep 1000", "--resources=cpus:2;mem:32")
		hog.waitOutput(t, "TASK_RUNNING")
		r := startRun(context.Background(), "--master="+c.addr, "--name=next", "--command=true", "--resources=cpus:2;mem:32", "--timeout=1secs")
		code, out, errOut := r.wait(t)
		if code != exitTimeout || strings.Contains(errOut, "no agent can run") {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
		if res := runCommand(t, Kill, "--master="+c.addr, hog.launchedID(t)); res.code != 0 {
			t.Fatalf("kill: %+v", res)
		}
		hog.wait(t)
	})
}

// TestRunPortsOnceWithURLs: a host port named by --port_mapping and in
// --resources is asked for once, and the run prints a URL for each port
// the task got.
func TestRunPortsOnceWithURLs(t *testing.T) {
	c := newTestCluster(t)
	launched := make(chan *mesos.TaskInfo, 4)
	c.addAgent(t, "node", "cpus:4;mem:4096;disk:100;ports:[31000-31010]", fake.New(fake.Options{Script: func(spec containerizer.LaunchSpec) fake.Script {
		launched <- spec.Task
		return fake.Script{Exit: true}
	}}))
	r := startRun(context.Background(), "--master="+c.addr, "--name=web", "--docker_image=busybox", "--shell=false",
		"--port_mapping=31001:8080", "--port_mapping=0:9090", "--port_mapping=0:53/udp", "--resources=cpus:0.1;mem:32;ports:[31001-31001]")
	_, out, errOut := r.wait(t)
	task := <-launched
	if got := describeResources(task.GetResources()); got != "cpus:0.1; mem:32; ports:[31000-31002]" {
		t.Fatalf("resources %s\n%s\n%s", got, out, errOut)
	}
	for _, w := range []string{"  port 8080/tcp: http://127.0.0.1:31001\n", "  port 9090/tcp: http://127.0.0.1:31000\n", "  port 53/udp: 127.0.0.1:31002\n"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}

	r = startRun(context.Background(), "--master="+c.addr, "--name=plain", "--command=true", "--resources=cpus:0.1;mem:32;ports:[31005-31005]")
	_, out, _ = r.wait(t)
	<-launched
	if !strings.Contains(out, "  port 31005: http://127.0.0.1:31005\n") {
		t.Errorf("output lacks the port's URL:\n%s", out)
	}
}

// testFramework is a framework of the test's own (not a run's) with one
// task running on the cluster.
type testFramework struct {
	client *scheduler.Client
	taskID string
}

// startTestFramework subscribes a framework registering webUI as its web UI
// address ("" for none) and launches its task.
func startTestFramework(t *testing.T, c *testCluster, webUI string) *testFramework {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	fw := &mesos.FrameworkInfo{Name: mesos.Ptr("other"), User: mesos.Ptr(""), Role: mesos.Ptr("*")}
	if webUI != "" {
		fw.WebuiUrl = mesos.Ptr(webUI)
	}
	client, err := scheduler.Subscribe(ctx, scheduler.Config{Master: c.addr, Framework: fw, Codec: codec.JSON, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		tctx, tcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer tcancel()
		_ = client.Teardown(tctx)
		client.Close()
	})
	f := &testFramework{client: client, taskID: "other-task-1"}
	for ev := range client.Events() {
		if ev.GetType() != schedv1.Event_OFFERS {
			continue
		}
		o := ev.GetOffers().GetOffers()[0]
		task := &mesos.TaskInfo{Name: mesos.Ptr("other"), TaskId: &mesos.TaskID{Value: mesos.Ptr(f.taskID)}, AgentId: o.GetAgentId(),
			Command:   &mesos.CommandInfo{Value: mesos.Ptr("sleep 1000")},
			Resources: must(parseResources("cpus:0.1;mem:32"))}
		if err := client.Launch(ctx, o, task); err != nil {
			t.Fatal(err)
		}
		break
	}
	// The client acknowledges the updates it delivers.
	go func() {
		for range client.Events() {
		}
	}()
	testutil.Eventually(t, 15*time.Second, 20*time.Millisecond, func() bool {
		st, err := getState(context.Background(), c.addr)
		if err != nil {
			return false
		}
		tk, err := st.findTask(f.taskID, "")
		return err == nil && tk.State == "TASK_RUNNING"
	}, "task of the other framework running: %s", stateOf(c))
	return f
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestKill: kill ends a run's task by name (tearing its framework down;
// the run says so and exits 137), refuses unknown, ambiguous and ended
// tasks with the reason, asks a Marathon framework through its API, and
// says why the task of any other framework cannot be killed.
func TestKill(t *testing.T) {
	c := newTestCluster(t)
	c.addAgent(t, "node", "cpus:4;mem:4096;disk:100", nil)

	r := startRun(context.Background(), "--master="+c.addr, "--name=sleeper", "--command=sleep 1000")
	r.waitOutput(t, "TASK_RUNNING")
	id := r.launchedID(t)
	res := runCommand(t, Kill, "sleeper", "--master="+c.addr)
	if res.code != 0 || !strings.Contains(res.out, "tore the framework down") || !strings.Contains(res.out, "task "+id+": TASK_KILLED") {
		t.Fatalf("kill: %+v", res)
	}
	code, out, _ := r.wait(t)
	if code != exitKilled || !strings.Contains(out, "task "+id+" is killed with it") {
		t.Fatalf("run exit %d:\n%s", code, out)
	}

	done := startRun(context.Background(), "--master="+c.addr, "--name=quick", "--command=true")
	done.wait(t)
	twin1 := startRun(context.Background(), "--master="+c.addr, "--name=twin", "--command=sleep 1000")
	twin2 := startRun(context.Background(), "--master="+c.addr, "--name=twin", "--command=sleep 1000")
	twin1.waitOutput(t, "TASK_RUNNING")
	twin2.waitOutput(t, "TASK_RUNNING")
	for _, tt := range []struct {
		name string
		args []string
		want []string
	}{
		{"unknown", []string{"nope"}, []string{`the master knows no task with the id, name or id prefix "nope"`}},
		{"ambiguous", []string{"twin"}, []string{`"twin" names 2 tasks; give a full id`, twin1.launchedID(t), twin2.launchedID(t)}},
		{"ended", []string{done.launchedID(t)}, []string{"has already ended: TASK_FINISHED"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := runCommand(t, Kill, append(tt.args, "--master="+c.addr)...)
			if res.code != exitFail {
				t.Fatalf("exit %d: %+v", res.code, res)
			}
			for _, w := range tt.want {
				if !strings.Contains(res.errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, res.errOut)
				}
			}
		})
	}
	// A full id picks one of the twins.
	if res := runCommand(t, Kill, twin1.launchedID(t), "--master="+c.addr); res.code != 0 {
		t.Fatalf("kill by id: %+v", res)
	}
	if code, _, _ := twin1.wait(t); code != exitKilled {
		t.Fatalf("twin1 exit %d", code)
	}
	if res := runCommand(t, Kill, "twin", "--master="+c.addr); res.code != 0 {
		t.Fatalf("kill of the one twin left: %+v", res)
	}
	twin2.wait(t)

	t.Run("another framework's task", func(t *testing.T) {
		f := startTestFramework(t, c, "")
		res := runCommand(t, Kill, f.taskID, "--master="+c.addr)
		if res.code != exitFail || !strings.Contains(res.errOut, "only a task's own framework can kill it") ||
			!strings.Contains(res.errOut, "'mesolite teardown "+f.client.FrameworkID()+"'") {
			t.Fatalf("%+v", res)
		}
	})

	t.Run("a Marathon framework's task", func(t *testing.T) {
		var mu sync.Mutex
		var f *testFramework
		asked := make(chan string, 1)
		marathon := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			mu.Lock()
			f := f
			mu.Unlock()
			switch req.URL.Path {
			case "/v2/info":
				json.NewEncoder(w).Encode(map[string]string{"name": "marathon", "frameworkId": f.client.FrameworkID()})
			case "/v2/tasks/delete":
				var body struct{ IDs []string }
				json.NewDecoder(req.Body).Decode(&body)
				asked <- req.URL.RawQuery + " " + strings.Join(body.IDs, ",")
				// As Marathon does: the framework kills its task.
				f.client.Kill(context.Background(), &mesos.TaskID{Value: mesos.Ptr(body.IDs[0])}, nil)
				w.Write([]byte(`{"tasks":[]}`))
			default:
				http.NotFound(w, req)
			}
		}))
		defer marathon.Close()
		started := startTestFramework(t, c, marathon.URL)
		mu.Lock()
		f = started
		mu.Unlock()
		res := runCommand(t, Kill, f.taskID, "--master="+c.addr)
		if res.code != 0 || !strings.Contains(res.out, "Marathon API at "+marathon.URL) || !strings.Contains(res.out, ": TASK_KILLED") {
			t.Fatalf("%+v", res)
		}
		if got := <-asked; got != "scale=false "+f.taskID {
			t.Fatalf("Marathon was asked %q", got)
		}
	})
}

// TestTasksFilters: --state, --framework and --agent narrow the list, in
// the table and in --json.
func TestTasksFilters(t *testing.T) {
	c := newTestCluster(t)
	c.addAgent(t, "node-a", "cpus:4;mem:4096;disk:100", nil)
	fin := startRun(context.Background(), "--master="+c.addr, "--name=fin", "--command=true", "--framework_name=batch")
	fin.wait(t)
	long := startRun(context.Background(), "--master="+c.addr, "--name=long", "--command=sleep 1000")
	long.waitOutput(t, "TASK_RUNNING")
	defer func() {
		runCommand(t, Kill, "long", "--master="+c.addr)
		long.wait(t)
	}()
	finID, longID := fin.launchedID(t), long.launchedID(t)
	tests := []struct {
		name string
		args []string
		want []string // task ids, in order
	}{
		{"all", nil, []string{finID, longID}},
		{"running", []string{"--state=running"}, []string{longID}},
		{"TASK_FINISHED", []string{"--state=TASK_FINISHED"}, []string{finID}},
		{"two states", []string{"--state=finished,running"}, []string{finID, longID}},
		{"active", []string{"--state=active"}, []string{longID}},
		{"done", []string{"--state=done"}, []string{finID}},
		{"framework by name", []string{"--framework=batch"}, []string{finID}},
		{"framework by id", []string{"--framework=" + long.frameworkID(t)}, []string{longID}},
		{"agent by hostname", []string{"--agent=node-a", "--state=running"}, []string{longID}},
		{"another agent", []string{"--agent=node-z"}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runCommand(t, Tasks, append([]string{"--master=" + c.addr, "--json"}, tt.args...)...)
			var rows []taskRow
			if res.code != 0 || json.Unmarshal([]byte(res.out), &rows) != nil {
				t.Fatalf("%+v", res)
			}
			var ids []string
			for _, r := range rows {
				ids = append(ids, r.ID)
			}
			if strings.Join(ids, " ") != strings.Join(tt.want, " ") {
				t.Fatalf("tasks %v, want %v", ids, tt.want)
			}
			table := runCommand(t, Tasks, append([]string{"--master=" + c.addr}, tt.args...)...)
			if got := strings.Count(table.out, "\n") - 1; got != len(tt.want) {
				t.Fatalf("table has %d rows, want %d:\n%s", got, len(tt.want), table.out)
			}
		})
	}
	if res := runCommand(t, Tasks, "--master="+c.addr, "--state=sleepy"); res.code != exitUsage || !strings.Contains(res.errOut, "--state=sleepy: not a task state") {
		t.Fatalf("%+v", res)
	}
}

// TestLogsByNameTailAndFollow: logs finds a task by name or id prefix,
// lists the candidates of an ambiguous one, prints the last lines with
// --tail, and --follow started before the task exists waits for it and
// prints its whole output.
func TestLogsByNameTailAndFollow(t *testing.T) {
	oldCheck := stateCheckInterval
	stateCheckInterval = 50 * time.Millisecond
	t.Cleanup(func() { stateCheckInterval = oldCheck })
	c := newTestCluster(t)
	c.addAgent(t, "node", "cpus:4;mem:4096;disk:100", nil)

	var follow testutil.SyncBuffer
	var followErr bytes.Buffer
	followed := make(chan int, 1)
	go func() {
		followed <- Logs(context.Background(), []string{"late", "--master=" + c.addr, "--follow"}, &follow, &followErr)
	}()
	// The follower finds nothing yet and waits.
	time.Sleep(200 * time.Millisecond)
	r := startRun(context.Background(), "--master="+c.addr, "--name=late", "--command=sleep 0.3; for i in 1 2 3 4; do echo line $i; done; sleep 0.3; echo end")
	if code, out, _ := r.wait(t); code != 0 {
		t.Fatalf("run exit %d:\n%s", code, out)
	}
	select {
	case code := <-followed:
		want := "line 1\nline 2\nline 3\nline 4\nend\n"
		if code != 0 || follow.String() != want {
			t.Fatalf("--follow exit %d, output %q, want %q; stderr %s", code, follow.String(), want, followErr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("--follow did not end: %q", follow.String())
	}
	id := r.launchedID(t)

	other := startRun(context.Background(), "--master="+c.addr, "--name=late-too", "--command=echo other")
	other.wait(t)
	tests := []struct {
		name string
		args []string
		code int
		out  string
		err  []string
	}{
		{"by name, last 2 lines", []string{"late", "--tail=2"}, 0, "line 4\nend\n", nil},
		{"more lines than the file has", []string{"late", "--tail=100"}, 0, "line 1\nline 2\nline 3\nline 4\nend\n", nil},
		{"no lines", []string{"late", "--tail=0"}, 0, "", nil},
		{"by id prefix", []string{id[:len("late.")+3]}, 0, "line 1\nline 2\nline 3\nline 4\nend\n", nil},
		{"an ambiguous prefix lists the tasks", []string{"lat"}, 1, "", []string{`"lat" names 2 tasks`, id, other.launchedID(t)}},
		{"--tail and --offset", []string{"late", "--tail=1", "--offset=3"}, 2, "", []string{"give --tail or --offset, not both"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runCommand(t, Logs, append(tt.args, "--master="+c.addr)...)
			if res.code != tt.code || res.out != tt.out {
				t.Fatalf("exit %d, output %q; want %d, %q\nstderr: %s", res.code, res.out, tt.code, tt.out, res.errOut)
			}
			for _, w := range tt.err {
				if !strings.Contains(res.errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, res.errOut)
				}
			}
		})
	}

	t.Run("a task that never comes", func(t *testing.T) {
		old := appearWait
		appearWait = 300 * time.Millisecond
		t.Cleanup(func() { appearWait = old })
		res := runCommand(t, Logs, "never", "--follow", "--master="+c.addr)
		if res.code != exitFail || !strings.Contains(res.errOut, "waiting up to 300ms") || !strings.Contains(res.errOut, `knows no task with the id, name or id prefix "never"`) {
			t.Fatalf("%+v", res)
		}
	})
}

// stateOf is the master's state, for failure messages.
func stateOf(c *testCluster) string {
	resp, err := http.Get("http://" + c.addr + "/master/state")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestTailOffset: --tail counts lines as tail -n does, across the chunks
// it reads backwards, through the real files API.
func TestTailOffset(t *testing.T) {
	var long strings.Builder
	for i := range 20000 {
		long.WriteString(strings.Repeat("x", i%7) + "\n")
	}
	tests := []struct {
		name, data string
		n          int
		want       string
	}{
		{"last line", "a\nb\nc\n", 1, "c\n"},
		{"no newline at the end", "a\nb\nc", 1, "c"},
		{"two lines", "a\nb\nc\n", 2, "b\nc\n"},
		{"more than there are", "a\nb\n", 5, "a\nb\n"},
		{"empty lines count", "a\n\n\n", 2, "\n\n"},
		{"empty file", "", 3, ""},
		{"zero", "a\n", 0, ""},
		{"the end of a long file", long.String() + "end\n", 3, "xxxxxx\n\nend\n"},
		{"across chunks", long.String(), 19000, lastLines(long.String(), 19000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newFakeAgent(t, nil)
			a.write(t, "hi.1", "stdout", tt.data)
			file := sandboxPath("fw-1", "hi.1") + "/stdout"
			from, err := tailOffset(context.Background(), a.addr(), file, tt.n)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if _, err := copyFile(context.Background(), a.addr(), file, from, &out); err != nil {
				t.Fatal(err)
			}
			if out.String() != tt.want {
				t.Fatalf("got %q, want %q", out.String(), tt.want)
			}
		})
	}
}

// lastLines is the last n lines of s, each with its newline.
func lastLines(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return strings.Join(lines[max(0, len(lines)-n):], "")
}
