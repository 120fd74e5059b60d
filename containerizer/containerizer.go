package containerizer

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/mesolite/mesolite/api/v1/mesos"
)

// Errors a Containerizer returns, besides the errdefs classes.
var (
	// ErrNotSupported: this containerizer cannot run the spec (for example a
	// DOCKER container given to the mesos containerizer). The composing
	// containerizer uses it to route; the agent never sees it.
	ErrNotSupported = errors.New("containerizer does not support this container")
	// ErrNotEnabled: the spec needs a containerizer the agent was not started
	// with. The message names the flag to set.
	ErrNotEnabled = errors.New("containerizer not enabled")
	// ErrUnknownContainer: no container with that id is known (errors.Is also
	// matches errdefs.ErrNotFound).
	ErrUnknownContainer = errors.New("unknown container")
	// ErrLaunchFailed wraps every failure before the executor started (pull,
	// image inspect, isolation setup). The agent turns it into TASK_FAILED
	// with REASON_CONTAINER_LAUNCH_FAILED.
	ErrLaunchFailed = errors.New("container launch failed")
)

// LaunchSpec is everything a containerizer needs to start one executor.
// The agent has already created the sandbox (with stdout and stderr files)
// and fetched the URIs into it.
type LaunchSpec struct {
	ContainerID string
	// Executor is the executor to run. For a command task the agent
	// synthesizes it: its command is the built-in command executor and
	// Executor.Container is the task's ContainerInfo.
	Executor *mesos.ExecutorInfo
	// Task is the first task, set for command tasks (the docker containerizer
	// needs the task's ContainerInfo to pick the docker executor).
	Task      *mesos.TaskInfo
	Framework *mesos.FrameworkInfo
	// SandboxDir is the host path of the run directory.
	SandboxDir string
	// Env is the executor environment (MESOS_* variables) the agent built, as
	// KEY=VALUE; the containerizer adds the command's own environment.
	Env []string
	// Resources are the executor's plus its tasks' resources: the limits.
	Resources []*mesos.Resource
	// User to run as; empty means the agent's user.
	User string
	// Stdout and Stderr are the sandbox log files; containerizers write
	// progress (pull) there too.
	StdoutPath, StderrPath string
	// Progress, when set, receives one-line summaries of pre-start steps
	// (image pull) for TASK_STARTING messages.
	Progress func(msg string)
}

// Handle is the small, serialisable record of a running container that the
// agent checkpoints; Recover takes it back after an agent restart.
type Handle struct {
	ContainerID   string `json:"container_id"`
	Containerizer string `json:"containerizer"`
	// Pid of the container's root process on the host, when there is one.
	Pid int `json:"pid,omitempty"`
	// Data is implementation-specific (docker container name, cgroup path).
	Data json.RawMessage `json:"data,omitempty"`
}

// Termination says how a container ended.
type Termination struct {
	// ExitStatus is the wait status of the container's root process, or -1
	// when unknown (the process was not ours to wait for).
	ExitStatus int
	// Limitation is set when the container was killed for exceeding a limit
	// (the kernel OOM killer); the agent fails its tasks with Reason.
	Limitation bool
	Reason     mesos.TaskStatus_Reason
	Message    string
}

// Containerizer runs executors in containers.
//
// Lifecycle of one container:
//
//	        Launch                 executor exits / Destroy
//	(none) --------> RUNNING -------------------------------> TERMINATED
//	   |                |  ^                                       |
//	   |  launch error  |  | Update (limits follow new tasks)      | Wait returns
//	   v                +--+                                       v  the Termination
//	 (none, error wraps ErrLaunchFailed)                         (forgotten)
//
// Launch is not idempotent, but every pre-start step inside it is (pull,
// cgroup creation), so the agent may retry a failed launch with a new id.
// Every method is safe for concurrent use.
type Containerizer interface {
	// Launch starts the executor of spec and returns once it runs (image
	// pulled, isolation in place). Errors: ErrNotSupported, ErrNotEnabled,
	// ErrLaunchFailed, errdefs.ErrInvalid (bad ContainerInfo),
	// errdefs.ErrConflict (id in use).
	Launch(ctx context.Context, spec LaunchSpec) (Handle, error)
	// Wait blocks until the container terminated and returns how. It may be
	// called any number of times, also after termination (until Destroy
	// returned). Errors: ErrUnknownContainer, or ctx's error.
	Wait(ctx context.Context, containerID string) (Termination, error)
	// Update applies new resource limits. Errors: ErrUnknownContainer.
	Update(ctx context.Context, containerID string, resources []*mesos.Resource) error
	// Usage reads the container's resource statistics. Errors: ErrUnknownContainer.
	Usage(ctx context.Context, containerID string) (*mesos.ResourceStatistics, error)
	// Destroy kills every process of the container and removes what Launch
	// created (cgroups, docker containers). It returns when nothing is left.
	// Destroying an unknown or already destroyed container is not an error.
	Destroy(ctx context.Context, containerID string) error
	// Recover reattaches to the containers of the given handles after an
	// agent restart. Containers this containerizer owns that are not among
	// them are orphans and are destroyed. Handles of other containerizers are
	// ignored.
	Recover(ctx context.Context, handles []Handle) error
	// Containers lists the ids of live containers.
	Containers(ctx context.Context) ([]string, error)
}

// LimitationReporter is implemented by containerizers that can tell, right
// away, whether a container hit a resource limit (the kernel OOM-killed one
// of its processes). The agent asks it when an executor reports a task
// failed, so the update carries REASON_CONTAINER_LIMITATION_MEMORY instead
// of a bare "killed by signal 9" whichever side notices first.
type LimitationReporter interface {
	Limitation(ctx context.Context, containerID string) (Termination, bool)
}
