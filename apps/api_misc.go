package apps

import (
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mesolite/mesolite/errdefs"
)

// handleEvents is /v2/events: server-sent events, every type or those of
// event_type (repeatable).
func (s *Service) handleEvents(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		methodNotAllowed(w, r, http.MethodGet)
		return
	}
	o := originOf(r)
	sub, err := s.bus.subscribe(o.remoteIP, r.URL.Query()["event_type"])
	if err != nil {
		writeJSON(w, http.StatusTooManyRequests, errorJSON{Message: "Too many event streams open; try again later"})
		return
	}
	defer s.bus.unsubscribe(sub)
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache, no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// The status goes out at once, before any event: a client (or a
	// standby proxying the stream, which waits 10 s for it) sees the
	// stream open even when its filter lets no event through for long.
	if rc.Flush() != nil {
		return
	}
	write := func(ev Event) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(eventWriteTimeout))
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.Type, ev.Data); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if sub.filter == nil || sub.filter[EventStreamAttached] {
		if !write(newEvent(EventStreamAttached, time.Now(), map[string]any{"remoteAddress": o.remoteIP})) {
			return
		}
	}
	keepAlive := time.NewTicker(eventKeepAlive)
	defer keepAlive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-sub.gone:
			// Dropped for falling behind: the client reconnects.
			return
		case ev := <-sub.ch:
			if !write(ev) {
				return
			}
		case <-keepAlive.C:
			// A comment line: proxies and clients see a live stream.
			_ = rc.SetWriteDeadline(time.Now().Add(eventWriteTimeout))
			if _, err := fmt.Fprint(w, ":\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		}
	}
}

// MarathonVersion is the Marathon API level /v2/info reports: clients
// pick features by it.
const MarathonVersion = "1.11.0"

func (s *Service) handleInfo(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, r, http.MethodGet)
		return
	}
	s.eng.mu.RLock()
	fwID := s.eng.frameworkID
	s.eng.mu.RUnlock()
	if fwID == "" {
		fwID = s.driver.FrameworkID()
	}
	var role any
	if s.cfg.Role != "" {
		role = s.cfg.Role
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"name":        "marathon",
		"version":     MarathonVersion,
		"buildref":    "mesolite",
		"elected":     s.cfg.HA == nil || s.cfg.HA.Leading(),
		"leader":      s.leader(),
		"frameworkId": fwID,
		"marathon_config": map[string]any{
			"master":              s.cfg.Master,
			"failover_timeout":    int64(s.cfg.FailoverTimeout.Seconds()),
			"framework_name":      s.cfg.FrameworkName,
			"ha":                  s.cfg.HA != nil,
			"checkpoint":          true,
			"local_port_min":      s.cfg.ServicePortMin,
			"local_port_max":      s.cfg.ServicePortMax,
			"executor":            "//cmd",
			"hostname":            s.cfg.Hostname,
			"webui_url":           s.frameworkWebUIURL(),
			"mesos_role":          role,
			"task_launch_timeout": s.cfg.TaskLaunchTimeout.Milliseconds(),
			"mesos_user":          s.cfg.User,
			// The leading master's web UI, where the apps' tasks are
			// (Marathon's field; the web page links tasks there).
			"mesos_leader_ui_url": s.mesosLeaderUIURL(),
		},
		"zookeeper_config": s.zookeeperConfig(),
		"event_subscriber": nil,
		"http_config":      map[string]any{"http_port": s.cfg.HTTPPort},
	})
}

// self is host:port of this instance's API.
func (s *Service) self() string {
	return net.JoinHostPort(s.cfg.Hostname, strconv.Itoa(s.cfg.HTTPPort))
}

// leader is host:port of the leading instance: this one, unless it takes
// part in an election.
func (s *Service) leader() string {
	if s.cfg.HA != nil {
		return s.cfg.HA.Leader()
	}
	return s.self()
}

