package webauth_test

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"

	"github.com/proxywatch/proxywatch/internal/webauth"
)

const secret = "s3cret"

// request is a GET of target sent to example.test:8080, a WebSocket
// handshake when upgrade is set, with the given headers.
func request(target string, upgrade bool, header http.Header) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://example.test:8080"+target, nil)
	for k, v := range header {
		r.Header[k] = v
	}
	if upgrade {
		r.Header.Set("Connection", "Upgrade")
		r.Header.Set("Upgrade", "websocket")
	}
	return r
}

func TestMatches(t *testing.T) {
	bearer := func(v string) http.Header { return http.Header{"Authorization": {v}} }
	for _, tc := range []struct {
		name        string
		target      string
		header      http.Header
		upgradeOnly bool // Policy.TokenOnUpgradeOnly
		upgrade     bool
		want        bool
	}{
		{name: "nothing", target: "/"},
		{name: "right token", target: "/?token=s3cret", want: true},
		{name: "wrong token", target: "/?token=s3creT"},
		{name: "prefix of the token", target: "/?token=s3cre"},
		{name: "longer token", target: "/?token=s3cretx"},
		{name: "empty token", target: "/?token="},
		{name: "token twice", target: "/?token=s3cret&token=s3cret"},
		{name: "right bearer", target: "/", header: bearer("Bearer s3cret"), want: true},
		{name: "bearer, lower case", target: "/", header: bearer("bearer s3cret"), want: true},
		{name: "bearer, upper case", target: "/", header: bearer("BEARER s3cret"), want: true},
		{name: "bearer, spaces around", target: "/", header: bearer("Bearer  s3cret "), want: true},
		{name: "wrong bearer", target: "/", header: bearer("Bearer s3creT")},
		{name: "empty bearer", target: "/", header: bearer("Bearer ")},
		{name: "basic", target: "/", header: bearer("Basic s3cret")},
		{name: "no scheme", target: "/", header: bearer("s3cret")},
		{name: "wrong token beats a right bearer", target: "/?token=nope", header: bearer("Bearer s3cret")},
		{name: "upgrade only: token on a plain request", target: "/?token=s3cret", upgradeOnly: true},
		{name: "upgrade only: token on an upgrade", target: "/?token=s3cret", upgradeOnly: true, upgrade: true, want: true},
		{name: "upgrade only: bearer on a plain request", target: "/?token=nope", header: bearer("Bearer s3cret"), upgradeOnly: true, want: true},
		{name: "upgrade only: wrong token beats a right bearer", target: "/?token=nope", header: bearer("Bearer s3cret"), upgradeOnly: true, upgrade: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := webauth.New(webauth.Policy{Token: secret, TokenOnUpgradeOnly: tc.upgradeOnly})
			if got := c.Matches(request(tc.target, tc.upgrade, tc.header)); got != tc.want {
				t.Errorf("Matches = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestGeneratedToken(t *testing.T) {
	a, b := webauth.New(webauth.Policy{}), webauth.New(webauth.Policy{})
	hex128 := regexp.MustCompile(`^[0-9a-f]{32}$`)
	if !hex128.MatchString(a.Token()) || a.Token() == b.Token() {
		t.Fatalf("secrets %q and %q: want two different random 128-bit hex secrets", a.Token(), b.Token())
	}
	if !a.Matches(request("/?token="+a.Token(), false, nil)) || a.Matches(request("/?token=", false, nil)) {
		t.Error("a generated secret is not what Matches checks")
	}
	if got := webauth.New(webauth.Policy{Token: secret}).Token(); got != secret {
		t.Errorf("Token = %q, want %q", got, secret)
	}
}

func TestOriginAllowed(t *testing.T) {
	listed := webauth.Policy{AllowedOrigins: []string{"http://localhost:5173/", "null"}}
	anyOrigin := webauth.Policy{AllowAnyOrigin: true}
	for _, tc := range []struct {
		name    string
		policy  webauth.Policy
		origins []string // nil: no Origin header
		want    bool
	}{
		{name: "none (not a browser)", want: true},
		{name: "same origin", origins: []string{"http://example.test:8080"}, want: true},
		{name: "same origin, upper case", origins: []string{"HTTP://EXAMPLE.TEST:8080"}, want: true},
		{name: "same origin over https", origins: []string{"https://example.test:8080"}, want: true},
		{name: "same host, other port", origins: []string{"http://example.test:8081"}},
		{name: "same host, ws scheme", origins: []string{"ws://example.test:8080"}},
		{name: "own host as a prefix", origins: []string{"http://example.test:8080.evil.example"}},
		{name: "other", origins: []string{"http://evil.example"}},
		{name: "empty", origins: []string{""}},
		{name: "allowed (listed with a slash)", policy: listed, origins: []string{"http://localhost:5173"}, want: true},
		{name: "allowed, other case", policy: listed, origins: []string{"http://LOCALHOST:5173"}, want: true},
		{name: "allowed host, other scheme", policy: listed, origins: []string{"https://localhost:5173"}},
		{name: "allowed host, other port", policy: listed, origins: []string{"http://localhost:5174"}},
		{name: "null", origins: []string{"null"}},
		{name: "null, even when listed", policy: listed, origins: []string{"null"}},
		{name: "NULL, even when listed", policy: listed, origins: []string{"NULL"}},
		{name: "null, even with any origin", policy: anyOrigin, origins: []string{"null"}},
		{name: "any origin", policy: anyOrigin, origins: []string{"http://evil.example"}, want: true},
		{name: "multiple", origins: []string{"http://example.test:8080", "http://example.test:8080"}},
		{name: "multiple, any origin", policy: anyOrigin, origins: []string{"http://a.example", "http://b.example"}},
		{name: "multiple, allowed and other", policy: listed, origins: []string{"http://localhost:5173", "http://evil.example"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := request("/", true, nil)
			if tc.origins != nil {
				r.Header["Origin"] = tc.origins
			}
			if got := webauth.New(tc.policy).OriginAllowed(r); got != tc.want {
				t.Errorf("OriginAllowed = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSameOrigin(t *testing.T) {
	for origin, want := range map[string]bool{
		"http://example.test:8080":  true,
		"https://example.test:8080": true,
		"http://example.test":       false,
		"http://evil.example":       false,
		"null":                      false,
		"":                          false,
		"%zz":                       false,
	} {
		r := request("/", false, http.Header{"Origin": {origin}})
		if got := webauth.SameOrigin(r); got != want {
			t.Errorf("SameOrigin(%q) = %v, want %v", origin, got, want)
		}
	}
}
