package apps

import (
	"net/http"
	"strings"
)

// allowingOrigins lets the pages of origins (--access_control_allow_origin;
// "*" for any) read the API from a browser, as Marathon's CORS filter
// does: GET, HEAD and OPTIONS only (a preflight for another method is
// refused, a write gets no CORS headers), with the headers a preflight asks for,
// cached a day. Unlike Marathon, the answer names the request's own origin
// (or *) rather than the whole list, which browsers would refuse. No
// credentials (cookies) are allowed, so a page reaches an API with
// --http_credentials only by sending the Authorization header itself. A
// preflight is answered here, before the credentials are asked for: a
// browser sends none with it. Without origins, next is returned as is.
func allowingOrigins(origins []string, next http.Handler) http.Handler {
	if len(origins) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		allow := ""
		for _, o := range origins {
			if o == "*" {
				allow = "*"
				break
			}
			if origin != "" && o == origin {
				allow = origin
			}
		}
		h := w.Header()
		h.Add("Vary", "Origin")
		preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
		// Reads only: a browser sends a POST (a "simple" one at least)
		// whatever a preflight said, so the writes must not be answered
		// with the headers that let the page read the result, and a
		// preflight for anything but a read is not approved (the page's
		// JSON POST then never leaves the browser).
		read := r.Method == http.MethodGet || r.Method == http.MethodHead
		if preflight {
			m := r.Header.Get("Access-Control-Request-Method")
			read = m == http.MethodGet || m == http.MethodHead
		}
		switch {
		case origin == "" || allow == "":
			next.ServeHTTP(w, r)
			return
		case !read && preflight:
			w.WriteHeader(http.StatusForbidden)
			return
		case !read:
			next.ServeHTTP(w, r)
			return
		}
		h.Set("Access-Control-Allow-Origin", allow)
		h.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
		h.Set("Access-Control-Max-Age", "86400")
		if asked := r.Header.Values("Access-Control-Request-Headers"); len(asked) > 0 {
			h.Set("Access-Control-Allow-Headers", strings.Join(asked, ", "))
		}
		if preflight {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}
