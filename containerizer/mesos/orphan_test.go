package mesos_test

import (
	"context"
	"os"
	"path/filepath"
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
