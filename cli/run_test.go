package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
	schedv1 "github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/internal/testutil"
	"github.com/mesolite/mesolite/scheduler/schedulertest"
)

// syncBuffer is a bytes.Buffer a test may read while a command writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fakeCluster is a fake master that offers resources from two agents when
// a framework subscribes and answers a launch with the scripted updates.
type fakeCluster struct {
	*schedulertest.Master
	t       *testing.T
	offers  []*mesos.Offer
	updates []*mesos.TaskStatus // sent in order after ACCEPT; task_id filled in
	onKill  []*mesos.TaskStatus // sent after KILL
	onAck   func(uuid string)

	mu       sync.Mutex
	launched *mesos.TaskInfo
}

func newFakeCluster(t *testing.T) *fakeCluster {
	t.Helper()
	f := &fakeCluster{Master: schedulertest.NewMaster(t), t: t}
	f.offers = []*mesos.Offer{
		testOffer("o-small", "agent-0", "small-host", scalar("cpus", 1), scalar("mem", 16)),
		testOffer("o-big", "agent-1", "big-host", scalar("cpus", 4), scalar("mem", 4096), ranges("ports", [2]uint64{31000, 31010})),
	}
	f.OnCall = f.onCall
	f.Mux.HandleFunc("GET /master/state", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{
			"slaves": []map[string]any{
				{"id": "agent-1", "pid": "slave(1)@127.0.0.1:5051", "hostname": "big-host", "port": 5051},
			},
		})
	})
	return f
}

func testOffer(id, agent, host string, rs ...*mesos.Resource) *mesos.Offer {
	return &mesos.Offer{
		Id:          &mesos.OfferID{Value: mesos.Ptr(id)},
		FrameworkId: &mesos.FrameworkID{Value: mesos.Ptr("fake-framework-0001")},
		AgentId:     &mesos.AgentID{Value: mesos.Ptr(agent)},
		Hostname:    mesos.Ptr(host),
		Resources:   rs,
	}
}

func status(state mesos.TaskState, uuid, message string) *mesos.TaskStatus {
	st := &mesos.TaskStatus{State: state.Enum(), Source: mesos.TaskStatus_SOURCE_EXECUTOR.Enum()}
	if uuid != "" {
		st.Uuid = []byte(uuid)
	}
	if message != "" {
		st.Message = mesos.Ptr(message)
	}
	return st
}

func (f *fakeCluster) onCall(call *schedv1.Call) {
	switch call.GetType() {
	case schedv1.Call_SUBSCRIBE:
		go f.send(&schedv1.Event{Type: schedv1.Event_OFFERS.Enum(), Offers: &schedv1.Event_Offers{Offers: f.offers}})
	case schedv1.Call_ACCEPT:
		task := call.GetAccept().GetOperations()[0].GetLaunch().GetTaskInfos()[0]
		f.mu.Lock()
		f.launched = task
		f.mu.Unlock()
		go f.sendUpdates(task, f.updates)
	case schedv1.Call_KILL:
		f.mu.Lock()
		task := f.launched
		f.mu.Unlock()
		go f.sendUpdates(task, f.onKill)
	case schedv1.Call_ACKNOWLEDGE:
		if f.onAck != nil {
			f.onAck(string(call.GetAcknowledge().GetUuid()))
		}
	}
}

func (f *fakeCluster) send(ev *schedv1.Event) {
	if err := f.Send(ev); err != nil {
		f.t.Log(err)
	}
}

func (f *fakeCluster) sendUpdates(task *mesos.TaskInfo, updates []*mesos.TaskStatus) {
	for _, u := range updates {
		st := &mesos.TaskStatus{
			TaskId: task.GetTaskId(), AgentId: task.GetAgentId(), State: u.State, Uuid: u.Uuid,
			Message: u.Message, Reason: u.Reason, Source: u.Source,
			ExecutorId: &mesos.ExecutorID{Value: mesos.Ptr(task.GetTaskId().GetValue())},
		}
		f.send(&schedv1.Event{Type: schedv1.Event_UPDATE.Enum(), Update: &schedv1.Event_Update{Status: st}})
	}
}

