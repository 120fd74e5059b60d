package master

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/maintenance"
	masterpb "github.com/mesolite/mesolite/api/v1/master"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/quota"
	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/internal/version"
	"github.com/mesolite/mesolite/resources"
	"google.golang.org/protobuf/proto"
)

// The rest of Mesos's master endpoints that tools and scripts call: each is
// the same books the operator API answers from, in the JSON these
// endpoints have always written.

// routeMore adds them to mux.
func (m *Master) routeMore(mux *http.ServeMux) {
	mux.HandleFunc("/version", m.getOnly(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, r, version.Get()) }))
	for _, p := range []string{"/master/flags", "/flags"} {
		mux.HandleFunc(p, m.getOnly(func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, r, map[string]any{"flags": m.cfg.flagMap()})
		}))
	}
	for _, p := range []string{"/master/roles", "/master/roles.json", "/roles", "/roles.json"} {
		mux.HandleFunc(p, m.getOnly(m.handleRoles))
	}
	for _, p := range []string{"/master/state-summary", "/state-summary"} {
		mux.HandleFunc(p, m.getOnly(m.handleStateSummary))
	}
	for _, p := range []string{"/master/teardown", "/teardown"} {
		mux.HandleFunc(p, m.handleTeardown)
	}
	for _, p := range []string{"/master/maintenance/schedule", "/maintenance/schedule"} {
		mux.HandleFunc(p, m.handleSchedule)
	}
	for _, p := range []string{"/master/maintenance/status", "/maintenance/status"} {
		mux.HandleFunc(p, m.getOnly(func(w http.ResponseWriter, r *http.Request) {
			m.mu.Lock()
			st := m.getMaintenanceStatusLocked(m.viewerOf(r)).GetStatus()
			m.mu.Unlock()
			writeProtoJSON(w, st)
		}))
	}
	for _, p := range []string{"/master/machine/down", "/machine/down"} {
		mux.HandleFunc(p, m.handleMachines(masterpb.Call_START_MAINTENANCE))
	}
	for _, p := range []string{"/master/machine/up", "/machine/up"} {
		mux.HandleFunc(p, m.handleMachines(masterpb.Call_STOP_MAINTENANCE))
	}
	for _, p := range []string{"/master/quota", "/quota"} {
		mux.HandleFunc(p, m.handleQuota)
		mux.HandleFunc(p+"/", m.handleQuotaRole)
	}
	for _, p := range []string{"/master/weights", "/weights"} {
		mux.HandleFunc(p, m.handleWeights)
	}
	for _, p := range []string{"/master/reserve", "/reserve"} {
		mux.HandleFunc(p, m.handleReservation(masterpb.Call_RESERVE_RESOURCES))
	}
	for _, p := range []string{"/master/unreserve", "/unreserve"} {
		mux.HandleFunc(p, m.handleReservation(masterpb.Call_UNRESERVE_RESOURCES))
	}
	mux.HandleFunc("/logging/toggle", m.handleLoggingToggle)
}

// writeProtoJSON answers msg in Mesos's JSON.
func writeProtoJSON(w http.ResponseWriter, msg proto.Message) {
	data, err := codec.JSON.Marshal(msg)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", codec.MediaTypeJSON)
	_, _ = w.Write(data)
}

// handleSchedule is /master/maintenance/schedule: GET the schedule, POST
// a new one (UPDATE_MAINTENANCE_SCHEDULE), in Mesos's JSON.
func (m *Master) handleSchedule(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		m.mu.Lock()
		s := m.getScheduleLocked(m.viewerOf(r)).GetSchedule()
		m.mu.Unlock()
		writeProtoJSON(w, s)
	case http.MethodPost:
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			writeError(w, httpErr(http.StatusBadRequest, "Failed to read the request body: %v", err))
			return
		}
		s := &maintenance.Schedule{}
		if err := codec.JSON.Unmarshal(body, s); err != nil {
			writeError(w, httpErr(http.StatusBadRequest, "Failed to parse the body into a Schedule: %v", err))
			return
		}
		m.answerAsOperator(w, r, &masterpb.Call{Type: masterpb.Call_UPDATE_MAINTENANCE_SCHEDULE.Enum(),
			UpdateMaintenanceSchedule: &masterpb.Call_UpdateMaintenanceSchedule{Schedule: s}})
	default:
		errdefs.MethodNotAllowed(w, r, http.MethodGet, http.MethodPost)
	}
}

