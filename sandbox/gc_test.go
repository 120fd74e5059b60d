package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/internal/testutil"
)

// fakeClock and fakeDisk drive the GC in tests.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type fakeDisk struct {
	mu    sync.Mutex
	usage float64
	err   error
}

func (d *fakeDisk) Usage() (float64, error) { d.mu.Lock(); defer d.mu.Unlock(); return d.usage, d.err }
func (d *fakeDisk) Set(u float64)           { d.mu.Lock(); defer d.mu.Unlock(); d.usage = u }

type gcRig struct {
	gc    *GC
	clock *fakeClock
	disk  *fakeDisk
	root  string
	t0    time.Time
}

func newGCRig(t *testing.T, delay time.Duration, headroom float64) *gcRig {
	t.Helper()
	r := &gcRig{
		clock: &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)},
		disk:  &fakeDisk{},
		root:  t.TempDir(),
	}
	r.t0 = r.clock.Now()
	gc, err := NewGC(GCOptions{
		Root: r.root, Delay: delay, DiskHeadroom: headroom, DiskWatchInterval: time.Minute,
		Now: r.clock.Now, DiskUsage: r.disk.Usage, Mounts: noMounts,
	})
	must(t, err)
	r.gc = gc
	return r
}

// sandbox makes a directory with a file under the rig's root.
func (r *gcRig) sandbox(t *testing.T, name string) string {
	t.Helper()
	dir := filepath.Join(r.root, "slaves", "a", "frameworks", "f", "executors", name, "runs", "c")
	must(t, os.MkdirAll(dir, 0o755))
	writeFile(t, filepath.Join(dir, "stdout"), "log")
	return dir
}

func exists(p string) bool { _, err := os.Lstat(p); return err == nil }

func TestGCMaxAllowedAge(t *testing.T) {
	// age = gc_delay * max(0, 1 - headroom - usage)
	tests := []struct {
		delay    time.Duration
		headroom float64
		usage    float64
		want     time.Duration
	}{
		{100 * time.Hour, 0.1, 0, 90 * time.Hour},
		{100 * time.Hour, 0.1, 0.5, 40 * time.Hour},
		{100 * time.Hour, 0.1, 0.9, 0},
		{100 * time.Hour, 0.1, 0.95, 0},
		{100 * time.Hour, 0, 0.25, 75 * time.Hour},
		{100 * time.Hour, 0.5, 0.25, 25 * time.Hour},
		{100 * time.Hour, 1, 0, 0},
	}
	for _, tt := range tests {
		r := newGCRig(t, tt.delay, tt.headroom)
		if got := r.gc.MaxAllowedAge(); got != tt.delay {
			t.Fatalf("before the first check: %v, want gc_delay", got)
		}
		r.disk.Set(tt.usage)
		r.gc.CheckDisk()
		got := r.gc.MaxAllowedAge()
		if d := got - tt.want; d > time.Millisecond || d < -time.Millisecond {
			t.Errorf("delay %v headroom %v usage %v: age %v, want %v", tt.delay, tt.headroom, tt.usage, got, tt.want)
		}
	}
}

func TestGCByAge(t *testing.T) {
	r := newGCRig(t, 100*time.Hour, 0.1)
	old := r.sandbox(t, "old")
	young := r.sandbox(t, "young")
	must(t, r.gc.Schedule(old, r.t0))
	must(t, r.gc.Schedule(young, r.t0.Add(50*time.Hour)))
	r.gc.CheckDisk() // empty disk: max age 90h

	r.clock.Advance(89 * time.Hour)
	if n := r.gc.Collect(t.Context()); n != 0 || !exists(old) {
		t.Fatalf("collected %d before 90h", n)
	}
	r.clock.Advance(time.Hour)
	if n := r.gc.Collect(t.Context()); n != 1 || exists(old) || !exists(young) {
		t.Fatalf("at 90h: collected %d, old exists %v, young exists %v", n, exists(old), exists(young))
	}
	if !r.gc.Collected(old) || !r.gc.Collected(filepath.Join(old, "stdout")) || r.gc.Collected(young) {
		t.Fatal("Collected answers wrong")
	}
	if r.gc.Pending() != 1 || r.gc.CollectedCount() != 1 || r.gc.Failures() != 0 {
		t.Fatalf("pending %d collected %d failures %d", r.gc.Pending(), r.gc.CollectedCount(), r.gc.Failures())
	}
}

