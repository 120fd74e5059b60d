package fetcher

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"github.com/mesolite/mesolite/internal/testutil"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	childEnv = "MESOLITE_FETCHER_TEST_CHILD"
	crashEnv = "MESOLITE_FETCHER_TEST_CRASH"
	// settleEnv sets ctimeSettle in the child (see shortSettle).
	settleEnv = "MESOLITE_FETCHER_TEST_CTIME_SETTLE"
)

// TestMain turns the test binary into the fetch child when asked: the same
// re-execution the agent does with `mesolite fetch`.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		if os.Getenv(crashEnv) == "1" {
			panic("simulated fetcher crash")
		}
		if d, err := time.ParseDuration(os.Getenv(settleEnv)); err == nil {
			ctimeSettle = d
		}
		os.Exit(ChildMain(context.Background(), os.Args[1:], os.Stdin, os.Stderr))
	}
	os.Exit(m.Run())
}

func childOptions(t testing.TB, cfg Config, extraEnv ...string) Options {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), childEnv+"=1")
	env = append(env, extraEnv...)
	return Options{Binary: exe, Env: env, Config: cfg, Timeout: time.Minute}
}

// runFetch fetches req through a child process and returns its log.
func runFetch(t testing.TB, opts Options, req Request) (string, error) {
	t.Helper()
	var log testutil.SyncBuffer
	err := RunChild(context.Background(), opts, req, &log)
	return log.String(), err
}

// origin is an HTTP server that counts what it answers.
type origin struct {
	ts *httptest.Server

	mu      sync.Mutex
	files   map[string][]byte
	mtimes  map[string]time.Time
	queries []string
	// noValidators serves without ETag and Last-Modified.
	noValidators bool
	// delay holds each body back, so concurrent fetches overlap.
	delay time.Duration

	full       atomic.Int64 // 200 and 206 answers
	notMod     atomic.Int64 // 304 answers
	requests   atomic.Int64
	stallSince chan struct{}
}

func newOrigin(t testing.TB) *origin {
	t.Helper()
	o := &origin{files: map[string][]byte{}, mtimes: map[string]time.Time{}, stallSince: make(chan struct{})}
	o.ts = httptest.NewServer(http.HandlerFunc(o.serve))
	t.Cleanup(func() {
		close(o.stallSince)
		o.ts.Close()
	})
	return o
}

func (o *origin) put(name string, b []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.files[name] = b
	// Distinct mtimes per version, so Last-Modified changes too.
	o.mtimes[name] = time.Unix(1_700_000_000+int64(len(o.mtimes))*10+int64(len(b)%7), 0)
}

func (o *origin) url(name string) string { return o.ts.URL + "/" + name }

func (o *origin) serve(w http.ResponseWriter, r *http.Request) {
	o.requests.Add(1)
	name := strings.TrimPrefix(r.URL.Path, "/")
	o.mu.Lock()
	o.queries = append(o.queries, r.URL.RawQuery)
	b, ok := o.files[name]
	mtime := o.mtimes[name]
	noVal, delay := o.noValidators, o.delay
	o.mu.Unlock()
	if strings.HasPrefix(name, "stall/") {
		w.Header().Set("Content-Length", "1000000")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("a few bytes, then nothing"))
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-o.stallSince:
		}
		return
	}
	if !ok {
		http.NotFound(w, r)
		return
	}
	if delay > 0 {
		time.Sleep(delay)
	}
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	if !noVal {
		sum := sha256.Sum256(b)
		w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:8])+`"`)
	} else {
		mtime = time.Time{}
	}
	http.ServeContent(rec, r, name, mtime, bytes.NewReader(b))
	switch rec.status {
	case http.StatusOK, http.StatusPartialContent:
		o.full.Add(1)
	case http.StatusNotModified:
		o.notMod.Add(1)
	}
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// tarEntry describes one member of a test archive.
type tarEntry struct {
	name     string
	body     string
	mode     int64
	typ      byte
	linkname string
	size     int64 // for bombs: a body of this many zero bytes
}

func makeTar(t testing.TB, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		hdr := &tar.Header{Name: e.name, Mode: mode, Typeflag: typ, Linkname: e.linkname, ModTime: time.Unix(1_600_000_000, 0), Format: tar.FormatPAX}
		var body io.Reader
		switch {
		case typ == tar.TypeReg && e.size > 0:
			hdr.Size = e.size
			body = io.LimitReader(zeroReader{}, e.size)
		case typ == tar.TypeReg:
			hdr.Size = int64(len(e.body))
			body = strings.NewReader(e.body)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if body != nil {
			if _, err := io.Copy(tw, body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gz(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type zipEntry struct {
	name string
	body string
	mode fs.FileMode
	size int64
}

func makeZip(t testing.TB, entries []zipEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		h.SetMode(mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if e.size > 0 {
			_, err = io.Copy(w, io.LimitReader(zeroReader{}, e.size))
		} else {
			_, err = io.WriteString(w, e.body)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// layout is a sandbox with siblings that must stay untouched.
type layout struct {
	base    string
	sandbox string
	outside string
}

func newLayout(t testing.TB) layout {
	t.Helper()
	base := t.TempDir()
	l := layout{base: base, sandbox: filepath.Join(base, "sandbox"), outside: filepath.Join(base, "outside")}
	for _, d := range []string{l.sandbox, l.outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// assertNothingOutside fails when anything but the sandbox and the empty
// outside directory exists under base.
func (l layout) assertNothingOutside(t testing.TB, allowed ...string) {
	t.Helper()
	ok := map[string]bool{"sandbox": true, "outside": true}
	for _, a := range allowed {
		ok[a] = true
	}
	ents, err := os.ReadDir(l.base)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !ok[e.Name()] {
			t.Errorf("%s written outside the sandbox", e.Name())
		}
	}
	if ents, _ := os.ReadDir(l.outside); len(ents) != 0 {
		t.Errorf("outside directory holds %v", ents)
	}
}

// sandboxFiles lists the sandbox, relative paths, sorted.
func (l layout) sandboxFiles(t testing.TB) []string {
	t.Helper()
	var out []string
	_ = filepath.WalkDir(l.sandbox, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != l.sandbox {
			rel, _ := filepath.Rel(l.sandbox, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func modeOf(t testing.TB, p string) fs.FileMode {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}
