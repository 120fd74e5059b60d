package cli

import (
	"bytes"
	"context"
	"github.com/mesolite/mesolite/internal/testutil"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mesolite/mesolite/sandbox"
)

// fakeAgent serves the real files API over a sandbox in a temp dir holding
// the runs of tasks web.1 and hi.1 (command tasks of framework fw-1).
type fakeAgent struct {
	srv    *httptest.Server
	layout sandbox.Layout
	dirs   map[string]string // task id -> run dir
}

func newFakeAgent(t *testing.T, wrap func(http.Handler) http.Handler) *fakeAgent {
	t.Helper()
	a := &fakeAgent{layout: sandbox.Layout{WorkDir: t.TempDir()}, dirs: map[string]string{}}
	files := sandbox.NewFilesHandler(sandbox.FilesOptions{Layout: a.layout, AgentID: "agent-1", DisableInotify: true, PollInterval: 10 * time.Millisecond})
	t.Cleanup(func() { files.Close() })
	for _, task := range []string{"web.1", "hi.1"} {
		dir, err := a.layout.CreateRun(sandbox.RunID{AgentID: "agent-1", FrameworkID: "fw-1", ExecutorID: task, ContainerID: "c-" + task})
		if err != nil {
			t.Fatal(err)
		}
		a.dirs[task] = dir
	}
	mux := http.NewServeMux()
	mux.Handle("/files/", files)
	var h http.Handler = mux
	if wrap != nil {
		h = wrap(mux)
	}
	a.srv = httptest.NewServer(h)
	t.Cleanup(a.srv.Close)
	return a
}

func (a *fakeAgent) addr() string { return strings.TrimPrefix(a.srv.URL, "http://") }

func (a *fakeAgent) write(t *testing.T, task, file, data string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(a.dirs[task], file), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
}

func TestLogs(t *testing.T) {
	agent := newFakeAgent(t, nil)
	master := fakeStateMaster(t, agent.addr())
	agent.write(t, "hi.1", "stdout", "hi\n")
	agent.write(t, "hi.1", "stderr", "warning: x\n")
	// More than one /files/read answer (64 KiB each), and bytes that are
	// not UTF-8, which must come through unchanged.
	big := strings.Repeat("0123456789abcdef", 10000) + "\xff\xfe\n"
	agent.write(t, "web.1", "stdout", big)

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"stdout, task id first", []string{"hi.1", "--master=" + master.URL}, "hi\n"},
		{"task id last", []string{"--master=" + master.URL, "hi.1"}, "hi\n"},
		{"stderr", []string{"hi.1", "--master=" + master.URL, "--stderr"}, "warning: x\n"},
		{"offset", []string{"hi.1", "--master=" + master.URL, "--offset=1"}, "i\n"},
		{"negative offset is from the end", []string{"hi.1", "--master=" + master.URL, "--stderr", "--offset=-2"}, "x\n"},
		{"large file in chunks", []string{"web.1", "--master=" + master.URL}, big},
		{"finished task with --follow ends", []string{"hi.1", "--master=" + master.URL, "--follow"}, "hi\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := Logs(context.Background(), tt.args, &out, &errOut); code != 0 {
				t.Fatalf("exit %d: %s", code, errOut.String())
			}
			if out.String() != tt.want {
				t.Fatalf("got %d bytes %q..., want %d bytes", out.Len(), first(out.String()), len(tt.want))
			}
		})
	}
}

func first(s string) string {
	if len(s) > 40 {
		return s[:40]
	}
	return s
}

func TestLogsErrors(t *testing.T) {
	agent := newFakeAgent(t, nil)
	master := fakeStateMaster(t, agent.addr())
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown task", []string{"nope", "--master=" + master.URL}, 1, `the master knows no task with the id, name or id prefix "nope"`},
		{"agent gone", []string{"custom", "--master=" + master.URL}, 1, "agent agent-gone, which the master no longer knows"},
		{"no task id", []string{"--master=" + master.URL}, 2, "want one TASK (an id, a name or an id prefix)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := Logs(context.Background(), tt.args, &out, &errOut); code != tt.code || !strings.Contains(errOut.String(), tt.want) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, errOut.String(), tt.code, tt.want)
			}
		})
	}
	if err := os.Remove(filepath.Join(agent.dirs["hi.1"], "stdout")); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := Logs(context.Background(), []string{"hi.1", "--master=" + master.URL}, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "task hi.1 is TASK_FINISHED on agent node-1") {
		t.Fatalf("missing stdout: exit %d, %q", code, errOut.String())
	}
}

