package isolation

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/containerd/cgroups/v3/cgroup1"
	"golang.org/x/sys/unix"
)

// v1Cgroup is a container cgroup on cgroup v1: one directory per controller
// hierarchy, <hier>/<controller>/<rel>. Hybrid hosts (v1 controllers plus an
// empty v2 mount at unified/) are v1 for our purposes.
type v1Cgroup struct {
	hier  string
	rel   string // "/mesolite/<id>"
	ctrls []string
	cg    cgroup1.Cgroup
}

func (c *v1Cgroup) describe() string { return "v1:" + c.rel }

func (c *v1Cgroup) dir(ctrl string) string { return filepath.Join(c.hier, ctrl, c.rel) }

func (c *v1Cgroup) has(ctrl string) bool {
	for _, x := range c.ctrls {
		if x == ctrl {
			return true
		}
	}
	return false
}

// subsystems hands containerd's cgroup1 exactly our controllers, rooted at
// our hierarchy, instead of everything mounted on the host.
func (c *v1Cgroup) subsystems() ([]cgroup1.Subsystem, error) {
	var out []cgroup1.Subsystem
	for _, ctrl := range c.ctrls {
		switch ctrl {
		case "freezer":
			out = append(out, cgroup1.NewFreezer(c.hier))
		case "cpu":
			out = append(out, cgroup1.NewCpu(c.hier))
		case "cpuacct":
			out = append(out, cgroup1.NewCpuacct(c.hier))
		case "memory":
			// Stats read memsw only where swap accounting exists, and never
			// the kmem files some kernels dropped.
			out = append(out, cgroup1.NewMemory(c.hier, cgroup1.OptionalSwap(), cgroup1.IgnoreModules("kmem", "kmem.tcp")))
		case "pids":
			out = append(out, cgroup1.NewPids(c.hier))
		}
	}
	return out, nil
}

func (c *v1Cgroup) exists() bool {
	for _, ctrl := range c.ctrls {
		if _, err := os.Stat(c.dir(ctrl)); err == nil {
			return true
		}
	}
	return false
}

func (c *v1Cgroup) child(id string) backend {
	return &v1Cgroup{hier: c.hier, rel: c.rel + "/" + id, ctrls: c.ctrls}
}

func (c *v1Cgroup) dirs() []string {
	out := make([]string, len(c.ctrls))
	for i, ctrl := range c.ctrls {
		out[i] = c.dir(ctrl)
	}
	return out
}

func (c *v1Cgroup) procsFiles() []string {
	out := c.dirs()
	for i := range out {
		out[i] = filepath.Join(out[i], "cgroup.procs")
	}
	return out
}

// create makes the cgroup in every hierarchy; v1 controllers reach nested
// cgroups without more ado, so nestable changes nothing.
func (c *v1Cgroup) create(l Limits, nestable bool) error {
	cg, err := cgroup1.New(cgroup1.StaticPath(c.rel), l.LinuxResources(), cgroup1.WithHierarchy(c.subsystems))
	if err != nil {
		return err
	}
	c.cg = cg
	return c.fixUnlimited(l)
}

// fixUnlimited writes the "no limit" values containerd's v1 drivers skip.
func (c *v1Cgroup) fixUnlimited(l Limits) error {
	if c.has("pids") && l.Pids <= 0 {
		if err := writeFile(filepath.Join(c.dir("pids"), "pids.max"), "max"); err != nil {
			return err
		}
	}
	return nil
}

func (c *v1Cgroup) load() error {
	cg, err := cgroup1.Load(cgroup1.StaticPath(c.rel), cgroup1.WithHierarchy(c.subsystems))
	if err != nil {
		return err
	}
	c.cg = cg
	return nil
}

func (c *v1Cgroup) update(l Limits) error {
	if c.cg == nil {
		return errors.New("cgroup not created or loaded")
	}
	if err := c.cg.Update(l.LinuxResources()); err != nil {
		return err
	}
	return c.fixUnlimited(l)
}

func (c *v1Cgroup) addProc(pid int) error {
	// Freezer first: from then on Kill can reach the process whatever happens
	// with the other controllers.
	for _, ctrl := range c.ctrls {
		if err := writeFile(filepath.Join(c.dir(ctrl), "cgroup.procs"), strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("%s: %w", ctrl, err)
		}
	}
	return nil
}

func (c *v1Cgroup) procs() ([]int, error) {
	return walkPids(c.dir("freezer"), "cgroup.procs")
}

