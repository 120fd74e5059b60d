package fake

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/containerizer"
	"github.com/mesolite/mesolite/errdefs"
	"google.golang.org/protobuf/proto"
)

// Name is the default name of the fake in handles.
const Name = "fake"

// KilledStatus is the wait status of a container Destroy killed: SIGKILL.
const KilledStatus = 9

// Script is what one launch does.
type Script struct {
	// LaunchBlocksUntil holds Launch until it is closed; Launch fails with
	// ctx's error when its ctx ends first, leaving nothing behind.
	LaunchBlocksUntil <-chan struct{}
	// LaunchIgnoresCancel makes Launch wait for LaunchBlocksUntil even
	// after its ctx ended, and then succeed: a launch past its point of no
	// return (a container created and starting), which the caller must
	// destroy.
	LaunchIgnoresCancel bool
	// LaunchErr fails Launch (after LaunchBlocksUntil) with this error.
	LaunchErr error
	// Exit makes the container end by itself ExitAfter after Launch
	// returned, with exit code ExitCode. Without it the container runs
	// until Destroy, or Exit, or OOM is called.
	Exit      bool
	ExitAfter time.Duration
	ExitCode  int
	// OOM makes the container end OOM-killed ExitAfter after Launch
	// returned: a Limitation with REASON_CONTAINER_LIMITATION_MEMORY.
	OOM bool
	// DestroyErrs fails this many Destroys of the container (with
	// DestroyErr, default an errdefs.ErrUnavailable) before one succeeds.
	DestroyErrs int
	DestroyErr  error
}

// Options configure a Fake.
type Options struct {
	// Name is the containerizer name in handles (default "fake"); the
	// composing containerizer routes by it.
	Name string
	// Script returns the script of a launch; nil: every container runs
	// until destroyed.
	Script func(spec containerizer.LaunchSpec) Script
}

// Call records one method call.
type Call struct {
	Method      string // "Launch", "Wait", "Update", "Usage", "Destroy", "Recover"
	ContainerID string
	Err         error // what it returned; set once it returned
	Done        bool
}

// host holds the containers that "run": what outlives one Fake.
type host struct {
	mu    sync.Mutex
	procs map[string]*proc
}

// proc is one simulated container.
type proc struct {
	id          string
	script      Script
	done        chan struct{}
	once        sync.Once
	term        containerizer.Termination // set before done is closed
	destroyErrs int                       // guarded by host.mu

	mu        sync.Mutex
	timer     *time.Timer
	resources []*mesos.Resource
}

func (p *proc) end(term containerizer.Termination) {
	p.once.Do(func() {
		p.mu.Lock()
		if p.timer != nil {
			p.timer.Stop()
		}
		p.mu.Unlock()
		p.term = term
		close(p.done)
	})
}

func (p *proc) ended() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Fake is a scriptable containerizer. Safe for concurrent use.
type Fake struct {
	opts Options
	host *host

	mu        sync.Mutex
	known     map[string]*proc // launched or recovered by this instance
	launching map[string]bool
	calls     []*Call
}

var _ containerizer.Containerizer = (*Fake)(nil)
var _ containerizer.LimitationReporter = (*Fake)(nil)

// New returns a Fake on a new simulated host.
func New(opts Options) *Fake {
	if opts.Name == "" {
		opts.Name = Name
	}
	return newOn(&host{procs: map[string]*proc{}}, opts)
}

func newOn(h *host, opts Options) *Fake {
	return &Fake{opts: opts, host: h, known: map[string]*proc{}, launching: map[string]bool{}}
}

// Restart returns a new Fake on f's host, as the agent's next run: it
// knows no container until Recover.
func (f *Fake) Restart() *Fake { return newOn(f.host, f.opts) }

func (f *Fake) record(method, id string) *Call {
	c := &Call{Method: method, ContainerID: id}
	f.mu.Lock()
	f.calls = append(f.calls, c)
	f.mu.Unlock()
	return c
}

func (f *Fake) finish(c *Call, err error) error {
	f.mu.Lock()
	c.Err, c.Done = err, true
	f.mu.Unlock()
	return err
}

// Calls returns the calls so far, oldest first (Containers calls left out:
// the agent polls it).
func (f *Fake) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Call, 0, len(f.calls))
	for _, c := range f.calls {
		out = append(out, *c)
	}
	return out
}

// CallsOf returns the calls of method for id, oldest first.
func (f *Fake) CallsOf(method, id string) []Call {
	var out []Call
	for _, c := range f.Calls() {
		if c.Method == method && c.ContainerID == id {
			out = append(out, c)
		}
	}
	return out
}

