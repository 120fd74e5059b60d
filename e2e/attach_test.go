package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/agentapi"
	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/recordio"
	"github.com/mesolite/mesolite/containerizer/docker/dockertest"
	"github.com/mesolite/mesolite/internal/testutil"
	"google.golang.org/protobuf/proto"
)

// onlyContainer is the id of the one container the agent's /containers lists.
func onlyContainer(t testing.TB, c *cluster) string {
	t.Helper()
	var list []struct {
		ContainerID string `json:"container_id"`
	}
	if err := getJSON("http://"+c.agentAddr+"/containers", &list); err != nil || len(list) != 1 {
		t.Fatalf("/containers: %v, %v; want one container", list, err)
	}
	return list[0].ContainerID
}

// attachOutput streams ATTACH_CONTAINER_OUTPUT of cid into a buffer.
func attachOutput(t *testing.T, c *cluster, cid string) *testutil.SyncBuffer {
	t.Helper()
	call := &agentapi.Call{Type: agentapi.Call_ATTACH_CONTAINER_OUTPUT.Enum(), AttachContainerOutput: &agentapi.Call_AttachContainerOutput{
		ContainerId: &mesos.ContainerID{Value: proto.String(cid)}}}
	body, _ := codec.JSON.Marshal(call)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+c.agentAddr+"/api/v1", bytes.NewReader(body))
	req.Header.Set("Content-Type", codec.MediaTypeJSON)
	req.Header.Set("Accept", "application/recordio")
	req.Header.Set("Message-Accept", codec.MediaTypeJSON)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		cancel()
		t.Fatalf("ATTACH_CONTAINER_OUTPUT: %d %s", resp.StatusCode, b)
	}
	out := &testutil.SyncBuffer{}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		dec := recordio.NewDecoder(resp.Body, codec.JSON, 0)
		for {
			rec := &agentapi.ProcessIO{}
			if err := dec.Decode(rec); err != nil {
				return
			}
			_, _ = out.Write(rec.GetData().GetData())
		}
	}()
	t.Cleanup(func() { cancel(); resp.Body.Close(); wg.Wait() })
	return out
}

