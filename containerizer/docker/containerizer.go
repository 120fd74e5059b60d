package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/mesolite/mesolite/internal/safefile"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/containerizer"
	"github.com/mesolite/mesolite/containerizer/docker/engine"
	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/internal/duration"
	"github.com/mesolite/mesolite/sandbox"
)

// Name is this containerizer's name in --containerizers and in handles.
const Name = "docker"

// Defaults of the agent flags that configure the containerizer.
const (
	DefaultSandboxDirectory = "/mnt/mesos/sandbox"
	DefaultRemoveDelay      = 6 * time.Hour
)

// Options configure the docker containerizer; the agent fills them from
// its flags (see DefaultOptions for the flag defaults).
type Options struct {
	// Owner identifies this agent on the host; it is the value of the
	// owner label on every container it creates, and only containers with
	// it are ever stopped or removed. It must survive agent restarts and
	// differ between agents on one host: the agent's work_dir is the
	// natural choice (the Mesos agent id is only known after registration,
	// and changes when an agent registers from scratch). Required.
	Owner string
	// DockerHost is the dockerd address: --docker_socket (a path) or a
	// URL (unix://, tcp://). Empty: DOCKER_HOST or the default socket.
	DockerHost string
	// PublishIP is the agent's --ip: port mappings are published there.
	// Empty or 0.0.0.0 publishes on every address.
	PublishIP string
	// SandboxDirectory is where containers see the sandbox
	// (--sandbox_directory).
	SandboxDirectory string
	// KillOrphans stops and removes, on Recover, our containers that no
	// recovered executor accounts for (--docker_kill_orphans).
	KillOrphans bool
	// RemoveDelay keeps exited containers this long before removing them
	// (--docker_remove_delay); 0 removes them as soon as they are destroyed.
	RemoveDelay time.Duration
	// AllowPrivileged lets DockerInfo.privileged through
	// (--docker_allow_privileged).
	AllowPrivileged bool
	// Policy refuses what a task would reach beyond its container
	// (host paths, devices, host namespaces, capabilities) unless allowed.
	Policy Policy
	// EnableCFS sets a CFS quota from the cpus resource (--cgroups_enable_cfs).
	EnableCFS bool
	// DockerConfig is a docker config.json (its JSON, or a path to it)
	// with registry credentials for pulls (--docker_config).
	DockerConfig string
	// StopTimeout [--docker_stop_timeout] is the grace period between the
	// stop signal and SIGKILL for a command task whose kill policy names
	// none; the executor's default (3 s, as in Mesos) when 0.
	StopTimeout time.Duration
	// ExecutorCommand is the argv that starts the docker executor, the
	// agent's own binary: {"/usr/bin/mesolite", "executor", "docker"}. The
	// containerizer appends --container=NAME and --docker=HOST. Required.
	ExecutorCommand []string
	Logger          *slog.Logger

	// HealthInterval is how often a reachable dockerd is pinged (default 5s).
	HealthInterval time.Duration
	// PullProgressInterval spaces TASK_STARTING pull summaries (default 5s).
	PullProgressInterval time.Duration
}

// DefaultOptions are the agent flag defaults, as in Mesos.
func DefaultOptions() Options {
	return Options{
		SandboxDirectory: DefaultSandboxDirectory,
		KillOrphans:      true,
		RemoveDelay:      DefaultRemoveDelay,
	}
}

// Containerizer runs containers through dockerd. Safe for concurrent use.
type Containerizer struct {
	opts   Options
	log    *slog.Logger
	eng    *engine.Engine
	ctx    context.Context // the containerizer's lifetime, from New
	health *health

	mu         sync.Mutex
	containers map[string]*ctr
	// needCleanup: Recover ran while dockerd was down; the orphan sweep
	// runs once it is back.
	needCleanup bool
	// doomed: destroyed containers that dockerd could not stop at the
	// time; the sweeper keeps trying.
	doomed map[string]bool
}

type mode string

