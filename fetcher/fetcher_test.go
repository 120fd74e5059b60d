package fetcher

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mesolite/mesolite/artifactsrv"
	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/internal/testutil"
)

func TestURIExtractDefaultsToTrue(t *testing.T) {
	var u URI
	if err := json.Unmarshal([]byte(`{"value":"http://x/a.tgz"}`), &u); err != nil {
		t.Fatal(err)
	}
	if !u.Extract || !NewURI("x").Extract {
		t.Fatal("extract must default to true as in Mesos")
	}
	if err := json.Unmarshal([]byte(`{"value":"x","extract":false}`), &u); err != nil || u.Extract {
		t.Fatalf("explicit false lost: %+v %v", u, err)
	}
}

func TestFetchExecutable(t *testing.T) {
	o := newOrigin(t)
	content := bytes.Repeat([]byte("#!/bin/sh\necho hi\n"), 1000)
	o.put("bin/tool", content)
	o.put("bin/tool.tgz", gz(t, makeTar(t, []tarEntry{{name: "inner", body: "x"}})))
	l := newLayout(t)
	log, err := runFetch(t, childOptions(t, Config{}), Request{SandboxDir: l.sandbox, URIs: []URI{
		{Value: o.url("bin/tool"), Executable: true, Extract: true},
		// Executable wins over extract: the archive stays an archive.
		{Value: o.url("bin/tool.tgz"), Executable: true, Extract: true},
	}})
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	p := filepath.Join(l.sandbox, "tool")
	if got := readFile(t, p); got != string(content) {
		t.Fatal("bytes differ")
	}
	if m := modeOf(t, p).Perm(); m != 0o755 {
		t.Fatalf("mode %o, want 755", m)
	}
	if m := modeOf(t, filepath.Join(l.sandbox, "tool.tgz")).Perm(); m != 0o755 {
		t.Fatalf("tool.tgz mode %o", m)
	}
	if _, err := os.Stat(filepath.Join(l.sandbox, "inner")); err == nil {
		t.Fatal("an executable URI was extracted")
	}
	for _, want := range []string{"fetching URI", "downloaded", fmt.Sprintf("bytes=%d", len(content)), "fetched all URIs"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	l.assertNothingOutside(t)
}

func TestFetchTarGzPreservesModes(t *testing.T) {
	o := newOrigin(t)
	o.put("app.tar.gz", gz(t, makeTar(t, []tarEntry{
		{name: "app/", typ: tar.TypeDir, mode: 0o750},
		{name: "app/run.sh", body: "#!/bin/sh\n", mode: 0o750},
		{name: "app/conf", body: "k=v\n", mode: 0o600},
		{name: "app/suid", body: "x", mode: 0o4755},
		{name: "app/sgid", body: "x", mode: 0o2711},
		{name: "app/current", typ: tar.TypeSymlink, linkname: "run.sh"},
		{name: "app/hard", typ: tar.TypeLink, linkname: "app/conf"},
	})))
	l := newLayout(t)
	log, err := runFetch(t, childOptions(t, Config{}), Request{SandboxDir: l.sandbox, URIs: []URI{NewURI(o.url("app.tar.gz"))}})
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	tests := []struct {
		path string
		mode fs.FileMode
	}{
		{"app", fs.ModeDir | 0o750},
		{"app/run.sh", 0o750},
		{"app/conf", 0o600},
		{"app/suid", 0o755},
		{"app/sgid", 0o711},
		{"app/current", fs.ModeSymlink | 0o777},
		// Mesos keeps the archive when fetching without the cache.
		{"app.tar.gz", 0o644},
	}
	for _, tt := range tests {
		if got := modeOf(t, filepath.Join(l.sandbox, tt.path)); got != tt.mode {
			t.Errorf("%s: mode %v, want %v", tt.path, got, tt.mode)
		}
	}
	if got := readFile(t, filepath.Join(l.sandbox, "app/current")); got != "#!/bin/sh\n" {
		t.Errorf("symlink reads %q", got)
	}
	if !strings.Contains(log, "extracted archive") || !strings.Contains(log, "entries=7") {
		t.Errorf("log lacks the extraction:\n%s", log)
	}
}

func TestArchiveDetection(t *testing.T) {
	o := newOrigin(t)
	tgz := gz(t, makeTar(t, []tarEntry{{name: "from-archive", body: "ok"}}))
	o.put("x.tgz", tgz)
	o.put("download", tgz)
	o.put("lib.jar", makeZip(t, []zipEntry{{name: "META-INF/MANIFEST.MF", body: "Manifest-Version: 1.0\n"}}))
	o.put("data.gz", gz(t, []byte("plain data")))
	o.put("b.zip", makeZip(t, []zipEntry{{name: "z/in-zip", body: "zz"}}))
	tests := []struct {
		name  string
		uri   URI
		files []string
		gone  []string
	}{
		{"query string does not hide .tgz", NewURI(o.url("x.tgz") + "?op=OPEN&user.name=hdfs"), []string{"from-archive", "x.tgz"}, nil},
		{"magic bytes without extension", NewURI(o.url("download")), []string{"from-archive", "download"}, nil},
		{"jar stays a jar", NewURI(o.url("lib.jar")), []string{"lib.jar"}, []string{"META-INF"}},
		{"single gz", NewURI(o.url("data.gz")), []string{"data", "data.gz"}, nil},
		{"zip", NewURI(o.url("b.zip")), []string{"z/in-zip"}, nil},
		{"extract=false", URI{Value: o.url("x.tgz")}, []string{"x.tgz"}, []string{"from-archive"}},
		{"output_file names the type", URI{Value: o.url("download"), Extract: true, OutputFile: "pkg.tar.gz"}, []string{"from-archive", "pkg.tar.gz"}, nil},
		{"gz renamed by output_file", URI{Value: o.url("data.gz"), Extract: true, OutputFile: "sub/blob"}, []string{"sub/blob", "data"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLayout(t)
			log, err := runFetch(t, childOptions(t, Config{}), Request{SandboxDir: l.sandbox, URIs: []URI{tt.uri}})
			if err != nil {
				t.Fatalf("%v\n%s", err, log)
			}
			for _, f := range tt.files {
				if _, err := os.Stat(filepath.Join(l.sandbox, f)); err != nil {
					t.Errorf("missing %s (have %v)", f, l.sandboxFiles(t))
				}
			}
			for _, f := range tt.gone {
				if _, err := os.Stat(filepath.Join(l.sandbox, f)); err == nil {
					t.Errorf("%s should not exist", f)
				}
			}
		})
	}
	if got := readFile(t, filepath.Join(newLayoutFetch(t, o, NewURI(o.url("data.gz"))), "data")); got != "plain data" {
		t.Fatalf("gunzipped %q", got)
	}
}

func newLayoutFetch(t *testing.T, o *origin, u URI) string {
	t.Helper()
	l := newLayout(t)
	if log, err := runFetch(t, childOptions(t, Config{}), Request{SandboxDir: l.sandbox, URIs: []URI{u}}); err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	return l.sandbox
}

func TestOutputFile(t *testing.T) {
	o := newOrigin(t)
	o.put("a.bin", []byte("content"))
	l := newLayout(t)
	log, err := runFetch(t, childOptions(t, Config{}), Request{SandboxDir: l.sandbox, URIs: []URI{
		{Value: o.url("a.bin"), OutputFile: "sub/dir/renamed.bin"},
	}})
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	if got := readFile(t, filepath.Join(l.sandbox, "sub/dir/renamed.bin")); got != "content" {
		t.Fatalf("got %q", got)
	}

	refused := []struct {
		out   string
		class error
	}{
		{filepath.Join(l.outside, "abs.bin"), errdefs.ErrInvalid},
		{"../escape.bin", errdefs.ErrForbidden},
		{"sub/../../escape.bin", errdefs.ErrForbidden},
	}
	for _, tt := range refused {
		t.Run(tt.out, func(t *testing.T) {
			_, err := runFetch(t, childOptions(t, Config{}), Request{SandboxDir: l.sandbox, URIs: []URI{{Value: o.url("a.bin"), OutputFile: tt.out}}})
			var ue *URIError
			if !errors.As(err, &ue) || ue.URI != o.url("a.bin") || !errors.Is(err, tt.class) {
				t.Fatalf("got %v, want a URIError for %s wrapping %v", err, o.url("a.bin"), tt.class)
			}
			if !strings.Contains(err.Error(), "output_file") {
				t.Fatalf("error does not say why: %v", err)
			}
		})
	}
	l.assertNothingOutside(t)
}

func writeScript(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
}

// fakeHadoop is a hadoop_home whose bin/hadoop answers `version` and
// `fs -copyToLocal SRC DST` by copying from a local directory standing in
// for HDFS, as Mesos's own fetcher tests do.
func fakeHadoop(t *testing.T) (home, hdfsRoot string) {
	t.Helper()
	home = filepath.Join(t.TempDir(), "hadoop")
	hdfsRoot = t.TempDir()
	writeScript(t, filepath.Join(home, "bin", "hadoop"), fmt.Sprintf(`
if [ "$1" = version ]; then echo "Hadoop 2.10.2"; exit 0; fi
if [ "$1" = fs ] && [ "$2" = -copyToLocal ]; then
  path=$(echo "$3" | sed -e 's#^[a-z0-9]*://[^/]*##')
  exec cp "%s$path" "$4"
fi
echo "unexpected: $*" >&2
exit 2
`, hdfsRoot))
	return home, hdfsRoot
}

func TestHadoop(t *testing.T) {
	home, hdfsRoot := fakeHadoop(t)
	if err := os.MkdirAll(filepath.Join(hdfsRoot, "apps"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hdfsRoot, "apps", "job.jar"), []byte("jar bytes"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hdfsRoot, "apps", "bundle.tgz"), gz(t, makeTar(t, []tarEntry{{name: "bundled", body: "b"}})), 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("hadoop_home", func(t *testing.T) {
		l := newLayout(t)
		log, err := runFetch(t, childOptions(t, Config{HadoopHome: home}), Request{SandboxDir: l.sandbox, URIs: []URI{
			NewURI("hdfs://namenode:8020/apps/job.jar"),
			NewURI("s3n://bucket/apps/bundle.tgz"),
			{Value: "s3://bucket/apps/job.jar", OutputFile: "from-s3.jar"},
			{Value: "s3a://bucket/apps/job.jar", OutputFile: "from-s3a.jar"},
			{Value: "gs://bucket/apps/job.jar", OutputFile: "from-gs.jar"},
		}})
		if err != nil {
			t.Fatalf("%v\n%s", err, log)
		}
		for _, name := range []string{"job.jar", "from-s3.jar", "from-s3a.jar", "from-gs.jar"} {
			if got := readFile(t, filepath.Join(l.sandbox, name)); got != "jar bytes" {
				t.Fatalf("%s = %q", name, got)
			}
		}
		if got := readFile(t, filepath.Join(l.sandbox, "bundled")); got != "b" {
			t.Fatalf("bundled = %q", got)
		}
		if !strings.Contains(log, "via=hadoop") {
			t.Errorf("log does not say the Hadoop client fetched:\n%s", log)
		}
	})
	t.Run("HADOOP_HOME", func(t *testing.T) {
		l := newLayout(t)
		_, err := runFetch(t, childOptions(t, Config{}, "HADOOP_HOME="+home), Request{SandboxDir: l.sandbox, URIs: []URI{NewURI("hdfs:///apps/job.jar")}})
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		l := newLayout(t)
		_, err := runFetch(t, childOptions(t, Config{HadoopHome: home}), Request{SandboxDir: l.sandbox, URIs: []URI{NewURI("hdfs:///apps/nope.jar")}})
		if err == nil || !strings.Contains(err.Error(), "copyToLocal") {
			t.Fatalf("got %v", err)
		}
	})
	// The cloud schemes go-getter v1 served (s3) and the ones Hadoop's
	// connectors serve (s3a, gs) all reach the Hadoop client, and say so
	// when there is none.
	for _, uri := range []string{
		"hdfs://namenode/apps/job.jar",
		"s3://bucket/apps/job.jar",
		"s3a://bucket/apps/job.jar",
		"gs://bucket/apps/job.jar",
	} {
		t.Run("no client installed/"+uri, func(t *testing.T) {
			l := newLayout(t)
			opts := childOptions(t, Config{})
			opts.Env = []string{childEnv + "=1", "PATH=" + t.TempDir()}
			_, err := runFetch(t, opts, Request{SandboxDir: l.sandbox, URIs: []URI{NewURI(uri)}})
			if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "no Hadoop client installed") {
				t.Fatalf("got %v", err)
			}
			if !strings.Contains(err.Error(), uri) {
				t.Fatalf("error does not name the URI: %v", err)
			}
		})
	}
	t.Run("hadoop_home without client", func(t *testing.T) {
		l := newLayout(t)
		_, err := runFetch(t, childOptions(t, Config{HadoopHome: t.TempDir()}), Request{SandboxDir: l.sandbox, URIs: []URI{NewURI("hdfs:///apps/job.jar")}})
		if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "no Hadoop client at") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("broken client", func(t *testing.T) {
		broken := filepath.Join(t.TempDir(), "hadoop")
		writeScript(t, filepath.Join(broken, "bin", "hadoop"), "echo 'JAVA_HOME is not set' >&2; exit 1\n")
		l := newLayout(t)
		_, err := runFetch(t, childOptions(t, Config{HadoopHome: broken}), Request{SandboxDir: l.sandbox, URIs: []URI{NewURI("hdfs:///apps/job.jar")}})
		if err == nil || !strings.Contains(err.Error(), "JAVA_HOME is not set") || !strings.Contains(err.Error(), "not usable") {
			t.Fatalf("got %v", err)
		}
	})
}

// TestGoGetterCloudFormsRefused: go-getter v1's s3:: and gcs:: forms needed
// the cloud SDKs mesolite no longer links. They fail before any download,
// name the way to fetch instead, and never show their access keys.
func TestGoGetterCloudFormsRefused(t *testing.T) {
	home, _ := fakeHadoop(t)
	tests := []struct {
		value string
		want  []string
	}{
		{"s3::https://s3.amazonaws.com/bucket/app.tgz?aws_access_key_id=AKIDEXAMPLE&aws_access_key_secret=SECRETKEY",
			[]string{"s3::", "Hadoop", "presigned https://"}},
		{"gcs::https://www.googleapis.com/storage/v1/bucket/app.tgz", []string{"gcs::", "gs://", "signed https://"}},
		{"gcs://bucket/app.tgz", []string{"gcs://", "gs://"}},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			l := newLayout(t)
			log, err := runFetch(t, childOptions(t, Config{HadoopHome: home}), Request{SandboxDir: l.sandbox, URIs: []URI{NewURI(tt.value)}})
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
			if strings.Contains(err.Error()+log, "SECRETKEY") {
				t.Errorf("the access key was shown:\n%v\n%s", err, log)
			}
			if strings.Contains(tt.value, "SECRETKEY") && !strings.Contains(log, "aws_access_key_secret=redacted") {
				t.Errorf("log does not show the refused URI redacted:\n%s", log)
			}
			if files := l.sandboxFiles(t); len(files) != 0 {
				t.Fatalf("sandbox holds %v", files)
			}
		})
	}
}

