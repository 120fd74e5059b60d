package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/mesolite/mesolite/api/v1/mesos"
)

const tasksSynopsis = `Usage: mesolite tasks --master=HOST:PORT [--json] [--state=S] [--framework=F] [--agent=A]

Lists the tasks the master knows, running and completed, of active and
completed frameworks: id, name, state, framework and the agent's hostname,
oldest first. Read from the master's /master/state. The filters combine:
--state=running --framework=mesolite-run lists the running tasks of
'mesolite run'.`

// taskRow is one line of `mesolite tasks`, and one object of its --json.
type taskRow struct {
	ID            string `json:"id"`
	Name          string `json:"name"`
	State         string `json:"state"`
	FrameworkID   string `json:"framework_id"`
	FrameworkName string `json:"framework_name"`
	AgentID       string `json:"agent_id"`
	AgentHostname string `json:"agent_hostname"`
	ExecutorID    string `json:"executor_id"`
	Sandbox       string `json:"sandbox"`
	// Timestamp is the time of the latest status, in seconds since the epoch.
	Timestamp float64 `json:"timestamp,omitempty"`
	// Health is the task's health check's last word: healthy, unhealthy,
	// or empty (no health check, or none reported yet).
	Health string `json:"health,omitempty"`
}

// Tasks is `mesolite tasks`.
func Tasks(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newCommand("tasks", tasksSynopsis, stdout, stderr)
	master := c.masterFlag()
	asJSON := c.Bool("json", false, "print a JSON array of objects (id, name, state, framework_id, framework_name,\n"+
		"agent_id, agent_hostname, executor_id, sandbox, timestamp, health) instead of a table")
	states := c.StringList("state", "only tasks in this state (repeatable, or comma-separated): a Mesos state\n"+
		"(TASK_RUNNING or running), 'active' for those that have not ended, 'done' for those that have")
	framework := c.String("framework", "", "only tasks of this framework, by id or by name")
	agentFilter := c.String("agent", "", "only tasks on this agent, by id or by hostname")
	pos, code, stop := c.parse(args)
	if stop {
		return code
	}
	if len(pos) > 0 {
		return c.usageError("unexpected argument %q", pos[0])
	}
	keepState, err := stateFilter(*states)
	if err != nil {
		return c.usageError("%v", err)
	}
	st, err := getState(c.context(ctx), *master)
	if err != nil {
		return c.fail("%v", err)
	}
	rows := slices.DeleteFunc(taskRows(st), func(r taskRow) bool {
		return !keepState(r.State) ||
			(*framework != "" && r.FrameworkID != *framework && r.FrameworkName != *framework) ||
			(*agentFilter != "" && r.AgentID != *agentFilter && r.AgentHostname != *agentFilter)
	})
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if rows == nil {
			rows = []taskRow{}
		}
		if err := enc.Encode(rows); err != nil {
			return c.fail("%v", err)
		}
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	io.WriteString(tw, "ID\tNAME\tSTATE\tFRAMEWORK\tAGENT\n")
	for _, r := range rows {
		fw := r.FrameworkName
		if fw == "" {
			fw = r.FrameworkID
		}
		host := r.AgentHostname
		if host == "" {
			host = r.AgentID
		}
		state := r.State
		if r.Health != "" {
			state += " (" + r.Health + ")"
		}
		io.WriteString(tw, r.ID+"\t"+r.Name+"\t"+state+"\t"+fw+"\t"+host+"\n")
	}
	if err := tw.Flush(); err != nil {
		return c.fail("%v", err)
	}
	return exitOK
}

func taskRows(st *masterState) []taskRow {
	var rows []taskRow
	for _, t := range st.allTasks() {
		r := taskRow{
			ID:            t.ID,
			Name:          t.Name,
			State:         t.State,
			FrameworkID:   t.FrameworkID,
			FrameworkName: t.framework.Name,
			AgentID:       t.SlaveID,
			ExecutorID:    t.executorID(),
			Sandbox:       sandboxPath(t.FrameworkID, t.executorID()),
			Timestamp:     t.lastUpdate(),
			Health:        t.health(),
		}
		if t.slave != nil {
			r.AgentHostname = t.slave.Hostname
		}
		rows = append(rows, r)
	}
	slices.SortStableFunc(rows, func(a, b taskRow) int { return cmp.Compare(a.Timestamp, b.Timestamp) })
	return rows
}

// stateFilter turns --state values into a predicate on a task's state:
// TASK_RUNNING, running (any case), active (not ended) or done (ended);
// no values keep every state.
func stateFilter(vals []string) (func(string) bool, error) {
	want := map[string]bool{}
	active, done := false, false
	for _, v := range vals {
		for _, s := range strings.Split(v, ",") {
			s = strings.TrimSpace(s)
			switch strings.ToLower(s) {
			case "":
				continue
			case "active":
				active = true
				continue
			case "done", "ended", "terminal":
				done = true
				continue
			}
			name := strings.ToUpper(s)
			if !strings.HasPrefix(name, "TASK_") {
				name = "TASK_" + name
			}
			if _, ok := mesos.TaskState_value[name]; !ok {
				return nil, invalid("--state=%s: not a task state (TASK_RUNNING, running, active, done...)", s)
			}
			want[name] = true
		}
	}
	if len(want) == 0 && !active && !done {
		return func(string) bool { return true }, nil
	}
	return func(state string) bool {
		return want[state] || (active && !terminalName(state)) || (done && terminalName(state))
	}, nil
}
