package isolation

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mesolite/mesolite/internal/idle"
	"github.com/mesolite/mesolite/internal/testutil"
)

// The test binary doubles as the container init and as every executor the
// tests need, selected by environment variables, as the agent binary does
// with "mesolite launch".
const (
	initEnv = "MESOLITE_ISOLATION_TEST_INIT"
	modeEnv = "MESOLITE_ISOLATION_TEST_MODE"
)

func TestMain(m *testing.M) {
	switch os.Getenv(initEnv) {
	case "1":
		os.Exit(InitMain(os.Args[1:]))
	case "inprocess":
		os.Exit(RunInit(os.Args[1:], InitOptions{InProcess: func(argv []string) func() int {
			switch {
			case len(argv) < 2:
				return nil
			case argv[1] == "report":
				return func() int { return reportSelf(argv[2:]) }
			case argv[1] == "nsinfo":
				return func() int { return runMode("nsinfo", argv[2:]) }
			}
			return nil
		}, Warm: func() { warmed = true }}))
	}
	if mode := os.Getenv(modeEnv); mode != "" {
		os.Exit(runMode(mode, os.Args[1:]))
	}
	// Started as an executor (arguments, no flags) without the variable
	// that says which: never run the whole suite again, recursively.
	if len(os.Args) > 1 && !strings.HasPrefix(os.Args[1], "-") {
		fmt.Fprintf(os.Stderr, "isolation test binary run with arguments %q but neither %s nor %s set\n", os.Args[1:], initEnv, modeEnv)
		os.Exit(2)
	}
	// Daemons the tests orphan are adopted by this process, not by a pid 1
	// that may never reap them, and the tests reap them after Kill.
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	os.Exit(m.Run())
}

func runMode(mode string, args []string) int {
	self, _ := os.Executable()
	switch mode {
	case "exit":
		code, _ := strconv.Atoi(args[0])
		return code
	case "ids":
		groups, _ := os.Getgroups()
		fmt.Printf("%d %d %v\n", os.Getuid(), os.Getgid(), groups)
		return 0
	case "selfkill":
		_ = unix.Kill(os.Getpid(), unix.SIGKILL)
		sleepForever()
	case "alloc":
		// Allocate and touch args[0] MB, keeping every byte reachable.
		mb, _ := strconv.Atoi(args[0])
		var keep [][]byte
		for i := 0; i < mb; i++ {
			b := make([]byte, 1<<20)
			for j := 0; j < len(b); j += 4096 {
				b[j] = 1
			}
			keep = append(keep, b)
		}
		fmt.Printf("allocated %d MB\n", len(keep))
		return 0
	case "forkbomb":
		for {
			cmd := exec.Command(self)
			cmd.Env = os.Environ()
			if err := cmd.Start(); err != nil {
				time.Sleep(5 * time.Millisecond)
			}
		}
	case "nsinfo":
		ns, _ := os.Readlink("/proc/self/ns/pid")
		host, _ := os.Hostname()
		var pids []string
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			if _, err := strconv.Atoi(e.Name()); err == nil {
				pids = append(pids, e.Name())
			}
		}
		// The memory cgroup this process is in: the v1 memory line, or v2's.
		// (A hybrid host lists both; the v1 line is the one that counts.)
		memcg, unified := "", ""
		cgs, _ := os.ReadFile("/proc/self/cgroup")
		for _, line := range strings.Split(strings.TrimSpace(string(cgs)), "\n") {
			f := strings.SplitN(line, ":", 3)
			switch {
			case len(f) < 3:
			case slices.Contains(strings.Split(f[1], ","), "memory"):
				memcg = f[2]
			case f[1] == "":
				unified = f[2]
			}
		}
		if memcg == "" {
			memcg = unified
		}
		policies, _ := idle.Policies(os.Getpid())
		fmt.Printf("pidns=%s\npid=%d\nppid=%d\nhostname=%s\nprocs=%s\nmemcg=%s\nidle_threads=%d\n", ns, os.Getpid(), os.Getppid(), host, strings.Join(pids, ","), memcg,
			len(slices.DeleteFunc(policies, func(p int) bool { return p != unix.SCHED_IDLE })))
		return 0
	case "trap":
		c := make(chan os.Signal, 1)
		signal.Notify(c, unix.SIGTERM)
		fmt.Println("ready")
		<-c
		return 42
	case "daemon":
		// Double fork: the middle process starts a session leader and exits,
		// leaving the leaf to be adopted outside our process tree.
		cmd := exec.Command(self)
		cmd.Env = append(os.Environ(), modeEnv+"=daemon-mid")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "daemon-mid:", err)
			return 1
		}
		return 0
	case "daemon-mid":
		cmd := exec.Command(self)
		cmd.Env = append(os.Environ(), modeEnv+"=daemon-leaf")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			return 1
		}
		return 0
	case "daemon-leaf":
		p := os.Getenv("PIDFILE")
		_ = os.WriteFile(p+".tmp", []byte(strconv.Itoa(os.Getpid())), 0o644)
		_ = os.Rename(p+".tmp", p)
		sleepForever()
	}
	fmt.Fprintln(os.Stderr, "unknown mode", mode)
	return 2
}

