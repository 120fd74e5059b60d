package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// `mesolite run --task_group` (mesos-execute's flag) with the real binary:
// the group runs under the agent's default executor, its tasks share a
// file through a SANDBOX_PATH volume of the executor's sandbox, and the run
// follows every task.
func TestRunTaskGroupSharesAVolume(t *testing.T) {
	c := startCluster(t)
	volume := `"container": {"type": "MESOS", "volumes": [{"container_path": "shared", "mode": "RW",
		"source": {"type": "SANDBOX_PATH", "sandbox_path": {"type": "PARENT", "path": "shared"}}}]}`
	group := `{"tasks": [
	  {"name": "writer", "task_id": {"value": "writer-1"},
	   "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}}, {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}],
	   "command": {"value": "echo from-writer > shared/msg"}, ` + volume + `},
	  {"name": "reader", "task_id": {"value": "reader-1"},
	   "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}}, {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}],
	   "command": {"value": "for i in $(seq 100); do [ -s shared/msg ] && exec cat shared/msg; sleep 0.1; done; exit 1"}, ` + volume + `}
	]}`
	file := filepath.Join(t.TempDir(), "group.json")
	if err := os.WriteFile(file, []byte(group), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := mesolite(t, 60*time.Second, "run", "--master="+c.masterAddr, "--task_group="+file)
	if code != 0 {
		t.Fatalf("run --task_group exited %d:\n%s", code, out)
	}
	for _, want := range []string{"writer-1: TASK_RUNNING", "writer-1: TASK_FINISHED", "reader-1: TASK_FINISHED", "/tasks/reader-1/stdout",
		"--- reader-1 stdout ---\nfrom-writer\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("run output lacks %q:\n%s", want, out)
		}
	}
	logs, _ := filepath.Glob(filepath.Join(c.agentDir, "slaves", "*", "frameworks", "*", "executors", "*", "runs", "latest", "tasks", "reader-1", "stdout"))
	if len(logs) != 1 {
		t.Fatalf("reader's stdout in the agent's work dir: %v", logs)
	}
	if b, err := os.ReadFile(logs[0]); err != nil || string(b) != "from-writer\n" {
		t.Errorf("reader's stdout %q, %v", b, err)
	}
	// `mesolite logs` reads the task's own sandbox, not its executor's.
	if out, code := mesolite(t, 30*time.Second, "logs", "--master="+c.masterAddr, "reader-1"); code != 0 || out != "from-writer\n" {
		t.Errorf("mesolite logs reader-1: exit %d, %q", code, out)
	}
}

// One task of the group fails: the other is killed by the group's policy,
// and the run exits with the failed task's status.
func TestRunTaskGroupFailureKillsTheGroup(t *testing.T) {
	c := startCluster(t)
	group := `{"tasks": [
	  {"name": "sleeper", "task_id": {"value": "sleeper-1"}, "command": {"value": "sleep 60"}},
	  {"name": "failer", "task_id": {"value": "failer-1"}, "command": {"value": "sleep 0.5; exit 4"}}
	]}`
	file := filepath.Join(t.TempDir(), "group.json")
	if err := os.WriteFile(file, []byte(group), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := mesolite(t, 60*time.Second, "run", "--master="+c.masterAddr, "--task_group="+file)
	if code != 4 {
		t.Fatalf("run of a group whose task exited 4 exited %d:\n%s", code, out)
	}
	for _, want := range []string{"failer-1: TASK_FAILED", "status 4", "sleeper-1: TASK_KILLED", "failer-1 of its group ended in TASK_FAILED"} {
		if !strings.Contains(out, want) {
			t.Errorf("run output lacks %q:\n%s", want, out)
		}
	}
}

// Under cgroups and a pid namespace, the tasks of a group are nested in
// their executor's container: they see each other's processes (one pid
// namespace) and run in its cgroup.
func TestRunTaskGroupIsolated(t *testing.T) {
	c, root := isolatedCluster(t)
	volume := `"container": {"type": "MESOS", "volumes": [{"container_path": "shared", "mode": "RW",
		"source": {"type": "SANDBOX_PATH", "sandbox_path": {"type": "PARENT", "path": "shared"}}}]}`
	group := `{"tasks": [
	  {"name": "a", "task_id": {"value": "iso-a"}, "command": {"value": "echo $$ > shared/pid; sleep 30"}, ` + volume + `},
	  {"name": "b", "task_id": {"value": "iso-b"}, ` + volume + `, "command": {"value":
	    "for i in $(seq 100); do [ -s shared/pid ] && break; sleep 0.1; done; kill -0 $(cat shared/pid) && echo sees-a; grep -E 'memory|^0::' /proc/self/cgroup; kill $(cat shared/pid)"}}
	]}`
	file := filepath.Join(t.TempDir(), "group.json")
	if err := os.WriteFile(file, []byte(group), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ := mesolite(t, 60*time.Second, "run", "--master="+c.masterAddr, "--task_group="+file)
	if !strings.Contains(out, "iso-b: TASK_FINISHED") {
		t.Fatalf("iso-b did not finish:\n%s", out)
	}
	logs, _ := filepath.Glob(filepath.Join(c.agentDir, "slaves", "*", "frameworks", "*", "executors", "*", "runs", "latest", "tasks", "iso-b", "stdout"))
	if len(logs) != 1 {
		t.Fatalf("iso-b's stdout: %v", logs)
	}
	b, _ := os.ReadFile(logs[0])
	if !strings.Contains(string(b), "sees-a") || !strings.Contains(string(b), root) {
		t.Errorf("iso-b's stdout %q: want it to see iso-a's process and to run in a cgroup under %s", b, root)
	}
}
