package apps

import (
	"bytes"
	"embed"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mesolite/mesolite/webui"
)

// The web page at /: plain HTML and JavaScript embedded in the binary
// (ui/), no build step. It reuses the cluster pages' style and helpers
// (webui's /static/style.css and /static/app.js, served here by webui's
// own handler) and reads only the service's Marathon API.

//go:embed ui
var uiFiles embed.FS

// uiStatic serves webui's shared assets under /static/.
var uiStatic = webui.Master(webui.Options{})

// handleUI serves the page (/) and its own files (/ui/...).
func (s *Service) handleUI(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, r, http.MethodGet)
		return
	}
	name := "ui/index.html"
	ctype := "text/html; charset=utf-8"
	if r.URL.Path != "/" {
		name = strings.TrimPrefix(r.URL.Path, "/")
		switch {
		case strings.HasSuffix(name, ".js"):
			ctype = "text/javascript; charset=utf-8"
		case strings.HasSuffix(name, ".css"):
			ctype = "text/css; charset=utf-8"
		}
	}
	b, err := uiFiles.ReadFile(name)
	if err != nil || strings.Contains(name, "..") {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", ctype)
	// The pages' policy: their own origin only, no inline script, no
	// framing.
	h.Set("Content-Security-Policy", webui.CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(b))
}

// masterUIURL is the leading master's web UI, from what it said of
// itself when the framework subscribed; "" before that.
func (s *Service) masterUIURL() string {
	m := s.driver.MasterInfo()
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