// attachInput sends ATTACH_CONTAINER_INPUT records to cid and returns the
// answer's status and body.
func attachInput(t *testing.T, c *cluster, cid string, recs ...*agentapi.Call_AttachContainerInput) (int, string) {
	t.Helper()
	var body bytes.Buffer
	enc := recordio.NewEncoder(&body, codec.JSON)
	first := &agentapi.Call_AttachContainerInput{Type: agentapi.Call_AttachContainerInput_CONTAINER_ID.Enum(), ContainerId: &mesos.ContainerID{Value: proto.String(cid)}}
	for _, r := range append([]*agentapi.Call_AttachContainerInput{first}, recs...) {
		if err := enc.Encode(&agentapi.Call{Type: agentapi.Call_ATTACH_CONTAINER_INPUT.Enum(), AttachContainerInput: r}); err != nil {
			t.Fatal(err)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+c.agentAddr+"/api/v1", &body)
	req.Header.Set("Content-Type", "application/recordio")
	req.Header.Set("Message-Content-Type", codec.MediaTypeJSON)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func stdin(data string) *agentapi.Call_AttachContainerInput {
	return &agentapi.Call_AttachContainerInput{Type: agentapi.Call_AttachContainerInput_PROCESS_IO.Enum(), ProcessIo: &agentapi.ProcessIO{
		Type: agentapi.ProcessIO_DATA.Enum(), Data: &agentapi.ProcessIO_Data{Type: agentapi.ProcessIO_Data_STDIN.Enum(), Data: []byte(data)}}}
}

// msh -interactive's flow against a docker task launched with tty_info:
// attach to its output, type into its terminal, see the answer; the
// sandbox's stdout has it too. A mesos task, launched without a TTY,
// takes no input (409).
func TestAttachDockerTaskTTY(t *testing.T) {
	testutil.RequireDocker(t)
	dockertest.Images(t)
	c := startCluster(t, "--containerizers=docker,mesos")
	task := fmt.Sprintf(`{"name": "tty", "task_id": {"value": "tty-1"},
	  "command": {"value": "stty -echo; while read line; do echo got:$line; done"},
	  "container": {"type": "DOCKER", "docker": {"image": %q}, "tty_info": {"window_size": {"rows": 24, "columns": 80}}}}`, dockertest.BusyboxImage)
	file := filepath.Join(t.TempDir(), "task.json")
	if err := os.WriteFile(file, []byte(task), 0o644); err != nil {
		t.Fatal(err)
	}
	runningTask(t, c, "--task="+file)
	cid := onlyContainer(t, c)
	out := attachOutput(t, c, cid)
	resize := &agentapi.Call_AttachContainerInput{Type: agentapi.Call_AttachContainerInput_PROCESS_IO.Enum(), ProcessIo: &agentapi.ProcessIO{
		Type: agentapi.ProcessIO_CONTROL.Enum(), Control: &agentapi.ProcessIO_Control{Type: agentapi.ProcessIO_Control_TTY_INFO.Enum(),
			TtyInfo: &mesos.TTYInfo{WindowSize: &mesos.TTYInfo_WindowSize{Rows: proto.Uint32(40), Columns: proto.Uint32(120)}}}}}
	// The shell may not read yet: type until it answers.
	testutil.Eventually(t, 30*time.Second, 500*time.Millisecond, func() bool {
		if code, body := attachInput(t, c, cid, resize, stdin("hello\r")); code != http.StatusOK {
			t.Fatalf("ATTACH_CONTAINER_INPUT: %d %s", code, body)
		}
		return strings.Contains(out.String(), "got:hello")
	}, "the task answered through the attached output: %q", out)
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() bool {
		b, _ := os.ReadFile(filepath.Join(sandboxOf(t, c, "tty-1"), "stdout"))
		return strings.Contains(string(b), "got:hello")
	}, "the answer in the sandbox's stdout too")

	// A mesos task has no TTY: no input.
	mc := startCluster(t)
	runningTask(t, mc, "--name=plain", "--id=plain-1", "--command=sleep 1000")
	if code, body := attachInput(t, mc, onlyContainer(t, mc), stdin("x\n")); code != http.StatusConflict || !strings.Contains(body, "without a TTY") {
		t.Errorf("input to a task without a TTY: %d %q, want 409 saying it has none", code, body)
	}
}

// `mesolite attach TASK` follows a running task's own output to its end
// and exits 0 with it; a finished task is refused.
func TestAttachCommand(t *testing.T) {
	c := startCluster(t)
	runningTask(t, c, "--name=ticker", "--id=ticker-1", "--command=i=0; while [ $i -lt 60 ]; do echo tick-$i; echo tock-$i >&2; i=$((i+1)); sleep 0.05; done")
	out, code := mesolite(t, 60*time.Second, "attach", "--master="+c.masterAddr, "ticker-1")
	if code != 0 || !strings.Contains(out, "tick-59\n") || !strings.Contains(out, "tock-59\n") {
		t.Fatalf("mesolite attach: exit %d:\n%s\nwant the ticks from the attach on, to the last", code, out)
	}
	if out, code := mesolite(t, 30*time.Second, "attach", "--master="+c.masterAddr, "ticker-1"); code == 0 || !strings.Contains(out, "nothing runs there") {
		t.Errorf("attach to a finished task: exit %d: %s", code, out)
	}
}

// `mesolite exec` and `mesolite attach` reach a task of a group in its own
// nested container: exec starts in the task's sandbox.
func TestExecAndAttachTaskOfAGroup(t *testing.T) {
	c := startCluster(t)
	group := `{"tasks": [{"name": "member", "task_id": {"value": "member-1"},
	  "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}}, {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}],
	  "command": {"value": "i=0; while [ $i -lt 40 ]; do echo beat-$i; i=$((i+1)); sleep 0.1; done"}}]}`
	file := filepath.Join(t.TempDir(), "group.json")
	if err := os.WriteFile(file, []byte(group), 0o644); err != nil {
		t.Fatal(err)
	}
	runningTask(t, c, "--task_group="+file)
	stdout, stderr, code := execIn(t, c, nil, "member-1", "--", "sh", "-c", "pwd; echo $MESOS_SANDBOX")
	if lines := strings.Fields(stdout); code != 0 || len(lines) != 2 || !strings.HasSuffix(lines[0], "/tasks/member-1") || lines[1] != lines[0] {
		t.Errorf("exec into the group's task: exit %d, %q %q; want its own sandbox", code, stdout, stderr)
	}
	out, code := mesolite(t, 60*time.Second, "attach", "--master="+c.masterAddr, "member-1")
	if code != 0 || !strings.Contains(out, "beat-39\n") {
		t.Errorf("attach to the group's task: exit %d:\n%s", code, out)
	}
}
