package isolation

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/internal/testutil"
)

// nobody is the unprivileged user the nested tests place processes as.
const nobodyUID, nobodyGID = 65534, 65534

// placeAndRun starts script as nobody in the container's own cgroup (where
// the default executor's gate starts), where it moves itself into every
// procs file, as the executor places a task; "placed" on its stdout says
// it got there.
func placeAndRun(t *testing.T, parent *Cgroup, files []string, script string) (*exec.Cmd, *testutil.SyncBuffer) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", `read go; for f in $FILES; do echo $$ > "$f" || exit 9; done; echo placed; `+script)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Env = []string{"PATH=/usr/bin:/bin", "FILES=" + strings.Join(files, " ")}
	cmd.Dir = "/"
	out := &testutil.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobodyUID, Gid: nobodyGID}, Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() })
	if err := parent.AddProcess(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	return cmd, out
}

func nestedProcs(parent *Cgroup, id string) []string {
	var out []string
	for _, d := range parent.Dirs() {
		out = append(out, filepath.Join(d, id, "cgroup.procs"))
	}
	return out
}

// A task group's tasks each get a cgroup of their own below the executor's
// container: own limits, own OOM (the container and the sibling live on),
// placed by an unprivileged process only while delegated; the container's
// Kill and Delete take them all.
func TestNestedCgroups(t *testing.T) {
	version := requireCgroups(t)
	m := newTestManager(t, allCgroups, DefaultCgroupsHierarchy)
	ctx := testCtx(t, 60*time.Second)
	parent, err := m.CreateNestable(ctx, "pod", Limits{CPUs: 1, MemoryBytes: 512 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = parent.Kill(ctx); _ = parent.Delete(ctx) })
	parentOOM, err := parent.WatchOOM(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The container's own process (its executor).
	exe := exec.Command("sleep", "60")
	if err := exe.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = exe.Process.Kill(); _ = exe.Wait() })
	if err := parent.AddProcess(exe.Process.Pid); err != nil {
		t.Fatal(err)
	}

	hog, err := parent.CreateNested(ctx, "hog", Limits{CPUs: 0.5, MemoryBytes: 32 << 20})
	if err != nil {
		t.Fatal(err)
	}
	calm, err := parent.CreateNested(ctx, "calm", Limits{CPUs: 0.25, MemoryBytes: 48 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parent.CreateNested(ctx, "calm", Limits{}); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("second CreateNested of calm: %v, want a conflict", err)
	}
	if _, err := parent.CreateNested(ctx, "leaf", Limits{}); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("CreateNested of leaf: %v, want invalid", err)
	}
	if ids, err := parent.NestedIDs(); err != nil || !slices.Equal(ids, []string{"calm", "hog"}) {
		t.Errorf("NestedIDs = %v, %v", ids, err)
	}
	if st, err := calm.Stats(); err != nil || st.MemoryLimitBytes != 48<<20 {
		t.Errorf("calm's memory limit %d (%v), want 48 MB", st.MemoryLimitBytes, err)
	}

	// Not delegated: nobody cannot move in.
	denied, out := placeAndRun(t, parent, nestedProcs(parent, "calm"), "exit 0")
	if err := denied.Wait(); err == nil || strings.Contains(out.String(), "placed") {
		t.Fatalf("nobody placed itself in an undelegated cgroup: %v, %q", err, out)
	}

	for _, n := range []*Cgroup{hog, calm} {
		if err := n.Delegate(nobodyUID, nobodyGID); err != nil {
			t.Fatal(err)
		}
	}
	hogOOM, err := hog.WatchOOM(ctx)
	if err != nil {
		t.Fatal(err)
	}
	calmCmd, calmOut := placeAndRun(t, parent, nestedProcs(parent, "calm"), "exec sleep 60")
	testutil.Eventually(t, 5*time.Second, 10*time.Millisecond, func() bool { return strings.Contains(calmOut.String(), "placed") }, "calm placed itself")
	if err := calm.Seal(); err != nil {
		t.Fatal(err)
	}
	hogCmd, hogOut := placeAndRun(t, parent, nestedProcs(parent, "hog"), "head -c 268435456 /dev/zero | tail")
	err = hogCmd.Wait()
	if !strings.Contains(hogOut.String(), "placed") {
		t.Fatalf("hog did not place itself: %v, %q", err, hogOut)
	}
	select {
	case ev := <-hogOOM:
		if ev.ContainerID != "hog" || ev.LimitBytes != 32<<20 {
			t.Errorf("hog's OOM event %+v, want hog's 32 MB", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no OOM event for hog (it ended: %v, %q)", err, hogOut)
	}
	if st, err := hog.Stats(); err != nil || st.OOMKills == 0 {
		t.Errorf("hog's stats count no OOM kill: %+v, %v", st, err)
	}
	select {
	case ev := <-parentOOM:
		t.Errorf("the container saw its task's OOM as its own: %+v", ev)
	case <-time.After(500 * time.Millisecond):
	}
	if st, err := parent.Stats(); err != nil || st.OOMKills != 0 {
		t.Errorf("the container's stats count its task's OOM kill: %+v, %v", st, err)
	}
	if calmCmd.ProcessState != nil || syscall.Kill(calmCmd.Process.Pid, 0) != nil {
		t.Error("the sibling task died with the hog")
	}
	if pids, _ := parent.Processes(); len(pids) != 2 {
		t.Errorf("the container holds %v, want its executor and calm's sleep", pids)
	}

	// Sealed: even nobody's own process cannot move in again.
	again, out := placeAndRun(t, parent, nestedProcs(parent, "calm"), "exit 0")
	if err := again.Wait(); err == nil || strings.Contains(out.String(), "placed") {
		t.Errorf("nobody placed itself in a sealed cgroup: %v, %q", err, out)
	}
	// The executor's own cgroup is never nobody's to move into.
	var own []string
	for _, d := range parent.Dirs() {
		if version == 2 {
			d = filepath.Join(d, v2Leaf)
		}
		own = append(own, filepath.Join(d, "cgroup.procs"))
	}
	escape, out := placeAndRun(t, parent, own, "exit 0")
	if err := escape.Wait(); err == nil || strings.Contains(out.String(), "placed") {
		t.Errorf("nobody moved into the container's own cgroup: %v, %q", err, out)
	}

	if err := parent.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if err := parent.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	for _, d := range parent.Dirs() {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after Delete: %v", d, err)
		}
	}
}
