package artifactsrv

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mesolite/mesolite/errdefs"
)

// TestAttackSpecialFilesDoNotHang: anyone who can put a FIFO (or a socket,
// or a device node) in the artifact directory must not be able to park
// the server's handlers in open(2) for ever, nor make it open a device.
// Every route that opens a name answers at once with a client error.
func TestAttackSpecialFilesDoNotHang(t *testing.T) {
	f := newFixture(t, "")
	fifo := filepath.Join(f.dir, "pipe")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	// Should a handler be stuck in open, a writer lets it go, so the test
	// fails instead of hanging in the server's shutdown.
	t.Cleanup(func() {
		if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
	})
	if err := os.Symlink("pipe", filepath.Join(f.dir, "link-to-pipe")); err != nil {
		t.Fatal(err)
	}
	names := []string{"pipe", "link-to-pipe"}
	if os.Geteuid() == 0 {
		// A char device like /dev/zero: opening it would be a read
		// without end.
		if err := syscall.Mknod(filepath.Join(f.dir, "zero"), syscall.S_IFCHR|0o644, int(1<<8|5)); err == nil {
			names = append(names, "zero")
		}
	}
	f.write(t, "plain.txt", "plain")

	// The client's timeout only keeps a regression from hanging the test.
	client := &http.Client{Timeout: 30 * time.Second}
	type check struct {
		method, path string
	}
	var checks []check
	for _, n := range names {
		checks = append(checks, check{http.MethodGet, "/" + n}, check{http.MethodHead, "/" + n}, check{http.MethodGet, "/sha256/" + n})
	}
	for _, c := range checks {
		t.Run(c.method+c.path, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, f.ts.URL+c.path, nil)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", c.method, c.path, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode < 400 || resp.StatusCode >= 500 {
				t.Fatalf("%s %s: %d %q, want a client error", c.method, c.path, resp.StatusCode, body)
			}
		})
	}
	// The listing skips them and still answers.
	resp, err := client.Get(f.ts.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "plain.txt") || strings.Contains(string(body), ">pipe<") {
		t.Fatalf("listing: %d %s", resp.StatusCode, body)
	}
}

// TestServerErrorsHideHostPaths: a 5xx carries errors from deep in the
// filesystem, with the host's absolute paths; the body says only the
// status, the log has the rest.
func TestServerErrorsHideHostPaths(t *testing.T) {
	f := newFixture(t, "")
	host := filepath.Join(f.dir, "secret", "layout")
	tests := []struct {
		name   string
		err    error
		status int
		hidden bool
	}{
		{"unclassified", &os.PathError{Op: "read", Path: host, Err: syscall.EIO}, http.StatusInternalServerError, true},
		{"unavailable", fmt.Errorf("%w: %w", &os.PathError{Op: "open", Path: host, Err: syscall.ENOSPC}, errdefs.ErrUnavailable), http.StatusServiceUnavailable, true},
		{"not found keeps its reason", fmt.Errorf("/a.txt: %w", errdefs.ErrNotFound), http.StatusNotFound, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			f.srv.httpError(rec, tt.err)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d", rec.Code, tt.status)
			}
			body := rec.Body.String()
			if strings.Contains(body, f.dir) || strings.Contains(body, "/tmp") {
				t.Fatalf("body shows a host path: %q", body)
			}
			if !tt.hidden && !strings.Contains(body, "/a.txt") {
				t.Fatalf("client error lost its reason: %q", body)
			}
		})
	}
}
