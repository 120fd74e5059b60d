package sandbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/internal/testutil"
)

func newFilesServer(t *testing.T, fx *fixture, opts FilesOptions) (*httptest.Server, *FilesHandler) {
	t.Helper()
	opts.Layout = fx.layout
	opts.AgentID = fx.agent
	h := NewFilesHandler(opts)
	mux := http.NewServeMux()
	mux.Handle("/files/", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.Close()
		h.Close()
	})
	return srv, h
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func get(t *testing.T, srv *httptest.Server, endpoint string, q url.Values, hdr ...string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+endpoint+"?"+q.Encode(), nil)
	must(t, err)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := srv.Client().Do(req)
	must(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	must(t, err)
	return answer{resp.StatusCode, resp.Header, b}
}

func TestBrowse(t *testing.T) {
	fx := newFixture(t)
	srv, _ := newFilesServer(t, fx, FilesOptions{})
	v := "/frameworks/fw1/executors/exec1/runs/c1"

	a := get(t, srv, "/files/browse", url.Values{"path": {v}})
	if a.status != 200 || a.header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d type %q: %s", a.status, a.header.Get("Content-Type"), a.body)
	}
	// Mesos's FileInfo keys, nothing more, in Mesos's (sorted) order.
	var raw []map[string]json.RawMessage
	must(t, json.Unmarshal(a.body, &raw))
	for _, e := range raw {
		keys := slices.Sorted(func(yield func(string) bool) {
			for k := range e {
				if !yield(k) {
					return
				}
			}
		})
		if want := []string{"gid", "mode", "mtime", "nlink", "path", "size", "uid"}; !slices.Equal(keys, want) {
			t.Fatalf("entry keys %v, want %v", keys, want)
		}
	}
	if !strings.HasPrefix(string(a.body), `[{"gid":`) {
		t.Fatalf("key order differs from Mesos: %.60s", a.body)
	}
	type entry struct {
		Path  string `json:"path"`
		Mode  string `json:"mode"`
		Size  int64  `json:"size"`
		Mtime int64  `json:"mtime"`
		Nlink int64  `json:"nlink"`
		UID   string `json:"uid"`
		GID   string `json:"gid"`
	}
	var entries []entry
	must(t, json.Unmarshal(a.body, &entries))
	byName := map[string]entry{}
	var names []string
	for _, e := range entries {
		names = append(names, e.Path)
		byName[filepath.Base(e.Path)] = e
	}
	if !slices.IsSorted(names) {
		t.Fatalf("listing not sorted: %v", names)
	}
	stdout := byName["stdout"]
	if stdout.Path != v+"/stdout" || stdout.Mode != "-rw-r--r--" || stdout.Size != 6 || stdout.Nlink != 1 {
		t.Fatalf("stdout entry %+v", stdout)
	}
	if time.Since(time.Unix(stdout.Mtime, 0)) > time.Hour || stdout.UID == "" || stdout.GID == "" {
		t.Fatalf("stdout entry %+v", stdout)
	}
	if sub := byName["sub"]; sub.Mode != "drwxr-xr-x" {
		t.Fatalf("sub entry %+v", sub)
	}
	if in := byName["inside"]; in.Mode != "-rw-r--r--" || in.Size != 4 {
		t.Fatalf("a link inside the sandbox shows its target: %+v", in)
	}
	// A link out shows as the link itself: nothing about its target leaks.
	if out := byName["escape_abs"]; !strings.HasPrefix(out.Mode, "l") || out.Size == 7 {
		t.Fatalf("escaping link entry %+v", out)
	}

	tests := []struct {
		name   string
		q      url.Values
		status int
		body   string
	}{
		{"file gives empty list", url.Values{"path": {v + "/stdout"}}, 200, "[]"},
		{"subdir", url.Values{"path": {v + "/sub/"}}, 200, ""},
		{"latest", url.Values{"path": {"/frameworks/fw1/executors/exec1/runs/latest"}}, 200, ""},
		{"host path", url.Values{"path": {fx.layout.RunDir(fx.c1)}}, 200, ""},
		{"no path", url.Values{}, 400, ""},
		{"empty path", url.Values{"path": {""}}, 400, ""},
		{"missing", url.Values{"path": {v + "/nope"}}, 404, ""},
		{"dotdot", url.Values{"path": {v + "/.."}}, 403, ""},
		{"link out", url.Values{"path": {v + "/escape_exec"}}, 403, ""},
		{"bad jsonp", url.Values{"path": {v}, "jsonp": {"alert(1)"}}, 400, ""},
		{"legacy suffix", url.Values{"path": {v + "/stdout"}}, 200, "[]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ep := "/files/browse"
			if tt.name == "legacy suffix" {
				ep = "/files/browse.json"
			}
			a := get(t, srv, ep, tt.q)
			if a.status != tt.status {
				t.Fatalf("status %d, want %d: %s", a.status, tt.status, a.body)
			}
			if tt.body != "" && string(a.body) != tt.body {
				t.Fatalf("body %s, want %s", a.body, tt.body)
			}
			if a.status == 200 && tt.name == "subdir" && !strings.Contains(string(a.body), `"path":"`+v+`/sub/file.txt"`) {
				t.Fatalf("subdir listing: %s", a.body)
			}
		})
	}
}

