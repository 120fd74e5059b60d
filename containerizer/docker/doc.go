// Package docker is the docker containerizer: it runs executors and tasks
// as Docker Engine containers, the way Apache Mesos's docker containerizer
// does, selected with `--containerizers=docker,mesos`.
//
// Two kinds of launch reach it:
//
//   - A command task whose ContainerInfo is DOCKER. Launch validates the
//     ContainerInfo, makes sure the image is present (inspect first, pull
//     only when missing or force_pull_image is set, progress into the
//     sandbox's stderr and TASK_STARTING messages), creates the container
//     mesolite-<container id>, and starts the docker executor (the agent's
//     own binary, `mesolite executor docker`) as a host process. The
//     executor subscribes to the agent, starts the container on LAUNCH,
//     streams its output into the sandbox and reports the task's states.
//     Because the pull is done before Launch returns, the agent's executor
//     registration timeout only starts once the image is there.
//   - An executor (TaskInfo.executor) whose ContainerInfo is DOCKER. The
//     executor itself runs inside the image (host networking by default, so
//     it reaches the agent), and the containerizer copies its output into
//     the sandbox.
//
// Ownership: every container carries the labels of package engine, with the
// owner label set to Options.Owner. Only containers with this agent's owner
// label are ever stopped or removed: on Recover, ours that no live executor
// accounts for are orphans, killed and removed when Options.KillOrphans is
// set; exited ones are removed Options.RemoveDelay after they ended (so
// `docker logs` and `docker inspect` work for a while). A container named
// mesolite-foo without our labels is never touched.
//
// A dockerd that is down does not stop the agent: New logs it, a monitor
// keeps retrying with backoff and says when dockerd is back, and launches
// meanwhile fail at once with containerizer.ErrLaunchFailed (the agent sends
// TASK_FAILED with REASON_CONTAINER_LAUNCH_FAILED).
//
// Mapping of ContainerInfo onto the Engine API:
//
//	docker.network         HOST, BRIDGE, NONE, USER (the one network_infos name)
//	docker.port_mappings   BRIDGE/USER only; host_port must be in the ports
//	                       resource; published on Options.PublishIP
//	docker.privileged      only with Options.AllowPrivileged
//	docker.parameters      SupportedParameters(); unknown keys are refused
//	volumes                host_path (relative: inside the sandbox), SANDBOX_PATH,
//	                       HOST_PATH, DOCKER_VOLUME; RW/RO
//	hostname, tty_info, rlimit_info
//	resources              cpu shares 1024 x cpus (min 2), memory >= 32 MB with
//	                       swap capped at the same value, CFS quota with
//	                       Options.EnableCFS
//	command                shell: /bin/sh -c value; no shell: image ENTRYPOINT
//	                       with value+arguments as CMD; neither: image defaults
//	environment            MESOS_SANDBOX, MESOS_TASK_ID, MESOS_CONTAINER_NAME,
//	                       framework/executor/agent ids, then CommandInfo's
//	                       environment, then env parameters
//
// The sandbox is bind-mounted at Options.SandboxDirectory.
package docker
