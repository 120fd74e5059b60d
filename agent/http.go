package agent

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/model"
	"github.com/mesolite/mesolite/containerizer"
	"github.com/mesolite/mesolite/internal/hostmetrics"
	"github.com/mesolite/mesolite/internal/mesosprom"
	"github.com/mesolite/mesolite/internal/version"
	"github.com/mesolite/mesolite/resources"
	"github.com/mesolite/mesolite/sandbox"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/proto"
)

type agentMetrics struct {
	containersLaunched   int64
	fetchOK, fetchFailed int64
	updates              map[mesos.TaskState]int64
	// Mesos's counters of the same names (slave/..., containerizer/...).
	executorsTerminated  int64
	launchErrors         int64
	destroyErrors        int64
	validUpdates         int64
	invalidUpdates       int64
	validFrameworkMsgs   int64
	invalidFrameworkMsgs int64
	recoveryErrors       int64
}

func (a *Agent) metricsInc(f func(*agentMetrics)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.metrics.updates == nil {
		a.metrics.updates = map[mesos.TaskState]int64{}
	}
	f(&a.metrics)
}

// authorizeSandbox applies --acls' access_sandboxes to a files API
// request: the object is the user the run's executor runs as (its
// command's user, else its framework's); a run this agent no longer
// tracks is judged with no user, which only ANY rules match.
func (a *Agent) authorizeSandbox(r *http.Request, id sandbox.RunID) error {
	if a.cfg.ACLs == nil {
		return nil
	}
	user := ""
	a.mu.Lock()
	if es := a.lookupExecutorLocked(id.FrameworkID, id.ExecutorID); es != nil {
		user = es.info.GetCommand().GetUser()
		if fw := a.frameworks[id.FrameworkID]; user == "" && fw != nil {
			user = fw.info.GetUser()
		}
	}
	a.mu.Unlock()
	return a.cfg.ACLs.Check("access_sandboxes", operatorPrincipal(r), user)
}

// filesHandler is the sandbox files API, created once the agent has an id.
func (a *Agent) filesHandler() *sandbox.FilesHandler {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.files
}

func (a *Agent) ensureFilesHandlerLocked() {
	if a.files != nil || a.agentID == "" {
		return
	}
	opts := sandbox.FilesOptions{
		Layout:    a.layout,
		AgentID:   a.agentID,
		Authorize: a.authorizeSandbox,
		AuthorizeLog: func(r *http.Request) error {
			return a.cfg.ACLs.Check("access_mesos_logs", operatorPrincipal(r), "")
		},
		Collected: a.cfg.Collected,
		Logger:    a.cfg.Logger,
	}
	if a.cfg.LogFile != "" {
		// Mesos's agent attaches its log at /slave/log.
		opts.Logs = map[string]string{"/slave/log": a.cfg.LogFile}
	}
	a.files = sandbox.NewFilesHandler(opts)
	for _, fw := range a.frameworks {
		for exID, es := range fw.executors {
			a.files.Attach(sandbox.RunID{AgentID: a.agentID, FrameworkID: es.frameworkID, ExecutorID: exID, ContainerID: es.containerID})
		}
	}
}

// Handler is the agent's HTTP surface: the executor and operator APIs,
// the files API, state, health, usage statistics and metrics.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	ro := a.cfg.Wrap
	if ro == nil {
		ro = func(h http.Handler) http.Handler { return h }
	}
	mux.HandleFunc("/api/v1/executor", a.serveExecutorAPI)
	// The operator API: every call behind the read-only authentication,
	// those that change things behind the read-write one too (operator.go).
	operator := ro(http.HandlerFunc(a.serveOperator))
	mux.Handle("/api/v1", operator)
	mux.Handle("/slave(1)/api/v1", operator)
	streams := newStreamLimiter(streamsTotal, streamsPerIP)
	isStream := func(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/files/stream") }
	mux.Handle("/files/", ro(streams.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fh := a.filesHandler()
		if fh == nil {
			http.Error(w, "the agent has not registered yet: no sandboxes to serve", http.StatusServiceUnavailable)
			return
		}
		fh.ServeHTTP(w, r)
	}), isStream)))
	state := ro(http.HandlerFunc(a.serveState))
	for _, p := range []string{"/state", "/state.json", "/slave(1)/state", "/slave(1)/state.json"} {
		mux.Handle(p, state)
	}
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("/slave(1)/health", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	flags := ro(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"flags": a.cfg.Flags})
	}))
	mux.Handle("/flags", flags)
	mux.Handle("/slave(1)/flags", flags)
	mux.HandleFunc("/version", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, version.Get()) })
	stats := ro(http.HandlerFunc(a.serveStatistics))
	mux.Handle("/monitor/statistics", stats)
	mux.Handle("/monitor/statistics.json", stats)
	mux.Handle("/containers", ro(http.HandlerFunc(a.serveContainers)))
	mux.Handle("/metrics/snapshot", ro(http.HandlerFunc(a.serveMetricsSnapshot)))
	mux.Handle("/metrics", ro(promhttp.HandlerFor(a.prometheusRegistry(), promhttp.HandlerOpts{})))
	for p, h := range a.cfg.ExtraHandlers {
		mux.Handle(p, h)
	}
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

