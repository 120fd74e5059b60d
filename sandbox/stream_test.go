package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mesolite/mesolite/internal/testutil"
)

type sseEvent struct {
	name   string
	id     string
	offset int64
	data   []byte // decoded "data" of data events
	raw    string // the JSON payload
}

// openStream connects to /files/stream and delivers its events; the channel
// closes when the server ends the stream.
func openStream(t *testing.T, srv *httptest.Server, q url.Values, hdr ...string) <-chan sseEvent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/files/stream?"+q.Encode(), nil)
	must(t, err)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := srv.Client().Do(req)
	must(t, err)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: status %d type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	ch := make(chan sseEvent, 1024)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				var p struct {
					Offset int64           `json:"offset"`
					Data   json.RawMessage `json:"data"`
				}
				if err := json.Unmarshal([]byte(ev.raw), &p); err != nil {
					t.Errorf("bad event payload %q: %v", ev.raw, err)
					return
				}
				ev.offset = p.Offset
				if ev.name == EventData {
					b, err := DecodeJSONString(p.Data)
					if err != nil {
						t.Errorf("bad data %q: %v", p.Data, err)
						return
					}
					ev.data = b
				}
				select {
				case ch <- ev:
				case <-ctx.Done():
					return
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "event: "):
				ev.name = line[len("event: "):]
			case strings.HasPrefix(line, "id: "):
				ev.id = line[len("id: "):]
			case strings.HasPrefix(line, "data: "):
				ev.raw = line[len("data: "):]
			}
		}
	}()
	return ch
}

// next returns the next event other than a heartbeat.
func next(t *testing.T, ch <-chan sseEvent) sseEvent {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatal("stream ended")
			}
			if ev.name == EventHeartbeat {
				continue
			}
			return ev
		case <-timeout:
			t.Fatal("no event within 10s")
		}
	}
}

// tracker rebuilds what a client sees: data events must be contiguous within
// a file; rotated and truncated start over.
type tracker struct {
	t       *testing.T
	segs    [][]byte
	events  []string
	pos     int64
	started bool
}

func (tr *tracker) apply(ev sseEvent) {
	tr.t.Helper()
	tr.events = append(tr.events, ev.name)
	if !tr.started {
		tr.segs = append(tr.segs, nil)
		tr.started = true
	}
	switch ev.name {
	case EventData:
		if ev.offset != tr.pos {
			tr.t.Fatalf("data at offset %d, want %d (events %v)", ev.offset, tr.pos, tr.events)
		}
		tr.segs[len(tr.segs)-1] = append(tr.segs[len(tr.segs)-1], ev.data...)
		tr.pos += int64(len(ev.data))
		if ev.id != fmt.Sprint(tr.pos) {
			tr.t.Fatalf("id %q, want %d", ev.id, tr.pos)
		}
	case EventRotated:
		tr.segs = append(tr.segs, nil)
		tr.pos = ev.offset
	case EventTruncated:
		tr.segs[len(tr.segs)-1] = nil
		tr.pos = ev.offset
	}
}

func (tr *tracker) all() string { return string(bytes.Join(tr.segs, nil)) }

var streamModes = []struct {
	name string
	opts FilesOptions
}{
	{"inotify", FilesOptions{}},
	{"polling", FilesOptions{DisableInotify: true, PollInterval: 10 * time.Millisecond}},
}

func TestStreamFollow(t *testing.T) {
	for _, mode := range streamModes {
		t.Run(mode.name, func(t *testing.T) {
			fx := newFixture(t)
			srv, _ := newFilesServer(t, fx, mode.opts)
			p := filepath.Join(fx.layout.RunDir(fx.c1), "stdout")
			ch := openStream(t, srv, url.Values{"path": {"/frameworks/fw1/executors/exec1/runs/latest/stdout"}, "follow": {"true"}})
			if ev := next(t, ch); ev.name != EventData || ev.offset != 0 || string(ev.data) != "hello\n" {
				t.Fatalf("first event %+v", ev)
			}
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
			must(t, err)
			defer f.Close()
			for i := range 5 {
				line := fmt.Sprintf("line %d\n", i)
				_, err := f.WriteString(line)
				must(t, err)
				ev := next(t, ch)
				if ev.name != EventData || string(ev.data) != line {
					t.Fatalf("event %+v, want data %q", ev, line)
				}
			}
		})
	}
}

