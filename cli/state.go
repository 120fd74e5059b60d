package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/sandbox"
	"github.com/mesolite/mesolite/scheduler"
)

// The parts of the master's /master/state that the commands read, in
// Mesos's JSON.
type masterState struct {
	Frameworks          []stateFramework `json:"frameworks"`
	CompletedFrameworks []stateFramework `json:"completed_frameworks"`
	Slaves              []stateSlave     `json:"slaves"`
}

type stateFramework struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Active   bool   `json:"active"`
	WebuiURL string `json:"webui_url"`
	Labels   []struct {
		Key   string `json:"key"`
		Value string `json:"value"`
	} `json:"labels"`
	Tasks            []stateTask `json:"tasks"`
	CompletedTasks   []stateTask `json:"completed_tasks"`
	UnreachableTasks []stateTask `json:"unreachable_tasks"`
}

// hasLabel reports whether the framework's FrameworkInfo carries the label.
func (f stateFramework) hasLabel(key string) bool {
	for _, l := range f.Labels {
		if l.Key == key {
			return true
		}
	}
	return false
}

type stateTask struct {
	ID          string        `json:"id"`
	Name        string        `json:"name"`
	FrameworkID string        `json:"framework_id"`
	ExecutorID  string        `json:"executor_id"`
	SlaveID     string        `json:"slave_id"`
	State       string        `json:"state"`
	Statuses    []stateStatus `json:"statuses"`
}

type stateStatus struct {
	State     string  `json:"state"`
	Timestamp float64 `json:"timestamp"`
	Healthy   *bool   `json:"healthy"`
	// ContainerStatus names the executor's container (what exec enters).
	ContainerStatus struct {
		ContainerID struct {
			Value  string `json:"value"`
			Parent *struct {
				Value string `json:"value"`
			} `json:"parent"`
		} `json:"container_id"`
	} `json:"container_status"`
}

type stateSlave struct {
	ID       string `json:"id"`
	PID      string `json:"pid"`
	Hostname string `json:"hostname"`
	Port     int    `json:"port"`
	Active   bool   `json:"active"`
}

// taskRef is a task found in the state, with what is needed to read its
// sandbox.
type taskRef struct {
	stateTask
	framework stateFramework
	slave     *stateSlave
	completed bool // framework completed or task in completed_tasks
}

// executorID is the id the task's sandbox is filed under: a command task's
// executor has the task's id, and Mesos reports it as "".
func (t taskRef) executorID() string {
	if t.ExecutorID != "" {
		return t.ExecutorID
	}
	return t.ID
}

// health is what the task's health check said last: "healthy",
// "unhealthy", or "" when it has none (or has not said yet).
func (t stateTask) health() string {
	for i := len(t.Statuses) - 1; i >= 0; i-- {
		if h := t.Statuses[i].Healthy; h != nil {
			if *h {
				return "healthy"
			}
			return "unhealthy"
		}
	}
	return ""
}

// lastUpdate is the time of the task's latest status, 0 if none.
func (t stateTask) lastUpdate() float64 {
	var ts float64
	for _, s := range t.Statuses {
		ts = max(ts, s.Timestamp)
	}
	return ts
}

// allTasks lists every task the state knows: running, unreachable and
// completed ones of active and completed frameworks.
func (s *masterState) allTasks() []taskRef {
	slaves := map[string]*stateSlave{}
	for i := range s.Slaves {
		slaves[s.Slaves[i].ID] = &s.Slaves[i]
	}
	var out []taskRef
	add := func(f stateFramework, tasks []stateTask, completed bool) {
		for _, t := range tasks {
			if t.FrameworkID == "" {
				t.FrameworkID = f.ID
			}
			out = append(out, taskRef{stateTask: t, framework: f, slave: slaves[t.SlaveID], completed: completed})
		}
	}
	for _, f := range s.Frameworks {
		add(f, f.Tasks, false)
		add(f, f.UnreachableTasks, false)
		add(f, f.CompletedTasks, true)
	}
	for _, f := range s.CompletedFrameworks {
		add(f, f.Tasks, true)
		add(f, f.UnreachableTasks, true)
		add(f, f.CompletedTasks, true)
	}
	return out
}

