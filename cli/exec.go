package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/mesolite/mesolite/api/v1/agentapi"
	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/recordio"
	"google.golang.org/protobuf/proto"
)

const execSynopsis = `Usage: mesolite exec [--master=HOST:PORT] TASK [-i] [-t] -- COMMAND [ARGS...]

Runs a command inside a running task's container, as 'mesos task exec' and
'docker exec' do: in the task's namespaces and cgroups, as the task's user,
in its sandbox, with its environment (a Docker task: in its container, as
its user). TASK is the task's id, its name or the start of its id (as for
'mesolite logs'; of several, only running tasks count). The master's /master/state says which agent runs the task and
its container; the agent's operator API runs the command
(LAUNCH_NESTED_CONTAINER_SESSION) and streams its output back. The command
ends when this one does (Ctrl-C), and this one exits with the command's
exit status (128+N when a signal N killed it).

  -i  send this command's stdin to the command (ATTACH_CONTAINER_INPUT)
  -t  give the command a terminal: this one's is put in raw mode meanwhile,
      and its size follows this one's

The agent may need read-write credentials (--principal, --secret_file):
running commands in tasks is a change, not a read.`

// execHeartbeat spaces the heartbeats of the input stream, which keep
// idle connections (and the proxies on their way) open.
const execHeartbeat = 30 * time.Second

// Exec is `mesolite exec`.
func Exec(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return execWith(ctx, args, os.Stdin, stdout, stderr)
}

// execWith is Exec reading the command's input from stdin.
func execWith(ctx context.Context, args []string, stdin *os.File, stdout, stderr io.Writer) int {
	c := newCommand("exec", execSynopsis, stdout, stderr)
	master := c.masterFlag()
	interactive := c.Bool("i", false, "send stdin to the command")
	tty := c.Bool("t", false, "give the command a terminal (stdin must be one)")
	frameworkID := c.String("framework", "", "the task's framework (id or name), when several frameworks have a task of\n"+
		"that id or name")
	// The command is everything after the first "--", taken apart before
	// the flags are parsed: its own arguments may look like flags.
	flags, argv := args, []string(nil)
	if i := slices.Index(args, "--"); i >= 0 {
		flags, argv = args[:i], args[i+1:]
	}
	pos, code, stop := c.parse(splitShortFlags(flags))
	if stop {
		return code
	}
	if len(pos) != 1 || len(argv) == 0 {
		return c.usageError("want TASK -- COMMAND [ARGS...]")
	}
	taskID := pos[0]
	if *tty && !isTerminal(stdin) {
		return c.usageError("-t needs a terminal on stdin")
	}
	ctx = c.context(ctx)

	st, err := getState(ctx, *master)
	if err != nil {
		return c.fail("%v", err)
	}
	task, err := st.resolveTask(taskQuery{text: taskID, framework: *frameworkID, live: true})
	if err != nil {
		return c.fail("%v", err)
	}
	taskID = task.ID
	if terminalName(task.State) || task.completed {
		return c.fail("task %s is %s: nothing runs there to enter", taskID, task.State)
	}
	if task.slave == nil {
		return c.fail("task %s runs on agent %s, which the master does not know", taskID, task.SlaveID)
	}
	// The task's container: its executor's, or for a task of a group its
	// own nested one (with its executor's as parent).
	var parent *mesos.ContainerID
	for _, s := range task.Statuses {
		if cid := s.ContainerStatus.ContainerID; cid.Value != "" {
			parent = &mesos.ContainerID{Value: proto.String(cid.Value)}
			if cid.Parent != nil && cid.Parent.Value != "" {
				parent.Parent = &mesos.ContainerID{Value: proto.String(cid.Parent.Value)}
			}
		}
	}
	if parent == nil {
		return c.fail("task %s (%s) has no container yet: try again once it runs", taskID, task.State)
	}
	s := &execSession{
		agent: task.slave.agentAddr(), stdin: stdin, stdout: stdout, stderr: stderr, tty: *tty,
		id: &mesos.ContainerID{Value: proto.String(uuid.NewString()), Parent: parent},
	}
	status, err := s.run(ctx, argv, *interactive)
	if err != nil {
		return c.fail("%v", err)
	}
	return exitCodeOf(status)
}

// splitShortFlags turns -it and -ti into -i -t, as docker and kubectl
// take them.
func splitShortFlags(args []string) []string {
	out := make([]string, 0, len(args)+1)
	for _, a := range args {
		if a == "-it" || a == "-ti" {
			out = append(out, "-i", "-t")
			continue
		}
		out = append(out, a)
	}
	return out
}