// Launching lists the ids whose Launch has not returned yet.
func (f *Fake) Launching() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for id := range f.launching {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// Launched lists every id Launch was called with, in call order.
func (f *Fake) Launched() []string {
	var out []string
	for _, c := range f.Calls() {
		if c.Method == "Launch" {
			out = append(out, c.ContainerID)
		}
	}
	return out
}

// Resources returns the resources a container was launched or last
// updated with.
func (f *Fake) Resources(id string) []*mesos.Resource {
	p, err := f.get(id)
	if err != nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.resources
}

// OnHost reports whether container id is still on the simulated host:
// launched, and not destroyed or reaped as an orphan, by this Fake or
// another one on its host.
func (f *Fake) OnHost(id string) bool {
	f.host.mu.Lock()
	defer f.host.mu.Unlock()
	return f.host.procs[id] != nil
}

// Exit ends a running container with exit code, as if its executor exited.
func (f *Fake) Exit(id string, code int) error {
	p, err := f.get(id)
	if err != nil {
		return err
	}
	p.end(containerizer.Termination{ExitStatus: (code & 0xff) << 8})
	return nil
}

// OOMKill ends a running container as the kernel's OOM killer would.
func (f *Fake) OOMKill(id string) error {
	p, err := f.get(id)
	if err != nil {
		return err
	}
	p.end(oomTermination(p))
	return nil
}

func oomTermination(p *proc) containerizer.Termination {
	p.mu.Lock()
	defer p.mu.Unlock()
	mb := 0.0
	for _, r := range p.resources {
		if r.GetName() == "mem" {
			mb += r.GetScalar().GetValue()
		}
	}
	return containerizer.Termination{
		ExitStatus: KilledStatus,
		Limitation: true,
		Reason:     mesos.TaskStatus_REASON_CONTAINER_LIMITATION_MEMORY,
		Message:    fmt.Sprintf("Memory limit exceeded: Requested: %gMB", mb),
	}
}

type handleData struct {
	Fake bool `json:"fake"`
}

// Launch implements containerizer.Containerizer.
func (f *Fake) Launch(ctx context.Context, spec containerizer.LaunchSpec) (containerizer.Handle, error) {
	id := spec.ContainerID
	c := f.record("Launch", id)
	if id == "" {
		return containerizer.Handle{}, f.finish(c, fmt.Errorf("launch spec without container id: %w", errdefs.ErrInvalid))
	}
	var script Script
	if f.opts.Script != nil {
		script = f.opts.Script(spec)
	}
	f.mu.Lock()
	if f.known[id] != nil || f.launching[id] {
		f.mu.Unlock()
		return containerizer.Handle{}, f.finish(c, fmt.Errorf("container %s: %w", id, errdefs.ErrConflict))
	}
	f.launching[id] = true
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.launching, id)
		f.mu.Unlock()
	}()
	if err := ctx.Err(); err != nil {
		return containerizer.Handle{}, f.finish(c, fmt.Errorf("%w: %w", containerizer.ErrLaunchFailed, err))
	}
	if script.LaunchBlocksUntil != nil && script.LaunchIgnoresCancel {
		<-script.LaunchBlocksUntil
	} else if script.LaunchBlocksUntil != nil {
		select {
		case <-script.LaunchBlocksUntil:
		case <-ctx.Done():
			return containerizer.Handle{}, f.finish(c, fmt.Errorf("%w: %w", containerizer.ErrLaunchFailed, ctx.Err()))
		}
	}
	if script.LaunchErr != nil {
		return containerizer.Handle{}, f.finish(c, script.LaunchErr)
	}
	p := &proc{id: id, script: script, done: make(chan struct{}), destroyErrs: script.DestroyErrs, resources: spec.Resources}
	f.host.mu.Lock()
	f.host.procs[id] = p
	f.host.mu.Unlock()
	f.mu.Lock()
	f.known[id] = p
	f.mu.Unlock()
	// A timer that fires at once waits for p.mu, so p.timer is set first.
	p.mu.Lock()
	switch {
	case script.OOM:
		p.timer = time.AfterFunc(script.ExitAfter, func() { p.end(oomTermination(p)) })
	case script.Exit:
		p.timer = time.AfterFunc(script.ExitAfter, func() { p.end(containerizer.Termination{ExitStatus: (script.ExitCode & 0xff) << 8}) })
	}
	p.mu.Unlock()
	data, _ := json.Marshal(handleData{Fake: true})
	f.finish(c, nil)
	return containerizer.Handle{ContainerID: id, Containerizer: f.opts.Name, Data: data}, nil
}

