package master

import (
	"fmt"
	"slices"
	"strings"

	"github.com/mesolite/mesolite/api/v1/agentpb"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/resources"
	"google.golang.org/protobuf/proto"
)

// launchPlan is what one ACCEPT does on its agent, built while validating
// so later tasks see the resources and executors of earlier ones.
type launchPlan struct {
	fw        *framework
	agent     *agent
	role      string
	remaining resources.Resources
	taskIDs   map[string]bool
	// executors introduced by this ACCEPT, by id
	executors map[string]*mesos.ExecutorInfo
}

// accept handles ACCEPT: validates the offers, then each operation, and
// launches what is valid. Invalid tasks get TASK_ERROR (REASON_TASK_INVALID
// or REASON_TASK_GROUP_INVALID) and tasks on invalid offers TASK_LOST, or
// TASK_DROPPED for PARTITION_AWARE frameworks (REASON_INVALID_OFFERS), as in
// Mesos. Whatever is not used goes back to the allocator with the call's
// filters, so an ACCEPT that launches nothing declines its offers.
func (m *Master) accept(fw *framework, acc *scheduler.Call_Accept) {
	refuse := refuseDuration(acc.GetFilters())
	offers, offerErr := m.takeOffers(fw, acc.GetOfferIds())
	var offered resources.Resources
	for _, o := range offers {
		offered = offered.Add(o.res)
	}
	if offerErr != "" {
		state := mesos.TaskState_TASK_LOST
		if fw.partitionAware {
			state = mesos.TaskState_TASK_DROPPED
		}
		for _, op := range acc.GetOperations() {
			for _, ti := range operationTasks(op) {
				m.masterUpdate(fw, ti.GetTaskId(), ti.GetAgentId(), state, mesos.TaskStatus_REASON_INVALID_OFFERS,
					"Task launched with invalid offers: "+offerErr)
			}
		}
		for _, o := range offers {
			m.alloc.Recover(fw.id, o.agent.id, o.role, o.res, refuse)
		}
		m.log.Info("ACCEPT with invalid offers", "framework_id", fw.id, "error", offerErr)
		m.triggerAllocation()
		return
	}
	a, role := offers[0].agent, offers[0].role
	plan := &launchPlan{fw: fw, agent: a, role: role, remaining: offered, taskIDs: map[string]bool{}, executors: map[string]*mesos.ExecutorInfo{}}
	for _, op := range acc.GetOperations() {
		switch op.GetType() {
		case mesos.Offer_Operation_LAUNCH:
			for _, ti := range op.GetLaunch().GetTaskInfos() {
				if err := m.authorizeLaunch(fw, ti, nil); err != nil {
					m.masterUpdate(fw, ti.GetTaskId(), ti.GetAgentId(), mesos.TaskState_TASK_ERROR, mesos.TaskStatus_REASON_TASK_UNAUTHORIZED, err.Error())
					m.counters.invalidTasks++
					continue
				}
				used, err := plan.validateTask(m, ti)
				if err != nil {
					m.masterUpdate(fw, ti.GetTaskId(), ti.GetAgentId(), mesos.TaskState_TASK_ERROR, mesos.TaskStatus_REASON_TASK_INVALID, err.Error())
					m.counters.invalidTasks++
					continue
				}
				plan.remaining = plan.remaining.Subtract(used)
				m.launchTask(plan, ti)
			}
		case mesos.Offer_Operation_LAUNCH_GROUP:
			lg := op.GetLaunchGroup()
			var denied error
			for _, ti := range lg.GetTaskGroup().GetTasks() {
				if denied == nil {
					denied = m.authorizeLaunch(fw, ti, lg.GetExecutor())
				}
			}
			if denied != nil {
				for _, ti := range lg.GetTaskGroup().GetTasks() {
					m.masterUpdate(fw, ti.GetTaskId(), ti.GetAgentId(), mesos.TaskState_TASK_ERROR, mesos.TaskStatus_REASON_TASK_GROUP_UNAUTHORIZED, denied.Error())
					m.counters.invalidTasks++
				}
				continue
			}
			used, err := plan.validateGroup(m, lg)
			if err != nil {
				for _, ti := range lg.GetTaskGroup().GetTasks() {
					m.masterUpdate(fw, ti.GetTaskId(), ti.GetAgentId(), mesos.TaskState_TASK_ERROR, mesos.TaskStatus_REASON_TASK_GROUP_INVALID, err.Error())
					m.counters.invalidTasks++
				}
				continue
			}
			plan.remaining = plan.remaining.Subtract(used)
			m.launchGroup(plan, lg)
		default:
			m.log.Warn("unsupported offer operation dropped", "framework_id", fw.id, "type", op.GetType().String())
			if op.GetId() != nil {
				m.sendFramework(fw, &scheduler.Event{
					Type: scheduler.Event_UPDATE_OPERATION_STATUS.Enum(),
					UpdateOperationStatus: &scheduler.Event_UpdateOperationStatus{Status: &mesos.OperationStatus{
						OperationId: op.GetId(),
						State:       mesos.OperationState_OPERATION_ERROR.Enum(),
						Message:     proto.String(fmt.Sprintf("Offer operation %s is not supported by this master", op.GetType())),
						AgentId:     &mesos.AgentID{Value: proto.String(a.id)},
					}},
				})
			}
		}
	}
	if !plan.remaining.IsEmpty() {
		m.alloc.Recover(fw.id, a.id, role, plan.remaining, refuse)
		m.triggerAllocation()
	}
}

