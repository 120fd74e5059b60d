package agent

import (
	"cmp"
	"maps"
	"slices"
	"time"

	"github.com/mesolite/mesolite/api/v1/agentapi"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"google.golang.org/protobuf/proto"
)

// stateSnapshot is the agent's books as /state and the operator API's
// GET_STATE, GET_FRAMEWORKS, GET_EXECUTORS, GET_TASKS and GET_AGENT show
// them: one copy taken under a.mu, rendered (JSON or protobuf) after the
// lock is released, so the two views never disagree and a slow client
// never holds the agent. It shares only what the agent replaces and never
// changes in place (TaskInfo, ExecutorInfo, FrameworkInfo, the statuses
// kept for a task, resource slices); status slices are copied, since the
// agent appends to them.
type stateSnapshot struct {
	agentID    string
	info       *mesos.AgentInfo // a copy: the agent fills its id in place
	masterAddr string
	frameworks []frameworkSnap
	completed  []frameworkSnap
}

type frameworkSnap struct {
	id        string
	info      *mesos.FrameworkInfo
	executors []executorSnap
	completed []executorSnap
}

type executorSnap struct {
	info        *mesos.ExecutorInfo
	fwID        string
	containerID string
	directory   string
	phase       executorPhase
	resources   []*mesos.Resource
	// The executor's tasks by where they are in their life: waiting for
	// the executor to subscribe, given to it, terminal with the update
	// not yet acknowledged, terminal and acknowledged.
	queued, launched, terminal, finished []taskSnap
}

type taskSnap struct {
	task *mesos.Task
	// exID is the executor's id, which the Task of a command task leaves
	// out (as Mesos's does) but /state shows.
	exID string
}

// stateSnapshot copies the books; sorted by id, so that answers are
// stable.
func (a *Agent) stateSnapshot() stateSnapshot {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := stateSnapshot{agentID: a.agentID, info: proto.Clone(a.info).(*mesos.AgentInfo)}
	for _, id := range slices.Sorted(maps.Keys(a.frameworks)) {
		s.frameworks = append(s.frameworks, a.frameworkSnapLocked(id, a.frameworks[id]))
	}
	for _, fw := range a.completed {
		s.completed = append(s.completed, a.frameworkSnapLocked(fw.info.GetId().GetValue(), fw))
	}
	a.master.mu.Lock()
	s.masterAddr = a.master.addr
	a.master.mu.Unlock()
	return s
}

func (a *Agent) frameworkSnapLocked(id string, fw *framework) frameworkSnap {
	f := frameworkSnap{id: id, info: fw.info}
	for _, exID := range slices.Sorted(maps.Keys(fw.executors)) {
		f.executors = append(f.executors, a.executorSnapLocked(id, fw.executors[exID]))
	}
	for _, es := range fw.completed {
		f.completed = append(f.completed, a.executorSnapLocked(id, es))
	}
	return f
}

func (a *Agent) executorSnapLocked(fwID string, es *executorState) executorSnap {
	e := executorSnap{
		info: es.info, fwID: fwID, containerID: es.containerID, directory: es.directory,
		phase: es.phase, resources: es.resources,
	}
	tasks := func(m map[string]*taskState) []taskSnap {
		var out []taskSnap
		for _, id := range slices.Sorted(maps.Keys(m)) {
			out = append(out, a.taskSnapLocked(fwID, es, m[id]))
		}
		return out
	}
	e.queued, e.launched, e.terminal = tasks(es.queued), tasks(es.launched), tasks(es.terminal)
	for _, ts := range es.finished {
		e.finished = append(e.finished, a.taskSnapLocked(fwID, es, ts))
	}
	return e
}

func (a *Agent) taskSnapLocked(fwID string, es *executorState, ts *taskState) taskSnap {
	t := a.taskLocked(fwID, es, ts)
	t.Statuses = slices.Clone(t.Statuses)
	return taskSnap{task: t, exID: es.info.GetExecutorId().GetValue()}
}

// ---- protobuf renderings, for the operator API ----