// handleMachines is POST /master/machine/down and /master/machine/up with
// a JSON array of MachineID: START_MAINTENANCE and STOP_MAINTENANCE.
func (m *Master) handleMachines(typ masterpb.Call_Type) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			errdefs.MethodNotAllowed(w, r, http.MethodPost)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			writeError(w, httpErr(http.StatusBadRequest, "Failed to read the request body: %v", err))
			return
		}
		var raw []json.RawMessage
		if err := json.Unmarshal(body, &raw); err != nil {
			writeError(w, httpErr(http.StatusBadRequest, "Expecting a JSON array of machine ids: %v", err))
			return
		}
		var ids []*mesos.MachineID
		for _, x := range raw {
			id := &mesos.MachineID{}
			if err := codec.JSON.Unmarshal(x, id); err != nil {
				writeError(w, httpErr(http.StatusBadRequest, "Invalid machine id: %v", err))
				return
			}
			ids = append(ids, id)
		}
		call := &masterpb.Call{Type: typ.Enum()}
		if typ == masterpb.Call_START_MAINTENANCE {
			call.StartMaintenance = &masterpb.Call_StartMaintenance{Machines: ids}
		} else {
			call.StopMaintenance = &masterpb.Call_StopMaintenance{Machines: ids}
		}
		m.answerAsOperator(w, r, call)
	}
}

// handleQuota is /master/quota: GET is the QuotaStatus (configs, and
// infos for older clients) in JSON; POST a QuotaRequest is SET_QUOTA and
// DELETE /master/quota/ROLE is REMOVE_QUOTA, as Mesos's endpoint has them.
func (m *Master) handleQuota(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		m.mu.Lock()
		st := m.getQuotaLocked(m.viewerOf(r)).GetStatus()
		m.mu.Unlock()
		data, err := codec.JSON.Marshal(st)
		if err != nil {
			writeError(w, err)
			return
		}
		w.Header().Set("Content-Type", codec.MediaTypeJSON)
		_, _ = w.Write(data)
	case http.MethodPost:
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
		if err != nil {
			writeError(w, httpErr(http.StatusBadRequest, "Failed to read the request body: %v", err))
			return
		}
		req := &quota.QuotaRequest{}
		if err := codec.JSON.Unmarshal(body, req); err != nil {
			writeError(w, httpErr(http.StatusBadRequest, "Failed to parse the body into a QuotaRequest: %v", err))
			return
		}
		m.answerAsOperator(w, r, &masterpb.Call{Type: masterpb.Call_SET_QUOTA.Enum(), SetQuota: &masterpb.Call_SetQuota{QuotaRequest: req}})
	default:
		errdefs.MethodNotAllowed(w, r, http.MethodGet, http.MethodPost, http.MethodDelete)
	}
}

// handleQuotaRole is DELETE /master/quota/ROLE.
func (m *Master) handleQuotaRole(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodDelete {
		errdefs.MethodNotAllowed(w, r, http.MethodDelete)
		return
	}
	role := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/master"), "/quota/")
	m.answerAsOperator(w, r, &masterpb.Call{Type: masterpb.Call_REMOVE_QUOTA.Enum(), RemoveQuota: &masterpb.Call_RemoveQuota{Role: proto.String(role)}})
}

// handleRoles is /master/roles: every role with a framework, a weight or a
// reservation, with its weight, frameworks and resources.
func (m *Master) handleRoles(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	roles := m.rolesProtoLocked()
	m.mu.Unlock()
	out := make([]any, 0, len(roles.GetRoles()))
	for _, role := range roles.GetRoles() {
		fws := make([]string, 0, len(role.GetFrameworks()))
		for _, id := range role.GetFrameworks() {
			fws = append(fws, id.GetValue())
		}
		res, _ := resources.FromProto(role.GetResources())
		j := map[string]any{
			"name": role.GetName(), "weight": role.GetWeight(), "frameworks": fws,
			"resources": res.Model(),
		}
		out = append(out, j)
	}
	writeJSON(w, r, map[string]any{"roles": out})
}

// handleWeights is /master/weights: GET lists the role weights in force as
// Mesos's list of WeightInfo; PUT with such a list is UPDATE_WEIGHTS.
func (m *Master) handleWeights(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		m.mu.Lock()
		weights := m.getWeightsLocked()
		m.mu.Unlock()
		out := []any{}
		for _, wi := range weights.GetWeightInfos() {
			out = append(out, map[string]any{"role": wi.GetRole(), "weight": wi.GetWeight()})
		}
		writeJSON(w, r, out)
	case http.MethodPut:
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
		if err != nil {
			writeError(w, httpErr(http.StatusBadRequest, "Failed to read the request body: %v", err))
			return
		}
		call, err := weightsCall(body)
		if err != nil {
			writeError(w, err)
			return
		}
		m.answerAsOperator(w, r, call)
	default:
		errdefs.MethodNotAllowed(w, r, http.MethodGet, http.MethodPut)
	}
}

