package isolation

import (
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mesolite/mesolite/internal/testutil"
)

// sleeper launches /bin/sleep as a container's executor and kills it
// when the test ends.
func sleeper(t *testing.T, l Launcher, spec Spec) Process {
	t.Helper()
	spec.Argv = []string{"/bin/sleep", "1000"}
	spec.Env = []string{"PATH=/usr/bin:/bin"}
	if spec.Dir == "" {
		spec.Dir = t.TempDir()
	}
	p, err := l.Launch(testCtx(t, 30*time.Second), spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.Signal(syscall.SIGKILL)
		_, _ = p.Wait(context.Background())
	})
	return p
}

// runEntered enters p's container with argv and returns the exit status
// and what it wrote to stdout and stderr.
func runEntered(t *testing.T, p Process, spec EnterSpec) (ExitStatus, string, string) {
	t.Helper()
	outR, outW, _ := os.Pipe()
	errR, errW, _ := os.Pipe()
	defer outR.Close()
	defer errR.Close()
	spec.Pid, spec.StartTime = p.Pid(), p.Handle().StartTime
	spec.Stdout, spec.Stderr = outW, errW
	e, err := Enter(testCtx(t, 30*time.Second), testLauncherOptions(t), spec)
	outW.Close()
	errW.Close()
	if err != nil {
		t.Fatalf("Enter: %v", err)
	}
	var stdout, stderr bytes.Buffer
	done := make(chan struct{})
	go func() { _, _ = io.Copy(&stderr, errR); close(done) }()
	_, _ = io.Copy(&stdout, outR)
	<-done
	st, err := e.Wait(testCtx(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return st, stdout.String(), stderr.String()
}

// Entering a container that is a plain process of the host needs no
// privilege: the command runs with the environment, directory and exit
// status it was given.
func TestEnterPosix(t *testing.T) {
	l := NewPosixLauncher(testLauncherOptions(t))
	defer l.Close()
	p := sleeper(t, l, Spec{})
	dir := t.TempDir()
	st, out, errOut := runEntered(t, p, EnterSpec{
		Argv: []string{"sh", "-c", `pwd; echo "$GREETING"; echo oops >&2; exit 7`},
		Env:  []string{"PATH=/usr/bin:/bin", "GREETING=hello"}, Dir: dir,
	})
	if st.Code != 7 || out != dir+"\nhello\n" || errOut != "oops\n" {
		t.Errorf("entered command: %s, stdout %q, stderr %q; want exit 7, %q, %q", st, out, errOut, dir+"\nhello\n", "oops\n")
	}
	if st.WaitStatus() != 7<<8 {
		t.Errorf("wait status %#x, want %#x", st.WaitStatus(), 7<<8)
	}
}

// A command entering a container with namespaces of its own sees what its
// executor sees: the container's hostname, its pid namespace (only the
// container's processes in /proc), its cgroup.
func TestEnterNamespaces(t *testing.T) {
	requireCgroups(t)
	m := newTestManager(t, allCgroups, DefaultCgroupsHierarchy)
	cg, err := m.Create(testCtx(t, 30*time.Second), "enter", Limits{CPUs: 1, MemoryBytes: 256 << 20, Pids: 100})
	if err != nil {
		t.Fatal(err)
	}
	l := NewLinuxLauncher(testLauncherOptions(t))
	defer l.Close()
	p := sleeper(t, l, Spec{Namespaces: NamespacePID | NamespaceIPC | NamespaceUTS, Hostname: "entered", Cgroup: cg})
	st, out, errOut := runEntered(t, p, EnterSpec{
		Argv:   []string{"/bin/sh", "-c", `hostname; ls /proc | grep -c '^[0-9]'; echo $$; cat /proc/self/cgroup`},
		Env:    []string{"PATH=/usr/bin:/bin"},
		Dir:    "/",
		Cgroup: cg,
	})
	if st.Code != 0 {
		t.Fatalf("entered command: %s, stderr %q", st, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 4 {
		t.Fatalf("output %q", out)
	}
	if lines[0] != "entered" {
		t.Errorf("hostname %q, want the container's", lines[0])
	}
	// The container's init, sleep, sh, ls and grep, give or take.
	if n := lines[1]; n == "" || len(n) > 1 {
		t.Errorf("processes in the container's /proc: %s, want a handful (it shows the host's)", n)
	}
	if lines[2] == "1" || len(lines[2]) > 2 {
		t.Errorf("the entered shell's pid %s, want a small one of the container's namespace", lines[2])
	}
	if !strings.Contains(strings.Join(lines[3:], "\n"), cg.ID()) {
		t.Errorf("entered command's cgroups %q, want the container's (%s)", lines[3:], cg.ID())
	}
}

// With a terminal the command has it as its controlling one, and a kill
// ends what it started too.
func TestEnterTTYAndKill(t *testing.T) {
	l := NewPosixLauncher(testLauncherOptions(t))
	defer l.Close()
	p := sleeper(t, l, Spec{})
	master, slave, err := OpenPTY()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	if err := SetWinsize(master, 33, 101); err != nil {
		t.Fatal(err)
	}
	e, err := Enter(testCtx(t, 30*time.Second), testLauncherOptions(t), EnterSpec{
		Pid: p.Pid(), StartTime: p.Handle().StartTime,
		Argv: []string{"/bin/sh", "-c", `test -t 0 && echo tty; stty size; sleep 987653 & echo started; wait`},
		Env:  []string{"PATH=/usr/bin:/bin"}, Dir: "/", Stdin: slave, Stdout: slave, Stderr: slave, TTY: true,
	})
	slave.Close()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	buf := make([]byte, 4096)
	testutil.Eventually(t, 10*time.Second, time.Millisecond, func() bool {
		_ = master.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		n, _ := master.Read(buf)
		out.Write(buf[:n])
		return strings.Contains(out.String(), "started")
	}, "terminal output %q", &out)
	if s := out.String(); !strings.Contains(s, "tty") || !strings.Contains(s, "33 101") {
		t.Errorf("terminal output %q, want tty and the size 33 101", s)
	}
	if err := e.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st, err := e.Wait(testCtx(t, 10*time.Second))
	if err != nil || st.Signal != syscall.SIGKILL {
		t.Errorf("killed command: %s %v, want killed by SIGKILL", st, err)
	}
	// The sleep it started in its process group went with it.
	testutil.Eventually(t, 5*time.Second, 10*time.Millisecond, func() bool { return !running("sleep\x00987653\x00") },
		"the entered command's sleep still runs")
}

// running reports whether a live process has the command line cmdline.
func running(cmdline string) bool {
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		b, err := os.ReadFile("/proc/" + ent.Name() + "/cmdline")
		if err != nil || string(b) != cmdline {
			continue
		}
		if _, state, ok := procStat(atoi(ent.Name())); ok && state != 'Z' {
			return true
		}
	}
	return false
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}