func TestGCByDiskPressure(t *testing.T) {
	r := newGCRig(t, 100*time.Hour, 0.1)
	a := r.sandbox(t, "a") // ended at t0
	b := r.sandbox(t, "b") // ended at t0+30h
	must(t, r.gc.Schedule(a, r.t0))
	must(t, r.gc.Schedule(b, r.t0.Add(30*time.Hour)))
	r.clock.Advance(45 * time.Hour)

	r.disk.Set(0.5) // max age 40h: a (45h) goes, b (15h) stays
	r.gc.CheckDisk()
	if n := r.gc.Collect(t.Context()); n != 1 || exists(a) || !exists(b) {
		t.Fatalf("at 50%%: collected %d", n)
	}
	r.disk.Set(0.9) // max age 0: everything goes
	r.gc.CheckDisk()
	if n := r.gc.Collect(t.Context()); n != 1 || exists(b) {
		t.Fatalf("at 90%%: collected %d", n)
	}
	if r.gc.DiskUsage() != 0.9 {
		t.Fatalf("DiskUsage %v", r.gc.DiskUsage())
	}
}

func TestGCDiskErrorKeepsAge(t *testing.T) {
	r := newGCRig(t, 100*time.Hour, 0.1)
	r.disk.Set(0.5)
	r.gc.CheckDisk()
	r.disk.mu.Lock()
	r.disk.err = errors.New("statfs failed")
	r.disk.mu.Unlock()
	r.gc.CheckDisk()
	if got := r.gc.MaxAllowedAge(); got != 40*time.Hour {
		t.Fatalf("age %v after a failed check, want the previous 40h", got)
	}
}

func TestGCScheduleRules(t *testing.T) {
	r := newGCRig(t, time.Hour, 0.1)
	dir := r.sandbox(t, "x")
	for _, p := range []string{r.root, filepath.Dir(r.root), "/etc", "", "relative/path", r.root + "/../elsewhere"} {
		if err := r.gc.Schedule(p, r.t0); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("Schedule(%q) = %v, want ErrInvalid", p, err)
		}
	}
	must(t, r.gc.Schedule(dir, r.t0))
	if !r.gc.Unschedule(dir) || r.gc.Unschedule(dir) {
		t.Fatal("Unschedule should succeed once")
	}
	r.clock.Advance(2 * time.Hour)
	if n := r.gc.Collect(t.Context()); n != 0 || !exists(dir) {
		t.Fatal("an unscheduled path was collected")
	}
	// Rescheduling replaces the time.
	must(t, r.gc.Schedule(dir, r.t0))
	must(t, r.gc.Schedule(dir, r.clock.Now()))
	if n := r.gc.Collect(t.Context()); n != 0 {
		t.Fatal("rescheduling did not move the time")
	}
	if _, err := NewGC(GCOptions{Root: r.root, DiskHeadroom: 1.5}); !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("headroom 1.5: %v", err)
	}
	if _, err := NewGC(GCOptions{}); !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("no root: %v", err)
	}
	g, err := NewGC(GCOptions{Root: r.root})
	must(t, err)
	if g.MaxAllowedAge() != DefaultGCDelay || g.opts.DiskWatchInterval != DefaultDiskWatchInterval {
		t.Fatal("defaults not applied")
	}
}

func TestGCDoesNotFollowSymlinks(t *testing.T) {
	r := newGCRig(t, time.Hour, 0)
	outside := t.TempDir()
	writeFile(t, filepath.Join(outside, "precious"), "keep me")

	// A link inside the sandbox: the link goes, its target stays.
	dir := r.sandbox(t, "links")
	must(t, os.Symlink(outside, filepath.Join(dir, "out")))
	must(t, os.Symlink(filepath.Join(outside, "precious"), filepath.Join(dir, "file")))
	// A scheduled path whose parent is a link out of the work directory.
	must(t, os.Symlink(outside, filepath.Join(r.root, "escape")))

	must(t, r.gc.Schedule(dir, r.t0))
	must(t, r.gc.Schedule(filepath.Join(r.root, "escape", "precious"), r.t0))
	r.clock.Advance(2 * time.Hour)
	r.gc.Collect(t.Context())
	if exists(dir) {
		t.Fatal("sandbox not removed")
	}
	b, err := os.ReadFile(filepath.Join(outside, "precious"))
	if err != nil || string(b) != "keep me" {
		t.Fatalf("GC followed a link out: %q %v", b, err)
	}
	if r.gc.Failures() == 0 {
		t.Fatal("removing through a link out should fail")
	}
}

