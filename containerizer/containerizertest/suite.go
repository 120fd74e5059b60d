package containerizertest

import (
	"context"
	"errors"
	"io"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/containerizer"
	"github.com/mesolite/mesolite/errdefs"
	"google.golang.org/protobuf/proto"
)

// Program is what the executor of one of the suite's containers does.
type Program int

const (
	// ExitCode3 exits at once with status 3.
	ExitCode3 Program = iota
	// RunUntilKilled runs until Destroy kills it.
	RunUntilKilled
	// ExceedMemory allocates far more than MemoryLimitMB and keeps it (on
	// a memory-limited implementation the kernel OOM-kills it).
	ExceedMemory
)

// MemoryLimitMB is the mem resource of every container the suite launches.
const MemoryLimitMB = 32

func (p Program) String() string {
	switch p {
	case ExitCode3:
		return "exit-code-3"
	case RunUntilKilled:
		return "run-until-killed"
	case ExceedMemory:
		return "exceed-memory"
	}
	return "unknown"
}

// Options say how to run the suite against one implementation.
type Options struct {
	// Spec returns a launch spec with ContainerID id whose executor runs p,
	// with Resources holding mem MemoryLimitMB (use Resources for that).
	// Required.
	Spec func(t *testing.T, id string, p Program) containerizer.LaunchSpec
	// Restart returns a second instance standing for the same host after
	// an agent restart: it knows nothing of old's containers until Recover.
	// nil: newCZ is called again.
	Restart func(t *testing.T, old containerizer.Containerizer) containerizer.Containerizer
	// MemoryLimits: the implementation enforces the mem resource and
	// reports an OOM kill as a Limitation with
	// REASON_CONTAINER_LIMITATION_MEMORY. false skips that case.
	MemoryLimits bool
	// HoldLaunch, when set, changes spec so that Launch cannot complete
	// until its ctx ends (an image pull that never answers, a script that
	// blocks): the case "launch cancelled midway" needs it. nil skips it.
	HoldLaunch func(t *testing.T, spec *containerizer.LaunchSpec)
	// Leftovers, when set, lists what of container id the implementation
	// finds on the host (a docker container, a cgroup, a process): the
	// suite asks after every Destroy and failed Launch, and wants none.
	Leftovers func(t *testing.T, cz containerizer.Containerizer, id string) []string
	// Timeout bounds each wait of the suite for the implementation (a
	// container to end, a launch to start); default 30s. It is a deadline
	// for a hang, never a measure of speed.
	Timeout time.Duration
}

// Resources are the resources of the suite's containers: 0.1 cpus and
// MemoryLimitMB of mem.
func Resources() []*mesos.Resource {
	return []*mesos.Resource{scalar("cpus", 0.1), scalar("mem", MemoryLimitMB)}
}

func scalar(name string, v float64) *mesos.Resource {
	return &mesos.Resource{Name: proto.String(name), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(v)}}
}

type suite struct {
	newCZ func(t *testing.T) containerizer.Containerizer
	opts  Options
}

