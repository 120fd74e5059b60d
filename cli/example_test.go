package cli

import (
	"bytes"
	"context"
	"github.com/mesolite/mesolite/internal/testutil"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
	schedv1 "github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/scheduler/schedulertest"
)

func TestExampleFrameworkKeepsInstances(t *testing.T) {
	m := schedulertest.NewMaster(t)
	offers := func(id string) *schedv1.Event {
		return &schedv1.Event{Type: schedv1.Event_OFFERS.Enum(), Offers: &schedv1.Event_Offers{Offers: []*mesos.Offer{
			// Room for two instances, and a third that is not wanted.
			testOffer(id, "agent-1", "node-1", scalar("cpus", 0.5), scalar("mem", 100)),
		}}}
	}
	send := func(ev *schedv1.Event) {
		t.Helper()
		if err := m.Send(ev); err != nil {
			t.Fatal(err)
		}
	}
	update := func(task *mesos.TaskInfo, state mesos.TaskState, uuid string) *schedv1.Event {
		st := &mesos.TaskStatus{TaskId: task.GetTaskId(), AgentId: task.GetAgentId(), State: state.Enum()}
		if uuid != "" {
			st.Uuid = []byte(uuid)
		}
		return &schedv1.Event{Type: schedv1.Event_UPDATE.Enum(), Update: &schedv1.Event_Update{Status: st}}
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out testutil.SyncBuffer
	var errOut bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- ExampleFramework(ctx, []string{"--master=" + m.Addr(), "--image=busybox", "--instances=2",
			"--cpus=0.2", "--mem=40", "--command=sleep 1000", "--refuse_seconds=30"}, &out, &errOut)
	}()
	m.WaitCall(t, schedv1.Call_SUBSCRIBE)

	send(offers("o1"))
	accept := m.WaitCall(t, schedv1.Call_ACCEPT).GetAccept()
	tasks := accept.GetOperations()[0].GetLaunch().GetTaskInfos()
	if len(tasks) != 2 || accept.GetOfferIds()[0].GetValue() != "o1" {
		t.Fatalf("ACCEPT %v, want two tasks on o1", accept)
	}
	for _, task := range tasks {
		d := task.GetContainer().GetDocker()
		if d.GetImage() != "busybox" || task.GetCommand().GetValue() != "sleep 1000" || describeResources(task.GetResources()) != "cpus:0.2; mem:40" {
			t.Fatalf("task %v", task)
		}
	}
	if tasks[0].GetTaskId().GetValue() == tasks[1].GetTaskId().GetValue() {
		t.Fatal("two instances with one task id")
	}
	send(update(tasks[0], mesos.TaskState_TASK_RUNNING, "a"))
	send(update(tasks[1], mesos.TaskState_TASK_RUNNING, "b"))

	// All instances run: the next offer is declined with the filter.
	send(offers("o2"))
	decline := m.WaitCall(t, schedv1.Call_DECLINE).GetDecline()
	if decline.GetOfferIds()[0].GetValue() != "o2" || decline.GetFilters().GetRefuseSeconds() != 30 {
		t.Fatalf("DECLINE %v", decline)
	}

	// `docker kill` of one container: it is relaunched.
	send(update(tasks[1], mesos.TaskState_TASK_FAILED, "c"))
	m.WaitCall(t, schedv1.Call_REVIVE)
	send(offers("o3"))
	relaunch := m.WaitCall(t, schedv1.Call_ACCEPT).GetAccept()
	if n := len(relaunch.GetOperations()[0].GetLaunch().GetTaskInfos()); n != 1 {
		t.Fatalf("relaunched %d instances, want 1", n)
	}
	newTask := relaunch.GetOperations()[0].GetLaunch().GetTaskInfos()[0]

	// The master fails over: the framework reconciles what it runs.
	m.DropStream()
	var explicit, implicit bool
	for !explicit || !implicit {
		rec := m.WaitCall(t, schedv1.Call_RECONCILE).GetReconcile()
		if len(rec.GetTasks()) == 0 {
			implicit = true
			continue
		}
		explicit = true
		ids := map[string]bool{}
		for _, task := range rec.GetTasks() {
			ids[task.GetTaskId().GetValue()] = true
		}
		if len(ids) != 2 || !ids[tasks[0].GetTaskId().GetValue()] || !ids[newTask.GetTaskId().GetValue()] {
			t.Fatalf("explicit RECONCILE of %v", ids)
		}
	}

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("example framework did not stop")
	}
	m.WaitCall(t, schedv1.Call_TEARDOWN)
	for _, want := range []string{"keeping 2 instance(s) of busybox running", "TASK_RUNNING", "TASK_FAILED",
		"1 of 2 instance(s) running; relaunching", "reconciling 2 task(s)", "stopping: tearing down"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestExampleFrameworkUsage(t *testing.T) {
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--help"}, 0, "--instances="},
		{[]string{"--instances=2"}, 2, "--image is required"},
		{[]string{"--image=x", "--network=bogus"}, 2, "want host, bridge"},
	} {
		var out, errOut bytes.Buffer
		code := ExampleFramework(context.Background(), tt.args, &out, &errOut)
		if code != tt.code || !strings.Contains(out.String()+errOut.String(), tt.want) {
			t.Errorf("%v: exit %d, output %q %q", tt.args, code, out.String(), errOut.String())
		}
	}
}