// exitCodeOf is a wait(2) status as a shell reports it.
func exitCodeOf(status int) int {
	ws := syscall.WaitStatus(status)
	switch {
	case status < 0:
		return exitFail
	case ws.Signaled():
		return 128 + int(ws.Signal())
	default:
		return ws.ExitStatus()
	}
}

// execSession is one session on an agent.
type execSession struct {
	agent          string
	id             *mesos.ContainerID
	stdin          *os.File
	stdout, stderr io.Writer
	tty            bool
}

// post sends an agent API request; body of type contentType.
func (s *execSession) post(ctx context.Context, client *http.Client, body io.Reader, header http.Header) (*http.Response, error) {
	t := transportOf(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.scheme()+"://"+s.agent+"/api/v1", body)
	if err != nil {
		return nil, err
	}
	req.Header = header
	resp, err := client.Do(authorize(req))
	if err != nil {
		return nil, fmt.Errorf("agent %s: %w", s.agent, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, fmt.Errorf("agent %s: %s: %s", s.agent, resp.Status, readReason(resp.Body))
	}
	return resp, nil
}

// run starts the session, streams its output (and with interactive its
// input) until it ends, and returns its wait status.
func (s *execSession) run(ctx context.Context, argv []string, interactive bool) (int, error) {
	call := &agentapi.Call{Type: agentapi.Call_LAUNCH_NESTED_CONTAINER_SESSION.Enum(), LaunchNestedContainerSession: &agentapi.Call_LaunchNestedContainerSession{
		ContainerId: s.id,
		Command:     &mesos.CommandInfo{Shell: proto.Bool(false), Value: proto.String(argv[0]), Arguments: argv},
	}}
	var restore func()
	if s.tty {
		ti := &mesos.TTYInfo{}
		if rows, cols, ok := termSize(s.stdin); ok {
			ti.WindowSize = &mesos.TTYInfo_WindowSize{Rows: proto.Uint32(uint32(rows)), Columns: proto.Uint32(uint32(cols))}
		}
		call.LaunchNestedContainerSession.Container = &mesos.ContainerInfo{Type: mesos.ContainerInfo_MESOS.Enum(), TtyInfo: ti}
		if term := os.Getenv("TERM"); term != "" {
			call.LaunchNestedContainerSession.Command.Environment = &mesos.Environment{Variables: []*mesos.Environment_Variable{
				{Name: proto.String("TERM"), Value: proto.String(term)}}}
		}
	}
	body, err := codec.Protobuf.Marshal(call)
	if err != nil {
		return -1, err
	}
	// The session lives as long as this request: cancelling it (Ctrl-C
	// without -t, an error below) ends the command on the agent.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp, err := s.post(sctx, transportOf(ctx).stream, bytes.NewReader(body), http.Header{
		"Content-Type":   {codec.MediaTypeProtobuf},
		"Accept":         {"application/recordio"},
		"Message-Accept": {codec.MediaTypeProtobuf},
	})
	if err != nil {
		return -1, err
	}
	defer resp.Body.Close()
	if s.tty {
		// Raw only once the command runs: an error before is printed on a
		// terminal that still works.
		if restore, err = makeRaw(s.stdin); err != nil {
			return -1, fmt.Errorf("terminal: %w", err)
		}
		defer restore()
	}
	var input sync.WaitGroup
	inputDone := make(chan struct{})
	if interactive {
		input.Go(func() { s.streamInput(sctx, inputDone) })
	}
	err = s.copyOutput(resp.Body)
	close(inputDone)
	if err != nil && sctx.Err() == nil {
		return -1, fmt.Errorf("output of the command: %w", err)
	}
	if ctx.Err() != nil {
		return -1, ctx.Err()
	}
	return s.wait(ctx)
}

// copyOutput writes the session's records until its stream ends.
func (s *execSession) copyOutput(r io.Reader) error {
	dec := recordio.NewDecoder(r, codec.Protobuf, 0)
	for {
		rec := &agentapi.ProcessIO{}
		if err := dec.Decode(rec); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if rec.GetType() != agentapi.ProcessIO_DATA {
			continue
		}
		w := s.stdout
		if rec.GetData().GetType() == agentapi.ProcessIO_Data_STDERR {
			w = s.stderr
		}
		if _, err := w.Write(rec.GetData().GetData()); err != nil {
			return err
		}
	}
}

