package isolation

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mesolite/mesolite/errdefs"
)

// ResourceStatistics carries Mesos's ResourceStatistics fields of the same
// names (cpus_user_time_secs ...) for the agent to copy into the protobuf.
// Mesos's required timestamp is seconds since the epoch.
type ResourceStatistics struct {
	Timestamp float64

	CPUsUserTimeSecs      float64
	CPUsSystemTimeSecs    float64
	CPUsNrPeriods         uint32
	CPUsNrThrottled       uint32
	CPUsThrottledTimeSecs float64

	MemRSSBytes   uint64
	MemCacheBytes uint64
	MemSwapBytes  uint64
	MemLimitBytes uint64
	MemTotalBytes uint64

	Processes uint32
	Threads   uint32
}

// Usage flattens a Stats sample into ResourceStatistics. The agent adds
// what it knows and we do not (cpus_limit, executor ids).
func Usage(s Stats) ResourceStatistics {
	ts := s.Timestamp
	if ts.IsZero() {
		ts = time.Now()
	}
	return ResourceStatistics{
		Timestamp:             float64(ts.UnixNano()) / 1e9,
		CPUsUserTimeSecs:      s.CPUUserSeconds,
		CPUsSystemTimeSecs:    s.CPUSystemSeconds,
		CPUsNrPeriods:         clamp32(s.CPUPeriods),
		CPUsNrThrottled:       clamp32(s.CPUThrottled),
		CPUsThrottledTimeSecs: s.CPUThrottledSeconds,
		MemRSSBytes:           s.MemoryRSSBytes,
		MemCacheBytes:         s.MemoryCacheBytes,
		MemSwapBytes:          s.MemorySwapBytes,
		MemLimitBytes:         s.MemoryLimitBytes,
		MemTotalBytes:         s.MemoryUsageBytes,
		Processes:             clamp32(s.Processes),
		Threads:               clamp32(s.Threads),
	}
}

func clamp32(v uint64) uint32 {
	if v > 1<<32-1 {
		return 1<<32 - 1
	}
	return uint32(v)
}

// clockTicks is USER_HZ, which Linux fixes at 100 on every architecture
// Go supports for this package.
const clockTicks = 100

// ProcessTreeStats sums cpu time and resident memory over pid and all its
// descendants from /proc: what posix/cpu and posix/mem report where no
// cgroup accounts for the container. Daemonized processes that left the
// tree are missed, as in Mesos.
func ProcessTreeStats(pid int) (Stats, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return Stats{}, err
	}
	type proc struct {
		ppid              int
		utime, stime, rss uint64
		threads           uint64
	}
	procs := map[int]proc{}
	children := map[int][]int{}
	pageSize := uint64(os.Getpagesize())
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 22 {
			continue
		}
		// f[k] is field k+3: ppid 4, utime 14, stime 15, num_threads 20, rss 24.
		var pr proc
		pr.ppid, _ = strconv.Atoi(f[1])
		pr.utime, _ = strconv.ParseUint(f[11], 10, 64)
		pr.stime, _ = strconv.ParseUint(f[12], 10, 64)
		pr.threads, _ = strconv.ParseUint(f[17], 10, 64)
		pr.rss, _ = strconv.ParseUint(f[21], 10, 64)
		procs[p] = pr
		children[pr.ppid] = append(children[pr.ppid], p)
	}
	if _, ok := procs[pid]; !ok {
		return Stats{}, fmt.Errorf("process %d: %w", pid, errdefs.ErrNotFound)
	}
	var st Stats
	var ticksU, ticksS uint64
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		pr := procs[p]
		ticksU += pr.utime
		ticksS += pr.stime
		st.MemoryRSSBytes += pr.rss * pageSize
		st.Threads += pr.threads
		st.Processes++
		queue = append(queue, children[p]...)
	}
	st.CPUUserSeconds = float64(ticksU) / clockTicks
	st.CPUSystemSeconds = float64(ticksS) / clockTicks
	st.MemoryUsageBytes = st.MemoryRSSBytes
	st.Timestamp = time.Now()
	return st, nil
}
