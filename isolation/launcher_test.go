package isolation

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/internal/idle"
	"github.com/mesolite/mesolite/internal/testutil"
)

// TestPidNamespace launches into a pid, ipc and uts namespace through a
// prestarted init. That init started its executor's process ahead too: an
// executor it can run in place (our own binary) runs as that process; any
// other is forked and exec'ed by the init, and the process started ahead
// is gone before it runs.
func TestPidNamespace(t *testing.T) {
	requireCgroups(t)
	m := newTestManager(t, allCgroups, DefaultCgroupsHierarchy)
	for _, tc := range []struct {
		name    string
		initEnv string
		argv    []string
		inPlace bool
	}{
		{"in place", initEnv + "=inprocess", []string{selfPath(t), "nsinfo"}, true},
		{"exec", initEnv + "=1", []string{selfPath(t)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t, 30*time.Second)
			cg, err := m.Create(ctx, "pidns", Limits{CPUs: 1, MemoryBytes: 256 << 20, Pids: 100})
			if err != nil {
				t.Fatal(err)
			}
			spec := modeSpec(t, "nsinfo")
			spec.Argv = tc.argv
			spec.Namespaces = NamespacePID | NamespaceIPC | NamespaceUTS
			spec.Hostname = "mesolite-test"
			spec.Cgroup = cg
			spec.StdoutPath = filepath.Join(spec.Dir, "stdout")
			spec.StderrPath = filepath.Join(spec.Dir, "stderr")
			hostProcBefore := procMountCount(t)
			warm := testLauncherOptions(t)
			warm.InitEnv = []string{tc.initEnv}
			warm.Prestart = 1
			l := NewLinuxLauncher(warm)
			defer l.Close()
			l.Prestart(spec.Namespaces)
			// Let the prestarted init come up, so the launch below takes it
			// and the spec, cgroup and outputs all arrive after the clone.
			warmPid := waitPrestarted(t, l.pool, spec.Namespaces|NamespaceMount)
			kids, err := childPids(warmPid)
			if err != nil || len(kids) != 1 {
				t.Fatalf("children of the prestarted init: %v %v, want one prestarted executor process", kids, err)
			}
			prePid := nsPid(t, kids[0])
			if idle.Possible() {
				for _, pid := range []int{warmPid, kids[0]} {
					if ps, err := idle.Policies(pid); err != nil || slices.ContainsFunc(ps, func(p int) bool { return p != unix.SCHED_IDLE }) {
						t.Errorf("waiting process %d thread policies %v %v, want all SCHED_IDLE", pid, ps, err)
					}
				}
			}
			p, err := l.Launch(ctx, spec)
			if err != nil {
				t.Fatal(err)
			}
			if p.Pid() != warmPid {
				t.Errorf("launch used init %d, not the prestarted %d", p.Pid(), warmPid)
			}
			if st, err := p.Wait(ctx); err != nil || st.Code != 0 {
				errOut, _ := os.ReadFile(spec.StderrPath)
				t.Fatalf("nsinfo: %s, %v (stderr %q)", st, err, errOut)
			}
			out := map[string]string{}
			for _, line := range strings.Split(readFileT(t, spec.StdoutPath), "\n") {
				k, v, _ := strings.Cut(line, "=")
				out[k] = v
			}
			hostNS, _ := os.Readlink("/proc/self/ns/pid")
			if out["pidns"] == "" || out["pidns"] == hostNS {
				t.Errorf("container pid namespace %q, host %q: want a different one", out["pidns"], hostNS)
			}
			// The init's threads take pids too, so the executor is not always 2.
			if out["ppid"] != "1" || out["pid"] == "" || out["pid"] == "1" {
				t.Errorf("executor pid %s ppid %s, want a child of the init (pid 1)", out["pid"], out["ppid"])
			}
			if ranAsPre := out["pid"] == prePid; ranAsPre != tc.inPlace {
				t.Errorf("executor pid %s, process started ahead %s: ran as it %v, want %v", out["pid"], prePid, ranAsPre, tc.inPlace)
			}
			if out["idle_threads"] != "0" {
				t.Errorf("executor has %s threads at SCHED_IDLE, want none", out["idle_threads"])
			}
			// It joined the container's cgroup with its init.
			if _, rel, _ := strings.Cut(cg.String(), ":"); out["memcg"] == "" || !strings.HasSuffix(out["memcg"], rel) {
				t.Errorf("executor in memory cgroup %q, want the container's %s", out["memcg"], cg)
			}
			if got, want := out["procs"], "1,"+out["pid"]; got != want {
				t.Errorf("/proc inside lists pids %q, want only the container's (%s)", got, want)
			}
			if hn, _ := os.Hostname(); out["hostname"] != "mesolite-test" || hn == "mesolite-test" {
				t.Errorf("hostname inside %q (host %q), want mesolite-test inside only", out["hostname"], hn)
			}
			if after := procMountCount(t); after != hostProcBefore {
				t.Errorf("host proc mounts changed from %d to %d: the container's /proc leaked", hostProcBefore, after)
			}
			if err := cg.Delete(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// nsPid is the pid of host pid in its innermost pid namespace.
func nsPid(t testing.TB, pid int) string {
	t.Helper()
	for _, line := range strings.Split(readFileT(t, fmt.Sprintf("/proc/%d/status", pid)), "\n") {
		if v, ok := strings.CutPrefix(line, "NSpid:"); ok {
			f := strings.Fields(v)
			return f[len(f)-1]
		}
	}
	t.Fatalf("no NSpid in /proc/%d/status", pid)
	return ""
}

func waitPrestarted(t testing.TB, pool *initPool, ns Namespaces) int {
	t.Helper()
	pid := 0
	testutil.Eventually(t, 10*time.Second, time.Millisecond, func() bool {
		pool.mu.Lock()
		defer pool.mu.Unlock()
		if list := pool.idle[ns]; len(list) > 0 {
			pid = list[0].cmd.Process.Pid
		}
		return pid != 0
	}, "prestarted init for %s", ns)
	return pid
}

// procMountCount counts the host's proc mounts: a container's /proc that
// leaked would add one. Only proc: the rest of the host's table changes
// with whatever else runs (dockerd's overlays for the tests in parallel).
func procMountCount(t *testing.T) int {
	t.Helper()
	n := 0
	for _, line := range strings.Split(readFileT(t, "/proc/self/mountinfo"), "\n") {
		// "... - fstype source options": the fstype follows the separator.
		if _, after, ok := strings.Cut(line, " - "); ok && strings.HasPrefix(after, "proc ") {
			n++
		}
	}
	return n
}

func launchers(t *testing.T) map[string]Launcher {
	t.Helper()
	warm := testLauncherOptions(t)
	warm.Prestart = 2
	ls := map[string]Launcher{
		"posix":                NewPosixLauncher(testLauncherOptions(t)),
		"linux-pidns":          pidnsLauncher{NewLinuxLauncher(testLauncherOptions(t))},
		"linux-pidns-prestart": pidnsLauncher{NewLinuxLauncher(warm)},
	}
	for _, l := range ls {
		t.Cleanup(func() { _ = l.Close() })
	}
	return ls
}

// pidnsLauncher launches everything in a pid namespace.
type pidnsLauncher struct{ *LinuxLauncher }

func (l pidnsLauncher) Launch(ctx context.Context, spec Spec) (Process, error) {
	spec.Namespaces |= NamespacePID
	return l.LinuxLauncher.Launch(ctx, spec)
}

func TestLaunchExitStatus(t *testing.T) {
	testutil.RequireRoot(t)
	for name, l := range launchers(t) {
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t, 30*time.Second)
			tests := []struct {
				name string
				spec Spec
				want ExitStatus
			}{
				{"exit 0", modeSpec(t, "exit", "0"), ExitStatus{Known: true}},
				{"exit 3", modeSpec(t, "exit", "3"), ExitStatus{Known: true, Code: 3}},
				{"killed", modeSpec(t, "selfkill"), ExitStatus{Known: true, Code: 137, Signal: syscall.SIGKILL}},
				{"true via PATH", Spec{Argv: []string{"true"}, Env: []string{"PATH=/usr/bin:/bin"}}, ExitStatus{Known: true}},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					p, err := l.Launch(ctx, tt.spec)
					if err != nil {
						t.Fatal(err)
					}
					got, err := p.Wait(ctx)
					if err != nil || got != tt.want {
						t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
					}
					if tt.want.Signal != 0 && got.WaitStatus() != int(tt.want.Signal) {
						t.Errorf("wait status %#x", got.WaitStatus())
					}
					if err := p.Signal(syscall.SIGTERM); !errors.Is(err, os.ErrProcessDone) {
						t.Errorf("Signal after exit: %v, want ErrProcessDone", err)
					}
				})
			}
			t.Run("not found", func(t *testing.T) {
				_, err := l.Launch(ctx, Spec{Argv: []string{"no-such-executor"}, Env: []string{"PATH=/nonexistent"}})
				if !errors.Is(err, exec.ErrNotFound) && (err == nil || !strings.Contains(err.Error(), "not found")) {
					t.Fatalf("err = %v, want not found", err)
				}
			})
			t.Run("invalid", func(t *testing.T) {
				if _, err := l.Launch(ctx, Spec{}); !errors.Is(err, errdefs.ErrInvalid) {
					t.Fatalf("empty argv: %v, want ErrInvalid", err)
				}
				if _, err := l.Launch(ctx, Spec{Argv: []string{"true"}, Hostname: "x"}); !errors.Is(err, errdefs.ErrInvalid) {
					t.Fatalf("hostname without UTS: %v, want ErrInvalid", err)
				}
			})
		})
	}
}

