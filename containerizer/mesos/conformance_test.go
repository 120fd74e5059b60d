package mesos_test

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	mesosv1 "github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/containerizer"
	"github.com/mesolite/mesolite/containerizer/containerizertest"
	"github.com/mesolite/mesolite/containerizer/mesos"
	"github.com/mesolite/mesolite/internal/testutil"
	"github.com/mesolite/mesolite/isolation"
	"google.golang.org/protobuf/proto"
)

// The test binary doubles as the container init, as the agent binary does
// with `mesolite launch` (the launcher's default init is /proc/self/exe).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "launch" {
		os.Exit(isolation.InitMain(os.Args[2:]))
	}
	code := m.Run()
	if helper.dir != "" {
		os.RemoveAll(helper.dir)
	}
	os.Exit(code)
}

// helper is mesolite-executor, the init an agent with the helper beside
// it prestarts and runs its containers from: built once for the package,
// or named by MESOLITE_EXECUTOR_BINARY where no go command is (the
// cgroup v2 run in User-mode Linux).
var helper struct {
	once      sync.Once
	dir, path string
	err       error
}

func helperInit(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("MESOLITE_EXECUTOR_BINARY"); p != "" {
		return p
	}
	helper.once.Do(func() {
		if helper.dir, helper.err = os.MkdirTemp("", "mesolite-cz-helper"); helper.err != nil {
			return
		}
		helper.path = filepath.Join(helper.dir, "mesolite-executor")
		if out, err := exec.Command("go", "build", "-o", helper.path, "../../cmd/mesolite-executor").CombinedOutput(); err != nil {
			helper.err = fmt.Errorf("build mesolite-executor: %w\n%s", err, out)
		}
	})
	testutil.Require(t, helper.err == nil, fmt.Sprint(helper.err))
	return helper.path
}

// inits are the two inits an agent runs containers from: its own binary
// (here the test binary, through /proc/self/exe) started per launch, and
// mesolite-executor prestarted two ahead, as the agent runs it.
var inits = []struct {
	name     string
	launcher func(t *testing.T) isolation.LauncherOptions
}{
	{"self", func(*testing.T) isolation.LauncherOptions { return isolation.LauncherOptions{} }},
	{"mesolite-executor", func(t *testing.T) isolation.LauncherOptions {
		return isolation.LauncherOptions{InitPath: helperInit(t), Prestart: 2}
	}},
}

// scripts are the suite's programs as the executor's shell command; the
// same lines run under busybox in the docker suite.
var scripts = map[containerizertest.Program]string{
	containerizertest.ExitCode3:      "exit 3",
	containerizertest.RunUntilKilled: "exec sleep 600",
	// tail keeps a line without a newline whole: 200 MB of it.
	containerizertest.ExceedMemory: "head -c 200m /dev/zero | tail",
}

// Spec is the suite's spec for the mesos containerizer: a command executor
// running /bin/sh -c with the program's script.
func Spec(t *testing.T, id string, p containerizertest.Program) containerizer.LaunchSpec {
	dir := t.TempDir()
	return containerizer.LaunchSpec{
		ContainerID: id,
		Executor: &mesosv1.ExecutorInfo{
			ExecutorId: &mesosv1.ExecutorID{Value: proto.String(id)},
			Command:    &mesosv1.CommandInfo{Value: proto.String(scripts[p])},
		},
		SandboxDir: dir,
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin", "MESOS_DIRECTORY=" + dir},
		Resources:  containerizertest.Resources(),
		StdoutPath: filepath.Join(dir, "stdout"),
		StderrPath: filepath.Join(dir, "stderr"),
	}
}

func quietLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// instances makes containerizers for one run of the suite and restarts
// them with the same options, as an agent restart would.
type instances struct {
	mu   sync.Mutex
	opts map[containerizer.Containerizer]mesos.Options
}

