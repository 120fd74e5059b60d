package apps

import (
	"context"
	"errors"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/frameworks"
	"github.com/mesolite/mesolite/resources"
)

// The engine is the driver's Scheduler.
var _ frameworks.Scheduler = (*engine)(nil)

func newUUID() string { return uuid.NewString() }

// Registered implements frameworks.Scheduler.
func (e *engine) Registered(ctx context.Context, frameworkID string, _ *mesos.MasterInfo) {
	e.do(ctx, func(tx *txn) error {
		e.frameworkID = frameworkID
		return nil
	})
}

// KnownTasks implements frameworks.Scheduler: every instance not known to
// have ended, Provisioned ones included (the master says TASK_LOST for a
// launch it never got, and the instance is replaced).
func (e *engine) KnownTasks() []frameworks.TaskRef {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := make([]frameworks.TaskRef, 0, len(e.byTask))
	for _, i := range e.byTask {
		out = append(out, frameworks.TaskRef{TaskID: i.TaskID, AgentID: i.AgentID})
	}
	return out
}

// Wants implements frameworks.Scheduler.
func (e *engine) Wants() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.wants
}

// Offers implements frameworks.Scheduler: instances to launch go to the
// first offers that fit them and their constraints, apps that waited
// longest first. Each instance is stored (Provisioned) before the driver
// sends the launch, so a crash between the two leaves a known instance
// that reconciliation resolves, never an unknown task.
func (e *engine) Offers(ctx context.Context, offers []*mesos.Offer) ([]frameworks.Launch, bool) {
	var launches []frameworks.Launch
	var more bool
	err := e.do(ctx, func(tx *txn) error {
		launches = e.match(tx, offers)
		more = e.launchableNow(tx.now)
		return nil
	})
	if err != nil {
		// Not stored (the store is unreachable, or this instance no
		// longer leads): launch nothing. The instances are replaced
		// after their launch timeout, or by the next leader.
		e.log.Warn("the instances to launch could not be stored; launching none", "err", err)
		return nil, more
	}
	return launches, more
}

// launchableNow is whether some app may launch an instance now.
func (e *engine) launchableNow(now time.Time) bool {
	for _, st := range e.apps {
		if st.toLaunch > 0 && !now.Before(st.delayUntil) && !st.deleted {
			return true
		}
	}
	return false
}

func (e *engine) match(tx *txn, offers []*mesos.Offer) []frameworks.Launch {
	var waiting []*appState
	for _, st := range e.apps {
		if st.toLaunch > 0 && !tx.now.Before(st.delayUntil) && !st.deleted {
			waiting = append(waiting, st)
		}
	}
	if len(waiting) == 0 {
		return nil
	}
	slices.SortFunc(waiting, func(a, b *appState) int {
		if c := a.waitingSince.Compare(b.waitingSince); c != 0 {
			return c
		}
		return strings.Compare(a.app.ID, b.app.ID)
	})
	var launches []frameworks.Launch
	for _, o := range offers {
		left := o.GetResources()
		where := frameworks.PlacementOf(o)
		var tasks []*mesos.TaskInfo
		for _, st := range waiting {
			for st.toLaunch > 0 {
				if !frameworks.AllowsAll(st.constraints, where, st.placements()) {
					st.lastNoFit = "constraints not met on " + o.GetHostname()
					break
				}
				taskID := NewTaskID(PathID(st.app.ID))
				p, err := st.app.place(taskID, o, left, e.cfg.Role, e.cfg.EnvVarsPrefix)
				if err != nil {
					if errors.Is(err, resources.ErrNoFit) {
						st.lastNoFit = o.GetHostname() + ": " + describeNoFit(err)
					} else {
						e.log.Warn("cannot build the task of an instance", "app_id", st.app.ID, "err", err)
					}
					break
				}
				left = resources.Remaining(left, p.used)
				inst := &Instance{
					TaskID: taskID, AppID: PathID(st.app.ID), AgentID: o.GetAgentId().GetValue(),
					Version: st.app.Version, ConfigVersion: st.app.configVersion(), Placement: where,
					Ports: p.hostPorts, Condition: Provisioned, LaunchedAt: tx.now, AgentURL: agentURL(o),
				}
				st.instances[taskID] = inst
				e.byTask[taskID] = inst
				tx.touch(inst)
				tx.event(EventInstanceChanged, instanceChanged(inst))
				tx.converge[inst.AppID] = true
				st.toLaunch--
				tasks = append(tasks, p.task)
			}
		}
		if len(tasks) > 0 {
			launches = append(launches, frameworks.Launch{Offer: o, Tasks: tasks})
		}
	}
	return launches
}

// placements is where the app's instances are, for its constraints.
func (st *appState) placements() []frameworks.Placement {
	out := make([]frameworks.Placement, 0, len(st.instances))
	for _, i := range st.instances {
		if !i.Condition.Terminal() {
			out = append(out, i.Placement)
		}
	}
	return out
}

// Update implements frameworks.Scheduler. The update is queued for the
// loop, which writes a batch of them in one commit and only then has them
// acknowledged: hundreds of instances starting cost a few fsyncs, not one
// per update.
func (e *engine) Update(ctx context.Context, st *mesos.TaskStatus, ack func()) {
	e.submit(ctx, func(tx *txn) error {
		e.update(tx, st)
		return nil
	}, func(err error) {
		if err == nil {
			ack()
		}
	})
}