// Run runs the conformance suite: each case in a subtest, each on a new
// containerizer from newCZ. newCZ registers its own cleanup (t.Cleanup);
// the suite destroys every container it launched and closes instances
// that are io.Closers.
func Run(t *testing.T, newCZ func(t *testing.T) containerizer.Containerizer, opts Options) {
	if opts.Spec == nil {
		t.Fatal("containerizertest: Options.Spec is required")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	s := &suite{newCZ: newCZ, opts: opts}
	// Cases for capabilities an implementation may lack are left out of
	// the run for it (not skipped): a skipped case would read as a check.
	cases := []struct {
		name string
		run  func(t *testing.T)
		has  bool
	}{
		{"LaunchListWaitExit", s.launchListWaitExit, true},
		{"WaitRepeatsUntilDestroy", s.waitRepeatsUntilDestroy, true},
		{"DestroyKillsAndIsIdempotent", s.destroyKills, true},
		{"DestroyUnknown", s.destroyUnknown, true},
		{"DuplicateLaunchRefused", s.duplicateLaunch, true},
		{"UnknownContainer", s.unknownContainer, true},
		{"UsageAndUpdate", s.usageAndUpdate, true},
		{"LaunchWithEndedContext", s.launchEndedContext, true},
		{"LaunchCancelledMidway", s.launchCancelledMidway, opts.HoldLaunch != nil},
		{"RecoverAfterRestart", s.recoverAfterRestart, true},
		{"OOMIsMemoryLimitation", s.oom, opts.MemoryLimits},
	}
	for _, c := range cases {
		if c.has {
			t.Run(c.name, c.run)
		}
	}
}

// instance makes a containerizer whose containers are destroyed when the
// test ends.
func (s *suite) instance(t *testing.T) containerizer.Containerizer {
	t.Helper()
	cz := s.newCZ(t)
	s.cleanup(t, cz)
	return cz
}

func (s *suite) cleanup(t *testing.T, cz containerizer.Containerizer) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
		defer cancel()
		ids, _ := cz.Containers(ctx)
		for _, id := range ids {
			if err := cz.Destroy(ctx, id); err != nil {
				t.Errorf("cleanup: destroy %s: %v", id, err)
			}
		}
		if c, ok := cz.(io.Closer); ok {
			_ = c.Close()
		}
	})
}

func (s *suite) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	t.Cleanup(cancel)
	return ctx
}

var idSeq atomic.Int64

// newID is a container id unique in this process and unlikely to meet one
// of a concurrent test process (docker names, cgroups).
func newID() string {
	return "cztest-" + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatInt(idSeq.Add(1), 10)
}

func (s *suite) spec(t *testing.T, p Program) containerizer.LaunchSpec {
	t.Helper()
	id := newID()
	spec := s.opts.Spec(t, id, p)
	if spec.ContainerID != id {
		t.Fatalf("Options.Spec returned container id %q, want %q", spec.ContainerID, id)
	}
	return spec
}

func (s *suite) launch(t *testing.T, cz containerizer.Containerizer, p Program) (containerizer.LaunchSpec, containerizer.Handle) {
	t.Helper()
	spec := s.spec(t, p)
	h, err := cz.Launch(s.ctx(t), spec)
	if err != nil {
		t.Fatalf("Launch %s: %v", p, err)
	}
	if h.ContainerID != spec.ContainerID {
		t.Errorf("handle container id %q, want %q", h.ContainerID, spec.ContainerID)
	}
	if h.Containerizer == "" {
		t.Errorf("handle %+v names no containerizer", h)
	}
	return spec, h
}

func listed(t *testing.T, cz containerizer.Containerizer, id string) bool {
	t.Helper()
	ids, err := cz.Containers(context.Background())
	if err != nil {
		t.Fatalf("Containers: %v", err)
	}
	return slices.Contains(ids, id)
}

func (s *suite) wait(t *testing.T, cz containerizer.Containerizer, id string) containerizer.Termination {
	t.Helper()
	term, err := cz.Wait(s.ctx(t), id)
	if err != nil {
		t.Fatalf("Wait %s: %v", id, err)
	}
	return term
}

func (s *suite) noLeftovers(t *testing.T, cz containerizer.Containerizer, id string) {
	t.Helper()
	if s.opts.Leftovers == nil {
		return
	}
	if left := s.opts.Leftovers(t, cz, id); len(left) > 0 {
		t.Errorf("left on the host of container %s: %v", id, left)
	}
}

func isUnknown(err error) bool {
	return errors.Is(err, containerizer.ErrUnknownContainer) && errors.Is(err, errdefs.ErrNotFound)
}

// killed says whether term is how the contract lets a container killed by
// Destroy end.
func killed(term containerizer.Termination) bool {
	if term.Limitation {
		return false
	}
	if term.ExitStatus == -1 {
		return true
	}
	ws := syscall.WaitStatus(term.ExitStatus)
	return ws.Signaled() || ws.Exited() && ws.ExitStatus() > 128
}

