package containerizer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"syscall"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/errdefs"
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
	// ErrUnknownContainer: no container with that id is known. Errors that
	// wrap it wrap errdefs.ErrNotFound too (see UnknownContainer).
	ErrUnknownContainer = errors.New("unknown container")
	// ErrLaunchFailed wraps every failure before the executor started (pull,
	// image inspect, isolation setup). The agent turns it into TASK_FAILED
	// with REASON_CONTAINER_LAUNCH_FAILED.
	ErrLaunchFailed = errors.New("container launch failed")
)

// UnknownContainer is the error for an id no container has: it matches
// both ErrUnknownContainer and errdefs.ErrNotFound.
func UnknownContainer(id string) error {
	return fmt.Errorf("container %s: %w: %w", id, ErrUnknownContainer, errdefs.ErrNotFound)
}

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
//	   |  launch error  |  | Update (limits follow new tasks)      | Destroy
//	   v                +--+                                       v
//	 (none, error wraps ErrLaunchFailed)                         (forgotten)
//
// RUNNING: Containers lists the id; Wait blocks. TERMINATED: Containers no
// longer lists it; Wait returns the Termination at once, as often as it is
// asked, until Destroy returned; every process is gone but what Launch
// created (cgroups, docker containers) may remain. Forgotten: every method
// answers as for an id never launched.
//
// Launch is not idempotent, but every pre-start step inside it is (pull,
// cgroup creation), so the agent may retry a failed launch with a new id.
// Every method is safe for concurrent use.
//
// Package containerizertest is the conformance suite every implementation
// passes; package fake is a scriptable implementation for tests of the
// agent.
type Containerizer interface {
	// Launch starts the executor of spec and returns once it runs (image
	// pulled, isolation in place). Errors: ErrNotSupported, ErrNotEnabled,
	// ErrLaunchFailed, errdefs.ErrInvalid (bad ContainerInfo),
	// errdefs.ErrConflict (id in use: launching, running, or terminated and
	// not yet destroyed).
	//
	// ctx bounds the launch only, never the container's life. When ctx ends
	// before the executor runs, Launch returns an error that wraps ctx's
	// (errors.Is(err, context.Canceled)) and leaves nothing behind: no
	// process, no cgroup, no docker container, an id Containers does not
	// list and Wait does not know. Until Launch returned, the id is not
	// listed by Containers and Wait, Update and Usage answer
	// ErrUnknownContainer.
	Launch(ctx context.Context, spec LaunchSpec) (Handle, error)
	// Wait blocks until the container terminated and returns how. It may be
	// called any number of times, concurrently too, also after termination
	// (until Destroy returned); a Wait blocked when Destroy kills the
	// container returns the termination Destroy caused (not an error). A
	// container killed by Destroy reports ExitStatus -1, a wait status of
	// a signal, or an exit code above 128 (128+signal, as shells and dockerd
	// report it); Limitation is false. Errors: ErrUnknownContainer, or
	// ctx's error.
	Wait(ctx context.Context, containerID string) (Termination, error)
	// Update applies new resource limits. Errors: ErrUnknownContainer.
	Update(ctx context.Context, containerID string, resources []*mesos.Resource) error
	// Usage reads the container's resource statistics. Errors: ErrUnknownContainer.
	Usage(ctx context.Context, containerID string) (*mesos.ResourceStatistics, error)
	// Destroy kills every process of the container and removes what Launch
	// created (cgroups, docker containers). It returns nil only when nothing
	// is left; then the id is forgotten. Destroying an unknown or already
	// destroyed container is not an error (nil), so Destroy is idempotent.
	// A Destroy that fails (dockerd unreachable, a cgroup still busy, ctx
	// ended) returns an error and may be retried; the container stays known
	// meanwhile. Destroy does not stop a Launch of the same id that has not
	// returned yet (it returns nil for it): cancel that Launch's ctx, and
	// Destroy once it returned a handle.
	Destroy(ctx context.Context, containerID string) error
	// Recover reattaches to the containers of the given handles after an
	// agent restart (a new instance, the old one gone): they are listed by
	// Containers, and Wait, Update, Usage and Destroy work on them. A
	// handle whose container is gone is left out (Wait then answers
	// ErrUnknownContainer and the agent fails its tasks). Containers this
	// containerizer owns that are not among them are orphans and are
	// destroyed (where the implementation can find them). Handles of other
	// containerizers are ignored.
	Recover(ctx context.Context, handles []Handle) error
	// Containers lists the ids of running containers (launched or
	// recovered, not yet terminated), in no particular order.
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

// EnterSpec is a command to run inside a running container: a nested
// container session (the agent API's LAUNCH_NESTED_CONTAINER_SESSION,
// `mesolite exec`), which shares the container's namespaces, cgroups and
// sandbox and lives no longer than the container.
type EnterSpec struct {
	// Argv is the command; Argv[0] is looked up along the PATH of its
	// environment, as the container sees its filesystem.
	Argv []string
	// Env are the command's own variables (KEY=VALUE); they win over the
	// container's.
	Env []string
	// TaskEnv is the environment a process of the container starts with
	// (the task's), for a containerizer that starts the command from
	// nothing (mesos); one whose runtime keeps the container's own (docker)
	// ignores it.
	TaskEnv []string
	// User is the task's user, who the command runs as (empty: the agent's
	// user). A containerizer whose containers have a user of their own
	// (docker) runs the command as that one instead.
	User string
	// SandboxDir is the container's sandbox on the host; the command starts
	// in the sandbox as the container sees it.
	SandboxDir string
	// Nested, when set, is a task of a group's nested container of this
	// container: the command joins its cgroup too, where it has one
	// (Nester).
	Nested string
	// TTY gives the command a terminal of Rows x Cols (0: the default)
	// for its stdin, stdout and stderr.
	TTY        bool
	Rows, Cols uint16
}

// Entered is a command running inside a container (see Enterer).
type Entered interface {
	// Stdin is the command's input; Close is its end of file (with a
	// terminal: the terminal's EOF character).
	Stdin() io.WriteCloser
	// Stdout and Stderr are its output, until EOF once it and whatever
	// holds them ended. With a terminal, Stdout is the terminal's and
	// Stderr is nil.
	Stdout() io.Reader
	Stderr() io.Reader
	// Resize changes the terminal's size; errdefs.ErrInvalid without one.
	Resize(ctx context.Context, rows, cols uint16) error
	// Signal sends sig to the command; SIGKILL also ends what it started
	// in its process group, where the runtime allows.
	Signal(ctx context.Context, sig syscall.Signal) error
	// Wait returns the command's wait(2) status once it ended (as
	// Termination.ExitStatus: -1 when unknown), or ctx's error.
	Wait(ctx context.Context) (int, error)
	// Close releases the input and output; call it once the command ended
	// and its output was read.
	Close() error
}

// Enterer is implemented by containerizers that can run a command inside
// a running container. Enter returns once the command runs. Errors:
// ErrUnknownContainer, errdefs.ErrConflict (the container is not running:
// still launching, or terminated), ErrNotSupported (a container of a kind
// this containerizer cannot enter), errdefs.ErrInvalid (an empty argv, a
// user the host does not know), or the runtime's.
type Enterer interface {
	Enter(ctx context.Context, containerID string, spec EnterSpec) (Entered, error)
}

// Nester is implemented by containerizers that give each task of a task
// group a cgroup of its own, nested in its executor's container (Mesos's
// nested containers of the default executor): the task's own cpu and
// memory limits, its own usage, and an OOM that is the task's alone.
//
// The containerizer makes the cgroup; the executor, already in the
// container's namespaces and running as the tasks' user, moves the task
// into it before the task runs (package defaultexec): it may do so from
// PrepareNested until SealNested, and never moves anything anywhere else.
// Usage and Limitation take a nested id as they take a container's; the
// LimitationReporter answer for a nested id is that task's own.
type Nester interface {
	// PrepareNested makes the cgroup of nested container id below the
	// running container parent with the limits of resources (the task's),
	// open to the container's user for placing the task. Errors:
	// ErrUnknownContainer (parent), ErrNotSupported (parent has no cgroups
	// to nest in: posix isolation, a docker container, or it was not
	// launched for a task group), errdefs.ErrConflict (id exists),
	// errdefs.ErrInvalid (a bad id).
	PrepareNested(ctx context.Context, parent, id string, resources []*mesos.Resource) error
	// SealNested closes the nested cgroup to further placements (the task
	// runs, or never will). An unknown id is not an error.
	SealNested(ctx context.Context, id string) error
	// DestroyNested kills whatever is left in the nested cgroup and
	// removes it; an unknown id is not an error. Destroy of the parent
	// destroys its nested cgroups too.
	DestroyNested(ctx context.Context, id string) error
	// Nested lists the nested containers of parent that have a cgroup.
	Nested(ctx context.Context, parent string) ([]string, error)
}

// Input is a running container's own input (see InputAttacher).
type Input interface {
	// Write feeds the container's terminal; Close writes the terminal's
	// end of file (^D), it does not hang the terminal up.
	io.WriteCloser
	// Resize changes the container's terminal size.
	Resize(ctx context.Context, rows, cols uint16) error
	// Detach ends the attachment and writes nothing: the next client
	// finds the input as this one left it.
	Detach()
}

// InputAttacher is implemented by containerizers that can feed a running
// container's own process (ATTACH_CONTAINER_INPUT of a task's container).
// Only a container launched with a TTY (ContainerInfo.tty_info) takes
// input: without one nothing would read it. Errors:
// ErrUnknownContainer, errdefs.ErrConflict (terminated, or launched
// without a TTY), or the runtime's.
type InputAttacher interface {
	AttachInput(ctx context.Context, containerID string) (Input, error)
}
