package clash_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/proxywatch/proxywatch"
	"github.com/proxywatch/proxywatch/hub/clash"
	"go.uber.org/goleak"
)

// These tests run the Clash API over a real Proxy carrying real traffic from
// real HTTP clients to httptest upstreams, all on loopback, and talk to it
// with real HTTP and gorilla/websocket clients.

const (
	clashSecret = "s3cret"
	// clashTimeout only keeps a broken test from hanging; nothing is
	// asserted about speed.
	clashTimeout = 20 * time.Second
)

// The documented examples of peers.md (the Clash/mihomo API): the shapes the
// API's answers are checked against.
const (
	clashExampleHello      = `{"hello":"mihomo"}`
	clashExampleVersion    = `{"meta":true,"version":"alpha-05e8f13"}`
	clashExampleTraffic    = `{"up":12034,"down":883201,"upTotal":1,"downTotal":2}`
	clashExampleMemory     = `{"inuse":53452800,"oslimit":0}`
	clashExampleLog        = `{"type":"info","payload":"[TCP] 192.168.1.20:53122 --> www.google.com:443 match DomainSuffix(google.com) using Proxy[HK-01]"}`
	clashExampleStructured = `{"time":"10:15:30","level":"warn","message":"[TCP] dial Proxy ... error: i/o timeout","fields":[]}`
	clashExampleError      = `{"message":"Unauthorized"}`
	clashExampleSnapshot   = `{
  "downloadTotal": 1048576000,
  "uploadTotal": 52428800,
  "connections": [
    {
      "id": "5d2c0e1a-7a9b-4f0e-9a53-3b1f2c7e8d11",
      "metadata": {
        "network": "tcp",
        "type": "HTTPS",
        "sourceIP": "192.168.1.20",
        "destinationIP": "142.250.72.14",
        "sourceGeoIP": null,
        "destinationGeoIP": null,
        "sourceIPASN": "",
        "destinationIPASN": "",
        "sourcePort": "53122",
        "destinationPort": "443",
        "inboundIP": "192.168.1.1",
        "inboundPort": "7890",
        "inboundName": "DEFAULT-MIXED",
        "inboundUser": "",
        "host": "www.google.com",
        "dnsMode": "normal",
        "uid": 0,
        "process": "chrome",
        "processPath": "/usr/lib/chromium/chrome",
        "specialProxy": "",
        "specialRules": "",
        "remoteDestination": "142.250.72.14",
        "dscp": 0,
        "sniffHost": ""
      },
      "upload": 2345,
      "download": 48213,
      "start": "2025-02-28T10:15:30.123456789+08:00",
      "chains": ["HK-01", "Proxy"],
      "rule": "DomainSuffix",
      "rulePayload": "google.com"
    }
  ],
  "memory": 53452800
}`
)

// clashSameShape reports (as test errors) where got lacks a member of want
// or has it with another JSON kind, recursively; array elements are compared
// with the example's first element.
func clashSameShape(t *testing.T, where string, want, got any) {
	t.Helper()
	kind := func(v any) string {
		switch v.(type) {
		case nil:
			return "null"
		case bool:
			return "bool"
		case float64:
			return "number"
		case string:
			return "string"
		case []any:
			return "array"
		case map[string]any:
			return "object"
		}
		return fmt.Sprintf("%T", v)
	}
	if kind(want) != kind(got) {
		t.Errorf("%s: %s in the example, %s here (%v)", where, kind(want), kind(got), got)
		return
	}
	switch w := want.(type) {
	case map[string]any:
		g := got.(map[string]any)
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				t.Errorf("%s: member %q missing", where, k)
				continue
			}
			clashSameShape(t, where+"."+k, wv, gv)
		}
	case []any:
		g := got.([]any)
		if len(w) > 0 {
			for i, gv := range g {
				clashSameShape(t, fmt.Sprintf("%s[%d]", where, i), w[0], gv)
			}
		}
	}
}

func clashShapeOf(t *testing.T, where, example string, got []byte) map[string]any {
	t.Helper()
	var want, have any
	if err := json.Unmarshal([]byte(example), &want); err != nil {
		t.Fatalf("%s: example: %v", where, err)
	}
	if err := json.Unmarshal(got, &have); err != nil {
		t.Fatalf("%s: %v in %s", where, err, got)
	}
	clashSameShape(t, where, want, have)
	m, _ := have.(map[string]any)
	return m
}

// clashStartAPI serves a ClashAPI of p behind an httptest server until the
// test ends; the secret is clashSecret unless opts says otherwise.
func clashStartAPI(t *testing.T, p *proxywatch.Proxy, opts *clash.ClashOptions) (*clash.ClashAPI, *httptest.Server) {
	t.Helper()
	if opts == nil {
		opts = &clash.ClashOptions{}
	}
	if opts.Secret == "" {
		opts.Secret = clashSecret
	}
	api := clash.NewClashAPI(p, opts)
	srv := httptest.NewServer(api)
	t.Cleanup(func() {
		api.Close()
		srv.Close()
	})
	return api, srv
}

// clashRequest is one HTTP request to the API.
type clashRequest struct {
	method, path string
	header       http.Header
	body         string
}

