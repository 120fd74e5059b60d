package master

import (
	"slices"
	"strings"
	"sync/atomic"
	"time"

	masterpb "github.com/mesolite/mesolite/api/v1/master"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/internal/loglevel"
	"google.golang.org/protobuf/proto"
)

// operatorHub is the master's side of the operator API: the SUBSCRIBE
// streams and what they were told, and the operator's own marks on agents.
// It is guarded by Master.mu, except levels, which has its own lock.
//
// Events come from two places. Changes the master makes in one place get
// a hook there: a task launched (addTask), a task's state (setTaskState),
// a framework subscribing, disconnecting or torn down. Agents come and go
// in several places (registration, re-registration, the removal of an
// agent that did not come back or stopped answering); rather than a hook
// in each, opSyncLocked compares the registered agents, and the
// frameworks, with what the subscribers were told, and says what changed.
// It runs before every allocation cycle (every registration triggers one,
// and no offer is made before it) and at every housekeeping tick
// (removals); and an event about a task first announces its agent and
// framework if the subscribers do not know them. Without subscribers all
// of this costs one map length.
type operatorHub struct {
	subs map[*opSubscriber]struct{}
	// maxQueue bounds each subscriber's queue (maxOperatorQueue).
	maxQueue int
	// agents and frameworks are what the subscribers were told of:
	// registered (not recovered) agents and known frameworks, by id, with
	// the record they were told about (a new record under the same id is
	// a removal and an addition).
	agents     map[string]announcedAgent
	frameworks map[string]*framework

	// deactivated are the agents the operator deactivated
	// (DEACTIVATE_AGENT); the allocator is told again before every cycle,
	// since a re-registration makes an agent active there.
	deactivated map[string]bool
	// gone are the agents the operator marked gone (MARK_AGENT_GONE),
	// oldest first in goneOrder; they may not register again.
	gone      map[string]bool
	goneOrder []string
	// goneCount is len(gone), read without the lock by the REGISTER gate,
	// which costs nothing while no agent is gone.
	goneCount atomic.Int64

	levels loglevel.Control
}

type announcedAgent struct {
	a *agent
	// rereg is the agent's reregisteredTime when it was last looked at: a
	// re-registration may bring tasks the master did not know.
	rereg time.Time
}

func (h *operatorHub) init() {
	h.subs = make(map[*opSubscriber]struct{})
	h.maxQueue = maxOperatorQueue
	h.agents = make(map[string]announcedAgent)
	h.frameworks = make(map[string]*framework)
	h.deactivated = make(map[string]bool)
	h.gone = make(map[string]bool)
}

// opBroadcastLocked queues ev on every subscriber, dropping those that
// cannot take it. m.mu must be held.
func (m *Master) opBroadcastLocked(ev *masterpb.Event) {
	if len(m.ops.subs) == 0 {
		return
	}
	shared := &opEvent{ev: ev}
	var scope eventScope
	scoped := false
	for s := range m.ops.subs {
		if s.viewer != nil {
			if !scoped {
				scope, scoped = m.opEventScopeLocked(ev), true
			}
			if !scope.visibleTo(s.viewer) {
				continue
			}
		}
		if !s.send(shared) {
			m.dropSubscriberLocked(s)
		}
	}
}

// eventScope is what seeing an event takes under --acls: nothing (agent
// events), the framework's view_frameworks, or also its view_tasks.
type eventScope struct {
	framework bool   // about a framework or one of its tasks
	task      bool   // about a task
	user      string // the framework's user
}

func (e eventScope) visibleTo(v *viewer) bool {
	switch {
	case !e.framework:
		return true
	case e.task:
		return v.framework(e.user) && v.tasks(e.user)
	default:
		return v.framework(e.user)
	}
}

// opEventScopeLocked says whom ev is about.
func (m *Master) opEventScopeLocked(ev *masterpb.Event) eventScope {
	userOf := func(fwID string) string {
		if fw := m.frameworks[fwID]; fw != nil {
			return fw.info.GetUser()
		}
		for _, fw := range m.completed {
			if fw.id == fwID {
				return fw.info.GetUser()
			}
		}
		return ""
	}
	switch ev.GetType() {
	case masterpb.Event_TASK_ADDED:
		return eventScope{framework: true, task: true, user: userOf(ev.GetTaskAdded().GetTask().GetFrameworkId().GetValue())}
	case masterpb.Event_TASK_UPDATED:
		return eventScope{framework: true, task: true, user: userOf(ev.GetTaskUpdated().GetFrameworkId().GetValue())}
	case masterpb.Event_FRAMEWORK_ADDED:
		return eventScope{framework: true, user: ev.GetFrameworkAdded().GetFramework().GetFrameworkInfo().GetUser()}
	case masterpb.Event_FRAMEWORK_UPDATED:
		return eventScope{framework: true, user: ev.GetFrameworkUpdated().GetFramework().GetFrameworkInfo().GetUser()}
	case masterpb.Event_FRAMEWORK_REMOVED:
		return eventScope{framework: true, user: ev.GetFrameworkRemoved().GetFrameworkInfo().GetUser()}
	}
	return eventScope{}
}

