package main

import (
	"bytes"
	"context"
	"encoding/json"
	"github.com/mesolite/mesolite/internal/testutil"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Unknown levels and formats are refused by every long-running command,
// not read as INFO.
func TestLoggingFlagsValidated(t *testing.T) {
	for _, tc := range []struct {
		cmd  func(context.Context, []string, io.Writer, io.Writer) int
		name string
		args []string
		want string
	}{
		{masterMain, "master VERBOSE", []string{"--logging_level=VERBOSE"}, "--logging_level=VERBOSE: not a level"},
		{agentMain, "agent format", []string{"--log_format=xml"}, "--log_format=xml: not a format"},
		{appsMain, "apps level", []string{"--master=127.0.0.1:1", "--logging_level=LOUD"}, "not a level"},
		{jobsMain, "jobs level", []string{"--master=127.0.0.1:1", "--logging_level=LOUD"}, "not a level"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // nothing may start
			if code := tc.cmd(ctx, tc.args, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, stderr.String(), tc.want)
			}
		})
	}
}

// --log_dir appends the log to <dir>/mesolite-<role>.log besides stderr,
// and refuses a symlink planted where the file goes.
func TestLogDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	var stderr bytes.Buffer
	w, closeLog, err := logWriter(&stderr, dir, "master")
	if err != nil {
		t.Fatal(err)
	}
	log, err := newLogger(w, "INFO", "json")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hello", "k", "v")
	closeLog()
	data, err := os.ReadFile(filepath.Join(dir, "mesolite-master.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"msg":"hello"`) || !strings.Contains(stderr.String(), `"msg":"hello"`) {
		t.Fatalf("file %q, stderr %q: want the line in both", data, stderr.String())
	}

	target := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(target, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, "mesolite-agent.log")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := logWriter(&stderr, dir, "agent"); err == nil {
		t.Fatal("a planted symlink was followed")
	}
	if data, _ := os.ReadFile(target); string(data) != "keep" {
		t.Fatalf("the symlink's target changed: %q", data)
	}
}

// The master serves the log --log_dir writes at /master/log of the files
// API, as Mesos's master does (the web UI's LOG link); other paths are not
// files of the master.
func TestMasterServesItsLogAtMasterLog(t *testing.T) {
	port := testutil.FreePort(t)
	logDir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	var out syncWriter
	done := make(chan int, 1)
	go func() {
		done <- masterMain(ctx, []string{"--ip=127.0.0.1", "--port=" + strconv.Itoa(port), "--work_dir=" + t.TempDir(), "--log_dir=" + logDir}, &out, &out)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("master did not stop")
		}
	})
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	var body string
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() bool {
		resp, err := http.Get(base + "/files/read?path=/master/log&offset=0")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var rd struct {
			Data   string `json:"data"`
			Offset int64  `json:"offset"`
		}
		if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&rd) != nil {
			return false
		}
		body = rd.Data
		return strings.Contains(body, "master listening")
	}, "the master's log at /master/log")
	for _, p := range []string{"/slave/log", "slaves/x/frameworks/f/executors/e/runs/latest/stdout", "/etc/passwd"} {
		resp, err := http.Get(base + "/files/read?offset=0&path=" + url.QueryEscape(p))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("/files/read of %s: %d, want 404", p, resp.StatusCode)
		}
	}
}

// syncWriter is a buffer written by the command under test and read by the
// test.
type syncWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