// findTask finds a task by id. Task ids are unique per framework only; with
// several matches the one updated last wins, and frameworkID narrows the
// search.
func (s *masterState) findTask(id, frameworkID string) (taskRef, error) {
	var best *taskRef
	for _, t := range s.allTasks() {
		if t.ID != id || (frameworkID != "" && t.FrameworkID != frameworkID) {
			continue
		}
		if best == nil || t.lastUpdate() > best.lastUpdate() {
			best = &t
		}
	}
	if best == nil {
		return taskRef{}, errdefs.Classf(errdefs.ErrNotFound, "the master knows no task %q (see 'mesolite tasks')", id)
	}
	return *best, nil
}

// taskQuery is how a user names a task on the command line: its full id,
// its name, or a prefix of its id (the generated suffix of `run` left
// off), as Nomad and Docker take unique prefixes.
type taskQuery struct {
	// text is what the user typed.
	text string
	// framework narrows the search to a framework, by id or by name.
	framework string
	// live keeps only tasks that have not ended when a name or prefix
	// matches several (kill has nothing to do with a finished task).
	live bool
}

// resolveTask finds the one task q names: a task whose id is q.text (with
// several, from several frameworks, the one updated last); else the one
// whose name is q.text; else the one whose id starts with q.text. A name
// or prefix that matches several tasks is an error listing them, wrapping
// errdefs.ErrConflict; none, one wrapping errdefs.ErrNotFound.
func (s *masterState) resolveTask(q taskQuery) (taskRef, error) {
	var tasks []taskRef
	for _, t := range s.allTasks() {
		if q.framework == "" || t.FrameworkID == q.framework || t.framework.Name == q.framework {
			tasks = append(tasks, t)
		}
	}
	var exact *taskRef
	for i, t := range tasks {
		if t.ID == q.text && (exact == nil || t.lastUpdate() > exact.lastUpdate()) {
			exact = &tasks[i]
		}
	}
	if exact != nil {
		return *exact, nil
	}
	byName := func(t taskRef) bool { return t.Name == q.text }
	byPrefix := func(t taskRef) bool { return strings.HasPrefix(t.ID, q.text) }
	for _, match := range []func(taskRef) bool{byName, byPrefix} {
		found := slices.DeleteFunc(slices.Clone(tasks), func(t taskRef) bool { return !match(t) })
		if q.live && len(found) > 1 {
			if alive := slices.DeleteFunc(slices.Clone(found), func(t taskRef) bool { return terminalName(t.State) }); len(alive) > 0 {
				found = alive
			}
		}
		switch {
		case len(found) == 1:
			return found[0], nil
		case len(found) > 1:
			return taskRef{}, ambiguous(q, found)
		}
	}
	where := ""
	if q.framework != "" {
		where = " in framework " + q.framework
	}
	return taskRef{}, errdefs.Classf(errdefs.ErrNotFound, "the master knows no task with the id, name or id prefix %q%s (see 'mesolite tasks')", q.text, where)
}

// ambiguous is the error for a name or prefix that matches several tasks:
// it lists them, newest first, so that the user can pick one by id.
func ambiguous(q taskQuery, found []taskRef) error {
	slices.SortStableFunc(found, func(a, b taskRef) int { return cmp.Compare(b.lastUpdate(), a.lastUpdate()) })
	var b strings.Builder
	fmt.Fprintf(&b, "%q names %d tasks; give a full id (or --framework):", q.text, len(found))
	for _, t := range found {
		fw := t.FrameworkID
		if t.framework.Name != "" {
			fw += " (" + t.framework.Name + ")"
		}
		fmt.Fprintf(&b, "\n  %s  %s  %s  framework %s", t.ID, t.Name, t.State, fw)
	}
	return errdefs.Classf(errdefs.ErrConflict, "%s", b.String())
}

// agentAddr is the host:port of an agent's HTTP API: from its pid
// `slave(1)@10.0.0.5:5051`, or its hostname and port.
func (a *stateSlave) agentAddr() string {
	if _, hp, ok := strings.Cut(a.PID, "@"); ok && hp != "" {
		return hp
	}
	port := a.Port
	if port == 0 {
		port = 5051
	}
	return net.JoinHostPort(a.Hostname, strconv.Itoa(port))
}