const (
	// modeExecutor: a command task; the docker executor runs on the host
	// and drives the container.
	modeExecutor mode = "executor"
	// modeContainer: a custom executor running inside the container.
	modeContainer mode = "container"
)

type ctr struct {
	id        string
	name      string
	mode      mode
	launching bool
	tty       bool
	swapSet   bool
	pid       int    // executor process (modeExecutor) or container init
	started   uint64 // executor process start time, to tell a reused pid apart
	logDone   <-chan error
	done      chan struct{}
	term      containerizer.Termination
}

// handleData is the docker part of a checkpointed containerizer.Handle.
type handleData struct {
	Name          string `json:"name"`
	Mode          mode   `json:"mode"`
	ExecutorStart uint64 `json:"executor_start,omitempty"`
	Tty           bool   `json:"tty,omitempty"`
	SwapSet       bool   `json:"swap_set,omitempty"`
}

// New returns a docker containerizer. It does not fail when dockerd is
// down: it says so in the log and keeps retrying in the background until
// ctx ends; launches fail with ErrLaunchFailed meanwhile.
func New(ctx context.Context, opts Options) (*Containerizer, error) {
	if opts.Owner == "" {
		return nil, fmt.Errorf("docker containerizer: Options.Owner is required: %w", errdefs.ErrInvalid)
	}
	if len(opts.ExecutorCommand) == 0 {
		return nil, fmt.Errorf("docker containerizer: Options.ExecutorCommand is required: %w", errdefs.ErrInvalid)
	}
	if opts.SandboxDirectory == "" {
		opts.SandboxDirectory = DefaultSandboxDirectory
	}
	if !strings.HasPrefix(opts.SandboxDirectory, "/") {
		return nil, fmt.Errorf("docker containerizer: --sandbox_directory %q must be absolute: %w", opts.SandboxDirectory, errdefs.ErrInvalid)
	}
	if opts.RemoveDelay < 0 {
		opts.RemoveDelay = 0
	}
	if opts.HealthInterval <= 0 {
		opts.HealthInterval = 5 * time.Second
	}
	if opts.PullProgressInterval <= 0 {
		opts.PullProgressInterval = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	eng, err := engine.New(opts.DockerHost)
	if err != nil {
		return nil, fmt.Errorf("docker containerizer: %w", err)
	}
	c := &Containerizer{
		opts:       opts,
		log:        opts.Logger.With("component", "docker-containerizer"),
		eng:        eng,
		ctx:        ctx,
		containers: map[string]*ctr{},
		doomed:     map[string]bool{},
	}
	c.health = newHealth(c)
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	c.health.check(pctx)
	cancel()
	go c.health.run(ctx)
	go c.sweep(ctx)
	go func() {
		<-ctx.Done()
		eng.Close()
	}()
	return c, nil
}

// Engine is the engine the containerizer uses (for the agent's /state and
// for tests).
func (c *Containerizer) Engine() *engine.Engine { return c.eng }

// engineTimeout bounds engine calls other than pulls, so that a dockerd
// that hangs fails launches instead of blocking them for ever.
const engineTimeout = 2 * time.Minute

// engineErr classifies an engine error of a call bounded by engineTimeout:
// running out of time means dockerd does not answer.
func (c *Containerizer) engineErr(parent context.Context, err error) error {
	if errors.Is(err, context.DeadlineExceeded) && parent.Err() == nil {
		err = fmt.Errorf("dockerd at %s did not answer within %s: %w: %w", c.eng.Host(), engineTimeout, errdefs.ErrUnavailable, err)
	}
	c.health.failed(err)
	return err
}

func launchFailed(format string, args ...any) error {
	return fmt.Errorf("%w: %w", containerizer.ErrLaunchFailed, fmt.Errorf(format, args...))
}

// classify says how spec runs here, or ErrNotSupported.
func classify(spec containerizer.LaunchSpec) (mode, *mesos.ContainerInfo, *mesos.CommandInfo, []*mesos.Resource, error) {
	if t := spec.Task; t != nil && t.GetContainer() != nil && t.GetContainer().GetType() == mesos.ContainerInfo_DOCKER {
		return modeExecutor, t.GetContainer(), t.GetCommand(), t.GetResources(), nil
	}
	if spec.Task == nil {
		if ci := spec.Executor.GetContainer(); ci != nil && ci.GetType() == mesos.ContainerInfo_DOCKER {
			return modeContainer, ci, spec.Executor.GetCommand(), spec.Resources, nil
		}
	}
	return "", nil, nil, nil, containerizer.ErrNotSupported
}

// Launch implements containerizer.Containerizer. It returns once the image
// is present, the container created and (for a command task) the docker
// executor started, or (for a custom executor) the container started.
// Errors: ErrNotSupported, errdefs.ErrInvalid (bad ContainerInfo: the agent
// answers TASK_ERROR), errdefs.ErrConflict, ErrLaunchFailed (dockerd down,
// pull failed, create failed; also wrapping errdefs.ErrForbidden for a
// privileged container the agent does not allow).
func (c *Containerizer) Launch(ctx context.Context, spec containerizer.LaunchSpec) (containerizer.Handle, error) {
	md, info, command, res, err := classify(spec)
	if err != nil {
		return containerizer.Handle{}, err
	}
	name := engine.ContainerName(spec.ContainerID)
	ct := &ctr{id: spec.ContainerID, name: name, mode: md, launching: true, done: make(chan struct{})}
	c.mu.Lock()
	if _, dup := c.containers[spec.ContainerID]; dup {
		c.mu.Unlock()
		return containerizer.Handle{}, fmt.Errorf("container %s: %w", spec.ContainerID, errdefs.ErrConflict)
	}
	c.containers[spec.ContainerID] = ct
	c.mu.Unlock()
	ok := false
	defer func() {
		if !ok {
			c.mu.Lock()
			delete(c.containers, spec.ContainerID)
			c.mu.Unlock()
		}
	}()
	log := c.log.With("container_id", spec.ContainerID, "executor_id", spec.Executor.GetExecutorId().GetValue())
	if spec.Task != nil {
		log = log.With("task_id", spec.Task.GetTaskId().GetValue())
	}

	cfg, err := c.translate(request{
		name:      name,
		info:      info,
		command:   command,
		resources: res,
		env:       containerEnv(spec, md, name, c.opts.SandboxDirectory),
		sandbox:   spec.SandboxDir,
		labels:    c.labels(spec),
	})
	if err != nil {
		if errors.Is(err, errdefs.ErrForbidden) {
			err = fmt.Errorf("%w: %w", containerizer.ErrLaunchFailed, err)
		}
		return containerizer.Handle{}, err
	}
	ct.tty, ct.swapSet = cfg.config.Tty, cfg.swapSet
	if err := c.health.ready(ctx); err != nil {
		return containerizer.Handle{}, fmt.Errorf("%w: %w", containerizer.ErrLaunchFailed, err)
	}
	stderr, err := safefile.OpenAppend(spec.StderrPath, 0o644, log)
	if err != nil {
		return containerizer.Handle{}, launchFailed("open sandbox stderr: %w", err)
	}
	defer stderr.Close()
	if err := c.ensureImage(ctx, cfg, spec, stderr, log); err != nil {
		return containerizer.Handle{}, err
	}
	if err := c.create(ctx, ct, cfg, log); err != nil {
		return containerizer.Handle{}, err
	}
	cleanup := func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := c.eng.Remove(rctx, name); err != nil {
			log.Warn("remove container of a failed launch", "error", err)
		}
	}
	switch md {
	case modeExecutor:
		if err := c.startExecutor(spec, ct, stderr); err != nil {
			cleanup()
			return containerizer.Handle{}, err
		}
	case modeContainer:
		if err := c.startContainer(ctx, spec, ct); err != nil {
			cleanup()
			return containerizer.Handle{}, err
		}
	}
	data, _ := json.Marshal(handleData{Name: name, Mode: md, ExecutorStart: ct.started, Tty: ct.tty, SwapSet: ct.swapSet})
	c.mu.Lock()
	ct.launching = false
	c.mu.Unlock()
	ok = true
	log.Info("launched docker container", "name", name, "image", cfg.image, "mode", string(md), "pid", ct.pid)
	return containerizer.Handle{ContainerID: spec.ContainerID, Containerizer: Name, Pid: ct.pid, Data: data}, nil
}