// backoffResetAfter: an instance that ran this long before it ended
// starts its app's failure count anew: the app is not crash-looping.
const backoffResetAfter = 5 * time.Minute

func (e *engine) update(tx *txn, status *mesos.TaskStatus) {
	taskID := status.GetTaskId().GetValue()
	state := status.GetState()
	i := e.byTask[taskID]
	if i == nil {
		if !mesos.IsTerminal(state) {
			// A task of ours no instance stands for: launched before a
			// crash lost its record, or of an app deleted meanwhile.
			e.log.Warn("killing a task no instance stands for", "task_id", taskID, "state", state)
			tx.kills = append(tx.kills, frameworks.TaskRef{TaskID: taskID, AgentID: status.GetAgentId().GetValue()})
		}
		return
	}
	st := e.apps[i.AppID]
	wasKilling := i.Condition == Killing
	prevHealthy := i.Healthy
	condChanged, healthChanged := i.apply(status, tx.now)
	tx.event(EventStatusUpdate, statusUpdate(i, status))
	if condChanged {
		tx.event(EventInstanceChanged, instanceChanged(i))
	}
	if healthChanged {
		tx.event(EventHealthChanged, map[string]any{"appId": i.AppID, "taskId": i.TaskID, "instanceId": i.TaskID,
			"version": i.Version, "alive": *i.Healthy})
	}
	if prevHealthy != nil && *prevHealthy && status.Healthy != nil && !status.GetHealthy() && mesos.IsTerminal(state) {
		tx.event(EventUnhealthyTaskKill, map[string]any{"appId": i.AppID, "taskId": i.TaskID, "version": i.Version,
			"reason": status.GetMessage(), "host": i.Placement.Hostname, "slaveId": i.AgentID})
	}
	if !mesos.IsTerminal(state) {
		tx.touch(i)
		tx.converge[i.AppID] = true
		return
	}
	e.removeInstance(tx, i)
	if st == nil || wasKilling {
		return
	}
	// An end nobody asked for: remembered, and counted against launching
	// again too fast.
	f := &TaskFailure{AppID: string(i.AppID), Host: i.Placement.Hostname, Message: status.GetMessage(), State: state.String(),
		TaskID: i.TaskID, Timestamp: FormatTime(tx.now), Version: i.Version, SlaveID: i.AgentID}
	st.lastFailure = f
	tx.failures[i.AppID] = f
	if !i.StartedAt.IsZero() && tx.now.Sub(i.StartedAt) >= backoffResetAfter {
		st.failures = 0
	}
	st.failures++
	a := st.app
	delay := a.BackoffSeconds * math.Pow(a.BackoffFactor, float64(st.failures-1))
	delay = min(delay, a.MaxLaunchDelaySeconds)
	st.delayUntil = tx.now.Add(time.Duration(delay * float64(time.Second)))
	e.log.Info("instance ended unexpectedly; a new one follows", "task_id", i.TaskID, "app_id", i.AppID, "state", state,
		"message", status.GetMessage(), "launch_delay", time.Duration(delay*float64(time.Second)).Round(time.Millisecond))
}

// LaunchFailed implements frameworks.Scheduler: the instances never
// started; new ones take their place at once.
func (e *engine) LaunchFailed(ctx context.Context, tasks []*mesos.TaskInfo, err error) {
	e.do(ctx, func(tx *txn) error {
		for _, t := range tasks {
			if i := e.byTask[t.GetTaskId().GetValue()]; i != nil {
				e.removeInstance(tx, i)
			}
		}
		return nil
	})
}

func statusUpdate(i *Instance, st *mesos.TaskStatus) map[string]any {
	ips := []map[string]string{}
	for _, ip := range i.IPAddresses {
		ips = append(ips, map[string]string{"ipAddress": ip, "protocol": "IPv4"})
	}
	return map[string]any{
		"slaveId": i.AgentID, "taskId": i.TaskID, "taskStatus": st.GetState().String(), "message": st.GetMessage(),
		"appId": i.AppID, "host": i.Placement.Hostname, "ports": portsOrEmpty(i.Ports), "version": i.Version,
		"ipAddresses": ips,
	}
}

func instanceChanged(i *Instance) map[string]any {
	return map[string]any{
		"instanceId": i.TaskID, "condition": i.Condition, "runSpecId": i.AppID, "agentId": i.AgentID,
		"host": i.Placement.Hostname, "runSpecVersion": i.Version,
	}
}

func portsOrEmpty(p []uint64) []uint64 {
	if p == nil {
		return []uint64{}
	}
	return p
}

// agentURL is the agent's HTTP address as its offer gives it (Offer.url),
// "" when the offer has none.
func agentURL(o *mesos.Offer) string {
	u := o.GetUrl()
	addr := u.GetAddress()
	host := addr.GetIp()
	if host == "" {
		host = addr.GetHostname()
	}
	if host == "" || addr.GetPort() == 0 {
		return ""
	}
	scheme := u.GetScheme()
	if scheme != "https" {
		scheme = "http"
	}
	return scheme + "://" + net.JoinHostPort(host, strconv.Itoa(int(addr.GetPort())))
}
