package isolation

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/mesolite/mesolite/errdefs"
)

// Constants Mesos uses for cpu limits, kept so a task gets the same share of
// a host under mesolite as under mesos-agent.
const (
	cpuSharesPerCPU = 1024
	minCPUShares    = 2
	cfsPeriodUsec   = 100_000 // 100 ms
	minCFSQuotaUsec = 1_000   // 1 ms
)

// Limits are the resources of one container. A zero field means "no limit"
// (for CPUs: the kernel's default weight).
type Limits struct {
	// CPUs weighs the container against others (cpu.shares = 1024 x CPUs on
	// v1, the equivalent cpu.weight on v2) and, with EnableCFS, caps it
	// (quota = CPUs x 100 ms per 100 ms period).
	CPUs float64
	// MemoryBytes is the hard memory limit; swap is kept out where the kernel
	// lets us, so the limit means what it says.
	MemoryBytes int64
	// Pids caps processes plus threads (fork bombs).
	Pids int64
	// EnableCFS turns CPUs into a hard cap. The Manager also turns it on for
	// every container when Options.EnableCFS is set.
	EnableCFS bool
}

func (l Limits) validate() error {
	if l.CPUs < 0 || l.MemoryBytes < 0 || l.Pids < 0 {
		return fmt.Errorf("negative limit in %+v: %w", l, errdefs.ErrInvalid)
	}
	return nil
}

// LinuxResources converts l into the runtime-spec form the cgroup drivers
// take, with cgroup v1 meanings: shares, quota -1 for "no cap", memory limit
// -1 for "no limit", swappiness 0 so the kernel does not swap the container
// out instead of enforcing its limit. The v2 driver converts this further
// (shares to weight, as runc and containerd do).
func (l Limits) LinuxResources() *specs.LinuxResources {
	shares := uint64(cpuSharesPerCPU)
	if l.CPUs > 0 {
		shares = max(uint64(l.CPUs*cpuSharesPerCPU), minCPUShares)
	}
	period := uint64(cfsPeriodUsec)
	quota := int64(-1)
	if l.EnableCFS && l.CPUs > 0 {
		quota = max(int64(l.CPUs*cfsPeriodUsec), minCFSQuotaUsec)
	}
	mem := int64(-1)
	if l.MemoryBytes > 0 {
		mem = l.MemoryBytes
	}
	swappiness := uint64(0)
	pids := int64(-1)
	if l.Pids > 0 {
		pids = l.Pids
	}
	return &specs.LinuxResources{
		CPU:    &specs.LinuxCPU{Shares: &shares, Period: &period, Quota: &quota},
		Memory: &specs.LinuxMemory{Limit: &mem, Swappiness: &swappiness},
		Pids:   &specs.LinuxPids{Limit: &pids},
	}
}

// Stats is one sample of a container cgroup's usage. Fields a controller that
// is not in use would give stay zero.
type Stats struct {
	Timestamp time.Time

	CPUUserSeconds      float64
	CPUSystemSeconds    float64
	CPUPeriods          uint64 // CFS enforcement periods elapsed
	CPUThrottled        uint64 // periods in which the quota ran out
	CPUThrottledSeconds float64

	MemoryRSSBytes      uint64 // anonymous memory (v1 total_rss, v2 anon)
	MemoryCacheBytes    uint64 // page cache (v1 total_cache, v2 file)
	MemoryUsageBytes    uint64 // everything charged (usage_in_bytes, memory.current)
	MemoryLimitBytes    uint64 // 0 when unlimited
	MemoryMaxUsageBytes uint64 // peak; 0 where the kernel does not keep one
	MemorySwapBytes     uint64

	Processes uint64
	Threads   uint64
	OOMKills  uint64 // processes the kernel OOM-killed in this cgroup, where counted
}

