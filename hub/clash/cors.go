package clash

import (
	"net/http"

	"github.com/proxywatch/proxywatch/internal/webauth"
)

// cors applies the origin policy and answers preflights. It reports whether
// the request goes on; when it does not, it has answered.
func (c *API) cors(w http.ResponseWriter, r *http.Request) bool {
	h := w.Header()
	h.Add("Vary", "Origin")
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true // not a browser: nothing to negotiate
	}
	if !c.auth.OriginAllowed(r) {
		writeError(w, http.StatusForbidden, "Forbidden origin")
		return false
	}
	if !webauth.SameOrigin(r) {
		h.Set("Access-Control-Allow-Origin", origin)
	}
	if r.Method != http.MethodOptions || r.Header.Get("Access-Control-Request-Method") == "" {
		return true
	}
	h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE")
	h.Set("Access-Control-Allow-Headers", "Content-Type, Authorization")
	h.Set("Access-Control-Max-Age", "300")
	if r.Header.Get("Access-Control-Request-Private-Network") == "true" {
		// Chrome's Private Network Access: a public dashboard page calling
		// an API on loopback or the LAN asks this first.
		h.Set("Access-Control-Allow-Private-Network", "true")
	}
	w.WriteHeader(http.StatusNoContent)
	return false
}
