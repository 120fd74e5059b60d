package e2e

import (
	"bufio"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/recordio"
	schedv1 "github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/containerizer/docker/dockertest"
	"github.com/mesolite/mesolite/internal/testutil"
)

// The "done when": run exits 0, logs prints the output, and the
// files API answers Mesos's JSON for the virtual sandbox path.
func TestRunEchoLogsAndFilesAPI(t *testing.T) {
	c := startCluster(t)
	out, code := mesolite(t, 60*time.Second, "run", "--master="+c.masterAddr, "--name=echo", "--id=echo-1", "--command=echo hi")
	if code != 0 {
		t.Fatalf("run exited %d:\n%s", code, out)
	}
	for _, want := range []string{"TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED", "/frameworks/", "/executors/echo-1/runs/latest"} {
		if !strings.Contains(out, want) {
			t.Errorf("run output lacks %q:\n%s", want, out)
		}
	}
	logs, code := mesolite(t, 30*time.Second, "logs", "--master="+c.masterAddr, "echo-1")
	if code != 0 || strings.TrimSpace(logs) != "hi" {
		t.Fatalf("logs exited %d with %q, want hi", code, logs)
	}
	fw := regexp.MustCompile(`/frameworks/([^/\s]+)/executors/echo-1`).FindStringSubmatch(out)
	if fw == nil {
		t.Fatalf("no framework id in run output:\n%s", out)
	}
	var read struct {
		Data   string `json:"data"`
		Offset int64  `json:"offset"`
	}
	url := "http://" + c.agentAddr + "/files/read?path=/frameworks/" + fw[1] + "/executors/echo-1/runs/latest/stdout&offset=0"
	if err := getJSON(url, &read); err != nil {
		t.Fatal(err)
	}
	if read.Data != "hi\n" || read.Offset != 0 {
		t.Fatalf("files/read = %+v", read)
	}
}

func TestRunReportsFailure(t *testing.T) {
	c := startCluster(t)
	out, code := mesolite(t, 60*time.Second, "run", "--master="+c.masterAddr, "--name=fails", "--command=exit 3")
	if code != 3 {
		t.Fatalf("run of a task that exits 3 exited %d:\n%s", code, out)
	}
	if !strings.Contains(out, "TASK_FAILED") || !strings.Contains(out, "status 3") {
		t.Fatalf("output lacks TASK_FAILED with the exit status:\n%s", out)
	}
}

func TestRunWithoutMasterSaysSo(t *testing.T) {
	port := testutil.FreePort(t)
	out, code := mesolite(t, 30*time.Second, "run", "--master=127.0.0.1:"+strconv.Itoa(port), "--name=x", "--command=true", "--timeout=5secs")
	if code == 0 || !strings.Contains(out, "cannot reach master") {
		t.Fatalf("exit %d, output:\n%s", code, out)
	}
}

// A SUBSCRIBE as `curl -N` sends it streams RecordIO records, and the
// other calls follow the API's status codes.
func TestSchedulerAPIOverHTTP(t *testing.T) {
	c := startCluster(t)
	url := "http://" + c.masterAddr + "/api/v1/scheduler"
	body := `{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"root","name":"curl"}}}`
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Mesos-Stream-Id") == "" {
		t.Fatalf("SUBSCRIBE: %s %v", resp.Status, resp.Header)
	}
	if resp.ContentLength != -1 {
		t.Fatalf("SUBSCRIBE answered with a Content-Length (%d); it must be chunked", resp.ContentLength)
	}
	dec := recordio.NewDecoder(bufio.NewReader(resp.Body), codec.JSON, 1<<20)
	ev := &schedv1.Event{}
	if err := dec.Decode(ev); err != nil {
		t.Fatal(err)
	}
	if ev.GetType() != schedv1.Event_SUBSCRIBED || ev.GetSubscribed().GetFrameworkId().GetValue() == "" {
		t.Fatalf("first event %v", ev)
	}
	fwID := ev.GetSubscribed().GetFrameworkId().GetValue()
	streamID := resp.Header.Get("Mesos-Stream-Id")
	post := func(body, sid string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if sid != "" {
			req.Header.Set("Mesos-Stream-Id", sid)
		}
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		return r.StatusCode, string(b)
	}
	revive := `{"type":"REVIVE","framework_id":{"value":"` + fwID + `"}}`
	tests := []struct {
		name, body, sid string
		want            int
	}{
		{"call with the stream id", revive, streamID, http.StatusAccepted},
		// Mesos answers a missing header and a wrong one with 400.
		{"call without the stream id", revive, "", http.StatusBadRequest},
		{"call with another stream id", revive, "not-" + streamID, http.StatusBadRequest},
		{"malformed json", `{"type":`, streamID, http.StatusBadRequest},
		{"unknown framework", `{"type":"REVIVE","framework_id":{"value":"nope"}}`, streamID, http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, msg := post(tt.body, tt.sid)
			if code != tt.want {
				t.Fatalf("status %d (%s), want %d", code, msg, tt.want)
			}
		})
	}
}

