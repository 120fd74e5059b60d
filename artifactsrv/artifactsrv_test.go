package artifactsrv

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/internal/testutil"
)

type fixture struct {
	dir     string
	outside string
	srv     *Server
	ts      *httptest.Server
}

func newFixture(t *testing.T, token string) *fixture {
	t.Helper()
	base := t.TempDir()
	dir := filepath.Join(base, "artifacts")
	outside := filepath.Join(base, "outside")
	for _, d := range []string{dir, outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := New(Options{Dir: dir, UploadToken: token})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(func() {
		ts.Close()
		srv.Close()
	})
	return &fixture{dir: dir, outside: outside, srv: srv, ts: ts}
}

func (f *fixture) write(t *testing.T, rel, content string) {
	t.Helper()
	p := filepath.Join(f.dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func do(t *testing.T, method, url string, body io.Reader, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func TestGetAndHead(t *testing.T) {
	f := newFixture(t, "")
	f.write(t, "pkg/app.tgz", "not really gzip")
	resp, body := do(t, http.MethodGet, f.ts.URL+"/pkg/app.tgz", nil, nil)
	if resp.StatusCode != http.StatusOK || string(body) != "not really gzip" {
		t.Fatalf("GET: %d %q", resp.StatusCode, body)
	}
	want := map[string]string{
		"Content-Type":      "application/gzip",
		"Content-Length":    "15",
		"X-Checksum-Sha256": sha("not really gzip"),
		"ETag":              `"` + sha("not really gzip") + `"`,
		"Accept-Ranges":     "bytes",
	}
	for k, v := range want {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if resp.Header.Get("Last-Modified") == "" {
		t.Error("no Last-Modified")
	}
	resp, body = do(t, http.MethodHead, f.ts.URL+"/pkg/app.tgz", nil, nil)
	if resp.StatusCode != http.StatusOK || len(body) != 0 || resp.ContentLength != 15 {
		t.Fatalf("HEAD: %d len=%d body=%q", resp.StatusCode, resp.ContentLength, body)
	}
	if resp, _ := do(t, http.MethodGet, f.ts.URL+"/missing", nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("missing: %d", resp.StatusCode)
	}
}

func TestRange(t *testing.T) {
	f := newFixture(t, "")
	f.write(t, "a.bin", "0123456789")
	tests := []struct {
		rng, want string
		code      int
	}{
		{"bytes=2-5", "2345", http.StatusPartialContent},
		{"bytes=7-", "789", http.StatusPartialContent},
		{"bytes=-2", "89", http.StatusPartialContent},
		{"bytes=20-30", "", http.StatusRequestedRangeNotSatisfiable},
	}
	for _, tt := range tests {
		t.Run(tt.rng, func(t *testing.T) {
			resp, body := do(t, http.MethodGet, f.ts.URL+"/a.bin", nil, map[string]string{"Range": tt.rng})
			if resp.StatusCode != tt.code {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.code)
			}
			if tt.code == http.StatusPartialContent && string(body) != tt.want {
				t.Fatalf("body %q, want %q", body, tt.want)
			}
		})
	}
}

func TestConditionalRequests(t *testing.T) {
	f := newFixture(t, "")
	f.write(t, "a.txt", "version one")
	resp, _ := do(t, http.MethodGet, f.ts.URL+"/a.txt", nil, nil)
	etag, lastMod := resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")

	tests := []struct {
		name string
		hdr  map[string]string
		code int
	}{
		{"if-none-match same", map[string]string{"If-None-Match": etag}, http.StatusNotModified},
		{"if-none-match other", map[string]string{"If-None-Match": `"abc"`}, http.StatusOK},
		{"if-modified-since same", map[string]string{"If-Modified-Since": lastMod}, http.StatusNotModified},
		{"if-modified-since old", map[string]string{"If-Modified-Since": time.Unix(0, 0).UTC().Format(http.TimeFormat)}, http.StatusOK},
		{"if-range stale", map[string]string{"Range": "bytes=0-1", "If-Range": `"abc"`}, http.StatusOK},
		{"if-range fresh", map[string]string{"Range": "bytes=0-1", "If-Range": etag}, http.StatusPartialContent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, _ := do(t, http.MethodGet, f.ts.URL+"/a.txt", nil, tt.hdr)
			if resp.StatusCode != tt.code {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.code)
			}
		})
	}

	// A changed file gets a fresh digest: the cache is keyed by size, mtime, inode.
	f.write(t, "a.txt", "version two!")
	resp, _ = do(t, http.MethodGet, f.ts.URL+"/a.txt", nil, map[string]string{"If-None-Match": etag})
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Checksum-Sha256") != sha("version two!") {
		t.Fatalf("after change: %d %s", resp.StatusCode, resp.Header.Get("X-Checksum-Sha256"))
	}
}

// rawGet sends a request line exactly as given, bypassing client-side cleaning.
func rawGet(t *testing.T, ts *httptest.Server, target string) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(ts.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", target)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestTraversalRefused(t *testing.T) {
	f := newFixture(t, "")
	f.write(t, "ok.txt", "fine")
	if err := os.WriteFile(filepath.Join(f.outside, "secret"), []byte("TOPSECRET"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(f.outside, "secret"), filepath.Join(f.dir, "abs-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../outside", filepath.Join(f.dir, "rel-dir-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("ok.txt", filepath.Join(f.dir, "inside-link")); err != nil {
		t.Fatal(err)
	}
	targets := []string{
		"/../outside/secret",
		"/sub/../../outside/secret",
		"/%2e%2e/outside/secret",
		"/%2E%2E%2Foutside%2Fsecret",
		"/..%2foutside%2fsecret",
		"/abs-link",
		"/rel-dir-link/secret",
		"/sha256/../outside/secret",
		"/sha256/abs-link",
	}
	for _, target := range targets {
		t.Run(target, func(t *testing.T) {
			code, body := rawGet(t, f.ts, target)
			if strings.Contains(body, "TOPSECRET") || code == http.StatusOK {
				t.Fatalf("%s served: %d %q", target, code, body)
			}
			if code != http.StatusBadRequest && code != http.StatusForbidden && code != http.StatusNotFound {
				t.Fatalf("%s: unexpected status %d", target, code)
			}
		})
	}
	if code, body := rawGet(t, f.ts, "/inside-link"); code != http.StatusOK || body != "fine" {
		t.Fatalf("a symlink inside the directory should be served: %d %q", code, body)
	}
	// The index leaves out links that lead out.
	_, body := do(t, http.MethodGet, f.ts.URL+"/", nil, map[string]string{"Accept": "application/json"})
	var idx []IndexEntry
	if err := json.Unmarshal(body, &idx); err != nil {
		t.Fatal(err)
	}
	for _, e := range idx {
		if e.Name == "abs-link" || e.Name == "rel-dir-link" {
			t.Fatalf("index lists %q, which leads out", e.Name)
		}
	}
}

func TestIndexJSON(t *testing.T) {
	f := newFixture(t, "")
	f.write(t, "b.txt", "bee")
	f.write(t, "a.txt", "a")
	f.write(t, "sub/c.txt", "see")
	resp, body := do(t, http.MethodGet, f.ts.URL+"/", nil, map[string]string{"Accept": "application/json"})
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var raw []map[string]any
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if len(raw) != 3 {
		t.Fatalf("want 3 entries: %s", body)
	}
	for _, k := range []string{"name", "type", "size", "mtime", "sha256"} {
		if _, ok := raw[0][k]; !ok {
			t.Errorf("entry lacks %q: %v", k, raw[0])
		}
	}
	var idx []IndexEntry
	_ = json.Unmarshal(body, &idx)
	want := []IndexEntry{
		{Name: "a.txt", Type: "file", Size: 1, SHA256: sha("a")},
		{Name: "b.txt", Type: "file", Size: 3, SHA256: sha("bee")},
		{Name: "sub", Type: "dir"},
	}
	for i, w := range want {
		got := idx[i]
		if got.Name != w.Name || got.Type != w.Type || got.Size != w.Size || got.SHA256 != w.SHA256 || got.Mtime == 0 {
			t.Errorf("entry %d = %+v, want %+v", i, got, w)
		}
	}
	resp, body = do(t, http.MethodGet, f.ts.URL+"/sub", nil, nil)
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(body), `href="/sub/c.txt"`) {
		t.Fatalf("HTML index: %s %s", resp.Header.Get("Content-Type"), body)
	}
}

func TestDigestEndpoint(t *testing.T) {
	f := newFixture(t, "")
	f.write(t, "d/x.bin", "hello")
	resp, body := do(t, http.MethodGet, f.ts.URL+"/sha256/d/x.bin", nil, nil)
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != sha("hello") {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	f.write(t, "d/x.bin", "hello, again")
	_, body = do(t, http.MethodGet, f.ts.URL+"/sha256/d/x.bin", nil, nil)
	if strings.TrimSpace(string(body)) != sha("hello, again") {
		t.Fatalf("stale digest %q", body)
	}
	if resp, _ := do(t, http.MethodGet, f.ts.URL+"/sha256/d", nil, nil); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("digest of a directory: %d", resp.StatusCode)
	}
}

func TestUploadsDisabled(t *testing.T) {
	f := newFixture(t, "")
	for _, m := range []string{http.MethodPut, http.MethodDelete} {
		resp, _ := do(t, m, f.ts.URL+"/x", strings.NewReader("x"), map[string]string{"Authorization": "Bearer anything"})
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
			t.Fatalf("%s: %d allow=%q", m, resp.StatusCode, resp.Header.Get("Allow"))
		}
	}
	if _, err := os.Stat(filepath.Join(f.dir, "x")); !os.IsNotExist(err) {
		t.Fatal("file written with uploads disabled")
	}
}

func TestUploadAuthAndAtomicity(t *testing.T) {
	f := newFixture(t, "s3cret")
	url := f.ts.URL + "/releases/v1/app.tar"
	tests := []struct {
		name string
		auth string
		code int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"basic auth", "Basic czNjcmV0", http.StatusUnauthorized},
		{"wrong token", "Bearer nope", http.StatusForbidden},
		{"prefix of token", "Bearer s3c", http.StatusForbidden},
		{"right token", "Bearer s3cret", http.StatusCreated},
		{"replace", "Bearer s3cret", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tt.auth != "" {
				hdr["Authorization"] = tt.auth
			}
			resp, body := do(t, http.MethodPut, url, strings.NewReader("payload-"+tt.name), hdr)
			if resp.StatusCode != tt.code {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.code, body)
			}
		})
	}
	got, err := os.ReadFile(filepath.Join(f.dir, "releases/v1/app.tar"))
	if err != nil || string(got) != "payload-replace" {
		t.Fatalf("stored %q, %v", got, err)
	}
	resp, _ := do(t, http.MethodGet, url, nil, nil)
	if resp.Header.Get("X-Checksum-Sha256") != sha("payload-replace") {
		t.Fatalf("digest after upload: %s", resp.Header.Get("X-Checksum-Sha256"))
	}

	// A checksum that does not match leaves the old content in place.
	resp, _ = do(t, http.MethodPut, url, strings.NewReader("corrupted"), map[string]string{
		"Authorization": "Bearer s3cret", "X-Checksum-Sha256": sha("something else")})
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("checksum mismatch: %d", resp.StatusCode)
	}
	resp, _ = do(t, http.MethodPut, url, strings.NewReader("verified"), map[string]string{
		"Authorization": "Bearer s3cret", "X-Checksum-Sha256": sha("verified")})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("checksum match: %d", resp.StatusCode)
	}
	if got, _ := os.ReadFile(filepath.Join(f.dir, "releases/v1/app.tar")); string(got) != "verified" {
		t.Fatalf("stored %q", got)
	}

	// Traversal on upload: never written outside.
	for _, target := range []string{"/../outside/evil", "/%2e%2e/outside/evil"} {
		resp, _ := do(t, http.MethodPut, f.ts.URL+target, strings.NewReader("x"), map[string]string{"Authorization": "Bearer s3cret"})
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("PUT %s: %d", target, resp.StatusCode)
		}
	}
	if err := os.Symlink(f.outside, filepath.Join(f.dir, "out")); err != nil {
		t.Fatal(err)
	}
	resp, _ = do(t, http.MethodPut, f.ts.URL+"/out/evil", strings.NewReader("x"), map[string]string{"Authorization": "Bearer s3cret"})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("PUT through symlink out: %d", resp.StatusCode)
	}
	if ents, _ := os.ReadDir(f.outside); len(ents) != 0 {
		t.Fatalf("written outside: %v", ents)
	}

	// DELETE needs the token too.
	if resp, _ := do(t, http.MethodDelete, url, nil, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("DELETE without token: %d", resp.StatusCode)
	}
	if resp, _ := do(t, http.MethodDelete, url, nil, map[string]string{"Authorization": "Bearer s3cret"}); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %d", resp.StatusCode)
	}
	if resp, _ := do(t, http.MethodGet, url, nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET after DELETE: %d", resp.StatusCode)
	}
	if resp, _ := do(t, http.MethodDelete, url, nil, map[string]string{"Authorization": "Bearer s3cret"}); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("DELETE again: %d", resp.StatusCode)
	}
}