func resourcesMap(rs []*mesos.Resource) map[string]any {
	res, _ := resources.FromProto(rs)
	return res.Model()
}

// serveState answers /state: a snapshot taken under the agent's lock
// (the same one the operator API's GET_STATE renders), turned into JSON
// and written to the client outside it (a slow client must not stall the
// agent).
func (a *Agent) serveState(w http.ResponseWriter, r *http.Request) {
	s := a.stateSnapshot()
	taskJSON := func(fwID string, ts taskSnap) map[string]any {
		t := ts.task
		j := map[string]any{
			"id": t.GetTaskId().GetValue(), "name": t.GetName(), "framework_id": fwID,
			"executor_id": ts.exID, "slave_id": s.agentID,
			"state": t.GetState().String(), "resources": resourcesMap(t.GetResources()),
			"statuses": model.TaskStatuses(t.GetStatuses()),
		}
		if l := t.GetLabels(); l != nil {
			j["labels"] = model.Labels(l)
		}
		if d := t.GetDiscovery(); d != nil {
			j["discovery"] = model.Proto(d)
		}
		if c := t.GetContainer(); c != nil {
			j["container"] = model.Proto(c)
		}
		return j
	}
	exJSON := func(fwID string, es executorSnap) map[string]any {
		var tasks, queued, completed []map[string]any
		for _, ts := range es.launched {
			tasks = append(tasks, taskJSON(fwID, ts))
		}
		for _, ts := range es.queued {
			queued = append(queued, taskJSON(fwID, ts))
		}
		for _, ts := range es.terminal {
			completed = append(completed, taskJSON(fwID, ts))
		}
		for _, ts := range es.finished {
			completed = append(completed, taskJSON(fwID, ts))
		}
		return map[string]any{
			"id": es.info.GetExecutorId().GetValue(), "name": es.info.GetName(), "source": es.info.GetSource(),
			"container": es.containerID, "directory": es.directory, "framework_id": fwID,
			"virtual_directory": sandbox.VirtualLatestPath(fwID, es.info.GetExecutorId().GetValue()),
			"resources":         resourcesMap(es.resources), "tasks": nonNil(tasks), "queued_tasks": nonNil(queued),
			"completed_tasks": nonNil(completed), "subscribed": es.phase == phaseRunning, "phase": es.phase.String(),
		}
	}
	fwJSON := func(f frameworkSnap) map[string]any {
		var exs, done []map[string]any
		for _, es := range f.executors {
			exs = append(exs, exJSON(f.id, es))
		}
		for _, es := range f.completed {
			done = append(done, exJSON(f.id, es))
		}
		return map[string]any{
			"id": f.id, "name": f.info.GetName(), "user": f.info.GetUser(), "role": f.info.GetRole(),
			"checkpoint": f.info.GetCheckpoint(), "executors": nonNil(exs), "completed_executors": nonNil(done),
		}
	}
	var fws, done []map[string]any
	for _, f := range s.frameworks {
		fws = append(fws, fwJSON(f))
	}
	for _, f := range s.completed {
		done = append(done, fwJSON(f))
	}
	attrs := map[string]any{}
	for _, at := range a.cfg.Attributes {
		switch at.GetType() {
		case mesos.Value_SCALAR:
			attrs[at.GetName()] = at.GetScalar().GetValue()
		case mesos.Value_TEXT:
			attrs[at.GetName()] = at.GetText().GetValue()
		}
	}
	state := map[string]any{
		"version":              a.cfg.Version,
		"id":                   s.agentID,
		"pid":                  "slave(1)@" + a.Endpoint(),
		"hostname":             a.cfg.Hostname,
		"start_time":           float64(a.start.UnixNano()) / 1e9,
		"resources":            resourcesMap(a.cfg.Resources),
		"attributes":           attrs,
		"master_hostname":      s.masterAddr,
		"flags":                a.cfg.Flags,
		"frameworks":           nonNil(fws),
		"completed_frameworks": nonNil(done),
	}
	writeJSON(w, state)
}

