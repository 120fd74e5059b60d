package master

import (
	"bytes"
	"slices"
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/resources"
)

// maxPendingUpdates bounds the updates kept for a disconnected framework.
// Agents retry unacknowledged updates anyway; the queue only spares the
// framework the wait for their backoff.
const maxPendingUpdates = 10_000

// maxStatusesPerTask bounds the status history kept per task for the
// state endpoints.
const maxStatusesPerTask = 32

type framework struct {
	id    string
	info  *mesos.FrameworkInfo
	roles []string
	// principal owns the id: the authenticated principal that registered
	// it, or with authentication off the one it claimed.
	principal string

	multiRole, partitionAware, gpu, refinement bool

	stream    *stream // nil while disconnected
	connected bool
	// recovered frameworks are known from the registry or from agents but
	// have not subscribed to this master yet.
	recovered bool

	registeredTime   time.Time
	reregisteredTime time.Time
	unregisteredTime time.Time
	// failoverDeadline is when a disconnected framework is torn down;
	// zero while connected.
	failoverDeadline time.Time
	failoverTimeout  time.Duration

	suppressed []string

	tasks          map[string]*task
	completedTasks []*task
	offers         map[string]*offer
	// executors by agent id, then executor id
	executors map[string]map[string]*executor

	// pending holds UPDATE events for a disconnected framework.
	pending []*scheduler.Event
	// delivered records, per live task, which updates the framework got
	// and acknowledged; dropped when the task completes.
	delivered map[string]*deliveries
}

func newFramework(id string, info *mesos.FrameworkInfo) *framework {
	fw := &framework{
		id:        id,
		tasks:     make(map[string]*task),
		offers:    make(map[string]*offer),
		executors: make(map[string]map[string]*executor),
	}
	fw.setInfo(info)
	return fw
}

func (fw *framework) setInfo(info *mesos.FrameworkInfo) {
	fw.info = info
	fw.multiRole, fw.partitionAware, fw.gpu, fw.refinement = false, false, false, false
	for _, c := range info.GetCapabilities() {
		switch c.GetType() {
		case mesos.FrameworkInfo_Capability_MULTI_ROLE:
			fw.multiRole = true
		case mesos.FrameworkInfo_Capability_PARTITION_AWARE:
			fw.partitionAware = true
		case mesos.FrameworkInfo_Capability_GPU_RESOURCES:
			fw.gpu = true
		case mesos.FrameworkInfo_Capability_RESERVATION_REFINEMENT:
			fw.refinement = true
		}
	}
	if fw.multiRole {
		fw.roles = slices.Clone(info.GetRoles())
	} else {
		fw.roles = []string{info.GetRole()}
	}
}

// allocationRole is the role of resources a framework holds when nothing
// else says so (tasks adopted from an agent without allocation_info).
func (fw *framework) allocationRole() string {
	if len(fw.roles) > 0 {
		return fw.roles[0]
	}
	return resources.Unreserved
}

func (fw *framework) executor(agentID, executorID string) *executor {
	return fw.executors[agentID][executorID]
}

type task struct {
	t    *mesos.Task
	fw   *framework
	res  resources.Resources
	role string
	// agentID is where the task runs; the agent may be gone.
	agentID string
	// released is set once the task's resources went back to the allocator
	// (its latest state became terminal).
	released      bool
	killRequested bool
	killPolicy    *mesos.KillPolicy
	// containerID is the executor's (top-level) container, from updates;
	// directory its sandbox on the agent, when the agent reported it.
	containerID string
	directory   string
	// command is the TaskInfo's, for the state's task pages (nil for a
	// task of a custom executor, and for tasks the master adopted from an
	// agent or the registry: mesos.Task does not carry it).
	command *mesos.CommandInfo
	// announced: the operator event streams were told of the task
	// (TASK_ADDED, or a SUBSCRIBED that listed it).
	announced bool
	// enc caches encodings of t (taskEncoding); change drops it.
	enc *taskEncoding
}

// change makes a new record of the task with f applied. A record, once
// in the books, is never written again: GET_STATE, SUBSCRIBED and the
// events share it, and encode it after the master's lock is released.
func (t *task) change(f func(n *mesos.Task)) {
	n := cloneTask(t.t)
	f(n)
	t.t = n
	t.enc = nil
}