// clashDo sends req with the secret as a Bearer token (unless req.header
// sets Authorization itself) and returns the response with its body read.
func clashDo(t *testing.T, srv *httptest.Server, req clashRequest) (*http.Response, []byte) {
	t.Helper()
	method := req.method
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if req.body != "" {
		body = strings.NewReader(req.body)
	}
	r, err := http.NewRequest(method, srv.URL+req.path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range req.header {
		r.Header[k] = v
	}
	if _, ok := req.header["Authorization"]; !ok {
		r.Header.Set("Authorization", "Bearer "+clashSecret)
	}
	resp, err := srv.Client().Do(r)
	if err != nil {
		t.Fatalf("%s %s: %v", method, req.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading: %v", method, req.path, err)
	}
	return resp, b
}

func clashWSURL(srv *httptest.Server, pathAndQuery string) string {
	return "ws" + strings.TrimPrefix(srv.URL, "http") + pathAndQuery
}

// clashDial opens a WebSocket to pathAndQuery, which carries its own token.
func clashDial(t *testing.T, srv *httptest.Server, pathAndQuery string, header http.Header) *websocket.Conn {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(clashWSURL(srv, pathAndQuery), header)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (HTTP %d)", pathAndQuery, err, status)
	}
	t.Cleanup(func() { ws.Close() })
	return ws
}

// clashDialStatus tries to open a WebSocket and returns the HTTP status of a
// refusal (101 when it was accepted, then closed at once).
func clashDialStatus(t *testing.T, srv *httptest.Server, pathAndQuery string, header http.Header) int {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(clashWSURL(srv, pathAndQuery), header)
	if err == nil {
		ws.Close()
		return http.StatusSwitchingProtocols
	}
	if resp == nil {
		t.Fatalf("dial %s: %v", pathAndQuery, err)
	}
	return resp.StatusCode
}

// clashRead reads the next text message.
func clashRead(t *testing.T, ws *websocket.Conn) []byte {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(clashTimeout))
	_, b, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return b
}

func clashReadJSON(t *testing.T, ws *websocket.Conn, v any) []byte {
	t.Helper()
	b := clashRead(t, ws)
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%v in %s", err, b)
	}
	return b
}

// clashTransfer is a download through the proxy that runs until it fails.
type clashTransfer struct {
	errc   chan error
	local  chan string // the client's address on its connection to the proxy
	cancel context.CancelFunc
}

func clashStartTransfer(t *testing.T, proxy *url.URL, target string, roots *x509.CertPool) *clashTransfer {
	x := &clashTransfer{errc: make(chan error, 1), local: make(chan string, 1)}
	dialer := &net.Dialer{}
	tr := &http.Transport{
		Proxy:           http.ProxyURL(proxy),
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err == nil {
				select {
				case x.local <- c.LocalAddr().String():
				default:
				}
			}
			return c, err
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	x.cancel = cancel
	t.Cleanup(func() {
		cancel()
		<-x.errc
		tr.CloseIdleConnections()
	})
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil {
				err = errNoError
			}
		}
		x.errc <- err
	}()
	return x
}

// wait returns the error the client saw.
func (x *clashTransfer) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-x.errc:
		x.errc <- err // for the cleanup
		return err
	case <-time.After(clashTimeout):
		t.Fatal("the transfer did not end")
		return nil
	}
}

// clashSnapshotJSON mirrors a /connections message for the tests.
type clashSnapshotJSON struct {
	DownloadTotal uint64 `json:"downloadTotal"`
	UploadTotal   uint64 `json:"uploadTotal"`
	Connections   []struct {
		ID       string         `json:"id"`
		Metadata map[string]any `json:"metadata"`
		Upload   uint64         `json:"upload"`
		Download uint64         `json:"download"`
		Start    time.Time      `json:"start"`
		Chains   []string       `json:"chains"`
		Rule     string         `json:"rule"`
		Payload  string         `json:"rulePayload"`
		Extra    map[string]any `json:"proxywatch"`
	} `json:"connections"`
	Memory uint64 `json:"memory"`
}

