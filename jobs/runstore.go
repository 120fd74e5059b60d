package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/mesolite/mesolite/frameworks"
)

// bucketRuns holds the runs queued or in flight, by run id, so that a
// restarted service, or a new leader, neither loses nor doubles one: a
// run is stored in the same Apply as the schedule step that made it, its
// task id before the task is launched, and it is removed in the same Apply
// as the result it counts.
const bucketRuns = "runs"

// runRecord is a run as stored.
type runRecord struct {
	Job       string    `json:"job"`
	Attempt   int       `json:"attempt"`
	Args      string    `json:"args,omitempty"`
	QueuedAt  time.Time `json:"queuedAt"`
	NotBefore time.Time `json:"notBefore,omitzero"`
	High      bool      `json:"high,omitempty"`
	TaskID    string    `json:"taskId,omitempty"`
	AgentID   string    `json:"agentId,omitempty"`
	Stopped   bool      `json:"stopped,omitempty"`
	Awaiting  bool      `json:"awaiting,omitempty"` // an async run whose task finished
	// Elements and StatusMessage are the run's progress (progress.go).
	Elements      *int64 `json:"elements,omitempty"`
	StatusMessage string `json:"statusMessage,omitempty"`
}

// newRunLocked makes a run of j, not yet stored nor queued.
func (s *Service) newRunLocked(j *Job, attempt int, args string, now time.Time) *run {
	s.runSeq++
	id := strconv.FormatInt(now.UnixNano(), 10) + "-" + strconv.FormatUint(s.runSeq, 10) + ":" + j.Name
	return &run{id: id, job: j.Name, attempt: attempt, args: args, queuedAt: now, high: j.HighPriority, state: runQueued}
}

// queueLocked queues a stored run.
func (s *Service) queueLocked(r *run) {
	s.runs.queue = append(s.runs.queue, r)
	s.driver.Revive()
}

// putRun is the Op storing r as it is now.
func putRun(r *run) frameworks.Op {
	b, _ := json.Marshal(runRecord{Job: r.job, Attempt: r.attempt, Args: r.args, QueuedAt: r.queuedAt, NotBefore: r.notBefore,
		High: r.high, TaskID: r.taskID, AgentID: r.agentID, Stopped: r.stopped, Awaiting: r.state == runAwaiting,
		Elements: r.progress.elements, StatusMessage: r.progress.message})
	return frameworks.Put(bucketRuns, r.id, b)
}

// dropRun is the Op removing r.
func dropRun(r *run) frameworks.Op { return frameworks.Delete(bucketRuns, r.id) }

// applyLocked writes ops in as many Applys as the store's limit needs
// (the run ops of one offer round can be many).
func (s *Service) applyLocked(ctx context.Context, ops []frameworks.Op) error {
	for start := 0; start < len(ops); start += frameworks.MaxOpsPerApply {
		if err := s.store.Apply(ctx, ops[start:min(start+frameworks.MaxOpsPerApply, len(ops))]...); err != nil {
			return err
		}
	}
	return nil
}

// loadRuns reads the stored runs back: queued ones are queued again,
// launched ones are known by their task ids (reconciliation asks the
// master about them). Runs of jobs that are gone are dropped.
func (s *Service) loadRuns(ctx context.Context) error {
	entries, err := s.store.List(ctx, bucketRuns)
	if err != nil {
		return fmt.Errorf("reading the runs: %w", err)
	}
	var drop []frameworks.Op
	for _, e := range entries {
		var rec runRecord
		if err := json.Unmarshal(e.Value, &rec); err != nil {
			return fmt.Errorf("reading run %s: %w", e.Key, err)
		}
		r := &run{id: e.Key, job: rec.Job, attempt: rec.Attempt, args: rec.Args, queuedAt: rec.QueuedAt, notBefore: rec.NotBefore,
			high: rec.High, taskID: rec.TaskID, agentID: rec.AgentID, stopped: rec.Stopped, state: runQueued,
			progress: runProgress{elements: rec.Elements, message: rec.StatusMessage}}
		if s.jobs[r.job] == nil && r.taskID == "" {
			drop = append(drop, dropRun(r))
			continue
		}
		if r.taskID == "" {
			s.runs.queue = append(s.runs.queue, r)
			continue
		}
		r.state = runLaunching
		if rec.Awaiting {
			r.state = runAwaiting
		}
		s.runs.byTask[r.taskID] = r
	}
	if len(drop) > 0 {
		if err := s.applyLocked(ctx, drop); err != nil {
			return fmt.Errorf("dropping the runs of deleted jobs: %w", err)
		}
	}
	if len(entries) > 0 {
		s.log.Info("runs read back", "queued", len(s.runs.queue), "launched", len(s.runs.byTask))
	}
	return nil
}
