// Package mesos is the mesos containerizer: it runs an executor as a
// process on the host under the isolation the agent's --isolation flag asks
// for: cgroups (cpu, memory, pids) and namespaces (pid, mount, ipc, uts)
// through package isolation, or plain posix processes that only report
// usage. The executor starts inside its cgroup; an OOM kill in the cgroup
// becomes a memory limitation; destroying a container kills every process
// of its cgroup, daemons included, and removes the cgroup.
package mesos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	mesosv1 "github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/containerizer"
	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/isolation"
	"google.golang.org/protobuf/proto"
)

// Name is this containerizer's name in --containerizers and in handles.
const Name = "mesos"

// DefaultPidsLimit caps processes plus threads per container under
// cgroups/pids (Mesos has no pids resource to take it from).
const DefaultPidsLimit = 4096

// Options configure the containerizer.
type Options struct {
	Logger *slog.Logger
	// Isolation is the parsed --isolation; zero means posix/cpu,posix/mem.
	Isolation isolation.Set
	// Isolator carries --cgroups_root, --cgroups_hierarchy,
	// --cgroups_enable_cfs and --launcher.
	Isolator isolation.Options
	// Launcher says how to start the container init: the agent's own binary
	// and the hidden `launch` subcommand.
	Launcher isolation.LauncherOptions
	// RuntimeDir keeps per-container files (the init's exit status) that
	// must survive an agent restart: <work_dir>/containers. Empty: no
	// status files (exit codes of recovered containers are then unknown).
	RuntimeDir string
	// PidsLimit is the pids.max of each container under cgroups/pids;
	// 0 means DefaultPidsLimit.
	PidsLimit int64
}

// Containerizer runs executors under isolation.
type Containerizer struct {
	opts     Options
	log      *slog.Logger
	set      isolation.Set
	mgr      *isolation.Manager // nil without cgroups
	launcher isolation.Launcher

	mu         sync.Mutex
	containers map[string]*container
	nested     map[string]*nestedCg // by nested container id
}

// nestedCg is the cgroup of one task of a group, below its executor's
// container's (see PrepareNested).
type nestedCg struct {
	id, parent string
	cg         *isolation.Cgroup
	cancel     context.CancelFunc // stops its OOM watch

	mu  sync.Mutex
	oom *isolation.OOMEvent
}

type container struct {
	id     string
	proc   isolation.Process
	cg     *isolation.Cgroup
	cancel context.CancelFunc // stops the OOM watcher
	done   chan struct{}
	// nestable: a task group's executor, whose tasks get nested cgroups;
	// user is who they are delegated to (nil: root).
	nestable bool
	user     *isolation.User

	mu   sync.Mutex
	oom  *isolation.OOMEvent
	term containerizer.Termination
}

type handleData struct {
	Process  isolation.Handle `json:"process"`
	Cgroup   bool             `json:"cgroup,omitempty"`
	Nestable bool             `json:"nestable,omitempty"`
	UID      *uint32          `json:"uid,omitempty"`
	GID      uint32           `json:"gid,omitempty"`
}

