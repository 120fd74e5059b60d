package webui

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, target string, hdr map[string]string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestIndex(t *testing.T) {
	for _, tc := range []struct {
		name    string
		h       http.Handler
		want    []string
		notWant []string
	}{
		{
			name: "master",
			h:    Master(Options{}),
			want: []string{`data-app="master"`, `data-state-url="/master/state"`, `data-refresh-ms="2000"`,
				`id="nav-frameworks"`, `id="nav-agents"`, `id="nav-overview"`, "/static/master.js?v=", "/static/app.js?v=",
				"/static/style.css?v=", `<title>mesolite master</title>`},
			notWant: []string{"agent.js", "http://", "https://"},
		},
		{
			name: "agent",
			h:    Agent(Options{FilesPath: "/files/"}),
			want: []string{`data-app="agent"`, `data-state-url="/state"`, `data-files-url="/files"`,
				`id="nav-executors"`, "/static/agent.js?v=", `<title>mesolite agent</title>`},
			notWant: []string{"master.js", "http://", "https://"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := get(t, tc.h, http.MethodGet, "/", nil)
			if r.StatusCode != http.StatusOK {
				t.Fatalf("GET / = %d", r.StatusCode)
			}
			if ct := r.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
				t.Errorf("Content-Type = %q", ct)
			}
			if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
				t.Errorf("Content-Security-Policy = %q", csp)
			}
			if r.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("no nosniff")
			}
			b := body(t, r)
			for _, w := range tc.want {
				if !strings.Contains(b, w) {
					t.Errorf("index lacks %q", w)
				}
			}
			// No CDN, no absolute URL: the page must work air-gapped.
			for _, w := range tc.notWant {
				if strings.Contains(b, w) {
					t.Errorf("index contains %q", w)
				}
			}
			head := get(t, tc.h, http.MethodHead, "/", nil)
			if head.StatusCode != http.StatusOK || body(t, head) != "" {
				t.Errorf("HEAD / = %d", head.StatusCode)
			}
			etag := r.Header.Get("ETag")
			again := get(t, tc.h, http.MethodGet, "/", map[string]string{"If-None-Match": etag})
			if etag == "" || again.StatusCode != http.StatusNotModified {
				t.Errorf("revalidation with ETag %q = %d, want 304", etag, again.StatusCode)
			}
		})
	}
}

func TestIndexOptions(t *testing.T) {
	h := Master(Options{Title: `prod <script>alert(1)</script>`, StatePath: "/x/state", Refresh: 500e6})
	b := body(t, get(t, h, http.MethodGet, "/", nil))
	if strings.Contains(b, "<script>alert(1)") {
		t.Errorf("title not escaped:\n%s", b)
	}
	for _, w := range []string{"prod &lt;script&gt;", `data-state-url="/x/state"`, `data-refresh-ms="500"`} {
		if !strings.Contains(b, w) {
			t.Errorf("index lacks %q", w)
		}
	}
}

// TestIndexAssetsExist follows every /static/ reference of both pages.
func TestIndexAssetsExist(t *testing.T) {
	ref := regexp.MustCompile(`(?:src|href)="(/static/[^"]+)"`)
	for name, h := range map[string]http.Handler{"master": Master(Options{}), "agent": Agent(Options{})} {
		t.Run(name, func(t *testing.T) {
			refs := ref.FindAllStringSubmatch(body(t, get(t, h, http.MethodGet, "/", nil)), -1)
			if len(refs) < 4 {
				t.Fatalf("found %d asset references, want icon, stylesheet and two scripts", len(refs))
			}
			for _, m := range refs {
				target := strings.ReplaceAll(m[1], "&amp;", "&")
				r := get(t, h, http.MethodGet, target, nil)
				if r.StatusCode != http.StatusOK {
					t.Errorf("GET %s = %d", target, r.StatusCode)
				}
				if cc := r.Header.Get("Cache-Control"); !strings.Contains(cc, "immutable") {
					t.Errorf("GET %s: Cache-Control %q, want a long-lived versioned asset", target, cc)
				}
			}
		})
	}
}