func TestSignalForwarding(t *testing.T) {
	testutil.RequireRoot(t)
	for name, l := range launchers(t) {
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t, 30*time.Second)
			spec := modeSpec(t, "trap")
			spec.StdoutPath = filepath.Join(spec.Dir, "stdout")
			p, err := l.Launch(ctx, spec)
			if err != nil {
				t.Fatal(err)
			}
			waitReady(t, spec.StdoutPath)
			if err := p.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if st, err := p.Wait(ctx); err != nil || st.Code != 42 || st.Signal != 0 {
				t.Fatalf("after SIGTERM: %s, %v; want the executor's own exit 42", st, err)
			}
		})
	}
}

func waitReady(t *testing.T, stdout string) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, 2*time.Millisecond, func() bool {
		b, _ := os.ReadFile(stdout)
		return strings.Contains(string(b), "ready")
	}, "executor ready")
}

func TestAttach(t *testing.T) {
	testutil.RequireRoot(t)
	ctx := testCtx(t, 30*time.Second)
	spec := modeSpec(t, "trap")
	spec.Namespaces = NamespacePID
	spec.StdoutPath = filepath.Join(spec.Dir, "stdout")
	spec.StatusPath = filepath.Join(spec.Dir, "status")
	p, err := NewLinuxLauncher(testLauncherOptions(t)).Launch(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	waitReady(t, spec.StdoutPath)
	h := p.Handle()
	if h.Pid != p.Pid() || h.StartTime == 0 || !h.Supervised || h.StatusPath != spec.StatusPath {
		t.Fatalf("handle %+v", h)
	}
	// As a restarted agent would: from the checkpointed handle alone.
	a, err := Attach(h)
	if err != nil {
		t.Fatal(err)
	}
	short := testCtx(t, 50*time.Millisecond)
	if _, err := a.Wait(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait on a running process: %v", err)
	}
	if err := a.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	st, err := a.Wait(ctx)
	if err != nil || st != (ExitStatus{Known: true, Code: 42}) {
		t.Fatalf("attached Wait: %+v, %v; want exit 42 from the status file", st, err)
	}
	if st, _ := p.Wait(ctx); st.Code != 42 {
		t.Fatalf("launcher Wait: %s", st)
	}

	t.Run("recycled pid", func(t *testing.T) {
		a, err := Attach(Handle{Pid: os.Getpid(), StartTime: 1})
		if err != nil {
			t.Fatal(err)
		}
		st, err := a.Wait(ctx)
		if err != nil || st.Known {
			t.Fatalf("got %+v, %v; want an exited process with unknown status", st, err)
		}
	})
	t.Run("unsupervised", func(t *testing.T) {
		spec := modeSpec(t, "trap")
		spec.StdoutPath = filepath.Join(spec.Dir, "stdout")
		p, err := NewPosixLauncher(testLauncherOptions(t)).Launch(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		waitReady(t, spec.StdoutPath)
		a, err := Attach(p.Handle())
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if st, _ := p.Wait(ctx); st.Code != 42 {
			t.Fatalf("launcher Wait: %s", st)
		}
		if st, err := a.Wait(ctx); err != nil || st.Known {
			t.Fatalf("attached Wait without a status file: %+v, %v; want unknown", st, err)
		}
	})
}

// A prestarted init whose executor is its own binary becomes the executor
// in place: same pid as the init, the spec's environment, directory and
// outputs, and no second exec (os.Args are still the init's).
func TestInProcessExecutor(t *testing.T) {
	for _, kind := range []LauncherKind{LauncherPosix, LauncherLinux} {
		t.Run(string(kind), func(t *testing.T) {
			if kind == LauncherLinux {
				testutil.RequireRoot(t)
			}
			opts := testLauncherOptions(t)
			opts.InitEnv = []string{initEnv + "=inprocess"}
			opts.Prestart = 1
			l, err := NewLauncher(kind, opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			pool := l.(interface{ poolForTest() *initPool }).poolForTest()
			pool.fill(0)
			testutil.Eventually(t, 10*time.Second, 5*time.Millisecond, func() bool {
				pool.mu.Lock()
				defer pool.mu.Unlock()
				return len(pool.idle[0]) == 1
			}, "an init prestarted")
			pool.mu.Lock()
			initPid := pool.idle[0][0].cmd.Process.Pid
			pool.mu.Unlock()
			// A waiting init gets CPU only when nothing else wants it (where it can leave SCHED_IDLE).
			if idle.Possible() {
				policies, err := idle.Policies(initPid)
				if err != nil {
					t.Fatal(err)
				}
				for _, p := range policies {
					if p != unix.SCHED_IDLE {
						t.Errorf("waiting init's thread policies %v, want all SCHED_IDLE (%d)", policies, unix.SCHED_IDLE)
						break
					}
				}
			}

			dir := t.TempDir()
			spec := Spec{
				Argv: []string{selfPath(t), "report", "a", "b"},
				Env:  []string{"FOO=bar", "PATH=/usr/bin:/bin"},
				Dir:  dir, StdoutPath: filepath.Join(dir, "stdout"), StderrPath: filepath.Join(dir, "stderr"),
			}
			p, err := l.Launch(context.Background(), spec)
			if err != nil {
				t.Fatal(err)
			}
			st, err := p.Wait(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if st.Code != 7 {
				t.Errorf("exit %s, want 7", st)
			}
			out, _ := os.ReadFile(spec.StdoutPath)
			errOut, _ := os.ReadFile(spec.StderrPath)
			// Warmed up while it waited, and back to normal scheduling.
			want := fmt.Sprintf("pid=%d\nargs=a b\nos_args=--spec-fd=3 --status-fd=4 --warm\nFOO=bar\nwd=%s\nmarker=\nwarmed=true\nidle_threads=0\n", initPid, dir)
			if string(out) != want || string(errOut) != "to stderr\n" {
				t.Errorf("stdout %q, want %q; stderr %q", out, want, errOut)
			}
			if p.Pid() != initPid {
				t.Errorf("process pid %d, want the prestarted init's %d", p.Pid(), initPid)
			}
			// Another binary is exec'ed as before.
			spec.Argv = []string{"/bin/sh", "-c", "echo $FOO from sh"}
			spec.StdoutPath = filepath.Join(dir, "stdout2")
			if p, err = l.Launch(context.Background(), spec); err != nil {
				t.Fatal(err)
			}
			if st, err := p.Wait(context.Background()); err != nil || st.Code != 0 {
				t.Fatalf("sh: %s %v", st, err)
			}
			if out, _ := os.ReadFile(spec.StdoutPath); string(out) != "bar from sh\n" {
				t.Errorf("sh stdout %q", out)
			}
		})
	}
}
