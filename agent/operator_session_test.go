package agent_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/agentapi"
	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/recordio"
	"google.golang.org/protobuf/proto"
)

// taskContainer launches a command task and returns its framework and the
// container id its RUNNING update names (what a client enters).
func taskContainer(t *testing.T, c *cluster, ta *testAgent, task *mesos.TaskInfo) (*framework, string) {
	t.Helper()
	fw := c.subscribe(t, testFramework("sessions"))
	fw.launch(ta, task)
	st := fw.waitState(task.GetTaskId().GetValue(), mesos.TaskState_TASK_RUNNING, 20*time.Second)
	cid := st.GetContainerStatus().GetContainerId().GetValue()
	if cid == "" {
		t.Fatalf("TASK_RUNNING without a container id: %v", st)
	}
	return fw, cid
}

func sessionCall(id, parent, cmd string, tty bool) *agentapi.Call {
	c := &agentapi.Call{Type: agentapi.Call_LAUNCH_NESTED_CONTAINER_SESSION.Enum(), LaunchNestedContainerSession: &agentapi.Call_LaunchNestedContainerSession{
		ContainerId: &mesos.ContainerID{Value: proto.String(id), Parent: &mesos.ContainerID{Value: proto.String(parent)}},
		Command:     &mesos.CommandInfo{Value: proto.String(cmd), Environment: &mesos.Environment{Variables: []*mesos.Environment_Variable{{Name: proto.String("SESSION_VAR"), Value: proto.String("s")}}}},
	}}
	if tty {
		c.LaunchNestedContainerSession.Container = &mesos.ContainerInfo{Type: mesos.ContainerInfo_MESOS.Enum(),
			TtyInfo: &mesos.TTYInfo{WindowSize: &mesos.TTYInfo_WindowSize{Rows: proto.Uint32(40), Columns: proto.Uint32(132)}}}
	}
	return c
}

// startSession posts call as Mesos's CLI does (Accept: application/recordio,
// records in cd) and returns the answer; its body is the output stream.
func (ta *testAgent) startSession(t *testing.T, ctx context.Context, cd codec.Codec, call *agentapi.Call, header http.Header) *http.Response {
	t.Helper()
	body, err := codec.JSON.Marshal(call)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ta.url("/api/v1"), bytes.NewReader(body))
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", codec.MediaTypeJSON)
	req.Header.Set("Accept", "application/recordio")
	req.Header.Set("Message-Accept", cd.MediaType())
	client := &http.Client{Transport: ta.client.Transport} // no timeout: a stream
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// output reads a session's stream to its end.
func output(t *testing.T, resp *http.Response, cd codec.Codec) (stdout, stderr string) {
	t.Helper()
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("session: %d %s", resp.StatusCode, b)
	}
	if ct, mct := resp.Header.Get("Content-Type"), resp.Header.Get("Message-Content-Type"); ct != "application/recordio" || mct != cd.MediaType() {
		t.Fatalf("session answer Content-Type %q, Message-Content-Type %q", ct, mct)
	}
	dec := recordio.NewDecoder(resp.Body, cd, 0)
	var out, errOut strings.Builder
	for {
		rec := &agentapi.ProcessIO{}
		err := dec.Decode(rec)
		if errors.Is(err, io.EOF) {
			return out.String(), errOut.String()
		}
		if err != nil {
			t.Fatalf("session stream: %v", err)
		}
		switch rec.GetData().GetType() {
		case agentapi.ProcessIO_Data_STDOUT:
			out.Write(rec.GetData().GetData())
		case agentapi.ProcessIO_Data_STDERR:
			errOut.Write(rec.GetData().GetData())
		}
	}
}

func waitCall(id, parent string) *agentapi.Call {
	return &agentapi.Call{Type: agentapi.Call_WAIT_NESTED_CONTAINER.Enum(), WaitNestedContainer: &agentapi.Call_WaitNestedContainer{
		ContainerId: &mesos.ContainerID{Value: proto.String(id), Parent: &mesos.ContainerID{Value: proto.String(parent)}}}}
}

