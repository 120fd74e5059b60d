package agent_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/agent"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/internal/testutil"
	"google.golang.org/protobuf/proto"
)

// traversableDir is a work directory a task user can reach its sandbox
// through, as /var/lib/mesolite is (t.TempDir's are root's alone).
func traversableDir(t *testing.T) string {
	d := t.TempDir()
	for _, p := range []string{filepath.Dir(d), d} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// TestTasksRunAsTheirUser: a task naming a user runs as it (uid and
// groups), its sandbox is that user's, and the task can then not hard-link
// a file of root's into its sandbox for the files API to serve; a user the
// host does not know fails the task, naming the user; with switch_user off
// the task runs as the agent's user.
func TestTasksRunAsTheirUser(t *testing.T) {
	testutil.RequireRoot(t)
	c := newCluster(t, nil)
	a := c.startAgent(t, traversableDir(t), 0, func(c *agent.Config) { c.SwitchUser = true })
	fw := c.subscribe(t, testFramework("test"))
	fwID := fw.ID()

	task := commandTask("as-nobody", `id -u > ids; id -g >> ids; stat -c %U . >> ids; ln /etc/shadow shadow 2>> ids; echo done >> ids`)
	task.Command.User = proto.String("nobody")
	fw.launch(a, task)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("stderr: %s", a.sandboxFile(t, fwID, "as-nobody", "stderr"))
		}
	})
	if st := fw.waitState("as-nobody", mesos.TaskState_TASK_FINISHED, 15*time.Second); st == nil {
		return
	}
	var ids string
	testutil.Eventually(t, 5*time.Second, 20*time.Millisecond, func() bool {
		ids = a.sandboxFile(t, fwID, "as-nobody", "ids")
		return strings.Contains(ids, "done")
	}, "the task's output")
	lines := strings.Split(strings.TrimSpace(ids), "\n")
	if len(lines) < 3 || lines[0] != "65534" || lines[2] != "nobody" {
		t.Fatalf("task ran as %q, want uid 65534 in a sandbox owned by nobody", ids)
	}
	if !strings.Contains(ids, "ln:") {
		t.Fatalf("the task could hard-link /etc/shadow into its sandbox: %q", ids)
	}

	missing := commandTask("no-such-user", "true")
	missing.Command.User = proto.String("mesolite-no-such-user")
	fw.launch(a, missing)
	st := fw.waitState("no-such-user", mesos.TaskState_TASK_FAILED, 15*time.Second)
	if !strings.Contains(st.GetMessage(), "mesolite-no-such-user") {
		t.Fatalf("failure does not name the user: %q", st.GetMessage())
	}
}

func TestSwitchUserOffRunsAsAgent(t *testing.T) {
	testutil.RequireRoot(t)
	c := newCluster(t, nil)
	a := c.startAgent(t, t.TempDir(), 0, func(c *agent.Config) { c.SwitchUser = false })
	fw := c.subscribe(t, testFramework("test"))
	task := commandTask("as-agent", `id -u > ids`)
	task.Command.User = proto.String("nobody")
	fw.launch(a, task)
	fw.waitState("as-agent", mesos.TaskState_TASK_FINISHED, 15*time.Second)
	if ids := a.sandboxFile(t, fw.ID(), "as-agent", "ids"); strings.TrimSpace(ids) != "0" {
		t.Fatalf("with switch_user off the task ran as %q, want the agent's uid 0", ids)
	}
}

// TestRootTasksRefusedWhenNotAllowed: with --allow_root_tasks=false, a
// framework that asks for root (by name, or by naming nobody on an agent
// that does not switch users) gets TASK_FAILED, and a task naming a user
// still runs.
func TestRootTasksRefusedWhenNotAllowed(t *testing.T) {
	testutil.RequireRoot(t)
	c := newCluster(t, nil)
	a := c.startAgent(t, traversableDir(t), 0, func(c *agent.Config) { c.SwitchUser = true; c.RefuseRootTasks = true })
	fw := c.subscribe(t, testFramework("test"))
	root := commandTask("as-root", "id -u")
	root.Command.User = proto.String("root")
	fw.launch(a, root)
	st := fw.waitState("as-root", mesos.TaskState_TASK_FAILED, 15*time.Second)
	if !strings.Contains(st.GetMessage(), "--allow_root_tasks") {
		t.Fatalf("refusal does not name the flag: %q", st.GetMessage())
	}
	ok := commandTask("as-nobody-ok", "true")
	ok.Command.User = proto.String("nobody")
	fw.launch(a, ok)
	fw.waitState("as-nobody-ok", mesos.TaskState_TASK_FINISHED, 15*time.Second)
}