// Launch, Containers lists it while it runs, Wait returns its exit status
// as a wait status, and it is no longer listed once it ended.
func (s *suite) launchListWaitExit(t *testing.T) {
	cz := s.instance(t)
	sleeper, _ := s.launch(t, cz, RunUntilKilled)
	if !listed(t, cz, sleeper.ContainerID) {
		t.Errorf("Containers does not list %s right after Launch", sleeper.ContainerID)
	}
	spec, _ := s.launch(t, cz, ExitCode3)
	term := s.wait(t, cz, spec.ContainerID)
	ws := syscall.WaitStatus(term.ExitStatus)
	if !ws.Exited() || ws.ExitStatus() != 3 || term.Limitation {
		t.Errorf("termination %+v, want wait status %d (exit code 3), no limitation", term, 3<<8)
	}
	if listed(t, cz, spec.ContainerID) {
		t.Errorf("Containers lists %s after it terminated", spec.ContainerID)
	}
	if !listed(t, cz, sleeper.ContainerID) {
		t.Errorf("Containers lost %s, which still runs", sleeper.ContainerID)
	}
	if err := cz.Destroy(s.ctx(t), spec.ContainerID); err != nil {
		t.Fatalf("Destroy of a terminated container: %v", err)
	}
	s.noLeftovers(t, cz, spec.ContainerID)
}

// Wait answers as often as asked, concurrently too, until Destroy; then
// the id is forgotten.
func (s *suite) waitRepeatsUntilDestroy(t *testing.T) {
	cz := s.instance(t)
	spec, _ := s.launch(t, cz, ExitCode3)
	id := spec.ContainerID
	results := make(chan containerizer.Termination, 3)
	errs := make(chan error, 3)
	for range 3 {
		go func() {
			term, err := cz.Wait(s.ctx(t), id)
			if err != nil {
				errs <- err
				return
			}
			results <- term
		}()
	}
	var first containerizer.Termination
	for i := range 3 {
		select {
		case err := <-errs:
			t.Fatalf("concurrent Wait: %v", err)
		case term := <-results:
			if i == 0 {
				first = term
			} else if term != first {
				t.Errorf("concurrent Waits disagree: %+v and %+v", first, term)
			}
		}
	}
	if again := s.wait(t, cz, id); again != first {
		t.Errorf("Wait after termination %+v, first %+v", again, first)
	}
	if err := cz.Destroy(s.ctx(t), id); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if _, err := cz.Wait(s.ctx(t), id); !isUnknown(err) {
		t.Errorf("Wait after Destroy: %v, want ErrUnknownContainer and errdefs.ErrNotFound", err)
	}
}

// Destroy of a running container ends a Wait blocked on it with a killed
// termination, leaves it unlisted, and a second Destroy is nil.
func (s *suite) destroyKills(t *testing.T) {
	cz := s.instance(t)
	// A Wait that only got to run after Destroy returned rightly answers
	// ErrUnknownContainer; nothing outside the implementation can tell when
	// a Wait blocks, so such an attempt proves nothing and is repeated.
	const attempts = 5
	for range attempts {
		spec, _ := s.launch(t, cz, RunUntilKilled)
		id := spec.ContainerID
		started := make(chan struct{})
		type result struct {
			term containerizer.Termination
			err  error
		}
		waited := make(chan result, 1)
		go func() {
			close(started)
			term, err := cz.Wait(s.ctx(t), id)
			waited <- result{term, err}
		}()
		<-started
		if err := cz.Destroy(s.ctx(t), id); err != nil {
			t.Fatalf("Destroy: %v", err)
		}
		r := <-waited
		s.noLeftovers(t, cz, id)
		if listed(t, cz, id) {
			t.Errorf("Containers lists %s after Destroy", id)
		}
		if err := cz.Destroy(s.ctx(t), id); err != nil {
			t.Errorf("second Destroy: %v, want nil", err)
		}
		if _, err := cz.Wait(s.ctx(t), id); !isUnknown(err) {
			t.Errorf("Wait after Destroy: %v, want ErrUnknownContainer", err)
		}
		switch {
		case isUnknown(r.err):
			continue
		case r.err != nil:
			t.Fatalf("Wait blocked across Destroy: %v, want the termination", r.err)
		case !killed(r.term):
			t.Errorf("termination after Destroy %+v: want ExitStatus -1, a signal, or an exit code > 128, and no limitation", r.term)
		}
		return
	}
	t.Fatalf("in %d attempts no Wait was seen blocked across a Destroy", attempts)
}

