package sandbox

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/internal/testutil"
)

// followServer serves the fixture's files API; wrap may wrap the handler.
func followServer(t *testing.T, fx *fixture, wrap func(http.Handler) http.Handler) *httptest.Server {
	t.Helper()
	h := NewFilesHandler(FilesOptions{Layout: fx.layout, AgentID: fx.agent})
	var handler http.Handler = h
	if wrap != nil {
		handler = wrap(h)
	}
	mux := http.NewServeMux()
	mux.Handle("/files/", handler)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() { srv.Close(); h.Close() })
	return srv
}

// writeLines appends n numbered lines to w with a pause now and then, and
// returns everything written.
func writeLines(t *testing.T, w interface{ Write([]byte) (int, error) }, n int, pause time.Duration) string {
	t.Helper()
	var all strings.Builder
	for i := range n {
		line := fmt.Sprintf("line %05d\n", i)
		all.WriteString(line)
		if _, err := w.Write([]byte(line)); err != nil {
			t.Error(err)
			return all.String()
		}
		if i%10 == 0 {
			time.Sleep(pause)
		}
	}
	return all.String()
}

func openAppend(t *testing.T, p string) *os.File {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	must(t, err)
	t.Cleanup(func() { f.Close() })
	return f
}

func TestFollowUntilEnded(t *testing.T) {
	fx := newFixture(t)
	srv := followServer(t, fx, nil)
	p := filepath.Join(fx.layout.RunDir(fx.c1), "stdout")
	var ended atomic.Bool
	var out testutil.SyncBuffer
	done := make(chan error, 1)
	var off int64
	go func() {
		var err error
		off, err = Follow(t.Context(), srv.URL, "/frameworks/fw1/executors/exec1/runs/latest/stdout", 0, &out,
			FollowOptions{Ended: ended.Load, CheckInterval: 10 * time.Millisecond})
		done <- err
	}()
	want := "hello\n" + writeLines(t, openAppend(t, p), 200, time.Millisecond)
	ended.Store(true)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Follow: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Follow did not return after the task ended")
	}
	if out.String() != want {
		t.Fatalf("got %d bytes, want %d", len(out.String()), len(want))
	}
	if off != int64(len(want)) {
		t.Fatalf("offset %d, want %d", off, len(want))
	}
}