func (c *Containerizer) labels(spec containerizer.LaunchSpec) map[string]string {
	l := map[string]string{
		engine.LabelOwner:       c.opts.Owner,
		engine.LabelContainerID: spec.ContainerID,
		engine.LabelExecutorID:  spec.Executor.GetExecutorId().GetValue(),
	}
	if v := lookupEnv(spec.Env, "MESOS_SLAVE_ID"); v != "" {
		l[engine.LabelAgentID] = v
	}
	if v := lookupEnv(spec.Env, "MESOS_FRAMEWORK_ID"); v != "" {
		l[engine.LabelFrameworkID] = v
	} else if spec.Framework.GetId() != nil {
		l[engine.LabelFrameworkID] = spec.Framework.GetId().GetValue()
	}
	if spec.Task != nil {
		l[engine.LabelTaskID] = spec.Task.GetTaskId().GetValue()
	}
	return l
}

func lookupEnv(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v
		}
	}
	return ""
}

// containerEnv is the environment a container starts with, before the
// command's own. A task gets the ids Mesos gives docker tasks; a custom
// executor gets the agent's executor environment with the sandbox paths
// as seen inside the container. PATH stays the image's.
func containerEnv(spec containerizer.LaunchSpec, md mode, name, sandboxMount string) []string {
	var env []string
	switch md {
	case modeExecutor:
		for _, k := range []string{"MESOS_FRAMEWORK_ID", "MESOS_EXECUTOR_ID", "MESOS_SLAVE_ID", "MESOS_AGENT_ENDPOINT"} {
			if v := lookupEnv(spec.Env, k); v != "" {
				env = append(env, k+"="+v)
			}
		}
		env = append(env, "MESOS_TASK_ID="+spec.Task.GetTaskId().GetValue())
	case modeContainer:
		for _, kv := range spec.Env {
			if strings.HasPrefix(kv, "PATH=") || strings.HasPrefix(kv, "HOME=") {
				continue
			}
			env = append(env, kv)
		}
		env = append(env, "MESOS_DIRECTORY="+sandboxMount)
	}
	return append(env, "MESOS_SANDBOX="+sandboxMount, "MESOS_CONTAINER_NAME="+name)
}