func TestAgentRetriesUntilMasterComes(t *testing.T) {
	masterPort := testutil.FreePort(t)
	c := &cluster{masterAddr: "127.0.0.1:" + strconv.Itoa(masterPort), agentAddr: "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t)), agentDir: t.TempDir()}
	port, _ := strconv.Atoi(strings.TrimPrefix(c.agentAddr, "127.0.0.1:"))
	c.agent = start(t, "agent", "agent", "--master="+c.masterAddr, "--ip=127.0.0.1", "--port="+strconv.Itoa(port),
		"--work_dir="+c.agentDir, "--registration_backoff_factor=100ms")
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() bool {
		return strings.Contains(c.agent.out.String(), "cannot reach master")
	}, "agent logs that the master is unreachable")
	c.master = start(t, "master", "master", "--ip=127.0.0.1", "--port="+strconv.Itoa(masterPort), "--work_dir="+t.TempDir())
	c.waitAgents(t, 1)
}

// A task keeps running across an agent crash: the restarted agent
// recovers it from its checkpoint and the task can still be killed.
func TestAgentRestartRecoversTask(t *testing.T) {
	c := startCluster(t)
	run := exec.Command(binary, "run", "--master="+c.masterAddr, "--name=long", "--id=long-1", "--command=sleep 60")
	runOut := &testutil.SyncBuffer{}
	run.Stdout, run.Stderr = runOut, runOut
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	defer run.Process.Kill()
	testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, func() bool { return strings.Contains(runOut.String(), "TASK_RUNNING") }, "task running")
	c.agent.kill9()
	c.startAgent(t)
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, func() bool {
		return taskState(t, c, "long-1") == "TASK_RUNNING" && strings.Contains(c.agent.out.String(), "executor subscribed")
	}, "task still running after the agent restarted")
	// Ctrl-C on run kills the task through the recovered agent.
	_ = run.Process.Signal(interruptSignal)
	done := make(chan error, 1)
	go func() { done <- run.Wait() }()
	select {
	case <-done:
	case <-time.After(40 * time.Second):
		t.Fatalf("run did not end after interrupt:\n%s", runOut.String())
	}
	if !strings.Contains(runOut.String(), "TASK_KILLED") {
		t.Fatalf("no TASK_KILLED:\n%s", runOut.String())
	}
}

func taskState(t *testing.T, c *cluster, id string) string {
	var st struct {
		Frameworks []struct {
			Tasks []struct {
				ID    string `json:"id"`
				State string `json:"state"`
			} `json:"tasks"`
		} `json:"frameworks"`
	}
	if err := getJSON("http://"+c.masterAddr+"/master/state", &st); err != nil {
		return ""
	}
	for _, f := range st.Frameworks {
		for _, tk := range f.Tasks {
			if tk.ID == id {
				return tk.State
			}
		}
	}
	return ""
}