func (f *fakeCluster) task() *mesos.TaskInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.launched
}

func (f *fakeCluster) count(typ schedv1.Call_Type) int {
	n := 0
	for _, c := range f.Calls() {
		if c.GetType() == typ {
			n++
		}
	}
	return n
}

func runCmd(t *testing.T, ctx context.Context, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut syncBuffer
	code := Run(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestRunFinished(t *testing.T) {
	for _, ct := range []string{"application/json", "application/x-protobuf"} {
		t.Run(ct, func(t *testing.T) {
			f := newFakeCluster(t)
			f.updates = []*mesos.TaskStatus{
				status(mesos.TaskState_TASK_STARTING, "u1", ""),
				status(mesos.TaskState_TASK_RUNNING, "u2", ""),
				status(mesos.TaskState_TASK_RUNNING, "u2", ""), // a resend before the ack
				status(mesos.TaskState_TASK_FINISHED, "u3", "Command exited with status 0"),
			}
			code, out, errOut := runCmd(t, context.Background(), "--master="+f.Addr(), "--name=hi",
				"--command=echo hi", "--resources=cpus:0.1;mem:32", "--env=GREETING=hi", "--content_type="+ct)
			if code != 0 {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
			}
			task := f.task()
			id := task.GetTaskId().GetValue()
			for _, want := range []string{
				"subscribed to master " + f.Addr() + " as framework fake-framework-0001\n",
				"waiting for an offer with cpus:0.1; mem:32\n",
				"offer from small-host does not fit: mem: want 32, offered 16\n",
				"launching task " + id + " on agent agent-1 (big-host) with cpus:0.1; mem:32\n",
				"sandbox: agent 127.0.0.1:5051, path /frameworks/fake-framework-0001/executors/" + id + "/runs/latest\n",
				"  stdout: http://127.0.0.1:5051/files/read?path=/frameworks/fake-framework-0001/executors/" + id + "/runs/latest/stdout&offset=0\n",
				"  logs:   mesolite logs --master=" + f.Addr() + " " + id + "\n",
				"TASK_STARTING (source: SOURCE_EXECUTOR)\nTASK_RUNNING (source: SOURCE_EXECUTOR)\n" +
					"TASK_FINISHED: Command exited with status 0 (source: SOURCE_EXECUTOR)\n",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			if !strings.HasPrefix(id, "hi.") || task.GetAgentId().GetValue() != "agent-1" ||
				task.GetCommand().GetEnvironment().GetVariables()[0].GetValue() != "hi" {
				t.Fatalf("launched %v", task)
			}
			sub := f.Calls()[0].GetSubscribe().GetFrameworkInfo()
			caps := map[mesos.FrameworkInfo_Capability_Type]bool{}
			for _, c := range sub.GetCapabilities() {
				caps[c.GetType()] = true
			}
			if sub.GetName() != "mesolite-run" || !caps[mesos.FrameworkInfo_Capability_TASK_KILLING_STATE] || sub.GetUser() == "" {
				t.Fatalf("framework %v", sub)
			}
			decline := f.WaitCall(t, schedv1.Call_DECLINE)
			if decline.GetDecline().GetOfferIds()[0].GetValue() != "o-small" {
				t.Fatalf("declined %v", decline)
			}
			f.WaitCall(t, schedv1.Call_SUPPRESS)
			f.WaitCall(t, schedv1.Call_TEARDOWN)
			if n := f.count(schedv1.Call_ACKNOWLEDGE); n < 3 {
				t.Fatalf("%d acknowledgements, want one per update with a uuid", n)
			}
		})
	}
}

func TestRunFailed(t *testing.T) {
	f := newFakeCluster(t)
	oom := status(mesos.TaskState_TASK_FAILED, "u2", "Memory limit exceeded: 64MB, peak 65MB")
	oom.Reason = mesos.TaskStatus_REASON_CONTAINER_LIMITATION_MEMORY.Enum()
	oom.Source = mesos.TaskStatus_SOURCE_AGENT.Enum()
	f.updates = []*mesos.TaskStatus{status(mesos.TaskState_TASK_RUNNING, "u1", ""), oom}
	code, out, _ := runCmd(t, context.Background(), "--master="+f.Addr(), "--name=hog", "--command=hog", "--resources=cpus:0.1;mem:64")
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, out)
	}
	want := "TASK_FAILED: Memory limit exceeded: 64MB, peak 65MB (reason: REASON_CONTAINER_LIMITATION_MEMORY, source: SOURCE_AGENT)\n"
	if !strings.Contains(out, want) {
		t.Fatalf("output lacks %q:\n%s", want, out)
	}
	f.WaitCall(t, schedv1.Call_TEARDOWN)
}

func TestRunDockerPortMapping(t *testing.T) {
	f := newFakeCluster(t)
	f.updates = []*mesos.TaskStatus{status(mesos.TaskState_TASK_FINISHED, "u1", "")}
	code, out, errOut := runCmd(t, context.Background(), "--master="+f.Addr(), "--name=web", "--docker_image=busybox",
		"--port_mapping=31001:8080", "--port_mapping=0:9090/udp", "--shell=false", "--id=web-1")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	task := f.task()
	d := task.GetContainer().GetDocker()
	if d.GetNetwork() != mesos.ContainerInfo_DockerInfo_BRIDGE || d.GetPortMappings()[0].GetHostPort() != 31001 ||
		d.GetPortMappings()[1].GetHostPort() != 31000 || d.GetPortMappings()[1].GetProtocol() != "udp" {
		t.Fatalf("docker %v", d)
	}
	if got := describeResources(task.GetResources()); got != "cpus:0.1; mem:32; ports:[31000-31001]" {
		t.Fatalf("resources %s", got)
	}
	if !strings.Contains(out, "/frameworks/fake-framework-0001/executors/web-1/runs/latest") {
		t.Fatalf("output:\n%s", out)
	}
}

func TestRunInterrupted(t *testing.T) {
	f := newFakeCluster(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.updates = []*mesos.TaskStatus{status(mesos.TaskState_TASK_RUNNING, "running", "")}
	f.onKill = []*mesos.TaskStatus{status(mesos.TaskState_TASK_KILLING, "u2", ""), status(mesos.TaskState_TASK_KILLED, "u3", "")}
	f.onAck = func(uuid string) {
		if uuid == "running" {
			cancel() // Ctrl-C once the task runs
		}
	}
	code, out, _ := runCmd(t, ctx, "--master="+f.Addr(), "--name=sleepy", "--command=sleep 1000")
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{"interrupted; killing task sleepy.", "TASK_KILLING", "TASK_KILLED"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	kill := f.WaitCall(t, schedv1.Call_KILL)
	if kill.GetKill().GetTaskId().GetValue() != f.task().GetTaskId().GetValue() || kill.GetKill().GetAgentId().GetValue() != "agent-1" {
		t.Fatalf("KILL %v", kill)
	}
	f.WaitCall(t, schedv1.Call_TEARDOWN)
}

func TestRunTimeoutWithoutOffer(t *testing.T) {
	f := newFakeCluster(t)
	f.offers = []*mesos.Offer{testOffer("o-small", "agent-0", "small-host", scalar("cpus", 1), scalar("mem", 16))}
	code, out, _ := runCmd(t, context.Background(), "--master="+f.Addr(), "--name=big", "--command=true",
		"--resources=cpus:1;mem:1024", "--timeout=300ms")
	if code != 1 || !strings.Contains(out, "timed out after 300ms; tearing down") ||
		!strings.Contains(out, "offer from small-host does not fit: mem: want 1024, offered 16") {
		t.Fatalf("exit %d\n%s", code, out)
	}
	f.WaitCall(t, schedv1.Call_TEARDOWN)
}

func TestRunMasterUnreachable(t *testing.T) {
	addr := "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))
	code, out, errOut := runCmd(t, context.Background(), "--master="+addr, "--name=x", "--command=true")
	if code != 1 || !strings.Contains(errOut, "mesolite run: cannot reach master at "+addr+": ") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
}

func TestRunErrorEvent(t *testing.T) {
	f := newFakeCluster(t)
	f.offers = nil
	f.OnCall = func(call *schedv1.Call) {
		if call.GetType() == schedv1.Call_SUBSCRIBE {
			go f.send(&schedv1.Event{Type: schedv1.Event_ERROR.Enum(), Error: &schedv1.Event_Error{Message: mesos.Ptr("Framework is not authorized")}})
		}
	}
	code, _, errOut := runCmd(t, context.Background(), "--master="+f.Addr(), "--name=x", "--command=true")
	if code != 1 || !strings.Contains(errOut, "Framework is not authorized") {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
}

func TestRunUsage(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr string
	}{
		{"help lists every flag", []string{"--help"}, 0, []string{
			"Usage: mesolite run", "--master=", "--name=", "--command=", "--shell", "--resources=", "--env=", "--uri=",
			"--executor_command=", "--docker_image=", "--network=", "--port_mapping=", "--force_pull_image", "--privileged",
			"--task=", "--framework_name=", "--role=", "--timeout=", "$MESOS_MASTER",
		}, ""},
		{"no name", []string{"--command=true"}, 2, nil, "--name is required"},
		{"unknown flag", []string{"--bogus"}, 2, nil, "flag provided but not defined: -bogus"},
		{"stray argument", []string{"--name=x", "--command=true", "extra"}, 2, nil, `unexpected argument "extra"`},
		{"bad uri", []string{"--name=x", "--command=true", "--uri=http://h/x,output_file=/abs"}, 2, nil, "relative to the sandbox"},
		{"bad content type", []string{"--name=x", "--command=true", "--content_type=xml"}, 2, nil, "--content_type=xml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := Run(context.Background(), tt.args, &out, &errOut)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, tt.code, out.String(), errOut.String())
			}
			for _, s := range tt.stdout {
				if !strings.Contains(out.String(), s) {
					t.Errorf("stdout lacks %q", s)
				}
			}
			if !strings.Contains(errOut.String(), tt.stderr) {
				t.Errorf("stderr %q lacks %q", errOut.String(), tt.stderr)
			}
		})
	}
}

func TestRunResubscribeReconciles(t *testing.T) {
	f := newFakeCluster(t)
	f.updates = []*mesos.TaskStatus{status(mesos.TaskState_TASK_RUNNING, "running", "")}
	f.onAck = func(uuid string) {
		if uuid == "running" {
			go f.DropStream() // the master fails over while the task runs
		}
	}
	done := make(chan int)
	var out, errOut syncBuffer
	go func() {
		done <- Run(context.Background(), []string{"--master=" + f.Addr(), "--name=x", "--command=true"}, &out, &errOut)
	}()
	rec := f.WaitCall(t, schedv1.Call_RECONCILE)
	if rec.GetReconcile().GetTasks()[0].GetTaskId().GetValue() != f.task().GetTaskId().GetValue() {
		t.Fatalf("RECONCILE %v", rec)
	}
	// The reconciliation answer: no uuid, so no acknowledgement.
	acks := f.count(schedv1.Call_ACKNOWLEDGE)
	fin := status(mesos.TaskState_TASK_FINISHED, "", "")
	fin.Reason = mesos.TaskStatus_REASON_RECONCILIATION.Enum()
	f.sendUpdates(f.task(), []*mesos.TaskStatus{fin})
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d\n%s\n%s", code, out.String(), errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("run did not end\n%s", out.String())
	}
	if !strings.Contains(out.String(), "re-subscribed to master") {
		t.Fatalf("output:\n%s", out.String())
	}
	if f.count(schedv1.Call_ACKNOWLEDGE) != acks {
		t.Fatal("a reconciliation answer was acknowledged")
	}
}
