package sandbox

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mesolite/mesolite/errdefs"
)

// The process's own log (Mesos's /master/log, /slave/log) is served from
// the file the operator named, a link to it included, with its own
// authorization; a FIFO in its place is refused, not waited on; nothing
// below or beside it is reachable through the log's path.
func TestAttachedLog(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "agent-2026.log")
	must(t, os.WriteFile(real, []byte("line one\nline two\n"), 0o640))
	link := filepath.Join(dir, "agent.log")
	must(t, os.Symlink(real, link))
	fx := newFixture(t)
	allow := true
	srv, _ := newFilesServer(t, fx, FilesOptions{
		Logs: map[string]string{"/slave/log": link},
		AuthorizeLog: func(*http.Request) error {
			if !allow {
				return errdefs.ErrForbidden
			}
			return nil
		},
		Authorize: func(*http.Request, RunID) error { return errors.New("the sandbox rule must not decide for the log") },
	})
	a := get(t, srv, "/files/read", url.Values{"path": {"/slave/log"}, "offset": {"0"}})
	var rd struct {
		Data string `json:"data"`
	}
	if a.status != http.StatusOK || json.Unmarshal(a.body, &rd) != nil || rd.Data != "line one\nline two\n" {
		t.Fatalf("read /slave/log: %d %s", a.status, a.body)
	}
	if a := get(t, srv, "/files/download", url.Values{"path": {"/slave/log"}}); a.status != http.StatusOK || !strings.Contains(string(a.body), "line two") {
		t.Errorf("download /slave/log: %d %s", a.status, a.body)
	}
	for _, p := range []string{"/slave/log/../agent-2026.log", "/slave/log/x", "/slave", "/slave/logs"} {
		if a := get(t, srv, "/files/read", url.Values{"path": {p}, "offset": {"0"}}); a.status == http.StatusOK {
			t.Errorf("read %s: 200 %s, want a refusal", p, a.body)
		}
	}
	allow = false
	if a := get(t, srv, "/files/read", url.Values{"path": {"/slave/log"}, "offset": {"0"}}); a.status != http.StatusForbidden {
		t.Errorf("read /slave/log refused by its rule: %d %s, want 403", a.status, a.body)
	}
}

func TestAttachedLogThatIsAFIFO(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "master.log")
	must(t, syscall.Mkfifo(fifo, 0o644))
	h := NewFilesHandler(FilesOptions{Logs: map[string]string{"/master/log": fifo}})
	t.Cleanup(func() { h.Close() })
	done := make(chan error, 1)
	go func() {
		_, _, err := h.Read(&http.Request{}, "/master/log", 0, -1)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("read of a FIFO log: %v, want it refused as not a regular file", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reading a FIFO log hung")
	}
	// Without a work directory (a master) no sandbox path resolves, a
	// relative one against the working directory least of all.
	must(t, os.MkdirAll(filepath.Join(dir, "slaves", "a", "frameworks", "f", "executors", "e", "runs", "c"), 0o755))
	t.Chdir(dir)
	if _, _, err := h.Read(&http.Request{}, "slaves/a/frameworks/f/executors/e/runs/c/stdout", 0, -1); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("sandbox path on a handler without sandboxes: %v, want not found", err)
	}
}