// operationTasks lists the tasks an operation would launch.
func operationTasks(op *mesos.Offer_Operation) []*mesos.TaskInfo {
	switch op.GetType() {
	case mesos.Offer_Operation_LAUNCH:
		return op.GetLaunch().GetTaskInfos()
	case mesos.Offer_Operation_LAUNCH_GROUP:
		return op.GetLaunchGroup().GetTaskGroup().GetTasks()
	}
	return nil
}

// takeOffers removes the ACCEPT's offers from the books and returns the
// valid ones, with an explanation when any is invalid. Valid offers are
// consumed even then, as Mesos does; their resources are recovered by the
// caller.
func (m *Master) takeOffers(fw *framework, ids []*mesos.OfferID) ([]*offer, string) {
	var (
		offers []*offer
		errs   []string
		seen   = map[string]bool{}
	)
	if len(ids) == 0 {
		return nil, "No offers specified"
	}
	for _, oid := range ids {
		id := oid.GetValue()
		if seen[id] {
			errs = append(errs, fmt.Sprintf("Duplicate offer %s in offer list", id))
			continue
		}
		seen[id] = true
		o := m.offers[id]
		switch {
		case o == nil:
			errs = append(errs, fmt.Sprintf("Offer %s is no longer valid", id))
			continue
		case o.fw != fw:
			errs = append(errs, fmt.Sprintf("Offer %s has invalid framework %s while framework %s is expected", id, o.fw.id, fw.id))
			continue
		}
		delete(m.offers, o.id)
		delete(fw.offers, o.id)
		delete(o.agent.offers, o.id)
		offers = append(offers, o)
	}
	for _, o := range offers[min(1, len(offers)):] {
		if o.agent != offers[0].agent {
			errs = append(errs, fmt.Sprintf("Aggregated offers must belong to one single agent: offer %s is on agent %s, offer %s on agent %s",
				offers[0].id, offers[0].agent.id, o.id, o.agent.id))
			break
		}
		if o.role != offers[0].role {
			errs = append(errs, fmt.Sprintf("Aggregated offers must be allocated to the same role: offer %s is for role '%s', offer %s for role '%s'",
				offers[0].id, offers[0].role, o.id, o.role))
			break
		}
	}
	if len(offers) > 0 && !offers[0].agent.connected && len(errs) == 0 {
		errs = append(errs, fmt.Sprintf("Agent %s is disconnected", offers[0].agent.id))
	}
	return offers, strings.Join(errs, "; ")
}

// taskResources validates a task's (or executor's) resources against the
// offer's allocation role.
func (p *launchPlan) resourcesOf(what string, rs []*mesos.Resource) (resources.Resources, error) {
	res, err := resources.FromProto(rs)
	if err != nil {
		return nil, fmt.Errorf("%s uses invalid resources: %v", what, err)
	}
	for _, r := range res {
		want := map[string]resources.Kind{resources.CPUs: resources.Scalar, resources.Mem: resources.Scalar, resources.Disk: resources.Scalar, resources.GPUs: resources.Scalar, resources.Ports: resources.Ranges}
		if k, ok := want[r.Name]; ok && r.Kind != k {
			return nil, fmt.Errorf("%s uses invalid resources: '%s' must be of type %s, not %s", what, r.Name, k, r.Kind)
		}
	}
	roles, _ := resources.AllocationRoles(rs)
	for _, r := range roles {
		if r != p.role {
			return nil, fmt.Errorf("%s uses resources allocated to role '%s' but its offers are allocated to role '%s'", what, r, p.role)
		}
	}
	return res, nil
}

