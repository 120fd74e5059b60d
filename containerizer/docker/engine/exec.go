package engine

import (
	"context"
	"fmt"
	"io"
	"sync"
	"syscall"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/mesolite/mesolite/errdefs"
	"golang.org/x/sys/unix"
)

// SessionOptions describe an interactive command run in a running
// container: `docker exec -i [-t]`.
type SessionOptions struct {
	Cmd  []string
	Env  []string // NAME=VALUE added to the container's
	User string   // empty: the container's user
	Dir  string   // empty: the container's working directory
	// Tty gives the command a terminal of Rows x Cols (0: dockerd's
	// default); its stdout and stderr are then one stream.
	Tty        bool
	Rows, Cols uint16
}

// Session is a command started by ExecSession, attached: its stdin is
// written to dockerd's hijacked connection, its output read from it.
type Session struct {
	e    *Engine
	id   string
	name string
	tty  bool
	hj   types.HijackedResponse

	stdout, stderr io.Reader
	outDone        chan struct{} // the output reached its end
	closeOnce      sync.Once
}

// ExecSession starts opts.Cmd in the running container name, attached to
// its stdin, stdout and stderr. Errors: errdefs.ErrNotFound (no such
// container), errdefs.ErrConflict (not running), errdefs.ErrUnavailable.
func (e *Engine) ExecSession(ctx context.Context, name string, opts SessionOptions) (*Session, error) {
	var size *[2]uint
	if opts.Tty && opts.Rows > 0 && opts.Cols > 0 {
		size = &[2]uint{uint(opts.Rows), uint(opts.Cols)}
	}
	created, err := e.cli.ContainerExecCreate(ctx, name, container.ExecOptions{
		Cmd: opts.Cmd, Env: opts.Env, User: opts.User, WorkingDir: opts.Dir, Tty: opts.Tty, ConsoleSize: size,
		AttachStdin: true, AttachStdout: true, AttachStderr: true,
	})
	if err != nil {
		return nil, e.wrap("exec in container "+name, err)
	}
	hj, err := e.cli.ContainerExecAttach(ctx, created.ID, container.ExecAttachOptions{Tty: opts.Tty, ConsoleSize: size})
	if err != nil {
		return nil, e.wrap("attach to exec in container "+name, err)
	}
	s := &Session{e: e, id: created.ID, name: name, tty: opts.Tty, hj: hj, outDone: make(chan struct{})}
	if opts.Tty {
		// One raw stream, the terminal's.
		r, w := io.Pipe()
		s.stdout = r
		go func() {
			_, err := io.Copy(w, hj.Reader)
			w.CloseWithError(err)
			close(s.outDone)
		}()
		return s, nil
	}
	outR, outW := io.Pipe()
	errR, errW := io.Pipe()
	s.stdout, s.stderr = outR, errR
	go func() {
		_, err := stdcopy.StdCopy(outW, errW, hj.Reader)
		outW.CloseWithError(err)
		errW.CloseWithError(err)
		close(s.outDone)
	}()
	return s, nil
}

// Stdin is the command's input; Close half-closes the connection, which
// dockerd passes on as the end of the input (with a terminal: writes the
// terminal's EOF character, ^D, as a closed terminal would hang up).
func (s *Session) Stdin() io.WriteCloser { return sessionInput{s} }

type sessionInput struct{ s *Session }

func (in sessionInput) Write(p []byte) (int, error) { return in.s.hj.Conn.Write(p) }

func (in sessionInput) Close() error {
	if in.s.tty {
		_, err := in.s.hj.Conn.Write([]byte{4})
		return err
	}
	return in.s.hj.CloseWrite()
}

// Stdout is the command's output (with a terminal, the terminal's).
func (s *Session) Stdout() io.Reader { return s.stdout }

// Stderr is the command's error output; nil with a terminal.
func (s *Session) Stderr() io.Reader {
	if s.tty {
		return nil
	}
	return s.stderr
}

// Resize changes the terminal's size.
func (s *Session) Resize(ctx context.Context, rows, cols uint16) error {
	if !s.tty {
		return fmt.Errorf("resize: the command has no terminal: %w", errdefs.ErrInvalid)
	}
	return s.e.wrap("resize exec terminal", s.e.cli.ContainerExecResize(ctx, s.id, container.ResizeOptions{Height: uint(rows), Width: uint(cols)}))
}

// Signal sends sig to the command: dockerd has no call for it, so it goes
// to the process dockerd reports, on this host (and, for SIGKILL, to its
// process group when it leads one: a terminal's session does). It does
// nothing once the command ended.
func (s *Session) Signal(ctx context.Context, sig syscall.Signal) error {
	ins, err := s.e.cli.ContainerExecInspect(ctx, s.id)
	if err != nil {
		return s.e.wrap("inspect exec in container "+s.name, err)
	}
	if !ins.Running || ins.Pid <= 0 {
		return nil
	}
	// dockerd has not reaped it (it reports it running), so the pid is
	// still the command's.
	if sig == unix.SIGKILL {
		if pgid, err := unix.Getpgid(ins.Pid); err == nil && pgid == ins.Pid {
			_ = unix.Kill(-ins.Pid, sig)
		}
	}
	if err := unix.Kill(ins.Pid, sig); err != nil && err != unix.ESRCH {
		return fmt.Errorf("signal exec pid %d in container %s: %w", ins.Pid, s.name, err)
	}
	return nil
}

// Wait returns the command's exit code once it ended: after its output
// ended, as dockerd records it a moment later.
func (s *Session) Wait(ctx context.Context) (int, error) {
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-s.outDone:
	}
	return s.e.execExitCode(ctx, s.id, s.name)
}

// Close closes the connection to dockerd.
func (s *Session) Close() error {
	s.closeOnce.Do(func() { s.hj.Close() })
	return nil
}

// execExitCode polls dockerd until the exec id no longer runs, and
// returns its exit code.
func (e *Engine) execExitCode(ctx context.Context, id, name string) (int, error) {
	for wait := 5 * time.Millisecond; ; wait = min(wait*2, 200*time.Millisecond) {
		ins, err := e.cli.ContainerExecInspect(ctx, id)
		if err != nil {
			return 0, e.wrap("inspect exec in container "+name, err)
		}
		if !ins.Running {
			return ins.ExitCode, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(wait):
		}
	}
}
