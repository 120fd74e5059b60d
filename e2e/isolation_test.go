package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/internal/testutil"
	"github.com/mesolite/mesolite/isolation"
)

func isolatedCluster(t *testing.T) (*cluster, string) {
	t.Helper()
	testutil.RequireRoot(t)
	root := "mesolite-e2e-" + strconv.Itoa(os.Getpid())
	// Registered before the cluster's own cleanups, so it runs after the
	// agent stopped: the root cgroup the agent made, and anything a
	// killed container left below it, go with the test.
	t.Cleanup(func() {
		// Killed processes leave their cgroups a moment after the kill.
		var left []string
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if left = testutil.RemoveCgroupTree(root); len(left) == 0 || time.Now().After(deadline) {
				break
			}
		}
		if len(left) > 0 {
			t.Errorf("cgroups left behind, still holding processes: %v", left)
		}
	})
	c := startCluster(t, "--isolation=cgroups/cpu,cgroups/mem,cgroups/pids,namespaces/pid,namespaces/ipc,namespaces/uts", "--cgroups_root="+root)
	return c, root
}

// cgroupDirs lists the container cgroups under root in the memory (v1) or
// unified (v2) hierarchy.
func cgroupDirs(t *testing.T, root string) []string {
	dir := filepath.Join("/sys/fs/cgroup", root)
	if !testutil.CgroupV2() {
		dir = filepath.Join("/sys/fs/cgroup/memory", root)
	}
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		// The agent's prestarted inits wait in staging cgroups (cgroup v1):
		// no container's.
		if e.IsDir() && !strings.HasPrefix(e.Name(), isolation.StagingPrefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

// The "done when": a 64 MB task allocating 256 MB ends TASK_FAILED
// with REASON_CONTAINER_LIMITATION_MEMORY.
func TestIsolatedTaskOOM(t *testing.T) {
	c, _ := isolatedCluster(t)
	out, code := mesolite(t, 90*time.Second, "run", "--master="+c.masterAddr, "--name=oom", "--resources=cpus:0.1;mem:64",
		"--command=head -c 268435456 /dev/zero | tail")
	if code == 0 || !strings.Contains(out, "TASK_FAILED") || !strings.Contains(out, "REASON_CONTAINER_LIMITATION_MEMORY") || !strings.Contains(out, "Memory limit exceeded") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

func TestIsolatedTaskNamespaces(t *testing.T) {
	c, _ := isolatedCluster(t)
	out, code := mesolite(t, 60*time.Second, "run", "--master="+c.masterAddr, "--name=ns", "--id=ns-1",
		"--command=readlink /proc/self/ns/pid; ps -e -o pid= | wc -l; hostname")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	logs, _ := mesolite(t, 30*time.Second, "logs", "--master="+c.masterAddr, "ns-1")
	lines := strings.Fields(logs)
	if len(lines) != 3 {
		t.Fatalf("stdout %q", logs)
	}
	host, _ := os.Readlink("/proc/self/ns/pid")
	if lines[0] == host {
		t.Errorf("task shares the host's pid namespace %s", host)
	}
	// init, executor, sh, ps, wc: nothing of the host.
	if n, _ := strconv.Atoi(lines[1]); n == 0 || n > 8 {
		t.Errorf("ps inside sees %d processes", n)
	}
	if lines[2] != "ns-1" {
		t.Errorf("hostname %q, want the task id", lines[2])
	}
}

// A daemonized grandchild dies with its task and no cgroup is left.
func TestIsolatedDaemonLeavesNothing(t *testing.T) {
	c, root := isolatedCluster(t)
	out, code := mesolite(t, 60*time.Second, "run", "--master="+c.masterAddr, "--name=daemon",
		"--command=setsid sh -c 'sleep 3141 & sleep 3142' >/dev/null 2>&1 & echo started")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, func() bool {
		err := exec.Command("pgrep", "-f", "sleep 314[12]").Run()
		return err != nil && len(cgroupDirs(t, root)) == 0
	}, "daemonized processes and the container cgroup gone (cgroups left: %v)", cgroupDirs(t, root))
	// A stopped agent closes its containerizer: its prestarted inits go,
	// and on cgroup v1 the staging cgroups they waited in.
	c.agent.stop()
	dir := filepath.Join("/sys/fs/cgroup", root)
	if !testutil.CgroupV2() {
		dir = filepath.Join("/sys/fs/cgroup/memory", root)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.IsDir() {
			t.Errorf("cgroup %s left under the root after the agent stopped", e.Name())
		}
	}
}

func TestIsolatedForkBombContained(t *testing.T) {
	c, root := isolatedCluster(t)
	c.agentArgs = append(c.agentArgs, "--cgroups_pids_limit=64")
	c.agent.stop()
	c.startAgent(t)
	out, _ := mesolite(t, 90*time.Second, "run", "--master="+c.masterAddr, "--name=bomb", "--timeout=20secs",
		"--command=b() { b | b & }; b; sleep 5; exit 0")
	// The bomb is contained: the agent keeps serving and runs the next task.
	if resp, err := http.Get("http://" + c.agentAddr + "/health"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("agent unhealthy after a fork bomb: %v\n%s", err, out)
	} else {
		resp.Body.Close()
	}
	if out, code := mesolite(t, 60*time.Second, "run", "--master="+c.masterAddr, "--name=after", "--command=true"); code != 0 {
		t.Fatalf("task after the fork bomb failed:\n%s", out)
	}
	testutil.Eventually(t, 30*time.Second, 200*time.Millisecond, func() bool { return len(cgroupDirs(t, root)) == 0 }, "bomb's cgroup removed")
}

// Each task of a group has a cgroup of its own with its own limits (read
// from inside the task), and one that outgrows its memory fails with
// REASON_CONTAINER_LIMITATION_MEMORY: the task, not its executor's
// container (its sibling ends TASK_KILLED by the group's policy, not by a
// limitation). Runs in the cgroup v2 (UML) run too.
func TestIsolatedTaskGroupOwnCgroups(t *testing.T) {
	c, root := isolatedCluster(t)
	limit := `if [ -f /sys/fs/cgroup/cgroup.controllers ]; then f=/sys/fs/cgroup$(sed -n 's/^0:://p' /proc/self/cgroup)/memory.max; ` +
		`else f=/sys/fs/cgroup/memory$(sed -n 's/^[0-9]*:memory://p' /proc/self/cgroup)/memory.limit_in_bytes; fi; echo limit $(cat $f); exec sleep 60`
	res := func(mem int) string {
		return fmt.Sprintf(`[{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}}, {"name": "mem", "type": "SCALAR", "scalar": {"value": %d}}]`, mem)
	}
	group := `{"tasks": [
	  {"name": "calm", "task_id": {"value": "calm-1"}, "resources": ` + res(48) + `, "command": {"value": ` + strconv.Quote(limit) + `}},
	  {"name": "hog", "task_id": {"value": "hog-1"}, "resources": ` + res(32) + `, "command": {"value": "sleep 1; head -c 268435456 /dev/zero | tail"}}
	]}`
	file := filepath.Join(t.TempDir(), "group.json")
	if err := os.WriteFile(file, []byte(group), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := mesolite(t, 90*time.Second, "run", "--master="+c.masterAddr, "--task_group="+file)
	if code == 0 {
		t.Fatalf("run of a group with an OOM exited 0:\n%s", out)
	}
	for _, want := range []string{"hog-1: TASK_FAILED", "REASON_CONTAINER_LIMITATION_MEMORY", "Memory limit exceeded: Requested: 32MB",
		"calm-1: TASK_KILLED", "limit 50331648\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("run output lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "REASON_CONTAINER_LIMITATION_MEMORY") != 1 {
		t.Errorf("more than the hog failed for a limitation:\n%s", out)
	}
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() bool { return len(cgroupDirs(t, root)) == 0 },
		"the group's cgroups removed")
}
