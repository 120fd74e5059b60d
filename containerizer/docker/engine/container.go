package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/mesolite/mesolite/errdefs"
)

// Create creates (does not start) a container named name. Errors:
// errdefs.ErrConflict when the name is taken, errdefs.ErrNotFound when the
// image or a named network is missing, errdefs.ErrUnavailable.
func (e *Engine) Create(ctx context.Context, name string, cfg *container.Config, hc *container.HostConfig, nc *network.NetworkingConfig) (string, error) {
	resp, err := e.cli.ContainerCreate(ctx, cfg, hc, nc, nil, name)
	if err != nil {
		return "", e.wrap("create container "+name, err)
	}
	return resp.ID, nil
}

// Start starts a created container.
func (e *Engine) Start(ctx context.Context, name string) error {
	return e.wrap("start container "+name, e.cli.ContainerStart(ctx, name, container.StartOptions{}))
}

// Attach copies the container's stdout and stderr into the writers until
// its output ends (the container exited) or ctx ends. Attached before Start,
// nothing the container writes is missed. The returned channel yields the
// copy's result once and is then closed.
func (e *Engine) Attach(ctx context.Context, name string, tty bool, stdout, stderr io.Writer) (<-chan error, error) {
	resp, err := e.cli.ContainerAttach(ctx, name, container.AttachOptions{Stream: true, Stdout: true, Stderr: true})
	if err != nil {
		return nil, e.wrap("attach to container "+name, err)
	}
	done := make(chan error, 1)
	copied := make(chan struct{})
	go func() {
		// A hijacked connection ignores ctx; close it when ctx ends.
		select {
		case <-ctx.Done():
			resp.Close()
		case <-copied:
		}
	}()
	go func() {
		defer close(done)
		defer resp.Close()
		defer close(copied)
		var err error
		if tty {
			_, err = io.Copy(stdout, resp.Reader)
		} else {
			_, err = stdcopy.StdCopy(stdout, stderr, resp.Reader)
		}
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		done <- err
	}()
	return done, nil
}

// FollowLogs copies the container's output since since into the writers
// until the container stops or ctx ends. It is how output is picked up
// again after an agent restart, when the original attach is gone.
func (e *Engine) FollowLogs(ctx context.Context, name string, since time.Time, tty bool, stdout, stderr io.Writer) error {
	opts := container.LogsOptions{ShowStdout: true, ShowStderr: true, Follow: true}
	if !since.IsZero() {
		opts.Since = fmt.Sprintf("%d.%09d", since.Unix(), since.Nanosecond())
	}
	rc, err := e.cli.ContainerLogs(ctx, name, opts)
	if err != nil {
		return e.wrap("follow logs of container "+name, err)
	}
	defer rc.Close()
	if tty {
		_, err = io.Copy(stdout, rc)
	} else {
		_, err = stdcopy.StdCopy(stdout, stderr, rc)
	}
	return err
}

// Exit is how a container ended.
type Exit struct {
	Code       int
	OOMKilled  bool
	Error      string // dockerd's own error (failed to start), if any
	FinishedAt time.Time
	// MemoryLimit is the container's memory limit in bytes (0: none), for
	// messages about OOM kills.
	MemoryLimit int64
}

// OOMMessage is the status message of a container the kernel OOM-killed,
// with its memory limit in bytes (0: none).
func OOMMessage(name string, limit int64) string {
	if limit <= 0 {
		return fmt.Sprintf("Memory limit exceeded: container %s was killed by the kernel OOM killer", name)
	}
	return fmt.Sprintf("Memory limit exceeded: container %s was killed by the kernel OOM killer (limit %d MB)", name, limit>>20)
}

// Wait blocks until the container is not running and returns how it
// ended. Errors: errdefs.ErrNotFound (gone), errdefs.ErrUnavailable (dockerd
// went away: wait again later), ctx's error.
func (e *Engine) Wait(ctx context.Context, name string) (Exit, error) {
	respc, errc := e.cli.ContainerWait(ctx, name, container.WaitConditionNotRunning)
	select {
	case <-respc:
	case err := <-errc:
		if ctx.Err() != nil {
			return Exit{}, ctx.Err()
		}
		return Exit{}, e.wrap("wait for container "+name, err)
	}
	return e.ExitOf(ctx, name)
}

