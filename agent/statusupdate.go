package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/mesolite/mesolite/errdefs"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"google.golang.org/protobuf/proto"
)

// Retry schedule for unacknowledged updates, as in Mesos (variables so
// tests can shorten them).
var (
	updateRetryMin = 10 * time.Second
	updateRetryMax = 10 * time.Minute
)

// maxPendingPerTask bounds a task's unacknowledged updates.
const maxPendingPerTask = 1000

// forwardFunc sends one update to the master. An error only means "try
// again later": the manager keeps the update until it is acknowledged.
type forwardFunc func(ctx context.Context, frameworkID string, status *mesos.TaskStatus, latest mesos.TaskState) error

// statusUpdates is the agent's status update manager. Each task has a
// stream: an ordered queue of updates, checkpointed to task.updates, of
// which only the head is in flight; the next one goes out when the framework
// acknowledges the head's uuid.
type statusUpdates struct {
	log     *slog.Logger
	forward forwardFunc

	mu      sync.Mutex
	streams map[string]*updateStream // by framework/task
	// notify is called when a task's terminal update was acknowledged.
	onTerminalAcked func(frameworkID, taskID string)
}

type updateStream struct {
	// wmu orders a stream's appends to task.updates with the changes they
	// record; taken before the manager's mu, and held across the append
	// and its fsync, which mu never is. The fields below are mu's.
	wmu                 sync.Mutex
	frameworkID, taskID string
	path                string
	pending             []*mesos.TaskStatus
	seen                map[string]bool // uuids ever received, to drop duplicates
	latest              mesos.TaskState
	timer               *time.Timer
	backoff             time.Duration
	closed              bool
	// fromExecutor: an update of the executor's own was received (so the
	// executor has the task).
	fromExecutor bool
	// done: the terminal update was acknowledged. The stream is kept (with
	// the uuids it saw) until its executor is forgotten, so that an
	// executor resending it after an agent restart is recognised as a
	// duplicate instead of reaching the framework twice.
	done bool
}

// updateRecord is one line of task.updates.
type updateRecord struct {
	Update []byte `json:"update,omitempty"` // a protobuf TaskStatus
	Ack    []byte `json:"ack,omitempty"`    // an acknowledged uuid
}

func newStatusUpdates(log *slog.Logger, fwd forwardFunc) *statusUpdates {
	return &statusUpdates{log: log.With("component", "status-updates"), forward: fwd, streams: map[string]*updateStream{}}
}

func streamKey(fw, task string) string { return fw + "/" + task }