// sleepForever blocks without tripping the runtime's deadlock detector,
// which a bare select{} in a process with no other goroutine does.
func sleepForever() {
	for {
		time.Sleep(time.Hour)
	}
}

func selfPath(t testing.TB) string {
	t.Helper()
	p, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// testLauncherOptions start the test binary as init.
func testLauncherOptions(t testing.TB) LauncherOptions {
	return LauncherOptions{InitPath: selfPath(t), InitArgs: []string{}, InitEnv: []string{initEnv + "=1"}}
}

// modeSpec runs the test binary in mode with args.
func modeSpec(t testing.TB, mode string, args ...string) Spec {
	t.Helper()
	return Spec{
		Argv: append([]string{selfPath(t)}, args...),
		Env:  []string{modeEnv + "=" + mode, "GOMAXPROCS=1", "PATH=/usr/bin:/bin"},
		Dir:  t.TempDir(),
	}
}

// requireCgroups needs root and a cgroup v1 or v2 host, and returns the version.
func requireCgroups(t testing.TB) int {
	t.Helper()
	testutil.RequireRoot(t)
	if testutil.CgroupV2() {
		testutil.RequireCgroupV2(t)
		return 2
	}
	testutil.RequireCgroupV1(t)
	return 1
}

// newTestManager makes a Manager under a root cgroup of its own and removes
// everything it made when the test ends.
func newTestManager(t testing.TB, set Set, hier string) *Manager {
	t.Helper()
	opts := Options{
		CgroupsRoot:      fmt.Sprintf("mesolite-test-%d-%d", os.Getpid(), time.Now().UnixNano()%1e9),
		CgroupsHierarchy: hier,
	}
	m, err := NewManager(opts, set)
	if err != nil {
		t.Fatalf("NewManager: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		ids, _ := m.List()
		for _, id := range ids {
			if cg, err := m.Load(id); err == nil {
				_ = cg.Kill(ctx)
				_ = cg.Delete(ctx)
			}
		}
		if m.Version() == 1 {
			for _, c := range m.ctrls {
				_ = unix.Rmdir(filepath.Join(hier, c, m.Root()))
			}
		} else {
			_ = unix.Rmdir(filepath.Join(hier, m.Root()))
		}
	})
	return m
}

// cgroupFile is the path of a control file of container id.
func cgroupFile(m *Manager, id, ctrl, file string) string {
	if m.Version() == 1 {
		return filepath.Join(m.opts.CgroupsHierarchy, ctrl, m.Root(), id, file)
	}
	return filepath.Join(m.opts.CgroupsHierarchy, m.Root(), id, file)
}

func readFileT(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return strings.TrimSpace(string(b))
}

// dead reports whether pid is gone or a zombie nobody reaped yet.
func dead(pid int) bool {
	_, state, ok := procStat(pid)
	return !ok || state == 'Z' || state == 'X'
}

func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func sortedInts(s []int) []int {
	out := append([]int(nil), s...)
	sort.Ints(out)
	return out
}

// reportSelf is the in-process executor of TestInProcessExecutor: it
// writes what it sees of its process to stdout.
// warmed is set by InitOptions.Warm in an init started ahead.
var warmed bool

func reportSelf(args []string) int {
	wd, _ := os.Getwd()
	policies, _ := idle.Policies(os.Getpid())
	idle := 0
	for _, p := range policies {
		if p == unix.SCHED_IDLE {
			idle++
		}
	}
	fmt.Printf("pid=%d\nargs=%s\nos_args=%s\nFOO=%s\nwd=%s\nmarker=%s\nwarmed=%v\nidle_threads=%d\n",
		os.Getpid(), strings.Join(args, " "), strings.Join(os.Args[1:], " "), os.Getenv("FOO"), wd, os.Getenv(initEnv), warmed, idle)
	fmt.Fprintln(os.Stderr, "to stderr")
	return 7
}