func TestInterruptedUploadLeavesNothing(t *testing.T) {
	f := newFixture(t, "tok")
	f.write(t, "keep.bin", "old content")
	type tc struct {
		name      string
		noTmpfile bool
	}
	for _, tt := range []tc{{"new.bin", false}, {"keep.bin", false}, {"new.bin", true}, {"keep.bin", true}} {
		name := tt.name
		t.Run(fmt.Sprintf("%s/named-temp=%v", tt.name, tt.noTmpfile), func(t *testing.T) {
			noTmpfile = tt.noTmpfile
			defer func() { noTmpfile = false }()
			before := counterValue(t, f.srv.Registry(), "artifactsrv_http_requests_total")
			conn, err := net.Dial("tcp", strings.TrimPrefix(f.ts.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(conn, "PUT /%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok\r\nContent-Length: 1048576\r\n\r\n", name)
			_, _ = conn.Write(bytes.Repeat([]byte("x"), 4096))
			conn.Close()
			testutil.Eventually(t, 5*time.Second, 10*time.Millisecond, func() bool {
				return counterValue(t, f.srv.Registry(), "artifactsrv_http_requests_total") > before
			}, "server to finish the interrupted upload")

			ents, err := os.ReadDir(f.dir)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			if len(names) != 1 || names[0] != "keep.bin" {
				t.Fatalf("directory holds %v after an interrupted upload", names)
			}
			if got, _ := os.ReadFile(filepath.Join(f.dir, "keep.bin")); string(got) != "old content" {
				t.Fatalf("keep.bin = %q", got)
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	f := newFixture(t, "")
	f.write(t, "m.txt", strings.Repeat("z", 1000))
	do(t, http.MethodGet, f.ts.URL+"/m.txt", nil, nil)
	do(t, http.MethodGet, f.ts.URL+"/nope", nil, nil)
	_, body := do(t, http.MethodGet, f.ts.URL+"/metrics", nil, nil)
	for _, want := range []string{
		`artifactsrv_http_requests_total{code="200",method="GET"} 1`,
		`artifactsrv_http_requests_total{code="404",method="GET"} 1`,
		`artifactsrv_http_response_bytes_total`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if v := counterValue(t, f.srv.Registry(), "artifactsrv_http_response_bytes_total"); v < 1000 {
		t.Errorf("bytes sent = %v, want >= 1000", v)
	}
}

func TestPush(t *testing.T) {
	f := newFixture(t, "tok")
	src := filepath.Join(t.TempDir(), "art.bin")
	content := bytes.Repeat([]byte("artifact"), 10000)
	if err := os.WriteFile(src, content, 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Push(context.Background(), src, f.ts.URL+"/up/art.bin", "tok", nil, &out); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(f.dir, "up/art.bin")); !bytes.Equal(got, content) {
		t.Fatal("pushed content differs")
	}
	if !strings.Contains(out.String(), "pushed") || strings.Contains(out.String(), "\r") {
		t.Fatalf("progress on a non-terminal should be one summary line: %q", out.String())
	}
	tests := []struct {
		token string
		class error
	}{
		{"", errdefs.ErrUnauthorized},
		{"wrong", errdefs.ErrForbidden},
	}
	for _, tt := range tests {
		err := Push(context.Background(), src, f.ts.URL+"/up/other.bin", tt.token, nil, nil)
		if !errors.Is(err, tt.class) {
			t.Errorf("token %q: %v, want %v", tt.token, err, tt.class)
		}
	}
	ro := newFixture(t, "")
	if err := Push(context.Background(), src, ro.ts.URL+"/x", "tok", nil, nil); !errors.Is(err, errdefs.ErrForbidden) {
		t.Errorf("push to a read-only server: %v", err)
	}

	// A URL ending in "/" is a directory: the file keeps its name there.
	if err := Push(context.Background(), src, f.ts.URL+"/up/", "tok", nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "up", "art.bin")); err != nil {
		t.Fatalf("push to a directory URL: %v", err)
	}
	// A directory without the "/" is refused with what to do instead, and
	// no message ends in its class's name.
	err := Push(context.Background(), src, f.ts.URL+"/up", "tok", nil, nil)
	if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "PUT to a file under it") || strings.HasSuffix(err.Error(), "conflict") {
		t.Errorf("push onto a directory: %v", err)
	}
	for _, bad := range []string{strings.TrimPrefix(f.ts.URL, "http://") + "/x", "ftp://host/x", "http:///x"} {
		err := Push(context.Background(), src, bad, "tok", nil, nil)
		if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "http") {
			t.Errorf("push to %q: %v", bad, err)
		}
	}
	if err := Push(context.Background(), src, "127.0.0.1:1/x", "tok", nil, nil); err == nil || !strings.Contains(err.Error(), "has no scheme") {
		t.Errorf("push without a scheme: %v", err)
	}
}

func TestServeShutsDownWithContext(t *testing.T) {
	dir := t.TempDir()
	port := testutil.FreePort(t)
	srv, err := New(Options{Dir: dir, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx) }()
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	testutil.Eventually(t, 5*time.Second, 10*time.Millisecond, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "server to answer on %s", url)
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}

// counterValue sums every series of a counter in reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			v += m.GetCounter().GetValue()
		}
	}
	return v
}

// The recorder must keep io.ReaderFrom, or net/http cannot use sendfile.
var _ io.ReaderFrom = (*recorder)(nil)

func TestUploadWithoutTmpfile(t *testing.T) {
	noTmpfile = true
	defer func() { noTmpfile = false }()
	f := newFixture(t, "tok")
	resp, _ := do(t, http.MethodPut, f.ts.URL+"/a/b.bin", strings.NewReader("named path"), map[string]string{"Authorization": "Bearer tok"})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %d", resp.StatusCode)
	}
	ents, _ := os.ReadDir(filepath.Join(f.dir, "a"))
	if len(ents) != 1 || ents[0].Name() != "b.bin" {
		t.Fatalf("directory holds %v", ents)
	}
}
