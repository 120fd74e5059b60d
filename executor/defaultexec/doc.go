// Package defaultexec is the built-in default executor: the agent starts it
// for an ExecutorInfo of type DEFAULT, which runs task groups (LAUNCH_GROUP,
// Mesos's pods). Each task of a group runs as a nested container of the
// executor's container, with its own sandbox at <sandbox>/tasks/<task_id>
// (Mesos's layout) holding its stdout and stderr, MESOS_SANDBOX naming it,
// and the executor's sandbox shared through SANDBOX_PATH volumes of type
// PARENT. Each task reports TASK_STARTING, TASK_RUNNING and its terminal
// state with container_status.container_id = the nested container's id
// (its parent: the executor's container).
//
// As in Mesos, when a task of a group ends in anything but TASK_FINISHED
// (it failed, or was killed), every other task of that group is killed,
// each with its own kill policy. max_completion_time kills a task with
// TASK_FAILED / REASON_MAX_COMPLETION_TIME_REACHED. The executor ends once
// every task it was given is terminal and the agent has acknowledged it.
//
// Why the executor starts the tasks itself, as its children, rather than
// asking the agent (Mesos's default executor calls LAUNCH_NESTED_CONTAINER
// on the agent API): the executor already runs inside its container, in
// its namespaces (network, pid, mount) and as the task's user, so a child
// is born where a nested container must be, with no privilege and nothing
// for the agent to enter. A nested container the agent started through
// containerizer.Enterer would need the agent to keep, checkpoint and
// recover a long-lived process tree per task across agent restarts, which
// the agent's sessions (they die with their connection) do not do. The
// cost: a task shares its executor's cgroup (the executor, running as the
// task's user, cannot create cgroups), so limits are the group's, as the
// agent sets them for the executor's container (the executor's resources
// plus all of its tasks').
//
//	task:  launching ──> running ──> killing ──> terminal
//	           │            └──────────────────────^
//	           └───────────────────────────────────^ (refused, failed to start)
package defaultexec
