package sandbox

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/internal/testutil"
)

func TestResolve(t *testing.T) {
	fx := newFixture(t)
	r := fx.resolver(nil)
	v := "/frameworks/fw1/executors/exec1/runs/c1"
	host := fx.layout.RunDir(fx.c1)
	hostLatest := filepath.Join(fx.layout.RunsDir(fx.agent, "fw1", "exec1"), LatestLink)

	tests := []struct {
		name    string
		path    string
		want    error  // nil: resolves and opens
		content string // for files that open
		cid     string
	}{
		{"virtual", v + "/stdout", nil, "hello\n", "c1"},
		{"latest", "/frameworks/fw1/executors/exec1/runs/latest/stdout", nil, "hello\n", "c1"},
		{"older run", "/frameworks/fw1/executors/exec1/runs/c0/stdout", nil, "old run\n", "c0"},
		{"host path", host + "/stdout", nil, "hello\n", "c1"},
		{"host latest", hostLatest + "/stdout", nil, "hello\n", "c1"},
		{"file uri", "file://" + v + "/stdout", nil, "hello\n", "c1"},
		{"double slashes and dots", "/frameworks//fw1/./executors/exec1/runs/c1//./stdout", nil, "hello\n", "c1"},
		{"trailing slash", v + "/sub/file.txt/", nil, "data", "c1"},
		{"link inside", v + "/inside", nil, "data", "c1"},
		{"link to subdir", v + "/subdir_link/file.txt", nil, "data", "c1"},
		{"other executor", "/frameworks/fw1/executors/exec2/runs/c2/stdout", nil, "other task\n", "c2"},

		{"dotdot to sibling run", v + "/../c0/stdout", errdefs.ErrForbidden, "", ""},
		{"dotdot that stays inside", v + "/sub/../stdout", errdefs.ErrForbidden, "", ""},
		{"dotdot in ids", "/frameworks/../frameworks/fw1/executors/exec1/runs/c1/stdout", errdefs.ErrForbidden, "", ""},
		{"dotdot as agent", fx.layout.SlavesDir() + "/../slaves/" + fx.agent + "/frameworks/fw1/executors/exec1/runs/c1/stdout", errdefs.ErrForbidden, "", ""},
		{"deep dotdot", v + "/../../../../../../../../../../etc/passwd", errdefs.ErrForbidden, "", ""},
		{"absolute symlink out", v + "/escape_abs", errdefs.ErrForbidden, "", ""},
		{"symlink to sibling run", v + "/escape_rel", errdefs.ErrForbidden, "", ""},
		{"symlink to other executor", v + "/escape_exec", errdefs.ErrForbidden, "", ""},
		{"forged latest", "/frameworks/fw1/executors/exec3/runs/latest/stdout", errdefs.ErrForbidden, "", ""},
		{"absolute latest out", "/frameworks/fw1/executors/exec4/runs/latest/secret", errdefs.ErrForbidden, "", ""},
		{"symlinked run dir", "/frameworks/fw1/executors/exec5/runs/c5/stdout", errdefs.ErrForbidden, "", ""},
		{"symlinked run dir via latest", "/frameworks/fw1/executors/exec5/runs/latest/stdout", errdefs.ErrForbidden, "", ""},

		{"missing file", v + "/nope", errdefs.ErrNotFound, "", ""},
		{"dangling link", v + "/dangling", errdefs.ErrNotFound, "", ""},
		{"link loop", v + "/loop", errdefs.ErrNotFound, "", ""},
		{"encoded dotdot is a name", v + "/%2e%2e/c0/stdout", errdefs.ErrNotFound, "", ""},
		{"below a file", v + "/stdout/x", errdefs.ErrNotFound, "", ""},
		{"missing run", "/frameworks/fw1/executors/exec1/runs/c9/stdout", errdefs.ErrNotFound, "", ""},
		{"missing executor latest", "/frameworks/fw1/executors/nope/runs/latest", errdefs.ErrNotFound, "", ""},
		{"runs listing", "/frameworks/fw1/executors/exec1/runs", errdefs.ErrNotFound, "", ""},
		{"not a sandbox path", "/etc/passwd", errdefs.ErrNotFound, "", ""},
		{"relative", "frameworks/fw1/executors/exec1/runs/c1/stdout", errdefs.ErrNotFound, "", ""},
		{"root", "/", errdefs.ErrNotFound, "", ""},
		{"other agent", fx.layout.SlavesDir() + "/agent-2/frameworks/fw1/executors/exec1/runs/c1/stdout", errdefs.ErrNotFound, "", ""},
		{"empty", "", errdefs.ErrInvalid, "", ""},
		{"nul byte", v + "/stdout\x00", errdefs.ErrInvalid, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := func() error {
				tg, err := r.Resolve(tt.path)
				if err != nil {
					return err
				}
				defer tg.Close()
				if tt.cid != "" && tg.ID.ContainerID != tt.cid {
					t.Errorf("container = %q, want %q", tg.ID.ContainerID, tt.cid)
				}
				f, err := tg.Open()
				if err != nil {
					return err
				}
				defer f.Close()
				b, err := io.ReadAll(f)
				if err != nil {
					return err
				}
				if string(b) != tt.content {
					t.Errorf("content = %q, want %q", b, tt.content)
				}
				return nil
			}()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Resolve(%q): %v", tt.path, err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Resolve(%q) = %v, want %v", tt.path, err, tt.want)
			}
			if strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), fx.outside) {
				t.Fatalf("error leaks the outside: %v", err)
			}
		})
	}
}