// ensureImage inspects the image and pulls it only when it is missing or
// force_pull_image is set, reporting progress to the sandbox's stderr and
// as TASK_STARTING messages.
func (c *Containerizer) ensureImage(ctx context.Context, cfg *dockerConfig, spec containerizer.LaunchSpec, stderr io.Writer, log *slog.Logger) error {
	if !cfg.forcePull {
		octx, cancel := context.WithTimeout(ctx, engineTimeout)
		present, err := c.eng.ImageExists(octx, cfg.image)
		cancel()
		if err != nil {
			return fmt.Errorf("%w: %w", containerizer.ErrLaunchFailed, c.engineErr(ctx, err))
		}
		if present {
			return nil
		}
	}
	auth, err := registryAuth(cfg.image, spec.SandboxDir, c.opts.DockerConfig)
	if err != nil {
		return fmt.Errorf("%w: registry credentials for %s: %w", containerizer.ErrLaunchFailed, cfg.image, err)
	}
	progress := func(msg string) {
		if spec.Progress != nil {
			spec.Progress(msg)
		}
	}
	log.Info("pulling image", "image", cfg.image, "force", cfg.forcePull)
	fmt.Fprintf(stderr, "Pulling image %s\n", cfg.image)
	progress("Pulling image " + cfg.image)
	err = c.eng.Pull(ctx, cfg.image, engine.PullOptions{
		RegistryAuth: auth,
		Log:          stderr,
		Interval:     c.opts.PullProgressInterval,
		Progress:     func(p engine.PullProgress) { progress(p.String()) },
	})
	if err != nil {
		c.health.failed(err)
		log.Warn("image pull failed", "image", cfg.image, "error", err)
		fmt.Fprintf(stderr, "Failed to pull image %s: %v\n", cfg.image, err)
		return fmt.Errorf("%w: failed to pull image %s: %w", containerizer.ErrLaunchFailed, cfg.image, err)
	}
	return nil
}

