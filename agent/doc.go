// Package agent is the mesolite node agent: it registers with the master
// over mesolite's agent protocol (docs/agent-protocol.md), turns RUN_TASK
// events into executors launched by a containerizer, serves the v1 executor
// API, checkpoints every task, update and container so a restarted agent
// recovers its tasks, and retries status updates until the framework
// acknowledges them.
//
// Task lifecycle on the agent:
//
//	RUN_TASK --> queued --(fetch, Launch)--> executor starting
//	                |                               | SUBSCRIBE
//	                | launch/fetch failed           v
//	                +--> TASK_FAILED        LAUNCH sent to executor
//	                     (CONTAINER_LAUNCH_FAILED)  | executor UPDATEs
//	                                                v
//	         TASK_STARTING -> TASK_RUNNING -> FINISHED | FAILED | KILLED
//	container ends with tasks left -> TASK_FAILED (EXECUTOR_TERMINATED,
//	     CONTAINER_LIMITATION_MEMORY, EXECUTOR_REGISTRATION_TIMEOUT)
package agent