func TestHostileArchivesThroughChild(t *testing.T) {
	o := newOrigin(t)
	base := t.TempDir()
	victim := filepath.Join(base, "victim")
	tests := []struct {
		name    string
		archive []byte
		class   error
		reason  string
	}{
		{"dotdot", gz(t, makeTar(t, []tarEntry{{name: "ok", body: "fine"}, {name: "../../victim", body: "pwned"}})), errdefs.ErrForbidden, "escapes"},
		{"absolute", gz(t, makeTar(t, []tarEntry{{name: victim, body: "pwned"}})), errdefs.ErrForbidden, "absolute"},
		{"symlink then write through", gz(t, makeTar(t, []tarEntry{
			{name: "link", typ: tar.TypeSymlink, linkname: base},
			{name: "link/victim", body: "pwned"},
		})), errdefs.ErrForbidden, "points outside"},
		{"relative symlink then write through", gz(t, makeTar(t, []tarEntry{
			{name: "link", typ: tar.TypeSymlink, linkname: "../.."},
			{name: "link/victim", body: "pwned"},
		})), errdefs.ErrForbidden, "points outside"},
		{"hard link out", gz(t, makeTar(t, []tarEntry{{name: "h", typ: tar.TypeLink, linkname: "../../etc/passwd"}})), errdefs.ErrForbidden, "escapes"},
		{"device", gz(t, makeTar(t, []tarEntry{{name: "dev", typ: tar.TypeChar}})), errdefs.ErrForbidden, "device"},
		{"bomb", gz(t, makeTar(t, []tarEntry{{name: "zeros", size: 64 << 20}})), errdefs.ErrInvalid, "decompresses to more than"},
		{"zip bomb", makeZip(t, []zipEntry{{name: "zeros", size: 64 << 20}}), errdefs.ErrInvalid, "decompresses to more than"},
		{"zip dotdot", makeZip(t, []zipEntry{{name: "../victim", body: "pwned"}}), errdefs.ErrForbidden, "escapes"},
	}
	cfg := Config{MaxExtractBytes: 1 << 20}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := fmt.Sprintf("evil%d.tgz", i)
			if strings.HasPrefix(tt.name, "zip") {
				name = fmt.Sprintf("evil%d.zip", i)
			}
			o.put(name, tt.archive)
			sandbox := filepath.Join(base, "sandbox"+fmt.Sprint(i))
			if err := os.Mkdir(sandbox, 0o755); err != nil {
				t.Fatal(err)
			}
			log, err := runFetch(t, childOptions(t, cfg), Request{SandboxDir: sandbox, URIs: []URI{NewURI(o.url(name))}})
			if !errors.Is(err, tt.class) || !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("got %v, want %v mentioning %q", err, tt.class, tt.reason)
			}
			if !strings.Contains(log, "failed to fetch URI") {
				t.Errorf("sandbox log lacks the reason:\n%s", log)
			}
			if _, err := os.Lstat(victim); err == nil {
				t.Fatal("victim written outside the sandbox")
			}
			// The extraction is rolled back; only the archive (kept as in Mesos) remains.
			ents, _ := os.ReadDir(sandbox)
			for _, e := range ents {
				if e.Name() != name {
					t.Errorf("left in the sandbox after a failed extraction: %s", e.Name())
				}
			}
		})
	}
	ents, _ := os.ReadDir(base)
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "sandbox") {
			t.Errorf("written outside: %s", e.Name())
		}
	}
}

