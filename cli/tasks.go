package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"io"
	"slices"
	"text/tabwriter"
)

const tasksSynopsis = `Usage: mesolite tasks --master=HOST:PORT [--json]

Lists the tasks the master knows, running and completed, of active and
completed frameworks: id, name, state, framework and the agent's hostname,
oldest first. Read from the master's /master/state.`

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
	pos, code, stop := c.parse(args)
	if stop {
		return code
	}
	if len(pos) > 0 {
		return c.usageError("unexpected argument %q", pos[0])
	}
	st, err := getState(c.context(ctx), *master)
	if err != nil {
		return c.fail("%v", err)
	}
	rows := taskRows(st)
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
