// Package hostmetrics reads Mesos's system/* gauges of the host (CPUs,
// load averages, memory), which masters and agents both report in
// /metrics/snapshot.
package hostmetrics

import (
	"os"
	"runtime"
	"strconv"
	"strings"
)

// Snapshot returns system/cpus_total, system/load_{1,5,15}min and
// system/mem_{total,free}_bytes; a figure /proc cannot give is left out.
// Free memory is what the kernel calls available: what a new task could
// get without swapping, which is what an operator means by free.
func Snapshot() map[string]float64 {
	m := map[string]float64{"system/cpus_total": float64(runtime.NumCPU())}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		for i, k := range []string{"system/load_1min", "system/load_5min", "system/load_15min"} {
			if i < len(f) {
				if v, err := strconv.ParseFloat(f[i], 64); err == nil {
					m[k] = v
				}
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			key, rest, _ := strings.Cut(line, ":")
			var name string
			switch key {
			case "MemTotal":
				name = "system/mem_total_bytes"
			case "MemAvailable":
				name = "system/mem_free_bytes"
			default:
				continue
			}
			if kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64); err == nil {
				m[name] = kb * 1024
			}
		}
	}
	return m
}
