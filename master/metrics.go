package master

import (
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/mesolite/mesolite/api/v1/agentpb"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/internal/hostmetrics"
	"github.com/mesolite/mesolite/internal/mesosprom"
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
	recoveryRemovals     uint64 // agents of the registry that never came back
	agentCalls           map[agentpb.Call_Type]uint64
	frameworkRegisters   uint64 // SUBSCRIBE without a framework id
	frameworkReregisters uint64 // SUBSCRIBE with one
	// terminalBy counts terminal updates by state, source and reason, as
	// Mesos's master/task_<state>/source_<source>/reason_<reason>.
	terminalBy map[string]uint64
	// allocRuns and registryStores keep the latest latencies, for the
	// percentiles Mesos reports of them.
	allocRuns, registryStores timerWindow
	registryFetchMS           float64
	frameworkToExecutor       uint64
	executorToFramework       uint64
	registryWrites            uint64
	registryOps               uint64
	registryWriteErrors       uint64
}

// timerWindow keeps the latest samples of a latency, in milliseconds, for
// Mesos's timer metrics: NAME (the latest), NAME/count, /min, /max and
// percentiles over the window.
type timerWindow struct {
	samples []float64 // a ring of at most timerWindowSize
	next    int
	last    float64
}

const timerWindowSize = 1000

func (w *timerWindow) add(ms float64) {
	w.last = ms
	if len(w.samples) < timerWindowSize {
		w.samples = append(w.samples, ms)
		return
	}
	w.samples[w.next] = ms
	w.next = (w.next + 1) % timerWindowSize
}

func (w *timerWindow) export(name string, s map[string]float64) {
	s[name] = w.last
	s[name+"/count"] = float64(len(w.samples))
	if len(w.samples) == 0 {
		return
	}
	sorted := slices.Sorted(slices.Values(w.samples))
	s[name+"/min"], s[name+"/max"] = sorted[0], sorted[len(sorted)-1]
	for _, p := range []struct {
		key string
		q   float64
	}{{"p50", 0.5}, {"p90", 0.9}, {"p95", 0.95}, {"p99", 0.99}, {"p999", 0.999}, {"p9999", 0.9999}} {
		s[name+"/"+p.key] = sorted[min(len(sorted)-1, int(p.q*float64(len(sorted))))]
	}
}

