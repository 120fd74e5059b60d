package apps

import (
	"net/http"
	"strings"
)

// allowingOrigins lets the pages of origins (--access_control_allow_origin;
// "*" for any) read the API from a browser, as Marathon's CORS filter
// does: GET, HEAD and OPTIONS only, with the headers a preflight asks for,
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
		if origin == "" || allow == "" {
			next.ServeHTTP(w, r)
			return
		}
		h.Set("Access-Control-Allow-Origin", allow)
		h.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
		h.Set("Access-Control-Max-Age", "86400")
		if asked := r.Header.Values("Access-Control-Request-Headers"); len(asked) > 0 {
			h.Set("Access-Control-Allow-Headers", strings.Join(asked, ", "))
		}
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}