func (c *v1Cgroup) stats() (Stats, error) {
	var s Stats
	if c.cg == nil {
		return s, errors.New("cgroup not created or loaded")
	}
	m, err := c.cg.Stat()
	if err != nil {
		return s, err
	}
	if cpu := m.GetCPU(); cpu != nil {
		s.CPUUserSeconds = float64(cpu.GetUsage().GetUser()) / 1e9
		s.CPUSystemSeconds = float64(cpu.GetUsage().GetKernel()) / 1e9
		s.CPUPeriods = cpu.GetThrottling().GetPeriods()
		s.CPUThrottled = cpu.GetThrottling().GetThrottledPeriods()
		s.CPUThrottledSeconds = float64(cpu.GetThrottling().GetThrottledTime()) / 1e9
	}
	if mem := m.GetMemory(); mem != nil {
		s.MemoryRSSBytes = mem.GetTotalRSS()
		s.MemoryCacheBytes = mem.GetTotalCache()
		s.MemoryUsageBytes = mem.GetUsage().GetUsage()
		// memsw counts memory plus swap, where swap is accounted at all.
		if sw := mem.GetSwap().GetUsage(); sw > s.MemoryUsageBytes {
			s.MemorySwapBytes = sw - s.MemoryUsageBytes
		}
		s.MemoryMaxUsageBytes = mem.GetUsage().GetMax()
		s.MemoryLimitBytes = v1Limit(mem.GetUsage().GetLimit())
	}
	if oom := m.GetMemoryOomControl(); oom != nil {
		s.OOMKills = oom.GetOomKill()
	}
	procs, err := c.procs()
	if err != nil {
		return s, err
	}
	s.Processes = uint64(len(procs))
	tasks, err := walkPids(c.dir("freezer"), "tasks")
	if err != nil {
		return s, err
	}
	s.Threads = uint64(len(tasks))
	return s, nil
}

// v1Limit maps the kernel's "unlimited" (PAGE_COUNTER_MAX in bytes, about
// 2^63 rounded down to a page) to 0.
func v1Limit(v uint64) uint64 {
	if v >= 1<<62 {
		return 0
	}
	return v
}

func (c *v1Cgroup) killOnce(ctx context.Context) error {
	state := filepath.Join(c.dir("freezer"), "freezer.state")
	frozen := freezeWait(ctx, time.Second,
		func() error { return writeFile(state, "FROZEN") },
		func() bool { s, _ := readTrimmed(state); return s == "FROZEN" })
	// Frozen or not, kill what is there; a pid forked in between is found in
	// the next round. v1 frozen tasks only die once thawed.
	pids, err := c.procs()
	if err == nil {
		killPids(pids)
	}
	if terr := writeFile(state, "THAWED"); terr != nil && !errors.Is(terr, fs.ErrNotExist) {
		return terr
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if frozen != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}

func (c *v1Cgroup) remove() error {
	var errs []error
	for _, ctrl := range c.ctrls {
		if err := rmdirTree(c.dir(ctrl)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (c *v1Cgroup) intoCgroupFD() (*os.File, error) { return nil, nil }

func (c *v1Cgroup) watchOOM(ctx context.Context, id string, out chan<- OOMEvent) error {
	if !c.has("memory") || c.cg == nil {
		return errors.New("the memory controller is not in use (isolation lacks cgroups/mem)")
	}
	efd, err := c.cg.OOMEventFD()
	if err != nil {
		return err
	}
	// Non-blocking, so the runtime poller waits on it instead of a thread,
	// and closing it on ctx end wakes the reader.
	if err := unix.SetNonblock(int(efd), true); err != nil {
		unix.Close(int(efd))
		return err
	}
	f := os.NewFile(efd, "oom-eventfd")
	memDir := c.dir("memory")
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		<-ctx.Done()
		f.Close()
	}()
	go func() {
		defer cancel()
		defer close(out)
		buf := make([]byte, 8)
		for {
			if _, err := f.Read(buf); err != nil {
				return
			}
			// The eventfd also fires when the cgroup is removed.
			if _, err := os.Stat(memDir); err != nil {
				return
			}
			ev := OOMEvent{ContainerID: id, Time: time.Now()}
			ev.LimitBytes = v1Limit(readUintFile(filepath.Join(memDir, "memory.limit_in_bytes")))
			ev.MaxUsageBytes = readUintFile(filepath.Join(memDir, "memory.max_usage_in_bytes"))
			if b, err := os.ReadFile(filepath.Join(memDir, "memory.stat")); err == nil {
				ev.MemoryStat = string(b)
			}
			offer(out, ev)
		}
	}()
	return nil
}

func readUintFile(path string) uint64 {
	s, err := readTrimmed(path)
	if err != nil {
		return 0
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0
	}
	return v
}

// offer hands ev to out without blocking: an event already waiting says the
// same thing.
func offer(out chan<- OOMEvent, ev OOMEvent) {
	select {
	case out <- ev:
	default:
	}
}