// create creates the container. A leftover of ours with the same name
// (a launch retried after a crash) is replaced; a container of that name
// that is not ours is left alone and the launch fails.
func (c *Containerizer) create(parent context.Context, ct *ctr, cfg *dockerConfig, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(parent, engineTimeout)
	defer cancel()
	_, err := c.eng.Create(ctx, ct.name, cfg.config, cfg.host, cfg.network)
	if errors.Is(err, errdefs.ErrConflict) {
		ins, ierr := c.eng.Inspect(ctx, ct.name)
		if ierr != nil || ins.Config == nil || ins.Config.Labels[engine.LabelOwner] != c.opts.Owner || ins.Config.Labels[engine.LabelContainerID] != ct.id {
			return fmt.Errorf("%w: a container named %s exists and is not this agent's; leaving it alone: %w", containerizer.ErrLaunchFailed, ct.name, errdefs.ErrConflict)
		}
		log.Info("replacing a leftover container of ours", "name", ct.name)
		if err := c.eng.Remove(ctx, ct.name); err != nil {
			return fmt.Errorf("%w: %w", containerizer.ErrLaunchFailed, err)
		}
		_, err = c.eng.Create(ctx, ct.name, cfg.config, cfg.host, cfg.network)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", containerizer.ErrLaunchFailed, c.engineErr(parent, err))
	}
	return nil
}

// startExecutor starts the docker executor as a host process in its own
// session, so that it outlives an agent restart.
func (c *Containerizer) startExecutor(spec containerizer.LaunchSpec, ct *ctr, stderr *os.File) error {
	argv := append(append([]string(nil), c.opts.ExecutorCommand...), "--container="+ct.name, "--docker="+c.eng.Host())
	if c.opts.StopTimeout > 0 {
		argv = append(argv, "--stop_timeout="+duration.Format(c.opts.StopTimeout))
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(append([]string(nil), spec.Env...), "MESOS_CONTAINER_NAME="+ct.name)
	cmd.Dir = spec.SandboxDir
	// The executor writes the container's output itself; what reaches its
	// own stdio (a panic) goes to the sandbox's stderr.
	cmd.Stdout, cmd.Stderr = stderr, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return launchFailed("start docker executor %q: %w", argv[0], err)
	}
	ct.pid = cmd.Process.Pid
	ct.started = procStartTime(ct.pid)
	go func() {
		err := cmd.Wait()
		status := 0
		if err != nil {
			status = -1
			if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
				status = int(ws)
			}
		}
		c.executorExited(ct, status)
	}()
	return nil
}

// executorExited records how a docker executor ended. The container it
// drove should have ended too; if the kernel OOM-killed it, that is the
// termination's reason.
func (c *Containerizer) executorExited(ct *ctr, status int) {
	_ = syscall.Kill(-ct.pid, syscall.SIGKILL)
	term := containerizer.Termination{ExitStatus: status}
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	if lt, hit := c.limitation(ctx, ct.name); hit {
		term = lt
		term.ExitStatus = status
	}
	cancel()
	ct.term = term
	close(ct.done)
}