// validateExecutor checks an executor and returns the resources it needs
// beyond what is running already (none for a known executor).
func (p *launchPlan) validateExecutor(m *Master, e *mesos.ExecutorInfo, group bool) (resources.Resources, error) {
	id := e.GetExecutorId().GetValue()
	if err := validateID("Executor ID", id); err != nil {
		return nil, err
	}
	if err := validateExecutorText(e); err != nil {
		return nil, err
	}
	if e.FrameworkId != nil && e.GetFrameworkId().GetValue() != p.fw.id {
		return nil, fmt.Errorf("ExecutorInfo has an invalid FrameworkID (Actual: %s vs Expected: %s)", e.GetFrameworkId().GetValue(), p.fw.id)
	}
	switch {
	case group && e.GetType() != mesos.ExecutorInfo_DEFAULT:
		return nil, fmt.Errorf("'ExecutorInfo.type' must be 'DEFAULT' for a task group, not '%s'", e.GetType())
	case !group && e.GetType() == mesos.ExecutorInfo_DEFAULT:
		return nil, fmt.Errorf("'ExecutorInfo.type' must be 'CUSTOM' for a task with its own executor; the DEFAULT executor runs task groups (LAUNCH_GROUP)")
	case !group && e.Command == nil:
		return nil, fmt.Errorf("Executor '%s' has no 'command' to run", id)
	}
	res, err := p.resourcesOf("Executor '"+id+"'", e.GetResources())
	if err != nil {
		return nil, err
	}
	existing := p.executors[id]
	if existing == nil {
		if ex := p.fw.executor(p.agent.id, id); ex != nil {
			existing = ex.info
		}
	}
	if existing != nil {
		if !sameExecutor(existing, e, p.fw.id) {
			return nil, fmt.Errorf("ExecutorInfo is not compatible with existing ExecutorInfo with same ExecutorID '%s'", id)
		}
		return nil, nil
	}
	return res, nil
}

// sameExecutor compares executors, ignoring an unset framework_id.
func sameExecutor(a, b *mesos.ExecutorInfo, fwID string) bool {
	a, b = proto.Clone(a).(*mesos.ExecutorInfo), proto.Clone(b).(*mesos.ExecutorInfo)
	for _, e := range []*mesos.ExecutorInfo{a, b} {
		e.FrameworkId = &mesos.FrameworkID{Value: proto.String(fwID)}
		for _, r := range e.Resources {
			r.AllocationInfo = nil
		}
	}
	return proto.Equal(a, b)
}

// validateTaskCommon holds the checks a task passes in LAUNCH and in
// LAUNCH_GROUP.
func (p *launchPlan) validateTaskCommon(ti *mesos.TaskInfo) (resources.Resources, error) {
	id := ti.GetTaskId().GetValue()
	if err := validateID("Task ID", id); err != nil {
		return nil, err
	}
	if err := validateTaskText(ti); err != nil {
		return nil, err
	}
	if ti.GetAgentId().GetValue() != p.agent.id {
		return nil, fmt.Errorf("Task uses invalid agent: %s (the offers are for agent %s)", ti.GetAgentId().GetValue(), p.agent.id)
	}
	if p.taskIDs[id] || p.fw.tasks[id] != nil {
		return nil, fmt.Errorf("Task has duplicate ID: %s", id)
	}
	if g := ti.GetKillPolicy().GetGracePeriod(); g != nil && g.GetNanoseconds() < 0 {
		return nil, fmt.Errorf("Task's 'kill_policy.grace_period' must be non-negative")
	}
	if d := ti.GetMaxCompletionTime(); d != nil && d.GetNanoseconds() < 0 {
		return nil, fmt.Errorf("Task's 'max_completion_time' must be non-negative")
	}
	if c := ti.GetContainer(); c != nil {
		if c.GetType() == mesos.ContainerInfo_DOCKER && c.Docker == nil {
			return nil, fmt.Errorf("DockerInfo 'docker' is not set for DOCKER typed ContainerInfo")
		}
	}
	return p.resourcesOf("Task", ti.GetResources())
}

// validateTask checks one LAUNCH task and returns what it takes from the
// offers (its resources and those of an executor it introduces).
func (p *launchPlan) validateTask(m *Master, ti *mesos.TaskInfo) (resources.Resources, error) {
	res, err := p.validateTaskCommon(ti)
	if err != nil {
		return nil, err
	}
	if (ti.Command == nil) == (ti.Executor == nil) {
		return nil, fmt.Errorf("Task should have at least one (but not both) of CommandInfo or ExecutorInfo present")
	}
	used := res
	if ti.Executor != nil {
		ex, err := p.validateExecutor(m, ti.GetExecutor(), false)
		if err != nil {
			return nil, err
		}
		used = used.Add(ex)
	}
	if !p.remaining.Contains(used) {
		return nil, fmt.Errorf("Task uses more resources %s than available %s", used, p.remaining)
	}
	return used, nil
}

