package agent_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/agent"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/containerizer"
	"github.com/mesolite/mesolite/containerizer/fake"
	"github.com/mesolite/mesolite/internal/testutil"
	"google.golang.org/protobuf/proto"
)

// The agent on the scriptable fake containerizer in a real cluster: what a
// framework sees when a Destroy fails, a container is OOM-killed or exits
// before its executor subscribed. No executor runs. (Tests that count the
// agent's own updates are in fakecz_test.go, against fakeMaster.)

// newFakeCZ is a fake containerizer whose every launch follows script.
func newFakeCZ(script fake.Script) *fake.Fake {
	return fake.New(fake.Options{Script: func(containerizer.LaunchSpec) fake.Script { return script }})
}

// noContainerLeft waits until the fake has no container of the test's
// left, on its host or in its books.
func noContainerLeft(t *testing.T, fk *fake.Fake) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() bool {
		ids, _ := fk.Containers(context.Background())
		if len(ids) > 0 {
			return false
		}
		for _, id := range fk.Launched() {
			if fk.OnHost(id) {
				return false
			}
		}
		return true
	}, "no container left (launched %v)", fk.Launched())
}

// noContainerLeftOf waits until container id is gone from the fake's host.
func noContainerLeftOf(t *testing.T, fk *fake.Fake, id string) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, 10*time.Millisecond, func() bool { return !fk.OnHost(id) }, "container %s destroyed", id)
}

// A Destroy that fails is retried (with backoff) until it succeeds.
func TestFakeDestroyRetriedUntilItSucceeds(t *testing.T) {
	fk := newFakeCZ(fake.Script{Exit: true, ExitCode: 1, DestroyErrs: 2})
	c := newCluster(t, nil)
	a := c.startAgentOn(t, t.TempDir(), 0, nil, fk)
	fw := c.subscribe(t, testFramework("test"))
	fw.launch(a, commandTask("stubborn", "true"))
	fw.waitState("stubborn", mesos.TaskState_TASK_FAILED, 10*time.Second)
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() bool {
		ids := fk.Launched()
		if len(ids) != 1 {
			return false
		}
		calls := fk.CallsOf("Destroy", ids[0])
		return len(calls) >= 3 && calls[len(calls)-1].Done && calls[len(calls)-1].Err == nil
	}, "Destroy retried until it succeeded; calls %+v", fk.Calls())
	calls := fk.CallsOf("Destroy", fk.Launched()[0])
	if calls[0].Err == nil || calls[1].Err == nil {
		t.Errorf("destroy calls %+v: the first two should have failed", calls)
	}
	noContainerLeft(t, fk)
}

// A container OOM-killed before its executor subscribed fails its task
// with REASON_CONTAINER_LIMITATION_MEMORY.
func TestFakeOOMIsAMemoryLimitation(t *testing.T) {
	fk := newFakeCZ(fake.Script{OOM: true})
	c := newCluster(t, nil)
	a := c.startAgentOn(t, t.TempDir(), 0, nil, fk)
	fw := c.subscribe(t, testFramework("test"))
	fw.launch(a, commandTask("hog", "true"))
	st := fw.waitState("hog", mesos.TaskState_TASK_FAILED, 10*time.Second)
	if st.GetReason() != mesos.TaskStatus_REASON_CONTAINER_LIMITATION_MEMORY || st.GetMessage() == "" {
		t.Errorf("TASK_FAILED reason %v message %q, want REASON_CONTAINER_LIMITATION_MEMORY with a message", st.GetReason(), st.GetMessage())
	}
	if st.GetSource() != mesos.TaskStatus_SOURCE_AGENT {
		t.Errorf("source %v, want SOURCE_AGENT", st.GetSource())
	}
	noContainerLeft(t, fk)
}

// An executor that exits with code 3 before it subscribed fails its task
// with the exit status in the message.
func TestFakeExecutorExitsBeforeSubscribing(t *testing.T) {
	custom := &mesos.ExecutorInfo{ExecutorId: &mesos.ExecutorID{Value: proto.String("custom")},
		Command: &mesos.CommandInfo{Value: proto.String("never-runs")}}
	tests := []struct {
		name   string
		task   *mesos.TaskInfo
		reason mesos.TaskStatus_Reason
	}{
		{"command task", commandTask("early-exit", "true"), mesos.TaskStatus_REASON_COMMAND_EXECUTOR_FAILED},
		{"custom executor", &mesos.TaskInfo{Name: proto.String("early-exit"), TaskId: &mesos.TaskID{Value: proto.String("early-exit")},
			Resources: taskResources(), Executor: custom}, mesos.TaskStatus_REASON_EXECUTOR_TERMINATED},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fk := newFakeCZ(fake.Script{Exit: true, ExitCode: 3})
			c := newCluster(t, nil)
			a := c.startAgentOn(t, t.TempDir(), 0, nil, fk)
			fw := c.subscribe(t, testFramework("test"))
			fw.launch(a, tt.task)
			st := fw.waitState("early-exit", mesos.TaskState_TASK_FAILED, 10*time.Second)
			if st.GetReason() != tt.reason {
				t.Errorf("reason %v, want %v", st.GetReason(), tt.reason)
			}
			// The wait status of exit code 3 is 768; either way of saying it will do.
			if msg := st.GetMessage(); !strings.Contains(msg, "status 3") && !strings.Contains(msg, "768") {
				t.Errorf("message %q does not give the exit status 3", msg)
			}
			noContainerLeft(t, fk)
		})
	}
}