func (s *Service) handleLeader(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		writeJSON(w, http.StatusOK, map[string]string{"leader": s.leader()})
	case http.MethodDelete:
		if s.cfg.HA == nil {
			// Nothing to abdicate to without --zk: one instance leads.
			writeError(w, fmt.Errorf("There is no leader election without --zk: %w", errdefs.ErrNotFound))
			return
		}
		s.log.Info("abdicating on request", "remote", r.RemoteAddr)
		writeJSON(w, http.StatusOK, map[string]string{"message": "Leadership abdicated"})
		s.cfg.HA.Abdicate()
	default:
		methodNotAllowed(w, r, http.MethodGet, http.MethodDelete)
	}
}

func (s *Service) handlePing(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "must-revalidate,no-cache,no-store")
	fmt.Fprintln(w, "pong")
}

// handleMetrics is /metrics in Marathon's Dropwizard-style JSON, with the
// gauges mesolite keeps.
func (s *Service) handleMetrics(w http.ResponseWriter, r *http.Request) {
	var apps, deployments, running, staged, healthy, unhealthy int
	s.eng.mu.RLock()
	for _, st := range s.eng.apps {
		if st.deleted {
			continue
		}
		apps++
		c := countOf(st)
		running += c.Running
		staged += c.Staged
		healthy += c.Healthy
		unhealthy += c.Unhealthy
	}
	deployments = len(s.eng.deployments)
	s.eng.mu.RUnlock()
	connected := s.driver.Connected()
	gauge := func(v any) map[string]any { return map[string]any{"value": v} }
	b2i := map[bool]int{true: 1}
	writeJSON(w, http.StatusOK, map[string]any{
		"version": "4.0.0",
		"gauges": map[string]any{
			"marathon.apps.active.gauge":                  gauge(apps),
			"marathon.deployments.active.gauge":           gauge(deployments),
			"marathon.instances.running.gauge":            gauge(running),
			"marathon.instances.staged.gauge":             gauge(staged),
			"marathon.instances.healthy.gauge":            gauge(healthy),
			"marathon.instances.unhealthy.gauge":          gauge(unhealthy),
			"marathon.http.event-streams.active.gauge":    gauge(s.bus.count()),
			"marathon.mesos.connected.gauge":              gauge(b2i[connected]),
			"marathon.uptime.gauge":                       gauge(time.Since(s.started).Milliseconds()),
			"marathon.instances.launch-queue.size.gauge":  gauge(s.queued()),
			"marathon.leadership.elected.gauge":           gauge(1),
			"marathon.persistence.framework-id.set.gauge": gauge(b2i[s.driver.FrameworkID() != ""]),
		},
		"counters": map[string]any{}, "histograms": map[string]any{}, "meters": map[string]any{}, "timers": map[string]any{},
	})
}

func (s *Service) queued() int {
	s.eng.mu.RLock()
	defer s.eng.mu.RUnlock()
	n := 0
	for _, st := range s.eng.apps {
		n += st.toLaunch
	}
	return n
}

// labelSelector is Marathon's label= query: comma-separated selectors,
// all of which must hold: "key" (exists), "key==v", "key!=v",
// "key in (a, b)", "key notin (a, b)"; a backslash escapes the next
// character.
type labelSelector []labelTerm

type labelTerm struct {
	key, op string
	values  []string
}

func (s labelSelector) matches(labels map[string]string) bool {
	for _, t := range s {
		v, ok := labels[t.key]
		switch t.op {
		case "":
			if !ok {
				return false
			}
		case "==":
			if !ok || v != t.values[0] {
				return false
			}
		case "!=":
			if ok && v == t.values[0] {
				return false
			}
		case "in":
			if !ok || !slices.Contains(t.values, v) {
				return false
			}
		case "notin":
			if ok && slices.Contains(t.values, v) {
				return false
			}
		}
	}
	return true
}

// splitUnescaped splits s at sep outside parentheses, honouring
// backslash escapes, and unescapes the parts.
func splitUnescaped(s string, sep rune) []string {
	var parts []string
	var cur strings.Builder
	depth, esc := 0, false
	for _, c := range s {
		switch {
		case esc:
			cur.WriteRune(c)
			esc = false
		case c == '\\':
			esc = true
		case c == '(':
			depth++
			cur.WriteRune(c)
		case c == ')':
			depth--
			cur.WriteRune(c)
		case c == sep && depth == 0:
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteRune(c)
		}
	}
	return append(parts, cur.String())
}