func TestFrameworksHome(t *testing.T) {
	base := t.TempDir()
	home := filepath.Join(base, "frameworks")
	if err := os.MkdirAll(filepath.Join(home, "pkg"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, "pkg", "app.bin"), []byte("app"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(base, "secret"), []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(base, "secret"), filepath.Join(home, "pkg", "link")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		cfg   Config
		value string
		class error
	}{
		{"relative under home", Config{FrameworksHome: home}, "pkg/app.bin", nil},
		{"dotdot", Config{FrameworksHome: home}, "../secret", errdefs.ErrForbidden},
		{"deep dotdot", Config{FrameworksHome: home}, "pkg/../../secret", errdefs.ErrForbidden},
		{"symlink out", Config{FrameworksHome: home}, "pkg/link", errdefs.ErrForbidden},
		{"no frameworks_home", Config{}, "pkg/app.bin", errdefs.ErrInvalid},
		{"absolute path", Config{}, filepath.Join(home, "pkg", "app.bin"), nil},
		{"file URI", Config{}, "file://" + filepath.Join(home, "pkg", "app.bin"), nil},
		{"absolute symlink source refused", Config{}, filepath.Join(home, "pkg", "link"), errdefs.ErrForbidden},
		{"missing", Config{FrameworksHome: home}, "pkg/none", errdefs.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLayout(t)
			_, err := runFetch(t, childOptions(t, tt.cfg), Request{SandboxDir: l.sandbox, URIs: []URI{NewURI(tt.value)}})
			if tt.class == nil {
				if err != nil {
					t.Fatal(err)
				}
				if got := readFile(t, filepath.Join(l.sandbox, "app.bin")); got != "app" {
					t.Fatalf("got %q", got)
				}
				return
			}
			if !errors.Is(err, tt.class) {
				t.Fatalf("got %v, want %v", err, tt.class)
			}
			if files := l.sandboxFiles(t); len(files) != 0 {
				t.Fatalf("sandbox holds %v", files)
			}
		})
	}
}

