package isolation

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/containerd/cgroups/v3/cgroup2"
	"golang.org/x/sys/unix"
)

// v2Cgroup is a container cgroup on the unified hierarchy: one directory,
// <hier>/<rel>, with the controllers its ancestors pass down.
type v2Cgroup struct {
	hier  string
	rel   string // "/mesolite/<id>"
	path  string
	ctrls []string
	mgr   *cgroup2.Manager
	// nestable: the container's processes live in <path>/leaf, and its
	// controllers are enabled for children (nested cgroups and the leaf).
	nestable bool
}

// v2Leaf is the child cgroup that holds a nestable container's own
// processes (Mesos's cgroups v2 isolator calls it the same).
const v2Leaf = "leaf"

// procDir is where the container's processes go.
func (c *v2Cgroup) procDir() string {
	if c.nestable {
		return filepath.Join(c.path, v2Leaf)
	}
	return c.path
}

func (c *v2Cgroup) child(id string) backend {
	return &v2Cgroup{hier: c.hier, rel: c.rel + "/" + id, path: filepath.Join(c.path, id), ctrls: c.ctrls}
}

func (c *v2Cgroup) dirs() []string { return []string{c.path} }

func (c *v2Cgroup) procsFiles() []string {
	return []string{filepath.Join(c.path, "cgroup.procs")}
}

func (c *v2Cgroup) describe() string { return "v2:" + c.rel }

func (c *v2Cgroup) has(ctrl string) bool {
	for _, x := range c.ctrls {
		if x == ctrl {
			return true
		}
	}
	return false
}

func (c *v2Cgroup) exists() bool {
	_, err := os.Stat(c.path)
	return err == nil
}

func (c *v2Cgroup) create(l Limits, nestable bool) error {
	if err := os.Mkdir(c.path, 0o755); err != nil {
		return err
	}
	if err := c.load(); err != nil {
		return err
	}
	if err := c.update(l); err != nil {
		return err
	}
	if !nestable {
		return nil
	}
	// Empty still, so the controllers may be passed down; then the leaf.
	if err := enableV2Controllers(c.path, c.ctrls); err != nil {
		return err
	}
	if err := os.Mkdir(filepath.Join(c.path, v2Leaf), 0o755); err != nil {
		return err
	}
	c.nestable = true
	return nil
}

func (c *v2Cgroup) load() error {
	mgr, err := cgroup2.Load(c.rel, cgroup2.WithMountpoint(c.hier))
	if err != nil {
		return err
	}
	c.mgr = mgr
	c.nestable = fileExists(filepath.Join(c.path, v2Leaf))
	return nil
}

// resources converts l for v2, keeping only the controllers in use (the
// files of the others do not exist) and replacing the v1 "-1 means no limit"
// values, which v2 files refuse, with their "max" forms.
func (c *v2Cgroup) resources(l Limits) *cgroup2.Resources {
	spec := l.LinuxResources()
	r := cgroup2.ToResources(spec)
	if !c.has("cpu") {
		r.CPU = nil
	} else if *spec.CPU.Quota < 0 {
		r.CPU.Max = cgroup2.NewCPUMax(nil, spec.CPU.Period)
	}
	if !c.has("memory") {
		r.Memory = nil
	} else if *spec.Memory.Limit < 0 {
		r.Memory.Max = nil
	}
	if !c.has("pids") {
		r.Pids = nil
	}
	return r
}

func (c *v2Cgroup) update(l Limits) error {
	if c.mgr == nil {
		return errors.New("cgroup not created or loaded")
	}
	if err := c.mgr.Update(c.resources(l)); err != nil {
		return err
	}
	if !c.has("memory") {
		return nil
	}
	if l.MemoryBytes <= 0 {
		return writeFile(filepath.Join(c.path, "memory.max"), "max")
	}
	// No swap, so the limit is the limit; the file exists only where the
	// kernel accounts swap.
	if swap := filepath.Join(c.path, "memory.swap.max"); fileExists(swap) {
		return writeFile(swap, "0")
	}
	return nil
}

func (c *v2Cgroup) addProc(pid int) error {
	return writeFile(filepath.Join(c.procDir(), "cgroup.procs"), strconv.Itoa(pid))
}

func (c *v2Cgroup) procs() ([]int, error) {
	return walkPids(c.path, "cgroup.procs")
}

func (c *v2Cgroup) stats() (Stats, error) {
	var s Stats
	if c.mgr == nil {
		return s, errors.New("cgroup not created or loaded")
	}
	m, err := c.mgr.StatFiltered(cgroup2.StatCPU | cgroup2.StatMemory | cgroup2.StatMemoryEvents)
	if err != nil {
		return s, err
	}
	if cpu := m.GetCPU(); cpu != nil {
		s.CPUUserSeconds = float64(cpu.GetUserUsec()) / 1e6
		s.CPUSystemSeconds = float64(cpu.GetSystemUsec()) / 1e6
		s.CPUPeriods = cpu.GetNrPeriods()
		s.CPUThrottled = cpu.GetNrThrottled()
		s.CPUThrottledSeconds = float64(cpu.GetThrottledUsec()) / 1e6
	}
	if mem := m.GetMemory(); mem != nil && c.has("memory") {
		s.MemoryRSSBytes = mem.GetAnon()
		s.MemoryCacheBytes = mem.GetFile()
		s.MemoryUsageBytes = mem.GetUsage()
		s.MemoryMaxUsageBytes = mem.GetMaxUsage()
		s.MemorySwapBytes = mem.GetSwapUsage()
		s.MemoryLimitBytes = v2Limit(mem.GetUsageLimit())
	}
	if ev := m.GetMemoryEvents(); ev != nil {
		s.OOMKills = ev.GetOomKill()
	}
	if c.nestable {
		// memory.events counts the nested cgroups' kills too; a nested
		// task's OOM is not the container's. Its own limit's OOMs are in
		// memory.events.local (5.2+).
		if local := readKV(filepath.Join(c.path, "memory.events.local")); len(local) > 0 {
			s.OOMKills = local["oom"]
		}
	}
	procs, err := c.procs()
	if err != nil {
		return s, err
	}
	s.Processes = uint64(len(procs))
	threads, err := walkPids(c.path, "cgroup.threads")
	if err != nil {
		return s, err
	}
	s.Threads = uint64(len(threads))
	return s, nil
}

