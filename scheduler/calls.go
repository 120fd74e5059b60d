package scheduler

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/mesolite/mesolite/api/v1/mesos"
	schedv1 "github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/errdefs"
	"google.golang.org/protobuf/proto"
)

// Call sends one call to the master holding the subscription, with the
// stream id and, when the call has none, the framework id. A nil error
// means the master answered 202 Accepted: it took the call, not that it
// acted on it; outcomes arrive as events. While the client re-subscribes
// calls fail with errdefs.ErrUnavailable. A context without a deadline gets
// Config.CallTimeout.
func (c *Client) Call(ctx context.Context, call *schedv1.Call) error {
	typ := call.GetType()
	if typ == schedv1.Call_SUBSCRIBE {
		return fmt.Errorf("SUBSCRIBE goes through scheduler.Subscribe: %w", errdefs.ErrInvalid)
	}
	c.mu.Lock()
	master, scheme, sid, fwID := c.master, c.scheme, c.streamID, c.framework.GetId()
	c.mu.Unlock()
	if sid == "" {
		select {
		case <-c.done:
			return fmt.Errorf("%s: the scheduler client has stopped: %w", typ, errdefs.ErrUnavailable)
		default:
			return fmt.Errorf("%s: not subscribed (re-subscribing with the master): %w", typ, errdefs.ErrUnavailable)
		}
	}
	if call.FrameworkId == nil {
		call = proto.Clone(call).(*schedv1.Call)
		call.FrameworkId = fwID
	}
	body, err := c.cfg.Codec.Marshal(call)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", typ, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.CallTimeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, scheme+"://"+master+APIPath, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s request to %s: %w", typ, master, errdefs.ErrInvalid)
	}
	req.Header.Set("Content-Type", c.cfg.Codec.MediaType())
	req.Header.Set("Accept", c.cfg.Codec.MediaType())
	req.Header.Set(StreamIDHeader, sid)
	c.cfg.authorize(req)
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s call to master at %s: %w", typ, master, ctx.Err())
		}
		return fmt.Errorf("%s: %w", typ, unreachable(master, err))
	}
	defer func() {
		// Drain so the connection goes back to the pool.
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
	}()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusTemporaryRedirect || resp.StatusCode == http.StatusPermanentRedirect:
		leader, _ := MasterFromLocation(resp.Header.Get("Location"))
		return fmt.Errorf("%s: master at %s no longer leads (it points to %s); the client re-subscribes when its stream ends: %w",
			typ, master, leader, errdefs.ErrUnavailable)
	default:
		return statusError(typ.String(), master, resp)
	}
}

// Accept applies operations to offers. Resources of the offers that the
// operations leave unused are declined with filters (nil: the master's
// default of 5 seconds).
func (c *Client) Accept(ctx context.Context, offerIDs []*mesos.OfferID, ops []*mesos.Offer_Operation, filters *mesos.Filters) error {
	return c.Call(ctx, &schedv1.Call{
		Type: schedv1.Call_ACCEPT.Enum(),
		Accept: &schedv1.Call_Accept{
			OfferIds:   offerIDs,
			Operations: ops,
			Filters:    filters,
		},
	})
}

// Launch launches tasks on one offer. A task without an agent_id gets the
// offer's (on a copy; the caller's task is not changed).
func (c *Client) Launch(ctx context.Context, offer *mesos.Offer, tasks ...*mesos.TaskInfo) error {
	infos := make([]*mesos.TaskInfo, len(tasks))
	for i, t := range tasks {
		if t.GetAgentId() == nil {
			t = proto.Clone(t).(*mesos.TaskInfo)
			t.AgentId = offer.GetAgentId()
		}
		infos[i] = t
	}
	return c.Accept(ctx, []*mesos.OfferID{offer.GetId()}, []*mesos.Offer_Operation{LaunchOperation(infos...)}, nil)
}

// LaunchOperation is an offer operation launching tasks, for Accept.
func LaunchOperation(tasks ...*mesos.TaskInfo) *mesos.Offer_Operation {
	return &mesos.Offer_Operation{
		Type:   mesos.Offer_Operation_LAUNCH.Enum(),
		Launch: &mesos.Offer_Operation_Launch{TaskInfos: tasks},
	}
}

// Decline declines offers; filters (see RefuseFor) say for how long the
// master should not offer the same resources again, nil for its default.
func (c *Client) Decline(ctx context.Context, filters *mesos.Filters, offerIDs ...*mesos.OfferID) error {
	return c.Call(ctx, &schedv1.Call{
		Type:    schedv1.Call_DECLINE.Enum(),
		Decline: &schedv1.Call_Decline{OfferIds: offerIDs, Filters: filters},
	})
}

