package mesos

// IsTerminal reports whether a task in state s will never change state
// again (Mesos's protobuf::isTerminalState).
func IsTerminal(s TaskState) bool {
	switch s {
	case TaskState_TASK_FINISHED, TaskState_TASK_FAILED, TaskState_TASK_KILLED,
		TaskState_TASK_ERROR, TaskState_TASK_LOST, TaskState_TASK_DROPPED,
		TaskState_TASK_GONE, TaskState_TASK_GONE_BY_OPERATOR:
		return true
	}
	return false
}

// HasCapability reports whether the framework declared capability c. A nil
// FrameworkInfo has none.
func (x *FrameworkInfo) HasCapability(c FrameworkInfo_Capability_Type) bool {
	for _, cap := range x.GetCapabilities() {
		if cap.GetType() == c {
			return true
		}
	}
	return false
}
