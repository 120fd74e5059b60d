package master

import (
	"encoding/json"
	"net/http"
	"slices"
	"time"

	masterpb "github.com/mesolite/mesolite/api/v1/master"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/master/store"
	"google.golang.org/protobuf/proto"
)

// DRAIN_AGENT, as Mesos 1.9+ has it: the agent is deactivated (no more
// offers of its resources), every task on it is killed, within the
// drain's max_grace_period when one is given; once no task is left the
// agent is DRAINED (and, with mark_gone, marked gone). REACTIVATE_AGENT
// ends a drain.

// drain is an agent's drain.
type drain struct {
	state  mesos.DrainState
	config *mesos.DrainConfig
}

func (d *drain) info() *mesos.DrainInfo {
	return &mesos.DrainInfo{State: d.state.Enum(), Config: proto.Clone(d.config).(*mesos.DrainConfig)}
}

// drainAgent is DRAIN_AGENT.
func (m *Master) drainAgent(r *http.Request, c *masterpb.Call_DrainAgent) error {
	if g := c.GetMaxGracePeriod(); g != nil && g.GetNanoseconds() < 0 {
		return httpErr(http.StatusBadRequest, "'max_grace_period' must not be negative")
	}
	if err := m.cfg.ACLs.Check("drain_agents", operatorPrincipal(r), c.GetAgentId().GetValue()); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	a, err := m.liveAgentLocked(c.GetAgentId().GetValue())
	if err != nil {
		return err
	}
	cfg := &mesos.DrainConfig{MaxGracePeriod: c.GetMaxGracePeriod(), MarkGone: proto.Bool(c.GetMarkGone())}
	if a.drain != nil && a.drain.state == mesos.DrainState_DRAINED && !c.GetMarkGone() {
		return nil
	}
	a.drain = &drain{state: mesos.DrainState_DRAINING, config: cfg}
	// Deactivated as DEACTIVATE_AGENT does it: no offers, outstanding
	// ones rescinded.
	a.deactivated = true
	m.ops.deactivated[a.id] = true
	m.alloc.SetAgentActive(a.id, false)
	for _, o := range a.offers {
		m.removeOffer(o, true, 0)
	}
	killed := 0
	for fwID, ts := range a.tasks {
		for _, t := range ts {
			if mesos.IsTerminal(t.state()) {
				continue
			}
			t.killRequested = true
			policy := t.killPolicy
			if g := c.GetMaxGracePeriod(); g != nil {
				if policy.GetGracePeriod() == nil || policy.GetGracePeriod().GetNanoseconds() > g.GetNanoseconds() {
					policy = &mesos.KillPolicy{GracePeriod: proto.Clone(g).(*mesos.DurationInfo)}
				}
			}
			m.sendAgent(a, killEvent(fwID, t.t.GetTaskId(), policy))
			killed++
		}
	}
	m.log.Info("draining agent", "agent_id", a.id, "tasks", killed, "max_grace_period", time.Duration(c.GetMaxGracePeriod().GetNanoseconds()),
		"mark_gone", c.GetMarkGone(), "principal", operatorPrincipal(r))
	m.checkDrainedLocked(a)
	m.goneDrainedLocked()
	m.persistAgentMarksLocked()
	return nil
}

// checkDrainedLocked moves a draining agent with no task left to DRAINED
// (and marks it gone when its drain says so). Called after every change
// of a task's state on it. m.mu must be held.
func (m *Master) checkDrainedLocked(a *agent) {
	if a == nil || a.drain == nil || a.drain.state != mesos.DrainState_DRAINING {
		return
	}
	for _, ts := range a.tasks {
		for _, t := range ts {
			if !mesos.IsTerminal(t.state()) {
				return
			}
		}
	}
	a.drain.state = mesos.DrainState_DRAINED
	m.log.Info("agent drained", "agent_id", a.id, "mark_gone", a.drain.config.GetMarkGone())
	m.persistAgentMarksLocked()
}

