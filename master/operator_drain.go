package master

import (
	"net/http"
	"time"

	masterpb "github.com/mesolite/mesolite/api/v1/master"
	"github.com/mesolite/mesolite/api/v1/mesos"
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
		}
	}
}

// undrainLocked ends an agent's drain (REACTIVATE_AGENT). m.mu must be
// held.
func (m *Master) undrainLocked(a *agent) {
	if a.drain != nil {
		m.log.Info("drain of agent ended by reactivation", "agent_id", a.id, "state", a.drain.state.String())
		a.drain = nil
	}
}
