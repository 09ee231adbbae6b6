package app

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/proxywatch/proxywatch"
	"github.com/proxywatch/proxywatch/hub"
)

func TestUIHandler(t *testing.T) {
	p := proxywatch.New(nil)
	defer p.Close()
	h := hub.New(p, &hub.Options{Token: "s3cret"})
	defer h.Close()
	ca, err := proxywatch.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(newUIHandler(h, &proxywatch.MITM{CA: ca}))
	defer srv.Close()

	get := func(path, bearer string) *http.Response {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	for _, tc := range []struct {
		path, bearer string
		status       int
	}{
		{"/auth/check", "s3cret", http.StatusNoContent},
		{"/auth/check", "s3cre", http.StatusUnauthorized},
		{"/auth/check", "", http.StatusUnauthorized},
		{"/start", "", http.StatusUnauthorized},
		{"/start?token=wrong", "", http.StatusUnauthorized},
		{"/", "", http.StatusOK},
		{"/ca.pem", "", http.StatusOK},
	} {
		resp := get(tc.path, tc.bearer)
		if resp.StatusCode != tc.status {
			t.Errorf("GET %s (bearer %q): %d, want %d", tc.path, tc.bearer, resp.StatusCode, tc.status)
		}
		if resp.Header.Get("Referrer-Policy") != "no-referrer" || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
			t.Errorf("GET %s: security headers missing", tc.path)
		}
	}
	index, _ := io.ReadAll(get("/", "").Body)
	if !strings.Contains(string(index), `<div id="app">`) {
		t.Errorf("index.html is not the dashboard: %.200s", index)
	}
	pemBody, _ := io.ReadAll(get("/ca.pem", "").Body)
	if string(pemBody) != string(proxywatch.CACertPEM(ca)) || strings.Contains(string(pemBody), "PRIVATE") {
		t.Error("/ca.pem is not the CA certificate alone")
	}
}

func TestFlags(t *testing.T) {
	t.Setenv("PROXYWATCH_TOKEN", "from-env")
	c, err := parseFlags([]string{"-proxy", "127.0.0.1:1", "-mitm"}, &Extension{})
	if err != nil {
		t.Fatal(err)
	}
	if c.proxyAddr != "127.0.0.1:1" || c.uiAddr != "127.0.0.1:8000" || !c.mitm || c.token != "from-env" || c.caDir == "" {
		t.Errorf("config = %+v", c)
	}
	c, _ = parseFlags([]string{"-token", "flag"}, &Extension{})
	if c.token != "flag" {
		t.Errorf("-token did not win over the environment: %q", c.token)
	}
}
