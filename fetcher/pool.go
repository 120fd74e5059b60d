package fetcher

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/mesolite/mesolite/internal/idle"
)

// childProc is a started fetch child waiting for its request on stdin,
// with the read ends of its result and log pipes.
type childProc struct {
	cmd     *exec.Cmd
	stdin   *os.File
	resultR *os.File
	logR    *os.File
	dec     *json.Decoder // reads resultR
	// idle: moved to SCHED_IDLE by a ChildPool while it waits; wake gives
	// it normal scheduling before it is sent a request.
	idle bool

	// groups are the process groups of helpers the child started in groups
	// of their own (the Hadoop client), killed with it.
	mu     sync.Mutex
	groups []int
}

// addGroup records a helper's process group, as the child reported it.
// The report is believed only for a direct child of this child that leads
// its own group: a child run as a task user must not get the agent to kill
// anything else. (In a pid namespace the reported pid is the namespace's,
// matches nothing here, and is not needed: the kernel kills the helpers.)
func (c *childProc) addGroup(pid int) {
	if pid <= 1 || !isGroupLeaderChildOf(pid, c.cmd.Process.Pid) {
		return
	}
	c.mu.Lock()
	c.groups = append(c.groups, pid)
	c.mu.Unlock()
}

// isGroupLeaderChildOf reads /proc/<pid>/stat: is pid a child of parent
// and the leader of its process group?
func isGroupLeaderChildOf(pid, parent int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The command name is in parentheses and may hold anything; the
	// fields after its last ')' are: state ppid pgrp ...
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return false
	}
	var state string
	var ppid, pgrp int
	if _, err := fmt.Sscan(string(b[i+1:]), &state, &ppid, &pgrp); err != nil {
		return false
	}
	return ppid == parent && pgrp == pid
}

// startChild starts `Binary Args... --result_fd=3` in its own process
// group, as cred when not nil, with broker (when not nil) as its
// --cache_fd. It reads its request from stdin, so it can be started before
// there is one.
//
// A child that is to run as cred is exec'd as root and told --run_as: it
// turns PR_SET_DUMPABLE off and only then takes cred itself. Exec'd as the
// user, it would be open to that user's other processes (ptrace,
// pidfd_getfd of its cache socket) until its runtime had started.
//
// As root it also gets a pid namespace of its own, of which it is init:
// when it is killed the kernel kills everything it started, whatever
// process group or session those put themselves in.
func startChild(opts Options, cred *syscall.Credential, broker *os.File) (*childProc, error) {
	var files []*os.File
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	pipe := func() (r, w *os.File, err error) {
		if r, w, err = os.Pipe(); err == nil {
			files = append(files, r, w)
		}
		return r, w, err
	}
	stdinR, stdinW, err := pipe()
	if err != nil {
		return nil, err
	}
	resultR, resultW, err := pipe()
	if err != nil {
		closeAll()
		return nil, err
	}
	logR, logW, err := pipe()
	if err != nil {
		closeAll()
		return nil, err
	}
	args := append(append([]string{}, opts.Args...), "--result_fd=3")
	extra := []*os.File{resultW}
	if broker != nil {
		args = append(args, "--cache_fd=4")
		extra = append(extra, broker)
	}
	if cred != nil {
		args = append(args, "--run_as="+formatRunAs(cred))
	}
	newCmd := func(clone uintptr) *exec.Cmd {
		cmd := exec.Command(opts.Binary, args...)
		cmd.Env = opts.Env
		cmd.Stdin = stdinR
		cmd.Stderr = logW
		cmd.ExtraFiles = extra
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Cloneflags: clone}
		// A grandchild (the Hadoop client's JVM) may keep the pipes open
		// after the child exits; do not wait on it for ever.
		cmd.WaitDelay = 5 * time.Second
		return cmd
	}
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		cmd = newCmd(syscall.CLONE_NEWPID)
		err = cmd.Start()
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOSPC) {
			// No pid namespaces here (a restricted container): the process
			// group kill still covers the child and its helpers.
			cmd = nil
		}
	}
	if cmd == nil {
		cmd = newCmd(0)
		err = cmd.Start()
	}
	stdinR.Close()
	resultW.Close()
	logW.Close()
	if err != nil {
		stdinW.Close()
		resultR.Close()
		logR.Close()
		return nil, err
	}
	return &childProc{cmd: cmd, stdin: stdinW, resultR: resultR, logR: logR, dec: json.NewDecoder(resultR)}, nil
}

