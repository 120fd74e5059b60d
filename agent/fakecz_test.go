package agent

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/agentpb"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/containerizer"
	"github.com/mesolite/mesolite/containerizer/fake"
	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/internal/testutil"
	"google.golang.org/protobuf/proto"
)

// Tests of the agent against the scriptable fake containerizer: what the
// agent does when a launch blocks, a Destroy fails, a container is
// OOM-killed or exits before its executor subscribed. No executor runs.
//
// Those here count every update the agent sends of a task (exactly one
// terminal one) and look inside the agent (its executors' phases and
// launch contexts), so they run against fakeMaster; those that observe
// a task through a framework run in a real cluster (fakecz_cluster_test.go).

// startAgentWithCZ is startAgent with a containerizer of the test's.
func startAgentWithCZ(t *testing.T, fm *fakeMaster, workDir string, cz containerizer.Containerizer, mutate func(*Config)) *testAgent {
	t.Helper()
	return startAgentOn(t, fm, workDir, 0, mutate, func(Config) containerizer.Containerizer { return cz })
}

// newFakeCZ is a fake containerizer whose every launch follows script.
func newFakeCZ(script fake.Script) *fake.Fake {
	return fake.New(fake.Options{Script: func(containerizer.LaunchSpec) fake.Script { return script }})
}

// collectUntil reads the updates of task until one has state, and returns
// all of them, in order.
func (fm *fakeMaster) collectUntil(task string, state mesos.TaskState, timeout time.Duration) []*mesos.TaskStatus {
	fm.t.Helper()
	deadline := time.After(timeout)
	var seen []*mesos.TaskStatus
	for {
		select {
		case u := <-fm.updates:
			st := u.GetStatus()
			if st.GetTaskId().GetValue() != task {
				continue
			}
			seen = append(seen, st)
			if st.GetState() == state {
				return seen
			}
		case <-deadline:
			fm.t.Fatalf("task %s did not reach %s in %s; saw %v", task, state, timeout, states(seen))
		}
	}
}

// drain returns the updates of task already sent, without waiting.
func (fm *fakeMaster) drain(task string) []*mesos.TaskStatus {
	var out []*mesos.TaskStatus
	for {
		select {
		case u := <-fm.updates:
			if u.GetStatus().GetTaskId().GetValue() == task {
				out = append(out, u.GetStatus())
			}
		default:
			return out
		}
	}
}

func states(sts []*mesos.TaskStatus) []string {
	var out []string
	for _, st := range sts {
		out = append(out, fmt.Sprintf("%s(%s uuid=%x)", st.GetState(), st.GetMessage(), st.GetUuid()))
	}
	return out
}

func terminal(s mesos.TaskState) bool {
	switch s {
	case mesos.TaskState_TASK_FINISHED, mesos.TaskState_TASK_FAILED, mesos.TaskState_TASK_KILLED,
		mesos.TaskState_TASK_LOST, mesos.TaskState_TASK_ERROR, mesos.TaskState_TASK_DROPPED, mesos.TaskState_TASK_GONE:
		return true
	}
	return false
}

// terminalUpdates counts the distinct terminal updates among sts: a
// resend of an unacknowledged update (same uuid) is the same update.
func terminalUpdates(sts []*mesos.TaskStatus) int {
	uuids := map[string]bool{}
	for _, st := range sts {
		if terminal(st.GetState()) {
			uuids[string(st.GetUuid())] = true
		}
	}
	return len(uuids)
}

// settled waits until the executor of task is terminated (or forgotten)
// and the fake has no launch in flight: every update the agent will make
// of it is made.
func settled(t *testing.T, a *testAgent, fk *fake.Fake, task string) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() bool {
		a.mu.Lock()
		es := a.lookupExecutorLocked(testFramework.Id.GetValue(), task)
		done := es == nil || es.phase == phaseTerminated
		a.mu.Unlock()
		return done && len(fk.Launching()) == 0
	}, "executor of %s terminated and no launch in flight", task)
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

func killTaskEvent(task string) *agentpb.Event {
	return &agentpb.Event{Type: agentpb.Event_KILL_TASK.Enum(), KillTask: &agentpb.Event_KillTask{
		FrameworkId: testFramework.Id, TaskId: &mesos.TaskID{Value: proto.String(task)}}}
}

// A kill while Launch blocks (an image pull that hangs) calls the launch
// off: one TASK_KILLED, and no container.
func TestFakeKillWhileLaunchBlocks(t *testing.T) {
	never := make(chan struct{})
	fk := newFakeCZ(fake.Script{LaunchBlocksUntil: never})
	fm := newFakeMaster(t, true)
	a := startAgentWithCZ(t, fm, t.TempDir(), fk, nil)
	fm.events <- runTaskEvent(commandTask("blocked", "true"))
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() bool { return len(fk.Launching()) == 1 }, "launch under way")
	fm.events <- killTaskEvent("blocked")
	seen := fm.collectUntil("blocked", mesos.TaskState_TASK_KILLED, 10*time.Second)
	settled(t, a, fk, "blocked")
	seen = append(seen, fm.drain("blocked")...)
	if terminalUpdates(seen) != 1 {
		t.Errorf("updates %v, want exactly one terminal one, TASK_KILLED", states(seen))
	}
	launches := fk.CallsOf("Launch", fk.Launched()[0])
	if len(launches) != 1 || !launches[0].Done || launches[0].Err == nil {
		t.Errorf("launch calls %+v: want one, ended by the kill", launches)
	}
	noContainerLeft(t, fk)
}