// terminalKey is Mesos's metric of a terminal update: agents are "slave"
// in these names, as they were when Mesos named them.
func terminalKey(st *mesos.TaskStatus) string {
	name := func(s, prefix string) string {
		return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(s, prefix)), "agent", "slave")
	}
	key := "master/task_" + name(st.GetState().String(), "TASK_") + "/source_" + name(st.GetSource().String(), "SOURCE_")
	if st.Reason != nil {
		key += "/reason_" + name(st.GetReason().String(), "REASON_")
	}
	return key
}

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
	s["registrar/writes"] = float64(m.counters.registryWrites)
	s["registrar/operations"] = float64(m.counters.registryOps)
	s["registrar/write_errors"] = float64(m.counters.registryWriteErrors)
	s["master/slave_registrations"] = float64(m.counters.agentRegistrations)
	s["master/slave_reregistrations"] = float64(m.counters.agentReregistrations)
	s["master/slave_removals"] = float64(m.counters.agentRemovals)
	s["master/slave_removals/reason_unhealthy"] = float64(m.counters.agentsUnhealthy)
	// Mesos's removal reasons this master has no cause for stay 0: an
	// agent never unregisters, and one at a taken address is told so.
	s["master/slave_removals/reason_unregistered"] = 0
	s["master/slave_removals/reason_registered"] = 0
	s["master/slave_shutdowns_scheduled"] = float64(m.counters.agentsUnhealthy)
	s["master/slave_shutdowns_completed"] = float64(m.counters.agentsUnhealthy)
	s["master/slave_shutdowns_canceled"] = 0
	s["master/recovery_slave_removals"] = float64(m.counters.recoveryRemovals)
	s["registrar/state_fetch_ms"] = m.counters.registryFetchMS
	m.counters.registryStores.export("registrar/state_store_ms", s)
	m.quotaMetricsLocked(s)
	for k, n := range m.counters.terminalBy {
		s[k] = float64(n)
	}

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
		if name != resources.GPUs {
			// No agent offers revocable resources.
			s["master/"+name+"_revocable_total"] = 0
			s["master/"+name+"_revocable_used"] = 0
			s["master/"+name+"_revocable_percent"] = 0
			s["allocator/mesos/resources/"+name+"/total"] = t
			s["allocator/mesos/resources/"+name+"/offered_or_allocated"] = u + offeredRes.Scalar(name)
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
	s["master/messages_resource_request"] = float64(m.counters.schedulerCalls[scheduler.Call_REQUEST])
	s["master/messages_framework_to_executor"] = float64(m.counters.schedulerCalls[scheduler.Call_MESSAGE])
	s["master/messages_launch_tasks"] = float64(m.counters.schedulerCalls[scheduler.Call_ACCEPT])
	s["master/messages_register_framework"] = float64(m.counters.frameworkRegisters)
	s["master/messages_reregister_framework"] = float64(m.counters.frameworkReregisters)
	s["master/messages_unregister_framework"] = float64(m.counters.schedulerCalls[scheduler.Call_TEARDOWN])
	s["master/messages_deactivate_framework"] = 0
	s["master/messages_authenticate"] = 0
	s["master/messages_register_slave"] = float64(m.counters.agentRegistrations)
	s["master/messages_reregister_slave"] = float64(m.counters.agentReregistrations)
	s["master/messages_unregister_slave"] = 0
	s["master/messages_status_update"] = float64(m.counters.agentCalls[agentpb.Call_UPDATE])
	s["master/messages_exited_executor"] = float64(m.counters.agentCalls[agentpb.Call_EXECUTOR_EXITED])
	s["master/messages_executor_to_framework"] = float64(m.counters.agentCalls[agentpb.Call_MESSAGE])
	s["master/messages_update_slave"] = float64(m.counters.agentCalls[agentpb.Call_UPDATE_RESOURCES])
	s["master/invalid_executor_to_framework_messages"] = float64(m.counters.agentCalls[agentpb.Call_MESSAGE]) - float64(m.counters.executorToFramework)
	s["master/invalid_framework_to_executor_messages"] = float64(m.counters.schedulerCalls[scheduler.Call_MESSAGE]) - float64(m.counters.frameworkToExecutor)
	s["master/event_queue_messages"] = 0
	s["master/event_queue_dispatches"] = 0
	s["master/operator_event_stream_subscribers"] = float64(len(m.ops.subs))
	s["master/event_queue_http_requests"] = 0
	s["allocator/mesos/allocation_runs"] = float64(m.counters.allocationRuns)
	m.counters.allocRuns.export("allocator/mesos/allocation_run_ms", s)
	s["allocator/mesos/event_queue_dispatches"] = 0
	return s
}

func taskMetricName(st mesos.TaskState) string {
	return "tasks_" + strings.ToLower(strings.TrimPrefix(st.String(), "TASK_"))
}

// metricsSnapshot is /metrics/snapshot and GET_METRICS: the books under
// the lock, then the host's figures read outside it.
func (m *Master) metricsSnapshot() map[string]float64 {
	m.mu.Lock()
	s := m.metricsLocked()
	m.mu.Unlock()
	maps.Copy(s, hostmetrics.Snapshot())
	return s
}

func (m *Master) handleMetricsSnapshot(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, r, m.metricsSnapshot())
}

func (m *Master) newPrometheus() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(mesosprom.Collector{Snapshot: m.metricsSnapshot})
	reg.MustRegister(collectors.NewGoCollector())
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

func (m *Master) prometheusHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		promhttp.HandlerFor(m.prom, promhttp.HandlerOpts{}).ServeHTTP(w, r)
	})
}