func TestGCGivesUpAfterRepeatedFailures(t *testing.T) {
	r := newGCRig(t, time.Hour, 0)
	dir := r.sandbox(t, "mounted")
	mnt := filepath.Join(dir, "volume")
	must(t, os.MkdirAll(mnt, 0o755))
	writeFile(t, filepath.Join(mnt, "data"), "volume data")
	// A mount point inside the sandbox that cannot be detached (it is not
	// a mount at all here): the sandbox must be left alone.
	r.gc.opts.Mounts = func() ([]string, error) { return []string{"/", mnt}, nil }
	must(t, r.gc.Schedule(dir, r.t0))
	for i := range gcMaxAttempts {
		r.clock.Advance(2 * time.Hour)
		r.gc.Collect(t.Context())
		if !exists(filepath.Join(mnt, "data")) {
			t.Fatal("GC emptied a mount point it could not detach")
		}
		if got := r.gc.Failures(); got != uint64(i+1) {
			t.Fatalf("failures %d after %d attempts", got, i+1)
		}
	}
	if r.gc.Pending() != 0 {
		t.Fatalf("still pending after %d attempts", gcMaxAttempts)
	}
}

func TestGCRun(t *testing.T) {
	root := t.TempDir()
	disk := &fakeDisk{}
	gc, err := NewGC(GCOptions{
		Root: root, Delay: 50 * time.Millisecond, DiskHeadroom: 0, DiskWatchInterval: 10 * time.Millisecond,
		DiskUsage: disk.Usage, Mounts: noMounts,
	})
	must(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- gc.Run(ctx) }()

	dir := filepath.Join(root, "slaves", "x")
	must(t, os.MkdirAll(dir, 0o755))
	must(t, gc.Schedule(dir, time.Now()))
	testutil.Eventually(t, 5*time.Second, 5*time.Millisecond, func() bool { return !exists(dir) && gc.Collected(dir) }, "path removed by Run")
	// Disk pressure: a fresh path goes at the next disk check.
	dir2 := filepath.Join(root, "slaves", "y")
	must(t, os.MkdirAll(dir2, 0o755))
	gc2, err := NewGC(GCOptions{Root: root, Delay: time.Hour, DiskHeadroom: DefaultGCDiskHeadroom, DiskWatchInterval: 10 * time.Millisecond, DiskUsage: disk.Usage, Mounts: noMounts})
	must(t, err)
	ctx2, cancel2 := context.WithCancel(t.Context())
	defer cancel2()
	go gc2.Run(ctx2)
	must(t, gc2.Schedule(dir2, time.Now()))
	disk.Set(0.5) // max age 24 minutes
	testutil.Eventually(t, 5*time.Second, 5*time.Millisecond, func() bool { return gc2.DiskUsage() == 0.5 }, "a disk check")
	gc2.Collect(t.Context())
	if !exists(dir2) {
		t.Fatal("removed without pressure")
	}
	disk.Set(0.99)
	testutil.Eventually(t, 5*time.Second, 5*time.Millisecond, func() bool { return !exists(dir2) }, "path removed under disk pressure")

	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v", err)
	}
}

func TestDiskUsageAndMounts(t *testing.T) {
	u, err := diskUsage(t.TempDir())
	if err != nil {
		testutil.Require(t, false, fmt.Sprintf("test needs statfs: %v", err))
	}
	if u < 0 || u > 1 {
		t.Fatalf("usage %v", u)
	}
	m, err := mountPoints()
	if err != nil {
		testutil.Require(t, false, fmt.Sprintf("test needs /proc/self/mountinfo: %v", err))
	}
	found := false
	for _, p := range m {
		found = found || p == "/"
	}
	if !found {
		t.Fatalf("no / among %v", m)
	}
	if got := unescapeMount(`/mnt/with\040space`); got != "/mnt/with space" {
		t.Fatalf("unescape: %q", got)
	}
}