// Update checkpoints status (which must carry a uuid) and sends it when it
// is the stream's head. Duplicates (same uuid) are dropped and reported.
// The record is appended and fsynced under the stream's own write lock,
// not the manager's: other tasks' updates and acknowledgements go on
// meanwhile (one lock across every fsync capped an agent at one record
// per disk flush).
func (m *statusUpdates) Update(ctx context.Context, fw string, status *mesos.TaskStatus, path string) (duplicate bool, err error) {
	key := streamKey(fw, status.GetTaskId().GetValue())
	m.mu.Lock()
	s := m.streams[key]
	if s == nil {
		s = &updateStream{frameworkID: fw, taskID: status.GetTaskId().GetValue(), path: path, seen: map[string]bool{}}
		m.streams[key] = s
	}
	m.mu.Unlock()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	m.mu.Lock()
	if s.seen[string(status.GetUuid())] {
		m.mu.Unlock()
		return true, nil
	}
	if s.done || (mesos.IsTerminal(s.latest) && !mesos.IsTerminal(status.GetState())) {
		// A task's terminal update is its last: an older update that
		// arrives after it (an executor resending what the agent never
		// acknowledged, racing its newer ones across an agent restart)
		// must not make the task look alive again.
		m.log.Debug("dropped an update that came after the task's terminal update", "framework_id", fw, "task_id", s.taskID, "state", status.GetState().String(), "terminal", s.latest.String())
		m.mu.Unlock()
		return true, nil
	}
	if len(s.pending) >= maxPendingPerTask {
		// A framework that acknowledges nothing, and an executor that
		// sends update after update, cannot fill the agent's memory and
		// its work dir (which the task's disk does not cover).
		n := len(s.pending)
		m.mu.Unlock()
		return false, fmt.Errorf("task %s has %d unacknowledged updates, the most kept: %w", s.taskID, n, errdefs.ErrUnavailable)
	}
	m.mu.Unlock()
	b, err := proto.Marshal(status)
	if err != nil {
		return false, fmt.Errorf("encode update: %w", err)
	}
	// What the checks above read changes only under s.wmu, held.
	if err := appendRecord(s.path, updateRecord{Update: b}); err != nil {
		return false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s.seen[string(status.GetUuid())] = true
	s.fromExecutor = s.fromExecutor || status.GetSource() == mesos.TaskStatus_SOURCE_EXECUTOR
	s.pending = append(s.pending, status)
	s.latest = status.GetState()
	if len(s.pending) == 1 {
		m.sendHeadLocked(ctx, s, true)
	}
	return false, nil
}

// Latest is the newest state received for a task (possibly unacknowledged).
func (m *statusUpdates) Latest(fw, task string) (mesos.TaskState, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.streams[streamKey(fw, task)]
	if s == nil {
		return 0, false
	}
	return s.latest, true
}

// Pending returns the unacknowledged updates of a task, oldest first.
func (m *statusUpdates) Pending(fw, task string) []*mesos.TaskStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.streams[streamKey(fw, task)]
	if s == nil {
		return nil
	}
	return append([]*mesos.TaskStatus(nil), s.pending...)
}

func (m *statusUpdates) sendHeadLocked(ctx context.Context, s *updateStream, reset bool) {
	if len(s.pending) == 0 || s.closed {
		return
	}
	head := s.pending[0]
	latest := s.latest
	if reset || s.backoff == 0 {
		s.backoff = updateRetryMin
	} else {
		s.backoff = min(s.backoff*2, updateRetryMax)
	}
	if s.timer != nil {
		s.timer.Stop()
	}
	uuid := string(head.GetUuid())
	s.timer = time.AfterFunc(s.backoff, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if len(s.pending) > 0 && string(s.pending[0].GetUuid()) == uuid && !s.closed {
			m.log.Info("resending unacknowledged status update", "framework_id", s.frameworkID, "task_id", s.taskID, "state", head.GetState().String())
			m.sendHeadLocked(context.Background(), s, false)
		}
	})
	fw := s.frameworkID
	go func() {
		if err := m.forward(ctx, fw, head, latest); err != nil {
			m.log.Debug("forward status update (will retry)", "framework_id", fw, "task_id", head.GetTaskId().GetValue(), "error", err)
		}
	}()
}

// Acknowledge pops the head of a stream when uuid matches it and sends the
// next update. It reports whether the uuid was the head.
func (m *statusUpdates) Acknowledge(ctx context.Context, fw, task string, uuid []byte) (bool, error) {
	m.mu.Lock()
	s := m.streams[streamKey(fw, task)]
	m.mu.Unlock()
	if s == nil {
		return false, nil
	}
	// As in Update: the append under the stream's write lock only.
	s.wmu.Lock()
	defer s.wmu.Unlock()
	m.mu.Lock()
	head := len(s.pending) > 0 && bytes.Equal(s.pending[0].GetUuid(), uuid)
	m.mu.Unlock()
	if !head {
		return false, nil
	}
	if err := appendRecord(s.path, updateRecord{Ack: uuid}); err != nil {
		return false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(s.pending) == 0 || !bytes.Equal(s.pending[0].GetUuid(), uuid) {
		return false, nil // dropped meanwhile (its executor forgotten)
	}
	acked := s.pending[0]
	s.pending = s.pending[1:]
	if s.timer != nil {
		s.timer.Stop()
	}
	if len(s.pending) > 0 {
		m.sendHeadLocked(ctx, s, true)
	} else if mesos.IsTerminal(acked.GetState()) {
		s.done = true
		if m.onTerminalAcked != nil {
			go m.onTerminalAcked(fw, task)
		}
	}
	return true, nil
}

// ResendAll sends every stream's head now (after re-registering).
func (m *statusUpdates) ResendAll(ctx context.Context) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.streams {
		m.sendHeadLocked(ctx, s, true)
	}
}

