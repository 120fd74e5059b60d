package hostmetrics

import "testing"

func TestSnapshot(t *testing.T) {
	m := Snapshot()
	for _, k := range []string{"system/cpus_total", "system/load_1min", "system/load_5min", "system/load_15min",
		"system/mem_total_bytes", "system/mem_free_bytes"} {
		if _, ok := m[k]; !ok {
			t.Errorf("%s missing from %v", k, m)
		}
	}
	if m["system/cpus_total"] < 1 || m["system/mem_total_bytes"] < m["system/mem_free_bytes"] || m["system/mem_free_bytes"] <= 0 {
		t.Errorf("implausible: %v", m)
	}
}