func TestRead(t *testing.T) {
	fx := newFixture(t)
	srv, _ := newFilesServer(t, fx, FilesOptions{})
	v := "/frameworks/fw1/executors/exec1/runs/c1"
	big := strings.Repeat("0123456789abcdef", 100<<10/16) // 100 KiB
	writeFile(t, filepath.Join(fx.layout.RunDir(fx.c1), "big"), big)

	tests := []struct {
		name       string
		q          url.Values
		status     int
		wantData   string
		wantOffset int64
	}{
		{"no offset gives size", url.Values{"path": {v + "/stdout"}}, 200, "", 6},
		{"offset -1 gives size", url.Values{"path": {v + "/stdout"}, "offset": {"-1"}}, 200, "", 6},
		{"offset -1 ignores length", url.Values{"path": {v + "/stdout"}, "offset": {"-1"}, "length": {"3"}}, 200, "", 6},
		{"whole file", url.Values{"path": {v + "/stdout"}, "offset": {"0"}}, 200, "hello\n", 0},
		{"slice", url.Values{"path": {v + "/stdout"}, "offset": {"1"}, "length": {"3"}}, 200, "ell", 1},
		{"length -1 reads to end", url.Values{"path": {v + "/stdout"}, "offset": {"2"}, "length": {"-1"}}, 200, "llo\n", 2},
		{"length 0", url.Values{"path": {v + "/stdout"}, "offset": {"2"}, "length": {"0"}}, 200, "", 2},
		{"past the end echoes offset", url.Values{"path": {v + "/stdout"}, "offset": {"100"}}, 200, "", 100},
		{"capped at 16 pages", url.Values{"path": {v + "/big"}, "offset": {"0"}, "length": {"1000000"}}, 200, big[:DefaultMaxReadLength], 0},
		{"link inside", url.Values{"path": {v + "/inside"}, "offset": {"0"}}, 200, "data", 0},
		{"latest", url.Values{"path": {"/frameworks/fw1/executors/exec1/runs/latest/stdout"}, "offset": {"0"}}, 200, "hello\n", 0},

		{"offset -2", url.Values{"path": {v + "/stdout"}, "offset": {"-2"}}, 400, "", 0},
		{"offset not a number", url.Values{"path": {v + "/stdout"}, "offset": {"x"}}, 400, "", 0},
		{"length -2", url.Values{"path": {v + "/stdout"}, "offset": {"0"}, "length": {"-2"}}, 400, "", 0},
		{"length not a number", url.Values{"path": {v + "/stdout"}, "length": {"1.5"}}, 400, "", 0},
		{"directory", url.Values{"path": {v + "/sub"}, "offset": {"0"}}, 400, "", 0},
		{"no path", url.Values{"offset": {"0"}}, 400, "", 0},
		{"missing", url.Values{"path": {v + "/nope"}}, 404, "", 0},
		{"link out", url.Values{"path": {v + "/escape_abs"}, "offset": {"0"}}, 403, "", 0},
		{"dotdot", url.Values{"path": {v + "/../c0/stdout"}, "offset": {"0"}}, 403, "", 0},
		{"double encoded dotdot is a name", url.Values{"path": {v + "/%2e%2e/c0/stdout"}}, 404, "", 0},
		{"forged latest", url.Values{"path": {"/frameworks/fw1/executors/exec3/runs/latest/stdout"}}, 403, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, ep := range []string{"/files/read", "/files/read.json"} {
				a := get(t, srv, ep, tt.q)
				if a.status != tt.status {
					t.Fatalf("%s: status %d, want %d: %s", ep, a.status, tt.status, a.body)
				}
				if a.status != 200 {
					if strings.Contains(string(a.body), "SECRET") {
						t.Fatalf("error body leaks: %s", a.body)
					}
					continue
				}
				if !strings.HasPrefix(string(a.body), `{"data":`) {
					t.Fatalf("key order differs from Mesos: %.40s", a.body)
				}
				var got struct {
					Data   *string `json:"data"`
					Offset *int64  `json:"offset"`
				}
				must(t, json.Unmarshal(a.body, &got))
				if got.Data == nil || got.Offset == nil {
					t.Fatalf("missing keys: %s", a.body)
				}
				if *got.Data != tt.wantData || *got.Offset != tt.wantOffset {
					t.Fatalf("got data %d bytes offset %d, want %d bytes offset %d", len(*got.Data), *got.Offset, len(tt.wantData), tt.wantOffset)
				}
			}
		})
	}
}

