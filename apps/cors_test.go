package apps

import (
	"net/http"
	"net/http/httptest"
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
	} {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(c.method, "/v2/apps", nil)
			r.Header.Set("Origin", c.origin)
			if c.method == "OPTIONS" {
				r.Header.Set("Access-Control-Request-Method", "GET")
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
			if c.wantAllow != "" && (h.Get("Access-Control-Allow-Methods") != "GET, HEAD, OPTIONS" || h.Get("Access-Control-Allow-Credentials") != "") {
				t.Errorf("methods %q, credentials %q: want reads only, no credentials", h.Get("Access-Control-Allow-Methods"), h.Get("Access-Control-Allow-Credentials"))
			}
		})
	}
}