func TestFollowReconnects(t *testing.T) {
	fx := newFixture(t)
	var requests atomic.Int32
	// Every stream is cut after 20ms, as a flaky network would.
	srv := followServer(t, fx, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			requests.Add(1)
			ctx, cancel := context.WithTimeout(r.Context(), 20*time.Millisecond)
			defer cancel()
			h.ServeHTTP(w, r.WithContext(ctx))
		})
	})
	p := filepath.Join(fx.layout.RunDir(fx.c1), "stdout")
	var ended atomic.Bool
	var out testutil.SyncBuffer
	done := make(chan error, 1)
	go func() {
		_, err := Follow(t.Context(), srv.URL, "/frameworks/fw1/executors/exec1/runs/c1/stdout", 0, &out,
			FollowOptions{Ended: ended.Load, CheckInterval: 5 * time.Millisecond, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
		done <- err
	}()
	want := "hello\n" + writeLines(t, openAppend(t, p), 300, 2*time.Millisecond)
	ended.Store(true)
	if err := <-done; err != nil {
		t.Fatalf("Follow: %v", err)
	}
	if out.String() != want {
		t.Fatalf("lost or repeated bytes across reconnects: got %d bytes, want %d", len(out.String()), len(want))
	}
	if requests.Load() < 3 {
		t.Fatalf("only %d requests; the test did not exercise reconnects", requests.Load())
	}
}

func TestFollowAcrossRotation(t *testing.T) {
	fx := newFixture(t)
	srv := followServer(t, fx, nil)
	p := filepath.Join(fx.layout.RunDir(fx.c1), "stdout")
	must(t, os.Remove(p))
	w, err := NewRotatingWriter(p, 100, 1000)
	must(t, err)
	defer w.Close()
	var ended atomic.Bool
	var out testutil.SyncBuffer
	var events sync.Map
	done := make(chan error, 1)
	go func() {
		_, err := Follow(t.Context(), srv.URL, "/frameworks/fw1/executors/exec1/runs/c1/stdout", 0, &out, FollowOptions{
			Ended: ended.Load, CheckInterval: 10 * time.Millisecond,
			OnEvent: func(ev string, _ int64) { events.Store(ev, true) },
		})
		done <- err
	}()
	want := writeLines(t, w, 500, time.Millisecond)
	ended.Store(true)
	if err := <-done; err != nil {
		t.Fatalf("Follow: %v", err)
	}
	if out.String() != want {
		t.Fatalf("got %d bytes, want %d", len(out.String()), len(want))
	}
	if _, ok := events.Load(EventRotated); !ok {
		t.Fatal("no rotated event seen")
	}
}

func TestFollowErrors(t *testing.T) {
	fx := newFixture(t)
	srv := followServer(t, fx, nil)
	ctx := t.Context()
	var out testutil.SyncBuffer

	if _, err := Follow(ctx, srv.URL, "/frameworks/fw1/executors/exec1/runs/c1/nope", 0, &out, FollowOptions{}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := Follow(ctx, srv.URL, "/frameworks/fw1/executors/exec1/runs/c1/escape_abs", 0, &out, FollowOptions{}); !errors.Is(err, errdefs.ErrForbidden) {
		t.Errorf("escape: %v", err)
	}
	if _, err := Follow(ctx, srv.URL, "/frameworks/fw1/executors/exec1/runs/c1/sub", 0, &out, FollowOptions{}); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("directory: %v", err)
	}

	// Deleted while following.
	p := filepath.Join(fx.layout.RunDir(fx.c2), "stdout")
	done := make(chan error, 1)
	go func() {
		_, err := Follow(ctx, srv.URL, "/frameworks/fw1/executors/exec2/runs/c2/stdout", 0, &out, FollowOptions{})
		done <- err
	}()
	testutil.Eventually(t, 10*time.Second, time.Millisecond, func() bool { return strings.Contains(out.String(), "other task") }, "first bytes")
	must(t, os.Remove(p))
	if err := <-done; !errors.Is(err, errdefs.ErrGone) {
		t.Errorf("deleted: %v", err)
	}

	// ctx ends a follow.
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := Follow(cctx, srv.URL, "/frameworks/fw1/executors/exec1/runs/c1/stdout", 0, &out, FollowOptions{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ctx: %v", err)
	}
}

func TestFollowWaitsForTheFile(t *testing.T) {
	fx := newFixture(t)
	srv := followServer(t, fx, nil)
	p := filepath.Join(fx.layout.RunDir(fx.c1), "late")
	var ended atomic.Bool
	var out testutil.SyncBuffer
	done := make(chan error, 1)
	go func() {
		_, err := Follow(t.Context(), srv.URL, "/frameworks/fw1/executors/exec1/runs/c1/late", 0, &out,
			FollowOptions{Ended: ended.Load, CheckInterval: 5 * time.Millisecond, MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond})
		done <- err
	}()
	time.Sleep(30 * time.Millisecond) // a staging task: no file yet
	writeFile(t, p, "finally\n")
	testutil.Eventually(t, 10*time.Second, time.Millisecond, func() bool { return strings.Contains(out.String(), "finally") }, "the late file")
	ended.Store(true)
	if err := <-done; err != nil || out.String() != "finally\n" {
		t.Fatalf("Follow: %q %v", out.String(), err)
	}
}

func TestFollowSendsHeaders(t *testing.T) {
	fx := newFixture(t)
	srv := followServer(t, fx, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer t0ken" {
				http.Error(w, "no", http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	var out testutil.SyncBuffer
	var ended atomic.Bool
	ended.Store(true)
	if _, err := Follow(t.Context(), srv.URL, "/frameworks/fw1/executors/exec1/runs/c1/stdout", 0, &out, FollowOptions{}); !errors.Is(err, errdefs.ErrUnauthorized) {
		t.Fatalf("without header: %v", err)
	}
	_, err := Follow(t.Context(), srv.URL, "/frameworks/fw1/executors/exec1/runs/c1/stdout", 0, &out, FollowOptions{
		Header: http.Header{"Authorization": {"Bearer t0ken"}}, Ended: ended.Load,
	})
	if err != nil || out.String() != "hello\n" {
		t.Fatalf("with header: %q %v", out.String(), err)
	}
}
