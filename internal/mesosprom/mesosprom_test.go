package mesosprom

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// What a scrape shows for Mesos's names: one prefix, base units, counters
// with _total, timers as quantiles, and HELP that says what is counted.
func TestConvert(t *testing.T) {
	snap := map[string]float64{
		"master/mem_total":                    2048,
		"master/cpus_percent":                 0.25,
		"master/uptime_secs":                  12.5,
		"master/tasks_running":                3,
		"master/tasks_killed":                 7,
		"master/slaves_active":                2,
		"slave/disk_used":                     1,
		"slave/tasks_failed":                  4,
		"registrar/state_fetch_ms":            1500,
		"registrar/state_store_ms":            4,
		"registrar/state_store_ms/count":      10,
		"registrar/state_store_ms/min":        1,
		"registrar/state_store_ms/max":        9,
		"registrar/state_store_ms/p50":        3,
		"registrar/state_store_ms/p99":        8,
		"system/mem_total_bytes":              1 << 30,
		"allocator/mesos/resources/mem/total": 1,
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(Collector{Snapshot: func() map[string]float64 { return snap }})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	type sample struct {
		kind, help string
		value      float64
	}
	got := map[string]sample{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			v := m.GetGauge().GetValue()
			if mf.GetType().String() == "COUNTER" {
				v = m.GetCounter().GetValue()
			}
			got[name] = sample{mf.GetType().String(), mf.GetHelp(), v}
		}
	}
	for _, w := range []struct {
		name, kind, help string
		value            float64
	}{
		{"mesolite_master_mem_total_bytes", "GAUGE", "Memory (bytes) of the cluster's agents (Mesos: master/mem_total).", 2048 << 20},
		{"mesolite_master_cpus_ratio", "GAUGE", "Fraction of the cpus of the cluster's agents allocated (Mesos: master/cpus_percent).", 0.25},
		{"mesolite_master_uptime_seconds", "GAUGE", "Seconds since the master started (Mesos: master/uptime_secs).", 12.5},
		{"mesolite_master_tasks_running", "GAUGE", "Tasks now in TASK_RUNNING (Mesos: master/tasks_running).", 3},
		{"mesolite_master_tasks_killed_total", "COUNTER", "Tasks that reached TASK_KILLED since the process started (Mesos: master/tasks_killed).", 7},
		{"mesolite_master_agents_active", "GAUGE", "Agents now active (Mesos: master/slaves_active).", 2},
		{"mesolite_agent_disk_used_bytes", "GAUGE", "Disk (bytes) allocated to tasks and executors on this agent (Mesos: slave/disk_used).", 1 << 20},
		{"mesolite_agent_tasks_failed_total", "COUNTER", "Tasks that reached TASK_FAILED since the process started (Mesos: slave/tasks_failed).", 4},
		{"mesolite_registrar_state_fetch_seconds", "GAUGE", "Time the registry took to read at recovery, in seconds (Mesos: registrar/state_fetch_ms).", 1.5},
		{"mesolite_registrar_state_store_seconds{quantile=0.50}", "GAUGE", "", 0.003},
		{"mesolite_registrar_state_store_seconds{quantile=0.99}", "GAUGE", "", 0.008},
		{"mesolite_registrar_state_store_seconds_max", "GAUGE", "", 0.009},
		{"mesolite_registrar_state_store_seconds_last", "GAUGE", "", 0.004},
		{"mesolite_registrar_state_store_seconds_samples", "GAUGE", "", 10},
		{"mesolite_system_mem_total_bytes", "GAUGE", "Memory of the host, in bytes (Mesos: system/mem_total_bytes).", 1 << 30},
		{"mesolite_allocator_mesos_resources_mem_total_bytes", "GAUGE", "", 1 << 20},
	} {
		g, ok := got[w.name]
		if !ok {
			t.Errorf("%s missing", w.name)
			continue
		}
		if g.kind != w.kind || (w.help != "" && g.help != w.help) || g.value != w.value {
			t.Errorf("%s = %s %v %q; want %s %v %q", w.name, g.kind, g.value, g.help, w.kind, w.value, w.help)
		}
	}
	if len(got) != len(snap) { // each key is one series
		t.Errorf("%d series from %d keys", len(got), len(snap))
	}
	// Each says its Mesos name.
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "mesolite_") || !strings.Contains(mf.GetHelp(), "(Mesos: ") {
			t.Errorf("%s: %q", mf.GetName(), mf.GetHelp())
		}
	}
}