// startContainer starts a custom executor's container, its output copied
// into the sandbox by the agent.
func (c *Containerizer) startContainer(parent context.Context, spec containerizer.LaunchSpec, ct *ctr) error {
	ctx, cancel := context.WithTimeout(parent, engineTimeout)
	defer cancel()
	stdout, stderr, err := openLogs(spec.StdoutPath, spec.StderrPath, spec.Env)
	if err != nil {
		return launchFailed("%w", err)
	}
	logDone, err := c.eng.Attach(c.ctx, ct.name, ct.tty, stdout, stderr)
	if err != nil {
		stdout.Close()
		stderr.Close()
		return fmt.Errorf("%w: %w", containerizer.ErrLaunchFailed, err)
	}
	ct.logDone = closeWhenDone(logDone, stdout, stderr)
	if err := c.eng.Start(ctx, ct.name); err != nil {
		return fmt.Errorf("%w: %w", containerizer.ErrLaunchFailed, c.engineErr(parent, err))
	}
	ins, err := c.eng.Inspect(ctx, ct.name)
	if err == nil && ins.State != nil {
		ct.pid = ins.State.Pid
	}
	go c.watchContainer(ct)
	return nil
}

func closeWhenDone(done <-chan error, closers ...io.Closer) <-chan error {
	out := make(chan error, 1)
	go func() {
		err := <-done
		for _, cl := range closers {
			cl.Close()
		}
		out <- err
		close(out)
	}()
	return out
}

// openLogs opens the sandbox logs as rotating writers, with the limits the
// agent put into the executor environment.
func openLogs(stdoutPath, stderrPath string, env []string) (io.WriteCloser, io.WriteCloser, error) {
	maxSize, maxFiles := int64(sandbox.DefaultLogMaxSize), sandbox.DefaultLogMaxFiles
	if v, err := strconv.ParseInt(lookupEnv(env, "MESOLITE_CONTAINER_LOGGER_MAX_SIZE"), 10, 64); err == nil && v > 0 {
		maxSize = v
	}
	if v, err := strconv.Atoi(lookupEnv(env, "MESOLITE_CONTAINER_LOGGER_MAX_FILES")); err == nil && v > 0 {
		maxFiles = v
	}
	out, err := sandbox.NewRotatingWriter(stdoutPath, maxSize, maxFiles)
	if err != nil {
		return nil, nil, err
	}
	errw, err := sandbox.NewRotatingWriter(stderrPath, maxSize, maxFiles)
	if err != nil {
		out.Close()
		return nil, nil, err
	}
	return out, errw, nil
}