// New checks that the host can give every isolation asked for (a missing
// controller or missing root refuses to start, never a silent downgrade)
// and returns the containerizer.
func New(opts Options) (*Containerizer, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Isolation == 0 {
		opts.Isolation = isolation.Set(isolation.PosixCPU) | isolation.Set(isolation.PosixMem)
	}
	if opts.PidsLimit == 0 {
		opts.PidsLimit = DefaultPidsLimit
	}
	opts.Isolator = opts.Isolator.WithDefaults()
	// Namespaces need the linux launcher; an explicit posix launcher with
	// namespaces asked for is a contradiction, not something to drop.
	if opts.Isolation.Namespaces() != 0 && opts.Isolator.Launcher == isolation.LauncherPosix {
		return nil, fmt.Errorf("--isolation=%s needs --launcher=linux: %w", opts.Isolation, errdefs.ErrInvalid)
	}
	if err := isolation.CheckHost(opts.Isolation, opts.Isolator); err != nil {
		return nil, err
	}
	c := &Containerizer{opts: opts, log: opts.Logger.With("component", "mesos-containerizer"), set: opts.Isolation, containers: map[string]*container{}, nested: map[string]*nestedCg{}}
	if opts.Isolation.UsesCgroups() {
		mgr, err := isolation.NewManager(opts.Isolator, opts.Isolation)
		if err != nil {
			return nil, fmt.Errorf("cgroups: %w", err)
		}
		c.mgr = mgr
		if mgr.Version() == 1 && opts.Launcher.Prestart > 0 {
			// Prestarted inits wait in cgroups of their own that their
			// launch renames to the container's: on v1 moving an init and
			// what it started ahead into four hierarchies took 8-16 ms.
			opts.Launcher.Staging = mgr.Staging
		}
	}
	if opts.Launcher.Logger == nil {
		opts.Launcher.Logger = c.log
	}
	l, err := isolation.NewLauncher(opts.Isolator.Launcher, opts.Launcher)
	if err != nil {
		return nil, err
	}
	c.launcher = l
	// Start the inits now, not at the first launch: a ready one takes a
	// whole runtime start off the launch path (and for the built-in
	// executors, becomes the executor in place).
	switch l := l.(type) {
	case *isolation.LinuxLauncher:
		l.Prestart(opts.Isolation.Namespaces())
	case *isolation.PosixLauncher:
		l.Prestart()
	}
	c.log.Info("mesos containerizer ready", "isolation", opts.Isolation.String(), "launcher", string(l.Kind()), "cgroups", c.mgr != nil)
	return c, nil
}

// Close stops the launcher's prestarted inits.
func (c *Containerizer) Close() error { return c.launcher.Close() }

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

func scalar(rs []*mesosv1.Resource, name string) float64 {
	var v float64
	for _, r := range rs {
		if r.GetName() == name && r.GetType() == mesosv1.Value_SCALAR {
			v += r.GetScalar().GetValue()
		}
	}
	return v
}

func (c *Containerizer) limits(rs []*mesosv1.Resource) isolation.Limits {
	l := isolation.Limits{}
	if c.set.Has(isolation.CgroupsCPU) {
		l.CPUs = scalar(rs, "cpus")
	}
	if c.set.Has(isolation.CgroupsMem) {
		l.MemoryBytes = int64(scalar(rs, "mem") * (1 << 20))
	}
	if c.set.Has(isolation.CgroupsPids) {
		l.Pids = c.opts.PidsLimit
	}
	return l
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
	// A launch called off before it began starts nothing (the launcher
	// notices a ctx that ends later, but a prestarted init may not look).
	if err := ctx.Err(); err != nil {
		return containerizer.Handle{}, fmt.Errorf("%w: %w", containerizer.ErrLaunchFailed, err)
	}
	argv, err := commandArgv(spec.Executor.GetCommand())
	if err != nil {
		return containerizer.Handle{}, err
	}
	ct := &container{id: spec.ContainerID, done: make(chan struct{})}
	env := spec.Env
	if c.mgr != nil {
		create := c.mgr.Create
		// A task group's executor: each of its tasks gets a cgroup of its
		// own below this one, which the executor is told where to find.
		if spec.Executor.GetType() == mesosv1.ExecutorInfo_DEFAULT {
			create, ct.nestable = c.mgr.CreateNestable, true
		}
		cg, err := create(ctx, spec.ContainerID, c.limits(spec.Resources))
		if err != nil {
			return containerizer.Handle{}, fmt.Errorf("%w: create cgroup: %w", containerizer.ErrLaunchFailed, err)
		}
		ct.cg = cg
		if ct.nestable {
			env = append(slices.Clip(env), isolation.NestedCgroupsEnv+"="+strings.Join(cg.Dirs(), ":"))
		}
	}
	hostname := ""
	if c.set.Has(isolation.NamespacesUTS) {
		hostname = spec.ContainerID
		if spec.Task != nil {
			hostname = hostnameOf(spec.Task.GetTaskId().GetValue(), spec.ContainerID)
		}
	}
	statusPath, pidPath := "", ""
	if c.opts.RuntimeDir != "" {
		dir := filepath.Join(c.opts.RuntimeDir, spec.ContainerID)
		if err := os.MkdirAll(dir, 0o700); err == nil {
			statusPath, pidPath = filepath.Join(dir, "status"), filepath.Join(dir, "pid")
		}
	}
	var runAs *isolation.User
	if spec.User != "" {
		u, err := isolation.LookupUser(spec.User)
		if err != nil {
			if ct.cg != nil {
				_ = ct.cg.Delete(context.WithoutCancel(ctx))
			}
			return containerizer.Handle{}, fmt.Errorf("%w: %w", containerizer.ErrLaunchFailed, err)
		}
		runAs = u
		ct.user = u
	}
	proc, err := c.launcher.Launch(ctx, isolation.Spec{
		Argv: argv, Env: env, Dir: spec.SandboxDir,
		StdoutPath: spec.StdoutPath, StderrPath: spec.StderrPath,
		Namespaces: c.set.Namespaces(), Hostname: hostname, Cgroup: ct.cg, StatusPath: statusPath,
		PidPath: pidPath, User: runAs,
	})
	if err != nil {
		if ct.cg != nil {
			_ = ct.cg.Delete(context.WithoutCancel(ctx))
		}
		if errors.Is(err, errdefs.ErrInvalid) {
			return containerizer.Handle{}, err
		}
		return containerizer.Handle{}, fmt.Errorf("%w: start executor %q: %w", containerizer.ErrLaunchFailed, argv[0], err)
	}
	ct.proc = proc
	c.track(ct)
	hd := handleData{Process: proc.Handle(), Cgroup: ct.cg != nil, Nestable: ct.nestable}
	if ct.user != nil {
		hd.UID, hd.GID = proto.Uint32(ct.user.UID), ct.user.GID
	}
	data, _ := json.Marshal(hd)
	return containerizer.Handle{ContainerID: spec.ContainerID, Containerizer: Name, Pid: proc.Pid(), Data: data}, nil
}