// streamInput sends stdin (and with a terminal, its size when it changes)
// until stdin ends or the session does. Stdin's end is sent as Mesos's
// empty STDIN record.
func (s *execSession) streamInput(ctx context.Context, done <-chan struct{}) {
	pr, pw := io.Pipe()
	enc := recordio.NewEncoder(pw, codec.Protobuf)
	var mu sync.Mutex
	send := func(in *agentapi.Call_AttachContainerInput) error {
		mu.Lock()
		defer mu.Unlock()
		return enc.Encode(&agentapi.Call{Type: agentapi.Call_ATTACH_CONTAINER_INPUT.Enum(), AttachContainerInput: in})
	}
	pio := func(p *agentapi.ProcessIO) *agentapi.Call_AttachContainerInput {
		return &agentapi.Call_AttachContainerInput{Type: agentapi.Call_AttachContainerInput_PROCESS_IO.Enum(), ProcessIo: p}
	}
	data := func(b []byte) *agentapi.Call_AttachContainerInput {
		return pio(&agentapi.ProcessIO{Type: agentapi.ProcessIO_DATA.Enum(),
			Data: &agentapi.ProcessIO_Data{Type: agentapi.ProcessIO_Data_STDIN.Enum(), Data: b}})
	}
	control := func(c *agentapi.ProcessIO_Control) *agentapi.Call_AttachContainerInput {
		return pio(&agentapi.ProcessIO{Type: agentapi.ProcessIO_CONTROL.Enum(), Control: c})
	}
	posted := make(chan error, 1)
	go func() {
		resp, err := s.post(ctx, transportOf(ctx).stream, pr, http.Header{
			"Content-Type":         {"application/recordio"},
			"Message-Content-Type": {codec.MediaTypeProtobuf},
			"Accept":               {codec.MediaTypeJSON},
		})
		if err == nil {
			resp.Body.Close()
		}
		pr.CloseWithError(errors.New("input stream ended"))
		posted <- err
	}()
	go func() {
		<-done
		pw.Close()
	}()
	if err := send(&agentapi.Call_AttachContainerInput{Type: agentapi.Call_AttachContainerInput_CONTAINER_ID.Enum(), ContainerId: s.id}); err != nil {
		return
	}
	tick := time.NewTicker(execHeartbeat)
	defer tick.Stop()
	var winch chan os.Signal
	if s.tty {
		winch = make(chan os.Signal, 1)
		signal.Notify(winch, syscall.SIGWINCH)
		defer signal.Stop(winch)
	}
	go func() {
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				_ = send(control(&agentapi.ProcessIO_Control{Type: agentapi.ProcessIO_Control_HEARTBEAT.Enum(),
					Heartbeat: &agentapi.ProcessIO_Control_Heartbeat{Interval: &mesos.DurationInfo{Nanoseconds: proto.Int64(int64(execHeartbeat))}}}))
			case <-winch:
				if rows, cols, ok := termSize(s.stdin); ok {
					_ = send(control(&agentapi.ProcessIO_Control{Type: agentapi.ProcessIO_Control_TTY_INFO.Enum(),
						TtyInfo: &mesos.TTYInfo{WindowSize: &mesos.TTYInfo_WindowSize{Rows: proto.Uint32(uint32(rows)), Columns: proto.Uint32(uint32(cols))}}}))
				}
			}
		}
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := s.stdin.Read(buf)
		if n > 0 {
			if send(data(bytes.Clone(buf[:n]))) != nil {
				return
			}
		}
		if err != nil {
			// The end of our input is the end of the command's.
			_ = send(data(nil))
			return
		}
	}
}

// wait asks the agent how the session ended.
func (s *execSession) wait(ctx context.Context) (int, error) {
	call := &agentapi.Call{Type: agentapi.Call_WAIT_NESTED_CONTAINER.Enum(),
		WaitNestedContainer: &agentapi.Call_WaitNestedContainer{ContainerId: s.id}}
	body, err := codec.JSON.Marshal(call)
	if err != nil {
		return -1, err
	}
	resp, err := s.post(ctx, transportOf(ctx).client, bytes.NewReader(body), http.Header{
		"Content-Type": {codec.MediaTypeJSON}, "Accept": {codec.MediaTypeJSON},
	})
	if err != nil {
		return -1, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return -1, err
	}
	out := &agentapi.Response{}
	if err := codec.JSON.Unmarshal(b, out); err != nil {
		return -1, fmt.Errorf("agent %s: WAIT_NESTED_CONTAINER: %w", s.agent, err)
	}
	if out.GetWaitNestedContainer().ExitStatus == nil {
		return -1, fmt.Errorf("agent %s does not know how the command ended", s.agent)
	}
	return int(out.GetWaitNestedContainer().GetExitStatus()), nil
}