// sandboxPath is the files API path Mesos hands out for an executor's
// latest run.
func sandboxPath(frameworkID, executorID string) string {
	return path.Join("/frameworks", frameworkID, "executors", executorID, "runs", "latest")
}

// filesURL is a files API URL for a sandbox file, with the path readable
// (slashes are fine in a query).
func filesURL(scheme, agent, endpoint, file string, query ...string) string {
	u := scheme + "://" + agent + "/files/" + endpoint + "?path=" + strings.ReplaceAll(url.QueryEscape(file), "%2F", "/")
	for _, q := range query {
		u += "&" + q
	}
	return u
}

// getMasterJSON GETs path from the leading master, following redirects
// from other masters, and decodes the JSON answer into out.
func getMasterJSON(ctx context.Context, master, p string, out any) error {
	addr, https, err := scheduler.ResolveMasterScheme(ctx, master)
	if err != nil {
		return err
	}
	t := transportOf(ctx)
	scheme := t.scheme()
	if https {
		scheme = "https"
	}
	for range 5 {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+addr+p, nil)
		if err != nil {
			return fmt.Errorf("master %s: %w", addr, errdefs.ErrInvalid)
		}
		resp, err := t.client.Do(authorize(req))
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			return &scheduler.UnreachableError{Master: addr, Err: err}
		}
		if resp.StatusCode == http.StatusTemporaryRedirect || resp.StatusCode == http.StatusPermanentRedirect {
			resp.Body.Close()
			if addr, err = scheduler.MasterFromLocation(resp.Header.Get("Location")); err != nil {
				return err
			}
			continue
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s from master at %s: %s: %s", p, addr, resp.Status, readReason(resp.Body))
		}
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return fmt.Errorf("GET %s from master at %s: bad JSON: %w", p, addr, err)
		}
		return nil
	}
	return fmt.Errorf("GET %s: too many redirects between masters: %w", p, errdefs.ErrUnavailable)
}

func getState(ctx context.Context, master string) (*masterState, error) {
	var st masterState
	if err := getMasterJSON(ctx, master, "/master/state", &st); err != nil {
		return nil, err
	}
	return &st, nil
}

func readReason(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, 2048))
	return strings.TrimSpace(string(b))
}

// fileChunk is the files API's /files/read answer.
type fileChunk struct {
	Data   []byte
	Offset int64
}

// readFile reads up to length bytes of a sandbox file from offset; offset
// -1 asks only for the file's size (returned as Offset). A missing file
// wraps errdefs.ErrNotFound.
func readFile(ctx context.Context, agent, file string, offset, length int64) (fileChunk, error) {
	t := transportOf(ctx)
	u := filesURL(t.scheme(), agent, "read", file, "offset="+strconv.FormatInt(offset, 10), "length="+strconv.FormatInt(length, 10))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fileChunk{}, fmt.Errorf("agent %s: %w", agent, errdefs.ErrInvalid)
	}
	resp, err := t.client.Do(authorize(req))
	if err != nil {
		if ctx.Err() != nil {
			return fileChunk{}, ctx.Err()
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fileChunk{}, fmt.Errorf("cannot reach agent at %s: %w", agent, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return fileChunk{}, fmt.Errorf("%s on agent %s: %s: %w", file, agent, readReason(resp.Body), errdefs.ErrNotFound)
	default:
		return fileChunk{}, fmt.Errorf("reading %s on agent %s: %s: %s", file, agent, resp.Status, readReason(resp.Body))
	}
	var raw struct {
		Data   json.RawMessage `json:"data"`
		Offset int64           `json:"offset"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		return fileChunk{}, fmt.Errorf("reading %s on agent %s: bad JSON: %w", file, agent, err)
	}
	data, err := sandbox.DecodeJSONString(raw.Data)
	if err != nil {
		return fileChunk{}, fmt.Errorf("reading %s on agent %s: %w", file, agent, err)
	}
	return fileChunk{Data: data, Offset: raw.Offset}, nil
}