// deliveries is what a framework was told of one task's updates, kept by
// task id in the framework (task objects are rebuilt when an agent
// re-registers): an agent that lost an acknowledgement (it restarted)
// resends the update, which must not reach the framework twice.
type deliveries struct {
	// acked are the uuids the framework acknowledged, the newest few
	// (updates are acknowledged in order, so a resend is one of them).
	acked [][]byte
	// lastUUID went to the framework over lastOn, its stream then: a
	// resend over the same stream is not delivered again (the
	// acknowledgement will follow); over a new stream (the framework
	// resubscribed and may have lost it) it is.
	lastUUID []byte
	lastOn   *stream
}

// maxAckedPerTask bounds deliveries.acked.
const maxAckedPerTask = 8

func (d *deliveries) wasAcked(uuid []byte) bool {
	for _, u := range d.acked {
		if bytes.Equal(u, uuid) {
			return true
		}
	}
	return false
}

// delivery is fw's record for taskID, created on first use.
func (fw *framework) delivery(taskID string) *deliveries {
	if fw.delivered == nil {
		fw.delivered = map[string]*deliveries{}
	}
	d := fw.delivered[taskID]
	if d == nil {
		d = &deliveries{}
		fw.delivered[taskID] = d
	}
	return d
}

func (t *task) id() string             { return t.t.GetTaskId().GetValue() }
func (t *task) state() mesos.TaskState { return t.t.GetState() }

// executorID is the task's executor; command tasks run under the command
// executor whose id is the task id, as in Mesos.
func (t *task) executorID() string {
	if id := t.t.GetExecutorId().GetValue(); id != "" {
		return id
	}
	return t.id()
}

type executor struct {
	info    *mesos.ExecutorInfo
	fwID    string
	agentID string
	res     resources.Resources
	role    string
	// containerID and directory come from the agent, for sandbox links.
	containerID string
	directory   string
}

type agent struct {
	id       string
	info     *mesos.AgentInfo
	hostname string
	ip       string
	port     int
	addr     string // ip:port of its HTTP server
	https    bool   // it serves TLS (AgentSchemeHeader)
	version  string
	total    resources.Resources
	// reserved are the dynamic reservations made on the agent
	// (RESERVE_RESOURCES): kept in the registry and applied to the
	// resources it reports each time it registers.
	reserved resources.Resources
	// principal and tokenHash say who may register with this id again:
	// the principal it authenticated as and the digest of the token it
	// was given (nil for an agent known from before tokens existed).
	principal string
	tokenHash []byte
	// expectUpdates are "framework/task" keys of tasks the master does not
	// know but asked this agent about (a KILL for an unknown task); the
	// agent may answer them with an update.
	expectUpdates map[string]bool

	stream    *stream
	connected bool
	// recovered agents are known from the registry and have not
	// re-registered with this master yet.
	recovered bool
	// deactivated by the operator (DEACTIVATE_AGENT): its resources are
	// not offered, connected or not.
	deactivated bool

	registeredTime   time.Time
	reregisteredTime time.Time
	// removeDeadline is when a disconnected or recovered agent is removed.
	removeDeadline time.Time
	// answersPings: the agent answers each PING with a PONG, so silence
	// on its calls means it is stopped even while its stream takes writes.
	// lastContact is its last call (or its registration).
	answersPings bool
	lastContact  time.Time
	// drain is set by DRAIN_AGENT until REACTIVATE_AGENT.
	drain *drain

	// tasks by framework id, then task id
	tasks     map[string]map[string]*task
	executors map[string]map[string]*executor
	offers    map[string]*offer
}

// scheme is the URL scheme of the agent's HTTP server.
func (a *agent) scheme() string {
	if a.https {
		return "https"
	}
	return "http"
}

func newAgent(id string) *agent {
	return &agent{
		id:        id,
		tasks:     make(map[string]map[string]*task),
		executors: make(map[string]map[string]*executor),
		offers:    make(map[string]*offer),
	}
}

func (a *agent) pid() string { return "slave(1)@" + a.addr }

func (a *agent) addTask(t *task) {
	fwID := t.fw.id
	if a.tasks[fwID] == nil {
		a.tasks[fwID] = make(map[string]*task)
	}
	a.tasks[fwID][t.id()] = t
}

func (a *agent) removeTask(t *task) {
	if m := a.tasks[t.fw.id]; m != nil && m[t.id()] == t {
		delete(m, t.id())
		if len(m) == 0 {
			delete(a.tasks, t.fw.id)
		}
	}
}

type offer struct {
	id      string
	fw      *framework
	agent   *agent
	role    string
	res     resources.Resources
	expires time.Time // zero: never
}
