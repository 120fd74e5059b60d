package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/internal/duration"
	"github.com/mesolite/mesolite/sandbox"
)

const logsSynopsis = `Usage: mesolite logs TASK --master=HOST:PORT [--stderr] [--follow] [--tail=N | --offset=N]

Prints a task's stdout (or stderr) from its sandbox. TASK is the task's id,
its name, or the start of its id: 'logs hi' finds hi.32f3db5c when no
other task has that name or prefix; when several do, the command lists them
and fails. The master's /master/state says which agent ran the task and
under which framework and executor; the file is read through that agent's
files API at /frameworks/<fw>/executors/<exec>/runs/latest/stdout. Finished
tasks work as long as the agent keeps their sandbox.

With --follow, new output is printed as it comes until the task ends. A
task that is not there yet (a run just started) is waited for, up to 30secs,
and a file that does not exist yet (a task still fetching or pulling) until
the task ends.`

// readChunk is how much one /files/read asks for.
const readChunk = 1 << 20

// stateCheckInterval is how often --follow asks the master whether the task
// has ended; a variable for tests.
var stateCheckInterval = time.Second

// appearWait bounds how long --follow waits for a task the master does not
// know yet; a variable for tests.
var appearWait = 30 * time.Second

// Logs is `mesolite logs`.
func Logs(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newCommand("logs", logsSynopsis, stdout, stderr)
	master := c.masterFlag()
	useStderr := c.Bool("stderr", false, "print the task's stderr instead of its stdout")
	follow := c.Bool("follow", false, "keep printing new output until the task ends (Ctrl-C stops earlier)")
	offset := c.Int64("offset", 0, "start at this byte of the file; a negative value starts that many bytes\n"+
		"before its end (--offset=-2000: the last 2000 bytes)")
	tail := c.Int("tail", -1, "print only the last N lines (as tail -n N); with --follow, then follow")
	// Not --framework_id: MESOS_FRAMEWORK_ID is set inside every task.
	frameworkID := c.String("framework", "", "the task's framework (id or name), when several frameworks have a task\n"+
		"of that id or name (default for an id: the task updated last)")
	pos, code, stop := c.parse(args)
	if stop {
		return code
	}
	if len(pos) != 1 {
		return c.usageError("want one TASK (an id, a name or an id prefix), got %d arguments", len(pos))
	}
	if c.given("tail") && c.given("offset") {
		return c.usageError("give --tail or --offset, not both")
	}
	if c.given("tail") && *tail < 0 {
		return c.usageError("--tail=%d: want a number of lines, 0 or more", *tail)
	}
	ctx = c.context(ctx)

	task, err := findTaskFor(ctx, *master, taskQuery{text: pos[0], framework: *frameworkID}, *follow, c.stderr)
	if err != nil {
		return c.fail("%v", err)
	}
	taskID := task.ID
	if task.slave == nil {
		return c.fail("task %s ran on agent %s, which the master no longer knows; its sandbox cannot be reached", taskID, task.SlaveID)
	}
	agent := task.slave.agentAddr()
	name := "stdout"
	if *useStderr {
		name = "stderr"
	}
	file := sandboxPath(task.FrameworkID, task.executorID()) + "/" + name
	if task.executorID() != task.ID {
		// A task of a group runs in its own sandbox inside its executor's
		// (Mesos's tasks/<task_id>); a task of a custom executor writes
		// to the executor's.
		own := sandboxPath(task.FrameworkID, task.executorID()) + "/tasks/" + task.ID + "/" + name
		if _, err := readFile(ctx, agent, own, -1, 0); err == nil {
			file = own
		}
	}

	start, end := *offset, int64(-1)
	switch {
	case c.given("tail"):
		start, end, err = tailRange(ctx, agent, file, *tail)
		if err != nil && !(*follow && errors.Is(err, errdefs.ErrNotFound)) {
			return c.fail("%v", explainMissing(err, task))
		}
	case start < 0:
		size, err := readFile(ctx, agent, file, -1, 0)
		if err != nil && !(*follow && errors.Is(err, errdefs.ErrNotFound)) {
			return c.fail("%v", explainMissing(err, task))
		}
		start = max(0, size.Offset+start)
	}

	if !*follow {
		// --tail=N prints the last N lines as they were when counted, not
		// what the task wrote since (tail -n N without -f).
		if _, err := copyFileUpTo(ctx, agent, file, start, end, stdout); err != nil {
			return c.fail("%v", explainMissing(err, task))
		}
		return exitOK
	}

	ended := func() bool {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		st, err := getState(sctx, *master)
		if err != nil {
			return false // the master may be failing over; keep following
		}
		t, err := st.findTask(taskID, task.FrameworkID)
		return err != nil || terminalName(t.State)
	}
	if streams, err := streamSupported(ctx, agent, file); err == nil && !streams {
		// An agent without /files/stream (Apache Mesos): poll /files/read.
		err := pollFile(ctx, agent, file, start, stdout, ended)
		if err != nil && ctx.Err() == nil {
			return c.fail("%v", explainMissing(err, task))
		}
		return exitOK
	}
	t := transportOf(ctx)
	_, err = sandbox.Follow(ctx, t.scheme()+"://"+agent, file, start, stdout, sandbox.FollowOptions{
		Client:        t.stream,
		Ended:         ended,
		CheckInterval: stateCheckInterval,
	})
	if err != nil && ctx.Err() == nil {
		return c.fail("%v", explainMissing(err, task))
	}
	return exitOK
}

