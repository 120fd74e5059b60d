package apps

import (
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/frameworks"
)

// Condition is an instance's state, with Marathon's names (its
// instance_changed_event and /v2/tasks show them).
//
//	         launched (ACCEPT sent)      TASK_STARTING        TASK_RUNNING
//	Provisioned ─────────▶ Staging ───────────▶ Starting ───────────▶ Running
//	     │                    │                    │                     │
//	     └──── kill ──────────┴──────▶ Killing ◀───┴─────────────────────┘
//	                                                 TASK_UNREACHABLE │ ▲ TASK_RUNNING
//	                                                                  ▼ │ (back in time)
//	                                   Unreachable ─(inactiveAfterSeconds)─▶ UnreachableInactive
//	                                   (still counted)                       (replaced; expunged
//	                                                                          after expungeAfterSeconds,
//	                                                                          killed if it comes back)
//	                                      │       (a kill keeps it Killing
//	     any state ── terminal update ────┴──▶    until the terminal update)
//	                                   Finished | Failed | Killed | Error |
//	                                   Dropped | Gone | Lost  ──▶ expunged
//
// A terminal instance is removed from the app at once: the app then has
// fewer instances than it wants, and a new one is launched. Whether the
// end counts against the app's launch backoff depends on whether it was
// killed on purpose (Killing), not on the state.
type Condition string

// The conditions.
const (
	Provisioned Condition = "Provisioned"
	Staging     Condition = "Staging"
	Starting    Condition = "Starting"
	Running     Condition = "Running"
	Killing     Condition = "Killing"
	Killed      Condition = "Killed"
	Finished    Condition = "Finished"
	Failed      Condition = "Failed"
	Error       Condition = "Error"
	Dropped     Condition = "Dropped"
	Gone        Condition = "Gone"
	Unknown     Condition = "Unknown"
	// Unreachable: the master lost touch with the task's agent
	// (TASK_UNREACHABLE; the framework is PARTITION_AWARE). The instance
	// still counts until its app's inactiveAfterSeconds.
	Unreachable Condition = "Unreachable"
	// UnreachableInactive: unreachable past inactiveAfterSeconds; a new
	// instance replaces it.
	UnreachableInactive Condition = "UnreachableInactive"
)

// Terminal says whether an instance in c will never run again.
func (c Condition) Terminal() bool {
	switch c {
	case Killed, Finished, Failed, Error, Dropped, Gone, Unknown:
		return true
	}
	return false
}

// Instance is one task of an app, as the framework keeps it in its store.
type Instance struct {
	TaskID  string `json:"taskId"`
	AppID   PathID `json:"appId"`
	AgentID string `json:"agentId,omitempty"`
	// Version is the app's version when the instance was launched;
	// ConfigVersion its last config change then, which says whether a
	// restart must replace it.
	Version       string               `json:"version"`
	ConfigVersion string               `json:"configVersion"`
	Placement     frameworks.Placement `json:"placement"`
	// Ports are the host ports, in the order of the app's ports; ServicePorts the app's.
	Ports     []uint64  `json:"ports"`
	Condition Condition `json:"condition"`
	// MesosState is the last TaskState reported, "" before any.
	MesosState string `json:"mesosState,omitempty"`
	// Healthy is the last health the executor reported; nil before any.
	Healthy      *bool     `json:"healthy,omitempty"`
	LaunchedAt   time.Time `json:"launchedAt"`
	StagedAt     time.Time `json:"stagedAt,omitzero"`
	StartedAt    time.Time `json:"startedAt,omitzero"`
	HealthSince  time.Time `json:"healthSince,omitzero"`
	KillSentAt   time.Time `json:"killSentAt,omitzero"`
	Message      string    `json:"message,omitempty"`
	IPAddresses  []string  `json:"ipAddresses,omitempty"`
	HealthFailed int       `json:"healthFailures,omitempty"`
	// Checks are the results of the health checks the apps service runs
	// itself, by the check's index in the app's healthChecks.
	Checks map[int]*CheckResult `json:"checks,omitempty"`
	// Ready: the instance passed its app's readiness checks (probed
	// during deployments only); Readiness is the last probe's result.
	Ready     bool             `json:"ready,omitempty"`
	Readiness *ReadinessResult `json:"readiness,omitempty"`
	// UnreachableSince is when the task was first reported unreachable
	// (zero when it is not, or came back before it was replaced);
	// Replaced that a new instance took its place.
	UnreachableSince time.Time `json:"unreachableSince,omitzero"`
	Replaced         bool      `json:"replaced,omitempty"`
	// AgentURL is the agent's HTTP address from the offer the instance
	// was launched on (Offer.url): its sandbox is there.
	AgentURL string `json:"agentUrl,omitempty"`
}

