package docker

import (
	"context"
	"fmt"

	"github.com/mesolite/mesolite/containerizer"
	"github.com/mesolite/mesolite/containerizer/docker/engine"
	"github.com/mesolite/mesolite/errdefs"
)

var _ containerizer.Enterer = (*Containerizer)(nil)

// Enter implements containerizer.Enterer with dockerd's exec: the command
// runs in the task's Docker container (for a command task too, whose
// executor runs on the host beside it) as the container's own user, in
// the sandbox as the container mounts it, with the container's
// environment and the command's own variables. spec.User and TaskEnv are
// not used: the container has a user and an environment of its own.
func (c *Containerizer) Enter(ctx context.Context, id string, spec containerizer.EnterSpec) (containerizer.Entered, error) {
	ct, err := c.get(id)
	if err != nil {
		return nil, err
	}
	select {
	case <-ct.done:
		return nil, fmt.Errorf("container %s has terminated: %w", id, errdefs.ErrConflict)
	default:
	}
	if len(spec.Argv) == 0 || spec.Argv[0] == "" {
		return nil, fmt.Errorf("enter container %s: no command: %w", id, errdefs.ErrInvalid)
	}
	ectx, cancel := context.WithTimeout(ctx, engineTimeout)
	defer cancel()
	s, err := c.eng.ExecSession(ectx, ct.name, engine.SessionOptions{
		Cmd: spec.Argv, Env: spec.Env, Dir: c.opts.SandboxDirectory, Tty: spec.TTY, Rows: spec.Rows, Cols: spec.Cols,
	})
	if err != nil {
		return nil, c.engineErr(ctx, err)
	}
	c.log.Info("entered container", "container_id", id, "name", ct.name, "command", spec.Argv[0], "tty", spec.TTY)
	return entered{s}, nil
}

// entered is an exec session, waited for as a wait(2) status.
type entered struct{ *engine.Session }

// Wait turns dockerd's exit code into a wait status. A command killed by
// a signal has the code 128+signal, which a shell shows alike.
func (e entered) Wait(ctx context.Context) (int, error) {
	code, err := e.Session.Wait(ctx)
	if err != nil {
		return -1, err
	}
	return (code & 0xff) << 8, nil
}

var _ containerizer.InputAttacher = (*Containerizer)(nil)

// AttachInput implements containerizer.InputAttacher: the input of a
// container run with tty_info (a TTY and an open stdin), through
// dockerd's attach.
func (c *Containerizer) AttachInput(ctx context.Context, id string) (containerizer.Input, error) {
	ct, err := c.get(id)
	if err != nil {
		return nil, err
	}
	select {
	case <-ct.done:
		return nil, fmt.Errorf("container %s has terminated: %w", id, errdefs.ErrConflict)
	default:
	}
	if !ct.tty {
		return nil, fmt.Errorf("container %s was launched without a TTY (tty_info): it takes no input: %w", id, errdefs.ErrConflict)
	}
	ectx, cancel := context.WithTimeout(ctx, engineTimeout)
	defer cancel()
	in, err := c.eng.AttachInput(ectx, ct.name)
	if err != nil {
		return nil, c.engineErr(ctx, err)
	}
	c.log.Info("attached to a container's input", "container_id", id, "name", ct.name)
	return in, nil
}