func TestStreamNoFollow(t *testing.T) {
	fx := newFixture(t)
	srv, _ := newFilesServer(t, fx, FilesOptions{ChunkSize: 16})
	content := strings.Repeat("0123456789", 10)
	writeFile(t, filepath.Join(fx.layout.RunDir(fx.c1), "big"), content)
	ch := openStream(t, srv, url.Values{"path": {"/frameworks/fw1/executors/exec1/runs/c1/big"}, "offset": {"5"}})
	tr := &tracker{t: t, pos: 5}
	for ev := range ch {
		if ev.name == EventData && len(ev.data) > 16 {
			t.Fatalf("chunk of %d bytes, want <= 16", len(ev.data))
		}
		tr.apply(ev)
		if ev.name == EventEOF && ev.offset != 100 {
			t.Fatalf("eof at %d", ev.offset)
		}
	}
	if got := tr.all(); got != content[5:] {
		t.Fatalf("got %q", got)
	}
	if tr.events[len(tr.events)-1] != EventEOF {
		t.Fatalf("last event %v", tr.events)
	}
}

func TestStreamOffsets(t *testing.T) {
	fx := newFixture(t)
	srv, _ := newFilesServer(t, fx, FilesOptions{})
	v := "/frameworks/fw1/executors/exec1/runs/c1/stdout"
	p := filepath.Join(fx.layout.RunDir(fx.c1), "stdout")

	// -1: from the end, like tail -f.
	ch := openStream(t, srv, url.Values{"path": {v}, "offset": {"-1"}, "follow": {"true"}})
	appendFile(t, p, "more\n")
	if ev := next(t, ch); ev.name != EventData || ev.offset != 6 || string(ev.data) != "more\n" {
		t.Fatalf("event %+v", ev)
	}
	// Last-Event-ID resumes an EventSource.
	ch = openStream(t, srv, url.Values{"path": {v}}, "Last-Event-ID", "6")
	if ev := next(t, ch); ev.offset != 6 || string(ev.data) != "more\n" {
		t.Fatalf("resumed event %+v", ev)
	}
	// Past the end: the file must have been replaced; start over.
	ch = openStream(t, srv, url.Values{"path": {v}, "offset": {"1000"}})
	if ev := next(t, ch); ev.name != EventTruncated || ev.offset != 0 {
		t.Fatalf("event %+v", ev)
	}
	if ev := next(t, ch); ev.offset != 0 || string(ev.data) != "hello\nmore\n" {
		t.Fatalf("event %+v", ev)
	}
	for _, q := range []url.Values{
		{"path": {v}, "offset": {"-2"}},
		{"path": {v}, "follow": {"maybe"}},
		{"path": {v}, "offset": {"x"}},
	} {
		if a := get(t, srv, "/files/stream", q); a.status != 400 {
			t.Errorf("%v: status %d", q, a.status)
		}
	}
	if a := get(t, srv, "/files/stream", url.Values{"path": {"/frameworks/fw1/executors/exec1/runs/c1/escape_abs"}}); a.status != 403 {
		t.Errorf("escape: %d", a.status)
	}
}

func TestStreamTruncated(t *testing.T) {
	for _, mode := range streamModes {
		t.Run(mode.name, func(t *testing.T) {
			fx := newFixture(t)
			srv, _ := newFilesServer(t, fx, mode.opts)
			p := filepath.Join(fx.layout.RunDir(fx.c1), "stdout")
			ch := openStream(t, srv, url.Values{"path": {"/frameworks/fw1/executors/exec1/runs/c1/stdout"}, "follow": {"true"}})
			next(t, ch)
			must(t, os.Truncate(p, 0))
			if ev := next(t, ch); ev.name != EventTruncated || ev.offset != 0 {
				t.Fatalf("event %+v", ev)
			}
			appendFile(t, p, "new\n")
			if ev := next(t, ch); ev.name != EventData || ev.offset != 0 || string(ev.data) != "new\n" {
				t.Fatalf("event %+v", ev)
			}
		})
	}
}