func (s *suite) destroyUnknown(t *testing.T) {
	cz := s.instance(t)
	if err := cz.Destroy(s.ctx(t), newID()); err != nil {
		t.Errorf("Destroy of an unknown id: %v, want nil", err)
	}
}

// A second Launch of an id in use is refused and leaves the first alone.
func (s *suite) duplicateLaunch(t *testing.T) {
	cz := s.instance(t)
	spec, _ := s.launch(t, cz, RunUntilKilled)
	_, err := cz.Launch(s.ctx(t), spec)
	if !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("second Launch of %s: %v, want errdefs.ErrConflict", spec.ContainerID, err)
	}
	if !listed(t, cz, spec.ContainerID) {
		t.Errorf("the refused duplicate took the first container down")
	}
	if err := cz.Destroy(s.ctx(t), spec.ContainerID); err != nil {
		t.Fatal(err)
	}
}

func (s *suite) unknownContainer(t *testing.T) {
	cz := s.instance(t)
	id := newID()
	ctx := s.ctx(t)
	if _, err := cz.Wait(ctx, id); !isUnknown(err) {
		t.Errorf("Wait: %v, want ErrUnknownContainer and errdefs.ErrNotFound", err)
	}
	if _, err := cz.Usage(ctx, id); !isUnknown(err) {
		t.Errorf("Usage: %v, want ErrUnknownContainer and errdefs.ErrNotFound", err)
	}
	if err := cz.Update(ctx, id, Resources()); !isUnknown(err) {
		t.Errorf("Update: %v, want ErrUnknownContainer and errdefs.ErrNotFound", err)
	}
	if lr, ok := cz.(containerizer.LimitationReporter); ok {
		if _, hit := lr.Limitation(ctx, id); hit {
			t.Errorf("Limitation reports a limit for an unknown id")
		}
	}
}

// A running container has usage, and takes an update of its limits.
func (s *suite) usageAndUpdate(t *testing.T) {
	cz := s.instance(t)
	spec, _ := s.launch(t, cz, RunUntilKilled)
	st, err := cz.Usage(s.ctx(t), spec.ContainerID)
	if err != nil {
		t.Fatalf("Usage: %v", err)
	}
	if st == nil || st.GetTimestamp() <= 0 {
		t.Errorf("Usage %v: want statistics with a timestamp", st)
	}
	if err := cz.Update(s.ctx(t), spec.ContainerID, []*mesos.Resource{scalar("cpus", 0.2), scalar("mem", 2*MemoryLimitMB)}); err != nil {
		t.Errorf("Update: %v", err)
	}
	if !listed(t, cz, spec.ContainerID) {
		t.Errorf("Update took the container down")
	}
}

// A Launch whose ctx has ended starts nothing.
func (s *suite) launchEndedContext(t *testing.T) {
	cz := s.instance(t)
	spec := s.spec(t, RunUntilKilled)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := cz.Launch(ctx, spec); !errors.Is(err, context.Canceled) {
		t.Fatalf("Launch with an ended ctx: %v, want an error wrapping context.Canceled", err)
	}
	s.nothingLeft(t, cz, spec.ContainerID)
}

func (s *suite) nothingLeft(t *testing.T, cz containerizer.Containerizer, id string) {
	t.Helper()
	s.noLeftovers(t, cz, id)
	if listed(t, cz, id) {
		t.Errorf("Containers lists %s, whose Launch failed", id)
	}
	if _, err := cz.Wait(s.ctx(t), id); !isUnknown(err) {
		t.Errorf("Wait of %s, whose Launch failed: %v, want ErrUnknownContainer", id, err)
	}
}

