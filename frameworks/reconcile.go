package frameworks

import (
	"context"
	"sync"
	"time"

	schedv1 "github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/scheduler"
)

// reconcileBatch bounds the tasks named in one RECONCILE call.
const reconcileBatch = 1000

// reconciliation is one run of Mesos's recommended reconciliation after a
// (re)subscription:
//
//	explicit ──(every known task answered, or ReconcileRounds asked)──▶ implicit ──▶ periodic
//	   │  ▲                                                                 (implicit every
//	   └──┘ ask again for the unanswered, backing off                       ReconcileInterval)
//
// Explicit first, so the scheduler learns the state of every task it knows
// before the implicit answers (which cover only tasks the master knows)
// arrive; the implicit one then shows tasks the scheduler does not know.
// A new subscription cancels the run and starts another.
type reconciliation struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	pending map[string]string // task id -> agent id, not answered yet
	changed chan struct{}     // a pending task was answered
}

func (d *Driver) startReconciling(ctx context.Context, c *scheduler.Client) {
	d.stopReconciling()
	rctx, cancel := context.WithCancel(ctx)
	r := &reconciliation{cancel: cancel, done: make(chan struct{}), pending: map[string]string{}, changed: make(chan struct{}, 1)}
	for _, t := range d.sched.KnownTasks() {
		r.pending[t.TaskID] = t.AgentID
	}
	d.mu.Lock()
	d.reconcile = r
	d.mu.Unlock()
	go func() {
		defer close(r.done)
		d.reconcileLoop(rctx, c, r)
	}()
}

func (d *Driver) stopReconciling() {
	d.mu.Lock()
	r := d.reconcile
	d.reconcile = nil
	d.mu.Unlock()
	if r != nil {
		r.cancel()
		<-r.done
	}
}

// answered notes an update about taskID: it needs no more asking.
func (r *reconciliation) answered(taskID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.pending[taskID]; ok {
		delete(r.pending, taskID)
		select {
		case r.changed <- struct{}{}:
		default:
		}
	}
}

func (r *reconciliation) unanswered() []*schedv1.Call_Reconcile_Task {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*schedv1.Call_Reconcile_Task, 0, len(r.pending))
	for id, agent := range r.pending {
		out = append(out, scheduler.ReconcileTask(id, agent))
	}
	return out
}

func (d *Driver) reconcileLoop(ctx context.Context, c *scheduler.Client, r *reconciliation) {
	backoff := d.cfg.ReconcileBackoffMin
	for round := 1; round <= d.cfg.ReconcileRounds; round++ {
		tasks := r.unanswered()
		if len(tasks) == 0 {
			break
		}
		d.log.Info("reconciling explicitly", "tasks", len(tasks), "round", round)
		for i := 0; i < len(tasks); i += reconcileBatch {
			if err := c.Reconcile(ctx, tasks[i:min(i+reconcileBatch, len(tasks))]...); err != nil && ctx.Err() == nil {
				d.log.Warn("RECONCILE failed", "err", err)
			}
		}
		deadline := time.NewTimer(backoff)
	wait:
		for {
			select {
			case <-ctx.Done():
				deadline.Stop()
				return
			case <-deadline.C:
				break wait
			case <-r.changed:
				if len(r.unanswered()) == 0 {
					deadline.Stop()
					break wait
				}
			}
		}
		backoff = min(2*backoff, d.cfg.ReconcileBackoffMax)
	}
	if left := r.unanswered(); len(left) > 0 {
		d.log.Warn("tasks not answered by explicit reconciliation (their agents may not have re-registered yet); reconciling implicitly", "tasks", len(left))
	}
	for {
		d.log.Debug("reconciling implicitly")
		if err := c.Reconcile(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("implicit RECONCILE failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(d.cfg.ReconcileInterval):
		}
	}
}