// findTaskFor resolves q against the master's state. With wait (--follow),
// a task the master does not know yet is waited for, up to appearWait:
// `mesolite run` in one terminal and `logs --follow NAME` in another may
// start in either order.
func findTaskFor(ctx context.Context, master string, q taskQuery, wait bool, stderr io.Writer) (taskRef, error) {
	deadline := time.Now().Add(appearWait)
	said := false
	for {
		st, err := getState(ctx, master)
		if err != nil {
			return taskRef{}, err
		}
		task, err := st.resolveTask(q)
		if err == nil || !wait || !errors.Is(err, errdefs.ErrNotFound) || time.Now().After(deadline) {
			return task, err
		}
		if !said {
			said = true
			fmt.Fprintf(stderr, "waiting up to %s for task %q to appear\n", duration.Format(appearWait), q.text)
		}
		select {
		case <-ctx.Done():
			return taskRef{}, ctx.Err()
		case <-time.After(min(stateCheckInterval, 250*time.Millisecond)):
		}
	}
}

// tailOffset is the offset at which the file's last n lines start, read
// backwards from its end in chunks; a last line without its newline counts
// as a line, as tail(1) counts it.
func tailOffset(ctx context.Context, agent, file string, n int) (int64, error) {
	start, _, err := tailRange(ctx, agent, file, n)
	return start, err
}

// tailRange is tailOffset with the end the lines were counted up to.
func tailRange(ctx context.Context, agent, file string, n int) (start, end int64, err error) {
	size, err := readFile(ctx, agent, file, -1, 0)
	if err != nil {
		return 0, 0, err
	}
	end = size.Offset
	if n <= 0 {
		return end, end, nil
	}
	const chunk = 64 << 10
	for pos := end; pos > 0; {
		from := max(0, pos-chunk)
		var data []byte
		for off := from; off < pos; {
			got, err := readFile(ctx, agent, file, off, pos-off)
			if err != nil {
				return 0, 0, err
			}
			if len(got.Data) == 0 {
				break // the file shrank under us: count what we have
			}
			data = append(data, got.Data...)
			off = got.Offset + int64(len(got.Data))
		}
		for i := len(data) - 1; i >= 0; i-- {
			at := from + int64(i)
			if data[i] != '\n' || at == end-1 {
				continue // the newline that ends the last line starts nothing
			}
			if n--; n == 0 {
				return at + 1, end, nil
			}
		}
		pos = from
	}
	return 0, end, nil
}

// explainMissing adds the task's state to a missing-file error: a staging
// task has no sandbox yet, a finished one may have had it collected.
func explainMissing(err error, t taskRef) error {
	if errors.Is(err, errdefs.ErrNotFound) || errors.Is(err, errdefs.ErrGone) {
		return fmt.Errorf("%w (task %s is %s on agent %s)", err, t.ID, t.State, t.slave.Hostname)
	}
	return err
}

func terminalName(state string) bool {
	v, ok := mesos.TaskState_value[state]
	return ok && terminal(mesos.TaskState(v))
}

// copyFile writes the file from offset to its current end and returns the
// offset reached.
func copyFile(ctx context.Context, agent, file string, offset int64, w io.Writer) (int64, error) {
	return copyFileUpTo(ctx, agent, file, offset, -1, w)
}

// copyFileUpTo is copyFile stopping at end (< 0: the file's current end).
func copyFileUpTo(ctx context.Context, agent, file string, offset, end int64, w io.Writer) (int64, error) {
	for {
		n := int64(readChunk)
		if end >= 0 {
			if offset >= end {
				return offset, nil
			}
			n = min(n, end-offset)
		}
		chunk, err := readFile(ctx, agent, file, offset, n)
		if err != nil {
			return offset, err
		}
		if len(chunk.Data) == 0 {
			return offset, nil
		}
		if _, err := w.Write(chunk.Data); err != nil {
			return offset, err
		}
		offset = chunk.Offset + int64(len(chunk.Data))
	}
}

// pollFile follows a file with /files/read until ended says the task is
// over and the rest is printed.
func pollFile(ctx context.Context, agent, file string, offset int64, w io.Writer, ended func() bool) error {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	lastCheck := time.Time{}
	over := false
	for {
		var err error
		offset, err = copyFile(ctx, agent, file, offset, w)
		if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			return err
		}
		if over {
			return err
		}
		if time.Since(lastCheck) >= stateCheckInterval {
			lastCheck = time.Now()
			over = ended()
			if over {
				continue // one last read
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// streamSupported asks the agent whether it has /files/stream by reading
// the file's end without following. Only an agent whose /files/read finds
// the file but whose /files/stream does not lacks the endpoint.
func streamSupported(ctx context.Context, agent, file string) (bool, error) {
	size, err := readFile(ctx, agent, file, -1, 0)
	if err != nil {
		return true, err
	}
	t := transportOf(ctx)
	u := filesURL(t.scheme(), agent, "stream", file, fmt.Sprintf("offset=%d", size.Offset), "follow=false")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return true, err
	}
	resp, err := t.client.Do(authorize(req))
	if err != nil {
		return true, err
	}
	resp.Body.Close()
	return resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed, nil
}