// followMaster serves a state whose web.1 task is running until ended is set.
func followMaster(t *testing.T, agentAddr string, ended *atomic.Bool) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := stateJSON(agentAddr)
		if ended.Load() {
			s = strings.Replace(s, `"state": "TASK_RUNNING", "statuses"`, `"state": "TASK_FINISHED", "statuses"`, 1)
		}
		w.Write([]byte(s))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestLogsFollow(t *testing.T) {
	old := stateCheckInterval
	stateCheckInterval = 20 * time.Millisecond
	t.Cleanup(func() { stateCheckInterval = old })

	for _, tt := range []struct {
		name string
		wrap func(http.Handler) http.Handler
	}{
		{"files stream", nil},
		{"an agent without /files/stream: polling /files/read", func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/files/stream" {
					http.NotFound(w, r)
					return
				}
				h.ServeHTTP(w, r)
			})
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			agent := newFakeAgent(t, tt.wrap)
			var ended atomic.Bool
			master := followMaster(t, agent.addr(), &ended)
			agent.write(t, "web.1", "stdout", "line 1\n")

			var out testutil.SyncBuffer
			var errOut bytes.Buffer
			done := make(chan int, 1)
			go func() {
				done <- Logs(context.Background(), []string{"web.1", "--master=" + master.URL, "--follow"}, &out, &errOut)
			}()
			waitFor(t, &out, "line 1\n")
			agent.write(t, "web.1", "stdout", "line 2\n")
			waitFor(t, &out, "line 1\nline 2\n")
			agent.write(t, "web.1", "stdout", "last line\n")
			ended.Store(true)
			select {
			case code := <-done:
				if code != 0 {
					t.Fatalf("exit %d: %s", code, errOut.String())
				}
			case <-time.After(10 * time.Second):
				t.Fatal("--follow did not end with the task")
			}
			if got := out.String(); got != "line 1\nline 2\nlast line\n" {
				t.Fatalf("got %q", got)
			}
		})
	}
}

func TestLogsFollowInterrupted(t *testing.T) {
	agent := newFakeAgent(t, nil)
	var ended atomic.Bool
	master := followMaster(t, agent.addr(), &ended)
	agent.write(t, "web.1", "stdout", "tick\n")
	ctx, cancel := context.WithCancel(context.Background())
	var out testutil.SyncBuffer
	done := make(chan int, 1)
	go func() {
		done <- Logs(ctx, []string{"web.1", "--master=" + master.URL, "--follow"}, &out, &bytes.Buffer{})
	}()
	waitFor(t, &out, "tick\n")
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d after Ctrl-C", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("--follow ignored Ctrl-C")
	}
}

func waitFor(t *testing.T, out *testutil.SyncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for out.String() != want {
		if time.Now().After(deadline) {
			t.Fatalf("output %q, want %q", out.String(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestUnquoteRaw(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{`"plain"`, "plain"},
		{`"a\"b\\c\/d\n\t\r\b\f"`, "a\"b\\c/d\n\t\r\b\f"},
		{`"\u00e9\u2028"`, "é\u2028"},
		{`"\ud83d\ude00"`, "😀"},
		{"\"\xff\xfe raw\"", "\xff\xfe raw"},
	}
	for _, tt := range tests {
		got, err := sandbox.DecodeJSONString([]byte(tt.in))
		if err != nil || string(got) != tt.want {
			t.Errorf("sandbox.DecodeJSONString(%s) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{`plain`, `"\x"`, `"\u12"`, `"end\"`} {
		if _, err := sandbox.DecodeJSONString([]byte(bad)); err == nil {
			t.Errorf("sandbox.DecodeJSONString(%s) accepted", bad)
		}
	}
}
