package isolation

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/internal/testutil"
)

// TestPrestartedInitAdoptsItsStagingCgroup: on cgroup v1 a prestarted
// init (with the process it starts ahead, in a pid namespace) waits in a
// staging cgroup; its launch gives the container that cgroup, renamed,
// with the container's limits, instead of moving the processes; the
// executor runs in the container's cgroup in every hierarchy, the staging
// cgroup is gone, and closing the launcher removes the refilled one. On
// v2, which cannot rename a cgroup, Staging says it cannot.
func TestPrestartedInitAdoptsItsStagingCgroup(t *testing.T) {
	if requireCgroups(t) == 2 {
		m := newTestManager(t, allCgroups, DefaultCgroupsHierarchy)
		if _, err := m.Staging(testCtx(t, 10*time.Second)); !errors.Is(err, errdefs.ErrInvalid) {
			t.Fatalf("Staging on cgroup v2: %v, want an error wrapping ErrInvalid", err)
		}
		return
	}
	ctx := testCtx(t, 30*time.Second)
	m := newTestManager(t, allCgroups, DefaultCgroupsHierarchy)
	opts := testLauncherOptions(t)
	opts.Prestart = 1
	opts.Staging = m.Staging
	l := NewLinuxLauncher(opts)
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = l.Close()
		}
	})
	ns := NamespacePID | NamespaceMount
	l.Prestart(ns)
	waitPrestarted(t, l.pool, ns)
	ids, err := m.List()
	if err != nil || len(ids) != 1 || !m.OwnStaging(ids[0]) {
		t.Fatalf("cgroups with one init prestarted: %v (%v), want one staging cgroup of this manager", ids, err)
	}
	staging := ids[0]

	cg, err := m.Create(ctx, "adopter", Limits{MemoryBytes: 128 << 20, Pids: 50})
	if err != nil {
		t.Fatal(err)
	}
	launchInCgroup(ctx, t, l, ns, cg, m.Root()+"/adopter")
	if b, err := os.ReadFile(filepath.Join(DefaultCgroupsHierarchy, "memory", m.Root(), "adopter", "memory.limit_in_bytes")); err != nil || strings.TrimSpace(string(b)) != "134217728" {
		t.Fatalf("the adopted cgroup's memory limit: %q (%v), want 134217728", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(DefaultCgroupsHierarchy, "pids", m.Root(), "adopter", "pids.max")); err != nil || strings.TrimSpace(string(b)) != "50" {
		t.Fatalf("the adopted cgroup's pids.max: %q (%v), want 50", b, err)
	}
	if ids, _ := m.List(); slices.Contains(ids, staging) {
		t.Fatalf("staging cgroup %s still there after its adoption: %v", staging, ids)
	}
	if err := cg.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if err := cg.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	// The pool refills, into a new staging cgroup; Close removes it.
	waitPrestarted(t, l.pool, ns)
	closed = true
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() bool {
		ids, _ := m.List()
		return len(ids) == 0
	}, "no cgroup left once the launcher closed")
}

// TestCloseWaitsForInitsStarting closes a launcher while its pool is still
// starting inits: once Close returns no init of the pool is left, not even
// unreaped, and no staging cgroup (on the earlier code the starting inits
// finished after Close and removed their staging cgroups later, so that a
// cgroups root removed right after Close was still busy).
func TestCloseWaitsForInitsStarting(t *testing.T) {
	v := requireCgroups(t)
	m := newTestManager(t, allCgroups, DefaultCgroupsHierarchy)
	opts := testLauncherOptions(t)
	opts.Prestart = 3
	if v == 1 { // v2 has no staging cgroups: the inits alone
		opts.Staging = m.Staging
	}
	before, err := childPids(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	l := NewLinuxLauncher(opts)
	ns := NamespacePID | NamespaceMount
	l.Prestart(ns)
	// Closed once the pool's inits run, before they are all up.
	testutil.Eventually(t, 10*time.Second, 100*time.Microsecond, func() bool {
		kids, _ := childPids(os.Getpid())
		return len(kids) > len(before)
	}, "an init of the pool started")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	after, err := childPids(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for _, pid := range after {
		if !slices.Contains(before, pid) {
			t.Errorf("process %d, started by the pool, still there after Close", pid)
		}
	}
	if ids, err := m.List(); err != nil || len(ids) != 0 {
		t.Errorf("cgroups after Close: %v (%v), want none", ids, err)
	}
}

// TestStagingAdoptFallsBack: when a staging cgroup cannot become the
// container's (here the container's cgroup is not empty, so it cannot be
// replaced), the launch moves the init's processes into the container's
// cgroup as without staging, says so in the log, and the staging cgroup is
// gone once the launcher closed.
func TestStagingAdoptFallsBack(t *testing.T) {
	if requireCgroups(t) == 2 {
		t.Skip("staging cgroups are cgroup v1's")
	}
	ctx := testCtx(t, 30*time.Second)
	m := newTestManager(t, allCgroups, DefaultCgroupsHierarchy)
	logs := &testutil.SyncBuffer{}
	opts := testLauncherOptions(t)
	opts.Prestart = 1
	opts.Staging = m.Staging
	opts.Logger = slog.New(slog.NewTextHandler(logs, nil))
	l := NewLinuxLauncher(opts)
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = l.Close()
		}
	})
	ns := NamespacePID | NamespaceMount
	l.Prestart(ns)
	waitPrestarted(t, l.pool, ns)

	cg, err := m.Create(ctx, "occupied", Limits{MemoryBytes: 128 << 20, Pids: 50})
	if err != nil {
		t.Fatal(err)
	}
	sleeper := exec.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() })
	if err := cg.AddProcess(sleeper.Process.Pid); err != nil {
		t.Fatal(err)
	}
	launchInCgroup(ctx, t, l, ns, cg, m.Root()+"/occupied")
	if !strings.Contains(logs.String(), "staging cgroup could not become the container's") {
		t.Errorf("the fallback is not logged:\n%s", logs)
	}
	closed = true
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	ids, err := m.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if m.OwnStaging(id) {
			t.Errorf("staging cgroup %s left after the launcher closed", id)
		}
	}
	_ = sleeper.Process.Kill()
	_ = sleeper.Wait()
	if err := cg.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if err := cg.Delete(ctx); err != nil {
		t.Fatal(err)
	}
}

// launchInCgroup launches an executor in namespaces ns and cgroup cg with
// l, waits for it, and checks it ran in memory cgroup memcg.
func launchInCgroup(ctx context.Context, t *testing.T, l *LinuxLauncher, ns Namespaces, cg *Cgroup, memcg string) {
	t.Helper()
	spec := modeSpec(t, "nsinfo")
	spec.Namespaces = ns
	spec.Cgroup = cg
	spec.StdoutPath = filepath.Join(spec.Dir, "stdout")
	p, err := l.Launch(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := p.Wait(ctx); err != nil || st.Code != 0 {
		t.Fatalf("executor: %v, %v", st, err)
	}
	out, _ := os.ReadFile(spec.StdoutPath)
	if !strings.Contains(string(out), "memcg="+memcg+"\n") {
		t.Fatalf("executor's memory cgroup, want %s:\n%s", memcg, out)
	}
}