// TestResolveEscapeIs403 pins the os.Root error text classify relies on: if
// a Go release changes it, escapes would turn into 500s and this fails.
func TestResolveEscapeIs403(t *testing.T) {
	dir := t.TempDir()
	must(t, os.Symlink("/", filepath.Join(dir, "out")))
	root, err := os.OpenRoot(dir)
	must(t, err)
	defer root.Close()
	_, err = root.Open("out/etc")
	if err == nil {
		t.Fatal("os.Root followed a symlink out")
	}
	if got := classify(err, "x"); !errors.Is(got, errdefs.ErrForbidden) {
		t.Fatalf("classify(%v) = %v, want ErrForbidden", err, got)
	}
}

func TestResolveCollected(t *testing.T) {
	fx := newFixture(t)
	gone := fx.layout.RunDir(fx.c0)
	must(t, os.RemoveAll(gone))
	r := fx.resolver(func(p string) bool { return p == gone })
	_, err := r.Resolve("/frameworks/fw1/executors/exec1/runs/c0/stdout")
	if !errors.Is(err, errdefs.ErrGone) || !strings.Contains(err.Error(), "garbage collected") {
		t.Fatalf("got %v, want ErrGone saying garbage collected", err)
	}
	if errdefs.HTTPStatus(err) != 404 {
		t.Fatalf("status %d, want 404", errdefs.HTTPStatus(err))
	}
}

func TestLayout(t *testing.T) {
	l := Layout{WorkDir: "/var/lib/mesolite"}
	id := RunID{AgentID: "a", FrameworkID: "f", ExecutorID: "e", ContainerID: "c"}
	if got, want := l.RunDir(id), "/var/lib/mesolite/slaves/a/frameworks/f/executors/e/runs/c"; got != want {
		t.Fatalf("RunDir = %q, want %q", got, want)
	}
	if got, want := l.LatestLink("a", "f", "e"), "/var/lib/mesolite/slaves/a/frameworks/f/executors/e/runs/latest"; got != want {
		t.Fatalf("LatestLink = %q, want %q", got, want)
	}
	if got, want := id.VirtualPath(), "/frameworks/f/executors/e/runs/c"; got != want {
		t.Fatalf("VirtualPath = %q", got)
	}
	if got, want := VirtualLatestPath("f", "e"), "/frameworks/f/executors/e/runs/latest"; got != want {
		t.Fatalf("VirtualLatestPath = %q", got)
	}
	back, rest, err := l.ParseRunDir(l.RunDir(id) + "/sub/x")
	if err != nil || back != id || rest != "sub/x" {
		t.Fatalf("ParseRunDir = %v %q %v", back, rest, err)
	}
	if _, _, err := l.ParseRunDir("/var/lib/mesolite/slaves/a/frameworks/f"); !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("ParseRunDir of a short path: %v", err)
	}
}

