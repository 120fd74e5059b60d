package master

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/mesolite/mesolite/api/v1/agentpb"
	"github.com/mesolite/mesolite/api/v1/codec"
	masterpb "github.com/mesolite/mesolite/api/v1/master"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/httpauth"
	"github.com/mesolite/mesolite/internal/loglevel"
	"github.com/mesolite/mesolite/master/store"
	"google.golang.org/protobuf/proto"
)

// The operator calls that change the cluster. Each is logged with the
// principal that made it (when authentication says who).

func operatorPrincipal(r *http.Request) string {
	p, _ := httpauth.Principal(r.Context())
	return p
}

// ---- logging level ----

func (m *Master) setLoggingLevel(r *http.Request, c *masterpb.Call_SetLoggingLevel) error {
	if !m.ops.levels.Adjustable() {
		return httpErr(http.StatusNotImplemented, "This master's logging level is fixed: it was started without an adjustable level")
	}
	d := time.Duration(c.GetDuration().GetNanoseconds())
	if d <= 0 {
		return httpErr(http.StatusBadRequest, "'set_logging_level.duration' must be positive")
	}
	d = min(d, loglevel.MaxDuration)
	m.ops.levels.Set(c.GetLevel(), d)
	// Logged at WARN, so it shows whatever the level was.
	m.log.Warn("logging level changed by the operator", "level", c.GetLevel(), "duration", d, "principal", operatorPrincipal(r), "remote_addr", r.RemoteAddr)
	return nil
}

// ---- TEARDOWN ----

// operatorTeardown tears a framework down as its own TEARDOWN would: its
// tasks are killed, its executors shut down, and its id may not subscribe
// again.
func (m *Master) operatorTeardown(r *http.Request, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.role != roleLeading {
		return httpErr(http.StatusServiceUnavailable, "Not the leading master")
	}
	fw := m.frameworks[id]
	if fw == nil {
		return httpErr(http.StatusBadRequest, "No framework found with specified ID '%s'", id)
	}
	if err := m.cfg.ACLs.Check("teardown_frameworks", operatorPrincipal(r), fw.principal); err != nil {
		return err
	}
	m.log.Info("framework torn down by the operator", "framework_id", id, "principal", operatorPrincipal(r), "remote_addr", r.RemoteAddr)
	if fw.stream != nil {
		// The scheduler hears why its stream ends, as it does when it
		// subscribes again with the removed id.
		_ = fw.stream.send(&scheduler.Event{Type: scheduler.Event_ERROR.Enum(), Error: &scheduler.Event_Error{Message: proto.String("Framework has been removed by the operator")}})
	}
	m.removeFramework(fw, "torn down by the operator")
	return nil
}

// ---- DEACTIVATE_AGENT, REACTIVATE_AGENT ----

// setAgentDeactivated stops (or resumes) offers of an agent's resources.
// Offers out for it are rescinded. The mark stays with the agent through
// its reconnections, until REACTIVATE_AGENT or its removal; it does not
// survive a master restart (the registry does not keep it).
func (m *Master) setAgentDeactivated(r *http.Request, id string, deactivate bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.role != roleLeading {
		return httpErr(http.StatusServiceUnavailable, "Not the leading master")
	}
	a := m.agents[id]
	if a == nil || a.recovered {
		return httpErr(http.StatusNotFound, "Agent '%s' is not registered with this master", id)
	}
	if a.deactivated == deactivate {
		return nil
	}
	a.deactivated = deactivate
	if deactivate {
		m.ops.deactivated[id] = true
		m.alloc.SetAgentActive(id, false)
		for _, o := range a.offers {
			m.removeOffer(o, true, 0)
		}
		m.log.Info("agent deactivated by the operator", "agent_id", id, "principal", operatorPrincipal(r), "remote_addr", r.RemoteAddr)
		m.persistAgentMarksLocked()
		return nil
	}
	delete(m.ops.deactivated, id)
	m.undrainLocked(a)
	m.persistAgentMarksLocked()
	if a.connected {
		m.alloc.SetAgentActive(id, true)
		m.triggerAllocation()
	}
	m.log.Info("agent reactivated by the operator", "agent_id", id, "principal", operatorPrincipal(r), "remote_addr", r.RemoteAddr)
	return nil
}

// operatorBeforeAllocationLocked runs before every allocation cycle: it
// keeps deactivated agents out of it (a re-registration made them active
// in the allocator again), and tells the operator event streams about
// agents and frameworks that came or went. m.mu must be held.
func (m *Master) operatorBeforeAllocationLocked() {
	for id := range m.ops.deactivated {
		a := m.agents[id]
		if a == nil || !a.deactivated {
			delete(m.ops.deactivated, id)
			continue
		}
		if a.connected {
			m.alloc.SetAgentActive(id, false)
		}
	}
	m.opSyncLocked()
}

// ---- MARK_AGENT_GONE ----

// markAgentGone removes an agent for good, as Mesos's MARK_AGENT_GONE
// does: its running tasks are TASK_GONE_BY_OPERATOR for PARTITION_AWARE
// frameworks and TASK_LOST for the others (REASON_AGENT_REMOVED_BY_OPERATOR),
// frameworks get a FAILURE for it, the agent is told to shut its
// frameworks down and its stream ends, and it may not register again
// (refuseGoneAgents). It is idempotent. The registry keeps the agent as
// unreachable, so a master restarted before a later phase persists the
// mark would take it back as a returning agent (its tasks already ended).
func (m *Master) markAgentGone(r *http.Request, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.role != roleLeading {
		return httpErr(http.StatusServiceUnavailable, "Not the leading master")
	}
	if err := m.cfg.ACLs.Check("mark_agents_gone", operatorPrincipal(r), id); err != nil {
		return err
	}
	if m.ops.gone[id] {
		return nil
	}
	a := m.agents[id]
	_, unreachable := m.unreachable[id]
	if a == nil && !unreachable {
		return httpErr(http.StatusNotFound, "Agent '%s' is not known to this master", id)
	}
	m.log.Warn("agent marked gone by the operator", "agent_id", id, "principal", operatorPrincipal(r), "remote_addr", r.RemoteAddr)
	m.markGoneLocked(id)
	if a != nil {
		m.removeGoneAgent(a)
	}
	m.opSyncLocked()
	m.persistAgentMarksLocked()
	return nil
}