func (in *instances) make(t *testing.T, opts mesos.Options) containerizer.Containerizer {
	t.Helper()
	cz, err := mesos.New(opts)
	if err != nil {
		t.Fatalf("mesos.New: %v", err)
	}
	// Its prestarted inits, and on cgroup v1 their staging cgroups, go
	// before the test's cgroup root does.
	t.Cleanup(func() { _ = cz.Close() })
	in.mu.Lock()
	in.opts[cz] = opts
	in.mu.Unlock()
	return cz
}

func (in *instances) restart(t *testing.T, old containerizer.Containerizer) containerizer.Containerizer {
	in.mu.Lock()
	opts := in.opts[old]
	in.mu.Unlock()
	return in.make(t, opts)
}

func TestConformancePosix(t *testing.T) {
	for _, init := range inits {
		t.Run(init.name, func(t *testing.T) {
			launcher := init.launcher(t)
			in := &instances{opts: map[containerizer.Containerizer]mesos.Options{}}
			containerizertest.Run(t, func(t *testing.T) containerizer.Containerizer {
				return in.make(t, mesos.Options{Logger: quietLogger(), Launcher: launcher,
					RuntimeDir: filepath.Join(t.TempDir(), "containers")})
			}, containerizertest.Options{Spec: Spec, Restart: in.restart})
		})
	}
}

// TestConformanceCgroups runs the suite with cgroups/cpu,mem,pids (and
// then a pid namespace too), under a cgroups root of its own that it
// removes at the end.
func TestConformanceCgroups(t *testing.T) {
	testutil.RequireRoot(t)
	if testutil.CgroupV2() {
		testutil.RequireCgroupV2(t)
	} else {
		testutil.RequireCgroupV1(t)
	}
	cgroups := isolation.Set(isolation.CgroupsCPU) | isolation.Set(isolation.CgroupsMem) | isolation.Set(isolation.CgroupsPids)
	tests := []struct {
		name string
		set  isolation.Set
	}{
		{"cgroups", cgroups},
		{"cgroups and pid namespace", cgroups | isolation.Set(isolation.NamespacesPID)},
	}
	for _, tt := range tests {
		for _, init := range inits {
			t.Run(tt.name+"/"+init.name, func(t *testing.T) {
				launcher := init.launcher(t)
				root := fmt.Sprintf("mesolite-cztest-%d-%d", os.Getpid(), time.Now().UnixNano()%1e9)
				t.Cleanup(func() { removeCgroupRoot(t, root) })
				in := &instances{opts: map[containerizer.Containerizer]mesos.Options{}}
				containerizertest.Run(t, func(t *testing.T) containerizer.Containerizer {
					return in.make(t, mesos.Options{
						Logger:     quietLogger(),
						Isolation:  tt.set,
						Isolator:   isolation.Options{CgroupsRoot: root, Launcher: isolation.LauncherLinux},
						Launcher:   launcher,
						RuntimeDir: filepath.Join(t.TempDir(), "containers"),
					})
				}, containerizertest.Options{Spec: Spec, Restart: in.restart, MemoryLimits: true,
					Leftovers: func(t *testing.T, _ containerizer.Containerizer, id string) []string {
						return cgroupsOf(root, id)
					}})
			})
		}
	}
}

// cgroupsOf lists the cgroups of container id under root, in every
// hierarchy.
func cgroupsOf(root, id string) []string {
	dirs, _ := filepath.Glob(filepath.Join(isolation.DefaultCgroupsHierarchy, "*", root, id))
	if _, err := os.Stat(filepath.Join(isolation.DefaultCgroupsHierarchy, root, id)); err == nil {
		dirs = append(dirs, filepath.Join(isolation.DefaultCgroupsHierarchy, root, id))
	}
	return dirs
}

// removeCgroupRoot removes root from every hierarchy; the containers'
// cgroups under it are gone already (every container was destroyed).
func removeCgroupRoot(t *testing.T, root string) {
	dirs, _ := filepath.Glob(filepath.Join(isolation.DefaultCgroupsHierarchy, "*", root))
	dirs = append(dirs, filepath.Join(isolation.DefaultCgroupsHierarchy, root))
	for _, d := range dirs {
		if err := os.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("remove cgroup %s: %v", d, err)
		}
	}
}