func TestStatic(t *testing.T) {
	h := Master(Options{})
	for _, tc := range []struct {
		path, ctype, contains string
	}{
		{"/static/app.js", "text/javascript; charset=utf-8", "const ML"},
		{"/static/master.js", "text/javascript; charset=utf-8", "/master/redirect"},
		{"/static/agent.js", "text/javascript; charset=utf-8", "EventSource"},
		{"/static/style.css", "text/css; charset=utf-8", ".log"},
		{"/static/favicon.svg", "image/svg+xml", "<svg"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			r := get(t, h, http.MethodGet, tc.path, nil)
			if r.StatusCode != http.StatusOK {
				t.Fatalf("GET %s = %d", tc.path, r.StatusCode)
			}
			if ct := r.Header.Get("Content-Type"); ct != tc.ctype {
				t.Errorf("Content-Type = %q, want %q", ct, tc.ctype)
			}
			if r.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("no nosniff")
			}
			if cc := r.Header.Get("Cache-Control"); cc != "no-cache" {
				t.Errorf("unversioned Cache-Control = %q, want no-cache", cc)
			}
			if b := body(t, r); !strings.Contains(b, tc.contains) {
				t.Errorf("body lacks %q", tc.contains)
			}
			etag := r.Header.Get("ETag")
			if again := get(t, h, http.MethodGet, tc.path, map[string]string{"If-None-Match": etag}); etag == "" || again.StatusCode != http.StatusNotModified {
				t.Errorf("revalidation with ETag %q = %d, want 304", etag, again.StatusCode)
			}
		})
	}
}

func TestNotFoundAndMethods(t *testing.T) {
	for name, h := range map[string]http.Handler{"master": Master(Options{}), "agent": Agent(Options{})} {
		t.Run(name, func(t *testing.T) {
			for _, p := range []string{
				"/static/", "/static/nope.js", "/static/../webui.go", "/static/static/app.js", "/static/index.html",
				"/index.html", "/assets/index.html", "/master/state", "/state", "/files/browse", "/nope", "/frameworks",
			} {
				if r := get(t, h, http.MethodGet, p, nil); r.StatusCode != http.StatusNotFound {
					t.Errorf("GET %s = %d, want 404", p, r.StatusCode)
				}
			}
			for _, p := range []string{"/", "/static/app.js"} {
				r := get(t, h, http.MethodPost, p, nil)
				if r.StatusCode != http.StatusMethodNotAllowed || r.Header.Get("Allow") != "GET, HEAD" {
					t.Errorf("POST %s = %d (Allow %q), want 405", p, r.StatusCode, r.Header.Get("Allow"))
				}
			}
		})
	}
}