// backend is one cgroup version's driver for one container cgroup.
type backend interface {
	// create makes the cgroup; nestable lays it out for nested cgroups
	// (on v2: its processes in a leaf child, controllers passed down).
	create(l Limits, nestable bool) error
	load() error
	update(l Limits) error
	exists() bool
	addProc(pid int) error
	procs() ([]int, error)
	stats() (Stats, error)
	// signalAll kills every process once, as fast as the version allows.
	killOnce(ctx context.Context) error
	remove() error
	watchOOM(ctx context.Context, id string, out chan<- OOMEvent) error
	// intoCgroupFD opens the cgroup directory for clone3(CLONE_INTO_CGROUP);
	// nil where the version has no such thing (v1).
	intoCgroupFD() (*os.File, error)
	describe() string
	// child is the backend of nested cgroup id below this one.
	child(id string) backend
	// dirs are the cgroup's directories: one per v1 controller, one on v2.
	dirs() []string
	// procsFiles are the cgroup.procs files a process is moved in with.
	procsFiles() []string
}

// Manager makes, finds and removes container cgroups under one root.
type Manager struct {
	opts    Options
	set     Set
	version int
	// ctrls are v1 hierarchy directory names or v2 controller names.
	ctrls []string
	// instance names this manager's staging cgroups; staged counts them.
	instance string
	staged   atomic.Int64
}

// NewManager detects the cgroup version at opts.CgroupsHierarchy and makes
// the root cgroup (opts.CgroupsRoot) in every controller the set needs,
// enabling v2 controllers down the chain. On v1 the freezer is always used:
// it is how Kill stops a fork bomb, whatever the isolators.
func NewManager(opts Options, set Set) (*Manager, error) {
	opts = opts.WithDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	version, err := detectVersion(opts.CgroupsHierarchy)
	if err != nil {
		return nil, err
	}
	var inst [4]byte
	_, _ = rand.Read(inst[:])
	m := &Manager{opts: opts, set: set, version: version, instance: hex.EncodeToString(inst[:])}
	if version == 1 {
		m.ctrls = v1Controllers(set)
	} else {
		m.ctrls = v2Controllers(set)
	}
	if err := m.prepare(); err != nil {
		return nil, err
	}
	return m, nil
}

// Version is 1 (legacy or hybrid) or 2 (unified).
func (m *Manager) Version() int { return m.version }

// Root is the root cgroup path relative to the hierarchy ("/mesolite").
func (m *Manager) Root() string { return "/" + strings.Trim(m.opts.CgroupsRoot, "/") }

func v1Controllers(set Set) []string {
	c := []string{"freezer"}
	if set.Has(CgroupsCPU) {
		c = append(c, "cpu", "cpuacct")
	}
	if set.Has(CgroupsMem) {
		c = append(c, "memory")
	}
	if set.Has(CgroupsPids) {
		c = append(c, "pids")
	}
	return c
}

func v2Controllers(set Set) []string {
	var c []string
	if set.Has(CgroupsCPU) {
		c = append(c, "cpu")
	}
	if set.Has(CgroupsMem) {
		c = append(c, "memory")
	}
	if set.Has(CgroupsPids) {
		c = append(c, "pids")
	}
	return c
}

func (m *Manager) prepare() error {
	if m.version == 1 {
		for _, c := range m.ctrls {
			if err := checkV1Mount(m.opts.CgroupsHierarchy, c); err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Join(m.opts.CgroupsHierarchy, c, m.Root()), 0o755); err != nil {
				return fmt.Errorf("create root cgroup: %w", err)
			}
		}
		return nil
	}
	// v2: a controller reaches a cgroup only when every ancestor lists it in
	// cgroup.subtree_control; the root cgroup itself never holds processes, so
	// enabling them there is always allowed.
	dir := m.opts.CgroupsHierarchy
	parts := strings.Split(strings.Trim(m.Root(), "/"), "/")
	for i := 0; ; i++ {
		if err := enableV2Controllers(dir, m.ctrls); err != nil {
			return err
		}
		if i == len(parts) {
			return nil
		}
		dir = filepath.Join(dir, parts[i])
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create root cgroup: %w", err)
		}
	}
}

