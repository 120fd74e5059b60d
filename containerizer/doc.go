// Package containerizer defines the contract between the agent and the
// things that run executors: the mesos containerizer (processes under cgroup
// and namespace isolation), the docker containerizer (Docker Engine
// containers) and the composing containerizer that routes between them as
// `--containerizers=docker,mesos` asks.
//
// A task moves through these states on the agent; the containerizer owns the
// part between "launching" and "terminated":
//
//	TASK_STAGING -> (fetch, pull, isolate: Launch) -> TASK_STARTING (executor)
//	   -> TASK_RUNNING -> TASK_FINISHED | TASK_FAILED | TASK_KILLED
//	   any state -> TASK_FAILED (REASON_CONTAINER_LAUNCH_FAILED,
//	                 REASON_CONTAINER_LIMITATION_MEMORY,
//	                 REASON_EXECUTOR_TERMINATED, ...)
package containerizer