// A Launch held up midway (a pull, a slow pre-start step) whose ctx ends
// returns ctx's error and leaves nothing; Destroy meanwhile does not block
// or fail, and the id can be launched again afterwards.
func (s *suite) launchCancelledMidway(t *testing.T) {
	cz := s.instance(t)
	spec := s.spec(t, RunUntilKilled)
	s.opts.HoldLaunch(t, &spec)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := cz.Launch(ctx, spec)
		done <- err
	}()
	// The launch is under way (or not yet started): either way it must not
	// be listed, and a Destroy of the id must not wait for it.
	if listed(t, cz, spec.ContainerID) {
		t.Errorf("Containers lists %s while its Launch runs", spec.ContainerID)
	}
	if err := cz.Destroy(s.ctx(t), spec.ContainerID); err != nil {
		t.Errorf("Destroy during Launch: %v, want nil", err)
	}
	select {
	case err := <-done:
		t.Fatalf("Launch held by HoldLaunch returned before its ctx ended: %v", err)
	default:
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled Launch: %v, want an error wrapping context.Canceled", err)
		}
	case <-time.After(s.opts.Timeout):
		t.Fatalf("Launch did not return within %s of its ctx ending", s.opts.Timeout)
	}
	s.nothingLeft(t, cz, spec.ContainerID)
}

// A second instance recovers the first's containers from their handles:
// Containers lists them, Wait works, and Destroy kills them; handles of
// other containerizers are ignored.
func (s *suite) recoverAfterRestart(t *testing.T) {
	cz1 := s.instance(t)
	sleeper, h1 := s.launch(t, cz1, RunUntilKilled)
	var cz2 containerizer.Containerizer
	if s.opts.Restart != nil {
		cz2 = s.opts.Restart(t, cz1)
		s.cleanup(t, cz2)
	} else {
		cz2 = s.instance(t)
	}
	foreign := containerizer.Handle{ContainerID: newID(), Containerizer: "not-" + h1.Containerizer, Pid: 1}
	if err := cz2.Recover(s.ctx(t), []containerizer.Handle{h1, foreign}); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if !listed(t, cz2, sleeper.ContainerID) {
		t.Fatalf("the restarted containerizer does not list the recovered %s", sleeper.ContainerID)
	}
	if listed(t, cz2, foreign.ContainerID) {
		t.Errorf("the restarted containerizer took a handle of containerizer %q", foreign.Containerizer)
	}
	if _, err := cz2.Usage(s.ctx(t), sleeper.ContainerID); err != nil {
		t.Errorf("Usage of a recovered container: %v", err)
	}
	// A Wait on the recovered container blocks (it runs) until its ctx ends.
	wctx, cancel := context.WithCancel(context.Background())
	waited := make(chan error, 1)
	go func() {
		_, err := cz2.Wait(wctx, sleeper.ContainerID)
		waited <- err
	}()
	cancel()
	if err := <-waited; !errors.Is(err, context.Canceled) {
		t.Errorf("Wait of a running recovered container: %v, want it to block until its ctx ended", err)
	}
	if err := cz2.Destroy(s.ctx(t), sleeper.ContainerID); err != nil {
		t.Fatalf("Destroy of a recovered container: %v", err)
	}
	s.noLeftovers(t, cz2, sleeper.ContainerID)
	if listed(t, cz2, sleeper.ContainerID) {
		t.Errorf("Containers lists %s after Destroy", sleeper.ContainerID)
	}
}

// A container that exceeds its memory is OOM-killed and terminates with a
// memory limitation.
func (s *suite) oom(t *testing.T) {
	cz := s.instance(t)
	spec, _ := s.launch(t, cz, ExceedMemory)
	term := s.wait(t, cz, spec.ContainerID)
	if !term.Limitation || term.Reason != mesos.TaskStatus_REASON_CONTAINER_LIMITATION_MEMORY || term.Message == "" {
		t.Errorf("termination %+v, want a Limitation with REASON_CONTAINER_LIMITATION_MEMORY and a message", term)
	}
	if lr, ok := cz.(containerizer.LimitationReporter); ok {
		lt, hit := lr.Limitation(s.ctx(t), spec.ContainerID)
		if !hit || lt.Reason != mesos.TaskStatus_REASON_CONTAINER_LIMITATION_MEMORY {
			t.Errorf("Limitation after the OOM kill: %+v %v, want REASON_CONTAINER_LIMITATION_MEMORY", lt, hit)
		}
	}
	if err := cz.Destroy(s.ctx(t), spec.ContainerID); err != nil {
		t.Fatal(err)
	}
	s.noLeftovers(t, cz, spec.ContainerID)
}
