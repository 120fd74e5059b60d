package webui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/mesolite/mesolite/errdefs"
)

//go:embed assets
var assets embed.FS

// DefaultRefresh is how often the pages fetch their JSON again.
const DefaultRefresh = 2 * time.Second

// Options configures the pages. The zero value suits mesolite's own master
// and agent.
type Options struct {
	// Title is shown in the header and the browser tab; the master passes
	// its --cluster name. Empty: "mesolite master" or "mesolite agent".
	Title string
	// StatePath is the state endpoint the page polls, relative to the
	// page's origin. Empty: "/master/state" (Master) or "/state" (Agent).
	StatePath string
	// FilesPath is the agent's files API prefix. Empty: "/files".
	FilesPath string
	// Refresh is the polling interval of the overview pages and of the log
	// viewer when server-sent events are unavailable. Zero: DefaultRefresh.
	Refresh time.Duration
}

// Master returns the master's web UI, to be mounted at "/". It answers "/"
// (the page; its views are hash routes such as /#/frameworks/ID) and
// /static/..., and 404 for any other path.
func Master(opts Options) http.Handler {
	if opts.StatePath == "" {
		opts.StatePath = "/master/state"
	}
	return newHandler("master", opts, []navLink{
		{ID: "nav-overview", Href: "#/", Label: "Overview"},
		{ID: "nav-frameworks", Href: "#/frameworks", Label: "Frameworks"},
		{ID: "nav-tasks", Href: "#/tasks", Label: "Tasks"},
		{ID: "nav-agents", Href: "#/agents", Label: "Agents"},
	})
}

// Agent returns the agent's web UI, to be mounted at "/": the agent's
// executors at /#/, the sandbox browser at /#/sandbox?path=P and the log
// viewer at /#/file?path=P, where P is a files API path such as
// /frameworks/FW/executors/EX/runs/latest. Like Master, it answers only "/"
// and /static/....
func Agent(opts Options) http.Handler {
	if opts.StatePath == "" {
		opts.StatePath = "/state"
	}
	return newHandler("agent", opts, []navLink{
		{ID: "nav-executors", Href: "#/", Label: "Executors"},
	})
}

type navLink struct{ ID, Href, Label string }

// indexData fills assets/index.html.
type indexData struct {
	App, Title, Version  string
	StatePath, FilesPath string
	RefreshMS            int64
	Nav                  []navLink
	Stylesheet, Icon     string
	Scripts              []string
}

// handler serves one app: its index page and the shared static assets.
type handler struct {
	index     []byte
	indexETag string
	static    map[string]asset
	version   string
}

type asset struct {
	data  []byte
	ctype string
	etag  string
}

// csp keeps the pages to their own origin: scripts, styles and fetches come
// from the server that served the page, no inline script runs (the pages
// have none: index.html loads app.js and its app's script), no plugin
// loads, and no other site may frame them (clickjacking).
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// CSP is the Content-Security-Policy of every page and asset the UI
// serves, for servers that mount it to check or repeat.
const CSP = csp

func newHandler(app string, opts Options, nav []navLink) *handler {
	if opts.FilesPath == "" {
		opts.FilesPath = "/files"
	}
	if opts.Refresh <= 0 {
		opts.Refresh = DefaultRefresh
	}
	if opts.Title == "" {
		opts.Title = "mesolite " + app
	}
	static, version := loadStatic()
	h := &handler{static: static, version: version}

	tmpl := template.Must(template.ParseFS(assets, "assets/index.html"))
	v := "?v=" + version
	var buf bytes.Buffer
	err := tmpl.Execute(&buf, indexData{
		App:        app,
		Title:      opts.Title,
		Version:    version,
		StatePath:  opts.StatePath,
		FilesPath:  strings.TrimSuffix(opts.FilesPath, "/"),
		RefreshMS:  opts.Refresh.Milliseconds(),
		Nav:        nav,
		Stylesheet: "/static/style.css" + v,
		Icon:       "/static/favicon.svg" + v,
		Scripts:    []string{"/static/app.js" + v, "/static/" + app + ".js" + v},
	})
	if err != nil {
		// The template and its data are fixed at build time: a failure
		// here is a programming error that every test would catch.
		panic(fmt.Sprintf("webui: render index: %v", err))
	}
	h.index = buf.Bytes()
	sum := sha256.Sum256(h.index)
	h.indexETag = `"` + hex.EncodeToString(sum[:8]) + `"`
	return h
}

// loadStatic reads the embedded assets once; version changes whenever any
// of them does, so pages can reference them with ?v=version and let
// browsers cache them for good.
func loadStatic() (map[string]asset, string) {
	out := make(map[string]asset)
	var names []string
	err := fs.WalkDir(assets, "assets/static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := assets.ReadFile(p)
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(p, "assets/static/")
		ctype := mime.TypeByExtension(path.Ext(name))
		if ctype == "" {
			ctype = "application/octet-stream"
		}
		sum := sha256.Sum256(data)
		out[name] = asset{data: data, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		names = append(names, name)
		return nil
	})
	if err != nil {
		panic(fmt.Sprintf("webui: read embedded assets: %v", err))
	}
	sort.Strings(names)
	all := sha256.New()
	for _, n := range names {
		fmt.Fprintf(all, "%s %s\n", n, out[n].etag)
	}
	return out, hex.EncodeToString(all.Sum(nil)[:6])
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case p == "/":
		if !allowRead(w, r) {
			return
		}
		hdr := w.Header()
		hdr.Set("Content-Type", "text/html; charset=utf-8")
		hdr.Set("Cache-Control", "no-cache")
		hdr.Set("Content-Security-Policy", csp)
		hdr.Set("X-Content-Type-Options", "nosniff")
		hdr.Set("Referrer-Policy", "same-origin")
		hdr.Set("ETag", h.indexETag)
		http.ServeContent(w, r, "index.html", time.Time{}, bytes.NewReader(h.index))
	case strings.HasPrefix(p, "/static/"):
		a, ok := h.static[strings.TrimPrefix(p, "/static/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if !allowRead(w, r) {
			return
		}
		hdr := w.Header()
		hdr.Set("Content-Type", a.ctype)
		hdr.Set("Content-Security-Policy", csp)
		hdr.Set("X-Content-Type-Options", "nosniff")
		hdr.Set("ETag", a.etag)
		if r.URL.Query().Get("v") == h.version {
			hdr.Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			hdr.Set("Cache-Control", "no-cache")
		}
		http.ServeContent(w, r, p, time.Time{}, bytes.NewReader(a.data))
	default:
		// Mounted at "/", the UI receives every path no endpoint claims;
		// those must stay 404 rather than become the page, or a typo in an
		// API path would answer 200 with HTML.
		http.NotFound(w, r)
	}
}

func allowRead(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	errdefs.MethodNotAllowed(w, r, http.MethodGet, http.MethodHead)
	return false
}