// TestClashShapes checks every answer against the documented examples, and
// the values of live connections against what the proxy and the clients
// know: a plain request, a CONNECT tunnel and a request by host name.
func TestClashShapes(t *testing.T) {
	plain := streamServer(false)
	t.Cleanup(plain.Close)
	secure := streamServer(true)
	t.Cleanup(secure.Close)
	roots := x509.NewCertPool()
	roots.AddCert(secure.Certificate())

	p, pu := startProxy(t)
	_, srv := clashStartAPI(t, p, &clash.ClashOptions{ProxyAddr: pu.Host})

	_, plainPort, _ := net.SplitHostPort(strings.TrimPrefix(plain.URL, "http://"))
	_, securePort, _ := net.SplitHostPort(strings.TrimPrefix(secure.URL, "https://"))
	byIP := clashStartTransfer(t, pu, plain.URL+"/ip", nil)
	byName := clashStartTransfer(t, pu, "http://localhost:"+plainPort+"/name", nil)
	tunnel := clashStartTransfer(t, pu, secure.URL+"/tunnel", roots)
	locals := map[string]string{"/ip": <-byIP.local, "/name": <-byName.local, "/tunnel": <-tunnel.local}

	// Wait until all three move bytes, then check the snapshot.
	var snap clashSnapshotJSON
	var raw []byte
	for {
		_, raw = clashDo(t, srv, clashRequest{path: "/connections"})
		if err := json.Unmarshal(raw, &snap); err != nil {
			t.Fatalf("%v in %s", err, raw)
		}
		moving := 0
		for _, c := range snap.Connections {
			if c.Download > 0 {
				moving++
			}
		}
		if moving == 3 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	clashShapeOf(t, "/connections", clashExampleSnapshot, raw)

	live := map[string]proxywatch.ConnInfo{}
	for _, ci := range p.Connections() {
		live[strconv.FormatInt(int64(ci.ID), 10)] = ci
	}
	_, proxyPort, _ := net.SplitHostPort(pu.Host)
	seen := map[string]bool{}
	for _, c := range snap.Connections {
		ci, ok := live[c.ID]
		if !ok {
			t.Errorf("id %q is not the decimal id of a live connection", c.ID)
			continue
		}
		var which, wantType, wantHost, wantIP, wantPort string
		switch {
		case ci.Protocol == proxywatch.ProtoTunnel:
			which, wantType, wantHost, wantIP, wantPort = "/tunnel", "HTTPS", "", "127.0.0.1", securePort
		case strings.HasSuffix(ci.URL, "/ip"):
			which, wantType, wantHost, wantIP, wantPort = "/ip", "HTTP", "", "127.0.0.1", plainPort
		case strings.HasSuffix(ci.URL, "/name"):
			which, wantType, wantHost, wantIP, wantPort = "/name", "HTTP", "localhost", "", plainPort
		default:
			t.Errorf("unexpected connection %+v", ci)
			continue
		}
		seen[which] = true
		_, srcPort, _ := net.SplitHostPort(locals[which])
		md := c.Metadata
		for k, want := range map[string]any{
			"network": "tcp", "type": wantType, "host": wantHost, "destinationIP": wantIP,
			"destinationPort": wantPort, "sourceIP": "127.0.0.1", "sourcePort": srcPort,
			"inboundIP": "127.0.0.1", "inboundPort": proxyPort, "inboundName": "proxywatch",
			"dnsMode": "normal", "process": "", "processPath": "", "remoteDestination": "",
			"sourceGeoIP": nil, "destinationGeoIP": nil,
		} {
			if md[k] != want {
				t.Errorf("%s: metadata.%s = %#v, want %#v", which, k, md[k], want)
			}
		}
		if !slices.Equal(c.Chains, []string{"DIRECT"}) || c.Rule != "Match" || c.Payload != "" {
			t.Errorf("%s: chains %v rule %q payload %q, want [DIRECT] Match \"\"", which, c.Chains, c.Rule, c.Payload)
		}
		if !c.Start.Equal(ci.Start) {
			t.Errorf("%s: start %v, want %v", which, c.Start, ci.Start)
		}
		if c.Extra["protocol"] != string(ci.Protocol) || c.Extra["url"] != ci.URL {
			t.Errorf("%s: proxywatch extra %v, want protocol %q url %q", which, c.Extra, ci.Protocol, ci.URL)
		}
		// Counts only grow: what the API said cannot exceed what the proxy
		// counts now.
		if now, ok := p.Connection(ci.ID); !ok || c.Download > now.Down || c.Upload > now.Up {
			t.Errorf("%s: upload/download %d/%d beyond the proxy's %d/%d", which, c.Upload, c.Download, now.Up, now.Down)
		}
	}
	if len(seen) != 3 {
		t.Errorf("saw %v of the three transfers", seen)
	}
	if up, down := p.Totals(); snap.UploadTotal > up || snap.DownloadTotal > down || snap.DownloadTotal == 0 {
		t.Errorf("totals %d/%d, proxy %d/%d", snap.UploadTotal, snap.DownloadTotal, up, down)
	}

	// The other answers.
	for _, x := range []struct{ path, example string }{
		{"/", clashExampleHello},
		{"/version", clashExampleVersion},
	} {
		resp, b := clashDo(t, srv, clashRequest{path: x.path})
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("GET %s: %s %q", x.path, resp.Status, resp.Header.Get("Content-Type"))
		}
		clashShapeOf(t, x.path, x.example, b)
	}
	_, b := clashDo(t, srv, clashRequest{path: "/version"})
	if m := clashShapeOf(t, "/version", clashExampleVersion, b); m["meta"] != false || !strings.HasPrefix(m["version"].(string), "proxywatch ") {
		t.Errorf("/version = %s", b)
	}
	_, b = clashDo(t, srv, clashRequest{path: "/"})
	if string(b) != `{"hello":"clash"}`+"\n" {
		t.Errorf("GET / = %s", b)
	}
	resp, b := clashDo(t, srv, clashRequest{path: "/", header: http.Header{"Authorization": {"Bearer wrong"}}})
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong secret: %s", resp.Status)
	}
	clashShapeOf(t, "401", clashExampleError, b)

	ws := clashDial(t, srv, "/traffic?token="+clashSecret, nil)
	clashShapeOf(t, "/traffic", clashExampleTraffic, clashRead(t, ws))
	ws = clashDial(t, srv, "/memory?token="+clashSecret, nil)
	m := clashShapeOf(t, "/memory", clashExampleMemory, clashRead(t, ws))
	if m["inuse"].(float64) <= 0 {
		t.Errorf("/memory = %v: the process holds some memory", m)
	}
	ws = clashDial(t, srv, "/connections?token="+clashSecret, nil)
	clashShapeOf(t, "/connections (WebSocket)", clashExampleSnapshot, clashRead(t, ws))

	logger := slog.New(p.SlogHandler())
	plainLogs := clashDial(t, srv, "/logs?token="+clashSecret, nil)
	structLogs := clashDial(t, srv, "/logs?format=structured&level=debug&token="+clashSecret, nil)
	logger.Warn("shape check", "k", "v")
	clashShapeOf(t, "/logs", clashExampleLog, clashReadUntil(t, plainLogs, "shape check"))
	clashShapeOf(t, "/logs?format=structured", clashExampleStructured, clashReadUntil(t, structLogs, "shape check"))

	// The minimal answers dashboards need.
	for _, x := range []struct{ path, want string }{
		{"/rules", `{"rules":[{"index":0,"type":"Match","payload":"","proxy":"DIRECT","size":-1}]}`},
		{"/providers/proxies", `{"providers":{}}`},
		{"/providers/rules", `{"providers":{}}`},
	} {
		if _, b := clashDo(t, srv, clashRequest{path: x.path}); strings.TrimSpace(string(b)) != x.want {
			t.Errorf("GET %s = %s, want %s", x.path, b, x.want)
		}
	}
	var proxies struct {
		Proxies map[string]struct {
			Name, Type, Now string
			All             []string
		}
	}
	_, b = clashDo(t, srv, clashRequest{path: "/proxies"})
	if err := json.Unmarshal(b, &proxies); err != nil {
		t.Fatal(err)
	}
	if g := proxies.Proxies["GLOBAL"]; g.Type != "Selector" || g.Now != "DIRECT" || !slices.Equal(g.All, []string{"DIRECT"}) ||
		proxies.Proxies["DIRECT"].Type != "Direct" || len(proxies.Proxies) != 2 {
		t.Errorf("/proxies = %s", b)
	}
	var configs map[string]any
	_, b = clashDo(t, srv, clashRequest{path: "/configs"})
	if err := json.Unmarshal(b, &configs); err != nil {
		t.Fatal(err)
	}
	if configs["port"] != float64(mustAtoi(t, proxyPort)) || configs["mode"] != "direct" || configs["allow-lan"] != false ||
		configs["bind-address"] != "127.0.0.1" || configs["log-level"] != "debug" {
		t.Errorf("/configs = %s", b)
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// clashReadUntil reads messages until one contains text.
func clashReadUntil(t *testing.T, ws *websocket.Conn, text string) []byte {
	t.Helper()
	for {
		if b := clashRead(t, ws); strings.Contains(string(b), text) {
			return b
		}
	}
}

// TestClashAuth checks the secret the way Clash does: Bearer on HTTP,
// ?token= on WebSocket upgrades only, 401 {"message":"Unauthorized"}
// otherwise; and a generated secret when none is given.
func TestClashAuth(t *testing.T) {
	p, _ := startProxy(t)
	_, srv := clashStartAPI(t, p, nil)
	for _, x := range []struct {
		name   string
		header http.Header
		path   string
		want   int
	}{
		{"bearer", http.Header{"Authorization": {"Bearer " + clashSecret}}, "/version", 200},
		{"bearer, other case", http.Header{"Authorization": {"bearer " + clashSecret}}, "/version", 200},
		{"none", http.Header{"Authorization": nil}, "/version", 401},
		{"wrong", http.Header{"Authorization": {"Bearer s3cre"}}, "/version", 401},
		{"longer", http.Header{"Authorization": {"Bearer " + clashSecret + "x"}}, "/version", 401},
		{"basic", http.Header{"Authorization": {"Basic " + clashSecret}}, "/version", 401},
		{"token on plain HTTP", http.Header{"Authorization": nil}, "/version?token=" + clashSecret, 401},
		{"unknown path, no secret", http.Header{"Authorization": nil}, "/nothing", 401},
		{"unknown path", http.Header{"Authorization": {"Bearer " + clashSecret}}, "/nothing", 404},
		{"DELETE without secret", http.Header{"Authorization": nil}, "/connections", 401},
	} {
		method := http.MethodGet
		if strings.HasPrefix(x.name, "DELETE") {
			method = http.MethodDelete
		}
		resp, b := clashDo(t, srv, clashRequest{method: method, path: x.path, header: x.header})
		if resp.StatusCode != x.want {
			t.Errorf("%s: %s, want %d", x.name, resp.Status, x.want)
		}
		if x.want == 401 && strings.TrimSpace(string(b)) != clashExampleError {
			t.Errorf("%s: body %s", x.name, b)
		}
	}
	for _, x := range []struct {
		name, path string
		header     http.Header
		want       int
	}{
		{"token", "/traffic?token=" + clashSecret, nil, 101},
		{"wrong token", "/traffic?token=nope", nil, 401},
		{"two tokens", "/traffic?token=" + clashSecret + "&token=" + clashSecret, nil, 401},
		{"no token", "/traffic", nil, 401},
		{"bearer header instead", "/traffic", http.Header{"Authorization": {"Bearer " + clashSecret}}, 101},
		{"wrong token beats the header", "/traffic?token=nope", http.Header{"Authorization": {"Bearer " + clashSecret}}, 401},
		{"logs", "/logs?level=info&token=" + clashSecret, nil, 101},
	} {
		if got := clashDialStatus(t, srv, x.path, x.header); got != x.want {
			t.Errorf("WebSocket %s: %d, want %d", x.name, got, x.want)
		}
	}

	// No secret given: a random one, required.
	api := clash.NewClashAPI(p, nil)
	defer api.Close()
	gen := httptest.NewServer(api)
	defer gen.Close()
	if ok, _ := regexp.MatchString(`^[0-9a-f]{32}$`, api.Secret()); !ok {
		t.Errorf("generated secret %q", api.Secret())
	}
	for _, x := range []struct {
		auth string
		want int
	}{{"", 401}, {"Bearer ", 401}, {"Bearer " + api.Secret(), 200}} {
		req, _ := http.NewRequest(http.MethodGet, gen.URL+"/version", nil)
		if x.auth != "" {
			req.Header.Set("Authorization", x.auth)
		}
		resp, err := gen.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != x.want {
			t.Errorf("generated secret, Authorization %q: %s, want %d", x.auth, resp.Status, x.want)
		}
	}
	if other := clash.NewClashAPI(p, nil); other.Secret() == api.Secret() {
		t.Error("two generated secrets are equal")
	} else {
		other.Close()
	}
}

// TestClashCORS checks the origin policy: a listed origin gets CORS headers
// (its own origin, never "*") and its preflights answered, Private Network
// Access included; a foreign one is refused on every path, WebSockets
// included; the API's own origin and non-browsers need nothing.
func TestClashCORS(t *testing.T) {
	p, _ := startProxy(t)
	const dashboard = "http://dashboard.example:8080"
	_, srv := clashStartAPI(t, p, &clash.ClashOptions{AllowedOrigins: []string{dashboard + "/"}})
	preflight := func(origin string) http.Header {
		return http.Header{
			"Origin":                                 {origin},
			"Access-Control-Request-Method":          {"DELETE"},
			"Access-Control-Request-Headers":         {"authorization,content-type"},
			"Access-Control-Request-Private-Network": {"true"},
			"Authorization":                          nil, // browsers send no credentials on a preflight
		}
	}

	resp, _ := clashDo(t, srv, clashRequest{method: http.MethodOptions, path: "/connections/12", header: preflight(dashboard)})
	h := resp.Header
	if resp.StatusCode != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != dashboard ||
		!strings.Contains(h.Get("Access-Control-Allow-Methods"), "DELETE") ||
		!strings.Contains(h.Get("Access-Control-Allow-Headers"), "Authorization") ||
		!strings.Contains(h.Get("Access-Control-Allow-Headers"), "Content-Type") ||
		h.Get("Access-Control-Allow-Private-Network") != "true" || h.Get("Access-Control-Max-Age") != "300" {
		t.Errorf("preflight from the dashboard: %s %v", resp.Status, h)
	}
	resp, _ = clashDo(t, srv, clashRequest{path: "/version", header: http.Header{"Origin": {dashboard}}})
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != dashboard ||
		!slices.Contains(resp.Header.Values("Vary"), "Origin") {
		t.Errorf("GET from the dashboard: %s %v", resp.Status, resp.Header)
	}

	for _, foreign := range []string{"http://evil.example", "null", "http://dashboard.example:8081", "https://dashboard.example:8080"} {
		resp, _ := clashDo(t, srv, clashRequest{method: http.MethodOptions, path: "/connections", header: preflight(foreign)})
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("preflight from %s: %s %v", foreign, resp.Status, resp.Header)
		}
		resp, _ = clashDo(t, srv, clashRequest{method: http.MethodDelete, path: "/connections", header: http.Header{"Origin": {foreign}}})
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("DELETE with the secret from %s: %s", foreign, resp.Status)
		}
		if got := clashDialStatus(t, srv, "/logs?token="+clashSecret, http.Header{"Origin": {foreign}}); got != http.StatusForbidden {
			t.Errorf("WebSocket with the token from %s: %d, want 403", foreign, got)
		}
	}

	// The API's own origin (a dashboard served by the same server) and
	// programs, which send no Origin.
	if got := clashDialStatus(t, srv, "/logs?token="+clashSecret, http.Header{"Origin": {srv.URL}}); got != 101 {
		t.Errorf("same-origin WebSocket: %d", got)
	}
	if got := clashDialStatus(t, srv, "/logs?token="+clashSecret, http.Header{"Origin": {dashboard}}); got != 101 {
		t.Errorf("WebSocket from the dashboard: %d", got)
	}
	resp, _ = clashDo(t, srv, clashRequest{path: "/version", header: http.Header{"Origin": {srv.URL}}})
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("same-origin GET: %s %v", resp.Status, resp.Header)
	}

	// AllowAnyOrigin, explicitly.
	_, anySrv := clashStartAPI(t, p, &clash.ClashOptions{AllowAnyOrigin: true})
	resp, _ = clashDo(t, anySrv, clashRequest{method: http.MethodOptions, path: "/version", header: preflight("http://anything.example")})
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "http://anything.example" {
		t.Errorf("AllowAnyOrigin preflight: %s %v", resp.Status, resp.Header)
	}
}