func nonNil(v []map[string]any) []map[string]any {
	if v == nil {
		return []map[string]any{}
	}
	return v
}

type containerRef struct {
	fwID, exID, name, source, cid string
	pid                           int               // the container's root process on the host
	res                           []*mesos.Resource // what the container holds
	// parent is set for a task's nested container (its cgroup of its
	// own); then cid is the nested id and res the task's resources.
	parent string
}

func (a *Agent) liveContainers() []containerRef {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []containerRef
	for fwID, fw := range a.frameworks {
		for exID, es := range fw.executors {
			if es.live() && es.handle != nil {
				out = append(out, containerRef{fwID, exID, es.info.GetName(), es.info.GetSource(), es.containerID, es.handle.Pid, es.resources, ""})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].cid < out[j].cid })
	return out
}

func (a *Agent) usage(ctx context.Context, c containerRef) json.RawMessage {
	return model.Proto(a.usageProto(ctx, c))
}

// usageProto is the container's statistics, as /monitor/statistics and
// GET_CONTAINERS show them.
func (a *Agent) usageProto(ctx context.Context, c containerRef) *mesos.ResourceStatistics {
	st, err := a.cz.Usage(ctx, c.cid)
	if err != nil || st == nil {
		st = &mesos.ResourceStatistics{Timestamp: proto.Float64(float64(time.Now().UnixNano()) / 1e9)}
	}
	// Mesos reports the limits the container was given beside what it
	// used (exporters divide one by the other); a containerizer that does
	// not know them is told by the resources the agent gave it.
	if res, err := resources.FromProto(c.res); err == nil {
		if st.CpusLimit == nil && res.Scalar("cpus") > 0 {
			st.CpusLimit = proto.Float64(res.Scalar("cpus"))
		}
		if st.MemLimitBytes == nil && res.Scalar("mem") > 0 {
			st.MemLimitBytes = proto.Uint64(uint64(res.Scalar("mem") * (1 << 20)))
		}
	}
	return st
}

// serveStatistics is Mesos's /monitor/statistics.
func (a *Agent) serveStatistics(w http.ResponseWriter, r *http.Request) {
	out := []map[string]any{}
	for _, c := range a.liveContainers() {
		out = append(out, map[string]any{
			"executor_id": c.exID, "executor_name": c.name, "framework_id": c.fwID, "source": c.source,
			"statistics": a.usage(r.Context(), c),
		})
	}
	writeJSON(w, out)
}

// serveContainers is Mesos's /containers: the executors' containers and
// the nested containers of their tasks that have cgroups of their own
// (those with a "parent_container_id").
func (a *Agent) serveContainers(w http.ResponseWriter, r *http.Request) {
	out := []map[string]any{}
	live := a.liveContainers()
	for _, c := range append(live, a.nestedContainers(r.Context(), live)...) {
		m := map[string]any{
			"container_id": c.cid, "executor_id": c.exID, "executor_name": c.name, "framework_id": c.fwID,
			"source": c.source, "statistics": a.usage(r.Context(), c),
		}
		if c.parent != "" {
			m["parent_container_id"] = c.parent
		}
		out = append(out, m)
	}
	writeJSON(w, out)
}

// nestedContainers are the nested containers (tasks of groups with cgroups
// of their own) of the live containers, where the containerizer nests.
func (a *Agent) nestedContainers(ctx context.Context, live []containerRef) []containerRef {
	n, ok := a.cz.(containerizer.Nester)
	if !ok {
		return nil
	}
	var out []containerRef
	for _, c := range live {
		ids, err := n.Nested(ctx, c.cid)
		if err != nil || len(ids) == 0 {
			continue
		}
		has := map[string]bool{}
		for _, id := range ids {
			has[id] = true
		}
		a.mu.Lock()
		es := a.lookupExecutorLocked(c.fwID, c.exID)
		var refs []containerRef
		if es != nil && es.containerID == c.cid {
			for _, m := range []map[string]*taskState{es.launched, es.queued} {
				for id, ts := range m {
					if nid := nestedOf(es, c.cid, id); has[nid] {
						refs = append(refs, containerRef{c.fwID, c.exID, c.name, c.source, nid, 0, ts.info.GetResources(), c.cid})
					}
				}
			}
		}
		a.mu.Unlock()
		out = append(out, refs...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].cid < out[j].cid })
	return out
}

