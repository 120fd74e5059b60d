// Package docker is the docker executor: the agent's docker containerizer
// starts it (`mesolite executor docker --container=NAME --docker=HOST`) as
// a host process for a command task whose ContainerInfo is DOCKER, after it
// pulled the image and created the container NAME. The executor subscribes
// to the agent over the v1 executor API and, on LAUNCH:
//
//	TASK_STARTING      attach to the container's output, start it
//	TASK_RUNNING       once dockerd reports it running; container_status
//	                   carries its IP addresses (network_infos) and data
//	                   the `docker inspect` JSON, as Mesos does
//	TASK_FINISHED      exit status 0
//	TASK_FAILED        any other exit status (the message says which);
//	                   REASON_CONTAINER_LIMITATION_MEMORY when the kernel
//	                   OOM-killed it, with the limit in the message
//	TASK_KILLING       on KILL, for frameworks with TASK_KILLING_STATE
//	TASK_KILLED        after the container's stop signal (SIGTERM unless the
//	                   image says otherwise) and, once the kill policy's
//	                   grace period (default 3s) passed, SIGKILL
//
// The container's stdout and stderr go to the sandbox's stdout and stderr
// files as they come (rotated as the agent configured). The executor exits
// once the agent acknowledged the terminal update.
package docker
