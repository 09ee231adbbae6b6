// Package webauth checks the secret and the origin of the requests that
// proxywatch's own servers answer (the hub's WebSocket, the Clash API), so
// that both apply one policy: a secret always required and compared in
// constant time, and browsers refused unless they come from the server's own
// origin or one it lists.
package webauth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"

	"github.com/gorilla/websocket"
)

// TokenParam is the query parameter that carries the secret where a header
// cannot: browsers set no headers on a WebSocket handshake.
const TokenParam = "token"

// NewToken returns a random 128-bit secret in hex.
func NewToken() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand documents it)
	return hex.EncodeToString(b[:])
}

// Policy says what a Checker accepts.
type Policy struct {
	// Token is the secret a request must carry. Empty means New generates
	// one with NewToken.
	Token string

	// AllowedOrigins lists the browser origins, besides the server's own,
	// that may use it, exactly as browsers send them (scheme://host[:port]);
	// a trailing slash is ignored. "null" is never allowed, listed or not:
	// every sandboxed frame and file: page on the web sends it.
	AllowedOrigins []string

	// AllowAnyOrigin allows every origin but "null".
	AllowAnyOrigin bool

	// TokenOnUpgradeOnly accepts ?token= on WebSocket upgrades only, as
	// Clash does; otherwise it is accepted on every request.
	TokenOnUpgradeOnly bool
}

// Checker applies a Policy to requests. Create it with New; it is safe for
// concurrent use.
type Checker struct {
	token            string
	sum              [sha256.Size]byte
	origins          []string
	anyOrigin        bool
	upgradeOnlyToken bool
}

// New returns a Checker for p.
func New(p Policy) *Checker {
	c := &Checker{token: p.Token, anyOrigin: p.AllowAnyOrigin, upgradeOnlyToken: p.TokenOnUpgradeOnly}
	if c.token == "" {
		c.token = NewToken()
	}
	c.sum = sha256.Sum256([]byte(c.token))
	for _, origin := range p.AllowedOrigins {
		c.origins = append(c.origins, strings.TrimSuffix(origin, "/"))
	}
	return c
}

// Token returns the secret requests must carry: Policy.Token, or the one
// New generated.
func (c *Checker) Token() string { return c.token }

// Matches reports whether r carries the secret. A ?token= parameter, where
// the Policy accepts one, decides alone and must be given exactly once;
// without it the secret must come as "Authorization: Bearer SECRET", the
// scheme in any case.
func (c *Checker) Matches(r *http.Request) bool {
	if !c.upgradeOnlyToken || websocket.IsWebSocketUpgrade(r) {
		if tok, ok := r.URL.Query()[TokenParam]; ok {
			return len(tok) == 1 && c.matches(tok[0])
		}
	}
	const prefix = "Bearer "
	auth := r.Header.Get("Authorization")
	if len(auth) > len(prefix) && strings.EqualFold(auth[:len(prefix)], prefix) {
		return c.matches(strings.TrimSpace(auth[len(prefix):]))
	}
	return false
}

// matches compares got with the secret. Both sides are hashed first so that
// the constant-time compare does not even leak the secret's length.
func (c *Checker) matches(got string) bool {
	sum := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(sum[:], c.sum[:]) == 1
}

// OriginAllowed reports whether r's origin may use the server. A request
// with no Origin header (a program, not a browser) may; one with several,
// or with "null", may not; a same-origin one (SameOrigin) may; any other
// must be allowed by the Policy. Browsers always send Origin on WebSocket
// handshakes and cross-origin requests, so this is what stops a page on
// another site from using a secret it found.
func (c *Checker) OriginAllowed(r *http.Request) bool {
	origins := r.Header.Values("Origin")
	switch {
	case len(origins) == 0:
		return true
	case len(origins) > 1, strings.EqualFold(origins[0], "null"):
		return false
	case c.anyOrigin:
		return true
	}
	for _, allowed := range c.origins {
		if strings.EqualFold(origins[0], allowed) {
			return true
		}
	}
	return SameOrigin(r)
}

// SameOrigin reports whether r's Origin header names the host r was sent
// to, over http or https.
func SameOrigin(r *http.Request) bool {
	u, err := url.Parse(r.Header.Get("Origin"))
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}