// hostnameOf is the task id when it is a valid hostname label, else the
// container id (UTS hostnames are at most 64 bytes).
func hostnameOf(taskID, containerID string) string {
	if len(taskID) == 0 || len(taskID) > 63 {
		return containerID
	}
	for _, r := range taskID {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return containerID
		}
	}
	return taskID
}

// track starts watching a launched or recovered container.
func (c *Containerizer) track(ct *container) {
	wctx, cancel := context.WithCancel(context.Background())
	ct.cancel = cancel
	c.mu.Lock()
	c.containers[ct.id] = ct
	c.mu.Unlock()
	if ct.cg != nil && c.set.Has(isolation.CgroupsMem) {
		if events, err := ct.cg.WatchOOM(wctx); err != nil {
			c.log.Warn("cannot watch for OOM kills", "container_id", ct.id, "error", err)
		} else {
			go func() {
				for ev := range events {
					ct.mu.Lock()
					first := ct.oom == nil
					e := ev
					ct.oom = &e
					ct.mu.Unlock()
					if first {
						c.log.Warn("container hit its memory limit; destroying it", "container_id", ct.id, "limit_bytes", ev.LimitBytes, "max_usage_bytes", ev.MaxUsageBytes)
						// Mesos destroys a container on a limitation; the
						// executor may not survive half its processes.
						_ = ct.cg.Kill(wctx)
					}
				}
			}()
		}
	}
	go func() {
		st, err := ct.proc.Wait(context.Background())
		term := containerizer.Termination{ExitStatus: -1}
		if err == nil && st.Known {
			term.ExitStatus = st.WaitStatus()
		}
		// Whatever the executor left behind in its cgroup goes with it.
		if ct.cg != nil {
			_ = ct.cg.Kill(context.Background())
		}
		if lim, ok := c.limitation(ct); ok {
			term = lim
		}
		ct.mu.Lock()
		ct.term = term
		ct.mu.Unlock()
		close(ct.done)
	}()
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

// limitation reports an OOM kill of the container: from the watcher's
// event, or, when the event has not been read yet, from the cgroup's own
// OOM kill counter.
func (c *Containerizer) limitation(ct *container) (containerizer.Termination, bool) {
	ct.mu.Lock()
	ev := ct.oom
	ct.mu.Unlock()
	if ev == nil && ct.cg != nil && c.set.Has(isolation.CgroupsMem) {
		if st, err := ct.cg.Stats(); err == nil && st.OOMKills > 0 {
			ev = &isolation.OOMEvent{ContainerID: ct.id, Time: time.Now(), LimitBytes: st.MemoryLimitBytes, MaxUsageBytes: max(st.MemoryMaxUsageBytes, st.MemoryUsageBytes)}
		}
	}
	if ev == nil {
		return containerizer.Termination{}, false
	}
	return containerizer.Termination{
		ExitStatus: -1,
		Limitation: true,
		Reason:     mesosv1.TaskStatus_REASON_CONTAINER_LIMITATION_MEMORY,
		Message:    isolation.OOMMessage(*ev),
	}, true
}

// Limitation implements containerizer.LimitationReporter.
func (c *Containerizer) Limitation(ctx context.Context, id string) (containerizer.Termination, bool) {
	if n := c.getNested(id); n != nil {
		return c.nestedLimitation(n)
	}
	ct, err := c.get(id)
	if err != nil {
		return containerizer.Termination{}, false
	}
	return c.limitation(ct)
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
		ct.mu.Lock()
		defer ct.mu.Unlock()
		return ct.term, nil
	}
}