func (s *stateSnapshot) frameworksProto() *agentapi.Response_GetFrameworks {
	out := &agentapi.Response_GetFrameworks{}
	for _, f := range s.frameworks {
		out.Frameworks = append(out.Frameworks, &agentapi.Response_GetFrameworks_Framework{FrameworkInfo: frameworkInfoWithID(f)})
	}
	for _, f := range s.completed {
		out.CompletedFrameworks = append(out.CompletedFrameworks, &agentapi.Response_GetFrameworks_Framework{FrameworkInfo: frameworkInfoWithID(f)})
	}
	return out
}

// frameworkInfoWithID is the framework's info with its id, which every
// answer carries; a copy when the kept info lacks it.
func frameworkInfoWithID(f frameworkSnap) *mesos.FrameworkInfo {
	if f.info.GetId().GetValue() == f.id {
		return f.info
	}
	fi := proto.Clone(f.info).(*mesos.FrameworkInfo)
	if fi == nil {
		fi = &mesos.FrameworkInfo{}
	}
	fi.Id = &mesos.FrameworkID{Value: proto.String(f.id)}
	return fi
}

func (s *stateSnapshot) executorsProto() *agentapi.Response_GetExecutors {
	out := &agentapi.Response_GetExecutors{}
	for _, f := range s.frameworks {
		for _, e := range f.executors {
			out.Executors = append(out.Executors, &agentapi.Response_GetExecutors_Executor{ExecutorInfo: e.info})
		}
		for _, e := range f.completed {
			out.CompletedExecutors = append(out.CompletedExecutors, &agentapi.Response_GetExecutors_Executor{ExecutorInfo: e.info})
		}
	}
	for _, f := range s.completed {
		for _, e := range append(slices.Clip(f.executors), f.completed...) {
			out.CompletedExecutors = append(out.CompletedExecutors, &agentapi.Response_GetExecutors_Executor{ExecutorInfo: e.info})
		}
	}
	return out
}

// tasksProto sorts the tasks as Mesos's agent does. It has no pending
// tasks: a task is queued on its executor from the moment it arrives.
// The tasks of completed executors and frameworks are all completed.
func (s *stateSnapshot) tasksProto() *agentapi.Response_GetTasks {
	out := &agentapi.Response_GetTasks{}
	add := func(dst *[]*mesos.Task, ts []taskSnap) {
		for _, t := range ts {
			*dst = append(*dst, t.task)
		}
	}
	for _, f := range s.frameworks {
		for _, e := range f.executors {
			add(&out.QueuedTasks, e.queued)
			add(&out.LaunchedTasks, e.launched)
			add(&out.TerminatedTasks, e.terminal)
			add(&out.CompletedTasks, e.finished)
		}
	}
	done := func(es []executorSnap) {
		for _, e := range es {
			add(&out.CompletedTasks, e.queued)
			add(&out.CompletedTasks, e.launched)
			add(&out.CompletedTasks, e.terminal)
			add(&out.CompletedTasks, e.finished)
		}
	}
	for _, f := range s.frameworks {
		done(f.completed)
	}
	for _, f := range s.completed {
		done(f.executors)
		done(f.completed)
	}
	return out
}

func (s *stateSnapshot) stateProto() *agentapi.Response_GetState {
	return &agentapi.Response_GetState{
		GetTasks:      s.tasksProto(),
		GetExecutors:  s.executorsProto(),
		GetFrameworks: s.frameworksProto(),
	}
}

func (s *stateSnapshot) agentProto() *agentapi.Response_GetAgent {
	return &agentapi.Response_GetAgent{AgentInfo: s.info}
}

// timeInfo is t as Mesos's TimeInfo.
func timeInfo(t time.Time) *mesos.TimeInfo {
	return &mesos.TimeInfo{Nanoseconds: proto.Int64(t.UnixNano())}
}

// byID orders containers in GET_CONTAINERS.
func byID(a, b *agentapi.Response_GetContainers_Container) int {
	return cmp.Compare(a.GetContainerId().GetValue(), b.GetContainerId().GetValue())
}
