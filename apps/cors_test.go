package apps

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// --access_control_allow_origin: the origins listed (or any, with *) may
// read the API from a page; a preflight is answered without credentials;
// other origins, and every origin without the flag, get no CORS headers.
func TestAllowingOrigins(t *testing.T) {
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	for _, c := range []struct {
		name                string
		origins             []string
		method, origin      string
		wantCode            int
		wantAllow, wantHdrs string
	}{
		{"listed origin", []string{"http://localhost:8888", "http://domain.com"}, "GET", "http://domain.com", 200, "http://domain.com", ""},
		{"preflight before credentials", []string{"http://domain.com"}, "OPTIONS", "http://domain.com", 204, "http://domain.com", "Authorization, Content-Type"},
		{"any origin", []string{"*"}, "GET", "http://elsewhere.example", 200, "*", ""},
		{"unlisted origin", []string{"http://domain.com"}, "OPTIONS", "http://evil.example", 401, "", ""},
		{"no flag", nil, "GET", "http://domain.com", 200, "", ""},
		// Writes: a preflight for one is refused, and one sent anyway (a
		// browser sends a simple POST without asking) gets no CORS
		// headers, so the page cannot read what it did.
		{"write preflight", []string{"*"}, "OPTIONS POST", "http://elsewhere.example", 403, "", ""},
		{"write", []string{"*"}, "POST", "http://elsewhere.example", 200, "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			method, asks, _ := strings.Cut(c.method, " ")
			if asks == "" {
				asks = "GET"
			}
			r := httptest.NewRequest(method, "/v2/apps", nil)
			r.Header.Set("Origin", c.origin)
			if method == "OPTIONS" {
				r.Header.Set("Access-Control-Request-Method", asks)
				r.Header.Set("Access-Control-Request-Headers", "Authorization, Content-Type")
			} else {
				r.Header.Set("Authorization", "Basic b3BzOnMzY3JldA==")
			}
			w := httptest.NewRecorder()
			allowingOrigins(c.origins, api).ServeHTTP(w, r)
			h := w.Result().Header
			if w.Code != c.wantCode || h.Get("Access-Control-Allow-Origin") != c.wantAllow || h.Get("Access-Control-Allow-Headers") != c.wantHdrs {
				t.Fatalf("%d %v; want %d, allowing %q with headers %q", w.Code, h, c.wantCode, c.wantAllow, c.wantHdrs)
			}
			if c.origins != nil && !slices.Contains(h.Values("Vary"), "Origin") {
				t.Errorf("Vary %v: want Origin", h.Values("Vary"))
			}
			if c.wantAllow != "" && (h.Get("Access-Control-Allow-Methods") != "GET, HEAD, OPTIONS" || h.Get("Access-Control-Allow-Credentials") != "") {
				t.Errorf("methods %q, credentials %q: want reads only, no credentials", h.Get("Access-Control-Allow-Methods"), h.Get("Access-Control-Allow-Credentials"))
			}
		})
	}
}
