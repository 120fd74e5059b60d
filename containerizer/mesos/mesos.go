// Package mesos is the mesos containerizer: it runs an executor as a
// process on the host, under the isolation the agent's --isolation flag
// asks for (cgroups and namespaces through package isolation, or plain
// posix processes that only report usage).
package mesos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	mesosv1 "github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/containerizer"
	"github.com/mesolite/mesolite/errdefs"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// Name is this containerizer's name in --containerizers and in handles.
const Name = "mesos"

// Options configure the containerizer.
type Options struct {
	Logger *slog.Logger
}

// Containerizer runs executors as host processes.
type Containerizer struct {
	opts Options
	log  *slog.Logger

	mu         sync.Mutex
	containers map[string]*container
}

type container struct {
	id      string
	pid     int
	started uint64 // process start time (clock ticks), to tell a reused pid apart
	done    chan struct{}
	term    containerizer.Termination
}

type handleData struct {
	StartTime uint64 `json:"start_time"`
}

// New returns a mesos containerizer.
func New(opts Options) *Containerizer {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Containerizer{opts: opts, log: opts.Logger.With("component", "mesos-containerizer"), containers: map[string]*container{}}
}

func commandArgv(ci *mesosv1.CommandInfo) ([]string, error) {
	if ci == nil {
		return nil, fmt.Errorf("executor has no command: %w", errdefs.ErrInvalid)
	}
	if ci.Shell == nil || ci.GetShell() {
		if ci.GetValue() == "" {
			return nil, fmt.Errorf("executor command is empty: %w", errdefs.ErrInvalid)
		}
		return []string{"/bin/sh", "-c", ci.GetValue()}, nil
	}
	if ci.GetValue() == "" {
		return nil, fmt.Errorf("executor command has no value: %w", errdefs.ErrInvalid)
	}
	args := ci.GetArguments()
	if len(args) == 0 {
		args = []string{ci.GetValue()}
	}
	return append([]string{ci.GetValue()}, args[1:]...), nil
}

// Launch implements containerizer.Containerizer.
func (c *Containerizer) Launch(ctx context.Context, spec containerizer.LaunchSpec) (containerizer.Handle, error) {
	ci := spec.Executor.GetContainer()
	if spec.Task != nil && spec.Task.GetContainer() != nil {
		ci = spec.Task.GetContainer()
	}
	// A nil ContainerInfo reads as DOCKER: proto2 defaults an enum to its first value.
	if ci != nil && ci.GetType() == mesosv1.ContainerInfo_DOCKER {
		return containerizer.Handle{}, containerizer.ErrNotSupported
	}
	c.mu.Lock()
	if _, dup := c.containers[spec.ContainerID]; dup {
		c.mu.Unlock()
		return containerizer.Handle{}, fmt.Errorf("container %s: %w", spec.ContainerID, errdefs.ErrConflict)
	}
	c.mu.Unlock()
	argv, err := commandArgv(spec.Executor.GetCommand())
	if err != nil {
		return containerizer.Handle{}, err
	}
	stdout, err := os.OpenFile(spec.StdoutPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return containerizer.Handle{}, fmt.Errorf("%w: open stdout: %w", containerizer.ErrLaunchFailed, err)
	}
	defer stdout.Close()
	stderr, err := os.OpenFile(spec.StderrPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return containerizer.Handle{}, fmt.Errorf("%w: open stderr: %w", containerizer.ErrLaunchFailed, err)
	}
	defer stderr.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = spec.Env
	cmd.Dir = spec.SandboxDir
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// Its own session: the executor survives an agent restart and its whole
	// process group can be killed at once.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return containerizer.Handle{}, fmt.Errorf("%w: start executor %q: %w", containerizer.ErrLaunchFailed, argv[0], err)
	}
	ct := &container{id: spec.ContainerID, pid: cmd.Process.Pid, started: startTime(cmd.Process.Pid), done: make(chan struct{})}
	c.mu.Lock()
	c.containers[spec.ContainerID] = ct
	c.mu.Unlock()
	go func() {
		err := cmd.Wait()
		status := 0
		if err != nil {
			if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
				status = int(ws)
			} else {
				status = -1
			}
		}
		// Whatever the executor left in its session goes with it.
		_ = syscall.Kill(-ct.pid, syscall.SIGKILL)
		ct.term = containerizer.Termination{ExitStatus: status}
		close(ct.done)
	}()
	data, _ := json.Marshal(handleData{StartTime: ct.started})
	return containerizer.Handle{ContainerID: spec.ContainerID, Containerizer: Name, Pid: ct.pid, Data: data}, nil
}

func (c *Containerizer) get(id string) (*container, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ct := c.containers[id]
	if ct == nil {
		return nil, fmt.Errorf("container %s: %w: %w", id, containerizer.ErrUnknownContainer, errdefs.ErrNotFound)
	}
	return ct, nil
}