// TestClashDeleteEndsTransfers closes in-flight transfers through DELETE
// /connections/{id} and DELETE /connections: each client sees an error, the
// others go on, and the pushed list (WebSocket, ?interval=) empties.
func TestClashDeleteEndsTransfers(t *testing.T) {
	plain := streamServer(false)
	t.Cleanup(plain.Close)
	secure := streamServer(true)
	t.Cleanup(secure.Close)
	roots := x509.NewCertPool()
	roots.AddCert(secure.Certificate())

	p, pu := startProxy(t)
	_, srv := clashStartAPI(t, p, nil)
	ws := clashDial(t, srv, "/connections?interval=30&token="+clashSecret, nil)

	transfers := map[string]*clashTransfer{
		"/one":   clashStartTransfer(t, pu, plain.URL+"/one", nil),
		"/two":   clashStartTransfer(t, pu, plain.URL+"/two", nil),
		"tunnel": clashStartTransfer(t, pu, secure.URL+"/three", roots),
	}
	ids := map[string]string{}
	for len(ids) < 3 {
		var snap clashSnapshotJSON
		clashReadJSON(t, ws, &snap)
		clear(ids)
		for _, c := range snap.Connections {
			switch {
			case c.Download == 0:
			case c.Metadata["type"] == "HTTPS":
				ids["tunnel"] = c.ID
			case strings.HasSuffix(c.Extra["url"].(string), "/one"):
				ids["/one"] = c.ID
			case strings.HasSuffix(c.Extra["url"].(string), "/two"):
				ids["/two"] = c.ID
			}
		}
	}

	resp, _ := clashDo(t, srv, clashRequest{method: http.MethodDelete, path: "/connections/" + ids["/one"]})
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE /connections/%s: %s", ids["/one"], resp.Status)
	}
	if err := transfers["/one"].wait(t); errors.Is(err, errNoError) {
		t.Errorf("/one ended without an error after DELETE")
	}
	for _, k := range []string{"/two", "tunnel"} {
		id, _ := strconv.ParseInt(ids[k], 10, 64)
		if _, ok := p.Connection(proxywatch.ConnID(id)); !ok {
			t.Errorf("%s ended with /one", k)
		}
	}
	// Unknown and malformed ids get 204, as in Clash.
	for _, id := range []string{"999999", "5d2c0e1a-7a9b-4f0e-9a53-3b1f2c7e8d11"} {
		if resp, _ := clashDo(t, srv, clashRequest{method: http.MethodDelete, path: "/connections/" + id}); resp.StatusCode != 204 {
			t.Errorf("DELETE unknown %s: %s", id, resp.Status)
		}
	}

	resp, _ = clashDo(t, srv, clashRequest{method: http.MethodDelete, path: "/connections"})
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE /connections: %s", resp.Status)
	}
	for _, k := range []string{"/two", "tunnel"} {
		if err := transfers[k].wait(t); errors.Is(err, errNoError) {
			t.Errorf("%s ended without an error after DELETE /connections", k)
		}
	}
	for _, ci := range p.History() {
		if id := strconv.FormatInt(int64(ci.ID), 10); slices.Contains([]string{ids["/one"], ids["/two"], ids["tunnel"]}, id) &&
			ci.EndReason != proxywatch.EndClosedByAPI {
			t.Errorf("%s ended with %q", id, ci.EndReason)
		}
	}
	// The pushed list empties: never null.
	for {
		var raw []byte
		var snap clashSnapshotJSON
		raw = clashReadJSON(t, ws, &snap)
		if len(snap.Connections) == 0 {
			if !strings.Contains(string(raw), `"connections":[]`) {
				t.Errorf("empty list is not []: %s", raw)
			}
			break
		}
	}
}

