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
	Lost        Condition = "Unreachable"
	Unknown     Condition = "Unknown"
)

// Terminal says whether an instance in c will never run again.
func (c Condition) Terminal() bool {
	switch c {
	case Killed, Finished, Failed, Error, Dropped, Gone, Lost, Unknown:
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
	case mesos.TaskState_TASK_GONE, mesos.TaskState_TASK_GONE_BY_OPERATOR:
		return Gone
	case mesos.TaskState_TASK_LOST, mesos.TaskState_TASK_UNREACHABLE:
		return Lost
	}
	return Unknown
}

// active: counted among the app's instances (neither ending nor ended).
func (i *Instance) active() bool { return i.Condition != Killing && !i.Condition.Terminal() }

// ready: running and, for an app with health checks, reported healthy:
// what a rolling restart counts on.
func (i *Instance) ready(hasHealth bool) bool {
	return i.Condition == Running && (!hasHealth || i.Healthy != nil && *i.Healthy)
}

// apply applies a status update and says what changed. A kill in
// progress stays Killing until the terminal update.
func (i *Instance) apply(st *mesos.TaskStatus, now time.Time) (condChanged, healthChanged bool) {
	c := conditionOf(st.GetState())
	if i.Condition == Killing && !c.Terminal() {
		c = Killing
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
