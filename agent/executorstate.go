package agent

import "fmt"

// executorPhase is where an executor is in its life. Every change goes
// through setPhaseLocked, which refuses the transitions the diagram does
// not have:
//
//	            container started            SUBSCRIBE
//	launching ─────────────────> registering ──────────> running
//	    │  ▲ SUBSCRIBE before Launch returned ───────────────▲  │
//	    │                            │                          │
//	    │   kill of its last task,   │  registration timeout,   │ SHUTDOWN,
//	    │   shutdown                 ▼  shutdown                ▼ framework gone
//	    └────────────────────────> killing <────────────────────┘
//	                                 │
//	  container ended (from any)     ▼
//	─────────────────────────────> terminated
//
// launching: sandbox, checkpoints, fetch, image pull and container start;
// the executor's context (observed by all of them) ends on a kill.
// registering: the container runs and the executor has not subscribed
// (after a launch, until the registration timeout; after an agent restart,
// until the recovery timeout). running: subscribed at least once (it may
// reconnect). killing: the executor was asked to end; its container is
// destroyed after the grace period, retried until it is gone. terminated:
// the container is gone and its tasks have their terminal updates.
type executorPhase int

const (
	phaseLaunching executorPhase = iota
	phaseRegistering
	phaseRunning
	phaseKilling
	phaseTerminated
)

func (p executorPhase) String() string {
	switch p {
	case phaseLaunching:
		return "LAUNCHING"
	case phaseRegistering:
		return "REGISTERING"
	case phaseRunning:
		return "RUNNING"
	case phaseKilling:
		return "KILLING"
	case phaseTerminated:
		return "TERMINATED"
	}
	return fmt.Sprintf("phase(%d)", int(p))
}

// killCause says why an executor is being (or was) ended by the agent,
// which decides its tasks' terminal state and reason.
type killCause int

const (
	// causeNone: the container ended on its own.
	causeNone killCause = iota
	// causeKilled: the framework killed its tasks or shut it down.
	causeKilled
	// causeRegistrationTimeout: it never subscribed in time.
	causeRegistrationTimeout
	// causeReregistrationTimeout: recovered after an agent restart, it
	// did not subscribe again within the recovery timeout.
	causeReregistrationTimeout
	// causeAgentRestarted: its framework does not checkpoint, so, as in
	// Mesos, its executors do not outlive the agent: recovered after a
	// restart, they are destroyed and their tasks are lost.
	causeAgentRestarted
)

var phaseNext = map[executorPhase][]executorPhase{
	phaseLaunching:   {phaseRegistering, phaseRunning, phaseKilling, phaseTerminated},
	phaseRegistering: {phaseRunning, phaseKilling, phaseTerminated},
	phaseRunning:     {phaseKilling, phaseTerminated},
	phaseKilling:     {phaseTerminated},
	phaseTerminated:  nil,
}

// setPhaseLocked moves es to next and reports whether it did: a
// transition the diagram does not have (a late SUBSCRIBE of an executor
// being killed, a second termination) changes nothing. Entering killing
// or terminated ends the executor's context, so a launch still in
// progress stops.
func (a *Agent) setPhaseLocked(es *executorState, next executorPhase) bool {
	if es.phase == next {
		return false
	}
	ok := false
	for _, p := range phaseNext[es.phase] {
		if p == next {
			ok = true
		}
	}
	if !ok {
		a.log.Debug("executor phase change refused", "framework_id", es.frameworkID,
			"executor_id", es.info.GetExecutorId().GetValue(), "from", es.phase.String(), "to", next.String())
		return false
	}
	es.phase = next
	if next == phaseTerminated {
		a.metrics.executorsTerminated++
	}
	if (next == phaseKilling || next == phaseTerminated) && es.cancel != nil {
		es.cancel()
	}
	return true
}

// live is an executor whose container may still run.
func (es *executorState) live() bool { return es.phase != phaseTerminated }