func TestStreamRotation(t *testing.T) {
	for _, mode := range streamModes {
		t.Run(mode.name, func(t *testing.T) {
			fx := newFixture(t)
			srv, _ := newFilesServer(t, fx, mode.opts)
			p := filepath.Join(fx.layout.RunDir(fx.c1), "stdout")
			must(t, os.Truncate(p, 0))
			w, err := NewRotatingWriter(p, 40, 1000)
			must(t, err)
			defer w.Close()
			ch := openStream(t, srv, url.Values{"path": {"/frameworks/fw1/executors/exec1/runs/latest/stdout"}, "follow": {"true"}})
			var want strings.Builder
			// Bursts rotate several times between two looks of the stream.
			for i := range 300 {
				line := fmt.Sprintf("line %04d\n", i)
				want.WriteString(line)
				_, err := w.Write([]byte(line))
				must(t, err)
				if i%50 == 0 {
					time.Sleep(5 * time.Millisecond)
				}
			}
			tr := &tracker{t: t}
			deadline := time.After(20 * time.Second)
			for tr.all() != want.String() {
				select {
				case ev, ok := <-ch:
					if !ok {
						t.Fatal("stream ended")
					}
					tr.apply(ev)
				case <-deadline:
					t.Fatalf("got %d of %d bytes; events %v", len(tr.all()), want.Len(), tr.events)
				}
			}
			rotated := 0
			for _, e := range tr.events {
				if e == EventRotated {
					rotated++
				}
			}
			if rotated == 0 {
				t.Fatal("no rotated events")
			}
		})
	}
}

func TestStreamRotatedEventNamesOldFile(t *testing.T) {
	fx := newFixture(t)
	srv, _ := newFilesServer(t, fx, FilesOptions{})
	p := filepath.Join(fx.layout.RunDir(fx.c1), "stdout")
	ch := openStream(t, srv, url.Values{"path": {"/frameworks/fw1/executors/exec1/runs/c1/stdout"}, "follow": {"true"}})
	next(t, ch)
	appendFile(t, p, "last words\n")
	must(t, os.Rename(p, p+".1"))
	writeFile(t, p, "fresh\n")
	var evs []sseEvent
	for len(evs) == 0 || evs[len(evs)-1].name != EventData || string(evs[len(evs)-1].data) != "fresh\n" {
		evs = append(evs, next(t, ch))
	}
	if evs[0].name != EventData || string(evs[0].data) != "last words\n" {
		t.Fatalf("old file not finished first: %+v", evs)
	}
	var rot *sseEvent
	for i := range evs {
		if evs[i].name == EventRotated {
			rot = &evs[i]
		}
	}
	if rot == nil || !strings.Contains(rot.raw, `"renamed_to":"/frameworks/fw1/executors/exec1/runs/c1/stdout.1"`) {
		t.Fatalf("rotated event: %+v", evs)
	}
}

// A client that read a file up to its end and reconnects after the file was
// rotated continues in the rotated file instead of seeing a truncation.
func TestStreamResumesInRotatedFile(t *testing.T) {
	fx := newFixture(t)
	srv, _ := newFilesServer(t, fx, FilesOptions{})
	v := "/frameworks/fw1/executors/exec1/runs/c1/stdout"
	p := filepath.Join(fx.layout.RunDir(fx.c1), "stdout")
	appendFile(t, p, "old tail\n") // "hello\nold tail\n": the client read 6 bytes
	must(t, os.Rename(p, p+".1"))
	writeFile(t, p, "new\n")
	ch := openStream(t, srv, url.Values{"path": {v}, "offset": {"6"}})
	var got []string
	for {
		ev := next(t, ch)
		got = append(got, ev.name+":"+string(ev.data))
		if ev.name == EventEOF {
			break
		}
	}
	want := []string{"data:old tail\n", "rotated:", "data:new\n", "eof:"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("events %q, want %q", got, want)
	}
}

