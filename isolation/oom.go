package isolation

import (
	"fmt"
	"strings"
	"time"
)

// OOMEvent says the kernel OOM-killed a process of a container because the
// container hit its memory limit. The containerizer fails the task with
// REASON_CONTAINER_LIMITATION_MEMORY and OOMMessage(ev).
type OOMEvent struct {
	ContainerID string
	Time        time.Time
	// LimitBytes is the memory limit in force; 0 if unknown or unlimited.
	LimitBytes uint64
	// MaxUsageBytes is the peak usage (v1 memory.max_usage_in_bytes, v2
	// memory.peak, else the highest usage the watcher saw).
	MaxUsageBytes uint64
	// MemoryStat is memory.stat as read when the event arrived.
	MemoryStat string
}

// OOMMessage renders ev the way mesos-agent words a memory limitation, so
// people and tools that grep for it find it:
//
//	Memory limit exceeded: Requested: 64MB Maximum Used: 64MB
//
//	MEMORY STATISTICS:
//	cache 0 ...
func OOMMessage(ev OOMEvent) string {
	var b strings.Builder
	b.WriteString("Memory limit exceeded: ")
	if ev.LimitBytes > 0 {
		fmt.Fprintf(&b, "Requested: %s ", FormatBytes(ev.LimitBytes))
	}
	fmt.Fprintf(&b, "Maximum Used: %s\n", FormatBytes(ev.MaxUsageBytes))
	if ev.MemoryStat != "" {
		fmt.Fprintf(&b, "\nMEMORY STATISTICS: \n%s\n", ev.MemoryStat)
	}
	return b.String()
}

// FormatBytes writes a byte count as Mesos's stout Bytes does: in the
// largest unit (B, KB, MB, GB, TB; powers of 1024) that loses no
// information, so 67108864 is "64MB" and 67112960 is "65540KB".
func FormatBytes(n uint64) string {
	units := []string{"B", "KB", "MB", "GB"}
	for _, u := range units {
		if n == 0 || n%1024 != 0 {
			return fmt.Sprintf("%d%s", n, u)
		}
		n /= 1024
	}
	return fmt.Sprintf("%dTB", n)
}