// ExitOf reads how a container that is not running ended.
func (e *Engine) ExitOf(ctx context.Context, name string) (Exit, error) {
	ins, err := e.Inspect(ctx, name)
	if err != nil {
		return Exit{}, err
	}
	return exitOf(ins), nil
}

func exitOf(ins container.InspectResponse) Exit {
	var x Exit
	if ins.State != nil {
		x.Code = ins.State.ExitCode
		x.OOMKilled = ins.State.OOMKilled
		x.Error = ins.State.Error
		x.FinishedAt, _ = time.Parse(time.RFC3339Nano, ins.State.FinishedAt)
	}
	if ins.HostConfig != nil {
		x.MemoryLimit = ins.HostConfig.Memory
	}
	return x
}

// Signal sends sig ("SIGTERM", "KILL", "15") to the container's init
// process. A container that is not running is not an error.
func (e *Engine) Signal(ctx context.Context, name, sig string) error {
	err := e.wrap("signal container "+name, e.cli.ContainerKill(ctx, name, sig))
	if err != nil && isNotRunning(err) {
		return nil
	}
	return err
}

// Stop sends sig (SIGTERM when empty), gives the container grace to exit,
// then kills it, and returns once it is not running. Unlike `docker stop`
// the grace period is not rounded to seconds. A container that is not
// running or does not exist is not an error.
func (e *Engine) Stop(ctx context.Context, name, sig string, grace time.Duration) error {
	if sig == "" {
		sig = "SIGTERM"
	}
	if grace > 0 {
		if err := e.Signal(ctx, name, sig); err != nil {
			if IsNotFound(err) {
				return nil
			}
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, grace)
		_, err := e.Wait(wctx, name)
		cancel()
		switch {
		case err == nil:
			return nil
		case IsNotFound(err):
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case !errors.Is(err, context.DeadlineExceeded):
			return err
		}
	}
	if err := e.Signal(ctx, name, "SIGKILL"); err != nil {
		if IsNotFound(err) {
			return nil
		}
		return err
	}
	if _, err := e.Wait(ctx, name); err != nil && !IsNotFound(err) {
		return err
	}
	return nil
}

// isNotRunning recognises dockerd's 409 for signalling a stopped container.
func isNotRunning(err error) bool { return errors.Is(err, errdefs.ErrConflict) }

// Remove removes the container and its anonymous volumes, killing it if it
// still runs. A container that does not exist is not an error.
func (e *Engine) Remove(ctx context.Context, name string) error {
	err := e.wrap("remove container "+name, e.cli.ContainerRemove(ctx, name, container.RemoveOptions{Force: true, RemoveVolumes: true}))
	if err != nil && (IsNotFound(err) || isRemovalInProgress(err)) {
		return nil
	}
	return err
}

func isRemovalInProgress(err error) bool { return errors.Is(err, errdefs.ErrConflict) }

// Inspect returns dockerd's view of a container.
func (e *Engine) Inspect(ctx context.Context, name string) (container.InspectResponse, error) {
	ins, err := e.cli.ContainerInspect(ctx, name)
	return ins, e.wrap("inspect container "+name, err)
}

// InspectRaw is Inspect plus the JSON as dockerd sent it (what `docker
// inspect` prints), which Mesos puts in TASK_RUNNING's data.
func (e *Engine) InspectRaw(ctx context.Context, name string) (container.InspectResponse, []byte, error) {
	ins, raw, err := e.cli.ContainerInspectWithRaw(ctx, name, false)
	return ins, raw, e.wrap("inspect container "+name, err)
}

// List returns every container (running or not) carrying all of labels.
func (e *Engine) List(ctx context.Context, labels map[string]string) ([]container.Summary, error) {
	args := filters.NewArgs()
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args.Add("label", k+"="+labels[k])
	}
	cs, err := e.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: args})
	return cs, e.wrap("list containers", err)
}

// Stats reads one sample of the container's resource usage.
func (e *Engine) Stats(ctx context.Context, name string) (container.StatsResponse, error) {
	var s container.StatsResponse
	r, err := e.cli.ContainerStatsOneShot(ctx, name)
	if err != nil {
		return s, e.wrap("stats of container "+name, err)
	}
	defer r.Body.Close()
	if err := json.NewDecoder(r.Body).Decode(&s); err != nil {
		return s, e.wrap("stats of container "+name, fmt.Errorf("decode: %w", err))
	}
	return s, nil
}