// watchContainer waits for a container-mode container to end. A dockerd
// that goes away meanwhile is waited for: its containers may well still run.
func (c *Containerizer) watchContainer(ct *ctr) {
	backoff := time.Second
	for {
		x, err := c.eng.Wait(c.ctx, ct.name)
		switch {
		case err == nil:
			if ct.logDone != nil {
				select {
				case <-ct.logDone:
				case <-time.After(5 * time.Second):
				}
			}
			ct.term = containerTermination(ct.name, x)
			close(ct.done)
			return
		case engine.IsNotFound(err):
			ct.term = containerizer.Termination{ExitStatus: -1, Message: "container " + ct.name + " disappeared"}
			close(ct.done)
			return
		case c.ctx.Err() != nil:
			return
		}
		c.health.failed(err)
		c.log.Warn("lost track of container, retrying", "container_id", ct.id, "error", err, "retry_in", backoff)
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

func containerTermination(name string, x engine.Exit) containerizer.Termination {
	if x.OOMKilled {
		return oomTermination(name, x)
	}
	msg := fmt.Sprintf("Container exited with status %d", x.Code)
	if x.Error != "" {
		msg += ": " + x.Error
	}
	return containerizer.Termination{ExitStatus: (x.Code & 0xff) << 8, Message: msg}
}

func oomTermination(name string, x engine.Exit) containerizer.Termination {
	return containerizer.Termination{
		ExitStatus: (x.Code & 0xff) << 8,
		Limitation: true,
		Reason:     mesos.TaskStatus_REASON_CONTAINER_LIMITATION_MEMORY,
		Message:    engine.OOMMessage(name, x.MemoryLimit),
	}
}

func (c *Containerizer) get(id string) (*ctr, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ct := c.containers[id]
	if ct == nil || ct.launching {
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

// Limitation implements containerizer.LimitationReporter: a container the
// kernel OOM-killed reports REASON_CONTAINER_LIMITATION_MEMORY.
func (c *Containerizer) Limitation(ctx context.Context, id string) (containerizer.Termination, bool) {
	ct, err := c.get(id)
	if err != nil {
		return containerizer.Termination{}, false
	}
	return c.limitation(ctx, ct.name)
}

func (c *Containerizer) limitation(ctx context.Context, name string) (containerizer.Termination, bool) {
	x, err := c.eng.ExitOf(ctx, name)
	if err != nil || !x.OOMKilled {
		return containerizer.Termination{}, false
	}
	return oomTermination(name, x), true
}

// Update implements containerizer.Containerizer: cpu shares, memory (and
// swap) and the CFS quota follow the new resources.
func (c *Containerizer) Update(ctx context.Context, id string, resources []*mesos.Resource) error {
	ct, err := c.get(id)
	if err != nil {
		return err
	}
	d := &dockerConfig{host: &container.HostConfig{}}
	limits(d, resources, c.opts.EnableCFS)
	r := container.Resources{CPUShares: d.host.CPUShares, CPUPeriod: d.host.CPUPeriod, CPUQuota: d.host.CPUQuota, Memory: d.host.Memory}
	if !ct.swapSet {
		r.MemorySwap = d.host.MemorySwap
	}
	if r.CPUShares == 0 && r.Memory == 0 {
		return nil
	}
	if err := c.eng.Update(ctx, ct.name, r); err != nil {
		return fmt.Errorf("container %s: %w", id, err)
	}
	return nil
}

// Usage implements containerizer.Containerizer from dockerd's stats.
func (c *Containerizer) Usage(ctx context.Context, id string) (*mesos.ResourceStatistics, error) {
	ct, err := c.get(id)
	if err != nil {
		return nil, err
	}
	s, err := c.eng.Stats(ctx, ct.name)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	ins, _ := c.eng.Inspect(ctx, ct.name)
	return statistics(s, ins), nil
}

// Destroy implements containerizer.Containerizer: the executor process
// (if any) and the container are killed, and Destroy returns once both
// are gone. The stopped container is removed RemoveDelay later (at once
// when it is 0), so that `docker logs` still works meanwhile.
func (c *Containerizer) Destroy(ctx context.Context, id string) error {
	c.mu.Lock()
	ct := c.containers[id]
	c.mu.Unlock()
	if ct == nil || ct.launching {
		return nil
	}
	if ct.mode == modeExecutor {
		select {
		case <-ct.done:
		default:
			if procStartTime(ct.pid) == ct.started && ct.started != 0 {
				_ = syscall.Kill(-ct.pid, syscall.SIGKILL)
				_ = syscall.Kill(ct.pid, syscall.SIGKILL)
			}
		}
	}
	if err := c.eng.Stop(ctx, ct.name, "", 0); err != nil {
		c.health.failed(err)
		c.mu.Lock()
		c.doomed[ct.name] = true
		c.mu.Unlock()
		c.log.Warn("could not stop container; will keep trying", "container_id", id, "error", err)
	}
	select {
	case <-ct.done:
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(30 * time.Second):
		return fmt.Errorf("container %s: still running 30s after it was killed: %w", id, errdefs.ErrUnavailable)
	}
	if c.opts.RemoveDelay == 0 {
		if err := c.eng.Remove(ctx, ct.name); err != nil {
			c.log.Warn("remove container", "container_id", id, "error", err)
		}
	}
	c.mu.Lock()
	delete(c.containers, id)
	c.mu.Unlock()
	return nil
}

// Containers implements containerizer.Containerizer.
func (c *Containerizer) Containers(ctx context.Context) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.containers))
	for id, ct := range c.containers {
		if ct.launching {
			continue
		}
		select {
		case <-ct.done:
		default:
			out = append(out, id)
		}
	}
	return out, nil
}

// procStartTime is a process's start time in clock ticks (field 22 of
// /proc/<pid>/stat), 0 when it does not exist.
func procStartTime(pid int) uint64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
}
