package master

import (
	"maps"
	"slices"
	"time"

	masterpb "github.com/mesolite/mesolite/api/v1/master"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/resources"
	"google.golang.org/protobuf/proto"
)

// The operator API's view of the master's books. Everything here is built
// from the same records /master/state reads (endpoints.go), under m.mu,
// and is encoded after the lock is released. So the messages built here
// never share anything the master changes later: they hold fresh
// messages, or values the master only ever replaces and never changes in
// place (AgentInfo, FrameworkInfo, ExecutorInfo, MasterInfo, the parts of a
// task from its TaskInfo, the statuses kept in a task).

// timeInfo is t as Mesos's TimeInfo, nil for the zero time.
func timeInfo(t time.Time) *mesos.TimeInfo {
	if t.IsZero() {
		return nil
	}
	return &mesos.TimeInfo{Nanoseconds: proto.Int64(t.UnixNano())}
}

// byRole sums resources by allocation role, for the allocated and offered
// resources of agents and frameworks, which Mesos reports with
// allocation_info.
type byRole map[string]*resources.Accumulator

func (b byRole) add(role string, rs resources.Resources) {
	if len(rs) == 0 {
		return
	}
	acc := b[role]
	if acc == nil {
		acc = &resources.Accumulator{}
		b[role] = acc
	}
	acc.Add(rs)
}

func (b byRole) sum(role string) resources.Resources {
	if acc := b[role]; acc != nil {
		return acc.Resources()
	}
	return nil
}

func (b byRole) proto() []*mesos.Resource {
	out := []*mesos.Resource{}
	for _, role := range slices.Sorted(maps.Keys(b)) {
		out = append(out, b.sum(role).ToProto(role)...)
	}
	return out
}

// taskProto is the task's record, shared: the master never changes a
// record it has published (task.change makes a new one), so the operator
// API and event streams keep and encode it outside the lock.
func taskProto(t *task) *mesos.Task { return t.t }

// cloneTask is a copy of s that a change may write: its own struct, status
// slice and limits. The statuses themselves, and the other slices
// (resources from the TaskInfo), are never changed once kept.
func cloneTask(s *mesos.Task) *mesos.Task {
	return &mesos.Task{
		Name:              s.Name,
		TaskId:            s.TaskId,
		FrameworkId:       s.FrameworkId,
		ExecutorId:        s.ExecutorId,
		AgentId:           s.AgentId,
		State:             s.State,
		Resources:         s.Resources,
		Statuses:          slices.Clone(s.Statuses),
		StatusUpdateState: s.StatusUpdateState,
		StatusUpdateUuid:  s.StatusUpdateUuid,
		Labels:            s.Labels,
		Discovery:         s.Discovery,
		Container:         s.Container,
		HealthCheck:       s.HealthCheck,
		KillPolicy:        s.KillPolicy,
		User:              s.User,
		Limits:            maps.Clone(s.Limits),
	}
}

// agentInfoProto is the agent's AgentInfo with its id, which every answer
// of the operator API carries.
func agentInfoProto(a *agent) *mesos.AgentInfo {
	info := a.info
	if info == nil {
		info = &mesos.AgentInfo{Hostname: proto.String(a.hostname)}
	}
	if info.GetId().GetValue() != a.id {
		info = proto.Clone(info).(*mesos.AgentInfo)
		info.Id = &mesos.AgentID{Value: proto.String(a.id)}
	}
	return info
}

// active is what Mesos calls an active agent: connected, and not
// deactivated by the operator. Only an active agent's resources are
// offered.
func (a *agent) active() bool { return a.connected && !a.deactivated }

