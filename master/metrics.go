package master

import (
	"net/http"
	"slices"
	"strings"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/resources"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// counters are the master's cumulative metrics, guarded by Master.mu.
type counters struct {
	schedulerCalls       map[scheduler.Call_Type]uint64
	terminal             map[mesos.TaskState]uint64
	allocationRuns       uint64
	offersRescinded      uint64
	offersDeclined       uint64
	droppedMessages      uint64
	frameworksRemoved    uint64
	invalidTasks         uint64
	tasksLaunched        uint64
	validStatusUpdates   uint64
	invalidStatusUpdates uint64
	validAcks            uint64
	invalidAcks          uint64
	agentRegistrations   uint64
	agentReregistrations uint64
	agentRemovals        uint64
	agentsUnhealthy      uint64 // removals for missed pings
	frameworkToExecutor  uint64
	executorToFramework  uint64
	registryWrites       uint64
	registryOps          uint64
	registryWriteErrors  uint64
}

// counterMetrics are the snapshot keys that only grow; Prometheus exports
// them as counters, the rest as gauges.
var counterMetrics = setOf(
	"master/slave_registrations",
	"master/slave_reregistrations",
	"master/slave_removals",
	"master/slave_removals/reason_unhealthy",
	"master/frameworks_removed",
	"master/tasks_finished",
	"master/tasks_failed",
	"master/tasks_killed",
	"master/tasks_lost",
	"master/tasks_error",
	"master/tasks_dropped",
	"master/tasks_gone",
	"master/tasks_gone_by_operator",
	"master/tasks_launched",
	"master/invalid_tasks",
	"master/valid_status_updates",
	"master/invalid_status_updates",
	"master/valid_status_update_acknowledgements",
	"master/invalid_status_update_acknowledgements",
	"master/dropped_messages",
	"master/offers_rescinded",
	"master/messages_decline_offers",
	"master/valid_framework_to_executor_messages",
	"master/valid_executor_to_framework_messages",
	"master/messages_scheduler_calls",
	"master/messages_accept_offers",
	"master/messages_kill_task",
	"master/messages_reconcile_tasks",
	"master/messages_revive_offers",
	"master/messages_suppress_offers",
	"master/messages_teardown_framework",
	"master/messages_status_update_acknowledgement",
	"master/messages_shutdown_executor",
	"allocator/mesos/allocation_runs",
	"registrar/writes",
	"registrar/operations",
	"registrar/write_errors",
)

func setOf(keys ...string) map[string]bool {
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m
}

// metricsLocked computes /metrics/snapshot: Mesos's metric names, every
// value a number.
func (m *Master) metricsLocked() map[string]float64 {
	s := map[string]float64{}
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	s["master/elected"] = b(m.role == roleLeading)
	s["master/uptime_secs"] = m.clock.Now().Sub(m.startTime).Seconds()

	var active, inactive, connected, disconnected float64
	var total, used []resources.Resource
	for _, a := range m.agents {
		if a.recovered {
			continue
		}
		// Active as Mesos counts it: connected and not deactivated by
		// the operator.
		if a.active() {
			active++
		} else {
			inactive++
		}
		if a.connected {
			connected++
		} else {
			disconnected++
		}
		total = append(total, a.total...)
		used = append(used, usedOnAgent(a)...)
	}
	s["master/slaves_active"] = active
	s["master/slaves_inactive"] = inactive
	s["master/slaves_connected"] = connected
	s["master/slaves_disconnected"] = disconnected
	s["master/slaves_unreachable"] = float64(len(m.unreachable))
	// Mesos's registrar metric for the latest write, and mesolite's counts.
	s["registrar/state_store_ms"] = m.lastRegistryWriteMS
	s["registrar/writes"] = float64(m.counters.registryWrites)
	s["registrar/operations"] = float64(m.counters.registryOps)
	s["registrar/write_errors"] = float64(m.counters.registryWriteErrors)
	s["master/slave_registrations"] = float64(m.counters.agentRegistrations)
	s["master/slave_reregistrations"] = float64(m.counters.agentReregistrations)
	s["master/slave_removals"] = float64(m.counters.agentRemovals)
	s["master/slave_removals/reason_unhealthy"] = float64(m.counters.agentsUnhealthy)

	var fwActive, fwInactive, fwConnected, fwDisconnected float64
	states := map[mesos.TaskState]float64{}
	for _, fw := range m.frameworks {
		if fw.stream != nil {
			fwActive++
			fwConnected++
		} else {
			fwInactive++
			fwDisconnected++
		}
		for _, t := range fw.tasks {
			states[t.state()]++
		}
	}
	s["master/frameworks_active"] = fwActive
	s["master/frameworks_inactive"] = fwInactive
	s["master/frameworks_connected"] = fwConnected
	s["master/frameworks_disconnected"] = fwDisconnected
	s["master/frameworks_removed"] = float64(m.counters.frameworksRemoved)
	s["master/outstanding_offers"] = float64(len(m.offers))

	// Gauges for live states, counters for terminal ones, as Mesos.
	for _, st := range []mesos.TaskState{mesos.TaskState_TASK_STAGING, mesos.TaskState_TASK_STARTING, mesos.TaskState_TASK_RUNNING,
		mesos.TaskState_TASK_KILLING, mesos.TaskState_TASK_UNREACHABLE} {
		s["master/"+taskMetricName(st)] = states[st]
	}
	for _, st := range []mesos.TaskState{mesos.TaskState_TASK_FINISHED, mesos.TaskState_TASK_FAILED, mesos.TaskState_TASK_KILLED,
		mesos.TaskState_TASK_LOST, mesos.TaskState_TASK_ERROR, mesos.TaskState_TASK_DROPPED, mesos.TaskState_TASK_GONE,
		mesos.TaskState_TASK_GONE_BY_OPERATOR} {
		s["master/"+taskMetricName(st)] = float64(m.counters.terminal[st])
	}
	s["master/tasks_launched"] = float64(m.counters.tasksLaunched)
	s["master/invalid_tasks"] = float64(m.counters.invalidTasks)

	totalRes, usedRes := resources.Of(total...), resources.Of(used...)
	var offered []resources.Resource
	for _, o := range m.offers {
		offered = append(offered, o.res...)
	}
	offeredRes := resources.Of(offered...)
	for _, name := range []string{resources.CPUs, resources.Mem, resources.Disk, resources.GPUs} {
		t, u := totalRes.Scalar(name), usedRes.Scalar(name)
		s["master/"+name+"_total"] = t
		s["master/"+name+"_used"] = u
		s["master/"+name+"_offered"] = offeredRes.Scalar(name)
		s["master/"+name+"_percent"] = 0
		if t > 0 {
			s["master/"+name+"_percent"] = u / t
		}
	}

	s["master/valid_status_updates"] = float64(m.counters.validStatusUpdates)
	s["master/invalid_status_updates"] = float64(m.counters.invalidStatusUpdates)
	s["master/valid_status_update_acknowledgements"] = float64(m.counters.validAcks)
	s["master/invalid_status_update_acknowledgements"] = float64(m.counters.invalidAcks)
	s["master/dropped_messages"] = float64(m.counters.droppedMessages)
	s["master/offers_rescinded"] = float64(m.counters.offersRescinded)
	s["master/messages_decline_offers"] = float64(m.counters.offersDeclined)
	s["master/valid_framework_to_executor_messages"] = float64(m.counters.frameworkToExecutor)
	s["master/valid_executor_to_framework_messages"] = float64(m.counters.executorToFramework)
	var calls uint64
	for _, n := range m.counters.schedulerCalls {
		calls += n
	}
	s["master/messages_scheduler_calls"] = float64(calls)
	s["master/messages_accept_offers"] = float64(m.counters.schedulerCalls[scheduler.Call_ACCEPT])
	s["master/messages_kill_task"] = float64(m.counters.schedulerCalls[scheduler.Call_KILL])
	s["master/messages_reconcile_tasks"] = float64(m.counters.schedulerCalls[scheduler.Call_RECONCILE])
	s["master/messages_revive_offers"] = float64(m.counters.schedulerCalls[scheduler.Call_REVIVE])
	s["master/messages_suppress_offers"] = float64(m.counters.schedulerCalls[scheduler.Call_SUPPRESS])
	s["master/messages_teardown_framework"] = float64(m.counters.schedulerCalls[scheduler.Call_TEARDOWN])
	s["master/messages_status_update_acknowledgement"] = float64(m.counters.schedulerCalls[scheduler.Call_ACKNOWLEDGE])
	s["master/messages_shutdown_executor"] = float64(m.counters.schedulerCalls[scheduler.Call_SHUTDOWN])
	s["master/event_queue_messages"] = 0
	s["master/event_queue_dispatches"] = 0
	s["master/operator_event_stream_subscribers"] = float64(len(m.ops.subs))
	s["master/event_queue_http_requests"] = 0
	s["allocator/mesos/allocation_runs"] = float64(m.counters.allocationRuns)
	s["allocator/mesos/allocation_run_ms"] = m.lastAllocMS
	s["allocator/mesos/event_queue_dispatches"] = 0
	return s
}

func taskMetricName(st mesos.TaskState) string {
	return "tasks_" + strings.ToLower(strings.TrimPrefix(st.String(), "TASK_"))
}

func (m *Master) handleMetricsSnapshot(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	s := m.metricsLocked()
	m.mu.Unlock()
	writeJSON(w, r, s)
}

// snapshotCollector exports the snapshot to Prometheus: master/cpus_total
// becomes mesos_master_cpus_total, the names Mesos exporters used.
type snapshotCollector struct{ m *Master }

func (c snapshotCollector) Describe(ch chan<- *prometheus.Desc) {
	// Unchecked: the set of metrics is fixed but built at collect time.
}

func (c snapshotCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	s := c.m.metricsLocked()
	c.m.mu.Unlock()
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		name := "mesos_" + strings.NewReplacer("/", "_", ".", "_", "-", "_").Replace(k)
		vt := prometheus.GaugeValue
		if counterMetrics[k] {
			vt = prometheus.CounterValue
			name += "_total"
		}
		desc := prometheus.NewDesc(name, "Mesos metric "+k, nil, nil)
		ch <- prometheus.MustNewConstMetric(desc, vt, s[k])
	}
}

func (m *Master) newPrometheus() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(snapshotCollector{m: m})
	reg.MustRegister(collectors.NewGoCollector())
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

func (m *Master) prometheusHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		promhttp.HandlerFor(m.prom, promhttp.HandlerOpts{}).ServeHTTP(w, r)
	})
}
