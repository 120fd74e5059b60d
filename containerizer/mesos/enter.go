package mesos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"github.com/mesolite/mesolite/containerizer"
	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/isolation"
)

var _ containerizer.Enterer = (*Containerizer)(nil)

// Enter implements containerizer.Enterer: the command joins the
// namespaces of the container's root process (its init with a pid
// namespace, else its executor) and its cgroup, through a fresh init
// (isolation.Enter), as the task's user, in the sandbox, with the task's
// environment and its own variables over it.
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
	var user *isolation.User
	if spec.User != "" {
		if user, err = isolation.LookupUser(spec.User); err != nil {
			return nil, err
		}
	}
	e := &entered{tty: spec.TTY}
	var in, out, errOut *os.File // the command's ends
	if spec.TTY {
		master, slave, err := isolation.OpenPTY()
		if err != nil {
			return nil, err
		}
		if spec.Rows > 0 && spec.Cols > 0 {
			_ = isolation.SetWinsize(master, spec.Rows, spec.Cols)
		}
		if user != nil {
			// The terminal is the user's, as a login's is.
			_ = slave.Chown(int(user.UID), -1)
		}
		e.term, e.stdout = master, master
		in, out, errOut = slave, slave, slave
	} else {
		pipes, err := newPipes()
		if err != nil {
			return nil, err
		}
		e.stdin, e.stdout, e.stderr = pipes[0].w, pipes[1].r, pipes[2].r
		in, out, errOut = pipes[0].r, pipes[1].w, pipes[2].w
	}
	cg := ct.cg
	if n := c.getNested(spec.Nested); spec.Nested != "" && n != nil && n.parent == id {
		cg = n.cg
	}
	p, err := isolation.Enter(ctx, c.opts.Launcher, isolation.EnterSpec{
		Pid: ct.proc.Pid(), StartTime: ct.proc.Handle().StartTime,
		Argv: spec.Argv, Env: mergeEnv(spec.TaskEnv, spec.Env), Dir: spec.SandboxDir, User: user,
		Cgroup: cg, Stdin: in, Stdout: out, Stderr: errOut, TTY: spec.TTY,
	})
	// The command holds its ends now (or never will).
	for _, f := range []*os.File{in, out, errOut} {
		f.Close()
	}
	if err != nil {
		e.Close()
		if errors.Is(err, errdefs.ErrNotFound) {
			return nil, fmt.Errorf("container %s: %w: %w", id, errdefs.ErrConflict, err)
		}
		return nil, fmt.Errorf("enter container %s: %w", id, err)
	}
	e.proc = p
	c.log.Info("entered container", "container_id", id, "pid", p.Pid(), "command", spec.Argv[0], "tty", spec.TTY, "user", spec.User)
	return e, nil
}

type pipe struct{ r, w *os.File }

func newPipes() ([3]pipe, error) {
	var ps [3]pipe
	for i := range ps {
		r, w, err := os.Pipe()
		if err != nil {
			for _, p := range ps[:i] {
				p.r.Close()
				p.w.Close()
			}
			return ps, err
		}
		ps[i] = pipe{r, w}
	}
	return ps, nil
}

// mergeEnv is base with over's variables replacing those of the same
// name, in base's order, then over's new ones.
func mergeEnv(base, over []string) []string {
	idx := map[string]int{}
	out := make([]string, 0, len(base)+len(over))
	for _, kv := range append(append([]string(nil), base...), over...) {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := idx[k]; ok {
			out[i] = kv
			continue
		}
		idx[k] = len(out)
		out = append(out, kv)
	}
	return out
}

// entered is a command started by Enter.
type entered struct {
	proc isolation.Process
	tty  bool
	// With a terminal: term is its master side, both input and output.
	// Without: stdin, stdout and stderr are pipes.
	term                  *os.File
	stdin, stdout, stderr *os.File
}

func (e *entered) Stdin() io.WriteCloser {
	if e.tty {
		return ttyInput{e.term}
	}
	return e.stdin
}

func (e *entered) Stdout() io.Reader { return e.stdout }

func (e *entered) Stderr() io.Reader {
	if e.tty {
		return nil
	}
	return e.stderr
}

func (e *entered) Resize(ctx context.Context, rows, cols uint16) error {
	if !e.tty {
		return fmt.Errorf("resize: the command has no terminal: %w", errdefs.ErrInvalid)
	}
	return isolation.SetWinsize(e.term, rows, cols)
}

func (e *entered) Signal(ctx context.Context, sig syscall.Signal) error {
	err := e.proc.Signal(sig)
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}

func (e *entered) Wait(ctx context.Context) (int, error) {
	st, err := e.proc.Wait(ctx)
	if err != nil {
		return -1, err
	}
	if !st.Known {
		return -1, nil
	}
	return st.WaitStatus(), nil
}

func (e *entered) Close() error {
	for _, f := range []*os.File{e.term, e.stdin, e.stdout, e.stderr} {
		if f != nil {
			f.Close()
		}
	}
	return nil
}

// ttyInput writes to a terminal; its Close is the terminal's end of file
// (^D, which a reader in canonical mode sees as EOF), not the terminal's
// close, which would hang the command up.
type ttyInput struct{ f *os.File }

func (t ttyInput) Write(p []byte) (int, error) { return t.f.Write(p) }
func (t ttyInput) Close() error {
	_, err := t.f.Write([]byte{4})
	return err
}