// Update changes a running container's limits.
func (e *Engine) Update(ctx context.Context, name string, res container.Resources) error {
	_, err := e.cli.ContainerUpdate(ctx, name, container.UpdateConfig{Resources: res})
	return e.wrap("update container "+name, err)
}

// IPAddresses lists the container's addresses on its networks, IPv4 first,
// sorted by network name so the order is stable.
func IPAddresses(ins container.InspectResponse) (v4, v6 []string) {
	if ins.NetworkSettings == nil {
		return nil, nil
	}
	names := make([]string, 0, len(ins.NetworkSettings.Networks))
	for n := range ins.NetworkSettings.Networks {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		ep := ins.NetworkSettings.Networks[n]
		if ep == nil {
			continue
		}
		if ep.IPAddress != "" {
			v4 = append(v4, ep.IPAddress)
		}
		if ep.GlobalIPv6Address != "" {
			v6 = append(v6, ep.GlobalIPv6Address)
		}
	}
	return v4, v6
}

// ExecOptions describe a command run inside a running container.
type ExecOptions struct {
	Cmd  []string
	Env  []string // NAME=VALUE added to the container's
	User string   // empty: the container's user
	Dir  string   // empty: the container's working directory
	// Stdout and Stderr receive the command's output; nil discards it.
	Stdout, Stderr io.Writer
}

// Exec runs a command in the running container name, as `docker exec`
// does, and returns its exit status once it ended. When ctx ends first the
// wait is abandoned (dockerd has no call to kill an exec; the command dies
// with the container) and ctx's error returned.
func (e *Engine) Exec(ctx context.Context, name string, opts ExecOptions) (int, error) {
	created, err := e.cli.ContainerExecCreate(ctx, name, container.ExecOptions{
		Cmd: opts.Cmd, Env: opts.Env, User: opts.User, WorkingDir: opts.Dir,
		AttachStdout: true, AttachStderr: true,
	})
	if err != nil {
		return 0, e.wrap("exec in container "+name, err)
	}
	hj, err := e.cli.ContainerExecAttach(ctx, created.ID, container.ExecAttachOptions{})
	if err != nil {
		return 0, e.wrap("attach to exec in container "+name, err)
	}
	defer hj.Close()
	stdout, stderr := opts.Stdout, opts.Stderr
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	copied := make(chan error, 1)
	go func() {
		_, err := stdcopy.StdCopy(stdout, stderr, hj.Reader)
		copied <- err
	}()
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case err := <-copied:
		if err != nil {
			return 0, fmt.Errorf("read exec output in container %s: %w", name, err)
		}
	}
	// The output ends a moment before dockerd records the exit.
	return e.execExitCode(ctx, created.ID, name)
}

// Input is an attachment to a running container's input (its terminal).
type Input struct {
	e    *Engine
	name string
	hj   types.HijackedResponse
}

// AttachInput attaches to the input of container name, which must have
// been created with a terminal and an open stdin (OpenStdin).
func (e *Engine) AttachInput(ctx context.Context, name string) (*Input, error) {
	hj, err := e.cli.ContainerAttach(ctx, name, container.AttachOptions{Stream: true, Stdin: true})
	if err != nil {
		return nil, e.wrap("attach to the input of container "+name, err)
	}
	return &Input{e: e, name: name, hj: hj}, nil
}

// Write feeds the container's terminal.
func (in *Input) Write(p []byte) (int, error) { return in.hj.Conn.Write(p) }

// Close writes the terminal's end of file (^D) and detaches: the
// container's stdin stays open for the next attachment.
func (in *Input) Close() error {
	_, err := in.hj.Conn.Write([]byte{4})
	in.hj.Close()
	return err
}

// Detach ends the attachment without writing anything.
func (in *Input) Detach() { in.hj.Close() }

// Resize changes the container's terminal size.
func (in *Input) Resize(ctx context.Context, rows, cols uint16) error {
	return in.e.wrap("resize the terminal of container "+in.name,
		in.e.cli.ContainerResize(ctx, in.name, container.ResizeOptions{Height: uint(rows), Width: uint(cols)}))
}