func TestCreateRun(t *testing.T) {
	l := Layout{WorkDir: t.TempDir()}
	ids := []RunID{
		{AgentID: "a", FrameworkID: "f", ExecutorID: "e", ContainerID: "c1"},
		{AgentID: "a", FrameworkID: "f", ExecutorID: "e", ContainerID: "c2"},
	}
	for _, id := range ids {
		dir, err := l.CreateRun(id)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(dir)
		must(t, err)
		if fi.Mode().Perm() != RunDirMode {
			t.Fatalf("mode %v, want %v", fi.Mode().Perm(), RunDirMode)
		}
		for _, name := range []string{StdoutFile, StderrFile} {
			fi, err := os.Stat(filepath.Join(dir, name))
			if err != nil || fi.Size() != 0 {
				t.Fatalf("%s: %v size %d", name, err, fi.Size())
			}
		}
		target, err := os.Readlink(l.LatestLink("a", "f", "e"))
		must(t, err)
		if target != id.ContainerID {
			t.Fatalf("latest -> %q, want the bare %q", target, id.ContainerID)
		}
		got, err := l.Latest("a", "f", "e")
		if err != nil || got != id.ContainerID {
			t.Fatalf("Latest = %q, %v", got, err)
		}
	}
	// Idempotent: logs survive a second CreateRun.
	writeFile(t, filepath.Join(l.RunDir(ids[1]), StdoutFile), "kept")
	if _, err := l.CreateRun(ids[1]); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(l.RunDir(ids[1]), StdoutFile))
	if string(b) != "kept" {
		t.Fatalf("CreateRun truncated stdout: %q", b)
	}
	// No temporary links are left behind.
	entries, _ := os.ReadDir(l.RunsDir("a", "f", "e"))
	if len(entries) != 3 {
		t.Fatalf("runs dir has %d entries, want c1, c2, latest", len(entries))
	}
}

func TestValidateIDs(t *testing.T) {
	for _, tt := range []struct {
		id RunID
		ok bool
	}{
		{RunID{"a", "f", "e", "c"}, true},
		{RunID{"a", "f", "e", "latest"}, false},
		{RunID{"a", "f/x", "e", "c"}, false},
		{RunID{"a", "f", "..", "c"}, false},
		{RunID{"a", "f", "e", ""}, false},
		{RunID{"a\n", "f", "e", "c"}, false},
		{RunID{"a", "f", `e\x`, "c"}, false},
		{RunID{"a", "f", strings.Repeat("e", 256), "c"}, false},
	} {
		err := tt.id.Validate()
		if (err == nil) != tt.ok {
			t.Errorf("Validate(%+v) = %v, want ok=%v", tt.id, err, tt.ok)
		}
		if err != nil && !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("Validate error %v is not ErrInvalid", err)
		}
		if !tt.ok {
			if _, err := (Layout{WorkDir: t.TempDir()}).CreateRun(tt.id); err == nil {
				t.Errorf("CreateRun(%+v) accepted a bad id", tt.id)
			}
		}
	}
}