// agentProto describes a registered agent as GET_AGENTS does.
func (m *Master) agentProto(a *agent) *masterpb.Response_GetAgents_Agent {
	allocated, offered := byRole{}, byRole{}
	for _, ts := range a.tasks {
		for _, t := range ts {
			if !t.released {
				allocated.add(t.role, t.res)
			}
		}
	}
	for _, es := range a.executors {
		for _, e := range es {
			allocated.add(e.role, e.res)
		}
	}
	for _, o := range a.offers {
		offered.add(o.role, o.res)
	}
	return &masterpb.Response_GetAgents_Agent{
		AgentInfo:          agentInfoProto(a),
		Active:             proto.Bool(a.active()),
		Deactivated:        proto.Bool(a.deactivated),
		Version:            proto.String(a.version),
		Pid:                proto.String(a.pid()),
		RegisteredTime:     timeInfo(a.registeredTime),
		ReregisteredTime:   timeInfo(a.reregisteredTime),
		TotalResources:     a.total.ToProto(""),
		AllocatedResources: allocated.proto(),
		OfferedResources:   offered.proto(),
		Capabilities: []*mesos.AgentInfo_Capability{
			{Type: mesos.AgentInfo_Capability_MULTI_ROLE.Enum()},
			{Type: mesos.AgentInfo_Capability_HIERARCHICAL_ROLE.Enum()},
		},
		DrainInfo: a.drainInfo(),
	}
}

// drainInfo is the agent's drain for the state, nil when it has none.
func (a *agent) drainInfo() *mesos.DrainInfo {
	if a.drain == nil {
		return nil
	}
	return a.drain.info()
}

func (m *Master) agentsProtoLocked() *masterpb.Response_GetAgents {
	out := &masterpb.Response_GetAgents{}
	for _, id := range sortedKeys(m.agents) {
		a := m.agents[id]
		if a.recovered {
			out.RecoveredAgents = append(out.RecoveredAgents, agentInfoProto(a))
			continue
		}
		out.Agents = append(out.Agents, m.agentProto(a))
	}
	return out
}

// frameworkInfoProto is the framework's FrameworkInfo with its id.
func frameworkInfoProto(fw *framework) *mesos.FrameworkInfo {
	info := fw.info
	if info.GetId().GetValue() != fw.id {
		info = proto.Clone(info).(*mesos.FrameworkInfo)
		info.Id = &mesos.FrameworkID{Value: proto.String(fw.id)}
	}
	return info
}

// frameworkProto describes a framework as GET_FRAMEWORKS does.
func (m *Master) frameworkProto(fw *framework) *masterpb.Response_GetFrameworks_Framework {
	allocated, offered := byRole{}, byRole{}
	for _, t := range fw.tasks {
		if !t.released {
			allocated.add(t.role, t.res)
		}
	}
	for _, es := range fw.executors {
		for _, e := range es {
			allocated.add(e.role, e.res)
		}
	}
	offers := []*mesos.Offer{}
	for _, id := range sortedKeys(fw.offers) {
		o := fw.offers[id]
		offered.add(o.role, o.res)
		offers = append(offers, m.offerProto(o))
	}
	return &masterpb.Response_GetFrameworks_Framework{
		FrameworkInfo:      frameworkInfoProto(fw),
		Active:             proto.Bool(fw.stream != nil),
		Connected:          proto.Bool(fw.connected),
		Recovered:          proto.Bool(fw.recovered),
		RegisteredTime:     timeInfo(fw.registeredTime),
		ReregisteredTime:   timeInfo(fw.reregisteredTime),
		UnregisteredTime:   timeInfo(fw.unregisteredTime),
		Offers:             offers,
		AllocatedResources: allocated.proto(),
		OfferedResources:   offered.proto(),
	}
}

func (m *Master) frameworksProtoLocked() *masterpb.Response_GetFrameworks {
	out := &masterpb.Response_GetFrameworks{}
	for _, id := range sortedKeys(m.frameworks) {
		out.Frameworks = append(out.Frameworks, m.frameworkProto(m.frameworks[id]))
	}
	// Newest first, as /master/state lists them.
	for i := len(m.completed) - 1; i >= 0; i-- {
		out.CompletedFrameworks = append(out.CompletedFrameworks, m.frameworkProto(m.completed[i]))
	}
	return out
}

func (m *Master) executorsProtoLocked() *masterpb.Response_GetExecutors {
	out := &masterpb.Response_GetExecutors{}
	for _, fwID := range sortedKeys(m.frameworks) {
		fw := m.frameworks[fwID]
		for _, agentID := range sortedKeys(fw.executors) {
			for _, execID := range sortedKeys(fw.executors[agentID]) {
				e := fw.executors[agentID][execID]
				info := e.info
				if info.GetFrameworkId().GetValue() != fw.id {
					info = proto.Clone(info).(*mesos.ExecutorInfo)
					info.FrameworkId = &mesos.FrameworkID{Value: proto.String(fw.id)}
				}
				out.Executors = append(out.Executors, &masterpb.Response_GetExecutors_Executor{
					ExecutorInfo: info,
					AgentId:      &mesos.AgentID{Value: proto.String(agentID)},
				})
			}
		}
	}
	return out
}

