package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	masterpb "github.com/mesolite/mesolite/api/v1/master"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/internal/duration"
	"google.golang.org/protobuf/proto"
)

const killSynopsis = `Usage: mesolite kill TASK --master=HOST:PORT [--framework=F] [--wait=30secs]

Kills a task and waits for it to end. TASK is the task's id, its name, or
the start of its id (as for 'mesolite logs'); of several tasks with that name
or prefix, only those still running count.

In Mesos only the framework that launched a task may kill it (the scheduler
API's KILL); an operator can only tear a whole framework down. So kill goes
the way that is open for the task's framework:

  - a task of 'mesolite run': its framework exists for that task alone (or
    its task group), so the framework is torn down (the operator API's
    TEARDOWN), which kills the task; the run says so and exits 137;
  - a task of a Marathon framework ('mesolite apps', or Marathon itself,
    found through the web UI address it registered): the framework is asked
    through its own API (POST /v2/tasks/delete), and starts a replacement
    unless --scale lowers the app's instances;
  - any other framework's task cannot be killed from outside that
    framework: the command says which framework owns it and fails (ask the
    framework, or 'mesolite teardown FRAMEWORK_ID' to kill all its tasks).

Exits 0 once the task has ended, 1 when it cannot be killed or does not end
within --wait.`

// runLabel marks the frameworks of `mesolite run` (a FrameworkInfo label),
// which kill may tear down for their one task.
const runLabel = "mesolite.run"

// Kill is `mesolite kill`.
func Kill(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newCommand("kill", killSynopsis, stdout, stderr)
	master := c.masterFlag()
	framework := c.String("framework", "", "the task's framework (id or name), when the task's name or id is not\n"+
		"unique across frameworks")
	wait := c.Duration("wait", 30*time.Second, "how long to wait for the task to end (0: ask and do not wait)")
	scale := c.Bool("scale", false, "for a Marathon app's task: scale the app down by one instead of letting it\n"+
		"start a replacement")
	pos, code, stop := c.parse(args)
	if stop {
		return code
	}
	if len(pos) != 1 {
		return c.usageError("want one TASK (an id, a name or an id prefix), got %d arguments", len(pos))
	}
	ctx = c.context(ctx)
	st, err := getState(ctx, *master)
	if err != nil {
		return c.fail("%v", err)
	}
	task, err := st.resolveTask(taskQuery{text: pos[0], framework: *framework, live: true})
	if err != nil {
		return c.fail("%v", err)
	}
	if terminalName(task.State) {
		return c.fail("task %s has already ended: %s", task.ID, task.State)
	}
	fw := task.framework
	switch {
	case fw.hasLabel(runLabel):
		if !fw.Active && task.completed {
			return c.fail("task %s: its framework %s is gone already", task.ID, fw.ID)
		}
		call := &masterpb.Call{Type: masterpb.Call_TEARDOWN.Enum(), Teardown: &masterpb.Call_Teardown{
			FrameworkId: &mesos.FrameworkID{Value: proto.String(fw.ID)}}}
		if _, err := operatorCall(ctx, *master, call); err != nil {
			return c.fail("tearing down framework %s of task %s: %v", fw.ID, task.ID, err)
		}
		fmt.Fprintf(stdout, "task %s is the task of 'mesolite run' framework %s: tore the framework down\n", task.ID, fw.ID)
	case fw.WebuiURL != "":
		handled, err := killThroughMarathon(ctx, fw, task.ID, *scale)
		if err != nil {
			return c.fail("%v", err)
		}
		if !handled {
			return c.fail("%v", cannotKill(task))
		}
		fmt.Fprintf(stdout, "asked framework %s (%s, Marathon API at %s) to kill task %s\n", fw.ID, fw.Name, fw.WebuiURL, task.ID)
	default:
		return c.fail("%v", cannotKill(task))
	}
	if *wait <= 0 {
		return exitOK
	}
	state, err := waitTerminal(ctx, *master, task.ID, fw.ID, *wait)
	if err != nil {
		return c.fail("%v", err)
	}
	fmt.Fprintf(stdout, "task %s: %s\n", task.ID, state)
	return exitOK
}

// cannotKill explains why the task of a framework that offers no way in
// cannot be killed.
func cannotKill(t taskRef) error {
	fw := t.framework
	var b strings.Builder
	fmt.Fprintf(&b, "task %s belongs to framework %s", t.ID, fw.ID)
	if fw.Name != "" {
		fmt.Fprintf(&b, " (%s)", fw.Name)
	}
	b.WriteString(", and only a task's own framework can kill it: Mesos's operator API has no call for one task")
	if fw.WebuiURL != "" {
		fmt.Fprintf(&b, ". Ask the framework (its web UI is %s)", fw.WebuiURL)
	} else {
		b.WriteString(". Ask the framework")
	}
	fmt.Fprintf(&b, ", or kill all its tasks with 'mesolite teardown %s'", fw.ID)
	return errdefs.Classf(errdefs.ErrForbidden, "%s", b.String())
}

// killThroughMarathon asks a framework that speaks Marathon's REST API at
// its web UI address to kill task. handled is false when the address does
// not answer as Marathon for this framework.
func killThroughMarathon(ctx context.Context, fw stateFramework, taskID string, scale bool) (handled bool, err error) {
	base := strings.TrimRight(fw.WebuiURL, "/")
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return false, nil
	}
	t := transportOf(ctx)
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ictx, http.MethodGet, base+"/v2/info", nil)
	if err != nil {
		return false, nil
	}
	resp, err := t.client.Do(authorize(req))
	if err != nil {
		return false, nil
	}
	var info struct {
		Name        string `json:"name"`
		FrameworkID string `json:"frameworkId"`
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&info)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || info.Name != "marathon" || info.FrameworkID != fw.ID {
		return false, nil
	}
	body, _ := json.Marshal(map[string][]string{"ids": {taskID}})
	req, err = http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("%s/v2/tasks/delete?scale=%t", base, scale), bytes.NewReader(body))
	if err != nil {
		return true, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err = t.client.Do(authorize(req))
	if err != nil {
		return true, fmt.Errorf("asking framework %s at %s to kill task %s: %w", fw.ID, base, taskID, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return true, fmt.Errorf("framework %s at %s refused to kill task %s: %s: %s", fw.ID, base, taskID, resp.Status, readReason(resp.Body))
	}
	return true, nil
}

// waitTerminal polls the master's state until the task of framework fwID
// has ended, and returns its final state.
func waitTerminal(ctx context.Context, master, taskID, fwID string, wait time.Duration) (string, error) {
	deadline := time.Now().Add(wait)
	last := ""
	for {
		st, err := getState(ctx, master)
		if err == nil {
			t, ferr := st.findTask(taskID, fwID)
			switch {
			case errors.Is(ferr, errdefs.ErrNotFound):
				return "", errdefs.Classf(errdefs.ErrNotFound, "task %s is no longer known to the master", taskID)
			case ferr == nil && terminalName(t.State):
				return t.State, nil
			case ferr == nil:
				last = t.State
			}
		} else if ctx.Err() != nil {
			return "", ctx.Err()
		}
		if time.Now().After(deadline) {
			return "", errdefs.Classf(errdefs.ErrUnavailable, "task %s is still %s after %s", taskID, last, duration.Format(wait))
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(min(stateCheckInterval, 200*time.Millisecond)):
		}
	}
}
