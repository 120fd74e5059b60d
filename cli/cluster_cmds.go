package cli

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/mesolite/mesolite/api/v1/codec"
	masterpb "github.com/mesolite/mesolite/api/v1/master"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/validate"
	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/scheduler"
	"google.golang.org/protobuf/proto"
)

// The operator's daily commands: agents, frameworks, teardown. They read
// the master's state endpoints (what every Mesos tool reads) and change the
// cluster through the v1 operator API, with the command's credentials.

const agentsSynopsis = `Usage: mesolite agents --master=HOST:PORT [--json]

Lists the agents the master knows: id, hostname, whether it is active, its
cpus, memory and disk in use and in all, and its version. Read from the
master's /master/slaves.`

type agentRow struct {
	ID        string             `json:"id"`
	Hostname  string             `json:"hostname"`
	Address   string             `json:"address"`
	Active    bool               `json:"active"`
	Version   string             `json:"version"`
	Total     map[string]float64 `json:"resources"`
	Used      map[string]float64 `json:"used_resources"`
	Tasks     int                `json:"tasks"`
	Attribute map[string]any     `json:"attributes,omitempty"`
}

// slavesState is /master/slaves as the command reads it.
type slavesState struct {
	Slaves []struct {
		ID         string         `json:"id"`
		PID        string         `json:"pid"`
		Hostname   string         `json:"hostname"`
		Active     bool           `json:"active"`
		Version    string         `json:"version"`
		Resources  map[string]any `json:"resources"`
		Used       map[string]any `json:"used_resources"`
		Attributes map[string]any `json:"attributes"`
		Running    int            `json:"TASK_RUNNING"`
	} `json:"slaves"`
}

// scalars keeps the scalar resources of a state resources object.
func scalars(m map[string]any) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		if f, ok := v.(float64); ok {
			out[k] = f
		}
	}
	return out
}