// validateGroup checks a LAUNCH_GROUP and returns what it takes.
func (p *launchPlan) validateGroup(m *Master, lg *mesos.Offer_Operation_LaunchGroup) (resources.Resources, error) {
	tasks := lg.GetTaskGroup().GetTasks()
	if len(tasks) == 0 {
		return nil, fmt.Errorf("Task group has no tasks")
	}
	used, err := p.validateExecutor(m, lg.GetExecutor(), true)
	if err != nil {
		return nil, err
	}
	// As Mesos: the default executor runs its tasks nested in its own
	// container, which a docker container cannot be, nor hold.
	if c := lg.GetExecutor().GetContainer(); c != nil && c.GetType() == mesos.ContainerInfo_DOCKER {
		return nil, fmt.Errorf("Docker ContainerInfo is not supported on the executor")
	}
	ids := map[string]bool{}
	for _, ti := range tasks {
		id := ti.GetTaskId().GetValue()
		res, err := p.validateTaskCommon(ti)
		if err != nil {
			return nil, fmt.Errorf("Task '%s' in the group is invalid: %v", id, err)
		}
		if ids[id] {
			return nil, fmt.Errorf("Task group has duplicate task ID: %s", id)
		}
		ids[id] = true
		if ti.Executor != nil {
			return nil, fmt.Errorf("Task '%s' in a task group must not have 'executor' set; the group's executor runs it", id)
		}
		if c := ti.GetContainer(); c != nil {
			// A nested container joins its executor's network.
			if len(c.GetNetworkInfos()) > 0 {
				return nil, fmt.Errorf("Task '%s' is invalid: NetworkInfos must not be set on the task", id)
			}
			if c.GetType() == mesos.ContainerInfo_DOCKER {
				return nil, fmt.Errorf("Task '%s' is invalid: Docker ContainerInfo is not supported on the task", id)
			}
		}
		used = used.Add(res)
	}
	if !p.remaining.Contains(used) {
		return nil, fmt.Errorf("Task group uses more resources %s than available %s", used, p.remaining)
	}
	return used, nil
}

// prepareTaskInfo returns the TaskInfo to send to the agent: resources with
// allocation_info, the executor with its framework id.
func (p *launchPlan) prepareTaskInfo(ti *mesos.TaskInfo) *mesos.TaskInfo {
	ti = proto.Clone(ti).(*mesos.TaskInfo)
	injectAllocation(ti.Resources, p.role)
	if ti.Executor != nil {
		p.prepareExecutor(ti.Executor)
	}
	return ti
}

func (p *launchPlan) prepareExecutor(e *mesos.ExecutorInfo) {
	e.FrameworkId = &mesos.FrameworkID{Value: proto.String(p.fw.id)}
	injectAllocation(e.Resources, p.role)
}

func injectAllocation(rs []*mesos.Resource, role string) {
	for _, r := range rs {
		r.AllocationInfo = &mesos.Resource_AllocationInfo{Role: proto.String(role)}
	}
}

// addTask records a task the master launches.
func (m *Master) addTask(p *launchPlan, ti *mesos.TaskInfo, executorID *mesos.ExecutorID) *task {
	res, _ := resources.FromProto(ti.GetResources())
	t := &task{
		command: ti.GetCommand(),
		t: &mesos.Task{
			Name:        ti.Name,
			TaskId:      ti.TaskId,
			FrameworkId: &mesos.FrameworkID{Value: proto.String(p.fw.id)},
			ExecutorId:  executorID,
			AgentId:     &mesos.AgentID{Value: proto.String(p.agent.id)},
			State:       mesos.TaskState_TASK_STAGING.Enum(),
			Resources:   ti.Resources,
			Labels:      ti.Labels,
			Discovery:   ti.Discovery,
			Container:   ti.Container,
			HealthCheck: ti.HealthCheck,
			KillPolicy:  ti.KillPolicy,
			Limits:      ti.Limits,
		},
		fw:         p.fw,
		res:        res,
		role:       p.role,
		agentID:    p.agent.id,
		killPolicy: ti.KillPolicy,
	}
	if c := ti.GetCommand(); c != nil && c.User != nil {
		t.t.User = proto.String(c.GetUser())
	}
	p.fw.tasks[t.id()] = t
	p.agent.addTask(t)
	p.taskIDs[t.id()] = true
	m.counters.tasksLaunched++
	m.opTaskAddedLocked(t)
	return t
}