func TestReadBinaryAndJSONP(t *testing.T) {
	fx := newFixture(t)
	srv, _ := newFilesServer(t, fx, FilesOptions{})
	v := "/frameworks/fw1/executors/exec1/runs/c1"
	var all []byte
	for i := range 256 {
		all = append(all, byte(i))
	}
	all = append(all, "\u2028 é ✓ \"q\" \\ </script>"...)
	must(t, os.WriteFile(filepath.Join(fx.layout.RunDir(fx.c1), "bin"), all, 0o644))

	a := get(t, srv, "/files/read", url.Values{"path": {v + "/bin"}, "offset": {"0"}})
	if a.status != 200 {
		t.Fatalf("status %d: %s", a.status, a.body)
	}
	var raw struct {
		Data json.RawMessage `json:"data"`
	}
	must(t, json.Unmarshal(a.body, &raw))
	data, err := DecodeJSONString(raw.Data)
	must(t, err)
	if string(data) != string(all) {
		t.Fatalf("bytes do not round-trip:\n got %q\nwant %q", data, all)
	}
	if strings.ContainsAny(string(raw.Data), "\n\r\x00") {
		t.Fatalf("raw control characters in JSON: %q", raw.Data)
	}
	a = get(t, srv, "/files/read", url.Values{"path": {v + "/bin"}, "offset": {"0"}, "jsonp": {"cb"}})
	if strings.Contains(string(a.body), "\u2028") || !strings.Contains(string(a.body), `\u2028`) {
		t.Fatalf("JSONP must escape U+2028: %q", a.body)
	}

	a = get(t, srv, "/files/read", url.Values{"path": {v + "/stdout"}, "offset": {"0"}, "jsonp": {"angular.callbacks._0"}})
	if a.status != 200 || a.header.Get("Content-Type") != "text/javascript" {
		t.Fatalf("status %d type %q", a.status, a.header.Get("Content-Type"))
	}
	if want := `angular.callbacks._0({"data":"hello\n","offset":0});`; string(a.body) != want {
		t.Fatalf("jsonp body %s, want %s", a.body, want)
	}
	a = get(t, srv, "/files/debug", url.Values{"jsonp": {"cb"}})
	if a.status != 200 || string(a.body) != "cb({});" {
		t.Fatalf("debug jsonp: %d %s", a.status, a.body)
	}
}

