package proxywatch_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/elazarl/goproxy"
	"github.com/proxywatch/proxywatch"
)

// A user's own goproxy keeps its handlers, and a user RoundTripper installed
// with WrapRoundTripper keeps the request counted.
func TestUserGoProxyAndRoundTripper(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "upstream:"+r.Header.Get("X-User"))
	}))
	defer up.Close()

	gp := goproxy.NewProxyHttpServer()
	gp.Tr = &http.Transport{}
	var rtCalls int
	p, pu := setup(t, &proxywatch.Options{GoProxy: gp})
	gp.OnRequest().DoFunc(func(r *http.Request, ctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
		r.Header.Set("X-User", "seen")
		ctx.RoundTripper = p.WrapRoundTripper(ctx, goproxy.RoundTripperFunc(func(req *http.Request, ctx *goproxy.ProxyCtx) (*http.Response, error) {
			rtCalls++
			return gp.Tr.RoundTrip(req)
		}))
		return r, nil
	})
	if p.GoProxy() != gp {
		t.Fatal("GoProxy() is not the goproxy passed in")
	}
	resp, err := client(t, pu, nil).Post(up.URL+"/rt", "text/plain", strings.NewReader("12345678"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "upstream:seen" || rtCalls != 1 {
		t.Fatalf("body %q, round trips %d: the user's handler or RoundTripper did not run", body, rtCalls)
	}
	info := findClosed(t, p, func(c proxywatch.ConnInfo) bool { return strings.HasSuffix(c.URL, "/rt") })
	if info.Up != 8 || info.Down != uint64(len(body)) || info.Status != 200 {
		t.Errorf("info = %+v", info)
	}
	checkTotals(t, p)
}
