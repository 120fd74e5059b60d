package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
	schedv1 "github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/containerizer"
	"github.com/mesolite/mesolite/containerizer/fake"
	"github.com/mesolite/mesolite/internal/testutil"
	"github.com/mesolite/mesolite/scheduler/schedulertest"
)

// fakeCluster is a fake master that offers resources from two agents when
// a framework subscribes and answers a launch with the scripted updates.
// Tests of what a run does with real offers and real task outcomes run in
// a real cluster (cluster_test.go); fakeCluster is kept for the tests whose
// point is the scheduler-protocol conversation itself: the exact calls a
// run makes (DECLINE, SUPPRESS, an ACKNOWLEDGE per update, TEARDOWN), and
// events a real master sends only at moments a test cannot choose (a
// resent update, a stream dropped right after an acknowledgement, an ERROR
// on subscribing).
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
	var out, errOut testutil.SyncBuffer
	code := Run(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestRunFinished runs a task in a real cluster: the first agent's offer is
// too small (said, and declined), a second agent's fits; the task runs
// with its environment and finishes, and its stdout is where the run says.
func TestRunFinished(t *testing.T) {
	// The small agent alone cannot fit the task: the run must not refuse
	// it before the big one has registered.
	old := fitCheckInterval
	fitCheckInterval = time.Minute
	t.Cleanup(func() { fitCheckInterval = old })
	for _, ct := range []string{"application/json", "application/x-protobuf"} {
		t.Run(ct, func(t *testing.T) {
			c := newTestCluster(t)
			c.addAgent(t, "small-host", "cpus:1;mem:16;disk:100;ports:[31000-31010]", nil)
			r := startRun(context.Background(), "--master="+c.addr, "--name=hi",
				"--command=echo $GREETING", "--resources=cpus:0.1;mem:32", "--env=GREETING=hi", "--content_type="+ct)
			r.waitOutput(t, "offer from small-host does not fit: mem: want 32, offered 16\n")
			big := c.addAgent(t, "big-host", "cpus:4;mem:4096;disk:100;ports:[31000-31010]", nil)
			code, out, errOut := r.wait(t)
			if code != 0 {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
			}
			fwID := r.frameworkID(t)
			_, rest, _ := strings.Cut(out, "launching task ")
			id, _, _ := strings.Cut(rest, " ")
			sandbox := "/frameworks/" + fwID + "/executors/" + id + "/runs/latest"
			stdout := "http://" + big.Endpoint() + "/files/read?path=" + sandbox + "/stdout&offset=0"
			for _, want := range []string{
				"subscribed to master " + c.addr + " as framework " + fwID + "\n",
				"waiting for an offer with cpus:0.1; mem:32\n",
				"offer from small-host does not fit: mem: want 32, offered 16\n",
				"launching task " + id + " on agent " + big.ID() + " (big-host) with cpus:0.1; mem:32\n",
				"sandbox: agent " + big.Endpoint() + ", path " + sandbox + "\n",
				"  stdout: " + stdout + "\n",
				"  logs:   mesolite logs --master=" + c.addr + " " + id + "\n",
				"TASK_STARTING (source: SOURCE_EXECUTOR)\nTASK_RUNNING (source: SOURCE_EXECUTOR)\n" +
					"  container address: 127.0.0.1\n" +
					"TASK_FINISHED: Command exited with status 0 (source: SOURCE_EXECUTOR)\n",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			if !strings.HasPrefix(id, "hi.") {
				t.Errorf("task id %q", id)
			}
			// The stdout the run points at is the task's, environment
			// included.
			resp, err := http.Get(stdout)
			if err != nil {
				t.Fatal(err)
			}
			var read struct{ Data string }
			err = json.NewDecoder(resp.Body).Decode(&read)
			resp.Body.Close()
			if err != nil || read.Data != "hi\n" {
				t.Errorf("stdout at %s: %q (%v), want the task's \"hi\"", stdout, read.Data, err)
			}
			// The framework subscribed as mesolite-run, with TASK_KILLING,
			// as the user; the run tore it down.
			fw := c.framework(t, fwID, true)
			if fw == nil {
				t.Fatalf("framework %s not torn down", fwID)
			}
			if fw.Name != "mesolite-run" || !slices.Contains(fw.Capabilities, "TASK_KILLING_STATE") || fw.User == "" {
				t.Fatalf("framework %+v", fw)
			}
		})
	}
}

// TestRunSchedulerCalls is the conversation of a run with the master, call
// by call: it declines the offer that does not fit, suppresses offers once
// it launched, acknowledges every update with a uuid, prints a resent
// update once, and tears down. A scripted master is the point here: it
// shows each call, and resends an update when the test says.
func TestRunSchedulerCalls(t *testing.T) {
	f := newFakeCluster(t)
	f.updates = []*mesos.TaskStatus{
		status(mesos.TaskState_TASK_STARTING, "u1", ""),
		status(mesos.TaskState_TASK_RUNNING, "u2", ""),
		status(mesos.TaskState_TASK_RUNNING, "u2", ""), // a resend before the ack
		status(mesos.TaskState_TASK_FINISHED, "u3", "Command exited with status 0"),
	}
	code, out, errOut := runCmd(t, context.Background(), "--master="+f.Addr(), "--name=hi",
		"--command=echo hi", "--resources=cpus:0.1;mem:32", "--env=GREETING=hi")
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if want := "TASK_STARTING (source: SOURCE_EXECUTOR)\nTASK_RUNNING (source: SOURCE_EXECUTOR)\n" +
		"TASK_FINISHED: Command exited with status 0 (source: SOURCE_EXECUTOR)\n"; !strings.Contains(out, want) {
		t.Errorf("output lacks %q (each state once):\n%s", want, out)
	}
	task := f.task()
	if task.GetAgentId().GetValue() != "agent-1" || task.GetCommand().GetEnvironment().GetVariables()[0].GetValue() != "hi" {
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
}

// TestRunFailed: a task whose container is OOM-killed (the fake
// containerizer's) fails the run, with the agent's reason and message.
func TestRunFailed(t *testing.T) {
	c := newTestCluster(t)
	c.addAgent(t, "big-host", "cpus:4;mem:4096;disk:100", fake.New(fake.Options{Script: func(containerizer.LaunchSpec) fake.Script {
		return fake.Script{OOM: true}
	}}))
	r := startRun(context.Background(), "--master="+c.addr, "--name=hog", "--command=hog", "--resources=cpus:0.1;mem:64")
	code, out, _ := r.wait(t)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, out)
	}
	if !strings.Contains(out, "TASK_FAILED: Memory limit exceeded") ||
		!strings.Contains(out, "(reason: REASON_CONTAINER_LIMITATION_MEMORY, source: SOURCE_AGENT)\n") {
		t.Fatalf("output lacks the OOM failure:\n%s", out)
	}
	if c.framework(t, r.frameworkID(t), true) == nil {
		t.Fatal("framework not torn down")
	}
}

// TestRunDockerPortMapping: the ports a run maps are taken from the offer
// (a fixed one, and the lowest free one for 0), and reach the agent's
// containerizer (the fake, which records the launch) as the master let
// them through.
func TestRunDockerPortMapping(t *testing.T) {
	c := newTestCluster(t)
	launched := make(chan *mesos.TaskInfo, 1)
	c.addAgent(t, "big-host", "cpus:4;mem:4096;disk:100;ports:[31000-31010]", fake.New(fake.Options{Script: func(spec containerizer.LaunchSpec) fake.Script {
		select {
		case launched <- spec.Task:
		default:
		}
		// No docker here, nor an executor: the container ends at once.
		return fake.Script{Exit: true}
	}}))
	r := startRun(context.Background(), "--master="+c.addr, "--name=web", "--docker_image=busybox",
		"--port_mapping=31001:8080", "--port_mapping=0:9090/udp", "--shell=false", "--id=web-1")
	var task *mesos.TaskInfo
	select {
	case task = <-launched:
	case <-time.After(15 * time.Second):
		t.Fatalf("nothing launched\n%s", r.out.String())
	}
	code, out, errOut := r.wait(t)
	// The fake container ended before an executor subscribed: TASK_FAILED.
	if code != 1 || !strings.Contains(out, "TASK_FAILED") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	d := task.GetContainer().GetDocker()
	if d.GetNetwork() != mesos.ContainerInfo_DockerInfo_BRIDGE || d.GetPortMappings()[0].GetHostPort() != 31001 ||
		d.GetPortMappings()[1].GetHostPort() != 31000 || d.GetPortMappings()[1].GetProtocol() != "udp" {
		t.Fatalf("docker %v", d)
	}
	if got := describeResources(task.GetResources()); got != "cpus:0.1; mem:32; ports:[31000-31001]" {
		t.Fatalf("resources %s", got)
	}
	if !strings.Contains(out, "/frameworks/"+r.frameworkID(t)+"/executors/web-1/runs/latest") {
		t.Fatalf("output:\n%s", out)
	}
}

// TestRunInterrupted: Ctrl-C while the task runs kills it (TASK_KILLING,
// as the run understands it, then TASK_KILLED) and tears the framework
// down; offers were suppressed while it ran.
func TestRunInterrupted(t *testing.T) {
	c := newTestCluster(t)
	c.addAgent(t, "big-host", "cpus:4;mem:4096;disk:100", nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := startRun(ctx, "--master="+c.addr, "--name=sleepy", "--command=sleep 1000")
	r.waitOutput(t, "TASK_RUNNING")
	fwID := r.frameworkID(t)
	if fw := c.framework(t, fwID, false); fw == nil || !slices.Contains(fw.SuppressedRoles, "*") {
		t.Errorf("offers not suppressed while the task runs: %+v", fw)
	}
	cancel() // Ctrl-C once the task runs
	code, out, _ := r.wait(t)
	if code != exitInterrupted {
		t.Fatalf("exit %d, want %d\n%s", code, exitInterrupted, out)
	}
	for _, want := range []string{"interrupted; killing task sleepy.", "TASK_KILLING", "TASK_KILLED"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	fw := c.framework(t, fwID, true)
	if fw == nil {
		t.Fatal("framework not torn down")
	}
	if len(fw.CompletedTasks) != 1 || !strings.HasPrefix(fw.CompletedTasks[0].ID, "sleepy.") || fw.CompletedTasks[0].State != "TASK_KILLED" {
		t.Fatalf("tasks of the framework: %+v", fw.CompletedTasks)
	}
}

// TestRunTimeoutWithoutOffer: no agent has room; the run says why each
// offer does not fit and gives up at its timeout, before it would have
// refused the request.
func TestRunTimeoutWithoutOffer(t *testing.T) {
	c := newTestCluster(t)
	c.addAgent(t, "small-host", "cpus:1;mem:16;disk:100", nil)
	r := startRun(context.Background(), "--master="+c.addr, "--name=big", "--command=true",
		"--resources=cpus:1;mem:1024", "--timeout=300ms")
	code, out, _ := r.wait(t)
	if code != exitTimeout || !strings.Contains(out, "timed out after 300ms; tearing down") ||
		!strings.Contains(out, "offer from small-host does not fit: mem: want 1024, offered 16") {
		t.Fatalf("exit %d\n%s", code, out)
	}
	if c.framework(t, r.frameworkID(t), true) == nil {
		t.Fatal("framework not torn down")
	}
}

func TestRunMasterUnreachable(t *testing.T) {
	addr := "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))
	code, out, errOut := runCmd(t, context.Background(), "--master="+addr, "--name=x", "--command=true")
	if code != 1 || !strings.Contains(errOut, "mesolite run: cannot reach master at "+addr+": ") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
}

// TestRunErrorEvent: an ERROR event ends the run with the master's word.
// Scripted: a real master refuses a framework at SUBSCRIBE with an HTTP
// status, and sends ERROR only to one it removed or that failed over.
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
			"--task=", "--framework_name=", "--role=", "--timeout=", "--output_lines=", "$MESOS_MASTER", "137",
		}, ""},
		{"no name", []string{"--command=true"}, 2, nil, "--name is required"},
		{"unknown flag", []string{"--bogus"}, 2, nil, "unknown flag --bogus"},
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

// TestRunResubscribeReconciles: a run whose master goes away while its task
// runs re-subscribes, reconciles, and takes the answer (which has no uuid,
// so no acknowledgement). Scripted: the stream is dropped right after the
// RUNNING acknowledgement, and the test shows that no ACKNOWLEDGE follows.
func TestRunResubscribeReconciles(t *testing.T) {
	f := newFakeCluster(t)
	f.updates = []*mesos.TaskStatus{status(mesos.TaskState_TASK_RUNNING, "running", "")}
	f.onAck = func(uuid string) {
		if uuid == "running" {
			go f.DropStream() // the master fails over while the task runs
		}
	}
	done := make(chan int)
	var out, errOut testutil.SyncBuffer
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

// An executor's end is news only when abnormal: one that exits 0 before
// its task's last update reaches the framework (the update waits for the
// previous one's acknowledgement, the executor does not) is not printed
// between the updates; one killed by a signal is.
func TestRunExecutorEnd(t *testing.T) {
	for _, c := range []struct {
		name   string
		status int32
		last   *mesos.TaskStatus
		code   int
		says   string
	}{
		{"clean exit", 0, status(mesos.TaskState_TASK_FINISHED, "u3", "Command exited with status 0"), 0, ""},
		{"killed", 9, status(mesos.TaskState_TASK_FAILED, "u3", "Executor terminated"), 1, "executor hi-exec on agent agent-1 terminated (status 9)\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFakeCluster(t)
			f.OnCall = func(call *schedv1.Call) {
				f.onCall(call)
				if call.GetType() != schedv1.Call_ACCEPT {
					return
				}
				go func() {
					task := f.task()
					f.sendUpdates(task, []*mesos.TaskStatus{status(mesos.TaskState_TASK_STARTING, "u1", ""), status(mesos.TaskState_TASK_RUNNING, "u2", "")})
					f.send(&schedv1.Event{Type: schedv1.Event_FAILURE.Enum(), Failure: &schedv1.Event_Failure{
						AgentId: task.GetAgentId(), ExecutorId: &mesos.ExecutorID{Value: mesos.Ptr("hi-exec")}, Status: mesos.Ptr(c.status)}})
					f.sendUpdates(task, []*mesos.TaskStatus{c.last})
				}()
			}
			f.updates = nil
			code, out, errOut := runCmd(t, context.Background(), "--master="+f.Addr(), "--name=hi", "--command=true", "--resources=cpus:0.1;mem:32")
			if code != c.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, c.code, out, errOut)
			}
			printed := strings.Contains(out, "terminated (status")
			if c.says == "" && printed {
				t.Errorf("a clean executor exit printed:\n%s", out)
			}
			if c.says != "" && !strings.Contains(out, "TASK_RUNNING (source: SOURCE_EXECUTOR)\n"+c.says) {
				t.Errorf("output lacks %q after TASK_RUNNING:\n%s", c.says, out)
			}
		})
	}
}