func TestStallTimeout(t *testing.T) {
	o := newOrigin(t)
	l := newLayout(t)
	start := time.Now()
	_, err := runFetch(t, childOptions(t, Config{StallTimeout: 300 * time.Millisecond}), Request{SandboxDir: l.sandbox, URIs: []URI{NewURI(o.url("stall/big.bin"))}})
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "fetcher_stall_timeout") {
		t.Fatalf("got %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("stall detected after %s", d)
	}
	if files := l.sandboxFiles(t); len(files) != 0 {
		t.Fatalf("partial download left: %v", files)
	}
}

func TestWholeFetchTimeout(t *testing.T) {
	o := newOrigin(t)
	l := newLayout(t)
	opts := childOptions(t, Config{StallTimeout: -1})
	opts.Timeout = 500 * time.Millisecond
	var log testutil.SyncBuffer
	err := RunChild(context.Background(), opts, Request{SandboxDir: l.sandbox, URIs: []URI{NewURI(o.url("stall/big.bin"))}}, &log)
	var ue *URIError
	if !errors.As(err, &ue) || ue.URI != o.url("stall/big.bin") || !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("got %v", err)
	}
	if !strings.Contains(log.String(), "timed out") {
		t.Fatalf("sandbox log does not say the fetch timed out:\n%s", log.String())
	}
	if files := l.sandboxFiles(t); len(files) != 0 {
		t.Fatalf("the killed fetch left %v", files)
	}
}

