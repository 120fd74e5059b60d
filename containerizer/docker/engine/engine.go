package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/client"
	"github.com/mesolite/mesolite/errdefs"
)

// Names and labels of the containers mesolite creates.
const (
	// NamePrefix starts every container name: mesolite-<container id>.
	NamePrefix = "mesolite-"
	// LabelOwner carries the identity of the agent that owns the container
	// (see docker.Options.Owner). Only containers with this agent's value
	// are ever stopped or removed by it.
	LabelOwner = "org.mesolite.owner"
	// LabelAgentID is the Mesos agent id at launch time (informational:
	// an agent id changes when an agent re-registers from scratch).
	LabelAgentID     = "org.mesolite.agent-id"
	LabelContainerID = "org.mesolite.container-id"
	LabelFrameworkID = "org.mesolite.framework-id"
	LabelExecutorID  = "org.mesolite.executor-id"
	LabelTaskID      = "org.mesolite.task-id"
	// LabelPrefix is reserved: task parameters may not set labels under it.
	LabelPrefix = "org.mesolite."
)

// ContainerName is the Docker name of the container for a Mesos container id.
func ContainerName(containerID string) string { return NamePrefix + containerID }

// Engine talks to one dockerd. It is safe for concurrent use.
type Engine struct {
	cli *client.Client
}

// New returns an engine for host ("unix:///var/run/docker.sock",
// "tcp://host:2375", or a bare socket path as Mesos's --docker_socket takes
// it); empty host means DOCKER_HOST or the default socket. It does no I/O:
// a dockerd that is down is noticed by the first call, not here.
func New(host string) (*Engine, error) {
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if host != "" {
		if strings.HasPrefix(host, "/") {
			host = "unix://" + host
		}
		opts = append(opts, client.WithHost(host))
	}
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker client for %q: %w", host, errors.Join(errdefs.ErrInvalid, err))
	}
	return &Engine{cli: cli}, nil
}

// Host is the daemon address the engine talks to.
func (e *Engine) Host() string { return e.cli.DaemonHost() }

// Close releases the client's idle connections.
func (e *Engine) Close() error { return e.cli.Close() }

// Ping is how callers tell whether dockerd is up: one cheap request.
// Errors: errdefs.ErrUnavailable when it cannot be reached.
func (e *Engine) Ping(ctx context.Context) error {
	_, err := e.cli.Ping(ctx)
	return e.wrap("ping dockerd", err)
}

// Version is dockerd's version and API version, for logs.
func (e *Engine) Version(ctx context.Context) (string, error) {
	v, err := e.cli.ServerVersion(ctx)
	if err != nil {
		return "", e.wrap("dockerd version", err)
	}
	return v.Version + " (API " + v.APIVersion + ")", nil
}

// Error is an engine failure: what was being done, the errdefs class and
// the client's error. errors.Is matches both the class and the cause.
type Error struct {
	Op    string
	Class error
	Err   error
}

func (e *Error) Error() string { return e.Op + ": " + e.Err.Error() }

func (e *Error) Unwrap() []error {
	if e.Class == nil {
		return []error{e.Err}
	}
	return []error{e.Class, e.Err}
}

// wrap classifies a client error. A daemon that cannot be reached (socket
// missing, connection refused, context deadline while connecting) is
// ErrUnavailable so that callers retry later instead of failing for good.
func (e *Engine) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	var class error
	switch {
	case client.IsErrConnectionFailed(err):
		// The client's message names the daemon address already.
		class = errdefs.ErrUnavailable
	case cerrdefs.IsNotFound(err):
		class = errdefs.ErrNotFound
	case cerrdefs.IsConflict(err), cerrdefs.IsAlreadyExists(err):
		class = errdefs.ErrConflict
	case cerrdefs.IsInvalidArgument(err):
		class = errdefs.ErrInvalid
	case cerrdefs.IsUnauthorized(err):
		class = errdefs.ErrUnauthorized
	case cerrdefs.IsPermissionDenied(err):
		class = errdefs.ErrForbidden
	case cerrdefs.IsUnavailable(err):
		class = errdefs.ErrUnavailable
	}
	return &Error{Op: op, Class: class, Err: err}
}

// IsUnavailable reports whether err says dockerd could not be reached.
func IsUnavailable(err error) bool { return errors.Is(err, errdefs.ErrUnavailable) }

// IsNotFound reports whether err says the container or image does not exist.
func IsNotFound(err error) bool { return errors.Is(err, errdefs.ErrNotFound) }