// Create makes the cgroup of container id with limits l. It is an error
// wrapping errdefs.ErrConflict when the cgroup exists (recover it with Load),
// errdefs.ErrInvalid for a bad id or limits.
func (m *Manager) Create(ctx context.Context, id string, l Limits) (*Cgroup, error) {
	return m.create(ctx, id, l, false)
}

// CreateNestable is Create for a container whose tasks get cgroups of their
// own below it (CreateNested): a task group's executor. On v2 its processes
// live in a leaf child cgroup, as the kernel passes controllers down only
// from cgroups that hold no process; on v1 it is a plain Create.
func (m *Manager) CreateNestable(ctx context.Context, id string, l Limits) (*Cgroup, error) {
	return m.create(ctx, id, l, true)
}

func (m *Manager) create(ctx context.Context, id string, l Limits, nestable bool) (*Cgroup, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := validateID(id); err != nil {
		return nil, err
	}
	if err := l.validate(); err != nil {
		return nil, err
	}
	l.EnableCFS = l.EnableCFS || m.opts.EnableCFS
	c := m.cgroup(id)
	if c.b.exists() {
		return nil, fmt.Errorf("cgroup %s: %w", c.b.describe(), errdefs.ErrConflict)
	}
	if err := c.b.create(l, nestable); err != nil {
		// Leave nothing half made: the next Create must not see a conflict.
		_ = c.b.remove()
		return nil, fmt.Errorf("create cgroup %s: %w", c.b.describe(), err)
	}
	c.limits = l
	return c, nil
}

// StagingPrefix starts the ids of staging cgroups (Manager.Staging).
const StagingPrefix = "mesolite-prestarted-"

// Staging makes a cgroup, without limits, for a process started ahead of
// its container (a prestarted init) to wait in, on cgroup v1 only (it
// answers errdefs.ErrInvalid on v2): the launch then gives the
// container this cgroup, renamed (Cgroup.Adopt), instead of moving the
// processes, each move a wait for the kernel (an RCU grace period, 1-2 ms)
// per process and hierarchy. Its id starts with StagingPrefix and names
// this manager (OwnStaging), so a restarted agent tells an earlier one's
// staging cgroups, orphans, from its own.
func (m *Manager) Staging(ctx context.Context) (*Cgroup, error) {
	if m.version != 1 {
		return nil, fmt.Errorf("staging cgroups: cgroup v%d cannot rename a cgroup: %w", m.version, errdefs.ErrInvalid)
	}
	return m.create(ctx, fmt.Sprintf("%s%s-%d", StagingPrefix, m.instance, m.staged.Add(1)), Limits{}, false)
}

// OwnStaging says whether id is a staging cgroup of this manager.
func (m *Manager) OwnStaging(id string) bool {
	return strings.HasPrefix(id, StagingPrefix+m.instance+"-")
}

// Adopt makes staging (a Manager.Staging cgroup, with the processes of a
// prestarted init in it) this cgroup: c's directories, just created and
// empty, are removed and staging's renamed to them, then c's limits are
// written again. The processes never move. On an error the caller moves
// them the usual way (AddProcess) and deletes staging: c exists in every
// hierarchy with its limits whatever step failed. Only on cgroup v1, for a
// container's cgroup (not a nested one).
func (c *Cgroup) Adopt(staging *Cgroup) error {
	dst, ok1 := c.b.(*v1Cgroup)
	src, ok2 := staging.b.(*v1Cgroup)
	// On v1 a nestable cgroup is laid out like any other.
	if !ok1 || !ok2 || c.parent != nil {
		return fmt.Errorf("adopt cgroup %s: only a plain cgroup v1 container cgroup can: %w", staging.b.describe(), errdefs.ErrInvalid)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, ctrl := range dst.ctrls {
		to, from := dst.dir(ctrl), src.dir(ctrl)
		if err := os.Remove(to); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.Rename(from, to); err != nil {
			errs = append(errs, err)
			// Back for the caller's moves; the limits follow below.
			if err := os.Mkdir(to, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				errs = append(errs, err)
			}
		}
	}
	if err := dst.update(c.limits); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("adopt cgroup %s as %s: %w", src.describe(), dst.describe(), err)
	}
	return nil
}