// waitReady reads the child's "ready" event: its runtime is up and it
// waits for the request.
func (c *childProc) waitReady() error {
	var ev event
	if err := c.dec.Decode(&ev); err != nil {
		return fmt.Errorf("fetch child %d did not come up: %w", c.cmd.Process.Pid, err)
	}
	if ev.Type != "ready" {
		return fmt.Errorf("fetch child %d: unexpected %q event", c.cmd.Process.Pid, ev.Type)
	}
	return nil
}

// wake gives a child started idle normal scheduling, all its threads;
// once more, off the fetch's path, after it has the request, for a thread
// created in between.
func (c *childProc) wake() (again func(), err error) {
	if !c.idle {
		return func() {}, nil
	}
	pid := c.cmd.Process.Pid
	if err := idle.Leave(pid); err != nil {
		return nil, err
	}
	return func() { go func() { _ = idle.Leave(pid) }() }, nil
}

// send writes the request and closes stdin.
func (c *childProc) send(input []byte) error {
	_, err := c.stdin.Write(input)
	if cerr := c.stdin.Close(); err == nil {
		err = cerr
	}
	return err
}

// kill ends the child and whatever it started: first the helpers' groups,
// checked again so that a recycled pid is never hit, while the child is
// still their parent; then the child's own group.
func (c *childProc) kill() {
	pid := c.cmd.Process.Pid
	c.mu.Lock()
	groups := c.groups
	c.mu.Unlock()
	for _, g := range groups {
		if isGroupLeaderChildOf(g, pid) {
			_ = syscall.Kill(-g, syscall.SIGKILL)
		}
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}

// discard kills an unused child and reaps it.
func (c *childProc) discard() {
	c.kill()
	c.stdin.Close()
	_ = c.cmd.Wait()
	c.resultR.Close()
	c.logR.Close()
}

// ChildPool keeps fetch children started ahead of need. A child's start is a
// whole start of the agent's binary (tens of milliseconds of CPU); started
// early, a fetch that hits the cache costs what the fetch itself costs. Only
// fetches that run as the agent's own user use it: a task user's fetch
// needs a child started with that user's credentials.
type ChildPool struct {
	opts Options
	size int

	mu      sync.Mutex
	idle    []*childProc
	filling int
	closed  bool
}

// NewChildPool returns a pool of size children of opts.Binary, opts.Args
// and opts.Env, none started yet: call Fill.
func NewChildPool(opts Options, size int) *ChildPool {
	return &ChildPool{opts: opts, size: size}
}

// Fill starts children in the background until size are waiting.
func (p *ChildPool) Fill() {
	p.mu.Lock()
	need := p.size - len(p.idle) - p.filling
	if p.closed || need <= 0 {
		p.mu.Unlock()
		return
	}
	p.filling += need
	p.mu.Unlock()
	for range need {
		go func() {
			c, err := startChild(p.opts, nil, nil)
			if err == nil {
				// At once, while its runtime starts; and again once it is
				// ready, for threads created meanwhile by one not yet moved.
				c.idle = idle.Park(c.cmd.Process.Pid)
				if err = c.waitReady(); err != nil {
					c.discard()
				} else if c.idle {
					_ = idle.Enter(c.cmd.Process.Pid)
				}
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			p.filling--
			switch {
			case err != nil:
				if p.opts.Logger != nil {
					p.opts.Logger.Warn("cannot prestart a fetch child", "component", "fetcher", "error", err)
				}
			case p.closed:
				go c.discard()
			default:
				p.idle = append(p.idle, c)
			}
		}()
	}
}

// refillDelay is how long after taking a child the pool starts its
// replacement: not during the fetch it was taken for and the launch that
// follows.
const refillDelay = 50 * time.Millisecond

// refill is Fill, refillDelay from now.
func (p *ChildPool) refill() { time.AfterFunc(refillDelay, p.Fill) }

func (p *ChildPool) take() *childProc {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) == 0 {
		return nil
	}
	c := p.idle[0]
	p.idle = p.idle[1:]
	return c
}

// Close stops the waiting children.
func (p *ChildPool) Close() error {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	var errs []error
	for _, c := range idle {
		c.discard()
		if c.cmd.ProcessState == nil {
			errs = append(errs, fmt.Errorf("fetch child %d not reaped", c.cmd.Process.Pid))
		}
	}
	return errors.Join(errs...)
}