func TestJSONStringRoundTrip(t *testing.T) {
	for _, s := range []string{"", "plain", "a\"b\\c\n\r\t\b\f\x00\x1f\x7f", "\xff\xfe invalid", "\u2028\u2029", "é✓😀", "\xe2\x80"} {
		enc := appendJSONString(nil, []byte(s), true)
		dec, err := DecodeJSONString(enc)
		if err != nil || string(dec) != s {
			t.Errorf("round trip %q: %q %v", s, dec, err)
		}
		if !strings.Contains(s, "\xff") && !strings.Contains(s, "\xe2\x80") {
			var std string
			if err := json.Unmarshal(enc, &std); err != nil || std != s {
				t.Errorf("encoding/json reads %s as %q, %v", enc, std, err)
			}
		}
	}
	// Standard escapes from other encoders decode too.
	dec, err := DecodeJSONString([]byte(`"\u00e9\/\ud83d\ude00\ud800"`))
	if err != nil || string(dec) != "é/😀\uFFFD" {
		t.Fatalf("decode = %q, %v", dec, err)
	}
	for _, bad := range []string{``, `"`, `"\"`, `"\x"`, `"\u12"`, `"a"b"`} {
		if _, err := DecodeJSONString([]byte(bad)); err == nil {
			t.Errorf("DecodeJSONString(%s) accepted", bad)
		}
	}
}

func TestDownload(t *testing.T) {
	fx := newFixture(t)
	srv, _ := newFilesServer(t, fx, FilesOptions{})
	v := "/frameworks/fw1/executors/exec1/runs/c1"

	a := get(t, srv, "/files/download", url.Values{"path": {v + "/stdout"}})
	if a.status != 200 || string(a.body) != "hello\n" {
		t.Fatalf("status %d body %q", a.status, a.body)
	}
	if got := a.header.Get("Content-Disposition"); got != "attachment; filename=stdout" {
		t.Fatalf("Content-Disposition %q", got)
	}
	if got := a.header.Get("Content-Type"); got != "application/octet-stream" {
		t.Fatalf("Content-Type %q", got)
	}
	a = get(t, srv, "/files/download.json", url.Values{"path": {v + "/sub/file.txt"}})
	if a.status != 200 || !strings.HasPrefix(a.header.Get("Content-Type"), "text/plain") || a.header.Get("Content-Disposition") != "attachment; filename=file.txt" {
		t.Fatalf("status %d headers %v", a.status, a.header)
	}
	a = get(t, srv, "/files/download", url.Values{"path": {v + "/stdout"}}, "Range", "bytes=1-3")
	if a.status != http.StatusPartialContent || string(a.body) != "ell" || a.header.Get("Content-Range") != "bytes 1-3/6" {
		t.Fatalf("range: status %d body %q headers %v", a.status, a.body, a.header)
	}
	for _, tt := range []struct {
		path   string
		status int
	}{
		{v + "/sub", 400},
		{v + "/nope", 404},
		{v + "/escape_abs", 403},
		{v + "/escape_rel", 403},
		{"", 400},
	} {
		if a := get(t, srv, "/files/download", url.Values{"path": {tt.path}}); a.status != tt.status {
			t.Errorf("download %q: status %d, want %d: %s", tt.path, a.status, tt.status, a.body)
		}
	}
}