// Agents is `mesolite agents`.
func Agents(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newCommand("agents", agentsSynopsis, stdout, stderr)
	master := c.masterFlag()
	asJSON := c.Bool("json", false, "print a JSON array of objects (id, hostname, address, active, version,\n"+
		"resources, used_resources, tasks, attributes) instead of a table")
	pos, code, stop := c.parse(args)
	if stop {
		return code
	}
	if len(pos) > 0 {
		return c.usageError("unexpected argument %q", pos[0])
	}
	ctx = c.context(ctx)
	var sl slavesState
	if err := getMasterJSON(ctx, *master, "/master/slaves", &sl); err != nil {
		return c.fail("%v", err)
	}
	// Running tasks per agent come from the summary, which counts them.
	var sum slavesState
	if err := getMasterJSON(ctx, *master, "/master/state-summary", &sum); err != nil {
		return c.fail("%v", err)
	}
	running := map[string]int{}
	for _, s := range sum.Slaves {
		running[s.ID] = s.Running
	}
	rows := make([]agentRow, 0, len(sl.Slaves))
	for _, s := range sl.Slaves {
		addr := s.PID
		if _, hp, ok := strings.Cut(s.PID, "@"); ok {
			addr = hp
		}
		rows = append(rows, agentRow{ID: s.ID, Hostname: s.Hostname, Address: addr, Active: s.Active, Version: s.Version,
			Total: scalars(s.Resources), Used: scalars(s.Used), Tasks: running[s.ID], Attribute: s.Attributes})
	}
	slices.SortFunc(rows, func(a, b agentRow) int {
		return cmp.Or(strings.Compare(a.Hostname, b.Hostname), strings.Compare(a.ID, b.ID))
	})
	if *asJSON {
		return c.printJSON(rows)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	io.WriteString(tw, "ID\tHOSTNAME\tACTIVE\tTASKS\tCPUS\tMEM\tDISK\tVERSION\n")
	for _, r := range rows {
		use := func(name string) string {
			return strconv.FormatFloat(r.Used[name], 'f', -1, 64) + "/" + strconv.FormatFloat(r.Total[name], 'f', -1, 64)
		}
		fmt.Fprintf(tw, "%s\t%s\t%t\t%d\t%s\t%s\t%s\t%s\n", r.ID, r.Hostname, r.Active, r.Tasks, use("cpus"), use("mem"), use("disk"), r.Version)
	}
	if err := tw.Flush(); err != nil {
		return c.fail("%v", err)
	}
	return exitOK
}

const frameworksSynopsis = `Usage: mesolite frameworks --master=HOST:PORT [--all] [--json]

Lists the frameworks the master knows: id, name, whether it is connected,
its roles, its running tasks and the resources they hold. --all adds the
completed (torn down) ones. Read from the master's /master/frameworks.`

type frameworkRow struct {
	ID        string             `json:"id"`
	Name      string             `json:"name"`
	Active    bool               `json:"active"`
	Completed bool               `json:"completed"`
	User      string             `json:"user"`
	Principal string             `json:"principal,omitempty"`
	Roles     []string           `json:"roles"`
	Tasks     int                `json:"tasks"`
	Used      map[string]float64 `json:"used_resources"`
	WebUIURL  string             `json:"webui_url,omitempty"`
}

type frameworksState struct {
	Frameworks          []frameworkJSON `json:"frameworks"`
	CompletedFrameworks []frameworkJSON `json:"completed_frameworks"`
}

type frameworkJSON struct {
	ID        string         `json:"id"`
	Name      string         `json:"name"`
	Active    bool           `json:"active"`
	User      string         `json:"user"`
	Principal string         `json:"principal"`
	Role      string         `json:"role"`
	Roles     []string       `json:"roles"`
	Tasks     []stateTask    `json:"tasks"`
	Used      map[string]any `json:"used_resources"`
	WebUIURL  string         `json:"webui_url"`
}

// Frameworks is `mesolite frameworks`.
func Frameworks(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newCommand("frameworks", frameworksSynopsis, stdout, stderr)
	master := c.masterFlag()
	all := c.Bool("all", false, "also list completed (torn down) frameworks")
	asJSON := c.Bool("json", false, "print a JSON array of objects (id, name, active, completed, user, principal,\n"+
		"roles, tasks, used_resources, webui_url) instead of a table")
	pos, code, stop := c.parse(args)
	if stop {
		return code
	}
	if len(pos) > 0 {
		return c.usageError("unexpected argument %q", pos[0])
	}
	var st frameworksState
	if err := getMasterJSON(c.context(ctx), *master, "/master/frameworks", &st); err != nil {
		return c.fail("%v", err)
	}
	var rows []frameworkRow
	add := func(f frameworkJSON, completed bool) {
		roles := f.Roles
		if len(roles) == 0 && f.Role != "" {
			roles = []string{f.Role}
		}
		running := 0
		for _, t := range f.Tasks {
			if t.State == mesos.TaskState_TASK_RUNNING.String() {
				running++
			}
		}
		rows = append(rows, frameworkRow{ID: f.ID, Name: f.Name, Active: f.Active, Completed: completed, User: f.User,
			Principal: f.Principal, Roles: roles, Tasks: running, Used: scalars(f.Used), WebUIURL: f.WebUIURL})
	}
	for _, f := range st.Frameworks {
		add(f, false)
	}
	if *all {
		for _, f := range st.CompletedFrameworks {
			add(f, true)
		}
	}
	if rows == nil {
		rows = []frameworkRow{}
	}
	if *asJSON {
		return c.printJSON(rows)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	io.WriteString(tw, "ID\tNAME\tSTATE\tROLES\tTASKS\tCPUS\tMEM\tUSER\n")
	for _, r := range rows {
		state := "inactive"
		switch {
		case r.Completed:
			state = "completed"
		case r.Active:
			state = "active"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", r.ID, r.Name, state, strings.Join(r.Roles, ","), r.Tasks,
			strconv.FormatFloat(r.Used["cpus"], 'f', -1, 64), strconv.FormatFloat(r.Used["mem"], 'f', -1, 64), r.User)
	}
	if err := tw.Flush(); err != nil {
		return c.fail("%v", err)
	}
	return exitOK
}

const teardownSynopsis = `Usage: mesolite teardown --master=HOST:PORT FRAMEWORK_ID

Tears a framework down, as the operator API's TEARDOWN: its tasks are
killed, its executors shut down, and its id may not subscribe again. With
--authenticate_http_readwrite on the master, give credentials
(--principal and --secret_file, or MESOS_PRINCIPAL/MESOS_SECRET).`

// Teardown is `mesolite teardown`.
func Teardown(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newCommand("teardown", teardownSynopsis, stdout, stderr)
	master := c.masterFlag()
	pos, code, stop := c.parse(args)
	if stop {
		return code
	}
	if len(pos) != 1 {
		return c.usageError("want one FRAMEWORK_ID, got %d arguments", len(pos))
	}
	id := pos[0]
	if err := validate.ID("Framework ID", id); err != nil {
		return c.usageError("%v", err)
	}
	call := &masterpb.Call{Type: masterpb.Call_TEARDOWN.Enum(), Teardown: &masterpb.Call_Teardown{
		FrameworkId: &mesos.FrameworkID{Value: proto.String(id)}}}
	if _, err := operatorCall(c.context(ctx), *master, call); err != nil {
		return c.fail("%v", err)
	}
	fmt.Fprintf(stdout, "framework %s torn down\n", id)
	return exitOK
}

// operatorCall posts call to the leading master's /api/v1 in JSON and
// returns the answer's body (empty for calls that answer none).
func operatorCall(ctx context.Context, master string, call *masterpb.Call) ([]byte, error) {
	addr, https, err := scheduler.ResolveMasterScheme(ctx, master)
	if err != nil {
		return nil, err
	}
	t := transportOf(ctx)
	scheme := t.scheme()
	if https {
		scheme = "https"
	}
	body, err := codec.JSON.Marshal(call)
	if err != nil {
		return nil, err
	}
	for range 5 {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, scheme+"://"+addr+"/api/v1", bytes.NewReader(body))
		if err != nil {
			return nil, fmt.Errorf("master %s: %w", addr, errdefs.ErrInvalid)
		}
		req.Header.Set("Content-Type", codec.MediaTypeJSON)
		req.Header.Set("Accept", codec.MediaTypeJSON)
		resp, err := t.client.Do(authorize(req))
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			return nil, &scheduler.UnreachableError{Master: addr, Err: err}
		}
		if resp.StatusCode == http.StatusTemporaryRedirect || resp.StatusCode == http.StatusPermanentRedirect {
			resp.Body.Close()
			if addr, err = scheduler.MasterFromLocation(resp.Header.Get("Location")); err != nil {
				return nil, err
			}
			continue
		}
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusAccepted:
			return data, nil
		case resp.StatusCode == http.StatusUnauthorized:
			return nil, fmt.Errorf("%s: the master wants credentials (--principal, --secret_file): %w", call.GetType(), errdefs.ErrUnauthorized)
		default:
			return nil, errdefs.Statusf(resp.StatusCode, "%s: %s: %s", call.GetType(), resp.Status, strings.TrimSpace(string(data)))
		}
	}
	return nil, fmt.Errorf("%s: too many redirects between masters: %w", call.GetType(), errdefs.ErrUnavailable)
}

// printJSON writes v indented, for --json.
func (c *command) printJSON(v any) int {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return c.fail("%v", err)
	}
	return exitOK
}
