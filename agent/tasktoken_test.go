package agent_test

import (
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
)

// TestTaskDoesNotInheritExecutorToken: the command executor holds a token
// for the agent's executor API; the task it runs must not get it from its
// environment, or the task could speak for its executor (report itself
// finished while it runs, send messages as it).
func TestTaskDoesNotInheritExecutorToken(t *testing.T) {
	c := newCluster(t, nil)
	ta := c.startAgent(t, t.TempDir(), 0, nil)
	fw := c.subscribe(t, testFramework("token"))
	fw.launch(ta, commandTask("env-dump", "env > env.txt; echo done >> env.txt; exec sleep 60"))
	fw.waitState("env-dump", mesos.TaskState_TASK_RUNNING, 20*time.Second)
	env := ""
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(env, "done") && time.Now().Before(deadline) {
		env = ta.sandboxFile(t, fw.ID(), "env-dump", "env.txt")
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(env, "MESOS_SANDBOX=") {
		t.Fatalf("the task's environment lacks the sandbox; env dump:\n%s", env)
	}
	if strings.Contains(env, "MESOS_EXECUTOR_AUTHENTICATION_TOKEN") {
		t.Fatal("the task inherited its executor's token")
	}
}