func TestNonRegularFilesAreRefused(t *testing.T) {
	fx := newFixture(t)
	srv, _ := newFilesServer(t, fx, FilesOptions{})
	v := "/frameworks/fw1/executors/exec1/runs/c1"
	if err := syscall.Mkfifo(filepath.Join(fx.layout.RunDir(fx.c1), "fifo"), 0o644); err != nil {
		testutil.Require(t, false, fmt.Sprintf("test needs mkfifo: %v", err))
	}
	// Opening a FIFO for reading would block until a writer comes; the
	// handler must answer at once instead.
	for _, ep := range []string{"/files/read", "/files/download", "/files/stream"} {
		a := get(t, srv, ep, url.Values{"path": {v + "/fifo"}, "offset": {"0"}})
		if a.status != 400 {
			t.Errorf("%s of a fifo: status %d: %s", ep, a.status, a.body)
		}
	}
}

// TestHardLinkedHostFileIsRefused is a task (running as root, where it
// can) that hard-links a host secret into its sandbox for the files API,
// which reads as root, to serve.
func TestHardLinkedHostFileIsRefused(t *testing.T) {
	fx := newFixture(t)
	srv, _ := newFilesServer(t, fx, FilesOptions{})
	secret := filepath.Join(t.TempDir(), "shadow")
	if err := os.WriteFile(secret, []byte("root:$6$secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(secret, filepath.Join(fx.layout.RunDir(fx.c1), "shadow")); err != nil {
		t.Fatal(err)
	}
	v := "/frameworks/fw1/executors/exec1/runs/c1/shadow"
	for _, ep := range []string{"/files/read", "/files/download", "/files/stream"} {
		a := get(t, srv, ep, url.Values{"path": {v}, "offset": {"0"}})
		if a.status != 403 || strings.Contains(string(a.body), "secret") {
			t.Errorf("%s of a hard-linked host file: status %d: %s", ep, a.status, a.body)
		}
	}
}

func TestDebugAttachDetach(t *testing.T) {
	fx := newFixture(t)
	srv, h := newFilesServer(t, fx, FilesOptions{})
	h.Attach(fx.c1)
	a := get(t, srv, "/files/debug", nil)
	var m map[string]string
	must(t, json.Unmarshal(a.body, &m))
	dir := fx.layout.RunDir(fx.c1)
	want := map[string]string{
		dir: dir,
		"/frameworks/fw1/executors/exec1/runs/c1":     dir,
		"/frameworks/fw1/executors/exec1/runs/latest": dir,
	}
	if len(m) != len(want) {
		t.Fatalf("debug = %v, want %v", m, want)
	}
	for k, v := range want {
		if m[k] != v {
			t.Fatalf("debug[%q] = %q, want %q", k, m[k], v)
		}
	}
	h.Detach(fx.c1)
	a = get(t, srv, "/files/debug.json", nil)
	if string(a.body) != "{}" {
		t.Fatalf("after detach: %s", a.body)
	}
}

func TestCollectedAnswers404GarbageCollected(t *testing.T) {
	fx := newFixture(t)
	gc, err := NewGC(GCOptions{Root: fx.work, Delay: time.Hour, Mounts: noMounts, DiskUsage: func() (float64, error) { return 0, nil }})
	must(t, err)
	srv, _ := newFilesServer(t, fx, FilesOptions{Collected: gc.Collected})
	dir := fx.layout.RunDir(fx.c0)
	must(t, gc.Schedule(dir, time.Now().Add(-2*time.Hour)))
	if n := gc.Collect(t.Context()); n != 1 {
		t.Fatalf("collected %d", n)
	}
	for _, ep := range []string{"/files/read", "/files/browse", "/files/download", "/files/stream"} {
		a := get(t, srv, ep, url.Values{"path": {"/frameworks/fw1/executors/exec1/runs/c0/stdout"}})
		if a.status != 404 || !strings.Contains(string(a.body), "garbage collected") {
			t.Errorf("%s: %d %s", ep, a.status, a.body)
		}
	}
	a := get(t, srv, "/files/read", url.Values{"path": {"/frameworks/fw1/executors/exec1/runs/c7/stdout"}})
	if a.status != 404 || strings.Contains(string(a.body), "garbage collected") {
		t.Errorf("a run that never existed: %d %s", a.status, a.body)
	}
}

func TestAuthorizeAndMethods(t *testing.T) {
	fx := newFixture(t)
	srv, _ := newFilesServer(t, fx, FilesOptions{Authorize: func(r *http.Request, id RunID) error {
		if id.ExecutorID == "exec2" {
			return errors.New("authorizer down")
		}
		return nil
	}})
	a := get(t, srv, "/files/read", url.Values{"path": {"/frameworks/fw1/executors/exec2/runs/c2/stdout"}})
	if a.status != 500 {
		t.Fatalf("an unclassified authorizer error must be a 500, got %d", a.status)
	}
	srv2, _ := newFilesServer(t, fx, FilesOptions{Authorize: func(r *http.Request, id RunID) error {
		if id.ExecutorID == "exec2" {
			return errdefs.ErrForbidden
		}
		return nil
	}})
	if a := get(t, srv2, "/files/read", url.Values{"path": {"/frameworks/fw1/executors/exec2/runs/c2/stdout"}}); a.status != 403 {
		t.Fatalf("forbidden run: %d", a.status)
	}
	if a := get(t, srv2, "/files/read", url.Values{"path": {"/frameworks/fw1/executors/exec1/runs/c1/stdout"}}); a.status != 200 {
		t.Fatalf("allowed run: %d", a.status)
	}
	resp, err := srv2.Client().Post(srv2.URL+"/files/read?path=x", "text/plain", nil)
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", resp.StatusCode)
	}
	if a := get(t, srv2, "/files/nope", nil); a.status != 404 {
		t.Fatalf("unknown endpoint: %d", a.status)
	}
}

