// Package mesosprom exports a Mesos metrics snapshot (the map of
// /metrics/snapshot, keyed by Mesos's names) to Prometheus the way
// Prometheus wants it: one prefix (mesolite_), base units (bytes, seconds,
// ratios), counters typed as counters with _total, timers as quantiles,
// and HELP lines that say what each metric counts. Mesos's own names stay
// in /metrics/snapshot, where dashboards and mesos_exporter read them.
package mesosprom

import (
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports the snapshot Snapshot returns at each scrape.
type Collector struct {
	Snapshot func() map[string]float64
}

// Describe sends nothing: the set of metrics is fixed, but it is built at
// collect time (an unchecked collector).
func (Collector) Describe(chan<- *prometheus.Desc) {}

// Collect converts the snapshot.
func (c Collector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range Convert(c.Snapshot()) {
		ch <- m
	}
}

// Convert turns a snapshot into Prometheus metrics, in key order.
func Convert(s map[string]float64) []prometheus.Metric {
	var out []prometheus.Metric
	timers := map[string]bool{}
	for _, k := range slices.Sorted(maps.Keys(s)) {
		if base, _, ok := timerPart(k); ok {
			if _, has := s[base+"/count"]; has {
				timers[base] = true
				continue
			}
		}
		if _, has := s[k+"/count"]; has && strings.HasSuffix(k, "_ms") {
			timers[k] = true
			continue
		}
		name, help, value, kind := describe(k, s[k])
		out = append(out, prometheus.MustNewConstMetric(prometheus.NewDesc(name, help, nil, nil), kind, value))
	}
	for _, base := range slices.Sorted(maps.Keys(timers)) {
		out = append(out, timerMetrics(base, s)...)
	}
	return out
}

// timerPart splits "registrar/state_store_ms/p99" into its timer and part.
func timerPart(k string) (base, part string, ok bool) {
	i := strings.LastIndexByte(k, '/')
	if i < 0 {
		return "", "", false
	}
	base, part = k[:i], k[i+1:]
	if !strings.HasSuffix(base, "_ms") {
		return "", "", false
	}
	switch {
	case part == "count", part == "min", part == "max":
		return base, part, true
	case strings.HasPrefix(part, "p") && len(part) > 1:
		if _, err := strconv.Atoi(part[1:]); err == nil {
			return base, part, true
		}
	}
	return "", "", false
}

// quantile is "p999" as "0.999".
func quantile(part string) string { return "0." + part[1:] }

// timerMetrics exports a Mesos timer (NAME_ms and NAME_ms/count, /min,
// /max, /pNN over the latest samples) as NAME_seconds{quantile=...} with
// _min, _max, _last and _samples.
func timerMetrics(base string, s map[string]float64) []prometheus.Metric {
	name := promName(strings.TrimSuffix(base, "_ms")) + "_seconds"
	what := "Duration of " + phrase(base)
	var out []prometheus.Metric
	q := prometheus.NewDesc(name, what+", in seconds, over the latest samples by quantile (Mesos: "+base+"/pNN).", []string{"quantile"}, nil)
	for _, k := range slices.Sorted(maps.Keys(s)) {
		if b, part, ok := timerPart(k); ok && b == base && strings.HasPrefix(part, "p") {
			out = append(out, prometheus.MustNewConstMetric(q, prometheus.GaugeValue, s[k]/1000, quantile(part)))
		}
	}
	for _, p := range []struct{ key, suffix, help string }{
		{base + "/min", "_min", "shortest"},
		{base + "/max", "_max", "longest"},
		{base, "_last", "latest"},
	} {
		if v, ok := s[p.key]; ok {
			out = append(out, prometheus.MustNewConstMetric(prometheus.NewDesc(name+p.suffix,
				what+", the "+p.help+" of the latest samples, in seconds (Mesos: "+p.key+").", nil, nil), prometheus.GaugeValue, v/1000))
		}
	}
	if v, ok := s[base+"/count"]; ok {
		out = append(out, prometheus.MustNewConstMetric(prometheus.NewDesc(name+"_samples",
			"Samples the quantiles of "+name+" are taken over (Mesos: "+base+"/count).", nil, nil), prometheus.GaugeValue, v))
	}
	return out
}

// describe names, explains, scales and types one metric.
func describe(k string, v float64) (string, string, float64, prometheus.ValueType) {
	leaf := k[strings.LastIndexByte(k, '/')+1:]
	name := promName(k)
	kind := prometheus.GaugeValue
	help := explain(k, leaf)
	switch {
	case strings.HasSuffix(leaf, "_percent"):
		name = strings.TrimSuffix(name, "_percent") + "_ratio"
	case strings.HasSuffix(leaf, "_secs"):
		name = strings.TrimSuffix(name, "_secs") + "_seconds"
	case strings.HasSuffix(leaf, "_ms"):
		name = strings.TrimSuffix(name, "_ms") + "_seconds"
		v /= 1000
	case megabytes(k):
		name += "_bytes"
		v *= 1 << 20
	}
	if Counters[k] {
		kind = prometheus.CounterValue
		name += "_total"
	}
	return name, help + " (Mesos: " + k + ").", v, kind
}

// megabytes says whether k is a memory or disk amount, which Mesos gives
// in MB.
func megabytes(k string) bool {
	if strings.HasSuffix(k, "_bytes") || strings.HasSuffix(k, "_percent") {
		return false
	}
	leaf := k[strings.LastIndexByte(k, '/')+1:]
	if strings.HasPrefix(leaf, "mem_") || strings.HasPrefix(leaf, "disk_") {
		return true
	}
	// allocator/mesos/resources/mem/total
	return strings.Contains(k, "/resources/mem/") || strings.Contains(k, "/resources/disk/")
}

// promName is k as a Prometheus name: mesolite_ and its path, Mesos's
// "slave" said "agent".
func promName(k string) string {
	k = strings.ReplaceAll(k, "slaves", "agents")
	k = strings.ReplaceAll(k, "slave", "agent")
	b := []byte("mesolite_" + k)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}

// phrase is a metric's path in words: "master/tasks_running" is "master:
// tasks running".
func phrase(k string) string {
	k = strings.ReplaceAll(k, "slave", "agent")
	return strings.NewReplacer("/", ": ", "_", " ").Replace(k)
}

var resourceWords = map[string]string{"cpus": "CPUs", "mem": "Memory (bytes)", "disk": "Disk (bytes)", "gpus": "GPUs"}

// explain says what a metric measures, from its Mesos name.
func explain(k, leaf string) string {
	if h, ok := helps[k]; ok {
		return h
	}
	scope := "the cluster's agents"
	if strings.HasPrefix(k, "slave/") {
		scope = "this agent"
	}
	parts := strings.SplitN(leaf, "_", 2)
	if res, ok := resourceWords[parts[0]]; ok && len(parts) == 2 {
		switch parts[1] {
		case "total":
			return res + " of " + scope
		case "used":
			return res + " allocated to tasks and executors on " + scope
		case "offered":
			return res + " in outstanding offers"
		case "percent":
			return "Fraction of the " + strings.ToLower(strings.TrimSuffix(res, " (bytes)")) + " of " + scope + " allocated"
		case "revocable_total", "revocable_used":
			return "Revocable " + strings.ToLower(res) + " (" + strings.TrimPrefix(parts[1], "revocable_") + ") of " + scope
		case "revocable_percent":
			return "Fraction of the revocable " + strings.ToLower(strings.TrimSuffix(res, " (bytes)")) + " of " + scope + " allocated"
		}
	}
	switch {
	case strings.HasPrefix(leaf, "tasks_") && Counters[k]:
		return "Tasks that reached " + strings.ToUpper("task_"+strings.TrimPrefix(leaf, "tasks_")) + " since the process started"
	case strings.HasPrefix(leaf, "tasks_"):
		return "Tasks now in " + strings.ToUpper("task_"+strings.TrimPrefix(leaf, "tasks_"))
	case strings.HasPrefix(leaf, "messages_"):
		return "Calls and messages of type " + strings.TrimPrefix(leaf, "messages_") + " received"
	case strings.HasPrefix(leaf, "frameworks_"):
		return "Frameworks now " + strings.TrimPrefix(leaf, "frameworks_")
	case strings.HasPrefix(leaf, "slaves_"):
		return "Agents now " + strings.TrimPrefix(leaf, "slaves_")
	case strings.HasPrefix(leaf, "executors_"):
		return "Executors " + strings.TrimPrefix(leaf, "executors_")
	}
	if Counters[k] {
		return "Count of " + phrase(k) + " since the process started"
	}
	return "Mesos's " + phrase(k)
}

// helps are the metrics whose name says too little.
var helps = map[string]string{
	"master/elected":                              "1 on the leading master, 0 on the others",
	"master/uptime_secs":                          "Seconds since the master started",
	"slave/uptime_secs":                           "Seconds since the agent started",
	"slave/registered":                            "1 while the agent is registered with a master",
	"master/outstanding_offers":                   "Offers made and not yet accepted, declined or rescinded",
	"master/operator_event_stream_subscribers":    "Operator API SUBSCRIBE streams open",
	"master/event_queue_messages":                 "Messages waiting in the master's queue",
	"master/event_queue_dispatches":               "Dispatches waiting in the master's queue",
	"master/event_queue_http_requests":            "HTTP requests waiting in the master's queue",
	"master/dropped_messages":                     "Messages the master dropped (unknown or invalid senders)",
	"system/cpus_total":                           "CPUs of the host",
	"system/load_1min":                            "Load average of the host over 1 minute",
	"system/load_5min":                            "Load average of the host over 5 minutes",
	"system/load_15min":                           "Load average of the host over 15 minutes",
	"system/mem_total_bytes":                      "Memory of the host, in bytes",
	"system/mem_free_bytes":                       "Free memory of the host, in bytes",
	"registrar/state_fetch_ms":                    "Time the registry took to read at recovery, in seconds",
	"gc/path_removals_pending":                    "Sandboxes waiting to be garbage collected",
	"containerizer/fetcher/cache_entries":         "Entries in the fetcher's cache",
	"containerizer/fetcher/cache_size_used_bytes": "Bytes the fetcher's cache holds",
}

// Counters are the snapshot keys that only grow, masters' and agents'.
var Counters = set(
	"master/slave_registrations", "master/slave_reregistrations", "master/slave_removals",
	"master/slave_removals/reason_unhealthy", "master/slave_removals/reason_unregistered",
	"master/slave_removals/reason_registered", "master/recovery_slave_removals",
	"master/slave_shutdowns_scheduled", "master/slave_shutdowns_completed", "master/slave_shutdowns_canceled",
	"master/frameworks_removed",
	"master/tasks_finished", "master/tasks_failed", "master/tasks_killed", "master/tasks_lost",
	"master/tasks_error", "master/tasks_dropped", "master/tasks_gone", "master/tasks_gone_by_operator",
	"master/tasks_launched", "master/invalid_tasks",
	"master/valid_status_updates", "master/invalid_status_updates",
	"master/valid_status_update_acknowledgements", "master/invalid_status_update_acknowledgements",
	"master/dropped_messages", "master/offers_rescinded",
	"master/valid_framework_to_executor_messages", "master/valid_executor_to_framework_messages",
	"master/invalid_executor_to_framework_messages", "master/invalid_framework_to_executor_messages",
	"master/messages_decline_offers", "master/messages_scheduler_calls", "master/messages_accept_offers",
	"master/messages_kill_task", "master/messages_reconcile_tasks", "master/messages_revive_offers",
	"master/messages_suppress_offers", "master/messages_teardown_framework",
	"master/messages_status_update_acknowledgement", "master/messages_shutdown_executor",
	"master/messages_resource_request", "master/messages_framework_to_executor", "master/messages_launch_tasks",
	"master/messages_register_framework", "master/messages_reregister_framework",
	"master/messages_unregister_framework", "master/messages_deactivate_framework", "master/messages_authenticate",
	"master/messages_register_slave", "master/messages_reregister_slave", "master/messages_unregister_slave",
	"master/messages_status_update", "master/messages_exited_executor", "master/messages_executor_to_framework",
	"master/messages_update_slave",
	"allocator/mesos/allocation_runs", "registrar/writes", "registrar/operations", "registrar/write_errors",
	"slave/tasks_finished", "slave/tasks_failed", "slave/tasks_killed", "slave/tasks_lost", "slave/tasks_gone",
	"slave/executors_terminated", "slave/executors_preempted", "slave/container_launch_errors",
	"slave/containers_launched", "slave/recovery_errors",
	"slave/valid_status_updates", "slave/invalid_status_updates",
	"slave/valid_framework_messages", "slave/invalid_framework_messages",
	"containerizer/fetcher/task_fetches_succeeded", "containerizer/fetcher/task_fetches_failed",
	"containerizer/mesos/container_destroy_errors",
	"gc/path_removals_succeeded", "gc/path_removals_failed",
)

func set(keys ...string) map[string]bool {
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m
}
