package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"

	"github.com/mesolite/mesolite/api/v1/agentapi"
	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"google.golang.org/protobuf/proto"
)

const attachSynopsis = `Usage: mesolite attach [--master=HOST:PORT] TASK [-i]

Follows a running task's own output, as 'mesos task attach' does: what the
task writes from now on to its stdout and stderr, until it ends (or
Ctrl-C). TASK is the task's id, its name or the start of its id, as for
'mesolite exec'; a task of a group is followed in its own container. The
agent's operator API streams it (ATTACH_CONTAINER_OUTPUT); the task keeps
writing its sandbox files, whatever this command does.

  -i  type into the task: only a task launched with a TTY takes input (a
      Docker task with container.tty_info). This terminal is put in raw
      mode meanwhile and its size follows; keys such as Ctrl-C go to the
      task. The end of this command's input is the terminal's ^D.

The agent may need read-write credentials (--principal, --secret_file).`

// Attach is `mesolite attach`.
func Attach(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return attachWith(ctx, args, os.Stdin, stdout, stderr)
}

func attachWith(ctx context.Context, args []string, stdin *os.File, stdout, stderr io.Writer) int {
	c := newCommand("attach", attachSynopsis, stdout, stderr)
	master := c.masterFlag()
	interactive := c.Bool("i", false, "type into the task's terminal (a task launched with a TTY)")
	frameworkID := c.String("framework", "", "the task's framework (id or name), when several frameworks have a task of\n"+
		"that id or name")
	pos, code, stop := c.parse(args)
	if stop {
		return code
	}
	if len(pos) != 1 {
		return c.usageError("want TASK")
	}
	ctx = c.context(ctx)
	st, err := getState(ctx, *master)
	if err != nil {
		return c.fail("%v", err)
	}
	task, err := st.resolveTask(taskQuery{text: pos[0], framework: *frameworkID, live: true})
	if err != nil {
		return c.fail("%v", err)
	}
	if terminalName(task.State) || task.completed {
		return c.fail("task %s is %s: nothing runs there to attach to", task.ID, task.State)
	}
	if task.slave == nil {
		return c.fail("task %s runs on agent %s, which the master does not know", task.ID, task.SlaveID)
	}
	var id *mesos.ContainerID
	for _, s := range task.Statuses {
		if cid := s.ContainerStatus.ContainerID; cid.Value != "" {
			id = &mesos.ContainerID{Value: proto.String(cid.Value)}
			if cid.Parent != nil && cid.Parent.Value != "" {
				id.Parent = &mesos.ContainerID{Value: proto.String(cid.Parent.Value)}
			}
		}
	}
	if id == nil {
		return c.fail("task %s (%s) has no container yet: try again once it runs", task.ID, task.State)
	}
	s := &execSession{agent: task.slave.agentAddr(), stdin: stdin, stdout: stdout, stderr: stderr,
		tty: *interactive && isTerminal(stdin), id: id}
	if err := s.attach(ctx, *interactive); err != nil {
		return c.fail("%v", err)
	}
	return 0
}

// attach follows the task's output (and with interactive feeds its input)
// until the output ends.
func (s *execSession) attach(ctx context.Context, interactive bool) error {
	call := &agentapi.Call{Type: agentapi.Call_ATTACH_CONTAINER_OUTPUT.Enum(),
		AttachContainerOutput: &agentapi.Call_AttachContainerOutput{ContainerId: s.id}}
	body, err := codec.Protobuf.Marshal(call)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp, err := s.post(sctx, transportOf(ctx).stream, bytes.NewReader(body), http.Header{
		"Content-Type":   {codec.MediaTypeProtobuf},
		"Accept":         {"application/recordio"},
		"Message-Accept": {codec.MediaTypeProtobuf},
	})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if s.tty {
		restore, err := makeRaw(s.stdin)
		if err != nil {
			return fmt.Errorf("terminal: %w", err)
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
	cancel()
	if ctx.Err() != nil {
		return nil // Ctrl-C: detached
	}
	if err != nil {
		return fmt.Errorf("output of the task: %w", err)
	}
	return nil
}