// v2Limit maps "max" (read as MaxUint64 by cgroup2) to 0.
func v2Limit(v uint64) uint64 {
	if v == math.MaxUint64 {
		return 0
	}
	return v
}

func (c *v2Cgroup) killOnce(ctx context.Context) error {
	// cgroup.kill (5.14+) kills the whole subtree in the kernel, racing no fork.
	if err := writeFile(filepath.Join(c.path, "cgroup.kill"), "1"); err == nil {
		return nil
	}
	freeze := filepath.Join(c.path, "cgroup.freeze")
	if fileExists(freeze) {
		_ = freezeWait(ctx, time.Second,
			func() error { return writeFile(freeze, "1") },
			func() bool { return readKV(filepath.Join(c.path, "cgroup.events"))["frozen"] == 1 })
	}
	pids, err := c.procs()
	if err == nil {
		// v2 frozen tasks die of SIGKILL without being thawed first.
		killPids(pids)
	}
	if fileExists(freeze) {
		_ = writeFile(freeze, "0")
	}
	return err
}

func (c *v2Cgroup) remove() error { return rmdirTree(c.path) }

func (c *v2Cgroup) intoCgroupFD() (*os.File, error) {
	return os.OpenFile(c.procDir(), unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
}

// readKV parses a "key value" per line file (memory.events, cgroup.events).
func readKV(path string) map[string]uint64 {
	out := map[string]uint64{}
	f, err := os.Open(path)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
			out[k] = n
		}
	}
	return out
}

// watchOOM watches memory.events with inotify (the kernel signals a modify
// on every counter change) and reports each rise of oom_kill.
func (c *v2Cgroup) watchOOM(ctx context.Context, id string, out chan<- OOMEvent) error {
	if !c.has("memory") {
		return errors.New("the memory controller is not in use (isolation lacks cgroups/mem)")
	}
	events := filepath.Join(c.path, "memory.events")
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return fmt.Errorf("inotify: %w", err)
	}
	if _, err := unix.InotifyAddWatch(fd, events, unix.IN_MODIFY); err != nil {
		unix.Close(fd)
		return fmt.Errorf("inotify watch %s: %w", events, err)
	}
	f := os.NewFile(uintptr(fd), "oom-inotify")
	seen := readKV(events)["oom_kill"]
	local := filepath.Join(c.path, "memory.events.local")
	seenLocal := readKV(local)["oom"]
	peak := readUintFile(filepath.Join(c.path, "memory.current"))
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		<-ctx.Done()
		f.Close()
	}()
	go func() {
		defer cancel()
		defer close(out)
		buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
		for {
			n, err := f.Read(buf)
			if err != nil {
				return
			}
			if inotifyIgnored(buf[:n]) {
				// The watch went away with the cgroup.
				return
			}
			// Without memory.peak (before 5.19) the peak is the highest usage
			// seen at an event; memory.events changes when the limit is hit,
			// so that is close to the truth.
			peak = max(peak, readUintFile(filepath.Join(c.path, "memory.current")))
			kills, ok := readKV(events)["oom_kill"]
			if !ok {
				if !c.exists() {
					return
				}
				continue
			}
			if kills <= seen {
				continue
			}
			seen = kills
			if c.nestable {
				// A kill under a nested cgroup's own limit is that
				// task's (its own watch reports it), not the
				// container's: only an OOM of this cgroup's limit is.
				if l, ok := readKV(local)["oom"]; ok {
					if l <= seenLocal {
						continue
					}
					seenLocal = l
				}
			}
			ev := OOMEvent{ContainerID: id, Time: time.Now(), MaxUsageBytes: peak}
			if p, err := readTrimmed(filepath.Join(c.path, "memory.peak")); err == nil {
				if v, err := strconv.ParseUint(p, 10, 64); err == nil {
					ev.MaxUsageBytes = v
				}
			}
			if lim, err := readTrimmed(filepath.Join(c.path, "memory.max")); err == nil && lim != "max" {
				ev.LimitBytes, _ = strconv.ParseUint(lim, 10, 64)
			}
			if b, err := os.ReadFile(filepath.Join(c.path, "memory.stat")); err == nil {
				ev.MemoryStat = string(b)
			}
			offer(out, ev)
		}
	}()
	return nil
}

// inotifyIgnored reports whether buf holds an IN_IGNORED event (the watched
// file was removed).
func inotifyIgnored(buf []byte) bool {
	for len(buf) >= unix.SizeofInotifyEvent {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[0]))
		if ev.Mask&unix.IN_IGNORED != 0 {
			return true
		}
		next := unix.SizeofInotifyEvent + int(ev.Len)
		if next > len(buf) {
			break
		}
		buf = buf[next:]
	}
	return false
}