// Revive removes the framework's offer filters and ends a Suppress, for the
// given roles or all of them.
func (c *Client) Revive(ctx context.Context, roles ...string) error {
	call := &schedv1.Call{Type: schedv1.Call_REVIVE.Enum()}
	if len(roles) > 0 {
		call.Revive = &schedv1.Call_Revive{Roles: roles}
	}
	return c.Call(ctx, call)
}

// Suppress asks the master to stop sending offers, for the given roles or
// all of them, until Revive.
func (c *Client) Suppress(ctx context.Context, roles ...string) error {
	call := &schedv1.Call{Type: schedv1.Call_SUPPRESS.Enum()}
	if len(roles) > 0 {
		call.Suppress = &schedv1.Call_Suppress{Roles: roles}
	}
	return c.Call(ctx, call)
}

// Kill asks for a task to be killed; agentID may be nil. The outcome
// (TASK_KILLING, TASK_KILLED, or TASK_LOST/TASK_UNKNOWN for a task the
// master does not know) arrives as updates.
func (c *Client) Kill(ctx context.Context, taskID *mesos.TaskID, agentID *mesos.AgentID) error {
	return c.Call(ctx, &schedv1.Call{
		Type: schedv1.Call_KILL.Enum(),
		Kill: &schedv1.Call_Kill{TaskId: taskID, AgentId: agentID},
	})
}

// Shutdown asks an agent to shut a custom executor down, with its tasks.
func (c *Client) Shutdown(ctx context.Context, executorID *mesos.ExecutorID, agentID *mesos.AgentID) error {
	return c.Call(ctx, &schedv1.Call{
		Type:     schedv1.Call_SHUTDOWN.Enum(),
		Shutdown: &schedv1.Call_Shutdown{ExecutorId: executorID, AgentId: agentID},
	})
}

// Acknowledge acknowledges a status update, which the agent resends until
// it is. Only updates with a uuid may be acknowledged; the client does it by
// itself unless Config.ManualAcknowledge is set.
func (c *Client) Acknowledge(ctx context.Context, status *mesos.TaskStatus) error {
	if len(status.GetUuid()) == 0 {
		return fmt.Errorf("ACKNOWLEDGE: the update for task %s (%s) has no uuid and must not be acknowledged: %w",
			status.GetTaskId().GetValue(), status.GetState(), errdefs.ErrInvalid)
	}
	return c.Call(ctx, &schedv1.Call{
		Type: schedv1.Call_ACKNOWLEDGE.Enum(),
		Acknowledge: &schedv1.Call_Acknowledge{
			AgentId: status.GetAgentId(),
			TaskId:  status.GetTaskId(),
			Uuid:    status.GetUuid(),
		},
	})
}

// Reconcile asks the master for the latest state of tasks, answered as
// UPDATE events without a uuid. With no tasks it is implicit: the master
// answers for every task it knows of the framework.
func (c *Client) Reconcile(ctx context.Context, tasks ...*schedv1.Call_Reconcile_Task) error {
	return c.Call(ctx, &schedv1.Call{
		Type:      schedv1.Call_RECONCILE.Enum(),
		Reconcile: &schedv1.Call_Reconcile{Tasks: tasks},
	})
}

// ReconcileTask names a task for Reconcile; agentID may be empty.
func ReconcileTask(taskID, agentID string) *schedv1.Call_Reconcile_Task {
	t := &schedv1.Call_Reconcile_Task{TaskId: &mesos.TaskID{Value: mesos.Ptr(taskID)}}
	if agentID != "" {
		t.AgentId = &mesos.AgentID{Value: mesos.Ptr(agentID)}
	}
	return t
}

// Message sends data to an executor, without any delivery guarantee.
func (c *Client) Message(ctx context.Context, agentID *mesos.AgentID, executorID *mesos.ExecutorID, data []byte) error {
	return c.Call(ctx, &schedv1.Call{
		Type:    schedv1.Call_MESSAGE.Enum(),
		Message: &schedv1.Call_Message{AgentId: agentID, ExecutorId: executorID, Data: data},
	})
}

// Teardown removes the framework from the cluster: the master kills all
// its tasks and shuts its executors down. It first waits (within ctx) for
// the automatic acknowledgements of updates already received, so that the
// last update is acknowledged too. The client then stops, with a nil Err;
// on failure it keeps running.
func (c *Client) Teardown(ctx context.Context) error {
	if err := c.acks.wait(ctx); err != nil {
		return fmt.Errorf("TEARDOWN: waiting for acknowledgements: %w", err)
	}
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	if err := c.Call(ctx, &schedv1.Call{Type: schedv1.Call_TEARDOWN.Enum()}); err != nil {
		c.mu.Lock()
		c.closed = false
		c.mu.Unlock()
		return err
	}
	c.cancel()
	<-c.done
	return nil
}
