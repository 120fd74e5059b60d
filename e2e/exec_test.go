package e2e

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/containerizer/docker/dockertest"
	"github.com/mesolite/mesolite/internal/testutil"
	"github.com/mesolite/mesolite/isolation"
)

// runningTask starts `mesolite run` with args in the background, waits for
// TASK_RUNNING, and stops it when the test ends.
func runningTask(t testing.TB, c *cluster, args ...string) {
	t.Helper()
	run := exec.Command(binary, append([]string{"run", "--master=" + c.masterAddr, "--resources=cpus:0.1;mem:64"}, args...)...)
	out := &testutil.SyncBuffer{}
	run.Stdout, run.Stderr = out, out
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = run.Process.Signal(interruptSignal)
		_ = run.Wait()
	})
	testutil.Eventually(t, 60*time.Second, 50*time.Millisecond, func() bool { return strings.Contains(out.String(), "TASK_RUNNING") },
		"task running:\n%s", out)
}

// sandboxOf is the host sandbox of a task's executor, from the agent's /state.
func sandboxOf(t *testing.T, c *cluster, taskID string) string {
	t.Helper()
	var st struct {
		Frameworks []struct {
			Executors []struct {
				ID        string `json:"id"`
				Directory string `json:"directory"`
			} `json:"executors"`
		} `json:"frameworks"`
	}
	if err := getJSON("http://"+c.agentAddr+"/state", &st); err != nil {
		t.Fatal(err)
	}
	for _, f := range st.Frameworks {
		for _, e := range f.Executors {
			if e.ID == taskID {
				return e.Directory
			}
		}
	}
	t.Fatalf("no executor %s in the agent's state", taskID)
	return ""
}

// exec runs mesolite exec with stdin and returns stdout, stderr and the
// exit code.
func execIn(t *testing.T, c *cluster, stdin io.Reader, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"exec", "--master=" + c.masterAddr}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("mesolite exec %v did not end; stderr:\n%s", args, stderr.String())
	}
	return stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()
}

// The "done when": exec into a mesos-containerizer task sees the
// task's sandbox and environment and returns the command's exit status;
// -i feeds it stdin.
func TestExecMesosTask(t *testing.T) {
	c := startCluster(t)
	runningTask(t, c, "--name=exec", "--id=exec-1", "--env=GREETING=hello", "--command=sleep 1000")
	dir := sandboxOf(t, c, "exec-1")
	out, errOut, code := execIn(t, c, nil, "exec-1", "--", "sh", "-c", `pwd; echo "$GREETING $MESOS_SANDBOX"; echo to-stderr >&2; exit 7`)
	if want := dir + "\nhello " + dir + "\n"; code != 7 || out != want || !strings.Contains(errOut, "to-stderr") {
		t.Errorf("exec: exit %d, stdout %q, stderr %q; want 7, %q, to-stderr", code, out, errOut, want)
	}
	out, errOut, code = execIn(t, c, strings.NewReader("hello\nworld\n"), "exec-1", "-i", "--", "tr", "a-z", "A-Z")
	if code != 0 || out != "HELLO\nWORLD\n" {
		t.Errorf("exec -i: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// A finished or unknown task is refused with the reason.
	_, errOut, code = execIn(t, c, nil, "no-such-task", "--", "true")
	if code == 0 || !strings.Contains(errOut, "no task") {
		t.Errorf("exec into an unknown task: exit %d, %q", code, errOut)
	}
}

// Under namespaces/pid, the command sees only the task's processes.
func TestExecIsolatedTask(t *testing.T) {
	c, _ := isolatedCluster(t)
	runningTask(t, c, "--name=iso", "--id=iso-1", "--command=sleep 1000")
	out, errOut, code := execIn(t, c, nil, "iso-1", "--", "sh", "-c", `ls /proc | grep -c '^[0-9]'; cat /proc/1/cmdline | tr '\0' ' '; echo; hostname; readlink /proc/self/ns/pid`)
	if code != 0 {
		t.Fatalf("exec: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 {
		t.Fatalf("output %q", out)
	}
	if n, err := strconv.Atoi(lines[0]); err != nil || n > 10 {
		t.Errorf("%s processes in the task's /proc, want a handful (the init, the executor, its task, this shell)", lines[0])
	}
	if !strings.Contains(lines[1], "launch") && !strings.Contains(lines[1], "executor") {
		t.Errorf("pid 1 of the task's namespace is %q, want the container's init", lines[1])
	}
	if lines[2] != "iso-1" {
		t.Errorf("hostname %q, want the task's (iso-1)", lines[2])
	}
	if host, _ := os.Readlink("/proc/self/ns/pid"); lines[3] == host {
		t.Errorf("the command runs in the host's pid namespace %s", host)
	}
}

// -t gives the command a terminal of this one's size.
func TestExecTTY(t *testing.T) {
	c := startCluster(t)
	runningTask(t, c, "--name=tty", "--id=tty-1", "--command=sleep 1000")
	master, slave, err := isolation.OpenPTY()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	if err := isolation.SetWinsize(slave, 30, 90); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "exec", "--master="+c.masterAddr, "tty-1", "-it", "--", "sh", "-c", "test -t 0 && echo is-a-tty; stty size; read x; echo got-$x")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	var out bytes.Buffer
	buf := make([]byte, 4096)
	read := func(want string) {
		t.Helper()
		testutil.Eventually(t, 30*time.Second, time.Millisecond, func() bool {
			_ = master.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			n, _ := master.Read(buf)
			out.Write(buf[:n])
			return strings.Contains(out.String(), want)
		}, "terminal output %q, want %q", &out, want)
	}
	read("30 90")
	if !strings.Contains(out.String(), "is-a-tty") {
		t.Errorf("terminal output %q: the command has no terminal", out.String())
	}
	if _, err := master.Write([]byte("typed\r")); err != nil {
		t.Fatal(err)
	}
	read("got-typed")
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exec -t: %v; output %q", err, out.String())
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("exec -t did not end; output %q", out.String())
	}
}

// Into a Docker task, the command runs inside its container.
func TestExecDockerTask(t *testing.T) {
	testutil.RequireDocker(t)
	dockertest.Images(t)
	c := startCluster(t, "--containerizers=docker,mesos")
	runningTask(t, c, "--name=dock", "--id=dock-1", "--docker_image="+dockertest.BusyboxImage, "--command=sleep 1000")
	out, errOut, code := execIn(t, c, nil, "dock-1", "--", "sh", "-c", `pwd; cat /proc/1/cmdline | tr '\0' ' '; echo; echo $MESOS_SANDBOX; exit 3`)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 3 || len(lines) != 3 {
		t.Fatalf("exec: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if lines[0] != "/mnt/mesos/sandbox" || !strings.Contains(lines[1], "sleep 1000") || lines[2] != "/mnt/mesos/sandbox" {
		t.Errorf("exec in the docker task: %q; want the sandbox mount as cwd and the task's sleep as pid 1", lines)
	}
}
