package fake_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/containerizer"
	"github.com/mesolite/mesolite/containerizer/containerizertest"
	"github.com/mesolite/mesolite/containerizer/fake"
	"github.com/mesolite/mesolite/errdefs"
	"google.golang.org/protobuf/proto"
)

// holdMark in an executor's command makes its launch block until
// cancelled (the suite's HoldLaunch).
const holdMark = " hold"

// suiteScript turns the suite's programs, written as the executor's
// command, into scripts: that is how a test tells the fake what to do
// through a LaunchSpec alone, as a Nomad job tells the mock driver.
func suiteScript(spec containerizer.LaunchSpec) fake.Script {
	cmd := spec.Executor.GetCommand().GetValue()
	var s fake.Script
	if strings.HasSuffix(cmd, holdMark) {
		s.LaunchBlocksUntil = make(chan struct{})
		cmd = strings.TrimSuffix(cmd, holdMark)
	}
	switch cmd {
	case containerizertest.ExitCode3.String():
		s.Exit, s.ExitCode = true, 3
	case containerizertest.ExceedMemory.String():
		s.OOM = true
	}
	return s
}

func suiteSpec(t *testing.T, id string, p containerizertest.Program) containerizer.LaunchSpec {
	return containerizer.LaunchSpec{
		ContainerID: id,
		Executor: &mesos.ExecutorInfo{ExecutorId: &mesos.ExecutorID{Value: proto.String(id)},
			Command: &mesos.CommandInfo{Value: proto.String(p.String())}},
		SandboxDir: t.TempDir(),
		Resources:  containerizertest.Resources(),
	}
}

func TestConformance(t *testing.T) {
	containerizertest.Run(t, func(t *testing.T) containerizer.Containerizer {
		return fake.New(fake.Options{Script: suiteScript})
	}, containerizertest.Options{
		Spec: suiteSpec,
		Restart: func(t *testing.T, old containerizer.Containerizer) containerizer.Containerizer {
			return old.(*fake.Fake).Restart()
		},
		MemoryLimits: true,
		Leftovers: func(t *testing.T, cz containerizer.Containerizer, id string) []string {
			if cz.(*fake.Fake).OnHost(id) {
				return []string{"container " + id}
			}
			return nil
		},
		HoldLaunch: func(t *testing.T, spec *containerizer.LaunchSpec) {
			spec.Executor.Command.Value = proto.String(spec.Executor.GetCommand().GetValue() + holdMark)
		},
	})
}

func spec(id string) containerizer.LaunchSpec {
	return containerizer.LaunchSpec{ContainerID: id, Executor: &mesos.ExecutorInfo{ExecutorId: &mesos.ExecutorID{Value: proto.String(id)}}}
}

func TestScripts(t *testing.T) {
	release := make(chan struct{})
	boom := errors.New("boom")
	scripts := map[string]fake.Script{
		"blocks":       {LaunchBlocksUntil: release},
		"fails":        {LaunchErr: boom},
		"destroy-errs": {DestroyErrs: 2},
	}
	f := fake.New(fake.Options{Script: func(s containerizer.LaunchSpec) fake.Script { return scripts[s.ContainerID] }})
	ctx := context.Background()

	t.Run("launch blocks until released", func(t *testing.T) {
		done := make(chan error, 1)
		go func() {
			_, err := f.Launch(ctx, spec("blocks"))
			done <- err
		}()
		for len(f.Launching()) == 0 {
			select {
			case err := <-done:
				t.Fatalf("Launch returned before its release: %v", err)
			default:
			}
		}
		close(release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if ids, _ := f.Containers(ctx); len(ids) != 1 || ids[0] != "blocks" {
			t.Fatalf("containers %v", ids)
		}
	})
	t.Run("launch error", func(t *testing.T) {
		if _, err := f.Launch(ctx, spec("fails")); !errors.Is(err, boom) {
			t.Fatalf("Launch: %v", err)
		}
		if _, err := f.Wait(ctx, "fails"); !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("Wait after a failed launch: %v", err)
		}
	})
	t.Run("manual exit and OOM", func(t *testing.T) {
		for _, id := range []string{"exit", "oom"} {
			if _, err := f.Launch(ctx, spec(id)); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Exit("exit", 7); err != nil {
			t.Fatal(err)
		}
		if err := f.OOMKill("oom"); err != nil {
			t.Fatal(err)
		}
		if term, _ := f.Wait(ctx, "exit"); term.ExitStatus != 7<<8 || term.Limitation {
			t.Errorf("exit: %+v", term)
		}
		if term, _ := f.Wait(ctx, "oom"); !term.Limitation || term.Reason != mesos.TaskStatus_REASON_CONTAINER_LIMITATION_MEMORY {
			t.Errorf("oom: %+v", term)
		}
	})
	t.Run("destroy fails twice", func(t *testing.T) {
		if _, err := f.Launch(ctx, spec("destroy-errs")); err != nil {
			t.Fatal(err)
		}
		for i := range 2 {
			if err := f.Destroy(ctx, "destroy-errs"); !errors.Is(err, errdefs.ErrUnavailable) {
				t.Fatalf("Destroy %d: %v, want a scripted failure", i+1, err)
			}
		}
		if ids, _ := f.Containers(ctx); len(ids) == 0 {
			t.Fatal("a failed Destroy killed the container")
		}
		if err := f.Destroy(ctx, "destroy-errs"); err != nil {
			t.Fatalf("third Destroy: %v", err)
		}
		calls := f.CallsOf("Destroy", "destroy-errs")
		if len(calls) != 3 || calls[0].Err == nil || calls[1].Err == nil || calls[2].Err != nil || !calls[2].Done {
			t.Fatalf("destroy calls %+v", calls)
		}
	})
}
