package hub

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"
)

// newToken returns a random 128-bit secret in hex.
func newToken() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand documents it)
	return hex.EncodeToString(b[:])
}

// authorized reports whether r carries the hub's secret, in the token query
// parameter (browsers cannot set headers on a WebSocket) or as an
// "Authorization: Bearer" header. Both sides are hashed first so that the
// constant-time compare does not even leak the secret's length.
func (h *Hub) authorized(r *http.Request) bool {
	if tok, ok := r.URL.Query()["token"]; ok && len(tok) == 1 && h.tokenMatches(tok[0]) {
		return true
	}
	auth := r.Header.Get("Authorization")
	if len(auth) > len("Bearer ") && strings.EqualFold(auth[:len("Bearer ")], "Bearer ") {
		return h.tokenMatches(strings.TrimSpace(auth[len("Bearer "):]))
	}
	return false
}

func (h *Hub) tokenMatches(got string) bool {
	sum := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(sum[:], h.tokenSum[:]) == 1
}

// originAllowed implements the origin policy: no Origin header (a program, not
// a browser) is allowed; "null" (sandboxed frames, file: pages) is refused; an
// origin whose host equals the request's Host is allowed (same origin); any
// other origin must be in Options.AllowedOrigins. Browsers always send Origin
// on WebSocket handshakes, so this is what stops a page on another site from
// using a dashboard's token it found.
func (h *Hub) originAllowed(r *http.Request) bool {
	origins := r.Header.Values("Origin")
	if len(origins) == 0 {
		return true
	}
	if len(origins) > 1 {
		return false
	}
	origin := origins[0]
	if strings.EqualFold(origin, "null") {
		return false // even if listed: every sandboxed page on the web sends it
	}
	for _, allowed := range h.allowedOrigins {
		if strings.EqualFold(origin, allowed) {
			return true
		}
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}