// Recover rebuilds a stream from its task.updates file.
func (m *statusUpdates) Recover(fw, task, path string) (*updateStream, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s := &updateStream{frameworkID: fw, taskID: task, path: path, seen: map[string]bool{}}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var rec updateRecord
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			// A torn last line from a crash mid-append: stop here.
			break
		}
		switch {
		case rec.Update != nil:
			st := &mesos.TaskStatus{}
			if err := proto.Unmarshal(rec.Update, st); err != nil {
				continue
			}
			s.seen[string(st.GetUuid())] = true
			s.fromExecutor = s.fromExecutor || st.GetSource() == mesos.TaskStatus_SOURCE_EXECUTOR
			s.pending = append(s.pending, st)
			s.latest = st.GetState()
		case rec.Ack != nil:
			if len(s.pending) > 0 && bytes.Equal(s.pending[0].GetUuid(), rec.Ack) {
				s.pending = s.pending[1:]
			}
		}
	}
	// Kept even when everything was acknowledged: its uuids tell a resent
	// update from a new one.
	s.done = len(s.pending) == 0 && mesos.IsTerminal(s.latest)
	m.mu.Lock()
	if len(s.seen) > 0 {
		m.streams[streamKey(fw, task)] = s
	}
	m.mu.Unlock()
	return s, nil
}

// HeardFromExecutor reports whether the executor itself sent an update for
// the task (checkpointed, so it holds across agent restarts).
func (m *statusUpdates) HeardFromExecutor(fw, task string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.streams[streamKey(fw, task)]
	return s != nil && s.fromExecutor
}

// DropTask forgets a task's stream (its executor was forgotten).
func (m *statusUpdates) DropTask(fw, task string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.streams[streamKey(fw, task)]; s != nil {
		s.closed = true
		if s.timer != nil {
			s.timer.Stop()
		}
		delete(m.streams, streamKey(fw, task))
	}
}

// DropFramework forgets every stream of a framework that is gone (torn
// down, or failed over past its timeout): nobody will acknowledge them, so
// resending them for ever would only load the master and, after a master
// failover, bring the framework back. It returns how many unacknowledged
// updates were dropped.
func (m *statusUpdates) DropFramework(fw string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	dropped := 0
	for key, s := range m.streams {
		if s.frameworkID != fw {
			continue
		}
		dropped += len(s.pending)
		s.closed = true
		if s.timer != nil {
			s.timer.Stop()
		}
		delete(m.streams, key)
	}
	return dropped
}

// Close stops every retry timer.
func (m *statusUpdates) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.streams {
		s.closed = true
		if s.timer != nil {
			s.timer.Stop()
		}
	}
}

// appendRecord appends one record and makes it durable before the update
// goes anywhere: an update the framework saw must survive a crash of the
// agent (file fsync), and so must the file's name (directory fsync, the
// first time).
func appendRecord(path string, rec updateRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	_, statErr := os.Lstat(path)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("checkpoint update: %w", err)
	}
	_, werr := f.Write(append(b, '\n'))
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return fmt.Errorf("checkpoint update: %w", err)
	}
	if statErr != nil {
		if err := syncDir(filepath.Dir(path)); err != nil {
			return fmt.Errorf("checkpoint update: %w", err)
		}
	}
	return nil
}
