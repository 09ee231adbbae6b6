package clash_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/proxywatch/proxywatch"
	"github.com/proxywatch/proxywatch/hub/clash"
	"go.uber.org/goleak"
)

// TestHostile runs the token and origin refusals against the
// Clash-compatible API, the hub's other door.
func TestHostile(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	p := proxywatch.New(nil)
	defer p.Close()
	api := clash.New(p, &clash.Options{Token: "s3cret"})
	srv := httptest.NewServer(api)
	defer srv.Close()
	defer api.Close()
	for _, tc := range []struct {
		name   string
		path   string
		header http.Header
		want   int
	}{
		{"no secret", "/connections", nil, http.StatusUnauthorized},
		{"wrong secret", "/connections", http.Header{"Authorization": {"Bearer s3crex"}}, http.StatusUnauthorized},
		{"secret in the query of a plain request", "/connections?token=s3cret", nil, http.StatusUnauthorized},
		{"secret only in a Referer", "/connections", http.Header{"Referer": {"http://x/?token=s3cret"}}, http.StatusUnauthorized},
		{"foreign origin with the secret", "/connections", http.Header{"Authorization": {"Bearer s3cret"}, "Origin": {"http://evil.example"}}, http.StatusForbidden},
		{"null origin with the secret", "/connections", http.Header{"Authorization": {"Bearer s3cret"}, "Origin": {"null"}}, http.StatusForbidden},
		{"right secret", "/connections", http.Header{"Authorization": {"Bearer s3cret"}}, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", srv.URL+tc.path, nil)
			for k, v := range tc.header {
				req.Header[k] = v
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tc.want)
			}
			if tc.want != http.StatusOK && strings.Contains(string(body), "s3cret") {
				t.Errorf("the refusal carries the secret: %s", body)
			}
			if acao := resp.Header.Get("Access-Control-Allow-Origin"); acao == "*" || (tc.want == http.StatusForbidden && acao != "") {
				t.Errorf("Access-Control-Allow-Origin %q on a refusal", acao)
			}
		})
	}
	for _, origin := range []string{"http://evil.example", "null"} {
		header := http.Header{"Origin": {origin}}
		if status := dialStatus(t, srv, "/traffic?token=s3cret", header); status != http.StatusForbidden {
			t.Errorf("WebSocket from origin %s: status %d, want 403", origin, status)
		}
	}
	http.DefaultClient.CloseIdleConnections()
}