// Wait implements containerizer.Containerizer.
func (c *Containerizer) Wait(ctx context.Context, id string) (containerizer.Termination, error) {
	ct, err := c.get(id)
	if err != nil {
		return containerizer.Termination{}, err
	}
	select {
	case <-ctx.Done():
		return containerizer.Termination{}, ctx.Err()
	case <-ct.done:
		return ct.term, nil
	}
}

// Update implements containerizer.Containerizer; posix isolation has no limits to change.
func (c *Containerizer) Update(ctx context.Context, id string, rs []*mesosv1.Resource) error {
	_, err := c.get(id)
	return err
}

// Usage implements containerizer.Containerizer from /proc of the executor's session.
func (c *Containerizer) Usage(ctx context.Context, id string) (*mesosv1.ResourceStatistics, error) {
	ct, err := c.get(id)
	if err != nil {
		return nil, err
	}
	st := &mesosv1.ResourceStatistics{Timestamp: proto.Float64(float64(time.Now().UnixNano()) / 1e9)}
	var utime, stime, rss uint64
	var procs uint32
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, ok := procStat(pid)
		if !ok || f.session != ct.pid {
			continue
		}
		procs++
		utime += f.utime
		stime += f.stime
		rss += f.rssPages * uint64(os.Getpagesize())
	}
	const hz = 100
	st.CpusUserTimeSecs = proto.Float64(float64(utime) / hz)
	st.CpusSystemTimeSecs = proto.Float64(float64(stime) / hz)
	st.MemRssBytes = proto.Uint64(rss)
	st.Processes = proto.Uint32(procs)
	return st, nil
}

type statFields struct {
	session             int
	utime, stime, start uint64
	rssPages            uint64
}

func procStat(pid int) (statFields, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return statFields{}, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return statFields{}, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 22 {
		return statFields{}, false
	}
	atoi := func(x string) uint64 { v, _ := strconv.ParseUint(x, 10, 64); return v }
	sess, _ := strconv.Atoi(f[3])
	return statFields{session: sess, utime: atoi(f[11]), stime: atoi(f[12]), start: atoi(f[19]), rssPages: atoi(f[21])}, true
}

func startTime(pid int) uint64 {
	f, _ := procStat(pid)
	return f.start
}

// Destroy implements containerizer.Containerizer: it kills the executor's
// whole session and waits for the executor to be gone.
func (c *Containerizer) Destroy(ctx context.Context, id string) error {
	ct, err := c.get(id)
	if err != nil {
		return nil
	}
	select {
	case <-ct.done:
	default:
		_ = syscall.Kill(-ct.pid, syscall.SIGKILL)
		_ = syscall.Kill(ct.pid, syscall.SIGKILL)
		select {
		case <-ct.done:
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Second):
			return fmt.Errorf("container %s: executor pid %d did not die: %w", id, ct.pid, errdefs.ErrUnavailable)
		}
	}
	c.mu.Lock()
	delete(c.containers, id)
	c.mu.Unlock()
	return nil
}

// Recover implements containerizer.Containerizer: processes from handles
// that still run (same pid and start time) are watched through a pidfd;
// the others are reported terminated.
func (c *Containerizer) Recover(ctx context.Context, handles []containerizer.Handle) error {
	for _, h := range handles {
		var d handleData
		_ = json.Unmarshal(h.Data, &d)
		ct := &container{id: h.ContainerID, pid: h.Pid, started: d.StartTime, done: make(chan struct{})}
		if h.Pid <= 0 || startTime(h.Pid) != d.StartTime || d.StartTime == 0 {
			continue // gone: the agent fails its tasks
		}
		c.mu.Lock()
		c.containers[h.ContainerID] = ct
		c.mu.Unlock()
		go c.watch(ct)
		c.log.Info("recovered executor process", "container_id", h.ContainerID, "pid", h.Pid)
	}
	return nil
}

// watch waits for a process that is not our child to exit.
func (c *Containerizer) watch(ct *container) {
	defer close(ct.done)
	ct.term = containerizer.Termination{ExitStatus: -1}
	fd, err := unix.PidfdOpen(ct.pid, 0)
	if err == nil {
		defer unix.Close(fd)
		for {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if _, err := unix.Poll(fds, -1); err != nil && errors.Is(err, unix.EINTR) {
				continue
			}
			break
		}
		_ = syscall.Kill(-ct.pid, syscall.SIGKILL)
		return
	}
	for startTime(ct.pid) == ct.started && ct.started != 0 {
		time.Sleep(200 * time.Millisecond)
	}
	_ = syscall.Kill(-ct.pid, syscall.SIGKILL)
}

// Containers implements containerizer.Containerizer.
func (c *Containerizer) Containers(ctx context.Context) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.containers))
	for id, ct := range c.containers {
		select {
		case <-ct.done:
		default:
			out = append(out, id)
		}
	}
	return out, nil
}
