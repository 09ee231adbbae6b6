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
	testSecret = "s3cret"
	// testTimeout only keeps a broken test from hanging; nothing is
	// asserted about speed.
	testTimeout = 20 * time.Second
)

// The documented examples of peers.md (the Clash/mihomo API): the shapes the
// API's answers are checked against.
const (
	exampleHello      = `{"hello":"mihomo"}`
	exampleVersion    = `{"meta":true,"version":"alpha-05e8f13"}`
	exampleTraffic    = `{"up":12034,"down":883201,"upTotal":1,"downTotal":2}`
	exampleMemory     = `{"inuse":53452800,"oslimit":0}`
	exampleLog        = `{"type":"info","payload":"[TCP] 192.168.1.20:53122 --> www.google.com:443 match DomainSuffix(google.com) using Proxy[HK-01]"}`
	exampleStructured = `{"time":"10:15:30","level":"warn","message":"[TCP] dial Proxy ... error: i/o timeout","fields":[]}`
	exampleError      = `{"message":"Unauthorized"}`
	exampleSnapshot   = `{
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

// sameShape reports (as test errors) where got lacks a member of want
// or has it with another JSON kind, recursively; array elements are compared
// with the example's first element.
func sameShape(t *testing.T, where string, want, got any) {
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
			sameShape(t, where+"."+k, wv, gv)
		}
	case []any:
		g := got.([]any)
		if len(w) > 0 {
			for i, gv := range g {
				sameShape(t, fmt.Sprintf("%s[%d]", where, i), w[0], gv)
			}
		}
	}
}

func shapeOf(t *testing.T, where, example string, got []byte) map[string]any {
	t.Helper()
	var want, have any
	if err := json.Unmarshal([]byte(example), &want); err != nil {
		t.Fatalf("%s: example: %v", where, err)
	}
	if err := json.Unmarshal(got, &have); err != nil {
		t.Fatalf("%s: %v in %s", where, err, got)
	}
	sameShape(t, where, want, have)
	m, _ := have.(map[string]any)
	return m
}

// startAPI serves an API of p behind an httptest server until the
// test ends; the secret is testSecret unless opts says otherwise.
func startAPI(t *testing.T, p *proxywatch.Proxy, opts *clash.Options) (*clash.API, *httptest.Server) {
	t.Helper()
	if opts == nil {
		opts = &clash.Options{}
	}
	if opts.Token == "" {
		opts.Token = testSecret
	}
	api := clash.New(p, opts)
	srv := httptest.NewServer(api)
	t.Cleanup(func() {
		api.Close()
		srv.Close()
	})
	return api, srv
}

// apiRequest is one HTTP request to the API.
type apiRequest struct {
	method, path string
	header       http.Header
	body         string
}

// do sends req with the secret as a Bearer token (unless req.header
// sets Authorization itself) and returns the response with its body read.
func do(t *testing.T, srv *httptest.Server, req apiRequest) (*http.Response, []byte) {
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
		r.Header.Set("Authorization", "Bearer "+testSecret)
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

func wsURL(srv *httptest.Server, pathAndQuery string) string {
	return "ws" + strings.TrimPrefix(srv.URL, "http") + pathAndQuery
}

// dial opens a WebSocket to pathAndQuery, which carries its own token.
func dial(t *testing.T, srv *httptest.Server, pathAndQuery string, header http.Header) *websocket.Conn {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(wsURL(srv, pathAndQuery), header)
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

// dialStatus tries to open a WebSocket and returns the HTTP status of a
// refusal (101 when it was accepted, then closed at once).
func dialStatus(t *testing.T, srv *httptest.Server, pathAndQuery string, header http.Header) int {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(wsURL(srv, pathAndQuery), header)
	if err == nil {
		ws.Close()
		return http.StatusSwitchingProtocols
	}
	if resp == nil {
		t.Fatalf("dial %s: %v", pathAndQuery, err)
	}
	return resp.StatusCode
}

// read reads the next text message.
func read(t *testing.T, ws *websocket.Conn) []byte {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(testTimeout))
	_, b, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return b
}

func readJSON(t *testing.T, ws *websocket.Conn, v any) []byte {
	t.Helper()
	b := read(t, ws)
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%v in %s", err, b)
	}
	return b
}

// transfer is a download through the proxy that runs until it fails.
type transfer struct {
	errc   chan error
	local  chan string // the client's address on its connection to the proxy
	cancel context.CancelFunc
}

func startTransfer(t *testing.T, proxy *url.URL, target string, roots *x509.CertPool) *transfer {
	x := &transfer{errc: make(chan error, 1), local: make(chan string, 1)}
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
func (x *transfer) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-x.errc:
		x.errc <- err // for the cleanup
		return err
	case <-time.After(testTimeout):
		t.Fatal("the transfer did not end")
		return nil
	}
}

// snapshotJSON mirrors a /connections message for the tests.
type snapshotJSON struct {
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

// TestShapes checks every answer against the documented examples, and
// the values of live connections against what the proxy and the clients
// know: a plain request, a CONNECT tunnel and a request by host name.
func TestShapes(t *testing.T) {
	plain := streamServer(false)
	t.Cleanup(plain.Close)
	secure := streamServer(true)
	t.Cleanup(secure.Close)
	roots := x509.NewCertPool()
	roots.AddCert(secure.Certificate())

	p, pu := startProxy(t)
	_, srv := startAPI(t, p, &clash.Options{ProxyAddr: pu.Host})

	_, plainPort, _ := net.SplitHostPort(strings.TrimPrefix(plain.URL, "http://"))
	_, securePort, _ := net.SplitHostPort(strings.TrimPrefix(secure.URL, "https://"))
	byIP := startTransfer(t, pu, plain.URL+"/ip", nil)
	byName := startTransfer(t, pu, "http://localhost:"+plainPort+"/name", nil)
	tunnel := startTransfer(t, pu, secure.URL+"/tunnel", roots)
	locals := map[string]string{"/ip": <-byIP.local, "/name": <-byName.local, "/tunnel": <-tunnel.local}

	// Wait until all three move bytes, then check the snapshot.
	var snap snapshotJSON
	var raw []byte
	for {
		_, raw = do(t, srv, apiRequest{path: "/connections"})
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
	shapeOf(t, "/connections", exampleSnapshot, raw)

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
	if st := p.Stats(); snap.UploadTotal > st.Up || snap.DownloadTotal > st.Down || snap.DownloadTotal == 0 {
		t.Errorf("totals %d/%d, proxy %d/%d", snap.UploadTotal, snap.DownloadTotal, st.Up, st.Down)
	}

	// The other answers.
	for _, x := range []struct{ path, example string }{
		{"/", exampleHello},
		{"/version", exampleVersion},
	} {
		resp, b := do(t, srv, apiRequest{path: x.path})
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("GET %s: %s %q", x.path, resp.Status, resp.Header.Get("Content-Type"))
		}
		shapeOf(t, x.path, x.example, b)
	}
	_, b := do(t, srv, apiRequest{path: "/version"})
	if m := shapeOf(t, "/version", exampleVersion, b); m["meta"] != false || !strings.HasPrefix(m["version"].(string), "proxywatch ") {
		t.Errorf("/version = %s", b)
	}
	_, b = do(t, srv, apiRequest{path: "/"})
	if string(b) != `{"hello":"clash"}`+"\n" {
		t.Errorf("GET / = %s", b)
	}
	resp, b := do(t, srv, apiRequest{path: "/", header: http.Header{"Authorization": {"Bearer wrong"}}})
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong secret: %s", resp.Status)
	}
	shapeOf(t, "401", exampleError, b)

	ws := dial(t, srv, "/traffic?token="+testSecret, nil)
	shapeOf(t, "/traffic", exampleTraffic, read(t, ws))
	ws = dial(t, srv, "/memory?token="+testSecret, nil)
	m := shapeOf(t, "/memory", exampleMemory, read(t, ws))
	if m["inuse"].(float64) <= 0 {
		t.Errorf("/memory = %v: the process holds some memory", m)
	}
	ws = dial(t, srv, "/connections?token="+testSecret, nil)
	shapeOf(t, "/connections (WebSocket)", exampleSnapshot, read(t, ws))

	logger := slog.New(p.SlogHandler())
	plainLogs := dial(t, srv, "/logs?token="+testSecret, nil)
	structLogs := dial(t, srv, "/logs?format=structured&level=debug&token="+testSecret, nil)
	logger.Warn("shape check", "k", "v")
	shapeOf(t, "/logs", exampleLog, readUntil(t, plainLogs, "shape check"))
	shapeOf(t, "/logs?format=structured", exampleStructured, readUntil(t, structLogs, "shape check"))

	// The minimal answers dashboards need.
	for _, x := range []struct{ path, want string }{
		{"/rules", `{"rules":[{"index":0,"type":"Match","payload":"","proxy":"DIRECT","size":-1}]}`},
		{"/providers/proxies", `{"providers":{}}`},
		{"/providers/rules", `{"providers":{}}`},
	} {
		if _, b := do(t, srv, apiRequest{path: x.path}); strings.TrimSpace(string(b)) != x.want {
			t.Errorf("GET %s = %s, want %s", x.path, b, x.want)
		}
	}
	var proxies struct {
		Proxies map[string]struct {
			Name, Type, Now string
			All             []string
		}
	}
	_, b = do(t, srv, apiRequest{path: "/proxies"})
	if err := json.Unmarshal(b, &proxies); err != nil {
		t.Fatal(err)
	}
	if g := proxies.Proxies["GLOBAL"]; g.Type != "Selector" || g.Now != "DIRECT" || !slices.Equal(g.All, []string{"DIRECT"}) ||
		proxies.Proxies["DIRECT"].Type != "Direct" || len(proxies.Proxies) != 2 {
		t.Errorf("/proxies = %s", b)
	}
	var configs map[string]any
	_, b = do(t, srv, apiRequest{path: "/configs"})
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

// readUntil reads messages until one contains text.
func readUntil(t *testing.T, ws *websocket.Conn, text string) []byte {
	t.Helper()
	for {
		if b := read(t, ws); strings.Contains(string(b), text) {
			return b
		}
	}
}

// TestAuth checks the secret the way Clash does: Bearer on HTTP,
// ?token= on WebSocket upgrades only, 401 {"message":"Unauthorized"}
// otherwise; and a generated secret when none is given.
func TestAuth(t *testing.T) {
	p, _ := startProxy(t)
	_, srv := startAPI(t, p, nil)
	for _, x := range []struct {
		name   string
		header http.Header
		path   string
		want   int
	}{
		{"bearer", http.Header{"Authorization": {"Bearer " + testSecret}}, "/version", 200},
		{"bearer, other case", http.Header{"Authorization": {"bearer " + testSecret}}, "/version", 200},
		{"none", http.Header{"Authorization": nil}, "/version", 401},
		{"wrong", http.Header{"Authorization": {"Bearer s3cre"}}, "/version", 401},
		{"longer", http.Header{"Authorization": {"Bearer " + testSecret + "x"}}, "/version", 401},
		{"basic", http.Header{"Authorization": {"Basic " + testSecret}}, "/version", 401},
		{"token on plain HTTP", http.Header{"Authorization": nil}, "/version?token=" + testSecret, 401},
		{"unknown path, no secret", http.Header{"Authorization": nil}, "/nothing", 401},
		{"unknown path", http.Header{"Authorization": {"Bearer " + testSecret}}, "/nothing", 404},
		{"DELETE without secret", http.Header{"Authorization": nil}, "/connections", 401},
	} {
		method := http.MethodGet
		if strings.HasPrefix(x.name, "DELETE") {
			method = http.MethodDelete
		}
		resp, b := do(t, srv, apiRequest{method: method, path: x.path, header: x.header})
		if resp.StatusCode != x.want {
			t.Errorf("%s: %s, want %d", x.name, resp.Status, x.want)
		}
		if x.want == 401 && strings.TrimSpace(string(b)) != exampleError {
			t.Errorf("%s: body %s", x.name, b)
		}
	}
	for _, x := range []struct {
		name, path string
		header     http.Header
		want       int
	}{
		{"token", "/traffic?token=" + testSecret, nil, 101},
		{"wrong token", "/traffic?token=nope", nil, 401},
		{"two tokens", "/traffic?token=" + testSecret + "&token=" + testSecret, nil, 401},
		{"no token", "/traffic", nil, 401},
		{"bearer header instead", "/traffic", http.Header{"Authorization": {"Bearer " + testSecret}}, 101},
		{"wrong token beats the header", "/traffic?token=nope", http.Header{"Authorization": {"Bearer " + testSecret}}, 401},
		{"logs", "/logs?level=info&token=" + testSecret, nil, 101},
	} {
		if got := dialStatus(t, srv, x.path, x.header); got != x.want {
			t.Errorf("WebSocket %s: %d, want %d", x.name, got, x.want)
		}
	}

	// No secret given: a random one, required.
	api := clash.New(p, nil)
	defer api.Close()
	gen := httptest.NewServer(api)
	defer gen.Close()
	if ok, _ := regexp.MatchString(`^[0-9a-f]{32}$`, api.Token()); !ok {
		t.Errorf("generated secret %q", api.Token())
	}
	for _, x := range []struct {
		auth string
		want int
	}{{"", 401}, {"Bearer ", 401}, {"Bearer " + api.Token(), 200}} {
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
	if other := clash.New(p, nil); other.Token() == api.Token() {
		t.Error("two generated secrets are equal")
	} else {
		other.Close()
	}
}

// TestCORS checks the origin policy: a listed origin gets CORS headers
// (its own origin, never "*") and its preflights answered, Private Network
// Access included; a foreign one is refused on every path, WebSockets
// included; the API's own origin and non-browsers need nothing.
func TestCORS(t *testing.T) {
	p, _ := startProxy(t)
	const dashboard = "http://dashboard.example:8080"
	_, srv := startAPI(t, p, &clash.Options{AllowedOrigins: []string{dashboard + "/"}})
	preflight := func(origin string) http.Header {
		return http.Header{
			"Origin":                                 {origin},
			"Access-Control-Request-Method":          {"DELETE"},
			"Access-Control-Request-Headers":         {"authorization,content-type"},
			"Access-Control-Request-Private-Network": {"true"},
			"Authorization":                          nil, // browsers send no credentials on a preflight
		}
	}

	resp, _ := do(t, srv, apiRequest{method: http.MethodOptions, path: "/connections/12", header: preflight(dashboard)})
	h := resp.Header
	if resp.StatusCode != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != dashboard ||
		!strings.Contains(h.Get("Access-Control-Allow-Methods"), "DELETE") ||
		!strings.Contains(h.Get("Access-Control-Allow-Headers"), "Authorization") ||
		!strings.Contains(h.Get("Access-Control-Allow-Headers"), "Content-Type") ||
		h.Get("Access-Control-Allow-Private-Network") != "true" || h.Get("Access-Control-Max-Age") != "300" {
		t.Errorf("preflight from the dashboard: %s %v", resp.Status, h)
	}
	resp, _ = do(t, srv, apiRequest{path: "/version", header: http.Header{"Origin": {dashboard}}})
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != dashboard ||
		!slices.Contains(resp.Header.Values("Vary"), "Origin") {
		t.Errorf("GET from the dashboard: %s %v", resp.Status, resp.Header)
	}

	for _, foreign := range []string{"http://evil.example", "null", "http://dashboard.example:8081", "https://dashboard.example:8080"} {
		resp, _ := do(t, srv, apiRequest{method: http.MethodOptions, path: "/connections", header: preflight(foreign)})
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("preflight from %s: %s %v", foreign, resp.Status, resp.Header)
		}
		resp, _ = do(t, srv, apiRequest{method: http.MethodDelete, path: "/connections", header: http.Header{"Origin": {foreign}}})
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("DELETE with the secret from %s: %s", foreign, resp.Status)
		}
		if got := dialStatus(t, srv, "/logs?token="+testSecret, http.Header{"Origin": {foreign}}); got != http.StatusForbidden {
			t.Errorf("WebSocket with the token from %s: %d, want 403", foreign, got)
		}
	}

	// The API's own origin (a dashboard served by the same server) and
	// programs, which send no Origin.
	if got := dialStatus(t, srv, "/logs?token="+testSecret, http.Header{"Origin": {srv.URL}}); got != 101 {
		t.Errorf("same-origin WebSocket: %d", got)
	}
	if got := dialStatus(t, srv, "/logs?token="+testSecret, http.Header{"Origin": {dashboard}}); got != 101 {
		t.Errorf("WebSocket from the dashboard: %d", got)
	}
	resp, _ = do(t, srv, apiRequest{path: "/version", header: http.Header{"Origin": {srv.URL}}})
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("same-origin GET: %s %v", resp.Status, resp.Header)
	}

	// AllowAnyOrigin, explicitly.
	_, anySrv := startAPI(t, p, &clash.Options{AllowAnyOrigin: true})
	resp, _ = do(t, anySrv, apiRequest{method: http.MethodOptions, path: "/version", header: preflight("http://anything.example")})
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "http://anything.example" {
		t.Errorf("AllowAnyOrigin preflight: %s %v", resp.Status, resp.Header)
	}
	// "null" is refused even then, and even when listed.
	_, nullSrv := startAPI(t, p, &clash.Options{AllowedOrigins: []string{"null"}})
	for _, s := range []*httptest.Server{anySrv, nullSrv} {
		if resp, _ := do(t, s, apiRequest{path: "/version", header: http.Header{"Origin": {"null"}}}); resp.StatusCode != http.StatusForbidden {
			t.Errorf("origin null: %s, want 403", resp.Status)
		}
	}
}

// TestDeleteEndsTransfers closes in-flight transfers through DELETE
// /connections/{id} and DELETE /connections: each client sees an error, the
// others go on, and the pushed list (WebSocket, ?interval=) empties.
func TestDeleteEndsTransfers(t *testing.T) {
	plain := streamServer(false)
	t.Cleanup(plain.Close)
	secure := streamServer(true)
	t.Cleanup(secure.Close)
	roots := x509.NewCertPool()
	roots.AddCert(secure.Certificate())

	p, pu := startProxy(t)
	_, srv := startAPI(t, p, nil)
	ws := dial(t, srv, "/connections?interval=30&token="+testSecret, nil)

	transfers := map[string]*transfer{
		"/one":   startTransfer(t, pu, plain.URL+"/one", nil),
		"/two":   startTransfer(t, pu, plain.URL+"/two", nil),
		"tunnel": startTransfer(t, pu, secure.URL+"/three", roots),
	}
	ids := map[string]string{}
	for len(ids) < 3 {
		var snap snapshotJSON
		readJSON(t, ws, &snap)
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

	resp, _ := do(t, srv, apiRequest{method: http.MethodDelete, path: "/connections/" + ids["/one"]})
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
		if resp, _ := do(t, srv, apiRequest{method: http.MethodDelete, path: "/connections/" + id}); resp.StatusCode != 204 {
			t.Errorf("DELETE unknown %s: %s", id, resp.Status)
		}
	}

	resp, _ = do(t, srv, apiRequest{method: http.MethodDelete, path: "/connections"})
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
		var snap snapshotJSON
		raw = readJSON(t, ws, &snap)
		if len(snap.Connections) == 0 {
			if !strings.Contains(string(raw), `"connections":[]`) {
				t.Errorf("empty list is not []: %s", raw)
			}
			break
		}
	}
}

// TestTrafficStream checks /traffic over a WebSocket and over a
// streaming GET: one message per interval (never faster), bytes per second
// while a transfer runs, exact zeros once nothing moves, growing totals.
func TestTrafficStream(t *testing.T) {
	plain := streamServer(false)
	t.Cleanup(plain.Close)
	p, pu := startProxy(t)
	const every = 50 * time.Millisecond
	_, srv := startAPI(t, p, &clash.Options{TrafficInterval: every})
	ws := dial(t, srv, "/traffic?token="+testSecret, nil)

	type traffic struct{ Up, Down, UpTotal, DownTotal uint64 }
	x := startTransfer(t, pu, plain.URL+"/t", nil)
	var prev traffic
	for moving := 0; moving < 3; {
		var tr traffic
		readJSON(t, ws, &tr)
		if tr.UpTotal < prev.UpTotal || tr.DownTotal < prev.DownTotal {
			t.Fatalf("totals went back: %+v after %+v", tr, prev)
		}
		if down := p.Stats().Down; tr.DownTotal > down {
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
		read(t, ws)
	}
	if elapsed := time.Since(start); elapsed < (n-1)*every {
		t.Errorf("%d messages in %v: faster than one per %v", n, elapsed, every)
	}

	x.cancel()
	x.wait(t)
	for {
		var a, b traffic
		readJSON(t, ws, &a)
		readJSON(t, ws, &b)
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
	req.Header.Set("Authorization", "Bearer "+testSecret)
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
		shapeOf(t, "GET /traffic", exampleTraffic, sc.Bytes())
	}
}

// TestConnectionsInterval checks ?interval=: the first snapshot at once
// (even with an hour's interval), then one per interval, never faster than
// MinConnectionsInterval, and 400 for a malformed value.
func TestConnectionsInterval(t *testing.T) {
	p, _ := startProxy(t)
	const floor = 60 * time.Millisecond
	_, srv := startAPI(t, p, &clash.Options{MinConnectionsInterval: floor})

	hour := dial(t, srv, "/connections?interval=3600000&token="+testSecret, nil)
	var snap snapshotJSON
	if raw := readJSON(t, hour, &snap); !strings.Contains(string(raw), `"connections":[]`) {
		t.Errorf("no connections is not []: %s", raw)
	}

	for _, x := range []struct {
		query string
		least time.Duration
	}{{"interval=80", 80 * time.Millisecond}, {"interval=1", floor}} {
		ws := dial(t, srv, "/connections?"+x.query+"&token="+testSecret, nil)
		read(t, ws)
		start := time.Now()
		const n = 4
		for range n {
			read(t, ws)
		}
		if elapsed := time.Since(start); elapsed < (n-1)*x.least {
			t.Errorf("%s: %d snapshots in %v, faster than one per %v", x.query, n, elapsed, x.least)
		}
	}
	for _, bad := range []string{"abc", "0", "-5", "1.5"} {
		resp, b := do(t, srv, apiRequest{path: "/connections?interval=" + bad})
		if resp.StatusCode != http.StatusBadRequest || strings.TrimSpace(string(b)) != `{"message":"Body invalid"}` {
			t.Errorf("interval=%s: %s %s", bad, resp.Status, b)
		}
	}
}

// TestLogs checks /logs: server-side level filtering with Clash's level
// names, both formats, the connection id in the fields, a streaming GET,
// "silent", and 400 for an unknown level.
func TestLogs(t *testing.T) {
	p, _ := startProxy(t)
	api, srv := startAPI(t, p, nil)
	logger := slog.New(p.SlogHandler())

	warn := dial(t, srv, "/logs?level=warning&token="+testSecret, nil)
	def := dial(t, srv, "/logs?token="+testSecret, nil)
	structured := dial(t, srv, "/logs?level=debug&format=structured&token="+testSecret, nil)
	silent := dial(t, srv, "/logs?level=silent&token="+testSecret, nil)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/logs?level=error", nil)
	req.Header.Set("Authorization", "Bearer "+testSecret)
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
		readJSON(t, warn, &l)
		got = append(got, l)
	}
	if want := []line{{"warning", `w1 k="v w"`}, {"error", "e1 n=3"}}; !slices.Equal(got, want) {
		t.Errorf("level=warning got %v, want %v", got, want)
	}
	var l line
	if readJSON(t, def, &l); l != (line{"info", "i1"}) {
		t.Errorf("default level: first line %v, want info i1", l)
	}
	type sline struct {
		Time, Level, Message string
		Fields               []struct{ Key, Value string }
	}
	var sl []sline
	for range 4 {
		var s sline
		readJSON(t, structured, &s)
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
	if b := readUntil(t, warn, "about a connection"); !strings.Contains(string(b), "conn=42") {
		t.Errorf("connection id missing: %s", b)
	}

	for _, bad := range []string{"verbose", "WARNINGS", "3"} {
		resp, b := do(t, srv, apiRequest{path: "/logs?level=" + bad})
		if resp.StatusCode != http.StatusBadRequest || strings.TrimSpace(string(b)) != `{"message":"Body invalid"}` {
			t.Errorf("level=%s: %s %s", bad, resp.Status, b)
		}
	}

	// silent got nothing: the first thing it sees is the close frame.
	api.Close()
	silent.SetReadDeadline(time.Now().Add(testTimeout))
	if typ, b, err := silent.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Errorf("level=silent: got %d %s %v, want only the close frame", typ, b, err)
	}
}

// TestCloseEndsStreams opens every kind of stream, closes the API and
// checks that each ends (1001 on WebSockets, end of body on GETs), that no
// goroutine of the API is left, and that later streams get 503.
func TestCloseEndsStreams(t *testing.T) {
	p, _ := startProxy(t)
	api := clash.New(p, &clash.Options{Token: testSecret, TrafficInterval: 20 * time.Millisecond})
	srv := httptest.NewServer(api)
	defer srv.Close()
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	var sockets []*websocket.Conn
	for _, path := range []string{"/traffic", "/memory", "/connections", "/logs", "/logs?format=structured&level=debug"} {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		ws, _, err := websocket.DefaultDialer.Dial(wsURL(srv, path+sep+"token="+testSecret), nil)
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
		req.Header.Set("Authorization", "Bearer "+testSecret)
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
			ws.SetReadDeadline(time.Now().Add(testTimeout))
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
	if got := dialStatus(t, srv, "/traffic?token="+testSecret, nil); got != http.StatusServiceUnavailable {
		t.Errorf("WebSocket after Close: %d, want 503", got)
	}
	if resp, _ := do(t, srv, apiRequest{path: "/version"}); resp.StatusCode != 200 {
		t.Errorf("plain request after Close: %s", resp.Status)
	}
	tr.CloseIdleConnections()
	srv.Client().CloseIdleConnections()
}

// TestMaxStreams checks that streams beyond MaxStreams get 503 and
// that a freed slot is reusable.
func TestMaxStreams(t *testing.T) {
	p, _ := startProxy(t)
	api, srv := startAPI(t, p, &clash.Options{MaxStreams: 2})
	a := dial(t, srv, "/memory?token="+testSecret, nil)
	dial(t, srv, "/memory?token="+testSecret, nil)
	if got := dialStatus(t, srv, "/memory?token="+testSecret, nil); got != http.StatusServiceUnavailable {
		t.Errorf("third stream: %d, want 503", got)
	}
	a.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	a.Close()
	for deadline := time.Now().Add(testTimeout); api.Streams() != 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("Streams() = %d after a client left", api.Streams())
		}
	}
	dial(t, srv, "/memory?token="+testSecret, nil)
}

// TestUnsupported checks the honest refusals of what a forward proxy
// without nodes, rules or a configuration file cannot do.
func TestUnsupported(t *testing.T) {
	p, _ := startProxy(t)
	level := new(slog.LevelVar)
	_, srv := startAPI(t, p, &clash.Options{LogLevel: level})
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
		resp, b := do(t, srv, apiRequest{method: x.method, path: x.path, body: x.body})
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
	if resp, b := do(t, srv, apiRequest{method: "PATCH", path: "/configs", body: `{"log-level":"warning"}`}); resp.StatusCode != 204 || level.Level() != slog.LevelWarn {
		t.Errorf("PATCH log-level: %s %s, level %v", resp.Status, b, level.Level())
	}
	if _, b := do(t, srv, apiRequest{path: "/configs"}); !strings.Contains(string(b), `"log-level":"warning"`) {
		t.Errorf("/configs after PATCH: %s", b)
	}
}