// handleReservation is POST /master/reserve and /master/unreserve with
// slaveId=ID&resources=<JSON array of Resource>, Mesos's endpoint form of
// RESERVE_RESOURCES and UNRESERVE_RESOURCES.
func (m *Master) handleReservation(typ masterpb.Call_Type) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			errdefs.MethodNotAllowed(w, r, http.MethodPost)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		if err := r.ParseForm(); err != nil {
			writeError(w, httpErr(http.StatusBadRequest, "Unable to parse the request body: %v", err))
			return
		}
		id, raw := r.Form.Get("slaveId"), r.Form.Get("resources")
		if id == "" || raw == "" {
			writeError(w, httpErr(http.StatusBadRequest, "Expecting 'slaveId' and 'resources' in the request body"))
			return
		}
		rs, err := resources.ParseJSON([]byte(raw))
		if err != nil {
			writeError(w, httpErr(http.StatusBadRequest, "Invalid 'resources': %v", err))
			return
		}
		agentID := &mesos.AgentID{Value: proto.String(id)}
		call := &masterpb.Call{Type: typ.Enum()}
		if typ == masterpb.Call_RESERVE_RESOURCES {
			call.ReserveResources = &masterpb.Call_ReserveResources{AgentId: agentID, Resources: rs}
		} else {
			call.UnreserveResources = &masterpb.Call_UnreserveResources{AgentId: agentID, Resources: rs}
		}
		m.answerAsOperator(w, r, call)
	}
}

// handleStateSummary is /master/state-summary: agents and frameworks with
// their resources and task counts by state, without the tasks themselves
// (what UIs and mesos-dns-like tools poll, cheaply).
func (m *Master) handleStateSummary(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	counts := func(tasks []*task) map[string]int {
		c := map[string]int{}
		for _, s := range []mesos.TaskState{mesos.TaskState_TASK_STAGING, mesos.TaskState_TASK_STARTING, mesos.TaskState_TASK_RUNNING,
			mesos.TaskState_TASK_KILLING, mesos.TaskState_TASK_FINISHED, mesos.TaskState_TASK_KILLED, mesos.TaskState_TASK_FAILED,
			mesos.TaskState_TASK_LOST, mesos.TaskState_TASK_ERROR, mesos.TaskState_TASK_UNREACHABLE} {
			c[s.String()] = 0
		}
		for _, t := range tasks {
			c[t.state().String()]++
		}
		return c
	}
	agentFws := map[string]map[string]bool{}
	fwAgents := map[string]map[string]bool{}
	link := func(agentID, fwID string) {
		if agentFws[agentID] == nil {
			agentFws[agentID] = map[string]bool{}
		}
		if fwAgents[fwID] == nil {
			fwAgents[fwID] = map[string]bool{}
		}
		agentFws[agentID][fwID], fwAgents[fwID][agentID] = true, true
	}
	fwTasks := map[string][]*task{}
	for _, id := range sortedKeys(m.frameworks) {
		fw := m.frameworks[id]
		for _, t := range fw.tasks {
			fwTasks[id] = append(fwTasks[id], t)
			link(t.agentID, id)
		}
		for _, t := range fw.completedTasks {
			fwTasks[id] = append(fwTasks[id], t)
			link(t.agentID, id)
		}
	}
	slaves := []any{}
	for _, id := range sortedKeys(m.agents) {
		a := m.agents[id]
		if a.recovered {
			continue
		}
		j := m.agentJSON(a)
		var tasks []*task
		for _, ts := range a.tasks {
			for _, t := range ts {
				tasks = append(tasks, t)
			}
		}
		for k, v := range counts(tasks) {
			j[k] = v
		}
		j["framework_ids"] = slices.Sorted(func(yield func(string) bool) {
			for k := range agentFws[id] {
				if !yield(k) {
					return
				}
			}
		})
		slaves = append(slaves, j)
	}
	frameworks := []any{}
	for _, id := range sortedKeys(m.frameworks) {
		j := m.frameworkJSON(m.frameworks[id], false)
		for _, k := range []string{"tasks", "completed_tasks", "unreachable_tasks", "offers", "executors"} {
			delete(j, k)
		}
		for k, v := range counts(fwTasks[id]) {
			j[k] = v
		}
		j["slave_ids"] = slices.Sorted(func(yield func(string) bool) {
			for k := range fwAgents[id] {
				if !yield(k) {
					return
				}
			}
		})
		frameworks = append(frameworks, j)
	}
	out := map[string]any{"hostname": m.self.Hostname, "cluster": m.cfg.Cluster, "slaves": slaves, "frameworks": frameworks}
	m.mu.Unlock()
	m.viewerOf(r).filterStateJSON(out)
	writeJSON(w, r, out)
}