func (m *Master) dropSubscriberLocked(s *opSubscriber) {
	if _, ok := m.ops.subs[s]; !ok {
		return
	}
	delete(m.ops.subs, s)
	s.mu.Lock()
	reason := s.reason
	s.mu.Unlock()
	if reason != nil {
		m.log.Warn("operator event subscriber dropped", "subscriber", s.id, "remote_addr", s.remote, "reason", reason.Error())
	}
}

// closeOperatorStreamsLocked ends every subscription (shutdown).
func (m *Master) closeOperatorStreamsLocked() {
	for s := range m.ops.subs {
		s.close(errOperatorShutdown)
		delete(m.ops.subs, s)
	}
}

// resetAnnouncedLocked makes what the subscribers were told the current
// books, for the first subscriber after a time without any: its SUBSCRIBED
// carries exactly these.
func (m *Master) resetAnnouncedLocked() {
	clear(m.ops.agents)
	clear(m.ops.frameworks)
	for id, a := range m.agents {
		if !a.recovered {
			m.ops.agents[id] = announcedAgent{a: a, rereg: a.reregisteredTime}
		}
	}
	for id, fw := range m.frameworks {
		m.ops.frameworks[id] = fw
	}
}

// opSyncLocked tells the subscribers about agents and frameworks that
// came or went since they last heard. It runs before every allocation
// cycle, so the common case, nothing new, walks the two maps and sorts
// nothing. m.mu must be held.
func (m *Master) opSyncLocked() {
	if len(m.ops.subs) == 0 {
		return
	}
	var fws []*framework
	for id, fw := range m.frameworks {
		if m.ops.frameworks[id] != fw {
			fws = append(fws, fw)
		}
	}
	slices.SortFunc(fws, func(a, b *framework) int { return strings.Compare(a.id, b.id) })
	for _, fw := range fws {
		m.opEnsureFrameworkLocked(fw)
	}
	var agents []*agent
	for id, a := range m.agents {
		if k, ok := m.ops.agents[id]; !a.recovered && (!ok || k.a != a || !k.rereg.Equal(a.reregisteredTime)) {
			agents = append(agents, a)
		}
	}
	slices.SortFunc(agents, func(a, b *agent) int { return strings.Compare(a.id, b.id) })
	for _, a := range agents {
		m.opEnsureAgentLocked(a)
	}
	var goneAgents []string
	for id, k := range m.ops.agents {
		if a := m.agents[id]; a == nil || a.recovered || a != k.a {
			goneAgents = append(goneAgents, id)
		}
	}
	slices.Sort(goneAgents)
	for _, id := range goneAgents {
		m.opAgentRemovedLocked(id)
	}
	var goneFws []*framework
	for id, fw := range m.ops.frameworks {
		if m.frameworks[id] != fw {
			goneFws = append(goneFws, fw)
		}
	}
	slices.SortFunc(goneFws, func(a, b *framework) int { return strings.Compare(a.id, b.id) })
	for _, fw := range goneFws {
		m.opFrameworkRemovedLocked(fw)
	}
}

// opEnsureFrameworkLocked announces fw if the subscribers do not know it.
func (m *Master) opEnsureFrameworkLocked(fw *framework) {
	if len(m.ops.subs) == 0 || m.ops.frameworks[fw.id] == fw {
		return
	}
	if old := m.ops.frameworks[fw.id]; old != nil {
		m.opFrameworkRemovedLocked(old)
	}
	m.ops.frameworks[fw.id] = fw
	m.opBroadcastLocked(&masterpb.Event{
		Type:           masterpb.Event_FRAMEWORK_ADDED.Enum(),
		FrameworkAdded: &masterpb.Event_FrameworkAdded{Framework: m.frameworkProto(fw)},
	})
}