func parseLabelSelector(q string) (labelSelector, error) {
	if strings.TrimSpace(q) == "" {
		return nil, nil
	}
	bad := func() (labelSelector, error) {
		return nil, fmt.Errorf("Invalid label selector query: %.100q: %w", q, errdefs.ErrInvalid)
	}
	var sel labelSelector
	for _, part := range splitUnescaped(q, ',') {
		part = strings.TrimSpace(part)
		switch {
		case part == "":
			return bad()
		case strings.Contains(part, "=="):
			k, v, _ := strings.Cut(part, "==")
			sel = append(sel, labelTerm{key: strings.TrimSpace(k), op: "==", values: []string{strings.TrimSpace(v)}})
		case strings.Contains(part, "!="):
			k, v, _ := strings.Cut(part, "!=")
			sel = append(sel, labelTerm{key: strings.TrimSpace(k), op: "!=", values: []string{strings.TrimSpace(v)}})
		case strings.Contains(part, "("):
			head, list, _ := strings.Cut(part, "(")
			list, ok := strings.CutSuffix(strings.TrimSpace(list), ")")
			fields := strings.Fields(head)
			if !ok || len(fields) != 2 || (fields[1] != "in" && fields[1] != "notin") {
				return bad()
			}
			var values []string
			for _, v := range splitUnescaped(list, ',') {
				values = append(values, strings.TrimSpace(v))
			}
			sel = append(sel, labelTerm{key: fields[0], op: fields[1], values: values})
		case strings.ContainsAny(part, " \t()"):
			return bad()
		default:
			sel = append(sel, labelTerm{key: part})
		}
	}
	return sel, nil
}

// groupJSON is a group as GET /v2/groups shows it: the apps directly in
// it and its subgroups, which Marathon derives from the apps' ids.
type groupJSON struct {
	ID           PathID      `json:"id"`
	Apps         []*App      `json:"apps"`
	Groups       []groupJSON `json:"groups"`
	Pods         []any       `json:"pods"`
	Dependencies []string    `json:"dependencies"`
	Version      string      `json:"version,omitempty"`
}

// buildGroup is the group id with every app and group below it, under
// the engine's read lock. ok is false when the group does not exist: no
// app is in or below it and it was not made through /v2/groups (the root
// always exists).
func buildGroup(apps map[PathID]*appState, groups map[PathID]*Group, id PathID) (groupJSON, bool) {
	g := groupJSON{ID: id, Apps: []*App{}, Groups: []groupJSON{}, Pods: []any{}, Dependencies: []string{}}
	found := id == Root
	if def := groups[id]; def != nil {
		found = true
		g.Dependencies = slices.Clone(def.Dependencies)
		g.Version = def.Version
	}
	sub := map[PathID]bool{}
	// The subgroup of id on the way to x.
	child := func(x PathID) PathID {
		rel := x.Segments()[len(id.Segments())]
		return PathID(strings.TrimSuffix(string(id), "/") + "/" + rel)
	}
	for _, st := range apps {
		aid := PathID(st.app.ID)
		if st.deleted || aid == id || !id.Contains(aid) {
			continue
		}
		found = true
		if aid.Parent() == id {
			g.Apps = append(g.Apps, st.app)
			if st.app.Version > g.Version {
				g.Version = st.app.Version
			}
			continue
		}
		sub[child(aid)] = true
	}
	for gid := range groups {
		if gid != id && id.Contains(gid) {
			sub[child(gid)] = true
		}
	}
	slices.SortFunc(g.Apps, func(a, b *App) int { return strings.Compare(a.ID, b.ID) })
	for _, sid := range slices.Sorted(maps.Keys(sub)) {
		sg, _ := buildGroup(apps, groups, sid)
		if sg.Version > g.Version {
			g.Version = sg.Version
		}
		g.Groups = append(g.Groups, sg)
	}
	return g, found
}