// An executor that never subscribes is failed with
// REASON_EXECUTOR_REGISTRATION_TIMEOUT and its container destroyed.
func TestFakeRegistrationTimeoutDestroys(t *testing.T) {
	fk := newFakeCZ(fake.Script{})
	c := newCluster(t, nil)
	a := c.startAgentOn(t, t.TempDir(), 0, func(c *agent.Config) { c.ExecutorRegistrationTimeout = 200 * time.Millisecond }, fk)
	fw := c.subscribe(t, testFramework("test"))
	fw.launch(a, commandTask("silent", "true"))
	st := fw.waitState("silent", mesos.TaskState_TASK_FAILED, 10*time.Second)
	if st.GetReason() != mesos.TaskStatus_REASON_EXECUTOR_REGISTRATION_TIMEOUT {
		t.Errorf("reason %v (%s), want REASON_EXECUTOR_REGISTRATION_TIMEOUT", st.GetReason(), st.GetMessage())
	}
	noContainerLeft(t, fk)
	if ds := fk.CallsOf("Destroy", fk.Launched()[0]); len(ds) == 0 {
		t.Errorf("the container was never destroyed")
	}
}

// After an agent restart the new containerizer recovers the container from
// its checkpointed handle; an executor that never re-subscribes is failed
// with REASON_EXECUTOR_REREGISTRATION_TIMEOUT, its container destroyed,
// and once the framework acknowledged that, the executor is forgotten.
func TestFakeRecoveredExecutorThatNeverReregisters(t *testing.T) {
	fk := newFakeCZ(fake.Script{})
	c := newCluster(t, nil)
	dir := t.TempDir()
	a1 := c.startAgentOn(t, dir, 0, func(c *agent.Config) { c.ExecutorRegistrationTimeout = time.Hour }, fk)
	fw := c.subscribe(t, testFramework("test"))
	fw.launch(a1, commandTask("orphaned", "true"))
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() bool {
		ids, _ := fk.Containers(context.Background())
		return len(ids) == 1
	}, "container launched")
	id := fk.Launched()[0]
	// The handle is checkpointed as the executor becomes registering.
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() bool {
		es := a1.state(t).executor(fw.ID(), "orphaned")
		return es != nil && es.Phase == "REGISTERING"
	}, "executor registering")
	a1.stop()
	if !fk.OnHost(id) {
		t.Fatal("stopping the agent took the container down")
	}

	fk2 := fk.Restart()
	a2 := c.startAgentOn(t, dir, a1.port, func(c *agent.Config) { c.RecoveryTimeout = 200 * time.Millisecond }, fk2)
	st := fw.waitState("orphaned", mesos.TaskState_TASK_FAILED, 10*time.Second)
	if st.GetReason() != mesos.TaskStatus_REASON_EXECUTOR_REREGISTRATION_TIMEOUT {
		t.Errorf("reason %v (%s), want REASON_EXECUTOR_REREGISTRATION_TIMEOUT", st.GetReason(), st.GetMessage())
	}
	if rs := fk2.CallsOf("Recover", ""); len(rs) != 1 {
		t.Errorf("Recover calls %+v, want one", rs)
	}
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() bool { return !fk2.OnHost(id) }, "recovered container destroyed")
	if ds := fk2.CallsOf("Destroy", id); len(ds) == 0 {
		t.Errorf("the recovered container was never destroyed through the new containerizer")
	}
	// Its terminal update acknowledged, the executor is forgotten.
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() bool {
		return a2.state(t).executor(fw.ID(), "orphaned") == nil
	}, "the terminated executor is still tracked after its TASK_FAILED was acknowledged")
}

// Destroying a container must not hold up the agent's link to the master:
// while one container's Destroy keeps failing (retried with backoff for
// seconds), a new task is still launched and acknowledgements still
// processed.
func TestFakeDestroyRetriesDoNotStallTheMaster(t *testing.T) {
	const failures = 5 // 0.1+0.2+0.4+0.8+1.6 s of retries
	fk := fake.New(fake.Options{Script: func(spec containerizer.LaunchSpec) fake.Script {
		if spec.Task.GetTaskId().GetValue() == "stuck" {
			return fake.Script{DestroyErrs: failures}
		}
		return fake.Script{}
	}})
	c := newCluster(t, nil)
	a := c.startAgentOn(t, t.TempDir(), 0, func(c *agent.Config) { c.ExecutorRegistrationTimeout = time.Hour }, fk)
	fw := c.subscribe(t, testFramework("test"))
	fw.launch(a, commandTask("stuck", "true"))
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() bool { return len(fk.Launched()) == 1 }, "first container launched")
	stuck := fk.Launched()[0]
	fw.kill(a, "stuck")
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() bool { return len(fk.CallsOf("Destroy", stuck)) > 0 }, "first Destroy")
	fw.launch(a, commandTask("next", "true"))
	testutil.Eventually(t, 10*time.Second, 5*time.Millisecond, func() bool { return len(fk.Launched()) == 2 }, "second container launched")
	calls := fk.CallsOf("Destroy", stuck)
	if last := calls[len(calls)-1]; len(calls) > failures || last.Done && last.Err == nil {
		t.Errorf("the second task was launched only after the first container's Destroy succeeded (%d calls): the master link waited for it", len(calls))
	}
	noContainerLeftOf(t, fk, stuck)
}