func TestDockerTaskBridgePortMapping(t *testing.T) {
	testutil.RequireDocker(t)
	dockertest.Images(t)
	c := startCluster(t, "--containerizers=docker,mesos")
	hostPort := 31000 + testutil.FreePort(t)%100
	run := exec.Command(binary, "run", "--master="+c.masterAddr, "--name=web", "--id=web-1", "--docker_image="+dockertest.HTTPImage,
		"--network=bridge", "--port_mapping="+strconv.Itoa(hostPort)+":8080", "--shell=false", "--resources=cpus:0.1;mem:64")
	runOut := &testutil.SyncBuffer{}
	run.Stdout, run.Stderr = runOut, runOut
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = run.Process.Signal(interruptSignal)
		_ = run.Wait()
	}()
	testutil.Eventually(t, 60*time.Second, 100*time.Millisecond, func() bool { return strings.Contains(runOut.String(), "TASK_RUNNING") }, "docker task running:\n%s", runOut)
	var body string
	testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, func() bool {
		resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(hostPort) + "/")
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		return resp.StatusCode == http.StatusOK
	}, "container reachable on 127.0.0.1:%d", hostPort)
	if body != dockertest.HTTPBody {
		t.Fatalf("body %q", body)
	}
	// The container's log (httpd -v) lands in the sandbox.
	var logs string
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs, "response:200"); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("httpd's request log is not in the sandbox stderr; logs --stderr printed:\n%s", logs)
		}
		logs, _ = mesolite(t, 10*time.Second, "logs", "--master="+c.masterAddr, "--stderr", "web-1")
	}
}

// With docker enabled but dockerd unreachable, mesos tasks keep working and
// docker tasks fail with a reason.
func TestMesosTasksRunWithoutDockerd(t *testing.T) {
	c := startCluster(t, "--containerizers=docker,mesos", "--docker_socket=/nonexistent/docker.sock")
	if out, code := mesolite(t, 60*time.Second, "run", "--master="+c.masterAddr, "--name=plain", "--command=true"); code != 0 {
		t.Fatalf("mesos task failed without dockerd:\n%s", out)
	}
	out, code := mesolite(t, 60*time.Second, "run", "--master="+c.masterAddr, "--name=dock", "--docker_image=busybox", "--command=true")
	if code == 0 || !strings.Contains(out, "REASON_CONTAINER_LAUNCH_FAILED") {
		t.Fatalf("docker task without dockerd: exit %d\n%s", code, out)
	}
}

// runningContainers lists the running containers this agent (its work dir
// is the owner label) created.
func runningContainers(t *testing.T, c *cluster) []string {
	t.Helper()
	out, err := exec.Command("docker", "ps", "-q", "--filter", "label=org.mesolite.owner="+c.agentDir, "--filter", "status=running").Output()
	if err != nil {
		t.Fatalf("docker ps: %v", err)
	}
	return strings.Fields(string(out))
}

// The Mesos+Docker tutorial's framework keeps N containers alive, also when
// one is killed by hand.
func TestExampleFrameworkKeepsInstances(t *testing.T) {
	testutil.RequireDocker(t)
	dockertest.Images(t)
	c := startCluster(t, "--containerizers=docker,mesos")
	fw := start(t, "example-framework", "example-framework", "--master="+c.masterAddr, "--image="+dockertest.BusyboxImage,
		"--instances=2", "--command=sleep 600", "--refuse_seconds=1")
	var first []string
	testutil.Eventually(t, 60*time.Second, 200*time.Millisecond, func() bool {
		first = runningContainers(t, c)
		return len(first) == 2
	}, "two containers running:\n%s", fw.out)
	if out, err := exec.Command("docker", "kill", first[0]).CombinedOutput(); err != nil {
		t.Fatalf("docker kill: %v %s", err, out)
	}
	testutil.Eventually(t, 60*time.Second, 200*time.Millisecond, func() bool {
		now := runningContainers(t, c)
		if len(now) != 2 {
			return false
		}
		for _, id := range now {
			if id == first[0] {
				return false
			}
		}
		return true
	}, "a replacement container after docker kill:\n%s", fw.out)
}