// conditionOf maps a Mesos task state to a condition.
func conditionOf(s mesos.TaskState) Condition {
	switch s {
	case mesos.TaskState_TASK_STAGING:
		return Staging
	case mesos.TaskState_TASK_STARTING:
		return Starting
	case mesos.TaskState_TASK_RUNNING:
		return Running
	case mesos.TaskState_TASK_KILLING:
		return Killing
	case mesos.TaskState_TASK_FINISHED:
		return Finished
	case mesos.TaskState_TASK_FAILED:
		return Failed
	case mesos.TaskState_TASK_KILLED:
		return Killed
	case mesos.TaskState_TASK_ERROR:
		return Error
	case mesos.TaskState_TASK_DROPPED:
		return Dropped
	case mesos.TaskState_TASK_GONE, mesos.TaskState_TASK_GONE_BY_OPERATOR, mesos.TaskState_TASK_LOST:
		return Gone
	case mesos.TaskState_TASK_UNREACHABLE:
		return Unreachable
	}
	return Unknown
}

// active: counted among the app's instances (neither ending nor ended).
func (i *Instance) active() bool {
	return i.Condition != Killing && !i.Condition.Terminal() && i.Condition != UnreachableInactive && !i.Replaced
}

// health is the instance's health by all its app's health checks: false
// when one fails, nil while one has no result yet (or the app has none).
func (i *Instance) health(a *App) *bool {
	if len(a.HealthChecks) == 0 {
		return nil
	}
	unknown := false
	for k, h := range a.HealthChecks {
		r := i.Healthy
		if !h.mesos() {
			r = nil
			if c := i.Checks[k]; c != nil {
				r = c.Alive
			}
		}
		switch {
		case r == nil:
			unknown = true
		case !*r:
			f := false
			return &f
		}
	}
	if unknown {
		return nil
	}
	t := true
	return &t
}

// ready: running, healthy by every health check of the app, and, for an
// instance of the app's config (targetConfig) with readiness checks,
// ready by them: what a deployment counts on.
func (i *Instance) ready(a *App, targetConfig string) bool {
	if i.Condition != Running {
		return false
	}
	if len(a.HealthChecks) > 0 {
		if h := i.health(a); h == nil || !*h {
			return false
		}
	}
	return len(a.ReadinessChecks) == 0 || i.Ready || i.ConfigVersion != targetConfig
}

// apply applies a status update and says what changed. A kill in
// progress stays Killing until the terminal update.
func (i *Instance) apply(st *mesos.TaskStatus, now time.Time) (condChanged, healthChanged bool) {
	c := conditionOf(st.GetState())
	switch {
	case i.Condition == Killing && !c.Terminal():
		c = Killing
	case c == Unreachable && i.Condition == UnreachableInactive:
		c = UnreachableInactive
	}
	switch {
	case c == Unreachable && i.UnreachableSince.IsZero():
		i.UnreachableSince = now
	case c != Unreachable && c != UnreachableInactive && !i.Replaced:
		// Back before it was replaced: an instance like any other.
		i.UnreachableSince = time.Time{}
	}
	condChanged = c != i.Condition
	i.Condition = c
	i.MesosState = st.GetState().String()
	if st.GetAgentId().GetValue() != "" {
		i.AgentID = st.GetAgentId().GetValue()
	}
	if st.Message != nil {
		i.Message = st.GetMessage()
	}
	if i.StagedAt.IsZero() {
		i.StagedAt = now
	}
	if st.GetState() == mesos.TaskState_TASK_RUNNING && i.StartedAt.IsZero() {
		i.StartedAt = now
	}
	if st.Healthy != nil {
		h := st.GetHealthy()
		healthChanged = i.Healthy == nil || *i.Healthy != h
		i.Healthy = &h
		if healthChanged {
			i.HealthSince = now
		}
		if h {
			i.HealthFailed = 0
		} else {
			i.HealthFailed++
		}
	}
	var ips []string
	for _, n := range st.GetContainerStatus().GetNetworkInfos() {
		for _, ip := range n.GetIpAddresses() {
			if ip.GetIpAddress() != "" {
				ips = append(ips, ip.GetIpAddress())
			}
		}
	}
	if len(ips) > 0 {
		i.IPAddresses = ips
	}
	return condChanged, healthChanged
}