// tasksProtoLocked lists the tasks as GET_TASKS does: the live tasks of
// every framework, and their completed ones, those ended by an unreachable
// agent apart. With announce, the live tasks are marked as known to the
// operator event streams (the snapshot of a SUBSCRIBED).
//
// encs, when not nil, is given the encoding cache of each task listed.
func (m *Master) tasksProtoLocked(announce bool, encs taskEncodings) *masterpb.Response_GetTasks {
	out := &masterpb.Response_GetTasks{}
	completed := func(fw *framework) {
		// Newest first, as /master/state lists them.
		for i := len(fw.completedTasks) - 1; i >= 0; i-- {
			t := fw.completedTasks[i]
			encs.note(t)
			if t.state() == mesos.TaskState_TASK_UNREACHABLE {
				out.UnreachableTasks = append(out.UnreachableTasks, taskProto(t))
			} else {
				out.CompletedTasks = append(out.CompletedTasks, taskProto(t))
			}
		}
	}
	for _, fwID := range sortedKeys(m.frameworks) {
		fw := m.frameworks[fwID]
		for _, id := range sortedTaskIDs(fw.tasks) {
			t := fw.tasks[id]
			if announce {
				t.announced = true
			}
			encs.note(t)
			out.Tasks = append(out.Tasks, taskProto(t))
		}
		completed(fw)
	}
	for i := len(m.completed) - 1; i >= 0; i-- {
		completed(m.completed[i])
	}
	return out
}

func (m *Master) stateProtoLocked(announce bool, encs taskEncodings) *masterpb.Response_GetState {
	return &masterpb.Response_GetState{
		GetTasks:      m.tasksProtoLocked(announce, encs),
		GetExecutors:  m.executorsProtoLocked(),
		GetFrameworks: m.frameworksProtoLocked(),
		GetAgents:     m.agentsProtoLocked(),
	}
}

// rolesProtoLocked lists, as Mesos does, every role that is on the --roles
// whitelist, has a weight (--weights), or has frameworks; with each its
// weight, its frameworks and the resources allocated to it.
func (m *Master) rolesProtoLocked() *masterpb.Response_GetRoles {
	names := map[string]bool{}
	for _, r := range m.cfg.Roles {
		names[r] = true
	}
	if len(m.cfg.Roles) > 0 {
		names[resources.Unreserved] = true
	}
	for r := range m.cfg.Weights {
		names[r] = true
	}
	fws := map[string][]string{}
	for _, id := range sortedKeys(m.frameworks) {
		for _, r := range m.frameworks[id].roles {
			names[r] = true
			fws[r] = append(fws[r], id)
		}
	}
	allocated := byRole{}
	for _, fw := range m.frameworks {
		for _, t := range fw.tasks {
			if !t.released {
				allocated.add(t.role, t.res)
			}
		}
		for _, es := range fw.executors {
			for _, e := range es {
				allocated.add(e.role, e.res)
			}
		}
	}
	out := &masterpb.Response_GetRoles{}
	for _, name := range slices.Sorted(maps.Keys(names)) {
		weight := 1.0
		if w, ok := m.cfg.Weights[name]; ok {
			weight = w
		}
		role := &mesos.Role{Name: proto.String(name), Weight: proto.Float64(weight)}
		for _, id := range fws[name] {
			role.Frameworks = append(role.Frameworks, &mesos.FrameworkID{Value: proto.String(id)})
		}
		if rs := allocated.sum(name); len(rs) > 0 {
			role.Resources = rs.ToProto(name)
		}
		out.Roles = append(out.Roles, role)
	}
	return out
}

func (m *Master) masterProtoLocked() *masterpb.Response_GetMaster {
	out := &masterpb.Response_GetMaster{
		MasterInfo: m.info,
		StartTime:  proto.Float64(timestamp(m.startTime)),
	}
	if !m.electedTime.IsZero() {
		out.ElectedTime = proto.Float64(timestamp(m.electedTime))
	}
	return out
}
