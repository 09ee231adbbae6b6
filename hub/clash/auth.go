package clash

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"net/url"
	"strings"

	"github.com/gorilla/websocket"
)

// authorized checks the secret the way Clash does: on a WebSocket upgrade
// that carries ?token=, the token (browsers cannot set headers on a
// WebSocket); otherwise "Authorization: Bearer". Both sides are hashed first
// so that the constant-time compare does not even leak the secret's length.
func (c *API) authorized(r *http.Request) bool {
	if websocket.IsWebSocketUpgrade(r) {
		if tok, ok := r.URL.Query()["token"]; ok {
			return len(tok) == 1 && c.secretMatches(tok[0])
		}
	}
	auth := r.Header.Get("Authorization")
	const prefix = "Bearer "
	if len(auth) > len(prefix) && strings.EqualFold(auth[:len(prefix)], prefix) {
		return c.secretMatches(strings.TrimSpace(auth[len(prefix):]))
	}
	return false
}

func (c *API) secretMatches(got string) bool {
	sum := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(sum[:], c.secretSum[:]) == 1
}

// originAllowed implements the origin policy (Options.AllowedOrigins).
func (c *API) originAllowed(r *http.Request) bool {
	origins := r.Header.Values("Origin")
	switch {
	case len(origins) == 0:
		return true
	case len(origins) > 1:
		return false
	case c.anyOrigin:
		return true
	}
	origin := origins[0]
	for _, allowed := range c.origins {
		if strings.EqualFold(origin, allowed) {
			return true
		}
	}
	return sameOrigin(origin, r.Host)
}

func sameOrigin(origin, host string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	return strings.EqualFold(u.Host, host)
}

// cors applies the origin policy and answers preflights. It reports whether
// the request goes on; when it does not, it has answered.
func (c *API) cors(w http.ResponseWriter, r *http.Request) bool {
	h := w.Header()
	h.Add("Vary", "Origin")
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true // not a browser: nothing to negotiate
	}
	if !c.originAllowed(r) {
		writeError(w, http.StatusForbidden, "Forbidden origin")
		return false
	}
	if !sameOrigin(origin, r.Host) {
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