func (a *Agent) snapshot() map[string]float64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := map[string]float64{
		"slave/uptime_secs":                            time.Since(a.start).Seconds(),
		"slave/registered":                             0,
		"slave/frameworks_active":                      float64(len(a.frameworks)),
		"slave/containers_launched":                    float64(a.metrics.containersLaunched),
		"containerizer/fetcher/task_fetches_succeeded": float64(a.metrics.fetchOK),
		"containerizer/fetcher/task_fetches_failed":    float64(a.metrics.fetchFailed),
	}
	var execs, registering, terminating, running, staging, starting, killing float64
	var used resources.Resources
	for _, fw := range a.frameworks {
		for _, es := range fw.executors {
			switch es.phase {
			case phaseLaunching, phaseRegistering:
				registering++
			case phaseRunning:
				execs++
			case phaseKilling:
				terminating++
			}
			if es.live() {
				if r, err := resources.FromProto(es.resources); err == nil {
					used = used.Add(r)
				}
			}
			for _, ts := range es.launched {
				switch ts.state {
				case mesos.TaskState_TASK_RUNNING:
					running++
				case mesos.TaskState_TASK_STARTING:
					starting++
				case mesos.TaskState_TASK_KILLING:
					killing++
				default:
					staging++
				}
			}
			staging += float64(len(es.queued))
		}
	}
	m["slave/executors_running"] = execs
	m["slave/executors_registering"] = registering
	m["slave/executors_terminating"] = terminating
	m["slave/executors_terminated"] = float64(a.metrics.executorsTerminated)
	m["slave/executors_preempted"] = 0
	m["slave/tasks_running"] = running
	m["slave/tasks_staging"] = staging
	m["slave/tasks_starting"] = starting
	m["slave/tasks_killing"] = killing
	total, _ := resources.FromProto(a.cfg.Resources)
	// Mesos's resource gauges: totals, what executors hold, their ratio;
	// revocable resources are not offered by this agent, so those are 0.
	for _, name := range []string{"cpus", "mem", "disk", "gpus"} {
		t, u := total.Scalar(name), used.Scalar(name)
		m["slave/"+name+"_total"] = t
		m["slave/"+name+"_used"] = u
		m["slave/"+name+"_percent"] = 0
		if t > 0 {
			m["slave/"+name+"_percent"] = u / t
		}
		if name != "gpus" {
			m["slave/"+name+"_revocable_total"] = 0
			m["slave/"+name+"_revocable_used"] = 0
			m["slave/"+name+"_revocable_percent"] = 0
		}
	}
	for _, st := range []mesos.TaskState{mesos.TaskState_TASK_FINISHED, mesos.TaskState_TASK_FAILED, mesos.TaskState_TASK_KILLED,
		mesos.TaskState_TASK_LOST, mesos.TaskState_TASK_GONE} {
		m["slave/tasks_"+strings.ToLower(strings.TrimPrefix(st.String(), "TASK_"))] = float64(a.metrics.updates[st])
	}
	m["slave/valid_status_updates"] = float64(a.metrics.validUpdates)
	m["slave/invalid_status_updates"] = float64(a.metrics.invalidUpdates)
	m["slave/valid_framework_messages"] = float64(a.metrics.validFrameworkMsgs)
	m["slave/invalid_framework_messages"] = float64(a.metrics.invalidFrameworkMsgs)
	m["slave/container_launch_errors"] = float64(a.metrics.launchErrors)
	m["slave/recovery_errors"] = float64(a.metrics.recoveryErrors)
	m["containerizer/mesos/container_destroy_errors"] = float64(a.metrics.destroyErrors)
	if a.cfg.GCMetrics != nil {
		for k, v := range a.cfg.GCMetrics() {
			m[k] = v
		}
	}
	return m
}

// metricsSnapshot is /metrics/snapshot: the agent's books (under its
// lock), then the host's figures (read from /proc outside it).
func (a *Agent) metricsSnapshot() map[string]float64 {
	m := a.snapshot()
	if a.Connected() {
		m["slave/registered"] = 1
	}
	maps.Copy(m, hostmetrics.Snapshot())
	return m
}

func (a *Agent) serveMetricsSnapshot(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, a.metricsSnapshot())
}

// prometheusRegistry exposes the snapshot in Prometheus's names and units
// (internal/mesosprom), with the Go runtime's and the process's metrics.
func (a *Agent) prometheusRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	reg.MustRegister(mesosprom.Collector{Snapshot: a.metricsSnapshot})
	return reg
}