// markGoneLocked remembers a gone agent, within RegistryMaxAgentCount.
func (m *Master) markGoneLocked(id string) {
	m.ops.gone[id] = true
	m.ops.goneOrder = append(m.ops.goneOrder, id)
	if n := len(m.ops.goneOrder) - m.cfg.RegistryMaxAgentCount; n > 0 {
		for _, old := range m.ops.goneOrder[:n] {
			delete(m.ops.gone, old)
		}
		m.ops.goneOrder = slices.Delete(m.ops.goneOrder, 0, n)
	}
	m.ops.goneCount.Store(int64(len(m.ops.gone)))
}

// removeGoneAgent takes a gone agent out of the books. m.mu must be held.
func (m *Master) removeGoneAgent(a *agent) {
	now := m.clock.Now()
	for _, o := range a.offers {
		m.removeOffer(o, true, 0)
	}
	shutdown := map[string]bool{}
	for fwID, ts := range a.tasks {
		shutdown[fwID] = true
		for _, id := range sortedTaskIDs(ts) {
			t := ts[id]
			if mesos.IsTerminal(t.state()) {
				m.completeTask(t)
				continue
			}
			state := mesos.TaskState_TASK_LOST
			if t.fw.partitionAware {
				state = mesos.TaskState_TASK_GONE_BY_OPERATOR
			}
			st := &mesos.TaskStatus{
				TaskId: t.t.GetTaskId(), State: state.Enum(), Source: mesos.TaskStatus_SOURCE_MASTER.Enum(),
				Reason:  mesos.TaskStatus_REASON_AGENT_REMOVED_BY_OPERATOR.Enum(),
				Message: proto.String(fmt.Sprintf("Agent %s (%s) was marked gone by the operator", a.hostname, a.id)),
				AgentId: t.t.GetAgentId(), Timestamp: proto.Float64(timestamp(now)),
			}
			m.setTaskState(t, st, state)
			m.completeTask(t)
			m.sendFramework(t.fw, &scheduler.Event{Type: scheduler.Event_UPDATE.Enum(), Update: &scheduler.Event_Update{Status: st}})
		}
	}
	for fwID, es := range a.executors {
		shutdown[fwID] = true
		fw := m.frameworks[fwID]
		for _, e := range es {
			if fw != nil {
				m.removeExecutor(a, fw, e)
			}
		}
	}
	for _, fw := range m.frameworks {
		if fw.stream != nil {
			m.sendFramework(fw, &scheduler.Event{Type: scheduler.Event_FAILURE.Enum(), Failure: &scheduler.Event_Failure{AgentId: &mesos.AgentID{Value: proto.String(a.id)}}})
		}
	}
	if a.stream != nil {
		// Mesos shuts a gone agent down; over this protocol it is told
		// to end every framework it runs, and its stream ends.
		for _, fwID := range sortedKeys(shutdown) {
			m.sendAgent(a, shutdownFramework(fwID))
		}
		_ = a.stream.send(&agentpb.Event{Type: agentpb.Event_ERROR.Enum(), Error: &agentpb.Event_Error{Message: proto.String("Agent was marked gone by the operator")}})
		a.stream.close()
	}
	m.alloc.RemoveAgent(a.id)
	delete(m.agents, a.id)
	delete(m.ops.deactivated, a.id)
	m.counters.agentRemovals++
	rec := agentRecord(a)
	rec.UnreachableAt = now
	m.persist(append([]store.Op{store.PutAgent{Agent: rec}}, m.markUnreachable(rec)...)...)
	m.triggerAllocation()
}

// refuseGoneAgents answers 403 to a REGISTER with the id of an agent
// marked gone, before the agent API sees it. Only calls without a stream
// id can be REGISTERs, and only while some agent is gone is their body
// looked at.
func (m *Master) refuseGoneAgents(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m.ops.goneCount.Load() == 0 || r.Method != http.MethodPost || r.Header.Get("Mesos-Stream-Id") != "" {
			next.ServeHTTP(w, r)
			return
		}
		c, err := codec.ForContentType(r.Header.Get("Content-Type"))
		if err != nil {
			next.ServeHTTP(w, r)
			return
		}
		// Bounded as readCall bounds it: a trickled body must not hold
		// this handler.
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(time.Now().Add(bodyReadTimeout))
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
		_ = rc.SetReadDeadline(time.Time{})
		r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), errReader{err}))
		call := &agentpb.Call{}
		if err != nil || c.Unmarshal(body, call) != nil || call.GetType() != agentpb.Call_REGISTER {
			next.ServeHTTP(w, r)
			return
		}
		id := call.GetAgentId().GetValue()
		m.mu.Lock()
		gone := m.ops.gone[id]
		m.mu.Unlock()
		if gone {
			m.log.Warn("REGISTER of an agent marked gone refused", "agent_id", id, "remote_addr", r.RemoteAddr)
			writeError(w, httpErr(http.StatusForbidden, "Agent '%s' was marked gone by the operator and may not register again", id))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// errReader replays a read error after the bytes read before it, so the
// handler behind refuseGoneAgents sees the body as it came.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) {
	if e.err == nil {
		return 0, io.EOF
	}
	return 0, e.err
}
