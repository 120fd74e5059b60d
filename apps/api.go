package apps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mesolite/mesolite/errdefs"
)

// HTTP bounds (DESIGN.md: every server is bounded). Event streams last,
// so there is no WriteTimeout; each of their writes has its own deadline.
const (
	maxBodyBytes      = 1 << 20
	bodyReadTimeout   = 30 * time.Second
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
	eventWriteTimeout = 30 * time.Second
	eventKeepAlive    = 15 * time.Second
)

// errorJSON is Marathon's error body.
type errorJSON struct {
	Message     string          `json:"message"`
	Details     []Violation     `json:"details,omitempty"`
	Deployments []deploymentRef `json:"deployments,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		errdefs.HTTPError(w, fmt.Errorf("encoding the answer: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	w.Write(b)
	w.Write([]byte("\n"))
}

// writeError answers err as Marathon would: 422 with the field paths for
// an invalid definition, 400 for JSON that does not decode, 409 with the
// deployments for a locked app, the errdefs class's status otherwise.
func writeError(w http.ResponseWriter, err error) {
	var inv *InvalidError
	var locked *LockedError
	switch {
	case errors.As(err, &inv):
		code := http.StatusUnprocessableEntity
		if inv.Syntax {
			code = http.StatusBadRequest
		}
		writeJSON(w, code, errorJSON{Message: inv.Message, Details: inv.Violations})
	case errors.As(err, &locked):
		body := errorJSON{Message: locked.Error()}
		for _, id := range locked.Deployments {
			body.Deployments = append(body.Deployments, deploymentRef{ID: id})
		}
		writeJSON(w, http.StatusConflict, body)
	default:
		code := errdefs.HTTPStatus(err)
		if code == http.StatusInternalServerError {
			errdefs.HTTPError(w, err)
			return
		}
		msg := err.Error()
		// The class is for us; the message is Marathon's.
		for _, class := range []error{errdefs.ErrNotFound, errdefs.ErrConflict, errdefs.ErrInvalid, errdefs.ErrUnavailable,
			errdefs.ErrForbidden, errdefs.ErrUnauthorized} {
			msg = strings.TrimSuffix(msg, ": "+class.Error())
		}
		writeJSON(w, code, errorJSON{Message: msg})
	}
}

// readBody reads a JSON request body within the bounds.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			// A form or text body is what a cross-site page can send
			// without asking: only JSON changes anything.
			return nil, errdefs.Statusf(http.StatusUnsupportedMediaType, "Unsupported media type %q: send application/json", ct)
		}
	}
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(bodyReadTimeout))
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return nil, errdefs.Statusf(http.StatusRequestEntityTooLarge, "Request body is larger than %d bytes", maxBodyBytes)
		}
		return nil, fmt.Errorf("reading the request body: %w: %w", errdefs.ErrInvalid, err)
	}
	return b, nil
}

func boolParam(r *http.Request, name string) bool {
	v, _ := strconv.ParseBool(r.URL.Query().Get(name))
	return v
}

func originOf(r *http.Request) origin {
	ip, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		ip = r.RemoteAddr
	}
	return origin{remoteIP: ip, uri: r.URL.Path}
}

// deploymentAnswer writes a deployment result with Marathon's header.
func deploymentAnswer(w http.ResponseWriter, code int, res *DeploymentResult) {
	w.Header().Set("Marathon-Deployment-Id", res.DeploymentID)
	writeJSON(w, code, res)
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request, allowed ...string) {
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	writeJSON(w, http.StatusMethodNotAllowed, errorJSON{Message: fmt.Sprintf("Method %s is not allowed here; use %s", r.Method, strings.Join(allowed, " or "))})
}

// routes builds the API's handler (without authentication and bounds,
// which Service adds).
func (s *Service) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v2/apps", s.handleApps)
	mux.HandleFunc("/v2/apps/", s.handleApp)
	mux.HandleFunc("/v2/tasks", s.handleTasks)
	mux.HandleFunc("/v2/tasks/delete", s.handleTasksDelete)
	mux.HandleFunc("/v2/groups", s.handleGroups)
	mux.HandleFunc("/v2/groups/", s.handleGroups)
	mux.HandleFunc("/v2/deployments", s.handleDeployments)
	mux.HandleFunc("/v2/deployments/", s.handleDeployment)
	mux.HandleFunc("/v2/queue", s.handleQueue)
	mux.HandleFunc("/v2/queue/", s.handleQueueDelay)
	mux.HandleFunc("/v2/events", s.handleEvents)
	mux.HandleFunc("/v2/info", s.handleInfo)
	mux.HandleFunc("/v2/leader", s.handleLeader)
	mux.HandleFunc("/ping", s.handlePing)
	mux.HandleFunc("/metrics", s.handleMetrics)
	mux.Handle("/{$}", page)
	mux.Handle("/ui/", page)
	mux.Handle("/static/", page)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, errorJSON{Message: "The requested resource could not be found but may be available again in the future."})
	})
	return mux
}

// handleApps is /v2/apps: the list (GET) and create (POST).
func (s *Service) handleApps(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.listApps(w, r)
	case http.MethodPost:
		body, err := readBody(w, r)
		if err != nil {
			writeError(w, err)
			return
		}
		a, err := decodeApp(body, defaultApp())
		if err == nil {
			err = a.check()
		}
		if err != nil {
			writeError(w, err)
			return
		}
		created, res, err := s.eng.createApp(r.Context(), a, originOf(r))
		if err != nil {
			writeError(w, err)
			return
		}
		w.Header().Set("Location", "/v2/apps"+created.ID)
		w.Header().Set("Marathon-Deployment-Id", res.DeploymentID)
		s.eng.mu.RLock()
		var v appJSON
		if st := s.eng.apps[PathID(created.ID)]; st != nil {
			v = viewApp(st, embeds{counts: true, deployments: true})
		} else {
			v = appJSON{App: created}
		}
		s.eng.mu.RUnlock()
		writeJSON(w, http.StatusCreated, v)
	case http.MethodPut, http.MethodPatch:
		body, err := readBody(w, r)
		if err != nil {
			writeError(w, err)
			return
		}
		var bodies []json.RawMessage
		if err := json.Unmarshal(body, &bodies); err != nil {
			writeError(w, jsonError(err))
			return
		}
		partial := r.Method == http.MethodPatch || r.URL.Query().Get("partialUpdate") != "false"
		res, err := s.eng.putApps(r.Context(), bodies, partial, boolParam(r, "force"), originOf(r))
		if err != nil {
			writeError(w, err)
			return
		}
		deploymentAnswer(w, http.StatusOK, res)
	default:
		methodNotAllowed(w, r, http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch)
	}
}

func (s *Service) listApps(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	em := parseEmbeds(q["embed"], false)
	idFilter, cmdFilter := q.Get("id"), q.Get("cmd")
	sel, err := parseLabelSelector(q.Get("label"))
	if err != nil {
		writeError(w, err)
		return
	}
	s.eng.mu.RLock()
	ids := slices.Sorted(maps.Keys(s.eng.apps))
	out := make([]appJSON, 0, len(ids))
	for _, id := range ids {
		st := s.eng.apps[id]
		if st.deleted || !strings.Contains(st.app.ID, idFilter) || !strings.Contains(st.app.Cmd, cmdFilter) || !sel.matches(st.app.Labels) {
			continue
		}
		out = append(out, viewApp(st, em))
	}
	s.eng.mu.RUnlock()
	writeJSON(w, http.StatusOK, map[string]any{"apps": out})
}

// appPath splits /v2/apps/<id>[/<sub>...] into the app id and what
// follows it: "restart", "tasks", "tasks/<task>", "versions",
// "versions/<version>". Like Marathon, it reads those words at the end as
// the sub-resource, not as the app's last segment.
func appPath(p string) (PathID, []string, error) {
	rest := strings.Trim(strings.TrimPrefix(p, "/v2/apps"), "/")
	segs := strings.Split(rest, "/")
	var sub []string
	switch n := len(segs); {
	case n >= 2 && (segs[n-2] == "tasks" || segs[n-2] == "versions"):
		sub, segs = segs[n-2:], segs[:n-2]
	case n >= 2 && (segs[n-1] == "restart" || segs[n-1] == "tasks" || segs[n-1] == "versions"):
		sub, segs = segs[n-1:], segs[:n-1]
	}
	id, err := ParsePathID("/"+strings.Join(segs, "/"), Root)
	if err == nil && id == Root {
		err = fmt.Errorf("no app id: %w", errdefs.ErrNotFound)
	}
	return id, sub, err
}

// handleApp is everything under /v2/apps/<id>.
func (s *Service) handleApp(w http.ResponseWriter, r *http.Request) {
	id, sub, err := appPath(r.URL.Path)
	if err != nil {
		writeJSON(w, http.StatusNotFound, errorJSON{Message: fmt.Sprintf("App '%s' does not exist", strings.TrimPrefix(r.URL.Path, "/v2/apps"))})
		return
	}
	force := boolParam(r, "force")
	switch {
	case len(sub) == 0:
		s.handleOneApp(w, r, id, force)
	case sub[0] == "restart":
		if r.Method != http.MethodPost {
			methodNotAllowed(w, r, http.MethodPost)
			return
		}
		res, err := s.eng.restartApp(r.Context(), id, force)
		if err != nil {
			writeError(w, err)
			return
		}
		deploymentAnswer(w, http.StatusOK, res)
	case sub[0] == "tasks":
		s.handleAppTasks(w, r, id, sub[1:], force)
	case sub[0] == "versions":
		s.handleVersions(w, r, id, sub[1:])
	}
}

func (s *Service) handleOneApp(w http.ResponseWriter, r *http.Request, id PathID, force bool) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		em := parseEmbeds(r.URL.Query()["embed"], true)
		s.eng.mu.RLock()
		st := s.eng.apps[id]
		var v appJSON
		if st != nil && !st.deleted {
			v = viewApp(st, em)
		}
		s.eng.mu.RUnlock()
		if v.App == nil {
			writeError(w, appNotFound(id))
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"app": v})
	case http.MethodPut, http.MethodPatch:
		body, err := readBody(w, r)
		if err != nil {
			writeError(w, err)
			return
		}
		partial := r.Method == http.MethodPatch || r.URL.Query().Get("partialUpdate") != "false"
		if v, ok := versionOnly(body); ok {
			old, err := s.appVersion(r.Context(), id, v)
			if err != nil {
				writeError(w, err)
				return
			}
			res, err := s.eng.rollbackTo(r.Context(), id, old, force, originOf(r))
			if err != nil {
				writeError(w, err)
				return
			}
			deploymentAnswer(w, http.StatusOK, res)
			return
		}
		res, created, err := s.eng.putApp(r.Context(), id, body, partial, force, originOf(r))
		if err != nil {
			writeError(w, err)
			return
		}
		code := http.StatusOK
		if created {
			code = http.StatusCreated
			w.Header().Set("Location", "/v2/apps"+string(id))
		}
		deploymentAnswer(w, code, res)
	case http.MethodDelete:
		res, err := s.eng.deleteApp(r.Context(), id, force)
		if err != nil {
			writeError(w, err)
			return
		}
		deploymentAnswer(w, http.StatusOK, res)
	default:
		methodNotAllowed(w, r, http.MethodGet, http.MethodPut, http.MethodPatch, http.MethodDelete)
	}
}

// versionOnly says whether a PUT body is only {"version": "..."} (with
// the id perhaps): a rollback to that version.
func versionOnly(body []byte) (string, bool) {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return "", false
	}
	delete(m, "id")
	raw, ok := m["version"]
	if !ok || len(m) != 1 {
		return "", false
	}
	var v string
	if json.Unmarshal(raw, &v) != nil {
		return "", false
	}
	return v, true
}

// appVersion reads a stored version of an app.
func (s *Service) appVersion(ctx context.Context, id PathID, version string) (*App, error) {
	if _, err := ParseTime(version); err != nil {
		return nil, fmt.Errorf("App '%s' has no version %.40q: %w", id, version, errdefs.ErrNotFound)
	}
	b, err := s.store.Get(ctx, bucketVersions, string(id)+"@"+version)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil, fmt.Errorf("App '%s' has no version %s: %w", id, version, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	a := new(App)
	if err := json.Unmarshal(b, a); err != nil {
		return nil, fmt.Errorf("version %s of %s in the store: %w", version, id, err)
	}
	return a, nil
}

func (s *Service) handleVersions(w http.ResponseWriter, r *http.Request, id PathID, sub []string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, r, http.MethodGet)
		return
	}
	s.eng.mu.RLock()
	st := s.eng.apps[id]
	var versions []string
	if st != nil && !st.deleted {
		versions = slices.Clone(st.versions)
	}
	s.eng.mu.RUnlock()
	if versions == nil {
		writeError(w, appNotFound(id))
		return
	}
	if len(sub) == 0 {
		slices.Reverse(versions)
		writeJSON(w, http.StatusOK, map[string]any{"versions": versions})
		return
	}
	a, err := s.appVersion(r.Context(), id, sub[0])
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

// handleAppTasks is /v2/apps/<id>/tasks[/<task>].
func (s *Service) handleAppTasks(w http.ResponseWriter, r *http.Request, id PathID, sub []string, force bool) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if len(sub) > 0 {
			methodNotAllowed(w, r, http.MethodDelete)
			return
		}
		s.eng.mu.RLock()
		st := s.eng.apps[id]
		if st == nil || st.deleted {
			s.eng.mu.RUnlock()
			writeError(w, appNotFound(id))
			return
		}
		tasks := []taskJSON{}
		for _, tid := range slices.Sorted(maps.Keys(st.instances)) {
			tasks = append(tasks, viewTask(st.instances[tid], st.app))
		}
		var text string
		if wantsText(r) {
			text = tasksText([]*appState{st})
		}
		s.eng.mu.RUnlock()
		if wantsText(r) {
			writeText(w, text)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"tasks": tasks})
	case http.MethodDelete:
		scale := boolParam(r, "scale")
		if scale && boolParam(r, "wipe") {
			writeJSON(w, http.StatusBadRequest, errorJSON{Message: "You cannot use scale and wipe at the same time."})
			return
		}
		var pick func(*Instance) bool
		switch {
		case len(sub) == 1:
			tid := sub[0]
			if _, err := AppOfTaskID(tid); err != nil {
				writeJSON(w, http.StatusNotFound, errorJSON{Message: fmt.Sprintf("Task '%.80s' does not exist", tid)})
				return
			}
			pick = func(i *Instance) bool { return i.TaskID == tid }
		case r.URL.Query().Get("host") != "":
			host := r.URL.Query().Get("host")
			pick = func(i *Instance) bool { return i.Placement.Hostname == host || i.AgentID == host }
		default:
			pick = func(*Instance) bool { return true }
		}
		killed, res, err := s.eng.killInstances(r.Context(), id, pick, scale, force)
		if err != nil {
			writeError(w, err)
			return
		}
		if res != nil {
			deploymentAnswer(w, http.StatusOK, res)
			return
		}
		s.eng.mu.RLock()
		var a *App
		if st := s.eng.apps[id]; st != nil {
			a = st.app
		}
		views := []taskJSON{}
		for i := range killed {
			views = append(views, viewTask(&killed[i], a))
		}
		s.eng.mu.RUnlock()
		if len(sub) == 1 {
			if len(views) == 0 {
				writeJSON(w, http.StatusNotFound, errorJSON{Message: fmt.Sprintf("Task '%.80s' does not exist", sub[0])})
				return
			}
			writeJSON(w, http.StatusOK, map[string]any{"task": views[0]})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"tasks": views})
	default:
		methodNotAllowed(w, r, http.MethodGet, http.MethodDelete)
	}
}

// wantsText says whether the client asked for the text form of tasks.
func wantsText(r *http.Request) bool {
	accept := r.Header.Get("Accept")
	return strings.Contains(accept, "text/plain") && !strings.Contains(accept, "application/json")
}

func writeText(w http.ResponseWriter, s string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, s)
}

// tasksText is the form load balancers read (haproxy-marathon-bridge): per
// app and service port, the app's safe id, the service port, then
// host:port of every running task, tab-separated.
func tasksText(apps []*appState) string {
	var b strings.Builder
	for _, st := range apps {
		id := PathID(st.app.ID).Safe()
		var running []*Instance
		for _, tid := range slices.Sorted(maps.Keys(st.instances)) {
			if i := st.instances[tid]; i.Condition == Running {
				running = append(running, i)
			}
		}
		sps := st.app.servicePorts()
		if len(sps) == 0 {
			b.WriteString(id + "\t \t")
			for _, i := range running {
				b.WriteString(i.Placement.Hostname + "\t")
			}
			b.WriteString("\n")
			continue
		}
		for k, sp := range sps {
			fmt.Fprintf(&b, "%s\t%d\t", id, *sp)
			for _, i := range running {
				if k < len(i.Ports) {
					fmt.Fprintf(&b, "%s:%d\t", i.Placement.Hostname, i.Ports[k])
				}
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

// handleTasks is /v2/tasks: every app's tasks, JSON or text.
func (s *Service) handleTasks(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, r, http.MethodGet)
		return
	}
	status := append(r.URL.Query()["status"], r.URL.Query()["status[]"]...)
	keep := func(i *Instance) bool {
		if len(status) == 0 {
			return true
		}
		for _, want := range status {
			switch {
			case want == "running" && i.Condition == Running:
				return true
			case want == "staging" && (i.Condition == Staging || i.Condition == Provisioned || i.Condition == Starting):
				return true
			}
		}
		return false
	}
	s.eng.mu.RLock()
	var states []*appState
	for _, id := range slices.Sorted(maps.Keys(s.eng.apps)) {
		if st := s.eng.apps[id]; !st.deleted {
			states = append(states, st)
		}
	}
	if wantsText(r) {
		text := tasksText(states)
		s.eng.mu.RUnlock()
		writeText(w, text)
		return
	}
	tasks := []taskJSON{}
	for _, st := range states {
		for _, tid := range slices.Sorted(maps.Keys(st.instances)) {
			if i := st.instances[tid]; keep(i) {
				tasks = append(tasks, viewTask(i, st.app))
			}
		}
	}
	s.eng.mu.RUnlock()
	writeJSON(w, http.StatusOK, map[string]any{"tasks": tasks})
}

// handleTasksDelete is POST /v2/tasks/delete {"ids": [...]}.
func (s *Service) handleTasksDelete(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, r, http.MethodPost)
		return
	}
	body, err := readBody(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	var req struct {
		IDs []string `json:"ids"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, jsonError(err))
		return
	}
	byApp := map[PathID][]string{}
	for _, tid := range req.IDs {
		id, err := AppOfTaskID(tid)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, errorJSON{Message: fmt.Sprintf("Invalid task id '%.80s'", tid)})
			return
		}
		byApp[id] = append(byApp[id], tid)
	}
	scale, force := boolParam(r, "scale"), boolParam(r, "force")
	var killed []taskJSON
	var last *DeploymentResult
	for _, id := range slices.Sorted(maps.Keys(byApp)) {
		ids := byApp[id]
		ks, res, err := s.eng.killInstances(r.Context(), id, func(i *Instance) bool { return slices.Contains(ids, i.TaskID) }, scale, force)
		if err != nil {
			writeError(w, err)
			return
		}
		if res != nil {
			last = res
		}
		for i := range ks {
			killed = append(killed, viewTask(&ks[i], nil))
		}
	}
	if scale && last != nil {
		deploymentAnswer(w, http.StatusOK, last)
		return
	}
	if killed == nil {
		killed = []taskJSON{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"tasks": killed})
}