// TestClashTrafficStream checks /traffic over a WebSocket and over a
// streaming GET: one message per interval (never faster), bytes per second
// while a transfer runs, exact zeros once nothing moves, growing totals.
func TestClashTrafficStream(t *testing.T) {
	plain := streamServer(false)
	t.Cleanup(plain.Close)
	p, pu := startProxy(t)
	const every = 50 * time.Millisecond
	_, srv := clashStartAPI(t, p, &clash.ClashOptions{TrafficInterval: every})
	ws := clashDial(t, srv, "/traffic?token="+clashSecret, nil)

	type traffic struct{ Up, Down, UpTotal, DownTotal uint64 }
	x := clashStartTransfer(t, pu, plain.URL+"/t", nil)
	var prev traffic
	for moving := 0; moving < 3; {
		var tr traffic
		clashReadJSON(t, ws, &tr)
		if tr.UpTotal < prev.UpTotal || tr.DownTotal < prev.DownTotal {
			t.Fatalf("totals went back: %+v after %+v", tr, prev)
		}
		if _, down := p.Totals(); tr.DownTotal > down {
			t.Fatalf("downTotal %d beyond the proxy's %d", tr.DownTotal, down)
		}
		if tr.Down > 0 {
			moving++
		}
		prev = tr
	}
	start := time.Now()
	const n = 5
	for range n {
		clashRead(t, ws)
	}
	if elapsed := time.Since(start); elapsed < (n-1)*every {
		t.Errorf("%d messages in %v: faster than one per %v", n, elapsed, every)
	}

	x.cancel()
	x.wait(t)
	for {
		var a, b traffic
		clashReadJSON(t, ws, &a)
		clashReadJSON(t, ws, &b)
		if a.UpTotal == b.UpTotal && a.DownTotal == b.DownTotal {
			if b.Up != 0 || b.Down != 0 {
				t.Errorf("nothing moved, yet %+v", b)
			}
			break
		}
	}

	// The same as a streaming GET (yacd's fallback), as newline-delimited
	// JSON that goes on until the client leaves.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/traffic", nil)
	req.Header.Set("Authorization", "Bearer "+clashSecret)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for range 3 {
		if !sc.Scan() {
			t.Fatalf("stream ended: %v", sc.Err())
		}
		clashShapeOf(t, "GET /traffic", clashExampleTraffic, sc.Bytes())
	}
}