// addExecutor records an executor this ACCEPT introduces.
func (m *Master) addExecutor(p *launchPlan, e *mesos.ExecutorInfo) {
	id := e.GetExecutorId().GetValue()
	if p.fw.executor(p.agent.id, id) != nil {
		return
	}
	res, _ := resources.FromProto(e.GetResources())
	ex := &executor{info: e, fwID: p.fw.id, agentID: p.agent.id, res: res, role: p.role}
	if p.fw.executors[p.agent.id] == nil {
		p.fw.executors[p.agent.id] = map[string]*executor{}
	}
	p.fw.executors[p.agent.id][id] = ex
	if p.agent.executors[p.fw.id] == nil {
		p.agent.executors[p.fw.id] = map[string]*executor{}
	}
	p.agent.executors[p.fw.id][id] = ex
	p.executors[id] = e
}

func (m *Master) frameworkInfoForAgent(fw *framework) *mesos.FrameworkInfo {
	info := proto.Clone(fw.info).(*mesos.FrameworkInfo)
	info.Id = &mesos.FrameworkID{Value: proto.String(fw.id)}
	return info
}

func (m *Master) launchTask(p *launchPlan, ti *mesos.TaskInfo) {
	ti = p.prepareTaskInfo(ti)
	var execID *mesos.ExecutorID
	if ti.Executor != nil {
		m.addExecutor(p, ti.Executor)
		execID = ti.Executor.ExecutorId
	}
	t := m.addTask(p, ti, execID)
	m.log.Info("launching task", "framework_id", p.fw.id, "task_id", t.id(), "agent_id", p.agent.id, "resources", t.res.String())
	m.sendAgent(p.agent, &agentpb.Event{
		Type:    agentpb.Event_RUN_TASK.Enum(),
		RunTask: &agentpb.Event_RunTask{Framework: m.frameworkInfoForAgent(p.fw), Task: ti},
	})
}

func (m *Master) launchGroup(p *launchPlan, lg *mesos.Offer_Operation_LaunchGroup) {
	e := proto.Clone(lg.GetExecutor()).(*mesos.ExecutorInfo)
	p.prepareExecutor(e)
	m.addExecutor(p, e)
	group := &mesos.TaskGroupInfo{}
	for _, ti := range lg.GetTaskGroup().GetTasks() {
		ti = p.prepareTaskInfo(ti)
		group.Tasks = append(group.Tasks, ti)
		t := m.addTask(p, ti, e.ExecutorId)
		m.log.Info("launching task in a group", "framework_id", p.fw.id, "task_id", t.id(), "executor_id", e.GetExecutorId().GetValue(), "agent_id", p.agent.id)
	}
	m.sendAgent(p.agent, &agentpb.Event{
		Type:         agentpb.Event_RUN_TASK_GROUP.Enum(),
		RunTaskGroup: &agentpb.Event_RunTaskGroup{Framework: m.frameworkInfoForAgent(p.fw), Executor: e, TaskGroup: group},
	})
}

// masterUpdate sends a status update the master makes up itself (invalid
// launches, reconciliation, lost agents). It carries no uuid, so the
// framework does not acknowledge it.
func (m *Master) masterUpdate(fw *framework, taskID *mesos.TaskID, agentID *mesos.AgentID, state mesos.TaskState, reason mesos.TaskStatus_Reason, msg string) {
	st := &mesos.TaskStatus{
		TaskId:    taskID,
		State:     state.Enum(),
		Source:    mesos.TaskStatus_SOURCE_MASTER.Enum(),
		Reason:    reason.Enum(),
		Message:   proto.String(msg),
		Timestamp: proto.Float64(timestamp(m.clock.Now())),
	}
	if agentID.GetValue() != "" {
		st.AgentId = agentID
	}
	if taskID == nil {
		st.TaskId = &mesos.TaskID{Value: proto.String("")}
	}
	m.sendFramework(fw, &scheduler.Event{Type: scheduler.Event_UPDATE.Enum(), Update: &scheduler.Event_Update{Status: st}})
}

// sortedTaskIDs is for deterministic iteration in tests and logs.
func sortedTaskIDs(ts map[string]*task) []string {
	ids := make([]string, 0, len(ts))
	for id := range ts {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
