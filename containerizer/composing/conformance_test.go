package composing_test

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	mesosv1 "github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/containerizer"
	"github.com/mesolite/mesolite/containerizer/composing"
	"github.com/mesolite/mesolite/containerizer/containerizertest"
	"github.com/mesolite/mesolite/containerizer/fake"
	"github.com/mesolite/mesolite/containerizer/mesos"
	"github.com/mesolite/mesolite/isolation"
	"google.golang.org/protobuf/proto"
)

// The test binary doubles as the mesos containerizer's container init.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "launch" {
		os.Exit(isolation.InitMain(os.Args[2:]))
	}
	os.Exit(m.Run())
}

var scripts = map[containerizertest.Program]string{
	containerizertest.ExitCode3:      "exit 3",
	containerizertest.RunUntilKilled: "exec sleep 600",
	containerizertest.ExceedMemory:   "head -c 200m /dev/zero | tail",
}

// holdMark at the end of a command makes the fake's launch block.
const holdMark = " #hold"

// fakeScript plays the suite's programs, read from the executor command.
func fakeScript(spec containerizer.LaunchSpec) fake.Script {
	cmd := spec.Executor.GetCommand().GetValue()
	var s fake.Script
	if strings.HasSuffix(cmd, holdMark) {
		s.LaunchBlocksUntil = make(chan struct{})
		cmd = strings.TrimSuffix(cmd, holdMark)
	}
	switch cmd {
	case scripts[containerizertest.ExitCode3]:
		s.Exit, s.ExitCode = true, 3
	case scripts[containerizertest.ExceedMemory]:
		s.OOM = true
	}
	return s
}

// spec is a command executor; docker makes its ContainerInfo DOCKER, which
// the composing containerizer routes to the one named "docker" (here the
// fake).
func spec(docker bool) func(t *testing.T, id string, p containerizertest.Program) containerizer.LaunchSpec {
	return func(t *testing.T, id string, p containerizertest.Program) containerizer.LaunchSpec {
		dir := t.TempDir()
		ex := &mesosv1.ExecutorInfo{
			ExecutorId: &mesosv1.ExecutorID{Value: proto.String(id)},
			Command:    &mesosv1.CommandInfo{Value: proto.String(scripts[p])},
		}
		if docker {
			ex.Container = &mesosv1.ContainerInfo{Type: mesosv1.ContainerInfo_DOCKER.Enum(),
				Docker: &mesosv1.ContainerInfo_DockerInfo{Image: proto.String("fake")}}
		} else {
			ex.Container = &mesosv1.ContainerInfo{Type: mesosv1.ContainerInfo_MESOS.Enum()}
		}
		return containerizer.LaunchSpec{
			ContainerID: id,
			Executor:    ex,
			SandboxDir:  dir,
			Env:         []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
			Resources:   containerizertest.Resources(),
			StdoutPath:  filepath.Join(dir, "stdout"),
			StderrPath:  filepath.Join(dir, "stderr"),
		}
	}
}

// stack is one composing containerizer and the fake inside it.
type stack struct {
	mu    sync.Mutex
	fakes map[containerizer.Containerizer]*fake.Fake
}

func (s *stack) compose(t *testing.T, fk *fake.Fake) containerizer.Containerizer {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	mz, err := mesos.New(mesos.Options{Logger: log, RuntimeDir: filepath.Join(t.TempDir(), "containers")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mz.Close() })
	cz := composing.New(composing.Named{Name: "docker", Containerizer: fk}, composing.Named{Name: mesos.Name, Containerizer: mz})
	s.mu.Lock()
	s.fakes[cz] = fk
	s.mu.Unlock()
	return cz
}

func (s *stack) restart(t *testing.T, old containerizer.Containerizer) containerizer.Containerizer {
	s.mu.Lock()
	fk := s.fakes[old]
	s.mu.Unlock()
	return s.compose(t, fk.Restart())
}

func TestConformance(t *testing.T) {
	tests := []struct {
		name   string
		docker bool
	}{
		{"routed to mesos", false},
		{"routed to the fake as docker", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &stack{fakes: map[containerizer.Containerizer]*fake.Fake{}}
			opts := containerizertest.Options{Spec: spec(tt.docker), Restart: st.restart}
			if tt.docker {
				opts.MemoryLimits = true
				opts.HoldLaunch = func(t *testing.T, spec *containerizer.LaunchSpec) {
					spec.Executor.Command.Value = proto.String(spec.Executor.GetCommand().GetValue() + holdMark)
				}
			}
			containerizertest.Run(t, func(t *testing.T) containerizer.Containerizer {
				return st.compose(t, fake.New(fake.Options{Name: "docker", Script: fakeScript}))
			}, opts)
		})
	}
}