// TestClashConnectionsInterval checks ?interval=: the first snapshot at once
// (even with an hour's interval), then one per interval, never faster than
// MinConnectionsInterval, and 400 for a malformed value.
func TestClashConnectionsInterval(t *testing.T) {
	p, _ := startProxy(t)
	const floor = 60 * time.Millisecond
	_, srv := clashStartAPI(t, p, &clash.ClashOptions{MinConnectionsInterval: floor})

	hour := clashDial(t, srv, "/connections?interval=3600000&token="+clashSecret, nil)
	var snap clashSnapshotJSON
	if raw := clashReadJSON(t, hour, &snap); !strings.Contains(string(raw), `"connections":[]`) {
		t.Errorf("no connections is not []: %s", raw)
	}

	for _, x := range []struct {
		query string
		least time.Duration
	}{{"interval=80", 80 * time.Millisecond}, {"interval=1", floor}} {
		ws := clashDial(t, srv, "/connections?"+x.query+"&token="+clashSecret, nil)
		clashRead(t, ws)
		start := time.Now()
		const n = 4
		for range n {
			clashRead(t, ws)
		}
		if elapsed := time.Since(start); elapsed < (n-1)*x.least {
			t.Errorf("%s: %d snapshots in %v, faster than one per %v", x.query, n, elapsed, x.least)
		}
	}
	for _, bad := range []string{"abc", "0", "-5", "1.5"} {
		resp, b := clashDo(t, srv, clashRequest{path: "/connections?interval=" + bad})
		if resp.StatusCode != http.StatusBadRequest || strings.TrimSpace(string(b)) != `{"message":"Body invalid"}` {
			t.Errorf("interval=%s: %s %s", bad, resp.Status, b)
		}
	}
}