// handleTeardown is POST /master/teardown with frameworkId=ID (form or
// query), as Mesos's: the same teardown as the operator API's TEARDOWN,
// with its credentials.
func (m *Master) handleTeardown(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		errdefs.MethodNotAllowed(w, r, http.MethodPost)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if err := r.ParseForm(); err != nil {
		writeError(w, httpErr(http.StatusBadRequest, "Unable to parse the request body: %v", err))
		return
	}
	id := r.Form.Get("frameworkId")
	if id == "" {
		writeError(w, httpErr(http.StatusBadRequest, "Missing 'frameworkId' query parameter in the request body"))
		return
	}
	call := &masterpb.Call{Type: masterpb.Call_TEARDOWN.Enum(), Teardown: &masterpb.Call_Teardown{FrameworkId: &mesos.FrameworkID{Value: proto.String(id)}}}
	m.answerAsOperator(w, r, call)
}

// handleLoggingToggle is /logging/toggle?level=N&duration=D: the operator
// API's SET_LOGGING_LEVEL.
func (m *Master) handleLoggingToggle(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("level") == "" && q.Get("duration") == "" {
		writeError(w, httpErr(http.StatusBadRequest, "Expecting 'level' and 'duration' query parameters"))
		return
	}
	level, err := strconv.ParseUint(q.Get("level"), 10, 32)
	if err != nil {
		writeError(w, httpErr(http.StatusBadRequest, "Invalid level '%s'", q.Get("level")))
		return
	}
	d, err := parseMesosDuration(q.Get("duration"))
	if err != nil {
		writeError(w, httpErr(http.StatusBadRequest, "Invalid duration '%s': %v", q.Get("duration"), err))
		return
	}
	call := &masterpb.Call{Type: masterpb.Call_SET_LOGGING_LEVEL.Enum(), SetLoggingLevel: &masterpb.Call_SetLoggingLevel{
		Level: proto.Uint32(uint32(level)), Duration: &mesos.DurationInfo{Nanoseconds: proto.Int64(int64(d))}}}
	m.answerAsOperator(w, r, call)
}

// answerAsOperator runs call through the operator API's handler, so an
// endpoint and its call share the checks (credentials, leader) and the
// effect.
func (m *Master) answerAsOperator(w http.ResponseWriter, r *http.Request, call *masterpb.Call) {
	body, err := codec.JSON.Marshal(call)
	if err != nil {
		writeError(w, err)
		return
	}
	req := r.Clone(r.Context())
	req.Method = http.MethodPost
	req.Header = r.Header.Clone()
	req.Header.Set("Content-Type", codec.MediaTypeJSON)
	req.Header.Set("Accept", codec.MediaTypeJSON)
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.ContentLength = int64(len(body))
	m.handleOperator(w, req)
}

// parseMesosDuration reads Mesos's durations ("10secs", "5mins", "1hrs")
// and Go's ("10s").
func parseMesosDuration(s string) (time.Duration, error) {
	for _, u := range []struct {
		suffix string
		unit   time.Duration
	}{{"weeks", 7 * 24 * time.Hour}, {"days", 24 * time.Hour}, {"mins", time.Minute}, {"secs", time.Second},
		{"hrs", time.Hour}, {"ms", time.Millisecond}, {"us", time.Microsecond}, {"ns", time.Nanosecond}} {
		if len(s) > len(u.suffix) && s[len(s)-len(u.suffix):] == u.suffix {
			v, err := strconv.ParseFloat(s[:len(s)-len(u.suffix)], 64)
			if err != nil || v < 0 {
				return 0, errdefs.Statusf(http.StatusBadRequest, "not a duration")
			}
			return time.Duration(v * float64(u.unit)), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, errdefs.Statusf(http.StatusBadRequest, "not a duration")
	}
	return d, nil
}