func noMounts() ([]string, error) { return nil, nil }

// TestJSONStringMatchesReference compares the word-at-a-time encoder with a
// byte-at-a-time one on random inputs rich in the bytes it must catch.
func TestJSONStringMatchesReference(t *testing.T) {
	ref := func(src []byte, js bool) []byte {
		out := []byte{'"'}
		for i := 0; i < len(src); i++ {
			c := src[i]
			switch {
			case c == '"' || c == '\\':
				out = append(out, '\\', c)
			case c == '\n':
				out = append(out, `\n`...)
			case c == '\r':
				out = append(out, `\r`...)
			case c == '\t':
				out = append(out, `\t`...)
			case c == '\b':
				out = append(out, `\b`...)
			case c == '\f':
				out = append(out, `\f`...)
			case c < 0x20:
				out = append(out, fmt.Sprintf(`\u%04x`, c)...)
			case js && c == 0xE2 && i+2 < len(src) && src[i+1] == 0x80 && (src[i+2] == 0xA8 || src[i+2] == 0xA9):
				out = append(out, fmt.Sprintf(`\u%04x`, 0x2000|uint16(src[i+2]&0xF)|0x20)...)
				i += 2
			default:
				out = append(out, c)
			}
		}
		return append(out, '"')
	}
	alphabet := []byte("abcXYZ019 \"\\\n\r\t\x00\x01\x1f\x7f\x80\xa8\xa9\xe2\xff")
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		src := make([]byte, rng.IntN(70))
		for i := range src {
			if rng.IntN(4) == 0 {
				src[i] = alphabet[rng.IntN(len(alphabet))]
			} else {
				src[i] = byte('a' + rng.IntN(26))
			}
		}
		for _, js := range []bool{true, false} {
			got, want := appendJSONString(nil, src, js), ref(src, js)
			if !bytes.Equal(got, want) {
				t.Fatalf("encode(%q, js=%v)\n got %s\nwant %s", src, js, got, want)
			}
			if dec, err := DecodeJSONString(got); err != nil || !bytes.Equal(dec, src) {
				t.Fatalf("decode(encode(%q)) = %q, %v", src, dec, err)
			}
		}
	}
}