// TestClashLogs checks /logs: server-side level filtering with Clash's level
// names, both formats, the connection id in the fields, a streaming GET,
// "silent", and 400 for an unknown level.
func TestClashLogs(t *testing.T) {
	p, _ := startProxy(t)
	api, srv := clashStartAPI(t, p, nil)
	logger := slog.New(p.SlogHandler())

	warn := clashDial(t, srv, "/logs?level=warning&token="+clashSecret, nil)
	def := clashDial(t, srv, "/logs?token="+clashSecret, nil)
	structured := clashDial(t, srv, "/logs?level=debug&format=structured&token="+clashSecret, nil)
	silent := clashDial(t, srv, "/logs?level=silent&token="+clashSecret, nil)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/logs?level=error", nil)
	req.Header.Set("Authorization", "Bearer "+clashSecret)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()

	logger.Debug("d1")
	logger.Info("i1")
	logger.Warn("w1", "k", "v w")
	logger.Error("e1", "n", 3)

	type line struct{ Type, Payload string }
	var got []line
	for range 2 {
		var l line
		clashReadJSON(t, warn, &l)
		got = append(got, l)
	}
	if want := []line{{"warning", `w1 k="v w"`}, {"error", "e1 n=3"}}; !slices.Equal(got, want) {
		t.Errorf("level=warning got %v, want %v", got, want)
	}
	var l line
	if clashReadJSON(t, def, &l); l != (line{"info", "i1"}) {
		t.Errorf("default level: first line %v, want info i1", l)
	}
	type sline struct {
		Time, Level, Message string
		Fields               []struct{ Key, Value string }
	}
	var sl []sline
	for range 4 {
		var s sline
		clashReadJSON(t, structured, &s)
		sl = append(sl, s)
	}
	for i, want := range []string{"debug", "info", "warn", "error"} {
		if sl[i].Level != want || !regexp.MustCompile(`^\d\d:\d\d:\d\d$`).MatchString(sl[i].Time) || sl[i].Fields == nil {
			t.Errorf("structured line %d: %+v, want level %s", i, sl[i], want)
		}
	}
	if f := sl[2].Fields; len(f) != 1 || f[0].Key != "k" || f[0].Value != "v w" {
		t.Errorf("structured fields %+v", f)
	}
	sc := bufio.NewScanner(resp.Body)
	if !sc.Scan() || strings.TrimSpace(sc.Text()) != `{"type":"error","payload":"e1 n=3"}` {
		t.Errorf("GET /logs?level=error: %q %v", sc.Text(), sc.Err())
	}

	// A record of a connection carries its id, the one /connections shows.
	logger.Warn("about a connection", "conn", proxywatch.ConnID(42))
	if b := clashReadUntil(t, warn, "about a connection"); !strings.Contains(string(b), "conn=42") {
		t.Errorf("connection id missing: %s", b)
	}

	for _, bad := range []string{"verbose", "WARNINGS", "3"} {
		resp, b := clashDo(t, srv, clashRequest{path: "/logs?level=" + bad})
		if resp.StatusCode != http.StatusBadRequest || strings.TrimSpace(string(b)) != `{"message":"Body invalid"}` {
			t.Errorf("level=%s: %s %s", bad, resp.Status, b)
		}
	}

	// silent got nothing: the first thing it sees is the close frame.
	api.Close()
	silent.SetReadDeadline(time.Now().Add(clashTimeout))
	if typ, b, err := silent.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Errorf("level=silent: got %d %s %v, want only the close frame", typ, b, err)
	}
}