// CreateNested makes the cgroup of nested container id below c (created
// with CreateNestable) with limits l: a task of a group, limited on its own
// and, as the kernel counts hierarchically, within c's limits too. It is
// an error wrapping errdefs.ErrConflict when it exists, errdefs.ErrInvalid
// for a bad id or limits. The nested cgroup goes with c's Kill and Delete.
func (c *Cgroup) CreateNested(ctx context.Context, id string, l Limits) (*Cgroup, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := validateNestedID(id); err != nil {
		return nil, err
	}
	if err := l.validate(); err != nil {
		return nil, err
	}
	n := &Cgroup{id: id, b: c.b.child(id), parent: c}
	if n.b.exists() {
		return nil, fmt.Errorf("cgroup %s: %w", n.b.describe(), errdefs.ErrConflict)
	}
	if err := n.b.create(l, false); err != nil {
		_ = n.b.remove()
		return nil, fmt.Errorf("create cgroup %s: %w", n.b.describe(), err)
	}
	return n, nil
}

// LoadNested reopens nested cgroup id of c, as after an agent restart; an
// error wrapping errdefs.ErrNotFound when there is none.
func (c *Cgroup) LoadNested(id string) (*Cgroup, error) {
	if err := validateNestedID(id); err != nil {
		return nil, err
	}
	n := &Cgroup{id: id, b: c.b.child(id), parent: c}
	if !n.b.exists() {
		return nil, fmt.Errorf("cgroup %s: %w", n.b.describe(), errdefs.ErrNotFound)
	}
	if err := n.b.load(); err != nil {
		return nil, fmt.Errorf("load cgroup %s: %w", n.b.describe(), err)
	}
	return n, nil
}