func TestStreamDeleted(t *testing.T) {
	for _, mode := range streamModes {
		t.Run(mode.name, func(t *testing.T) {
			fx := newFixture(t)
			srv, _ := newFilesServer(t, fx, mode.opts)
			p := filepath.Join(fx.layout.RunDir(fx.c1), "stdout")
			ch := openStream(t, srv, url.Values{"path": {"/frameworks/fw1/executors/exec1/runs/c1/stdout"}, "follow": {"true"}})
			next(t, ch)
			must(t, os.Remove(p))
			if ev := next(t, ch); ev.name != EventDeleted || ev.offset != 6 {
				t.Fatalf("event %+v", ev)
			}
			select {
			case ev, ok := <-ch:
				if ok {
					t.Fatalf("event after deleted: %+v", ev)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("stream still open after deleted")
			}
		})
	}
}

func TestStreamSandboxCollectedWhileFollowing(t *testing.T) {
	fx := newFixture(t)
	srv, _ := newFilesServer(t, fx, FilesOptions{})
	ch := openStream(t, srv, url.Values{"path": {"/frameworks/fw1/executors/exec1/runs/c1/stdout"}, "follow": {"true"}})
	next(t, ch)
	must(t, os.RemoveAll(fx.layout.RunDir(fx.c1)))
	if ev := next(t, ch); ev.name != EventDeleted {
		t.Fatalf("event %+v", ev)
	}
}

// A following stream says when it has sent what the file held: a viewer
// that opened at an earlier offset knows its backlog is complete.
func TestStreamHeartbeatOnceCaughtUp(t *testing.T) {
	fx := newFixture(t)
	srv, _ := newFilesServer(t, fx, FilesOptions{HeartbeatInterval: time.Hour})
	ch := openStream(t, srv, url.Values{"path": {"/frameworks/fw1/executors/exec1/runs/c1/stdout"}, "offset": {"0"}, "follow": {"true"}})
	var got []string
	for len(got) < 2 {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("stream ended after %v", got)
			}
			got = append(got, fmt.Sprintf("%s@%d", ev.name, ev.offset))
		case <-time.After(10 * time.Second):
			t.Fatalf("only %v within 10s", got)
		}
	}
	if want := []string{"data@0", "heartbeat@6"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("events %v, want %v", got, want)
	}
}

func TestStreamHeartbeat(t *testing.T) {
	fx := newFixture(t)
	srv, _ := newFilesServer(t, fx, FilesOptions{HeartbeatInterval: 20 * time.Millisecond})
	ch := openStream(t, srv, url.Values{"path": {"/frameworks/fw1/executors/exec1/runs/c1/stdout"}, "follow": {"true"}})
	beats := 0
	timeout := time.After(10 * time.Second)
	for beats < 3 {
		select {
		case ev := <-ch:
			if ev.name == EventHeartbeat {
				if ev.offset != 6 {
					t.Fatalf("heartbeat %+v", ev)
				}
				beats++
			}
		case <-timeout:
			t.Fatalf("%d heartbeats in 10s", beats)
		}
	}
}

func TestStreamManyReaders(t *testing.T) {
	fx := newFixture(t)
	srv, h := newFilesServer(t, fx, FilesOptions{})
	p := filepath.Join(fx.layout.RunDir(fx.c1), "stdout")
	const readers = 64
	chans := make([]<-chan sseEvent, readers)
	for i := range chans {
		chans[i] = openStream(t, srv, url.Values{"path": {"/frameworks/fw1/executors/exec1/runs/c1/stdout"}, "follow": {"true"}})
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	want := "hello\n"
	for i := range 200 {
		line := fmt.Sprintf("line %d\n", i)
		want += line
		_, err := f.WriteString(line)
		must(t, err)
	}
	f.Close()
	var wg sync.WaitGroup
	for i, ch := range chans {
		wg.Go(func() {
			tr := &tracker{t: t}
			timeout := time.After(20 * time.Second)
			for tr.all() != want {
				select {
				case ev, ok := <-ch:
					if !ok {
						t.Errorf("reader %d: stream ended", i)
						return
					}
					tr.apply(ev)
				case <-timeout:
					t.Errorf("reader %d: %d of %d bytes", i, len(tr.all()), len(want))
					return
				}
			}
		})
	}
	wg.Wait()
	// All readers share one inotify instance.
	if h.watch == nil {
		testutil.Require(t, false, "test needs inotify")
	}
	h.watch.mu.Lock()
	n := len(h.watch.watches)
	h.watch.mu.Unlock()
	if n > 2 {
		t.Fatalf("%d kernel watches for one file and its directory", n)
	}
}

func TestStreamReleasesWatches(t *testing.T) {
	fx := newFixture(t)
	srv, h := newFilesServer(t, fx, FilesOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/files/stream?follow=true&path="+url.QueryEscape("/frameworks/fw1/executors/exec1/runs/c1/stdout"), nil)
	resp, err := srv.Client().Do(req)
	must(t, err)
	if h.watch == nil {
		cancel()
		resp.Body.Close()
		testutil.Require(t, false, "test needs inotify")
	}
	cancel()
	resp.Body.Close()
	testutil.Eventually(t, 5*time.Second, 10*time.Millisecond, func() bool {
		h.watch.mu.Lock()
		defer h.watch.mu.Unlock()
		return len(h.watch.watches) == 0
	}, "watches released after the client left")
}

func appendFile(t *testing.T, p, s string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	must(t, err)
	defer f.Close()
	_, err = f.WriteString(s)
	must(t, err)
}