// opFrameworkChangedLocked says a framework subscribed, re-subscribed or
// disconnected: FRAMEWORK_ADDED for one the subscribers do not know,
// FRAMEWORK_UPDATED otherwise.
func (m *Master) opFrameworkChangedLocked(fw *framework) {
	if len(m.ops.subs) == 0 {
		return
	}
	if m.ops.frameworks[fw.id] != fw {
		m.opEnsureFrameworkLocked(fw)
		return
	}
	m.opBroadcastLocked(&masterpb.Event{
		Type:             masterpb.Event_FRAMEWORK_UPDATED.Enum(),
		FrameworkUpdated: &masterpb.Event_FrameworkUpdated{Framework: m.frameworkProto(fw)},
	})
}

// opFrameworkRemovedLocked says a framework the subscribers know is gone.
func (m *Master) opFrameworkRemovedLocked(fw *framework) {
	if len(m.ops.subs) == 0 || m.ops.frameworks[fw.id] != fw {
		return
	}
	delete(m.ops.frameworks, fw.id)
	m.opBroadcastLocked(&masterpb.Event{
		Type:             masterpb.Event_FRAMEWORK_REMOVED.Enum(),
		FrameworkRemoved: &masterpb.Event_FrameworkRemoved{FrameworkInfo: frameworkInfoProto(fw)},
	})
}

// opEnsureAgentLocked announces a registered agent the subscribers do not
// know, with the tasks it brought; for one they know that re-registered
// since, the tasks it brought that the master did not know.
func (m *Master) opEnsureAgentLocked(a *agent) {
	if len(m.ops.subs) == 0 || a.recovered {
		return
	}
	known, ok := m.ops.agents[a.id]
	switch {
	case ok && known.a == a && known.rereg.Equal(a.reregisteredTime):
		return
	case ok && known.a == a:
		m.ops.agents[a.id] = announcedAgent{a: a, rereg: a.reregisteredTime}
	default:
		if ok {
			m.opAgentRemovedLocked(a.id)
		}
		m.ops.agents[a.id] = announcedAgent{a: a, rereg: a.reregisteredTime}
		m.opBroadcastLocked(&masterpb.Event{
			Type:       masterpb.Event_AGENT_ADDED.Enum(),
			AgentAdded: &masterpb.Event_AgentAdded{Agent: m.agentProto(a)},
		})
	}
	for _, fwID := range sortedKeys(a.tasks) {
		ts := a.tasks[fwID]
		for _, id := range sortedTaskIDs(ts) {
			if t := ts[id]; !t.announced {
				m.opTaskAddedLocked(t)
			}
		}
	}
}

func (m *Master) opAgentRemovedLocked(id string) {
	if _, ok := m.ops.agents[id]; !ok {
		return
	}
	delete(m.ops.agents, id)
	m.opBroadcastLocked(&masterpb.Event{
		Type:         masterpb.Event_AGENT_REMOVED.Enum(),
		AgentRemoved: &masterpb.Event_AgentRemoved{AgentId: &mesos.AgentID{Value: proto.String(id)}},
	})
}

// opTaskAddedLocked says a task became known: launched, or brought by an
// agent. Its framework and agent are announced first.
func (m *Master) opTaskAddedLocked(t *task) {
	if len(m.ops.subs) == 0 {
		return
	}
	m.opEnsureFrameworkLocked(t.fw)
	if a := m.agents[t.agentID]; a != nil && !a.recovered {
		m.opEnsureAgentLocked(a)
	}
	if t.announced {
		// opEnsureAgentLocked announced it with its agent.
		return
	}
	t.announced = true
	m.opBroadcastLocked(&masterpb.Event{
		Type:      masterpb.Event_TASK_ADDED.Enum(),
		TaskAdded: &masterpb.Event_TaskAdded{Task: taskProto(t)},
	})
}

// opTaskUpdatedLocked says a task's state changed; st is the status the
// master kept (data stripped), latest the state the agent knows.
func (m *Master) opTaskUpdatedLocked(t *task, st *mesos.TaskStatus, latest mesos.TaskState) {
	if len(m.ops.subs) == 0 {
		return
	}
	if !t.announced && t.fw.tasks[t.id()] == t {
		m.opTaskAddedLocked(t)
	}
	m.opBroadcastLocked(&masterpb.Event{
		Type: masterpb.Event_TASK_UPDATED.Enum(),
		TaskUpdated: &masterpb.Event_TaskUpdated{
			FrameworkId: &mesos.FrameworkID{Value: proto.String(t.fw.id)},
			Status:      st,
			State:       latest.Enum(),
		},
	})
}
