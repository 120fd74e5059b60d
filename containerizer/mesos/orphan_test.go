package mesos_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mesolite/mesolite/containerizer"
	"github.com/mesolite/mesolite/containerizer/containerizertest"
	"github.com/mesolite/mesolite/containerizer/mesos"
	"github.com/mesolite/mesolite/internal/testutil"
	"github.com/mesolite/mesolite/isolation"
)

// TestRecoverKillsLaunchesCutOff is an agent that crashed after its
// containerizer started an executor and before it checkpointed the
// handle: the restarted agent recovers with no handle for that container.
// Its process, found by the pid file the launcher wrote first, is killed
// and its runtime files removed; a container the handles name is kept.
func TestRecoverKillsLaunchesCutOff(t *testing.T) {
	tests := []struct {
		name string
		opts func(t *testing.T) mesos.Options
	}{
		{"posix", func(*testing.T) mesos.Options { return mesos.Options{} }},
		{"pid namespace, through an init", func(t *testing.T) mesos.Options {
			testutil.RequireRoot(t)
			return mesos.Options{Isolation: isolation.Set(isolation.NamespacesPID),
				Isolator: isolation.Options{Launcher: isolation.LauncherLinux}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			opts := tt.opts(t)
			opts.Logger = quietLogger()
			opts.RuntimeDir = filepath.Join(t.TempDir(), "containers")
			first, err := mesos.New(opts)
			if err != nil {
				t.Fatal(err)
			}
			kept, err := first.Launch(ctx, Spec(t, "kept", containerizertest.RunUntilKilled))
			if err != nil {
				t.Fatal(err)
			}
			cutOff, err := first.Launch(ctx, Spec(t, "cut-off", containerizertest.RunUntilKilled))
			if err != nil {
				t.Fatal(err)
			}
			// The agent dies here: nothing of the first containerizer is
			// closed, only the kept container's handle was checkpointed.
			second, err := mesos.New(opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = second.Destroy(context.WithoutCancel(ctx), "kept") })
			if err := second.Recover(ctx, []containerizer.Handle{kept}); err != nil {
				t.Fatal(err)
			}
			// Killed, not yet reaped by the first containerizer (this
			// process is its parent): a zombie at most.
			t.Cleanup(func() { _ = syscall.Kill(-cutOff.Pid, syscall.SIGKILL) })
			testutil.Eventually(t, 5*time.Second, 20*time.Millisecond, func() bool { return !running(cutOff.Pid) },
				"the executor of the launch cut off (pid %d) gone after recovery", cutOff.Pid)
			if _, err := os.Stat(filepath.Join(opts.RuntimeDir, "cut-off")); !os.IsNotExist(err) {
				t.Errorf("runtime files of the launch cut off left: %v", err)
			}
			if !running(kept.Pid) {
				t.Fatalf("the recovered container's executor (pid %d) was killed", kept.Pid)
			}
			ids, _ := second.Containers(ctx)
			if len(ids) != 1 || ids[0] != "kept" {
				t.Fatalf("containers after recovery: %v, want [kept]", ids)
			}
			if err := second.Destroy(ctx, "kept"); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, 5*time.Second, 20*time.Millisecond, func() bool { return !running(kept.Pid) },
				"the kept container's executor (pid %d) gone once destroyed", kept.Pid)
		})
	}
}

// running says whether pid is a process that has not exited (a zombie
// has).
func running(pid int) bool {
	st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(st)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}

// TestRecoverRemovesAnEarlierAgentsStagingCgroups: on cgroup v1 the
// prestarted inits of an agent wait in staging cgroups; an agent that
// dies leaves them, and the next one's recovery kills what is in them and
// removes them, while its own staging cgroups stay.
func TestRecoverRemovesAnEarlierAgentsStagingCgroups(t *testing.T) {
	testutil.RequireRoot(t)
	if testutil.CgroupV2() {
		testutil.RequireCgroupV2(t)
	} else {
		testutil.RequireCgroupV1(t)
	}
	root := fmt.Sprintf("mesolite-czstaging-%d-%d", os.Getpid(), time.Now().UnixNano()%1e9)
	t.Cleanup(func() { removeCgroupRoot(t, root) })
	opts := mesos.Options{
		Logger:     quietLogger(),
		Isolation:  isolation.Set(isolation.CgroupsCPU) | isolation.Set(isolation.CgroupsMem),
		Isolator:   isolation.Options{CgroupsRoot: root},
		Launcher:   isolation.LauncherOptions{InitPath: helperInit(t), Prestart: 2},
		RuntimeDir: filepath.Join(t.TempDir(), "containers"),
	}
	staged := func() []string {
		var out []string
		for _, d := range cgroupsOf(root, "*") {
			if strings.HasPrefix(filepath.Base(d), isolation.StagingPrefix) && filepath.Dir(filepath.Dir(d)) == filepath.Join(isolation.DefaultCgroupsHierarchy, "memory") {
				out = append(out, filepath.Base(d))
			}
		}
		return out
	}
	first, err := mesos.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = first.Close() })
	if testutil.CgroupV2() {
		// v2 cannot rename a cgroup: no staging cgroups to leave.
		time.Sleep(time.Second)
		if s := staged(); len(s) != 0 {
			t.Fatalf("staging cgroups on cgroup v2: %v", s)
		}
		return
	}
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() bool { return len(staged()) == 2 },
		"two staging cgroups for the two prestarted inits (have %v)", staged())
	left := staged()
	// The first agent dies without closing anything; the next one starts.
	second, err := mesos.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = second.Close() })
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() bool { return len(staged()) == 4 },
		"the second's staging cgroups beside the first's (have %v)", staged())
	if err := second.Recover(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	now := staged()
	for _, id := range left {
		if slices.Contains(now, id) {
			t.Errorf("the dead agent's staging cgroup %s survived recovery (now %v)", id, now)
		}
	}
	if len(now) != 2 {
		t.Errorf("staging cgroups after recovery: %v, want the second's two", now)
	}
	// The second's prestarted inits still serve a launch.
	h, err := second.Launch(context.Background(), Spec(t, "after-recovery", containerizertest.ExitCode3))
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if term, err := second.Wait(wctx, h.ContainerID); err != nil || term.ExitStatus != 3<<8 {
		t.Fatalf("launch after recovery: %+v, %v", term, err)
	}
	_ = second.Destroy(context.Background(), h.ContainerID)
}