func TestSessionRunsInTheTaskContainer(t *testing.T) {
	c := newCluster(t, nil)
	ta := c.startAgent(t, t.TempDir(), 0, nil)
	task := commandTask("entered", "exec sleep 1000")
	task.Command.Environment = &mesos.Environment{Variables: []*mesos.Environment_Variable{{Name: proto.String("TASK_VAR"), Value: proto.String("t")}}}
	fw, cid := taskContainer(t, c, ta, task)
	dir := ta.state(t).executor(fw.ID(), "entered").Directory
	for i, cd := range operatorCodecs {
		t.Run(cd.MediaType(), func(t *testing.T) {
			id := "session-" + string(rune('a'+i))
			resp := ta.startSession(t, context.Background(), cd, sessionCall(id, cid,
				`pwd; echo "$TASK_VAR $SESSION_VAR $MESOS_SANDBOX ${MESOS_EXECUTOR_AUTHENTICATION_TOKEN:-notoken}"; echo oops >&2; exit 3`, false), nil)
			stdout, stderr := output(t, resp, cd)
			if want := dir + "\nt s " + dir + " notoken\n"; stdout != want || stderr != "oops\n" {
				t.Errorf("session output %q, stderr %q; want %q, %q", stdout, stderr, want, "oops\n")
			}
			// The status is there as soon as the stream ended.
			if w := ta.opCall(t, cd, waitCall(id, cid)).GetWaitNestedContainer(); w.GetExitStatus() != 3<<8 {
				t.Errorf("WAIT_NESTED_CONTAINER: %v, want exit status %d", w, 3<<8)
			}
			wc := &agentapi.Call{Type: agentapi.Call_WAIT_CONTAINER.Enum(), WaitContainer: &agentapi.Call_WaitContainer{ContainerId: &mesos.ContainerID{Value: proto.String(id)}}}
			if w := ta.opCall(t, cd, wc).GetWaitContainer(); w.GetExitStatus() != 3<<8 {
				t.Errorf("WAIT_CONTAINER: %v", w)
			}
			rm := &agentapi.Call{Type: agentapi.Call_REMOVE_NESTED_CONTAINER.Enum(), RemoveNestedContainer: &agentapi.Call_RemoveNestedContainer{ContainerId: &mesos.ContainerID{Value: proto.String(id)}}}
			if status, body, _ := ta.opPost(t, cd, cd, rm, nil); status != http.StatusOK {
				t.Errorf("REMOVE_NESTED_CONTAINER: %d %s", status, body)
			}
			if status, _, _ := ta.opPost(t, cd, cd, waitCall(id, cid), nil); status != http.StatusNotFound {
				t.Errorf("WAIT after REMOVE: %d, want 404", status)
			}
		})
	}
}