func TestChildCrash(t *testing.T) {
	l := newLayout(t)
	stats := &Stats{}
	opts := childOptions(t, Config{}, crashEnv+"=1")
	opts.Stats = stats
	_, err := runFetch(t, opts, Request{SandboxDir: l.sandbox, URIs: []URI{NewURI("http://127.0.0.1:1/a.bin")}})
	var ue *URIError
	if !errors.As(err, &ue) || ue.URI != "http://127.0.0.1:1/a.bin" || !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("got %v", err)
	}
	if !strings.Contains(err.Error(), "simulated fetcher crash") {
		t.Fatalf("error lacks the child's last words: %v", err)
	}
	if stats.Failed() != 1 || stats.Succeeded() != 0 {
		t.Fatalf("stats %d/%d", stats.Succeeded(), stats.Failed())
	}
}

func TestChecksum(t *testing.T) {
	o := newOrigin(t)
	o.put("c.bin", []byte("checked"))
	sum := sha256.Sum256([]byte("checked"))
	good := hex.EncodeToString(sum[:])
	tests := []struct {
		name  string
		query string
		class error
	}{
		{"sha256 match", "checksum=sha256:" + good, nil},
		{"bare sha256 match", "checksum=" + good, nil},
		{"md5 match", "checksum=md5:3793ea52a7be2d7deafd858fda50775c", nil},
		{"md5 mismatch", "checksum=md5:ec8d1db7b45bf4f9e0d6c54d1a5e2a5a", errdefs.ErrInvalid},
		{"mismatch", "checksum=sha256:" + strings.Repeat("0", 64), errdefs.ErrInvalid},
		{"malformed", "checksum=sha256:xyz", errdefs.ErrInvalid},
		{"file form refused", "checksum=file:http://x/SHA256SUMS", errdefs.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLayout(t)
			_, err := runFetch(t, childOptions(t, Config{}), Request{SandboxDir: l.sandbox, URIs: []URI{NewURI(o.url("c.bin") + "?a=1&" + tt.query)}})
			if tt.class == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tt.class) {
				t.Fatalf("got %v, want %v", err, tt.class)
			}
			if files := l.sandboxFiles(t); len(files) != 0 {
				t.Fatalf("a file that failed its checksum is in the sandbox: %v", files)
			}
		})
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, q := range o.queries {
		if strings.Contains(q, "checksum") {
			t.Fatalf("checksum= was sent to the server: %q", q)
		}
		if q != "a=1" {
			t.Fatalf("query altered: %q", q)
		}
	}
}