func (f *Fake) get(id string) (*proc, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p := f.known[id]; p != nil {
		return p, nil
	}
	return nil, containerizer.UnknownContainer(id)
}

// Wait implements containerizer.Containerizer.
func (f *Fake) Wait(ctx context.Context, id string) (containerizer.Termination, error) {
	c := f.record("Wait", id)
	p, err := f.get(id)
	if err != nil {
		return containerizer.Termination{}, f.finish(c, err)
	}
	select {
	case <-p.done:
		f.finish(c, nil)
		return p.term, nil
	case <-ctx.Done():
		return containerizer.Termination{}, f.finish(c, ctx.Err())
	}
}

// Update implements containerizer.Containerizer: the resources are kept
// (see Resources).
func (f *Fake) Update(ctx context.Context, id string, resources []*mesos.Resource) error {
	c := f.record("Update", id)
	p, err := f.get(id)
	if err != nil {
		return f.finish(c, err)
	}
	p.mu.Lock()
	p.resources = resources
	p.mu.Unlock()
	return f.finish(c, nil)
}

// Usage implements containerizer.Containerizer with made-up figures.
func (f *Fake) Usage(ctx context.Context, id string) (*mesos.ResourceStatistics, error) {
	c := f.record("Usage", id)
	if _, err := f.get(id); err != nil {
		return nil, f.finish(c, err)
	}
	f.finish(c, nil)
	return &mesos.ResourceStatistics{
		Timestamp:   proto.Float64(float64(time.Now().UnixNano()) / 1e9),
		MemRssBytes: proto.Uint64(1 << 20),
		Processes:   proto.Uint32(1),
		Threads:     proto.Uint32(1),
	}, nil
}

// Destroy implements containerizer.Containerizer: after the script's
// DestroyErrs failures, the container is killed (if it still ran) and
// forgotten.
func (f *Fake) Destroy(ctx context.Context, id string) error {
	c := f.record("Destroy", id)
	f.mu.Lock()
	p := f.known[id]
	f.mu.Unlock()
	if p == nil {
		return f.finish(c, nil)
	}
	if err := ctx.Err(); err != nil {
		return f.finish(c, err)
	}
	f.host.mu.Lock()
	fail := p.destroyErrs > 0
	if fail {
		p.destroyErrs--
	}
	f.host.mu.Unlock()
	if fail {
		err := p.script.DestroyErr
		if err == nil {
			err = fmt.Errorf("container %s: scripted Destroy failure: %w", id, errdefs.ErrUnavailable)
		}
		return f.finish(c, err)
	}
	p.end(containerizer.Termination{ExitStatus: KilledStatus})
	f.host.mu.Lock()
	delete(f.host.procs, id)
	f.host.mu.Unlock()
	f.mu.Lock()
	delete(f.known, id)
	f.mu.Unlock()
	return f.finish(c, nil)
}

// Recover implements containerizer.Containerizer: containers of the host
// named by a handle of this fake's name are known again; the host's other
// containers are orphans, killed and removed.
func (f *Fake) Recover(ctx context.Context, handles []containerizer.Handle) error {
	c := f.record("Recover", "")
	mine := map[string]bool{}
	for _, h := range handles {
		if h.Containerizer == f.opts.Name {
			mine[h.ContainerID] = true
		}
	}
	f.host.mu.Lock()
	var orphans []*proc
	recovered := map[string]*proc{}
	for id, p := range f.host.procs {
		if mine[id] {
			recovered[id] = p
			continue
		}
		orphans = append(orphans, p)
		delete(f.host.procs, id)
	}
	f.host.mu.Unlock()
	for _, p := range orphans {
		p.end(containerizer.Termination{ExitStatus: KilledStatus})
	}
	f.mu.Lock()
	for id, p := range recovered {
		f.known[id] = p
	}
	f.mu.Unlock()
	return f.finish(c, nil)
}

// Containers implements containerizer.Containerizer.
func (f *Fake) Containers(ctx context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []string{}
	for id, p := range f.known {
		if !p.ended() {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out, nil
}

// Limitation implements containerizer.LimitationReporter.
func (f *Fake) Limitation(ctx context.Context, id string) (containerizer.Termination, bool) {
	p, err := f.get(id)
	if err != nil || !p.ended() || !p.term.Limitation {
		return containerizer.Termination{}, false
	}
	return p.term, true
}
