package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path"
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
	ID               string      `json:"id"`
	Name             string      `json:"name"`
	Active           bool        `json:"active"`
	Tasks            []stateTask `json:"tasks"`
	CompletedTasks   []stateTask `json:"completed_tasks"`
	UnreachableTasks []stateTask `json:"unreachable_tasks"`
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
			Value string `json:"value"`
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
	n := 0
	for _, t := range s.allTasks() {
		if t.ID != id || (frameworkID != "" && t.FrameworkID != frameworkID) {
			continue
		}
		n++
		if best == nil || t.lastUpdate() > best.lastUpdate() {
			best = &t
		}
	}
	if best == nil {
		return taskRef{}, fmt.Errorf("the master knows no task %q (see 'mesolite tasks'): %w", id, errdefs.ErrNotFound)
	}
	return *best, nil
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
