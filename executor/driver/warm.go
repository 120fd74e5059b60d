package driver

import (
	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/executor"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"google.golang.org/protobuf/proto"
)

// Warm does ahead of time what the protobuf runtime does lazily on a
// process's first use of a message type: decoding the file descriptors and
// building the type's encoders and JSON name tables. An executor pays that
// (5–10 ms here) on its first SUBSCRIBE, its first event and its first
// update, all on the launch path; a process started ahead of its executor
// (the agent's prestarted inits) calls Warm while it waits, so the executor
// it becomes starts with it done. It round-trips the calls and events of a
// command task's life, with the fields a launch usually fills, through
// both codecs; types a launch never touches stay lazy.
func Warm() {
	for _, c := range []codec.Codec{codec.JSON, codec.Protobuf} {
		for _, m := range warmMessages() {
			if b, err := c.Marshal(m); err == nil {
				_ = c.Unmarshal(b, m.ProtoReflect().New().Interface())
			}
		}
	}
}

// warmMessages are the calls and events Warm round-trips.
func warmMessages() []proto.Message {
	s := proto.String
	scalar := func(name string, v float64) *mesos.Resource {
		return &mesos.Resource{Name: s(name), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(v)}}
	}
	resources := []*mesos.Resource{
		scalar("cpus", 0.1), scalar("mem", 32),
		{Name: s("ports"), Type: mesos.Value_RANGES.Enum(), Ranges: &mesos.Value_Ranges{Range: []*mesos.Value_Range{{Begin: proto.Uint64(31000), End: proto.Uint64(31001)}}}},
	}
	labels := &mesos.Labels{Labels: []*mesos.Label{{Key: s("k"), Value: s("v")}}}
	command := &mesos.CommandInfo{
		Value: s("true"), Shell: proto.Bool(true),
		Uris:        []*mesos.CommandInfo_URI{{Value: s("http://127.0.0.1/x"), Extract: proto.Bool(true)}},
		Environment: &mesos.Environment{Variables: []*mesos.Environment_Variable{{Name: s("A"), Value: s("B")}}},
	}
	task := &mesos.TaskInfo{
		Name: s("warm"), TaskId: &mesos.TaskID{Value: s("warm")}, AgentId: &mesos.AgentID{Value: s("warm")},
		Command: command, Resources: resources, Labels: labels,
		KillPolicy: &mesos.KillPolicy{GracePeriod: &mesos.DurationInfo{Nanoseconds: proto.Int64(1)}},
	}
	ex := &mesos.ExecutorInfo{ExecutorId: &mesos.ExecutorID{Value: s("warm")}, Command: command, Resources: resources}
	fw := &mesos.FrameworkInfo{
		User: s("warm"), Name: s("warm"), Id: &mesos.FrameworkID{Value: s("warm")}, Roles: []string{"*"},
		Checkpoint: proto.Bool(true), FailoverTimeout: proto.Float64(1), Labels: labels,
		Capabilities: []*mesos.FrameworkInfo_Capability{{Type: mesos.FrameworkInfo_Capability_TASK_KILLING_STATE.Enum()}},
	}
	agent := &mesos.AgentInfo{
		Hostname: s("warm"), Id: task.AgentId, Port: proto.Int32(5051), Resources: resources,
		Attributes: []*mesos.Attribute{{Name: s("a"), Type: mesos.Value_TEXT.Enum(), Text: &mesos.Value_Text{Value: s("b")}}},
	}
	status := &mesos.TaskStatus{
		TaskId: task.TaskId, State: mesos.TaskState_TASK_RUNNING.Enum(), Source: mesos.TaskStatus_SOURCE_EXECUTOR.Enum(),
		Reason: mesos.TaskStatus_REASON_COMMAND_EXECUTOR_FAILED.Enum(), Message: s("warm"),
		Uuid: []byte("warm"), Timestamp: proto.Float64(1), ExecutorId: ex.ExecutorId,
	}
	return []proto.Message{
		&executor.Call{Type: executor.Call_SUBSCRIBE.Enum(), FrameworkId: fw.Id, ExecutorId: ex.ExecutorId, Subscribe: &executor.Call_Subscribe{
			UnacknowledgedTasks: []*mesos.TaskInfo{task}, UnacknowledgedUpdates: []*executor.Call_Update{{Status: status}},
		}},
		&executor.Call{Type: executor.Call_UPDATE.Enum(), FrameworkId: fw.Id, ExecutorId: ex.ExecutorId, Update: &executor.Call_Update{Status: status}},
		&executor.Event{Type: executor.Event_SUBSCRIBED.Enum(), Subscribed: &executor.Event_Subscribed{
			ExecutorInfo: ex, FrameworkInfo: fw, AgentInfo: agent, ContainerId: &mesos.ContainerID{Value: s("warm")},
		}},
		&executor.Event{Type: executor.Event_LAUNCH.Enum(), Launch: &executor.Event_Launch{Task: task}},
		&executor.Event{Type: executor.Event_ACKNOWLEDGED.Enum(), Acknowledged: &executor.Event_Acknowledged{TaskId: task.TaskId, Uuid: []byte("warm")}},
		&executor.Event{Type: executor.Event_KILL.Enum(), Kill: &executor.Event_Kill{TaskId: task.TaskId, KillPolicy: task.KillPolicy}},
	}
}