func (s *Service) handleDeployments(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, r, http.MethodGet)
		return
	}
	s.eng.mu.RLock()
	out := []deploymentJSON{}
	for _, parts := range plansOf(s.eng.deployments) {
		v := viewPlan(parts)
		// The current actions carry the readiness of the instances
		// they wait for, as Marathon shows them.
		for k := range v.CurrentActions {
			if st := s.eng.apps[v.CurrentActions[k].App]; st != nil {
				for _, id := range slices.Sorted(maps.Keys(st.instances)) {
					if r := st.instances[id].Readiness; r != nil {
						v.CurrentActions[k].ReadinessCheckResults = append(v.CurrentActions[k].ReadinessCheckResults, *r)
					}
				}
			}
		}
		out = append(out, v)
	}
	s.eng.mu.RUnlock()
	writeJSON(w, http.StatusOK, out)
}

func (s *Service) handleDeployment(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimPrefix(r.URL.Path, "/v2/deployments/")
	if r.Method != http.MethodDelete {
		methodNotAllowed(w, r, http.MethodDelete)
		return
	}
	if len(id) > 64 || strings.ContainsAny(id, "/ ") {
		writeJSON(w, http.StatusNotFound, errorJSON{Message: "DeploymentPlan does not exist"})
		return
	}
	force := boolParam(r, "force")
	res, err := s.eng.deleteDeployment(r.Context(), id, force)
	if err != nil {
		writeError(w, err)
		return
	}
	if force {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	deploymentAnswer(w, http.StatusOK, res)
}

func (s *Service) handleQueue(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, r, http.MethodGet)
		return
	}
	now := time.Now()
	s.eng.mu.RLock()
	out := []queueJSON{}
	for _, id := range slices.Sorted(maps.Keys(s.eng.apps)) {
		if st := s.eng.apps[id]; st.toLaunch > 0 && !st.deleted {
			out = append(out, viewQueue(st, now))
		}
	}
	s.eng.mu.RUnlock()
	writeJSON(w, http.StatusOK, map[string]any{"queue": out})
}

// handleQueueDelay is DELETE /v2/queue/<app id>/delay.
func (s *Service) handleQueueDelay(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, "/v2/queue"), "/delay")
	if !ok {
		writeJSON(w, http.StatusNotFound, errorJSON{Message: "The requested resource could not be found"})
		return
	}
	if r.Method != http.MethodDelete {
		methodNotAllowed(w, r, http.MethodDelete)
		return
	}
	id, err := ParsePathID(rest, Root)
	if err == nil {
		err = s.eng.resetDelay(r.Context(), id)
	}
	if err != nil {
		if errors.Is(err, errdefs.ErrInvalid) {
			err = fmt.Errorf("App '%s' does not exist: %w", rest, errdefs.ErrNotFound)
		}
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