func TestHTTPErrorsNameTheURI(t *testing.T) {
	o := newOrigin(t)
	o.put("ok.bin", []byte("ok"))
	l := newLayout(t)
	stats := &Stats{}
	opts := childOptions(t, Config{})
	opts.Stats = stats
	_, err := runFetch(t, opts, Request{SandboxDir: l.sandbox, URIs: []URI{NewURI(o.url("ok.bin")), NewURI(o.url("missing.bin"))}})
	var ue *URIError
	if !errors.As(err, &ue) || ue.URI != o.url("missing.bin") || !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("got %v", err)
	}
	if !strings.Contains(err.Error(), "404") {
		t.Fatalf("error lacks the status: %v", err)
	}
	if _, err := runFetch(t, opts, Request{SandboxDir: l.sandbox, URIs: []URI{NewURI(o.url("ok.bin"))}}); err != nil {
		t.Fatal(err)
	}
	if stats.Succeeded() != 1 || stats.Failed() != 1 {
		t.Fatalf("stats %d/%d", stats.Succeeded(), stats.Failed())
	}
	for _, v := range []string{"ftp://host/x", "http://x/a'b", "nope::http://x/y"} {
		if _, err := runFetch(t, opts, Request{SandboxDir: l.sandbox, URIs: []URI{NewURI(v)}}); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("%s: got %v", v, err)
		}
	}
}

// TestHTTPSizeLimit: MaxDownloadBytes holds whether or not the server sends
// a Content-Length.
func TestHTTPSizeLimit(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := 2000
		if r.URL.Path == "/exact.bin" {
			n = 1000
		}
		if r.URL.Path == "/sized.bin" {
			w.Header().Set("Content-Length", fmt.Sprint(n))
		}
		w.WriteHeader(http.StatusOK)
		// Two writes with a flush between: no Content-Length, chunked.
		_, _ = w.Write(bytes.Repeat([]byte("x"), n/2))
		w.(http.Flusher).Flush()
		_, _ = w.Write(bytes.Repeat([]byte("x"), n-n/2))
	}))
	defer ts.Close()
	tests := []struct {
		path  string
		class error
	}{
		{"/sized.bin", errdefs.ErrInvalid},
		{"/chunked.bin", errdefs.ErrInvalid},
		{"/exact.bin", nil},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			l := newLayout(t)
			_, err := runFetch(t, childOptions(t, Config{MaxDownloadBytes: 1000}), Request{SandboxDir: l.sandbox, URIs: []URI{NewURI(ts.URL + tt.path)}})
			if tt.class == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tt.class) || !strings.Contains(err.Error(), "over the limit") {
				t.Fatalf("got %v, want %v over the limit", err, tt.class)
			}
			if files := l.sandboxFiles(t); len(files) != 0 {
				t.Fatalf("sandbox holds %v", files)
			}
		})
	}
}