// attachInput streams records to ATTACH_CONTAINER_INPUT and returns the
// answer's status.
func (ta *testAgent) attachInput(t *testing.T, id string, header http.Header, recs ...*agentapi.Call_AttachContainerInput) (int, string) {
	t.Helper()
	var body bytes.Buffer
	enc := recordio.NewEncoder(&body, codec.JSON)
	first := &agentapi.Call_AttachContainerInput{Type: agentapi.Call_AttachContainerInput_CONTAINER_ID.Enum(), ContainerId: &mesos.ContainerID{Value: proto.String(id)}}
	for _, r := range append([]*agentapi.Call_AttachContainerInput{first}, recs...) {
		if err := enc.Encode(&agentapi.Call{Type: agentapi.Call_ATTACH_CONTAINER_INPUT.Enum(), AttachContainerInput: r}); err != nil {
			t.Fatal(err)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, ta.url("/api/v1"), &body)
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/recordio")
	req.Header.Set("Message-Content-Type", codec.MediaTypeJSON)
	resp, err := ta.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func stdinRecord(data string) *agentapi.Call_AttachContainerInput {
	return &agentapi.Call_AttachContainerInput{Type: agentapi.Call_AttachContainerInput_PROCESS_IO.Enum(), ProcessIo: &agentapi.ProcessIO{
		Type: agentapi.ProcessIO_DATA.Enum(), Data: &agentapi.ProcessIO_Data{Type: agentapi.ProcessIO_Data_STDIN.Enum(), Data: []byte(data)}}}
}

func controlRecord(ctl *agentapi.ProcessIO_Control) *agentapi.Call_AttachContainerInput {
	return &agentapi.Call_AttachContainerInput{Type: agentapi.Call_AttachContainerInput_PROCESS_IO.Enum(), ProcessIo: &agentapi.ProcessIO{
		Type: agentapi.ProcessIO_CONTROL.Enum(), Control: ctl}}
}

func TestSessionInputAndTerminal(t *testing.T) {
	c := newCluster(t, nil)
	ta := c.startAgent(t, t.TempDir(), 0, nil)
	_, cid := taskContainer(t, c, ta, commandTask("input", "exec sleep 1000"))
	for _, tc := range []struct {
		name, cmd string
		tty       bool
		want      []string
	}{
		{"pipes", "tr a-z A-Z", false, []string{"HELLO\nWORLD\n"}},
		// The terminal echoes the input, reports its size (set at the
		// start, then resized), and ^D (the end of input) ends cat.
		{"terminal", "test -t 0 && echo tty; stty size; read line; stty size; echo got $line", true, []string{"tty", "40 132", "got hello", "50 80"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := "input-" + tc.name
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			resp := ta.startSession(t, ctx, codec.JSON, sessionCall(id, cid, tc.cmd, tc.tty), nil)
			done := make(chan string, 1)
			go func() { out, _ := output(t, resp, codec.JSON); done <- out }()
			resize := controlRecord(&agentapi.ProcessIO_Control{Type: agentapi.ProcessIO_Control_TTY_INFO.Enum(),
				TtyInfo: &mesos.TTYInfo{WindowSize: &mesos.TTYInfo_WindowSize{Rows: proto.Uint32(50), Columns: proto.Uint32(80)}}})
			heartbeat := controlRecord(&agentapi.ProcessIO_Control{Type: agentapi.ProcessIO_Control_HEARTBEAT.Enum()})
			recs := []*agentapi.Call_AttachContainerInput{heartbeat, stdinRecord("hello\n"), stdinRecord("world\n"), stdinRecord("")}
			if tc.tty {
				time.Sleep(300 * time.Millisecond) // the first stty size runs before the resize
				recs = []*agentapi.Call_AttachContainerInput{heartbeat, resize, stdinRecord("hello\n")}
			}
			if status, body := ta.attachInput(t, id, nil, recs...); status != http.StatusOK {
				t.Fatalf("ATTACH_CONTAINER_INPUT: %d %s", status, body)
			}
			out := <-done
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output %q, want %q in it", out, w)
				}
			}
			if w := ta.opCall(t, codec.JSON, waitCall(id, cid)).GetWaitNestedContainer(); w.GetExitStatus() != 0 {
				t.Errorf("exit status %d, want 0", w.GetExitStatus())
			}
		})
	}
}

