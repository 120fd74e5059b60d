package agent

import (
	"context"
	"errors"
	"fmt"
	"github.com/mesolite/mesolite/api/v1/validate"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/executor"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/recordio"
	"github.com/mesolite/mesolite/containerizer"
	"github.com/mesolite/mesolite/errdefs"
	"google.golang.org/protobuf/proto"
)

const maxCallBytes = 16 << 20

// serveExecutorAPI is POST /api/v1/executor.
func (a *Agent) serveExecutorAPI(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		errdefs.MethodNotAllowed(w, r, http.MethodPost)
		return
	}
	call, in, err := readExecutorCall(r)
	if err != nil {
		errdefs.HTTPError(w, err)
		return
	}
	if err := a.authorizeExecutorCall(r, call); err != nil {
		if errors.Is(err, errUnknownExecutor) && call.GetType() == executor.Call_SUBSCRIBE {
			a.shutdownUnknownExecutor(w, r, call, in)
			return
		}
		if errors.Is(err, errdefs.ErrUnauthorized) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="mesos-agent-executor"`)
		}
		errdefs.HTTPError(w, err)
		return
	}
	switch call.GetType() {
	case executor.Call_SUBSCRIBE:
		out, err := codec.ForAccept(r.Header.Get("Accept"), in)
		if err != nil {
			errdefs.HTTPError(w, err)
			return
		}
		a.executorSubscribe(w, r, call, out)
	case executor.Call_UPDATE:
		if err := a.executorUpdate(r.Context(), call); err != nil {
			a.metricsInc(func(m *agentMetrics) { m.invalidUpdates++ })
			errdefs.HTTPError(w, err)
			return
		}
		a.metricsInc(func(m *agentMetrics) { m.validUpdates++ })
		w.WriteHeader(http.StatusAccepted)
	case executor.Call_MESSAGE:
		a.master.message(r.Context(), call.GetFrameworkId().GetValue(), call.GetExecutorId().GetValue(), call.GetMessage().GetData())
		w.WriteHeader(http.StatusAccepted)
	default:
		errdefs.HTTPError(w, errdefs.Statusf(http.StatusBadRequest, "unknown call type %v", call.GetType()))
	}
}

// readExecutorCall decodes and checks a call; its errors carry their
// status (415, 413, 400).
func readExecutorCall(r *http.Request) (*executor.Call, codec.Codec, error) {
	in, err := codec.ForContentType(r.Header.Get("Content-Type"))
	if err != nil {
		return nil, nil, err
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxCallBytes+1))
	if err != nil {
		return nil, nil, errdefs.Statusf(http.StatusBadRequest, "Failed to read the request body: %v", err)
	}
	if len(body) > maxCallBytes {
		return nil, nil, errdefs.Statusf(http.StatusRequestEntityTooLarge, "Request body is larger than %d bytes", maxCallBytes)
	}
	call := &executor.Call{}
	if err := in.Unmarshal(body, call); err != nil {
		return nil, nil, errdefs.Statusf(http.StatusBadRequest, "Failed to parse body into Call: %v", err)
	}
	if err := validateExecutorCall(call); err != nil {
		return nil, nil, errdefs.WithStatus(http.StatusBadRequest, err)
	}
	return call, in, nil
}

func validateExecutorCall(c *executor.Call) error {
	if c.Type == nil {
		return fmt.Errorf("Expecting 'type' to be present")
	}
	if c.GetFrameworkId().GetValue() == "" || c.GetExecutorId().GetValue() == "" {
		return fmt.Errorf("Expecting 'framework_id' and 'executor_id' to be present")
	}
	// Ids become path components of checkpoints: names, never paths.
	if err := validate.ID("framework_id", c.GetFrameworkId().GetValue()); err != nil {
		return err
	}
	if err := validate.ID("executor_id", c.GetExecutorId().GetValue()); err != nil {
		return err
	}
	switch c.GetType() {
	case executor.Call_SUBSCRIBE:
		if c.Subscribe == nil {
			return fmt.Errorf("Expecting 'subscribe' to be present")
		}
	case executor.Call_UPDATE:
		st := c.GetUpdate().GetStatus()
		if st == nil {
			return fmt.Errorf("Expecting 'update' to be present")
		}
		if len(st.GetUuid()) == 0 {
			return fmt.Errorf("Expecting 'uuid' to be present")
		}
		if st.GetTaskId().GetValue() == "" || st.State == nil {
			return fmt.Errorf("Expecting 'status.task_id' and 'status.state' to be present")
		}
		if st.GetState() == mesos.TaskState_TASK_STAGING {
			return fmt.Errorf("Received TASK_STAGING from executor which is not allowed")
		}
		if err := validate.ID("status.task_id", st.GetTaskId().GetValue()); err != nil {
			return err
		}
		if err := validate.Text("status.message", st.GetMessage(), validate.MaxMessageLen); err != nil {
			return err
		}
		if err := validate.Text("status.data", string(st.GetData()), validate.MaxDataLen); err != nil {
			return err
		}
	case executor.Call_MESSAGE:
		if c.Message == nil {
			return fmt.Errorf("Expecting 'message' to be present")
		}
		if err := validate.Text("message.data", string(c.GetMessage().GetData()), validate.MaxDataLen); err != nil {
			return err
		}
	}
	return nil
}

// executorOwnsTask says whether taskID was given to es (queued, running,
// terminal or finished).
func (a *Agent) executorOwnsTask(es *executorState, taskID string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if es.queued[taskID] != nil || es.launched[taskID] != nil || es.terminal[taskID] != nil {
		return true
	}
	for _, ts := range es.finished {
		if ts.info.GetTaskId().GetValue() == taskID {
			return true
		}
	}
	return false
}

func (a *Agent) lookupExecutorLocked(fwID, exID string) *executorState {
	fw := a.frameworks[fwID]
	if fw == nil {
		return nil
	}
	return fw.executors[exID]
}

func (a *Agent) executorSubscribe(w http.ResponseWriter, r *http.Request, call *executor.Call, out codec.Codec) {
	fwID, exID := call.GetFrameworkId().GetValue(), call.GetExecutorId().GetValue()
	ctx := r.Context()
	a.mu.Lock()
	es := a.lookupExecutorLocked(fwID, exID)
	if es == nil || !es.live() {
		a.mu.Unlock()
		a.shutdownUnknownExecutor(w, r, call, out)
		return
	}
	if es.conn != nil {
		es.conn.close() // a newer connection of the same executor wins
	}
	conn := &executorConn{events: make(chan *executor.Event, executorQueueLen), done: make(chan struct{})}
	es.conn = conn
	a.setPhaseLocked(es, phaseRunning)
	// An executor that reconnects while it is being shut down is told
	// again.
	shutdown := es.phase == phaseKilling
	if es.regTimer != nil {
		es.regTimer.Stop()
	}
	fw := a.frameworks[fwID]
	sub := &executor.Event_Subscribed{
		ExecutorInfo:  es.info,
		FrameworkInfo: fw.info,
		AgentInfo:     proto.Clone(a.info).(*mesos.AgentInfo),
		ContainerId:   &mesos.ContainerID{Value: proto.String(es.containerID)},
	}
	// Tasks the executor already has (it resubscribes after an agent
	// restart) are not launched again.
	known := map[string]bool{}
	for _, t := range call.GetSubscribe().GetUnacknowledgedTasks() {
		known[t.GetTaskId().GetValue()] = true
	}
	// Tasks of a group go out together, as one LAUNCH_GROUP of those of
	// its tasks still queued (a task killed meanwhile is not among them).
	var launch []*executor.Event
	var grouped []*mesos.TaskInfo // tasks of groups, for their cgroups
	giving := map[string]bool{}
	groups := map[*mesos.TaskGroupInfo]*mesos.TaskGroupInfo{}
	for id, ts := range es.queued {
		delete(es.queued, id)
		es.launched[id] = ts
		if known[id] {
			continue
		}
		giving[id] = true
		if ts.group == nil {
			launch = append(launch, launchEvent(ts.info))
			continue
		}
		g := groups[ts.group]
		if g == nil {
			g = &mesos.TaskGroupInfo{}
			groups[ts.group] = g
			launch = append(launch, launchGroupEvent(g))
		}
		g.Tasks = append(g.Tasks, ts.info)
		grouped = append(grouped, ts.info)
	}
	cid := es.containerID
	// A task the agent gave out that the executor neither lists nor ever
	// sent an update for never reached it (the agent died between the
	// launch and the executor's subscription): it is given again.
	var maybeLost []*taskState
	for id, ts := range es.launched {
		if !known[id] && !giving[id] {
			maybeLost = append(maybeLost, ts)
		}
	}
	a.mu.Unlock()
	if !shutdown {
		a.prepareNested(ctx, es, cid, grouped)
	}
	for _, ts := range maybeLost {
		if !a.sum.HeardFromExecutor(fwID, ts.info.GetTaskId().GetValue()) {
			a.log.Info("giving a task again to an executor that never received it", "framework_id", fwID, "executor_id", exID, "task_id", ts.info.GetTaskId().GetValue())
			launch = append(launch, launchEvent(ts.info))
		}
	}

	// Updates the executor sent but we never checkpointed (we crashed
	// between) are taken now; duplicates are dropped by uuid.
	for _, u := range call.GetSubscribe().GetUnacknowledgedUpdates() {
		up := &executor.Call{Type: executor.Call_UPDATE.Enum(), FrameworkId: call.FrameworkId, ExecutorId: call.ExecutorId, Update: u}
		// Held to the rules of an UPDATE call: ids, caps, uuid, state.
		if err := validateExecutorCall(up); err != nil {
			a.log.Warn("dropped an invalid unacknowledged update from a resubscribing executor", "framework_id", fwID, "executor_id", exID, "error", err)
			continue
		}
		_ = a.executorUpdate(ctx, up)
	}

	w.Header().Set("Content-Type", out.MediaType())
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rw := recordio.NewWriter(w)
	rc := http.NewResponseController(w)
	write := func(ev *executor.Event) error {
		b, err := out.Marshal(ev)
		if err != nil {
			return err
		}
		// An executor that stops reading cannot hold this stream (and
		// what waits on it) for ever.
		_ = rc.SetWriteDeadline(time.Now().Add(executorWriteTimeout))
		if err := rw.WriteRecord(b); err != nil {
			return err
		}
		_ = rc.SetWriteDeadline(time.Time{})
		return nil
	}
	if err := write(&executor.Event{Type: executor.Event_SUBSCRIBED.Enum(), Subscribed: sub}); err != nil {
		conn.close()
		return
	}
	if shutdown {
		launch = nil
		if err := write(&executor.Event{Type: executor.Event_SHUTDOWN.Enum()}); err != nil {
			conn.close()
			return
		}
	}
	for _, ev := range launch {
		if err := write(ev); err != nil {
			conn.close()
			return
		}
	}
	a.log.Info("executor subscribed", "framework_id", fwID, "executor_id", exID, "launched", len(launch))
	for {
		select {
		case ev := <-conn.events:
			if err := write(ev); err != nil {
				a.executorDisconnected(es, conn)
				return
			}
		case <-conn.done:
			return
		case <-ctx.Done():
			a.executorDisconnected(es, conn)
			return
		}
	}
}

// shutdownUnknownExecutor answers the SUBSCRIBE of an executor this agent
// does not run (any more) with SHUTDOWN, as Mesos's agent does: an
// executor of a launch a crash cut off before its container was
// checkpointed, or one that outlived its end here, stops (killing its
// tasks) instead of reconnecting until its recovery timeout. Only an
// executor that proved itself gets here (its token, or its container).
func (a *Agent) shutdownUnknownExecutor(w http.ResponseWriter, r *http.Request, call *executor.Call, in codec.Codec) {
	out, err := codec.ForAccept(r.Header.Get("Accept"), in)
	if err != nil {
		errdefs.HTTPError(w, err)
		return
	}
	b, err := out.Marshal(&executor.Event{Type: executor.Event_SHUTDOWN.Enum()})
	if err != nil {
		errdefs.HTTPError(w, err)
		return
	}
	a.log.Warn("shutting down an executor this agent does not run", "framework_id", call.GetFrameworkId().GetValue(),
		"executor_id", call.GetExecutorId().GetValue(), "remote", r.RemoteAddr)
	w.Header().Set("Content-Type", out.MediaType())
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(executorWriteTimeout))
	_ = recordio.NewWriter(w).WriteRecord(b)
	_ = rc.Flush()
}

func launchEvent(t *mesos.TaskInfo) *executor.Event {
	return &executor.Event{Type: executor.Event_LAUNCH.Enum(), Launch: &executor.Event_Launch{Task: t}}
}

func (a *Agent) executorDisconnected(es *executorState, conn *executorConn) {
	conn.close()
	a.mu.Lock()
	defer a.mu.Unlock()
	if es.conn == conn {
		es.conn = nil
	}
}

// completeContainerStatus does what Mesos's agent does to every update of
// an executor: the status names the executor's container (what a client
// attaches to or enters) and, when the executor named no network, carries
// the agent's address, where a task on the host's network is reachable
// (mesos-dns and service discovery read it from there).
func (a *Agent) completeContainerStatus(st *mesos.TaskStatus, cid string) {
	if cid == "" {
		return
	}
	cs := st.GetContainerStatus()
	if cs == nil {
		cs = &mesos.ContainerStatus{}
		st.ContainerStatus = cs
	}
	if cs.GetContainerId().GetValue() == "" {
		cs.ContainerId = &mesos.ContainerID{Value: proto.String(cid)}
	}
	if len(cs.GetNetworkInfos()) == 0 {
		cs.NetworkInfos = a.agentNetwork()
	}
}

// agentNetwork is the agent's address as a NetworkInfo: where a container
// on the host's network is reached. nil when the agent has none to say.
func (a *Agent) agentNetwork() []*mesos.NetworkInfo {
	if a.cfg.AdvertiseIP == "" {
		return nil
	}
	family := mesos.NetworkInfo_IPv4
	if ip := net.ParseIP(a.cfg.AdvertiseIP); ip != nil && ip.To4() == nil {
		family = mesos.NetworkInfo_IPv6
	}
	return []*mesos.NetworkInfo{{IpAddresses: []*mesos.NetworkInfo_IPAddress{{
		Protocol: family.Enum(), IpAddress: proto.String(a.cfg.AdvertiseIP)}}}}
}

// containerStatus is an executor container's status as GET_CONTAINERS
// shows it: its id, the agent's address, its root process.
func (a *Agent) containerStatus(cid string, pid int) *mesos.ContainerStatus {
	cs := &mesos.ContainerStatus{ContainerId: &mesos.ContainerID{Value: proto.String(cid)}, NetworkInfos: a.agentNetwork()}
	if pid > 0 {
		cs.ExecutorPid = proto.Uint32(uint32(pid))
	}
	return cs
}

func (a *Agent) executorUpdate(ctx context.Context, call *executor.Call) error {
	fwID, exID := call.GetFrameworkId().GetValue(), call.GetExecutorId().GetValue()
	st := proto.Clone(call.GetUpdate().GetStatus()).(*mesos.TaskStatus)
	a.mu.Lock()
	es := a.lookupExecutorLocked(fwID, exID)
	var conn *executorConn
	var cid string
	if es != nil {
		conn, cid = es.conn, es.containerID
	}
	a.mu.Unlock()
	if es == nil {
		return fmt.Errorf("executor %s of framework %s is not known to this agent: %w", exID, fwID, errdefs.ErrInvalid)
	}
	// An executor speaks only for its own tasks: an update for a task of
	// another executor (or one this agent never gave it) is refused.
	if !a.executorOwnsTask(es, st.GetTaskId().GetValue()) {
		return fmt.Errorf("task %s is not a task of executor %s: %w", st.GetTaskId().GetValue(), exID, errdefs.ErrForbidden)
	}
	st.ExecutorId = call.ExecutorId
	if st.Source == nil {
		st.Source = mesos.TaskStatus_SOURCE_EXECUTOR.Enum()
	}
	a.completeContainerStatus(st, cid)
	// A task of a group with a cgroup of its own: the agent names it, not
	// the executor.
	nid := nestedOf(es, cid, st.GetTaskId().GetValue())
	// A task that failed because its container (or its own cgroup) hit a
	// limit says so, no matter whether the executor or the cgroup's OOM
	// event came first.
	if st.GetState() == mesos.TaskState_TASK_FAILED {
		if lr, ok := a.cz.(containerizer.LimitationReporter); ok {
			term, hit := containerizer.Termination{}, false
			if nid != "" {
				term, hit = lr.Limitation(ctx, nid)
			}
			if !hit {
				term, hit = lr.Limitation(ctx, cid)
			}
			if hit {
				st.Reason = term.Reason.Enum()
				st.Source = mesos.TaskStatus_SOURCE_AGENT.Enum()
				st.Message = proto.String(term.Message)
			}
		}
	}
	if _, err := a.handleUpdate(ctx, fwID, st); err != nil {
		return fmt.Errorf("checkpoint update: %w", err)
	}
	a.nestedUpdate(ctx, nid, st.GetState())
	// The executor may forget an update once the agent holds it.
	if conn != nil {
		conn.send(&executor.Event{Type: executor.Event_ACKNOWLEDGED.Enum(), Acknowledged: &executor.Event_Acknowledged{TaskId: st.TaskId, Uuid: st.Uuid}})
	}
	return nil
}
