package master

import (
	"cmp"
	"encoding/json"
	"net/http"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/model"
	"github.com/mesolite/mesolite/resources"
	"google.golang.org/protobuf/proto"
)

func (m *Master) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/api/v1/scheduler", m.fwAuth.Wrap(http.HandlerFunc(m.handleScheduler)))
	mux.Handle("/api/v1/agent", m.agentAuth.Wrap(m.refuseGoneAgents(http.HandlerFunc(m.handleAgent))))
	// The v1 operator API (operator.go).
	for _, p := range []string{"/api/v1", "/master/api/v1"} {
		mux.HandleFunc(p, m.handleOperator)
	}
	for _, p := range []string{"/master/health", "/health"} {
		mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	}
	for _, p := range []string{"/master/state", "/master/state.json", "/state.json", "/state"} {
		mux.HandleFunc(p, m.getOnly(m.handleState))
	}
	for _, p := range []string{"/master/frameworks", "/frameworks"} {
		mux.HandleFunc(p, m.getOnly(m.handleFrameworks))
	}
	for _, p := range []string{"/master/slaves", "/slaves"} {
		mux.HandleFunc(p, m.getOnly(m.handleSlaves))
	}
	for _, p := range []string{"/master/tasks", "/master/tasks.json", "/tasks"} {
		mux.HandleFunc(p, m.getOnly(m.handleTasks))
	}
	for _, p := range []string{"/master/redirect", "/redirect"} {
		mux.HandleFunc(p, m.redirect)
	}
	m.routeMore(mux)
	// The files API serves the master's own log only; sandboxes are the
	// agents'.
	mux.Handle("/files/", m.files)
	mux.HandleFunc("/metrics/snapshot", m.getOnly(m.handleMetricsSnapshot))
	mux.Handle("/metrics", m.prometheusHandler())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if m.cfg.UI != nil {
			m.cfg.UI.ServeHTTP(w, r)
			return
		}
		http.NotFound(w, r)
	})
	return mux
}

// recoverPanics turns a panic in a handler into a logged bug and a 500,
// instead of a dropped connection with no trace of why. The master's state
// stays consistent because every handler holds the lock through defer.
func (m *Master) recoverPanics(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			m.log.Error("BUG: panic in an HTTP handler", "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
			http.Error(w, "internal error: this is a bug in the master, and it was logged", http.StatusInternalServerError)
		}()
		h.ServeHTTP(w, r)
	})
}

func (m *Master) getOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "Expecting a 'GET' request, received '"+r.Method+"'", http.StatusMethodNotAllowed)
			return
		}
		h(w, r)
	}
}