// The session's life is its connection's; KILL ends it too.
func TestSessionEnds(t *testing.T) {
	c := newCluster(t, nil)
	ta := c.startAgent(t, t.TempDir(), 0, nil)
	fw, cid := taskContainer(t, c, ta, commandTask("ends", "exec sleep 1000"))

	ctx, cancel := context.WithCancel(context.Background())
	resp := ta.startSession(t, ctx, codec.JSON, sessionCall("gone", cid, "echo started; exec sleep 1000", false), nil)
	dec := recordio.NewDecoder(resp.Body, codec.JSON, 0)
	rec := &agentapi.ProcessIO{}
	if err := dec.Decode(rec); err != nil || !strings.Contains(string(rec.GetData().GetData()), "started") {
		t.Fatalf("first record %v %v", rec, err)
	}
	cancel()
	resp.Body.Close()
	if w := ta.opCall(t, codec.JSON, waitCall("gone", cid)).GetWaitNestedContainer(); w.GetExitStatus()&0x7f != 9 {
		t.Errorf("a session whose client went: exit status %#x, want killed by SIGKILL", w.GetExitStatus())
	}

	resp = ta.startSession(t, context.Background(), codec.JSON, sessionCall("killed", cid, "exec sleep 1000", false), nil)
	kill := &agentapi.Call{Type: agentapi.Call_KILL_NESTED_CONTAINER.Enum(), KillNestedContainer: &agentapi.Call_KillNestedContainer{
		ContainerId: &mesos.ContainerID{Value: proto.String("killed"), Parent: &mesos.ContainerID{Value: proto.String(cid)}}, Signal: proto.Int32(15)}}
	rm := &agentapi.Call{Type: agentapi.Call_REMOVE_NESTED_CONTAINER.Enum(), RemoveNestedContainer: &agentapi.Call_RemoveNestedContainer{ContainerId: &mesos.ContainerID{Value: proto.String("killed")}}}
	if status, body, _ := ta.opPost(t, codec.JSON, codec.JSON, rm, nil); status != http.StatusConflict {
		t.Errorf("REMOVE of a running session: %d %s, want 409", status, body)
	}
	if status, body, _ := ta.opPost(t, codec.JSON, codec.JSON, kill, nil); status != http.StatusOK {
		t.Fatalf("KILL_NESTED_CONTAINER: %d %s", status, body)
	}
	output(t, resp, codec.JSON)
	if w := ta.opCall(t, codec.JSON, waitCall("killed", cid)).GetWaitNestedContainer(); w.GetExitStatus()&0x7f != 15 {
		t.Errorf("killed session: exit status %#x, want SIGTERM", w.GetExitStatus())
	}
	// A task killed takes its sessions along.
	resp = ta.startSession(t, context.Background(), codec.JSON, sessionCall("orphan", cid, "exec sleep 1000", false), nil)
	fw.kill(ta, "ends")
	output(t, resp, codec.JSON)
}

func TestSessionRefusals(t *testing.T) {
	c := newCluster(t, nil)
	ta := c.startAgent(t, t.TempDir(), 0, nil)
	fw, cid := taskContainer(t, c, ta, commandTask("short", "exec sleep 1000"))
	fw.launch(ta, commandTask("done", "true"))
	st := fw.waitState("done", mesos.TaskState_TASK_FINISHED, 20*time.Second)
	doneCID := st.GetContainerStatus().GetContainerId().GetValue()

	running := ta.startSession(t, context.Background(), codec.JSON, sessionCall("dup", cid, "exec sleep 1000", false), nil)
	defer running.Body.Close()
	other := sessionCall("user", cid, "id", false)
	other.LaunchNestedContainerSession.Command.User = proto.String("nobody-else")
	noParent := sessionCall("orphan", cid, "id", false)
	noParent.LaunchNestedContainerSession.ContainerId.Parent = nil
	for _, tc := range []struct {
		name string
		call *agentapi.Call
		want int
		says string
	}{
		{"unknown container", sessionCall("x", "no-such-container", "id", false), http.StatusNotFound, "not found"},
		{"finished task", sessionCall("x", doneCID, "id", false), http.StatusConflict, "ended"},
		{"id with a slash", sessionCall("../x", cid, "id", false), http.StatusBadRequest, "invalid"},
		{"parent with a slash", sessionCall("x", "a/b", "id", false), http.StatusBadRequest, "invalid"},
		{"no parent", noParent, http.StatusBadRequest, "parent"},
		{"no command", sessionCall("x", cid, "", false), http.StatusBadRequest, "command"},
		{"another user", other, http.StatusForbidden, "task's user"},
		{"id in use", sessionCall("dup", cid, "id", false), http.StatusConflict, "exists"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := ta.startSession(t, context.Background(), codec.JSON, tc.call, nil)
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want || !strings.Contains(string(b), tc.says) {
				t.Errorf("%d %q, want %d saying %q", resp.StatusCode, b, tc.want, tc.says)
			}
		})
	}
	if status, body := ta.attachInput(t, "no-such-session", nil, stdinRecord("x")); status != http.StatusNotFound {
		t.Errorf("ATTACH_CONTAINER_INPUT to nothing: %d %s, want 404", status, body)
	}
}