// TestMountedBesideEndpoints mounts the UIs at "/" of a mux the way master
// and agent do and checks that every endpoint still answers for itself.
func TestMountedBesideEndpoints(t *testing.T) {
	endpoint := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"endpoint":"`+name+`"}`)
		})
	}
	for _, tc := range []struct {
		name      string
		ui        http.Handler
		endpoints []string // mux patterns
		probes    map[string]string
	}{
		{
			name:      "master",
			ui:        Master(Options{}),
			endpoints: []string{"/api/v1/scheduler", "/api/v1", "/master/", "/metrics", "/metrics/snapshot", "/state", "/state.json", "/health"},
			probes: map[string]string{
				"/api/v1/scheduler":   "/api/v1/scheduler",
				"/api/v1":             "/api/v1",
				"/master/state":       "/master/",
				"/master/state.json":  "/master/",
				"/master/redirect":    "/master/",
				"/metrics":            "/metrics",
				"/metrics/snapshot":   "/metrics/snapshot",
				"/state":              "/state",
				"/state.json":         "/state.json",
				"/health":             "/health",
				"/master/health?x=1":  "/master/",
				"/static/../metrics":  "/metrics", // the mux cleans the path first
				"/api/v1/scheduler/x": "",         // no endpoint: the UI's 404
			},
		},
		{
			name:      "agent",
			ui:        Agent(Options{}),
			endpoints: []string{"/api/v1/executor", "/files/", "/state", "/slave(1)/state", "/metrics", "/monitor/statistics", "/containers", "/flags", "/health"},
			probes: map[string]string{
				"/api/v1/executor":                   "/api/v1/executor",
				"/files/browse?path=/x":              "/files/",
				"/files/stream?path=/x&follow=true":  "/files/",
				"/files/read?path=/x&offset=-1":      "/files/",
				"/state":                             "/state",
				"/slave(1)/state":                    "/slave(1)/state",
				"/metrics":                           "/metrics",
				"/monitor/statistics":                "/monitor/statistics",
				"/containers":                        "/containers",
				"/flags":                             "/flags",
				"/health":                            "/health",
				"/sandbox":                           "",
				"/frameworks/fw/executors/e/runs/l/": "",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mux := http.NewServeMux()
			for _, p := range tc.endpoints {
				mux.Handle(p, endpoint(p))
			}
			mux.Handle("/", tc.ui)
			srv := httptest.NewServer(mux)
			defer srv.Close()
			fetch := func(p string) (int, string, string) {
				resp, err := http.Get(srv.URL + p)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
			}
			for p, want := range tc.probes {
				code, _, b := fetch(p)
				if want == "" {
					if code != http.StatusNotFound {
						t.Errorf("GET %s = %d %q, want the UI's 404", p, code, b)
					}
					continue
				}
				if code != http.StatusOK || b != `{"endpoint":"`+want+`"}` {
					t.Errorf("GET %s = %d %q, want endpoint %s", p, code, b, want)
				}
			}
			if code, ct, b := fetch("/"); code != http.StatusOK || !strings.HasPrefix(ct, "text/html") || !strings.Contains(b, `data-app="`+tc.name+`"`) {
				t.Errorf("GET / = %d %s, want the %s page", code, ct, tc.name)
			}
			if code, ct, _ := fetch("/static/app.js"); code != http.StatusOK || !strings.HasPrefix(ct, "text/javascript") {
				t.Errorf("GET /static/app.js = %d %s", code, ct)
			}
		})
	}
}

// TestContentSecurityPolicy: every page and asset carries the policy, which
// allows scripts from the UI's own origin only, no plugins and no framing;
// the index has no inline script the policy would have to allow.
func TestContentSecurityPolicy(t *testing.T) {
	for _, h := range []http.Handler{Master(Options{}), Agent(Options{})} {
		idx := get(t, h, http.MethodGet, "/", nil)
		page := body(t, idx)
		paths := []string{"/"}
		for _, m := range regexp.MustCompile(`(?:src|href)="(/static/[^"]+)"`).FindAllStringSubmatch(page, -1) {
			paths = append(paths, m[1])
		}
		if len(paths) < 4 {
			t.Fatalf("index references %v", paths)
		}
		for _, p := range paths {
			r := get(t, h, http.MethodGet, p, nil)
			csp := r.Header.Get("Content-Security-Policy")
			for _, want := range []string{"script-src 'self'", "object-src 'none'", "frame-ancestors 'none'", "base-uri 'none'"} {
				if !strings.Contains(csp, want) {
					t.Errorf("%s: Content-Security-Policy %q lacks %q", p, csp, want)
				}
			}
			if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
				t.Errorf("%s: Content-Security-Policy %q allows inline code", p, csp)
			}
			if r.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("%s: no nosniff", p)
			}
		}
		if m := regexp.MustCompile(`<script(?:\s[^>]*)?>`).FindAllString(page, -1); len(m) == 0 {
			t.Fatal("no script tags")
		} else {
			for _, tag := range m {
				if !strings.Contains(tag, "src=") {
					t.Errorf("inline script %s", tag)
				}
			}
		}
		if regexp.MustCompile(`\son[a-z]+=`).MatchString(page) {
			t.Errorf("inline event handler in the index")
		}
	}
}