func TestHTTPTransportErrorRedacted(t *testing.T) {
	l := newLayout(t)
	_, err := runFetch(t, childOptions(t, Config{}), Request{SandboxDir: l.sandbox, URIs: []URI{
		NewURI("http://127.0.0.1:1/a.bin?X-Amz-Credential=AKID&X-Amz-Signature=SIGSECRET"),
	}})
	var ue *URIError
	if !errors.As(err, &ue) || !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("got %v", err)
	}
	if strings.Contains(err.Error(), "SIGSECRET") || !strings.Contains(ue.URI, "X-Amz-Signature=redacted") {
		t.Fatalf("signature shown: %v", err)
	}
}

// TestLocalCopyModes: a local file keeps its permission bits less group and
// other write, never its set-id bits; anything but a regular file is refused
// without blocking on it.
func TestLocalCopyModes(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		mode  fs.FileMode
		want  fs.FileMode
		class error
	}{
		{"tool", 0o755, 0o755, nil},
		{"private", 0o600, 0o600, nil},
		{"shared", 0o666, 0o644, nil},
		{"setuid", 0o755 | fs.ModeSetuid, 0o755, nil},
		{"fifo", 0, 0, errdefs.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := filepath.Join(dir, tt.name)
			if tt.class == nil {
				if err := os.WriteFile(src, []byte("x"), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(src, tt.mode); err != nil {
					t.Fatal(err)
				}
			}
			l := newLayout(t)
			_, err := runFetch(t, childOptions(t, Config{}), Request{SandboxDir: l.sandbox, URIs: []URI{NewURI(src)}})
			if tt.class != nil {
				if !errors.Is(err, tt.class) {
					t.Fatalf("got %v, want %v", err, tt.class)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := modeOf(t, filepath.Join(l.sandbox, tt.name)); got != tt.want {
				t.Fatalf("mode %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFromArtifactServer(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "svc.tgz"), gz(t, makeTar(t, []tarEntry{{name: "svc/bin", body: "binary", mode: 0o755}})), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, err := artifactsrv.New(artifactsrv.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ts := httptest.NewServer(srv)
	defer ts.Close()

	cfg := Config{CacheDir: t.TempDir(), CacheSize: DefaultCacheSize}
	for i := range 2 {
		l := newLayout(t)
		log, err := runFetch(t, childOptions(t, cfg), Request{SandboxDir: l.sandbox, URIs: []URI{{Value: ts.URL + "/svc.tgz", Extract: true, Cache: true}}})
		if err != nil {
			t.Fatalf("%v\n%s", err, log)
		}
		if m := modeOf(t, filepath.Join(l.sandbox, "svc/bin")).Perm(); m != 0o755 {
			t.Fatalf("mode %o", m)
		}
		if i == 1 && !strings.Contains(log, "304 Not Modified") {
			t.Fatalf("second fetch did not revalidate with the artifact server's ETag:\n%s", log)
		}
	}
	if got := counter(t, srv, "artifactsrv_http_requests_total", "304"); got != 1 {
		t.Fatalf("artifact server answered %v 304s, want 1", got)
	}
}

func counter(t *testing.T, srv *artifactsrv.Server, name, code string) float64 {
	t.Helper()
	mfs, err := srv.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "code" && lp.GetValue() == code {
					v += m.GetCounter().GetValue()
				}
			}
		}
	}
	return v
}

// openUp lets other users traverse p and its parents below the temp dir
// (t.TempDir makes them 0700).
func openUp(t *testing.T, p string) {
	t.Helper()
	for d := p; d != os.TempDir() && d != "/" && d != "."; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, fi.Mode().Perm()|0o055); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFetchAsTaskUser(t *testing.T) {
	testutil.RequireRoot(t)
	u, err := user.Lookup("nobody")
	testutil.Require(t, err == nil, "test needs the user nobody")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The child must be able to run the binary as nobody.
	binDir := t.TempDir()
	bin := filepath.Join(binDir, "fetcher.test")
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	openUp(t, binDir)

	o := newOrigin(t)
	o.put("a.bin", []byte("as nobody"))
	l := newLayout(t)
	cacheDir := filepath.Join(l.base, "cache")
	openUp(t, l.sandbox)
	opts := childOptions(t, Config{CacheDir: cacheDir, CacheSize: DefaultCacheSize})
	opts.Binary = bin
	// A child waiting in the pool runs as root: the fetch must not take it.
	opts.Pool = NewChildPool(opts, 1)
	t.Cleanup(func() { opts.Pool.Close() })
	opts.Pool.Fill()
	waiting := idleChild(t, opts.Pool)
	log, err := runFetch(t, opts, Request{SandboxDir: l.sandbox, User: "nobody", URIs: []URI{cachedURI(o.url("a.bin"))}})
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	if still := idleChild(t, opts.Pool); still != waiting {
		t.Errorf("the pool's root child %d was taken for a fetch as nobody", waiting)
	}
	fi, err := os.Stat(filepath.Join(l.sandbox, "a.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if uid := fmt.Sprint(fi.Sys().(*syscall.Stat_t).Uid); uid != u.Uid {
		t.Fatalf("fetched file owned by uid %s, want nobody (%s)", uid, u.Uid)
	}
	if _, err := os.Stat(filepath.Join(cacheDir, "users", "nobody", "index.json")); err != nil {
		t.Fatalf("per-user cache not used: %v", err)
	}
}

func gitRepo(t *testing.T, files map[string]string, links map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{
		{"init", "-q", "-b", "main"},
		{"add", "."},
		{"-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "-m", "init"},
	} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
	}
	return dir
}

func TestFetchGitCheckout(t *testing.T) {
	_, err := exec.LookPath("git")
	testutil.Require(t, err == nil, "test needs git (Debian package git)")
	good := gitRepo(t, map[string]string{"README": "hello"}, map[string]string{"inside": "README"})
	evil := gitRepo(t, map[string]string{"README": "x"}, map[string]string{"passwd": "/etc/passwd"})
	l := newLayout(t)
	log, err := runFetch(t, childOptions(t, Config{}), Request{SandboxDir: l.sandbox, URIs: []URI{NewURI("git::file://" + good)}})
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	if got := readFile(t, filepath.Join(l.sandbox, "repo", "inside")); got != "hello" {
		t.Fatalf("checkout: %q", got)
	}
	l = newLayout(t)
	_, err = runFetch(t, childOptions(t, Config{}), Request{SandboxDir: l.sandbox, URIs: []URI{{Value: "git::file://" + evil, OutputFile: "evil"}}})
	if !errors.Is(err, errdefs.ErrForbidden) || !strings.Contains(err.Error(), "pointing outside") {
		t.Fatalf("got %v", err)
	}
	if files := l.sandboxFiles(t); len(files) != 0 {
		t.Fatalf("sandbox holds %v", files)
	}
}

// TestFetchGitRefAndSubdir clones a local bare repository (no network) at a
// tag and a subdirectory of it, through go-getter's ref= and //subdir.
func TestFetchGitRefAndSubdir(t *testing.T) {
	_, err := exec.LookPath("git")
	testutil.Require(t, err == nil, "test needs git (Debian package git)")
	work := gitRepo(t, map[string]string{"README": "v1"}, nil)
	gitIn := func(dir string, args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-c", "user.email=t@example.com", "-c", "user.name=t"}, args...)...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
	}
	gitIn(work, "tag", "v1")
	if err := os.MkdirAll(filepath.Join(work, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "README"), []byte("v2"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "sub", "conf"), []byte("in sub"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitIn(work, "add", ".")
	gitIn(work, "commit", "-q", "-m", "v2")
	bare := filepath.Join(t.TempDir(), "app.git")
	gitIn(work, "clone", "-q", "--bare", work, bare)

	tests := []struct {
		name  string
		uri   URI
		file  string
		want  string
		extra string // a file that must not be there
	}{
		{"default branch", NewURI("git::file://" + bare), "app/README", "v2", ""},
		{"tag", NewURI("git::file://" + bare + "?ref=v1"), "app/README", "v1", "app/sub"},
		{"subdir", URI{Value: "git::file://" + bare + "//sub", OutputFile: "conf.d"}, "conf.d/conf", "in sub", "conf.d/README"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLayout(t)
			log, err := runFetch(t, childOptions(t, Config{}), Request{SandboxDir: l.sandbox, URIs: []URI{tt.uri}})
			if err != nil {
				t.Fatalf("%v\n%s", err, log)
			}
			if got := readFile(t, filepath.Join(l.sandbox, tt.file)); got != tt.want {
				t.Fatalf("%s = %q, want %q", tt.file, got, tt.want)
			}
			if tt.extra != "" {
				if _, err := os.Lstat(filepath.Join(l.sandbox, tt.extra)); err == nil {
					t.Fatalf("%s is in the sandbox", tt.extra)
				}
			}
			if !strings.Contains(log, "via=git") {
				t.Errorf("log does not say git fetched:\n%s", log)
			}
		})
	}
}
