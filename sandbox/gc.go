package sandbox

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/internal/duration"
)

// Defaults of the Mesos agent flags that drive the GC.
const (
	DefaultGCDelay           = 7 * 24 * time.Hour // --gc_delay=1weeks
	DefaultGCDiskHeadroom    = 0.1                // --gc_disk_headroom
	DefaultDiskWatchInterval = time.Minute        // --disk_watch_interval=1mins
)

// gcMaxAttempts is how often a removal is tried before the path is given up.
const gcMaxAttempts = 3

// maxCollectedMemory bounds the set of collected paths kept to answer
// "garbage collected" instead of a bare 404.
const maxCollectedMemory = 100000

// GCOptions configures NewGC. The agent passes its flags; zero Delay and
// DiskWatchInterval take Mesos's defaults, DiskHeadroom is used as given
// (0 is legal; pass DefaultGCDiskHeadroom for Mesos's default).
type GCOptions struct {
	// Root is the agent work directory. Only paths under it are collected,
	// and removal goes through an os.Root there.
	Root string
	// Delay is --gc_delay: how long a finished sandbox is kept at most.
	Delay time.Duration
	// DiskHeadroom is --gc_disk_headroom, in [0, 1].
	DiskHeadroom float64
	// DiskWatchInterval is --disk_watch_interval.
	DiskWatchInterval time.Duration
	// Now replaces time.Now (tests).
	Now func() time.Time
	// DiskUsage returns the used fraction of the filesystem holding Root;
	// nil uses statfs (used blocks / total blocks, as Mesos's fs::usage).
	DiskUsage func() (float64, error)
	// Mounts lists mount points (tests); nil reads /proc/self/mountinfo.
	// Mounts found inside a path are detached before it is removed, so a
	// volume mounted into a sandbox is never emptied by the GC.
	Mounts func() ([]string, error)
	// Logger; nil discards.
	Logger *slog.Logger
}

// GC removes finished sandboxes (or any directory under the work directory)
// the way the Mesos agent does: a path scheduled when its executor ended is
// removed once it is older than the max allowed age,
//
//	max allowed age = gc_delay * max(0, 1 - gc_disk_headroom - disk usage)
//
// recomputed from the disk usage every disk_watch_interval. With an empty disk
// and the default headroom a sandbox lives 0.9 x gc_delay; at 90% usage or
// more it goes at the next check.
type GC struct {
	opts GCOptions
	log  *slog.Logger
	root string

	mu        sync.Mutex
	entries   map[string]*gcEntry
	collected map[string]struct{}
	order     []string // collected paths, oldest first, to bound the set
	maxAge    time.Duration
	usage     float64

	nCollected atomic.Uint64
	nFailures  atomic.Uint64
	kick       chan struct{}
}

type gcEntry struct {
	path     string
	endedAt  time.Time
	removing bool
	attempts int
	retryAt  time.Time
}