// handleGroups is /v2/groups[/{id}]: the group tree (GET), a new group
// (POST), a group changed (PUT; rolled back to a kept version with only
// {"version": ...}) or removed (DELETE), each change one deployment plan;
// GET /v2/groups[/{id}]/versions lists the kept versions.
func (s *Service) handleGroups(w http.ResponseWriter, r *http.Request) {
	rest := strings.Trim(strings.TrimPrefix(r.URL.Path, "/v2/groups"), "/")
	listVersions := false
	if (r.Method == http.MethodGet || r.Method == http.MethodHead) && (rest == "versions" || strings.HasSuffix(rest, "/versions")) {
		// As in Marathon, this route comes first: a group named
		// "versions" is not reached by GET.
		rest, listVersions = strings.TrimSuffix(rest, "versions"), true
	}
	id, err := ParsePathID("/"+strings.Trim(rest, "/"), Root)
	if err != nil {
		writeJSON(w, http.StatusNotFound, errorJSON{Message: "Group does not exist"})
		return
	}
	if listVersions {
		s.eng.mu.RLock()
		versions := slices.Clone(s.eng.groupVersions[id])
		exists := s.eng.groupExists(id)
		s.eng.mu.RUnlock()
		if !exists && len(versions) == 0 {
			writeError(w, groupNotFound(id))
			return
		}
		slices.Reverse(versions)
		writeJSON(w, http.StatusOK, append([]string{}, versions...))
		return
	}
	force, dryRun := boolParam(r, "force"), boolParam(r, "dryRun")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.eng.mu.RLock()
		g, ok := buildGroup(s.eng.apps, s.eng.groups, id)
		s.eng.mu.RUnlock()
		if !ok {
			writeError(w, groupNotFound(id))
			return
		}
		writeJSON(w, http.StatusOK, g)
	case http.MethodPost, http.MethodPut:
		body, err := readBody(w, r)
		if err != nil {
			writeError(w, err)
			return
		}
		b, spec, err := decodeGroup(body, id)
		if err != nil {
			writeError(w, err)
			return
		}
		if r.Method == http.MethodPut && b.Version != nil && len(b.Apps) == 0 && len(b.Groups) == 0 {
			// A rollback (a scaleBy beside it is ignored, as in
			// Marathon): the group becomes what it was at that version,
			// as a PUT of that definition would make it.
			old, err := s.groupVersion(r.Context(), spec.id, *b.Version)
			if err != nil {
				writeError(w, err)
				return
			}
			if b, spec, err = decodeGroup(old, spec.id); err != nil {
				writeError(w, err)
				return
			}
			b.Version, b.ScaleBy = nil, nil
		}
		var res *DeploymentResult
		var pv *planView
		if r.Method == http.MethodPost {
			res, pv, err = s.eng.createGroup(r.Context(), spec, force, dryRun, originOf(r))
		} else {
			res, pv, err = s.eng.updateGroup(r.Context(), b, spec, force, dryRun, originOf(r))
		}
		switch {
		case err != nil:
			writeError(w, err)
		case pv != nil:
			writeJSON(w, http.StatusOK, pv)
		case r.Method == http.MethodPost:
			w.Header().Set("Location", "/v2/groups"+string(spec.id))
			deploymentAnswer(w, http.StatusCreated, res)
		default:
			deploymentAnswer(w, http.StatusOK, res)
		}
	case http.MethodDelete:
		res, err := s.eng.deleteGroup(r.Context(), id, force, originOf(r))
		if err != nil {
			writeError(w, err)
			return
		}
		deploymentAnswer(w, http.StatusOK, res)
	default:
		methodNotAllowed(w, r, http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete)
	}
}

// zookeeperConfig is /v2/info's zookeeper_config: the --zk URL (without
// credentials) and session timeout, empty without --zk.
func (s *Service) zookeeperConfig() map[string]any {
	if s.cfg.HA == nil {
		return map[string]any{}
	}
	return map[string]any{
		"zk":                 s.cfg.HA.ZK(),
		"zk_session_timeout": s.cfg.HA.SessionTimeout().Milliseconds(),
		"zk_timeout":         s.cfg.HA.SessionTimeout().Milliseconds(),
	}
}

// mesosLeaderUIURL is the master's UI: --mesos_leader_ui_url, else the
// leading master's as the driver knows it.
func (s *Service) mesosLeaderUIURL() string {
	if s.cfg.MesosLeaderUIURL != "" {
		return s.cfg.MesosLeaderUIURL
	}
	return s.driver.MasterWebURL()
}