// Update implements containerizer.Containerizer: limits follow the
// executor's tasks.
func (c *Containerizer) Update(ctx context.Context, id string, rs []*mesosv1.Resource) error {
	ct, err := c.get(id)
	if err != nil {
		return err
	}
	if ct.cg == nil {
		return nil
	}
	return ct.cg.Update(c.limits(rs))
}

// Usage implements containerizer.Containerizer: from the cgroup, or from the
// executor's process tree under posix isolation.
func (c *Containerizer) Usage(ctx context.Context, id string) (*mesosv1.ResourceStatistics, error) {
	var st isolation.Stats
	var err error
	if n := c.getNested(id); n != nil {
		st, err = n.cg.Stats()
	} else {
		ct, gerr := c.get(id)
		if gerr != nil {
			return nil, gerr
		}
		if ct.cg != nil {
			st, err = ct.cg.Stats()
		} else {
			st, err = isolation.ProcessTreeStats(ct.proc.Pid())
		}
	}
	if err != nil {
		return nil, fmt.Errorf("usage of container %s: %w", id, err)
	}
	u := isolation.Usage(st)
	out := &mesosv1.ResourceStatistics{
		Timestamp:             proto.Float64(u.Timestamp),
		CpusUserTimeSecs:      proto.Float64(u.CPUsUserTimeSecs),
		CpusSystemTimeSecs:    proto.Float64(u.CPUsSystemTimeSecs),
		MemRssBytes:           proto.Uint64(u.MemRSSBytes),
		MemCacheBytes:         proto.Uint64(u.MemCacheBytes),
		MemSwapBytes:          proto.Uint64(u.MemSwapBytes),
		MemTotalBytes:         proto.Uint64(u.MemTotalBytes),
		Processes:             proto.Uint32(u.Processes),
		Threads:               proto.Uint32(u.Threads),
		CpusNrPeriods:         proto.Uint32(u.CPUsNrPeriods),
		CpusNrThrottled:       proto.Uint32(u.CPUsNrThrottled),
		CpusThrottledTimeSecs: proto.Float64(u.CPUsThrottledTimeSecs),
	}
	if u.MemLimitBytes > 0 {
		out.MemLimitBytes = proto.Uint64(u.MemLimitBytes)
	}
	return out, nil
}

// Destroy implements containerizer.Containerizer: every process of the
// container dies (the whole cgroup, daemons included), then the cgroup is
// removed.
func (c *Containerizer) Destroy(ctx context.Context, id string) error {
	ct, err := c.get(id)
	if err != nil {
		return nil
	}
	if ct.cg != nil {
		if err := ct.cg.Kill(ctx); err != nil {
			c.log.Warn("kill cgroup", "container_id", id, "error", err)
		}
	}
	select {
	case <-ct.done:
	default:
		_ = ct.proc.Signal(syscall.SIGKILL)
	}
	select {
	case <-ct.done:
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(10 * time.Second):
		return fmt.Errorf("container %s: executor pid %d did not die: %w", id, ct.proc.Pid(), errdefs.ErrUnavailable)
	}
	ct.cancel()
	if ct.cg != nil {
		if err := ct.cg.Delete(ctx); err != nil {
			return fmt.Errorf("remove cgroup of container %s: %w", id, err)
		}
	}
	if c.opts.RuntimeDir != "" {
		_ = os.RemoveAll(filepath.Join(c.opts.RuntimeDir, id))
	}
	c.mu.Lock()
	delete(c.containers, id)
	var gone []*nestedCg
	for nid, n := range c.nested {
		if n.parent == id {
			gone = append(gone, n)
			delete(c.nested, nid)
		}
	}
	c.mu.Unlock()
	// Their cgroups went with the parent's.
	for _, n := range gone {
		n.cancel()
	}
	return nil
}