// NewGC validates opts. Call Run to start collecting.
func NewGC(opts GCOptions) (*GC, error) {
	if opts.Root == "" {
		return nil, fmt.Errorf("gc: no root directory: %w", errdefs.ErrInvalid)
	}
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	if opts.Delay <= 0 {
		opts.Delay = DefaultGCDelay
	}
	if opts.DiskWatchInterval <= 0 {
		opts.DiskWatchInterval = DefaultDiskWatchInterval
	}
	if opts.DiskHeadroom < 0 || opts.DiskHeadroom > 1 || opts.DiskHeadroom != opts.DiskHeadroom {
		return nil, fmt.Errorf("gc: gc_disk_headroom %v must be between 0.0 and 1.0: %w", opts.DiskHeadroom, errdefs.ErrInvalid)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.DiskUsage == nil {
		opts.DiskUsage = func() (float64, error) { return diskUsage(root) }
	}
	if opts.Mounts == nil {
		opts.Mounts = mountPoints
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &GC{
		opts:      opts,
		log:       log.With("component", "gc"),
		root:      root,
		entries:   make(map[string]*gcEntry),
		collected: make(map[string]struct{}),
		maxAge:    opts.Delay,
		kick:      make(chan struct{}, 1),
	}, nil
}

// Schedule marks path for removal, counting its age from endedAt (Mesos
// uses the directory's mtime). Scheduling a path again replaces its time.
// A path outside Root, or Root itself, is refused with ErrInvalid; a
// relative path is taken from the current directory, as Root is.
func (g *GC) Schedule(path string, endedAt time.Time) error {
	p, err := g.clean(path)
	if err != nil {
		return err
	}
	g.mu.Lock()
	if e, ok := g.entries[p]; ok && e.removing {
		g.mu.Unlock()
		return fmt.Errorf("gc: %s is being removed: %w", p, errdefs.ErrConflict)
	}
	g.entries[p] = &gcEntry{path: p, endedAt: endedAt}
	delete(g.collected, p) // it exists again
	g.mu.Unlock()
	g.log.Info("scheduled for gc", "path", p, "in", (g.opts.Delay - g.opts.Now().Sub(endedAt)).Round(time.Second).String())
	wake(g.kick)
	return nil
}

// Unschedule keeps path after all (an executor that is relaunched in the
// same directory). It reports whether the path was scheduled; a path whose
// removal has begun cannot be kept and answers false.
func (g *GC) Unschedule(path string) bool {
	p, err := g.clean(path)
	if err != nil {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	e, ok := g.entries[p]
	if !ok || e.removing {
		return false
	}
	delete(g.entries, p)
	return true
}

// Collected reports whether path, or a directory above it, was removed by
// this GC. The files API uses it to say "garbage collected" rather than
// "not found".
func (g *GC) Collected(path string) bool {
	p, err := filepath.Abs(path)
	if err != nil {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.collected) == 0 {
		return false
	}
	for {
		if _, ok := g.collected[p]; ok {
			return true
		}
		parent := filepath.Dir(p)
		if parent == p || len(parent) < len(g.root) {
			return false
		}
		p = parent
	}
}

// Pending is the number of paths scheduled and not yet removed.
func (g *GC) Pending() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.entries)
}

// CollectedCount is the number of paths removed since start.
func (g *GC) CollectedCount() uint64 { return g.nCollected.Load() }

// Failures is the number of failed removal attempts since start.
func (g *GC) Failures() uint64 { return g.nFailures.Load() }

// MaxAllowedAge is the age beyond which paths are removed, as of the last
// disk check (gc_delay before the first).
func (g *GC) MaxAllowedAge() time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.maxAge
}

// DiskUsage is the used fraction of the disk at the last check.
func (g *GC) DiskUsage() float64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.usage
}

// Run checks the disk every DiskWatchInterval and removes due paths as
// their time comes, until ctx ends. It returns ctx's error.
func (g *GC) Run(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	nextDisk := time.Now()
	for {
		if !time.Now().Before(nextDisk) {
			g.CheckDisk()
			nextDisk = time.Now().Add(g.opts.DiskWatchInterval)
		}
		g.Collect(ctx)
		wait := time.Until(nextDisk)
		if d, ok := g.nextDue(); ok && d < wait {
			wait = d
		}
		timer.Reset(max(wait, 0))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		case <-g.kick:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		}
	}
}

// CheckDisk measures the disk and recomputes the max allowed age. A failed
// measurement keeps the previous age, as Mesos does.
func (g *GC) CheckDisk() {
	usage, err := g.opts.DiskUsage()
	if err != nil {
		g.log.Error("failed to get disk usage", "root", g.root, "err", err)
		return
	}
	age := time.Duration(float64(g.opts.Delay) * max(0, 1-g.opts.DiskHeadroom-usage))
	g.mu.Lock()
	g.usage, g.maxAge = usage, age
	g.mu.Unlock()
	g.log.Debug("disk usage checked", "usage_percent", fmt.Sprintf("%.2f", 100*usage), "max_allowed_age", duration.Format(age))
}

