package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	fm := newFakeMaster(t, true)
	a := startAgent(t, fm, traversableDir(t), 0, func(c *Config) { c.SwitchUser = true })
	fwID := testFramework.GetId().GetValue()

	task := commandTask("as-nobody", `id -u > ids; id -g >> ids; stat -c %U . >> ids; ln /etc/shadow shadow 2>> ids; echo done >> ids`)
	task.Command.User = proto.String("nobody")
	fm.events <- runTaskEvent(task)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("stderr: %s", readSandboxFile(t, a.Agent, fwID, "as-nobody", "stderr"))
		}
	})
	if st := fm.waitState("as-nobody", mesos.TaskState_TASK_FINISHED, 15*time.Second); st == nil {
		return
	}
	var ids string
	testutil.Eventually(t, 5*time.Second, 20*time.Millisecond, func() bool {
		ids = readSandboxFile(t, a.Agent, fwID, "as-nobody", "ids")
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
	fm.events <- runTaskEvent(missing)
	st := fm.waitState("no-such-user", mesos.TaskState_TASK_FAILED, 15*time.Second)
	if !strings.Contains(st.GetMessage(), "mesolite-no-such-user") {
		t.Fatalf("failure does not name the user: %q", st.GetMessage())
	}
}

func TestSwitchUserOffRunsAsAgent(t *testing.T) {
	testutil.RequireRoot(t)
	fm := newFakeMaster(t, true)
	a := startAgent(t, fm, t.TempDir(), 0, func(c *Config) { c.SwitchUser = false })
	task := commandTask("as-agent", `id -u > ids`)
	task.Command.User = proto.String("nobody")
	fm.events <- runTaskEvent(task)
	fm.waitState("as-agent", mesos.TaskState_TASK_FINISHED, 15*time.Second)
	if ids := readSandboxFile(t, a.Agent, testFramework.GetId().GetValue(), "as-agent", "ids"); strings.TrimSpace(ids) != "0" {
		t.Fatalf("with switch_user off the task ran as %q, want the agent's uid 0", ids)
	}
}

// TestRootTasksRefusedWhenNotAllowed: with --allow_root_tasks=false, a
// framework that asks for root (by name, or by naming nobody on an agent
// that does not switch users) gets TASK_FAILED, and a task naming a user
// still runs.
func TestRootTasksRefusedWhenNotAllowed(t *testing.T) {
	testutil.RequireRoot(t)
	fm := newFakeMaster(t, true)
	startAgent(t, fm, traversableDir(t), 0, func(c *Config) { c.SwitchUser = true; c.RefuseRootTasks = true })
	root := commandTask("as-root", "id -u")
	root.Command.User = proto.String("root")
	fm.events <- runTaskEvent(root)
	st := fm.waitState("as-root", mesos.TaskState_TASK_FAILED, 15*time.Second)
	if !strings.Contains(st.GetMessage(), "--allow_root_tasks") {
		t.Fatalf("refusal does not name the flag: %q", st.GetMessage())
	}
	ok := commandTask("as-nobody-ok", "true")
	ok.Command.User = proto.String("nobody")
	fm.events <- runTaskEvent(ok)
	fm.waitState("as-nobody-ok", mesos.TaskState_TASK_FINISHED, 15*time.Second)
}
