package agent_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/agentapi"
	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/internal/testutil"
	"google.golang.org/protobuf/proto"
)

func attachOutputCall(id, parent string) *agentapi.Call {
	cid := &mesos.ContainerID{Value: proto.String(id)}
	if parent != "" {
		cid.Parent = &mesos.ContainerID{Value: proto.String(parent)}
	}
	return &agentapi.Call{Type: agentapi.Call_ATTACH_CONTAINER_OUTPUT.Enum(),
		AttachContainerOutput: &agentapi.Call_AttachContainerOutput{ContainerId: cid}}
}

// ATTACH_CONTAINER_OUTPUT of a task's own container (msh -interactive's
// and `mesos task attach`'s call): what the task writes from then on, on
// stdout and stderr, while its sandbox files still get all of it; the
// stream ends once the task ended. A task of a group is attached by its
// nested container id.
func TestAttachTaskOutput(t *testing.T) {
	for _, cd := range []codec.Codec{codec.JSON, codec.Protobuf} {
		t.Run(cd.MediaType(), func(t *testing.T) {
			c := newCluster(t, nil)
			a := c.startAgent(t, t.TempDir(), 0, nil)
			id := "attached-" + strings.ReplaceAll(cd.MediaType(), "/", "-")
			// Before the attach: not in the stream. Then, once the
			// trigger file exists, two lines on each stream, and the end.
			task := commandTask(id, `echo before; while [ ! -e go ]; do sleep 0.05; done; echo out-1; echo err-1 >&2; sleep 0.2; echo out-2; echo err-2 >&2; sleep 0.3`)
			fw, cid := taskContainer(t, c, a, task)
			dir := filepath.Join(a.workDir, "slaves", a.ID(), "frameworks", fw.ID(), "executors", id, "runs", "latest")
			testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() bool {
				b, _ := os.ReadFile(filepath.Join(dir, "stdout"))
				return strings.Contains(string(b), "before\n")
			}, "the task wrote its first line")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			resp := a.startSession(t, ctx, cd, attachOutputCall(cid, ""), nil)
			if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			stdout, stderr := output(t, resp, cd)
			// The executor's own words follow on its stderr.
			if stdout != "out-1\nout-2\n" || !strings.HasPrefix(stderr, "err-1\nerr-2\n") {
				t.Errorf("attached output: stdout %q stderr %q, want the lines after the attach", stdout, stderr)
			}
			if b, _ := os.ReadFile(filepath.Join(dir, "stdout")); !strings.Contains(string(b), "before\nout-1\nout-2\n") {
				t.Errorf("the sandbox's stdout lost output while attached: %q", b)
			}
			fw.waitState(id, mesos.TaskState_TASK_FINISHED, 10*time.Second)
			// Ended: 409.
			code, body, _ := a.opPost(t, codec.JSON, codec.JSON, attachOutputCall(cid, ""), nil)
			if code != http.StatusConflict && code != http.StatusNotFound {
				t.Errorf("attach to an ended task: %d %s, want 409 or 404", code, body)
			}
		})
	}

	t.Run("task of a group", func(t *testing.T) {
		c := newCluster(t, nil)
		a := c.startAgent(t, t.TempDir(), 0, nil)
		fw := c.subscribe(t, testFramework("attach-pods"))
		fw.launchGroup(a, groupExecutor("pod-attach"), commandTask("ticker", `i=0; while [ $i -lt 100 ]; do echo tick-$i; i=$((i+1)); sleep 0.05; done`))
		st := fw.waitState("ticker", mesos.TaskState_TASK_RUNNING, 10*time.Second)
		cid := st.GetContainerStatus().GetContainerId()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		resp := a.startSession(t, ctx, codec.JSON, attachOutputCall(cid.GetValue(), cid.GetParent().GetValue()), nil)
		stdout, _ := output(t, resp, codec.JSON)
		if !strings.HasSuffix(stdout, "tick-99\n") || !strings.Contains(stdout, "tick-98\ntick-99\n") {
			t.Errorf("attached to the group's task: %q, want its ticks to the last", stdout)
		}
		// Its executor's container is not the task's.
		b, _ := os.ReadFile(filepath.Join(a.groupSandbox(fw.ID(), "pod-attach"), "tasks", "ticker", "stdout"))
		if !strings.HasSuffix(string(b), stdout) {
			t.Errorf("the attached output is not the end of the task's own stdout")
		}
	})

	t.Run("unknown", func(t *testing.T) {
		c := newCluster(t, nil)
		a := c.startAgent(t, t.TempDir(), 0, nil)
		code, body, _ := a.opPost(t, codec.JSON, codec.JSON, attachOutputCall("no-such-container", ""), nil)
		if code != http.StatusNotFound {
			t.Errorf("attach to an unknown container: %d %s, want 404", code, body)
		}
	})
}