func writeJSON(w http.ResponseWriter, r *http.Request, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "Internal error: cannot encode the answer", http.StatusInternalServerError)
		return
	}
	// JSONP, as Mesos's endpoints offer it, for old UIs.
	if cb := r.URL.Query().Get("jsonp"); cb != "" && validJSONP(cb) {
		w.Header().Set("Content-Type", "text/javascript")
		_, _ = w.Write([]byte(cb + "("))
		_, _ = w.Write(data)
		_, _ = w.Write([]byte(");"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(data)
}

func validJSONP(s string) bool {
	if len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c == '_' || c == '.' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// protoJSON renders a Mesos message as Mesos's endpoints do (proto field
// names, enums by name).
func protoJSON(msg proto.Message) json.RawMessage {
	data, err := codec.JSON.Marshal(msg)
	if err != nil {
		// A message the master holds lacks a required field; show what
		// there is rather than fail the whole page.
		data, err = json.Marshal(err.Error())
		if err != nil {
			return json.RawMessage("null")
		}
	}
	return data
}

func secs(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return timestamp(t)
}

func (m *Master) leaderInfo() map[string]any {
	l := m.leader
	if l.IsZero() {
		return nil
	}
	return map[string]any{
		"id": l.ID, "pid": l.PID, "port": l.Port, "hostname": l.Hostname, "version": l.Version,
		"address": map[string]any{"ip": l.IP, "hostname": l.Hostname, "port": l.Port},
	}
}

func (m *Master) handleState(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	st := m.stateLocked()
	m.mu.Unlock()
	m.viewerOf(r).filterStateJSON(st)
	writeJSON(w, r, st)
}

func (m *Master) stateLocked() map[string]any {
	active, inactive := 0, 0
	slaves := make([]any, 0, len(m.agents))
	var recovered []any
	for _, id := range sortedKeys(m.agents) {
		a := m.agents[id]
		if a.recovered {
			recovered = append(recovered, m.agentJSON(a))
			continue
		}
		if a.connected {
			active++
		} else {
			inactive++
		}
		slaves = append(slaves, m.agentJSON(a))
	}
	st := map[string]any{
		"version":                 m.cfg.Version,
		"id":                      m.id,
		"pid":                     m.self.PID,
		"hostname":                m.self.Hostname,
		"start_time":              timestamp(m.startTime),
		"elected_time":            secs(m.electedTime),
		"activated_slaves":        active,
		"deactivated_slaves":      inactive,
		"unreachable_slaves":      0,
		"flags":                   m.cfg.flagMap(),
		"slaves":                  slaves,
		"recovered_slaves":        nonNil(recovered),
		"frameworks":              m.frameworksJSON(),
		"completed_frameworks":    m.completedJSON(),
		"orphan_tasks":            []any{},
		"unregistered_frameworks": []any{},
		"capabilities":            []string{"AGENT_UPDATE"},
		"elected":                 m.role == roleLeading,
	}
	if m.cfg.Cluster != "" {
		st["cluster"] = m.cfg.Cluster
	}
	if !m.leader.IsZero() {
		st["leader"] = m.leader.PID
		st["leader_info"] = m.leaderInfo()
	}
	return st
}

func nonNil(v []any) []any {
	if v == nil {
		return []any{}
	}
	return v
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func (m *Master) frameworksJSON() []any {
	out := make([]any, 0, len(m.frameworks))
	for _, id := range sortedKeys(m.frameworks) {
		out = append(out, m.frameworkJSON(m.frameworks[id], true))
	}
	return out
}

func (m *Master) completedJSON() []any {
	out := make([]any, 0, len(m.completed))
	for i := len(m.completed) - 1; i >= 0; i-- {
		out = append(out, m.frameworkJSON(m.completed[i], true))
	}
	return out
}

func (m *Master) frameworkJSON(fw *framework, withTasks bool) map[string]any {
	var used resources.Accumulator
	var offered []resources.Resource
	tasks := make([]any, 0, len(fw.tasks))
	unreachable := []any{}
	for _, id := range sortedTaskIDs(fw.tasks) {
		t := fw.tasks[id]
		if !t.released {
			used.Add(t.res)
		}
		if withTasks {
			tasks = append(tasks, m.taskJSONLazy(t))
		}
	}
	completed := make([]any, 0, len(fw.completedTasks))
	if withTasks {
		for i := len(fw.completedTasks) - 1; i >= 0; i-- {
			t := fw.completedTasks[i]
			if t.state() == mesos.TaskState_TASK_UNREACHABLE {
				unreachable = append(unreachable, m.taskJSONLazy(t))
				continue
			}
			completed = append(completed, m.taskJSONLazy(t))
		}
	}
	executors := []any{}
	for _, agentID := range sortedKeys(fw.executors) {
		for _, execID := range sortedKeys(fw.executors[agentID]) {
			e := fw.executors[agentID][execID]
			used.Add(e.res)
			executors = append(executors, m.executorJSON(e))
		}
	}
	offers := make([]any, 0, len(fw.offers))
	for _, id := range sortedKeys(fw.offers) {
		o := fw.offers[id]
		offered = append(offered, o.res...)
		offers = append(offers, map[string]any{
			"id": o.id, "framework_id": fw.id, "slave_id": o.agent.id, "resources": o.res.Model(),
			"allocation_info": map[string]any{"role": o.role},
		})
	}
	usedRes, offeredRes := used.Resources(), resources.Of(offered...)
	caps := []string{}
	for _, c := range fw.info.GetCapabilities() {
		caps = append(caps, c.GetType().String())
	}
	j := map[string]any{
		"id":                fw.id,
		"name":              fw.info.GetName(),
		"user":              fw.info.GetUser(),
		"hostname":          fw.info.GetHostname(),
		"webui_url":         webURL(fw.info.GetWebuiUrl()),
		"principal":         fw.info.GetPrincipal(),
		"failover_timeout":  fw.info.GetFailoverTimeout(),
		"checkpoint":        fw.info.GetCheckpoint(),
		"capabilities":      caps,
		"active":            fw.stream != nil,
		"connected":         fw.connected,
		"recovered":         fw.recovered,
		"registered_time":   secs(fw.registeredTime),
		"unregistered_time": secs(fw.unregisteredTime),
		"resources":         usedRes.Add(offeredRes).Model(),
		"used_resources":    usedRes.Model(),
		"offered_resources": offeredRes.Model(),
		"tasks":             tasks,
		"unreachable_tasks": unreachable,
		"completed_tasks":   completed,
		"offers":            offers,
		"executors":         executors,
		"suppressed_roles":  nonNilStrings(fw.suppressed),
	}
	if fw.multiRole {
		j["roles"] = nonNilStrings(fw.roles)
	} else {
		j["role"] = fw.info.GetRole()
	}
	if !fw.reregisteredTime.IsZero() {
		j["reregistered_time"] = timestamp(fw.reregisteredTime)
	}
	if l := fw.info.GetLabels(); l != nil {
		j["labels"] = model.Labels(l)
	}
	return j
}

// webURL is what the state shows of a framework-supplied URL: an http(s)
// one, or nothing. Frameworks recovered from the registry or from agents may
// carry what SUBSCRIBE now refuses.
func webURL(s string) string {
	if !safeWebURL(s) {
		return ""
	}
	return s
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (m *Master) executorJSON(e *executor) map[string]any {
	j := map[string]any{
		"executor_id":  e.info.GetExecutorId().GetValue(),
		"name":         e.info.GetName(),
		"framework_id": e.fwID,
		"slave_id":     e.agentID,
		"type":         e.info.GetType().String(),
		"resources":    e.res.Model(),
	}
	if e.info.Command != nil {
		j["command"] = protoJSON(e.info.GetCommand())
	}
	if e.info.Container != nil {
		j["container"] = protoJSON(e.info.GetContainer())
	}
	if e.containerID != "" {
		j["container_id"] = e.containerID
	}
	if e.directory != "" {
		j["directory"] = e.directory
	}
	if a := m.agents[e.agentID]; a != nil {
		j["sandbox"] = sandboxJSON(a, e.fwID, e.info.GetExecutorId().GetValue(), e.containerID, e.directory)
	}
	return j
}

// sandboxJSON tells a UI where to browse a sandbox: the agent's files API
// with the virtual path Mesos agents serve (the latest run of the
// executor), and the real directory when the agent reported it.
func sandboxJSON(a *agent, fwID, execID, containerID, directory string) map[string]any {
	j := map[string]any{
		"agent_address": a.addr,
		"path":          "/frameworks/" + fwID + "/executors/" + execID + "/runs/latest",
	}
	if containerID != "" {
		j["container_id"] = containerID
	}
	if directory != "" {
		j["directory"] = directory
	}
	return j
}

func (m *Master) taskJSON(t *task) map[string]any {
	statuses := model.TaskStatuses(t.t.Statuses)
	execID := ""
	if t.t.ExecutorId != nil {
		execID = t.t.GetExecutorId().GetValue()
	}
	j := map[string]any{
		"id":           t.id(),
		"name":         t.t.GetName(),
		"framework_id": t.fw.id,
		"executor_id":  execID,
		"slave_id":     t.agentID,
		"state":        t.state().String(),
		"resources":    t.res.Model(),
		"role":         t.role,
		"statuses":     statuses,
	}
	if t.t.Labels != nil {
		j["labels"] = model.Labels(t.t.GetLabels())
	}
	if t.t.Container != nil {
		j["container"] = protoJSON(t.t.GetContainer())
	}
	if t.t.Discovery != nil {
		j["discovery"] = protoJSON(t.t.GetDiscovery())
	}
	if t.t.HealthCheck != nil {
		j["health_check"] = protoJSON(t.t.GetHealthCheck())
	}
	if t.t.KillPolicy != nil {
		j["kill_policy"] = protoJSON(t.t.GetKillPolicy())
	}
	if c := t.command; c != nil {
		j["command"] = commandJSON(c)
	}
	if t.t.User != nil {
		j["user"] = t.t.GetUser()
	}
	if t.containerID != "" {
		j["container_id"] = t.containerID
	}
	if a := m.agents[t.agentID]; a != nil {
		dir := t.directory
		if e := t.fw.executor(t.agentID, t.executorID()); e != nil && e.directory != "" {
			dir = e.directory
		}
		j["sandbox"] = sandboxJSON(a, t.fw.id, t.executorID(), t.containerID, dir)
	}
	return j
}

func (m *Master) agentJSON(a *agent) map[string]any {
	used := usedOnAgent(a)
	var offered []resources.Resource
	for _, o := range a.offers {
		offered = append(offered, o.res...)
	}
	reserved := map[string]any{}
	byRole := map[string][]resources.Resource{}
	var unreserved []resources.Resource
	for _, r := range a.total {
		if r.Reserved() {
			byRole[r.Role] = append(byRole[r.Role], r)
		} else {
			unreserved = append(unreserved, r)
		}
	}
	for role, rs := range byRole {
		reserved[role] = resources.Of(rs...).Model()
	}
	attrs := map[string]any{}
	for _, at := range a.info.GetAttributes() {
		switch at.GetType() {
		case mesos.Value_SCALAR:
			attrs[at.GetName()] = at.GetScalar().GetValue()
		case mesos.Value_RANGES:
			var parts []string
			for _, rg := range at.GetRanges().GetRange() {
				parts = append(parts, strconv.FormatUint(rg.GetBegin(), 10)+"-"+strconv.FormatUint(rg.GetEnd(), 10))
			}
			attrs[at.GetName()] = "[" + strings.Join(parts, ", ") + "]"
		case mesos.Value_SET:
			attrs[at.GetName()] = "{" + strings.Join(at.GetSet().GetItem(), ", ") + "}"
		case mesos.Value_TEXT:
			attrs[at.GetName()] = at.GetText().GetValue()
		}
	}
	j := map[string]any{
		"id":                   a.id,
		"pid":                  a.pid(),
		"hostname":             a.hostname,
		"port":                 a.port,
		"http_address":         a.addr,
		"registered_time":      secs(a.registeredTime),
		"resources":            a.total.Model(),
		"used_resources":       used.Model(),
		"offered_resources":    resources.Of(offered...).Model(),
		"reserved_resources":   reserved,
		"unreserved_resources": resources.Of(unreserved...).Model(),
		"attributes":           attrs,
		"active":               a.active(),
		"connected":            a.connected,
		"version":              a.version,
		"capabilities":         []string{"MULTI_ROLE", "HIERARCHICAL_ROLE"},
	}
	if !a.reregisteredTime.IsZero() {
		j["reregistered_time"] = timestamp(a.reregisteredTime)
	}
	if d := a.info.GetDomain(); d != nil {
		j["domain"] = protoJSON(d)
	}
	if di := a.drainInfo(); di != nil {
		j["drain_info"] = model.Proto(di)
	}
	return j
}

func (m *Master) handleFrameworks(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	st := map[string]any{
		"frameworks":              m.frameworksJSON(),
		"completed_frameworks":    m.completedJSON(),
		"unregistered_frameworks": []any{},
	}
	m.mu.Unlock()
	m.viewerOf(r).filterStateJSON(st)
	writeJSON(w, r, st)
}

func (m *Master) handleSlaves(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	slaves := []any{}
	recovered := []any{}
	for _, id := range sortedKeys(m.agents) {
		a := m.agents[id]
		if a.recovered {
			recovered = append(recovered, m.agentJSON(a))
		} else {
			slaves = append(slaves, m.agentJSON(a))
		}
	}
	m.mu.Unlock()
	writeJSON(w, r, map[string]any{"slaves": slaves, "recovered_slaves": recovered})
}

// handleTasks serves /master/tasks with Mesos's query parameters: limit
// (default 100), offset, order (asc or desc by task id), framework_id and
// task_id.
func (m *Master) handleTasks(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, offset := 100, 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, httpErr(http.StatusBadRequest, "Failed to parse 'limit': must be a non-negative integer"))
			return
		}
		limit = n
	}
	if v := q.Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, httpErr(http.StatusBadRequest, "Failed to parse 'offset': must be a non-negative integer"))
			return
		}
		offset = n
	}
	order := q.Get("order")
	if order != "" && order != "asc" && order != "desc" {
		writeError(w, httpErr(http.StatusBadRequest, "Failed to parse 'order': must be 'asc' or 'desc'"))
		return
	}
	fwFilter, taskFilter := q.Get("framework_id"), q.Get("task_id")

	m.mu.Lock()
	var all []*task
	for _, fw := range m.frameworks {
		if fwFilter != "" && fw.id != fwFilter {
			continue
		}
		for _, t := range fw.tasks {
			all = append(all, t)
		}
		all = append(all, fw.completedTasks...)
	}
	if taskFilter != "" {
		all = slices.DeleteFunc(all, func(t *task) bool { return t.id() != taskFilter })
	}
	if v := m.viewerOf(r); v != nil {
		all = slices.DeleteFunc(all, func(t *task) bool {
			u := t.fw.info.GetUser()
			return !v.framework(u) || !v.tasks(u)
		})
	}
	// Mesos orders by the time of a task's first status, newest first
	// unless order=asc, so that ?limit= shows the latest tasks. A task
	// without one yet (staging) is the newest of all; ties go by id.
	started := func(t *task) (float64, bool) {
		if ss := t.t.GetStatuses(); len(ss) > 0 {
			return ss[0].GetTimestamp(), true
		}
		return 0, false
	}
	slices.SortFunc(all, func(a, b *task) int {
		ta, oka := started(a)
		tb, okb := started(b)
		c := 0
		switch {
		case oka != okb:
			c = -1 // the one with a status is older
			if !oka {
				c = 1
			}
		case ta != tb:
			c = cmp.Compare(ta, tb)
		default:
			c = strings.Compare(a.id(), b.id())
		}
		if order != "asc" {
			return -c
		}
		return c
	})
	out := []any{}
	for i := offset; i < len(all) && len(out) < limit; i++ {
		out = append(out, m.taskJSONLazy(all[i]))
	}
	m.mu.Unlock()
	writeJSON(w, r, map[string]any{"tasks": out})
}

// commandJSON is what the state shows of a task's command: what runs, not
// its environment or URIs, which may carry credentials.
func commandJSON(c *mesos.CommandInfo) map[string]any {
	j := map[string]any{"shell": c.GetShell()}
	if c.Value != nil {
		j["value"] = c.GetValue()
	}
	if len(c.GetArguments()) > 0 {
		j["arguments"] = c.GetArguments()
	}
	if c.User != nil {
		j["user"] = c.GetUser()
	}
	return j
}