// FuzzResolve throws arbitrary paths at the resolver over the hostile
// fixture and checks the one property that matters: whatever opens is inside
// the run directory the resolver named, and that directory is a real run
// directory of the layout.
func FuzzResolve(f *testing.F) {
	fx := newFixture(f)
	r := fx.resolver(nil)
	realSlaves, err := filepath.EvalSymlinks(fx.layout.SlavesDir())
	if err != nil {
		f.Fatal(err)
	}
	v := "/frameworks/fw1/executors/exec1/runs/c1"
	for _, seed := range []string{
		v + "/stdout", v + "/escape_abs", v + "/escape_rel", v + "/escape_exec", v + "/inside",
		v + "/subdir_link/file.txt", v + "/../c0/stdout", v + "/loop", v + "/sub/",
		"/frameworks/fw1/executors/exec1/runs/latest/stdout",
		"/frameworks/fw1/executors/exec3/runs/latest/stdout",
		"/frameworks/fw1/executors/exec4/runs/latest/secret",
		"/frameworks/fw1/executors/exec5/runs/c5/stdout",
		fx.layout.RunDir(fx.c1) + "/stdout",
		fx.layout.SlavesDir() + "/" + fx.agent + "/frameworks/fw1/executors/exec2/runs/latest",
		"/etc/passwd", "", "/", "file:///frameworks/fw1/executors/exec1/runs/c1",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, p string) {
		tg, err := r.Resolve(p)
		if err != nil {
			return
		}
		defer tg.Close()
		if tg.RunDir != fx.layout.RunDir(tg.ID) {
			t.Fatalf("RunDir %q does not match id %+v", tg.RunDir, tg.ID)
		}
		realRun, err := filepath.EvalSymlinks(tg.RunDir)
		if err != nil {
			t.Fatalf("run dir %q: %v", tg.RunDir, err)
		}
		wantRun := filepath.Join(realSlaves, relRunDir(tg.ID))
		if realRun != wantRun {
			t.Fatalf("%q resolved to run dir %q, which is really %q", p, tg.RunDir, realRun)
		}
		file, err := tg.Open()
		if err != nil {
			return
		}
		defer file.Close()
		got, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(file.Fd())))
		if err != nil {
			testutil.Require(t, false, "test needs /proc")
		}
		if got != realRun && !strings.HasPrefix(got, realRun+"/") {
			t.Fatalf("%q opened %q, outside its run dir %q", p, got, realRun)
		}
	})
}

// TestResolverCacheRevalidates checks that a run directory kept open by the
// cache is dropped once removed: a symlink put in its place must not be
// served through the old entry, nor followed.
func TestResolverCacheRevalidates(t *testing.T) {
	fx := newFixture(t)
	r := fx.resolver(nil)
	defer r.Close()
	p := "/frameworks/fw1/executors/exec1/runs/c1/stdout"
	read := func() (string, error) {
		tg, err := r.Resolve(p)
		if err != nil {
			return "", err
		}
		defer tg.Close()
		f, err := tg.Open()
		if err != nil {
			return "", err
		}
		defer f.Close()
		b, err := io.ReadAll(f)
		return string(b), err
	}
	if got, err := read(); err != nil || got != "hello\n" {
		t.Fatalf("first read: %q %v", got, err)
	}
	dir := fx.layout.RunDir(fx.c1)
	must(t, os.RemoveAll(dir))
	if _, err := read(); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("after removal: %v", err)
	}
	must(t, os.Symlink("../../exec2/runs/c2", dir))
	if _, err := read(); !errors.Is(err, errdefs.ErrForbidden) {
		t.Fatalf("symlink in place of the run: %v", err)
	}
}

func TestRootCacheBounded(t *testing.T) {
	l := Layout{WorkDir: t.TempDir()}
	r := NewResolver(l, "a", nil)
	defer r.Close()
	for i := range rootCacheSize + 50 {
		id := RunID{AgentID: "a", FrameworkID: "f", ExecutorID: "e", ContainerID: "c" + strconv.Itoa(i)}
		if _, err := l.CreateRun(id); err != nil {
			t.Fatal(err)
		}
		tg, err := r.Resolve(id.VirtualPath() + "/stdout")
		if err != nil {
			t.Fatal(err)
		}
		must(t, tg.Close())
	}
	r.cache.mu.Lock()
	n := len(r.cache.entries)
	r.cache.mu.Unlock()
	if n > rootCacheSize {
		t.Fatalf("%d cached roots, bound %d", n, rootCacheSize)
	}
}