// goneDrainedLocked marks gone the drained agents whose drain says so.
// It runs from housekeeping and after DRAIN_AGENT, never from inside the
// processing of an update (which still holds the agent's tasks). m.mu
// must be held.
func (m *Master) goneDrainedLocked() {
	for _, a := range m.agents {
		if a.drain != nil && a.drain.state == mesos.DrainState_DRAINED && a.drain.config.GetMarkGone() && !m.ops.gone[a.id] {
			m.log.Warn("drained agent marked gone", "agent_id", a.id)
			m.markGoneLocked(a.id)
			m.removeGoneAgent(a)
			m.opSyncLocked()
			m.persistAgentMarksLocked()
		}
	}
}

// undrainLocked ends an agent's drain (REACTIVATE_AGENT). m.mu must be
// held.
func (m *Master) undrainLocked(a *agent) {
	if a.drain != nil {
		m.log.Info("drain of agent ended by reactivation", "agent_id", a.id, "state", a.drain.state.String())
		a.drain = nil
		m.persistAgentMarksLocked()
	}
}

// settingAgentMarks is the registry key of the operator's marks on agents:
// deactivated, gone, and drains.
const settingAgentMarks = "agent_marks"

type agentMarks struct {
	Deactivated []string               `json:"deactivated,omitempty"`
	Gone        []string               `json:"gone,omitempty"` // oldest first
	Drains      map[string]drainRecord `json:"drains,omitempty"`
}

type drainRecord struct {
	State          string `json:"state"`
	MaxGracePeriod int64  `json:"max_grace_period_ns,omitempty"`
	HasGrace       bool   `json:"has_grace,omitempty"`
	MarkGone       bool   `json:"mark_gone,omitempty"`
}

// persistAgentMarksLocked writes the marks to the registry, so the next
// leader and this master after a restart keep them: a deactivated or
// draining agent is not offered, a gone one may not come back. m.mu must
// be held.
func (m *Master) persistAgentMarksLocked() {
	marks := agentMarks{Gone: slices.Clone(m.ops.goneOrder), Drains: map[string]drainRecord{}}
	for id := range m.ops.deactivated {
		marks.Deactivated = append(marks.Deactivated, id)
	}
	slices.Sort(marks.Deactivated)
	for id, a := range m.agents {
		if a.drain != nil {
			rec := drainRecord{State: a.drain.state.String(), MarkGone: a.drain.config.GetMarkGone()}
			if g := a.drain.config.GetMaxGracePeriod(); g != nil {
				rec.MaxGracePeriod, rec.HasGrace = g.GetNanoseconds(), true
			}
			marks.Drains[id] = rec
		}
	}
	data, err := json.Marshal(marks)
	if err != nil {
		m.log.Error("BUG: cannot encode the agent marks", "error", err)
		return
	}
	m.persist(store.PutSetting{Key: settingAgentMarks, Value: data})
}

// installAgentMarksLocked applies the registry's marks to the agents of
// the snapshot. m.mu must be held.
func (m *Master) installAgentMarksLocked(data []byte) {
	var marks agentMarks
	if err := json.Unmarshal(data, &marks); err != nil {
		m.log.Error("registry holds agent marks this master cannot read; none", "error", err)
		return
	}
	for _, id := range marks.Deactivated {
		m.ops.deactivated[id] = true
		if a := m.agents[id]; a != nil {
			a.deactivated = true
		}
	}
	for _, id := range marks.Gone {
		m.markGoneLocked(id)
	}
	for id, rec := range marks.Drains {
		a := m.agents[id]
		if a == nil {
			continue
		}
		cfg := &mesos.DrainConfig{MarkGone: proto.Bool(rec.MarkGone)}
		if rec.HasGrace {
			cfg.MaxGracePeriod = &mesos.DurationInfo{Nanoseconds: proto.Int64(rec.MaxGracePeriod)}
		}
		state := mesos.DrainState(mesos.DrainState_value[rec.State])
		a.drain = &drain{state: state, config: cfg}
	}
}