// A kill that comes while a launch is past its point of no return (the
// containerizer finishes it despite the cancelled ctx) still ends in one
// TASK_KILLED and a destroyed container.
func TestFakeKillWhileLaunchCannotBeCalledOff(t *testing.T) {
	release := make(chan struct{})
	fk := newFakeCZ(fake.Script{LaunchBlocksUntil: release, LaunchIgnoresCancel: true})
	fm := newFakeMaster(t, true)
	a := startAgentWithCZ(t, fm, t.TempDir(), fk, nil)
	fm.events <- runTaskEvent(commandTask("late", "true"))
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() bool { return len(fk.Launching()) == 1 }, "launch under way")
	fm.events <- killTaskEvent("late")
	// The kill reached the executor (its launch context ended) before the
	// launch is let go.
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		es := a.lookupExecutorLocked(testFramework.Id.GetValue(), "late")
		return es != nil && es.ctx.Err() != nil
	}, "kill reached the launching executor")
	close(release)
	seen := fm.collectUntil("late", mesos.TaskState_TASK_KILLED, 10*time.Second)
	settled(t, a, fk, "late")
	seen = append(seen, fm.drain("late")...)
	if terminalUpdates(seen) != 1 {
		t.Errorf("updates %v, want exactly one terminal one, TASK_KILLED", states(seen))
	}
	noContainerLeft(t, fk)
	if ds := fk.CallsOf("Destroy", fk.Launched()[0]); len(ds) == 0 {
		t.Errorf("the container the launch made was never destroyed")
	}
}

// A launch that fails fails its task: TASK_FAILED with
// REASON_CONTAINER_LAUNCH_FAILED, or TASK_ERROR for an invalid container.
func TestFakeLaunchFailure(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		state  mesos.TaskState
		reason mesos.TaskStatus_Reason
	}{
		{"launch failed", fmt.Errorf("%w: pull: registry down", containerizer.ErrLaunchFailed), mesos.TaskState_TASK_FAILED, mesos.TaskStatus_REASON_CONTAINER_LAUNCH_FAILED},
		{"invalid container", fmt.Errorf("bad volume: %w", errdefs.ErrInvalid), mesos.TaskState_TASK_ERROR, mesos.TaskStatus_REASON_TASK_INVALID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fk := newFakeCZ(fake.Script{LaunchErr: tt.err})
			fm := newFakeMaster(t, true)
			a := startAgentWithCZ(t, fm, t.TempDir(), fk, nil)
			fm.events <- runTaskEvent(commandTask("doomed", "true"))
			seen := fm.collectUntil("doomed", tt.state, 10*time.Second)
			st := seen[len(seen)-1]
			if st.GetReason() != tt.reason || !strings.Contains(st.GetMessage(), tt.err.Error()) {
				t.Errorf("%v reason %v message %q, want %v with the launch error", st.GetState(), st.GetReason(), st.GetMessage(), tt.reason)
			}
			settled(t, a, fk, "doomed")
			if all := append(seen, fm.drain("doomed")...); terminalUpdates(all) != 1 {
				t.Errorf("updates %v, want exactly one terminal one", states(all))
			}
			noContainerLeft(t, fk)
		})
	}
}

// A kill of a task whose executor has not subscribed yet destroys the
// container, through Destroy failures, and ends in one TASK_KILLED.
func TestFakeKillBeforeSubscribeThroughDestroyFailures(t *testing.T) {
	fk := newFakeCZ(fake.Script{DestroyErrs: 2})
	fm := newFakeMaster(t, true)
	a := startAgentWithCZ(t, fm, t.TempDir(), fk, func(c *Config) { c.ExecutorRegistrationTimeout = time.Hour })
	fm.events <- runTaskEvent(commandTask("unsubscribed", "true"))
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() bool {
		ids, _ := fk.Containers(context.Background())
		return len(ids) == 1
	}, "container launched")
	fm.events <- killTaskEvent("unsubscribed")
	seen := fm.collectUntil("unsubscribed", mesos.TaskState_TASK_KILLED, 10*time.Second)
	settled(t, a, fk, "unsubscribed")
	noContainerLeft(t, fk)
	seen = append(seen, fm.drain("unsubscribed")...)
	if terminalUpdates(seen) != 1 {
		t.Errorf("updates %v, want exactly one terminal one, TASK_KILLED", states(seen))
	}
	calls := fk.CallsOf("Destroy", fk.Launched()[0])
	if len(calls) < 3 || calls[len(calls)-1].Err != nil {
		t.Errorf("destroy calls %+v: want two failures, then success", calls)
	}
}