// NestedIDs lists the nested cgroups of c, sorted.
func (c *Cgroup) NestedIDs() ([]string, error) {
	entries, err := os.ReadDir(c.b.dirs()[0])
	if err != nil {
		return nil, fmt.Errorf("list nested cgroups of %s: %w", c.b.describe(), err)
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() && validateNestedID(e.Name()) == nil {
			ids = append(ids, e.Name())
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// Dirs are the cgroup's directories on the host: one per v1 controller
// hierarchy (freezer first), the one directory on v2. A process that may
// (see Delegate) moves itself into nested cgroup N by writing its pid into
// <dir>/N/cgroup.procs in each.
func (c *Cgroup) Dirs() []string { return c.b.dirs() }

// Delegate lets the processes of uid move themselves (or their own
// children) into the nested cgroup c, and nothing else: it hands uid the
// cgroup.procs files of c (on v2 also its parent's, the common ancestor
// the kernel checks, which takes no process itself as its controllers are
// passed down) and none of the limit files. A task group's executor,
// running as the tasks' user, places each task this way before the task
// runs; Seal takes it back once the task runs.
func (c *Cgroup) Delegate(uid, gid int) error {
	if c.parent == nil {
		return fmt.Errorf("delegate cgroup %s: not a nested cgroup: %w", c.b.describe(), errdefs.ErrInvalid)
	}
	files := c.b.procsFiles()
	if _, v2 := c.b.(*v2Cgroup); v2 {
		files = append(files, c.parent.b.procsFiles()...)
	}
	for _, f := range files {
		if err := os.Lchown(f, uid, gid); err != nil {
			return fmt.Errorf("delegate cgroup %s: %w", c.b.describe(), err)
		}
	}
	return nil
}

// Seal takes back what Delegate gave on c's own files: from now on no
// process but root's moves into it. (The v2 parent's cgroup.procs stays
// delegated: the kernel refuses every process there, and moves between
// the parent's children need a child's, root's again.)
func (c *Cgroup) Seal() error {
	for _, f := range c.b.procsFiles() {
		if err := os.Lchown(f, 0, 0); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("seal cgroup %s: %w", c.b.describe(), err)
		}
	}
	return nil
}

// Load reopens the cgroup of container id, as after an agent restart. It is
// an error wrapping errdefs.ErrNotFound when there is none.
func (m *Manager) Load(id string) (*Cgroup, error) {
	if err := validateID(id); err != nil {
		return nil, err
	}
	c := m.cgroup(id)
	if !c.b.exists() {
		return nil, fmt.Errorf("cgroup %s: %w", c.b.describe(), errdefs.ErrNotFound)
	}
	if err := c.b.load(); err != nil {
		return nil, fmt.Errorf("load cgroup %s: %w", c.b.describe(), err)
	}
	return c, nil
}

// List returns the ids of the container cgroups under the root, sorted, so
// the agent can recover known containers and destroy orphans. On v1 a cgroup
// that exists in any of the controllers counts, so a half-removed one is
// still found and finished off.
func (m *Manager) List() ([]string, error) {
	var dirs []string
	if m.version == 1 {
		for _, c := range m.ctrls {
			dirs = append(dirs, filepath.Join(m.opts.CgroupsHierarchy, c, m.Root()))
		}
	} else {
		dirs = []string{filepath.Join(m.opts.CgroupsHierarchy, m.Root())}
	}
	seen := map[string]bool{}
	for _, d := range dirs {
		entries, err := os.ReadDir(d)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list cgroups: %w", err)
		}
		for _, e := range entries {
			if e.IsDir() && validateID(e.Name()) == nil {
				seen[e.Name()] = true
			}
		}
	}
	ids := make([]string, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

func (m *Manager) cgroup(id string) *Cgroup {
	rel := filepath.Join(m.Root(), id)
	c := &Cgroup{id: id}
	if m.version == 1 {
		c.b = &v1Cgroup{hier: m.opts.CgroupsHierarchy, rel: rel, ctrls: m.ctrls}
	} else {
		c.b = &v2Cgroup{hier: m.opts.CgroupsHierarchy, rel: rel, path: filepath.Join(m.opts.CgroupsHierarchy, rel), ctrls: m.ctrls}
	}
	return c
}

// validateID keeps a container id to one plain path element, so it can name
// a directory in every hierarchy without escaping the root or colliding with
// a control file (those all contain a dot after a known prefix, and ids that
// start with a dot are refused).
func validateID(id string) error {
	if id == "" || len(id) > 200 || id[0] == '.' {
		return fmt.Errorf("container id %q: %w", id, errdefs.ErrInvalid)
	}
	for _, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		default:
			return fmt.Errorf("container id %q: only letters, digits, '-', '_' and '.' are allowed: %w", id, errdefs.ErrInvalid)
		}
	}
	for _, prefix := range []string{"cgroup.", "cpu.", "cpuacct.", "memory.", "pids.", "freezer.", "io.", "notify_on_release", "release_agent", "tasks"} {
		if strings.HasPrefix(id, prefix) {
			return fmt.Errorf("container id %q clashes with a cgroup control file: %w", id, errdefs.ErrInvalid)
		}
	}
	return nil
}

// validateNestedID is validateID, less the name of a v2 container's own
// leaf cgroup.
func validateNestedID(id string) error {
	if id == v2Leaf {
		return fmt.Errorf("nested container id %q is reserved: %w", id, errdefs.ErrInvalid)
	}
	return validateID(id)
}

// Cgroup is the cgroup of one container. Its methods are safe for
// concurrent use.
type Cgroup struct {
	id     string
	b      backend
	parent *Cgroup // set for nested cgroups
	mu     sync.Mutex
	// limits are what Create made it with (Adopt writes them again).
	limits Limits

	// watchMu guards stopWatches: the OOM watches Delete ends. A v2 watch
	// would otherwise wait forever, since kernfs sends no IN_IGNORED for a
	// file of a removed cgroup while the watch pins its inode.
	watchMu     sync.Mutex
	stopWatches []context.CancelFunc
}

// ID is the container id the cgroup is named after.
func (c *Cgroup) ID() string { return c.id }

// String names the cgroup's path(s) for logs.
func (c *Cgroup) String() string { return c.b.describe() }

// AddProcess moves pid (and the threads of its process) into the cgroup in
// every controller.
func (c *Cgroup) AddProcess(pid int) error {
	if pid <= 0 {
		return fmt.Errorf("add pid %d: %w", pid, errdefs.ErrInvalid)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.b.addProc(pid); err != nil {
		return fmt.Errorf("add pid %d to cgroup %s: %w", pid, c.b.describe(), err)
	}
	return nil
}

// Update replaces the limits. Lowering memory below what the container uses
// can fail with EBUSY when the kernel cannot reclaim enough.
func (c *Cgroup) Update(l Limits) error {
	if err := l.validate(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.b.update(l); err != nil {
		return fmt.Errorf("update cgroup %s: %w", c.b.describe(), err)
	}
	return nil
}

// Stats samples usage.
func (c *Cgroup) Stats() (Stats, error) {
	s, err := c.b.stats()
	if err != nil {
		return Stats{}, fmt.Errorf("stats of cgroup %s: %w", c.b.describe(), err)
	}
	s.Timestamp = time.Now()
	return s, nil
}

// Processes lists the pids (in the caller's pid namespace) in the cgroup and
// its descendants.
func (c *Cgroup) Processes() ([]int, error) {
	pids, err := c.b.procs()
	if err != nil {
		return nil, fmt.Errorf("processes of cgroup %s: %w", c.b.describe(), err)
	}
	return pids, nil
}

// Kill SIGKILLs every process in the cgroup, daemonized ones included, and
// returns once the cgroup is empty. Each round uses v2's cgroup.kill where
// the kernel has it; otherwise it freezes the cgroup so nothing can fork,
// SIGKILLs every pid, and thaws it so the signals are delivered. Rounds
// repeat until no process is left or ctx ends.
func (c *Cgroup) Kill(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		pids, err := c.b.procs()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return fmt.Errorf("kill cgroup %s: %w", c.b.describe(), err)
		}
		if len(pids) == 0 {
			return nil
		}
		if err := c.b.killOnce(ctx); err != nil {
			return fmt.Errorf("kill cgroup %s: %w", c.b.describe(), err)
		}
		// SIGKILL is delivered at once but exit (unmapping memory, closing
		// files) takes a moment; give it up to a second before another round.
		if empty, err := c.waitEmpty(ctx, time.Second); err != nil {
			return fmt.Errorf("kill cgroup %s: %w", c.b.describe(), err)
		} else if empty {
			return nil
		}
	}
}

// Delete waits until the cgroup holds no process, then removes it (from
// every controller on v1, child cgroups first). It does not kill: call Kill
// first. A cgroup that is already gone is not an error.
func (c *Cgroup) Delete(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.waitEmpty(ctx, 0); err != nil {
		return fmt.Errorf("delete cgroup %s: %w", c.b.describe(), err)
	}
	// rmdir can answer EBUSY for a moment after the last process left, while
	// the kernel finishes taking it out.
	delay := time.Millisecond
	for {
		err := c.b.remove()
		if err == nil {
			c.endWatches()
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) {
			return fmt.Errorf("delete cgroup %s: %w", c.b.describe(), err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("delete cgroup %s: %w (last: %w)", c.b.describe(), ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(2*delay, 100*time.Millisecond)
	}
}

// waitEmpty polls until no process is left; limit 0 means until ctx ends.
func (c *Cgroup) waitEmpty(ctx context.Context, limit time.Duration) (bool, error) {
	var deadline time.Time
	if limit > 0 {
		deadline = time.Now().Add(limit)
	}
	delay := 500 * time.Microsecond
	for {
		pids, err := c.b.procs()
		if errors.Is(err, fs.ErrNotExist) || (err == nil && len(pids) == 0) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		if !deadline.IsZero() && time.Now().After(deadline) {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("%w with %d processes left (%v)", ctx.Err(), len(pids), firstPids(pids))
		case <-time.After(delay):
		}
		delay = min(2*delay, 50*time.Millisecond)
	}
}

func firstPids(pids []int) []int {
	if len(pids) > 8 {
		return pids[:8]
	}
	return pids
}

// WatchOOM reports the kernel OOM-killing a process of the cgroup. The
// channel carries at most one pending event (later ones coalesce into it),
// and is closed when ctx ends or the cgroup is removed. Start it before the
// executor runs. Needs the memory controller (cgroups/mem).
func (c *Cgroup) WatchOOM(ctx context.Context) (<-chan OOMEvent, error) {
	out := make(chan OOMEvent, 1)
	ctx, cancel := context.WithCancel(ctx)
	if err := c.b.watchOOM(ctx, c.id, out); err != nil {
		cancel()
		return nil, fmt.Errorf("watch OOM of cgroup %s: %w", c.b.describe(), err)
	}
	c.watchMu.Lock()
	c.stopWatches = append(c.stopWatches, cancel)
	c.watchMu.Unlock()
	return out, nil
}

// endWatches stops the OOM watches once the cgroup is gone; each closes its
// channel after any event already read is delivered.
func (c *Cgroup) endWatches() {
	c.watchMu.Lock()
	defer c.watchMu.Unlock()
	for _, stop := range c.stopWatches {
		stop()
	}
	c.stopWatches = nil
}

// readPidsFile parses a cgroup.procs / tasks style file.
func readPidsFile(path string) ([]int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		var pid int
		if _, err := fmt.Sscan(f, &pid); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// walkPids reads name (cgroup.procs, tasks, cgroup.threads) in dir and every
// child cgroup below it.
func walkPids(dir, name string) ([]int, error) {
	var pids []int
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			// A child cgroup removed while we walk is not an error.
			if p != dir && errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		got, err := readPidsFile(filepath.Join(p, name))
		if err != nil {
			if p != dir && errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		pids = append(pids, got...)
		return nil
	})
	return pids, err
}

// rmdirTree removes a cgroup directory and its child cgroups, deepest first
// (cgroupfs refuses rmdir of a cgroup with children; its files go with it).
func rmdirTree(dir string) error {
	var dirs []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := unix.Rmdir(dirs[i]); err != nil && !errors.Is(err, unix.ENOENT) {
			return &fs.PathError{Op: "rmdir", Path: dirs[i], Err: err}
		}
	}
	return nil
}

// writeFile writes a control file; cgroupfs wants one write per value.
func writeFile(path, value string) error {
	return os.WriteFile(path, []byte(value), 0)
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func readTrimmed(path string) (string, error) {
	b, err := os.ReadFile(path)
	return strings.TrimSpace(string(b)), err
}

// freezeWait writes a freeze request and polls until state reports done, at
// most limit: a task stuck in uninterruptible sleep can keep a cgroup
// FREEZING forever, and Kill must go on regardless.
func freezeWait(ctx context.Context, limit time.Duration, write func() error, done func() bool) error {
	if err := write(); err != nil {
		return err
	}
	deadline := time.Now().Add(limit)
	delay := 100 * time.Microsecond
	for !done() {
		if time.Now().After(deadline) {
			return errors.New("freeze did not complete in time")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 10*time.Millisecond)
	}
	return nil
}

// killPids SIGKILLs each pid; ones already gone are fine.
func killPids(pids []int) {
	for _, pid := range pids {
		_ = unix.Kill(pid, unix.SIGKILL)
	}
}