// TestClashCloseEndsStreams opens every kind of stream, closes the API and
// checks that each ends (1001 on WebSockets, end of body on GETs), that no
// goroutine of the API is left, and that later streams get 503.
func TestClashCloseEndsStreams(t *testing.T) {
	p, _ := startProxy(t)
	api := clash.NewClashAPI(p, &clash.ClashOptions{Secret: clashSecret, TrafficInterval: 20 * time.Millisecond})
	srv := httptest.NewServer(api)
	defer srv.Close()
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	var sockets []*websocket.Conn
	for _, path := range []string{"/traffic", "/memory", "/connections", "/logs", "/logs?format=structured&level=debug"} {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		ws, _, err := websocket.DefaultDialer.Dial(clashWSURL(srv, path+sep+"token="+clashSecret), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		sockets = append(sockets, ws)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	var bodies []io.ReadCloser
	for _, path := range []string{"/traffic", "/memory", "/logs"} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+clashSecret)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		bodies = append(bodies, resp.Body)
	}
	if n := api.Streams(); n != 8 {
		t.Errorf("Streams() = %d, want 8", n)
	}

	api.Close()
	for i, ws := range sockets {
		for {
			ws.SetReadDeadline(time.Now().Add(clashTimeout))
			if _, _, err := ws.ReadMessage(); err != nil {
				if !websocket.IsCloseError(err, websocket.CloseGoingAway) {
					t.Errorf("socket %d ended with %v, want 1001", i, err)
				}
				break
			}
		}
		ws.Close()
	}
	var wg sync.WaitGroup
	for i, body := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := io.Copy(io.Discard, body); err != nil {
				t.Errorf("stream %d ended with %v, want its end", i, err)
			}
		}()
	}
	wg.Wait()
	if n := api.Streams(); n != 0 {
		t.Errorf("Streams() = %d after Close", n)
	}
	if got := clashDialStatus(t, srv, "/traffic?token="+clashSecret, nil); got != http.StatusServiceUnavailable {
		t.Errorf("WebSocket after Close: %d, want 503", got)
	}
	if resp, _ := clashDo(t, srv, clashRequest{path: "/version"}); resp.StatusCode != 200 {
		t.Errorf("plain request after Close: %s", resp.Status)
	}
	tr.CloseIdleConnections()
	srv.Client().CloseIdleConnections()
}

// TestClashMaxStreams checks that streams beyond MaxStreams get 503 and
// that a freed slot is reusable.
func TestClashMaxStreams(t *testing.T) {
	p, _ := startProxy(t)
	api, srv := clashStartAPI(t, p, &clash.ClashOptions{MaxStreams: 2})
	a := clashDial(t, srv, "/memory?token="+clashSecret, nil)
	clashDial(t, srv, "/memory?token="+clashSecret, nil)
	if got := clashDialStatus(t, srv, "/memory?token="+clashSecret, nil); got != http.StatusServiceUnavailable {
		t.Errorf("third stream: %d, want 503", got)
	}
	a.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	a.Close()
	for deadline := time.Now().Add(clashTimeout); api.Streams() != 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("Streams() = %d after a client left", api.Streams())
		}
	}
	clashDial(t, srv, "/memory?token="+clashSecret, nil)
}

// TestClashUnsupported checks the honest refusals of what a forward proxy
// without nodes, rules or a configuration file cannot do.
func TestClashUnsupported(t *testing.T) {
	p, _ := startProxy(t)
	level := new(slog.LevelVar)
	_, srv := clashStartAPI(t, p, &clash.ClashOptions{LogLevel: level})
	for _, x := range []struct {
		method, path, body string
		want               int
	}{
		{"PUT", "/proxies/GLOBAL", `{"name":"DIRECT"}`, 204},
		{"PUT", "/proxies/GLOBAL", `{"name":"HK-01"}`, 400},
		{"PUT", "/proxies/DIRECT", `{"name":"DIRECT"}`, 400},
		{"GET", "/proxies/GLOBAL", "", 200},
		{"GET", "/proxies/HK-01", "", 404},
		{"GET", "/proxies/DIRECT/delay?url=http%3A%2F%2Fexample.com&timeout=5000", "", 501},
		{"GET", "/group", "", 200},
		{"GET", "/group/GLOBAL/delay?url=x&timeout=5000", "", 501},
		{"GET", "/group/DIRECT", "", 404},
		{"GET", "/providers/proxies/default", "", 404},
		{"GET", "/providers/proxies/default/healthcheck", "", 404},
		{"PUT", "/providers/rules/x", "", 404},
		{"PATCH", "/configs", `{"mode":"rule"}`, 400},
		{"PATCH", "/configs", `{"mode":"direct"}`, 204},
		{"PATCH", "/configs", `{"allow-lan":true}`, 400},
		{"PATCH", "/configs", `{"log-level":"loud"}`, 400},
		{"PATCH", "/configs", `{"log-level":"warning","mode":"global"}`, 400},
		{"PUT", "/configs?force=true", `{"path":"","payload":""}`, 501},
		{"POST", "/cache/fakeip/flush", "", 501},
		{"POST", "/upgrade", "", 501},
		{"POST", "/restart", "", 501},
		{"GET", "/dns/query?name=example.com&type=A", "", 501},
		{"POST", "/version", "", 405},
		{"GET", "/storage/zashboard", "", 404},
	} {
		resp, b := clashDo(t, srv, clashRequest{method: x.method, path: x.path, body: x.body})
		if resp.StatusCode != x.want {
			t.Errorf("%s %s %s: %s %s, want %d", x.method, x.path, x.body, resp.Status, b, x.want)
		}
		if x.want >= 400 {
			var e struct{ Message string }
			if json.Unmarshal(b, &e) != nil || e.Message == "" {
				t.Errorf("%s %s: error body %s", x.method, x.path, b)
			}
		}
	}
	if level.Level() != slog.LevelInfo {
		t.Errorf("a refused PATCH changed the level to %v", level.Level())
	}
	if resp, b := clashDo(t, srv, clashRequest{method: "PATCH", path: "/configs", body: `{"log-level":"warning"}`}); resp.StatusCode != 204 || level.Level() != slog.LevelWarn {
		t.Errorf("PATCH log-level: %s %s, level %v", resp.Status, b, level.Level())
	}
	if _, b := clashDo(t, srv, clashRequest{path: "/configs"}); !strings.Contains(string(b), `"log-level":"warning"`) {
		t.Errorf("/configs after PATCH: %s", b)
	}
}
