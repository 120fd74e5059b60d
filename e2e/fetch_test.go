package e2e

import (
	"archive/tar"
	"compress/gzip"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/internal/testutil"
)

// The classic Mesos flow: executors and archives served by the bundled
// artifact server, fetched into sandboxes, run from there.
func TestArtifactServerFetchFlow(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "example-executor")
	if out, err := exec.Command("go", "build", "-o", exe, "../examples/executor").CombinedOutput(); err != nil {
		t.Fatalf("build example executor: %v\n%s", err, out)
	}
	writeTarGz(t, filepath.Join(dir, "scripts.tar.gz"), map[string]string{"scripts/hello.sh": "#!/bin/sh\necho hello from the archive\n"})
	if err := os.WriteFile(filepath.Join(dir, "big.bin"), make([]byte, 3<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	port := testutil.FreePort(t)
	srv := start(t, "artifacts", "artifacts", "serve", "--dir="+dir, "--ip=127.0.0.1", "--port="+strconv.Itoa(port))
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() bool {
		var v any
		return getJSONAccept(base+"/", &v) == nil
	}, "artifact server up:\n%s", srv.out)

	c := startCluster(t)
	// A custom executor fetched from the server runs the task.
	out, code := mesolite(t, 90*time.Second, "run", "--master="+c.masterAddr, "--name=custom", "--id=custom-1",
		"--executor_command=./example-executor", "--uri="+base+"/example-executor,executable", "--command=echo ran by the example executor")
	if code != 0 || !strings.Contains(out, "running under the example executor") {
		t.Fatalf("custom executor task: exit %d\n%s", code, out)
	}
	// An archive is fetched, extracted with its modes, and its script run.
	out, code = mesolite(t, 90*time.Second, "run", "--master="+c.masterAddr, "--name=archive", "--id=archive-1",
		"--uri="+base+"/scripts.tar.gz", "--command=./scripts/hello.sh")
	if code != 0 {
		t.Fatalf("archive task: exit %d\n%s", code, out)
	}
	logs, _ := mesolite(t, 30*time.Second, "logs", "--master="+c.masterAddr, "archive-1")
	if strings.TrimSpace(logs) != "hello from the archive" {
		t.Fatalf("stdout %q", logs)
	}
	stderr, _ := mesolite(t, 30*time.Second, "logs", "--master="+c.masterAddr, "--stderr", "archive-1")
	for _, want := range []string{"fetching URI", base + "/scripts.tar.gz", "fetched URI"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("sandbox stderr lacks %q:\n%s", want, stderr)
		}
	}
	fw := regexp.MustCompile(`/frameworks/([^/\s]+)/executors/archive-1`).FindStringSubmatch(out)
	if fw == nil {
		t.Fatalf("no sandbox path in:\n%s", out)
	}
	var entries []struct {
		Path string `json:"path"`
		Mode string `json:"mode"`
	}
	if err := getJSON("http://"+c.agentAddr+"/files/browse?path=/frameworks/"+fw[1]+"/executors/archive-1/runs/latest/scripts", &entries); err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || !strings.HasSuffix(entries[0].Path, "hello.sh") || entries[0].Mode != "-rwxr-xr-x" {
		t.Fatalf("extracted entries %+v", entries)
	}
	// A fetch is bounded by the task's disk: 3 MB into a 1 MB task fails
	// it, saying which limit and how to raise it.
	out, code = mesolite(t, 90*time.Second, "run", "--master="+c.masterAddr, "--name=too-big", "--resources=cpus:0.1;mem:32;disk:1",
		"--uri="+base+"/big.bin", "--command=true")
	if code == 0 || !strings.Contains(out, "REASON_CONTAINER_LAUNCH_FAILED") || !strings.Contains(out, "disk") {
		t.Fatalf("fetch over the task's disk: exit %d\n%s", code, out)
	}
	// A failed fetch fails the task with the reason and the URI.
	out, code = mesolite(t, 90*time.Second, "run", "--master="+c.masterAddr, "--name=missing", "--uri="+base+"/nope.tgz", "--command=true")
	if code == 0 || !strings.Contains(out, "REASON_CONTAINER_LAUNCH_FAILED") || !strings.Contains(out, "nope.tgz") {
		t.Fatalf("fetch failure: exit %d\n%s", code, out)
	}
}

func writeTarGz(t *testing.T, path string, files map[string]string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
}

// A slow fetch shows its progress: TASK_STARTING messages with the bytes
// received of the announced size, about once a second, which `mesolite
// run` prints, and the same lines in the sandbox's stderr.
func TestFetchProgressInTaskStarting(t *testing.T) {
	const chunk, chunks = 128 << 10, 5
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(chunk*chunks))
		buf := make([]byte, chunk)
		for i := range chunks {
			if i > 0 {
				time.Sleep(600 * time.Millisecond)
			}
			if _, err := w.Write(buf); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	}))
	t.Cleanup(srv.Close)
	c := startCluster(t)
	out, code := mesolite(t, 90*time.Second, "run", "--master="+c.masterAddr, "--name=slow-fetch", "--id=slow-fetch-1",
		"--uri="+srv.URL+"/slow.bin", "--command=ls -l slow.bin")
	if code != 0 {
		t.Fatalf("run: exit %d\n%s", code, out)
	}
	if !regexp.MustCompile(`TASK_STARTING.*Fetching '` + regexp.QuoteMeta(srv.URL) + `/slow.bin': [0-9.]+ [KM]?i?B of 640.0 KiB`).MatchString(out) {
		t.Errorf("no fetch progress in run's output:\n%s", out)
	}
	stderr, _ := mesolite(t, 10*time.Second, "logs", "--master="+c.masterAddr, "--stderr", "slow-fetch-1")
	if !strings.Contains(stderr, "Fetching '"+srv.URL+"/slow.bin'") {
		t.Errorf("no fetch progress in the sandbox's stderr:\n%s", stderr)
	}
}
