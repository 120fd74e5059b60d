package agent

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/agentpb"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/internal/testutil"
	"google.golang.org/protobuf/proto"
)

// TestShutdownFrameworkForgetsIt tears a framework down while its tasks
// run and nobody acknowledges anything (the master removed it): the agent
// destroys the containers, sends nothing more for the framework, and
// forgets it, checkpoints included. It runs against fakeMaster: a real
// master acknowledges updates of a removed framework itself, and only a
// fake one shows what the agent sends (or stops sending) after the
// teardown.
func TestShutdownFrameworkForgetsIt(t *testing.T) {
	fm := newFakeMaster(t, false)
	a := startAgent(t, fm, t.TempDir(), 0, nil)
	for _, id := range []string{"one", "two"} {
		fm.events <- runTaskEvent(commandTask(id, "sleep 60"))
	}
	running := map[string]bool{}
	for len(running) < 2 {
		select {
		case u := <-fm.updates:
			if u.GetStatus().GetState() == mesos.TaskState_TASK_RUNNING {
				running[u.GetStatus().GetTaskId().GetValue()] = true
			}
			fm.ack(u) // acknowledged while the framework lives
		case <-time.After(15 * time.Second):
			t.Fatalf("running: %v", running)
		}
	}
	fwID := testFramework.GetId().GetValue()
	fwMeta := a.meta.framework(a.ID(), fwID)
	if _, err := os.Stat(fwMeta); err != nil {
		t.Fatalf("no checkpoints for the framework before its teardown: %v", err)
	}
	fm.events <- &agentpb.Event{Type: agentpb.Event_SHUTDOWN_FRAMEWORK.Enum(), ShutdownFramework: &agentpb.Event_ShutdownFramework{FrameworkId: testFramework.Id}}
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.frameworks[fwID] == nil
	}, "the agent still tracks the torn-down framework")
	ids, _ := a.cz.Containers(context.Background())
	if len(ids) != 0 {
		t.Fatalf("containers left: %v", ids)
	}
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() bool {
		_, err := os.Stat(fwMeta)
		return os.IsNotExist(err)
	}, "checkpoints of the torn-down framework left")
	// Nothing is resent for it: drain what was in flight, then the retry
	// interval (300 ms in tests) passes several times in silence.
	deadline := time.After(2 * time.Second)
	for {
		select {
		case u := <-fm.updates:
			if st := u.GetStatus().GetState(); st == mesos.TaskState_TASK_KILLING || st == mesos.TaskState_TASK_KILLED {
				continue // sent before the teardown reached the agent's streams
			}
			t.Fatalf("update after teardown: %v", u.GetStatus())
		case <-deadline:
			if n := len(a.sum.streams); n != 0 {
				t.Fatalf("%d update streams kept for a removed framework", n)
			}
			return
		}
	}
}

// TestResentTerminalUpdateIsNotDeliveredTwice is the executor that resends
// an update the agent checkpointed, forwarded and had acknowledged just
// before it crashed: after the restart it is a duplicate, not news.
func TestResentTerminalUpdateIsNotDeliveredTwice(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "task.updates")
	st := &mesos.TaskStatus{TaskId: &mesos.TaskID{Value: proto.String("t")}, State: mesos.TaskState_TASK_FINISHED.Enum(), Uuid: newUUID()}
	var sent int
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := newStatusUpdates(log, func(context.Context, string, *mesos.TaskStatus, mesos.TaskState) error { sent++; return nil })
	if dup, err := m.Update(context.Background(), "fw", st, path); dup || err != nil {
		t.Fatal(dup, err)
	}
	if ok, err := m.Acknowledge(context.Background(), "fw", "t", st.Uuid); !ok || err != nil {
		t.Fatal(ok, err)
	}
	// The agent restarts: a new manager recovers the stream from disk.
	m2 := newStatusUpdates(log, func(context.Context, string, *mesos.TaskStatus, mesos.TaskState) error {
		t.Error("a recovered, acknowledged update was sent again")
		return nil
	})
	if _, err := m2.Recover("fw", "t", path); err != nil {
		t.Fatal(err)
	}
	dup, err := m2.Update(context.Background(), "fw", proto.Clone(st).(*mesos.TaskStatus), path)
	if err != nil || !dup {
		t.Fatalf("resent terminal update: duplicate=%v err=%v, want a duplicate", dup, err)
	}
	m2.DropTask("fw", "t")
	if len(m2.streams) != 0 {
		t.Fatal("DropTask kept the stream")
	}
}

// TestStatusUpdateStreamsDoNotWaitOnEachOther: a task's update record
// whose write blocks (here its task.updates is a FIFO nobody reads, as a
// stalled disk flush would) holds up its own stream only: another task's
// update and acknowledgement go through meanwhile, and the blocked one
// completes once its write does.
func TestStatusUpdateStreamsDoNotWaitOnEachOther(t *testing.T) {
	dir := t.TempDir()
	stuck := filepath.Join(dir, "stuck.updates")
	if err := syscall.Mkfifo(stuck, 0o600); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := newStatusUpdates(log, func(context.Context, string, *mesos.TaskStatus, mesos.TaskState) error { return nil })
	defer m.Close()
	status := func(task string) *mesos.TaskStatus {
		return &mesos.TaskStatus{TaskId: &mesos.TaskID{Value: proto.String(task)}, State: mesos.TaskState_TASK_RUNNING.Enum(), Uuid: newUUID()}
	}
	// Lets the stuck write through: a reader opens the FIFO and drains it.
	// Also on a failure, so the manager (and the test) can end.
	var unblock sync.Once
	release := func() {
		unblock.Do(func() {
			r, err := os.OpenFile(stuck, os.O_RDONLY|syscall.O_NONBLOCK, 0)
			if err != nil {
				t.Error(err)
				return
			}
			go func() { defer r.Close(); _, _ = io.Copy(io.Discard, r) }()
		})
	}
	defer release()
	blocked := make(chan error, 1)
	go func() {
		_, err := m.Update(context.Background(), "fw", status("stuck"), stuck)
		blocked <- err
	}()
	// The stuck stream is inside its write (opening the FIFO blocks).
	time.Sleep(100 * time.Millisecond)
	done := make(chan error, 1)
	other := status("other")
	go func() {
		if _, err := m.Update(context.Background(), "fw", other, filepath.Join(dir, "other.updates")); err != nil {
			done <- err
			return
		}
		_, err := m.Acknowledge(context.Background(), "fw", "other", other.Uuid)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("another task's update waited for a stream's blocked write")
	}
	release()
	select {
	case <-blocked:
		// fsync of a FIFO fails (EINVAL): the record is reported unwritten,
		// as a failed flush would be; what matters is that it returned.
	case <-time.After(5 * time.Second):
		t.Fatal("the blocked update never returned")
	}
}