// Recover implements containerizer.Containerizer: executors from handles
// that still run are re-attached (pid and start time must match); cgroups
// under --cgroups_root that no handle accounts for are orphans of an
// earlier run and are killed and removed.
func (c *Containerizer) Recover(ctx context.Context, handles []containerizer.Handle) error {
	known := map[string]bool{}
	for _, h := range handles {
		// Handles checkpointed before they named their containerizer are
		// ours: the mesos containerizer was the only one then.
		if h.Containerizer != Name && h.Containerizer != "" {
			continue
		}
		known[h.ContainerID] = true
		var d handleData
		if err := json.Unmarshal(h.Data, &d); err != nil || d.Process.Pid == 0 {
			// Handles written before the isolation layer carried only a pid.
			d.Process = isolation.Handle{Pid: h.Pid}
		}
		proc, err := isolation.Attach(d.Process)
		if err != nil {
			c.log.Warn("cannot re-attach executor", "container_id", h.ContainerID, "error", err)
			continue
		}
		ct := &container{id: h.ContainerID, proc: proc, done: make(chan struct{}), nestable: d.Nestable}
		if d.UID != nil {
			ct.user = &isolation.User{UID: *d.UID, GID: d.GID}
		}
		if d.Cgroup && c.mgr != nil {
			if cg, err := c.mgr.Load(h.ContainerID); err == nil {
				ct.cg = cg
			}
		}
		c.track(ct)
		c.recoverNested(ct)
		c.log.Info("recovered executor", "container_id", h.ContainerID, "pid", proc.Pid(), "cgroup", ct.cg != nil)
	}
	c.destroyOrphanProcesses(ctx, known)
	if c.mgr == nil {
		return nil
	}
	ids, err := c.mgr.List()
	if err != nil {
		return fmt.Errorf("list container cgroups: %w", err)
	}
	for _, id := range ids {
		if known[id] || c.mgr.OwnStaging(id) {
			continue
		}
		cg, err := c.mgr.Load(id)
		if err != nil {
			continue
		}
		c.log.Warn("destroying orphaned container cgroup", "container_id", id)
		_ = cg.Kill(ctx)
		if err := cg.Delete(ctx); err != nil {
			c.log.Error("remove orphaned cgroup", "container_id", id, "error", err)
		}
	}
	return nil
}

// destroyOrphanProcesses kills the processes of containers under
// RuntimeDir that no handle accounts for, and removes their runtime
// files: a launch the agent's crash cut off after the process started and
// before its handle was checkpointed (the launcher wrote the pid file
// first). Under cgroups their cgroups are found as orphans too; this is
// what finds them without. A pid file whose process is gone, or whose pid
// now names another process (its start time differs), only goes.
func (c *Containerizer) destroyOrphanProcesses(ctx context.Context, known map[string]bool) {
	if c.opts.RuntimeDir == "" {
		return
	}
	ents, err := os.ReadDir(c.opts.RuntimeDir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			c.log.Warn("list container runtime files", "directory", c.opts.RuntimeDir, "error", err)
		}
		return
	}
	for _, e := range ents {
		id := e.Name()
		if known[id] || !e.IsDir() {
			continue
		}
		dir := filepath.Join(c.opts.RuntimeDir, id)
		if h, err := isolation.ReadPidFile(filepath.Join(dir, "pid")); err == nil && h.Pid > 0 {
			if proc, err := isolation.Attach(h); err == nil {
				if err := proc.Signal(syscall.SIGKILL); err == nil {
					c.log.Warn("killed the executor of a launch an agent restart cut off", "container_id", id, "pid", h.Pid)
					wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					_, _ = proc.Wait(wctx)
					cancel()
				}
			}
		}
		if err := os.RemoveAll(dir); err != nil {
			c.log.Warn("remove orphaned container runtime files", "container_id", id, "error", err)
		}
	}
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
