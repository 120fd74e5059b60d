package sandbox

import (
	"os"
	"path/filepath"
	"testing"
)

// fixture is a work directory with a few sandboxes, some of them hostile:
//
//	fw1/exec1/runs/c0     an older run
//	fw1/exec1/runs/c1     latest; stdout "hello\n", sub/file.txt, and links:
//	                      escape_abs -> <outside>/secret, escape_rel -> ../c0/stdout,
//	                      escape_exec -> ../../../exec2/runs/c2/stdout, inside -> sub/file.txt,
//	                      subdir_link -> sub, loop -> loop, dangling -> nope
//	fw1/exec2/runs/c2     another task: stdout "other task\n"
//	fw1/exec3/runs/latest -> ../../exec2/runs/c2        (forged)
//	fw1/exec4/runs/latest -> <outside>                   (absolute, out)
//	fw1/exec5/runs/c5     -> ../../exec2/runs/c2         (a symlinked run directory)
type fixture struct {
	work    string
	outside string
	layout  Layout
	agent   string
	c0, c1  RunID
	c2      RunID
}

const fixtureAgent = "agent-1"

func newFixture(t testing.TB) *fixture {
	t.Helper()
	base := t.TempDir()
	fx := &fixture{
		work:    filepath.Join(base, "work"),
		outside: filepath.Join(base, "outside"),
		agent:   fixtureAgent,
	}
	fx.layout = Layout{WorkDir: fx.work}
	fx.c0 = RunID{AgentID: fx.agent, FrameworkID: "fw1", ExecutorID: "exec1", ContainerID: "c0"}
	fx.c1 = RunID{AgentID: fx.agent, FrameworkID: "fw1", ExecutorID: "exec1", ContainerID: "c1"}
	fx.c2 = RunID{AgentID: fx.agent, FrameworkID: "fw1", ExecutorID: "exec2", ContainerID: "c2"}

	must(t, os.MkdirAll(fx.outside, 0o755))
	writeFile(t, filepath.Join(fx.outside, "secret"), "SECRET\n")

	for _, id := range []RunID{fx.c0, fx.c1, fx.c2} {
		if _, err := fx.layout.CreateRun(id); err != nil {
			t.Fatal(err)
		}
	}
	c0 := fx.layout.RunDir(fx.c0)
	c1 := fx.layout.RunDir(fx.c1)
	c2 := fx.layout.RunDir(fx.c2)
	writeFile(t, filepath.Join(c0, "stdout"), "old run\n")
	writeFile(t, filepath.Join(c1, "stdout"), "hello\n")
	writeFile(t, filepath.Join(c2, "stdout"), "other task\n")
	must(t, os.MkdirAll(filepath.Join(c1, "sub"), 0o755))
	writeFile(t, filepath.Join(c1, "sub", "file.txt"), "data")
	for name, target := range map[string]string{
		"escape_abs":  filepath.Join(fx.outside, "secret"),
		"escape_rel":  "../c0/stdout",
		"escape_exec": "../../../exec2/runs/c2/stdout",
		"inside":      "sub/file.txt",
		"subdir_link": "sub",
		"loop":        "loop",
		"dangling":    "nope",
	} {
		must(t, os.Symlink(target, filepath.Join(c1, name)))
	}

	for exec, target := range map[string]string{
		"exec3": "../../exec2/runs/c2",
		"exec4": fx.outside,
	} {
		runs := fx.layout.RunsDir(fx.agent, "fw1", exec)
		must(t, os.MkdirAll(runs, 0o755))
		must(t, os.Symlink(target, filepath.Join(runs, LatestLink)))
	}
	runs5 := fx.layout.RunsDir(fx.agent, "fw1", "exec5")
	must(t, os.MkdirAll(runs5, 0o755))
	must(t, os.Symlink("../../exec2/runs/c2", filepath.Join(runs5, "c5")))
	must(t, os.Symlink("c5", filepath.Join(runs5, LatestLink)))
	return fx
}

func (fx *fixture) resolver(collected func(string) bool) *Resolver {
	return NewResolver(fx.layout, fx.agent, collected)
}

func writeFile(t testing.TB, p, content string) {
	t.Helper()
	must(t, os.WriteFile(p, []byte(content), 0o644))
	must(t, os.Chmod(p, 0o644))
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
