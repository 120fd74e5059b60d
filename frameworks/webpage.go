package frameworks

import (
	"bytes"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mesolite/mesolite/webui"
)

// The web pages of the built-in frameworks: plain HTML, CSS and JavaScript
// embedded in the binary (no build step), on the cluster pages' style and
// helpers (webui's /static/style.css and /static/app.js), under the pages'
// security headers.

// PageHandler serves a framework's page: "/" is dir/index.html, "/ui/NAME"
// is dir/NAME, "/static/..." webui's shared assets; anything else 404.
func PageHandler(files fs.FS, dir string) http.Handler {
	static := webui.Master(webui.Options{})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/static/") {
			static.ServeHTTP(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "Expecting a 'GET' request, received '"+r.Method+"'", http.StatusMethodNotAllowed)
			return
		}
		name, ctype := "index.html", "text/html; charset=utf-8"
		if r.URL.Path != "/" {
			rest, ok := strings.CutPrefix(r.URL.Path, "/ui/")
			if !ok || rest == "" || strings.Contains(rest, "..") || strings.Contains(rest, "/") {
				http.NotFound(w, r)
				return
			}
			name = rest
			switch {
			case strings.HasSuffix(name, ".js"):
				ctype = "text/javascript; charset=utf-8"
			case strings.HasSuffix(name, ".css"):
				ctype = "text/css; charset=utf-8"
			}
		}
		b, err := fs.ReadFile(files, dir+"/"+name)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", ctype)
		h.Set("Content-Security-Policy", webui.CSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cache-Control", "no-cache")
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(b))
	})
}

// MasterWebURL is the leading master's web UI, from what it said of itself
// when the framework subscribed; "" before that.
func (d *Driver) MasterWebURL() string {
	m := d.MasterInfo()
	if m == nil {
		return ""
	}
	host := m.GetHostname()
	if host == "" {
		host = m.GetAddress().GetIp()
	}
	if host == "" || m.GetPort() == 0 {
		return ""
	}
	return "http://" + host + ":" + strconv.Itoa(int(m.GetPort())) + "/"
}