// Collect removes every scheduled path older than the max allowed age and
// returns how many it removed.
func (g *GC) Collect(ctx context.Context) int {
	now := g.opts.Now()
	var due []*gcEntry
	g.mu.Lock()
	for _, e := range g.entries {
		if !e.removing && now.Sub(e.endedAt) >= g.maxAge && !now.Before(e.retryAt) {
			e.removing = true
			due = append(due, e)
		}
	}
	g.mu.Unlock()

	removed := 0
	for i, e := range due {
		if ctx.Err() != nil {
			g.mu.Lock()
			for _, rest := range due[i:] {
				rest.removing = false
			}
			g.mu.Unlock()
			break
		}
		err := g.remove(e.path)
		g.mu.Lock()
		e.removing = false
		if err == nil {
			delete(g.entries, e.path)
			g.remember(e.path)
			removed++
		} else {
			e.attempts++
			e.retryAt = now.Add(g.opts.DiskWatchInterval)
			if e.attempts >= gcMaxAttempts {
				delete(g.entries, e.path)
			}
		}
		attempts := e.attempts
		g.mu.Unlock()
		if err == nil {
			g.nCollected.Add(1)
			g.log.Info("garbage collected", "path", e.path, "age", duration.Format(now.Sub(e.endedAt)))
		} else {
			g.nFailures.Add(1)
			g.log.Warn("failed to garbage collect", "path", e.path, "attempt", attempts, "err", err)
		}
	}
	return removed
}

// nextDue is the time until the earliest scheduled path becomes due.
func (g *GC) nextDue() (time.Duration, bool) {
	now := g.opts.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	var best time.Duration
	found := false
	for _, e := range g.entries {
		if e.removing {
			continue
		}
		d := e.endedAt.Add(g.maxAge).Sub(now)
		if r := e.retryAt.Sub(now); r > d {
			d = r
		}
		if !found || d < best {
			best, found = d, true
		}
	}
	return best, found
}

// remember adds p to the collected set, forgetting the oldest beyond the
// bound. Callers hold g.mu.
func (g *GC) remember(p string) {
	if _, ok := g.collected[p]; ok {
		return
	}
	g.collected[p] = struct{}{}
	g.order = append(g.order, p)
	for len(g.order) > maxCollectedMemory {
		delete(g.collected, g.order[0])
		g.order = g.order[1:]
	}
}

// remove detaches mounts inside p, then deletes p through an os.Root at the
// GC root: no symlink, inside p or on the way to it, leads the removal out
// of the work directory.
func (g *GC) remove(p string) error {
	mounts, err := g.opts.Mounts()
	if err != nil {
		return fmt.Errorf("list mounts: %w", err)
	}
	// Deepest first, so a mount inside a mount is detached before its parent.
	for i := len(mounts) - 1; i >= 0; i-- {
		m := filepath.Clean(mounts[i])
		if m == p || strings.HasPrefix(m, p+string(filepath.Separator)) {
			if err := unmount(m); err != nil {
				return fmt.Errorf("detach mount %s inside %s: %w", m, p, err)
			}
			g.log.Warn("detached mount inside garbage collected path", "mount", m, "path", p)
		}
	}
	root, err := os.OpenRoot(g.root)
	if err != nil {
		return err
	}
	defer root.Close()
	rel, err := filepath.Rel(g.root, p)
	if err != nil {
		return err
	}
	return root.RemoveAll(filepath.ToSlash(rel))
}

// clean makes path absolute (as the root is) and checks that it lies
// strictly inside the GC root.
func (g *GC) clean(path string) (string, error) {
	if path == "" {
		return "", fmt.Errorf("gc: empty path: %w", errdefs.ErrInvalid)
	}
	p, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("gc: %w", err)
	}
	if !strings.HasPrefix(p, g.root+string(filepath.Separator)) {
		return "", fmt.Errorf("gc: %s is not under %s: %w", p, g.root, errdefs.ErrInvalid)
	}
	return p, nil
}
