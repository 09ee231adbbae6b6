package clash_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/proxywatch/proxywatch/hub/clash"
)

// No Clash dashboard is published as a built package on the npm registry
// (yacd, metacubexd and zashboard are not there), so instead of a browser
// test this file replays what each of them sends, in their order, as a
// browser sends it from the dashboard's own origin: a CORS preflight before
// every request that carries the secret, the request with its Origin, and
// WebSockets with ?token= and Origin. The requests were read from the
// dashboards' sources:
//
//   - yacd (haishanh/yacd): src/misc/request-helper.ts (headers
//     "Content-Type: application/json" and "Authorization: Bearer"; WebSocket
//     URLs with ?token= and, for logs, &level= taken from /configs
//     "log-level"), src/api/configs.ts, version.ts, proxies.ts, rules.ts,
//     traffic.ts (WebSocket, then a streaming GET as fallback),
//     connections.ts, logs.ts.
//   - metacubexd (MetaCubeX/metacubexd): packages/ui/composables/useApi.ts
//     (checkEndpointAPI GET /version, then configs, proxies,
//     providers/proxies, rules, providers/rules; DELETE connections/{id} and
//     connections), useWebSocket.ts (connections, traffic, memory, and logs
//     with &level=).
//   - zashboard (Zephyruso/zashboard): src/api/clash.ts (probeClashChannel
//     GET /version, createClashWebSocket with ?token= then the parameters),
//     src/store/proxies.ts (GET /proxies and /providers/proxies at once, then
//     proxies.GLOBAL.all and every proxy's type), src/store/logs.ts
//     (payload.replace on every line).
//
// Each replay runs against a live transfer and checks what the dashboard
// reads of every answer, that the transfer shows up in the pushed list with
// its log lines, and that the dashboard's close button ends it.

// browser sends requests as a browser does for a page of origin.
type browser struct {
	t       *testing.T
	srv     *httptest.Server
	origin  string
	headers map[string]string // what the dashboard adds to every request
}

// fetch sends the preflight a browser sends first (every dashboard request
// carries Authorization, so every one is preflighted), checks that it
// allows the request, then sends the request and checks that the page may
// read the answer.
func (b *browser) fetch(method, path, body string) (*http.Response, []byte) {
	t := b.t
	t.Helper()
	var names []string
	for k := range b.headers {
		names = append(names, strings.ToLower(k))
	}
	sort.Strings(names)
	resp, _ := do(t, b.srv, apiRequest{method: http.MethodOptions, path: path, header: http.Header{
		"Origin":                         {b.origin},
		"Access-Control-Request-Method":  {method},
		"Access-Control-Request-Headers": {strings.Join(names, ",")},
		"Authorization":                  nil,
	}})
	allowed := strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers"))
	if resp.StatusCode/100 != 2 || resp.Header.Get("Access-Control-Allow-Origin") != b.origin ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), method) {
		t.Fatalf("preflight of %s %s: %s %v", method, path, resp.Status, resp.Header)
	}
	for _, n := range names {
		if !strings.Contains(allowed, n) {
			t.Fatalf("preflight of %s %s: header %s not allowed (%s)", method, path, n, allowed)
		}
	}
	h := http.Header{"Origin": {b.origin}}
	for k, v := range b.headers {
		h.Set(k, v)
	}
	resp, got := do(t, b.srv, apiRequest{method: method, path: path, header: h, body: body})
	if resp.Header.Get("Access-Control-Allow-Origin") != b.origin {
		t.Fatalf("%s %s: the page may not read the answer (%v)", method, path, resp.Header)
	}
	return resp, got
}

// getJSON fetches path and decodes it, as the dashboards' res.json() does.
func (b *browser) getJSON(path string, v any) {
	b.t.Helper()
	resp, body := b.fetch(http.MethodGet, path, "")
	if resp.StatusCode != http.StatusOK {
		b.t.Fatalf("GET %s: %s %s", path, resp.Status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		b.t.Fatalf("GET %s: %v in %s", path, err, body)
	}
}

// websocket opens a WebSocket as new WebSocket(url) does from the page.
func (b *browser) websocket(pathAndQuery string) *websocket.Conn {
	b.t.Helper()
	return dial(b.t, b.srv, pathAndQuery, http.Header{"Origin": {b.origin}})
}

// What the dashboards read of the answers.
type (
	dashTraffic struct {
		Up, Down *float64
	}
	dashMemory struct {
		Inuse *float64
	}
	dashConn struct {
		ID       string `json:"id"`
		Metadata struct {
			Network, Type, SourceIP, DestinationIP, SourcePort, DestinationPort, Host, ProcessPath *string
		} `json:"metadata"`
		Upload, Download *float64
		Start            time.Time
		Chains           []string
		Rule             *string
	}
	dashSnapshot struct {
		DownloadTotal, UploadTotal *float64
		Connections                []dashConn
	}
	dashLog struct {
		Type, Payload *string
	}
)

// dashWaitConn reads snapshots until one lists a connection moving
// bytes whose URL ends with suffix, checking every field the dashboards read.
func dashWaitConn(t *testing.T, ws *websocket.Conn, suffix string) string {
	t.Helper()
	for {
		var raw map[string]json.RawMessage
		b := readJSON(t, ws, &raw)
		if string(raw["connections"]) == "null" {
			t.Fatalf("connections is null: %s", b)
		}
		var snap dashSnapshot
		if err := json.Unmarshal(b, &snap); err != nil {
			t.Fatal(err)
		}
		if snap.DownloadTotal == nil || snap.UploadTotal == nil {
			t.Fatalf("totals missing: %s", b)
		}
		var withURL struct {
			Connections []struct {
				Proxywatch struct{ URL string }
			}
		}
		json.Unmarshal(b, &withURL)
		for i, c := range snap.Connections {
			md := c.Metadata
			if c.ID == "" || md.Network == nil || md.Type == nil || md.SourceIP == nil || md.DestinationIP == nil ||
				md.SourcePort == nil || md.DestinationPort == nil || md.Host == nil || md.ProcessPath == nil ||
				c.Upload == nil || c.Download == nil || c.Start.IsZero() || c.Chains == nil || c.Rule == nil {
				t.Fatalf("a field a dashboard reads is missing: %s", b)
			}
			if strings.HasSuffix(withURL.Connections[i].Proxywatch.URL, suffix) && *c.Download > 0 {
				return c.ID
			}
		}
	}
}

// dashWaitLog reads log lines until one contains every text.
func dashWaitLog(t *testing.T, ws *websocket.Conn, texts ...string) {
	t.Helper()
	for {
		var l dashLog
		b := readJSON(t, ws, &l)
		if l.Type == nil || l.Payload == nil {
			t.Fatalf("log line without type or payload: %s", b)
		}
		found := true
		for _, s := range texts {
			found = found && strings.Contains(*l.Payload, s)
		}
		if found {
			return
		}
	}
}

func TestDashboardReplay(t *testing.T) {
	plain := streamServer(false)
	t.Cleanup(plain.Close)
	p, pu := startProxy(t)
	const origin = "http://dashboard.example:9090"
	_, srv := startAPI(t, p, &clash.Options{AllowedOrigins: []string{origin}, ProxyAddr: pu.Host})
	bearer := "Bearer " + testSecret
	logger := slog.New(p.SlogHandler())

	t.Run("yacd", func(t *testing.T) {
		b := &browser{t: t, srv: srv, origin: origin,
			headers: map[string]string{"Content-Type": "application/json", "Authorization": bearer}}
		// The API check of its connection screen, then the app's queries.
		var configs map[string]any
		b.getJSON("/configs", &configs)
		for _, k := range []string{"port", "socks-port", "mixed-port", "redir-port", "allow-lan", "mode", "log-level"} {
			if _, ok := configs[k]; !ok {
				t.Errorf("/configs lacks %q", k)
			}
		}
		logLevel, _ := configs["log-level"].(string)
		var version struct{ Version string }
		b.getJSON("/version", &version)
		var proxies struct{ Proxies map[string]any }
		b.getJSON("/proxies", &proxies)
		var providers struct{ Providers map[string]any }
		b.getJSON("/providers/proxies", &providers)
		var rules struct{ Rules []map[string]any }
		b.getJSON("/rules", &rules)
		if version.Version == "" || proxies.Proxies == nil || providers.Providers == nil || rules.Rules == nil {
			t.Fatalf("version %q proxies %v providers %v rules %v", version.Version, proxies.Proxies, providers.Providers, rules.Rules)
		}

		tw := b.websocket("/traffic?token=" + testSecret)
		logs := b.websocket("/logs?token=" + testSecret + "&level=" + logLevel)
		conns := b.websocket("/connections?token=" + testSecret)
		var tr dashTraffic
		readJSON(t, tw, &tr)
		if tr.Up == nil || tr.Down == nil {
			t.Errorf("traffic without up/down")
		}

		x := startTransfer(t, pu, plain.URL+"/yacd", nil)
		id := dashWaitConn(t, conns, "/yacd")
		// yacd asks for /configs "log-level", debug here: goproxy's own
		// line about the request carries the connection's id.
		dashWaitLog(t, logs, "/yacd", "conn="+id)

		// The fallback when the socket closes: a streaming GET.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/traffic", nil)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", bearer)
		req.Header.Set("Origin", origin)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		if !sc.Scan() || json.Unmarshal(sc.Bytes(), &tr) != nil || tr.Up == nil {
			t.Errorf("GET /traffic stream: %q %v", sc.Text(), sc.Err())
		}

		// The close button of a row.
		if resp, _ := b.fetch(http.MethodDelete, "/connections/"+id, ""); resp.StatusCode/100 != 2 {
			t.Fatalf("DELETE /connections/%s: %s", id, resp.Status)
		}
		if err := x.wait(t); errors.Is(err, errNoError) {
			t.Error("the transfer ended without error")
		}
	})

	t.Run("metacubexd", func(t *testing.T) {
		b := &browser{t: t, srv: srv, origin: origin, headers: map[string]string{"Authorization": bearer}}
		if resp, _ := b.fetch(http.MethodGet, "/version", ""); resp.StatusCode/100 != 2 {
			t.Fatalf("endpoint check: %s", resp.Status)
		}
		var configs map[string]any
		b.getJSON("/configs", &configs)
		var proxies struct{ Proxies map[string]map[string]any }
		b.getJSON("/proxies", &proxies)
		var providers struct{ Providers map[string]any }
		b.getJSON("/providers/proxies", &providers)
		var rules struct{ Rules []any }
		b.getJSON("/rules", &rules)
		var ruleProviders struct{ Providers map[string]any }
		b.getJSON("/providers/rules", &ruleProviders)
		if proxies.Proxies == nil || providers.Providers == nil || ruleProviders.Providers == nil {
			t.Fatalf("proxies %v providers %v rule providers %v", proxies, providers, ruleProviders)
		}

		conns := b.websocket("/connections?token=" + testSecret)
		tw := b.websocket("/traffic?token=" + testSecret)
		mem := b.websocket("/memory?token=" + testSecret)
		logs := b.websocket("/logs?token=" + testSecret + "&level=info")
		var m dashMemory
		readJSON(t, mem, &m)
		if m.Inuse == nil {
			t.Error("memory without inuse")
		}
		var tr dashTraffic
		readJSON(t, tw, &tr)

		one := startTransfer(t, pu, plain.URL+"/meta-one", nil)
		two := startTransfer(t, pu, plain.URL+"/meta-two", nil)
		id := dashWaitConn(t, conns, "/meta-one")
		dashWaitConn(t, conns, "/meta-two")
		// At level=info goproxy's per-request lines (debug) are filtered out
		// on the server; the program's own info lines come through.
		logger.Info("metacubexd replay", "conn", id)
		dashWaitLog(t, logs, "metacubexd replay", "conn="+id)

		// Closing a row, then "close all".
		if resp, _ := b.fetch(http.MethodDelete, "/connections/"+id, ""); resp.StatusCode/100 != 2 {
			t.Fatalf("DELETE /connections/%s: %s", id, resp.Status)
		}
		if err := one.wait(t); errors.Is(err, errNoError) {
			t.Error("the first transfer ended without error")
		}
		if resp, _ := b.fetch(http.MethodDelete, "/connections", ""); resp.StatusCode/100 != 2 {
			t.Fatalf("DELETE /connections: %s", resp.Status)
		}
		if err := two.wait(t); errors.Is(err, errNoError) {
			t.Error("the second transfer ended without error")
		}
	})

	t.Run("zashboard", func(t *testing.T) {
		b := &browser{t: t, srv: srv, origin: origin, headers: map[string]string{"Authorization": bearer}}
		if resp, _ := b.fetch(http.MethodGet, "/version", ""); resp.StatusCode != http.StatusOK {
			t.Fatalf("probe: %s", resp.Status)
		}
		var version struct{ Version string }
		b.getJSON("/version", &version)
		if strings.Contains(version.Version, "sing-box") {
			t.Errorf("version %q would select the sing-box code paths", version.Version)
		}
		var proxies struct {
			Proxies map[string]struct {
				Name string
				Type string
				All  []string
				Now  string
			}
		}
		b.getJSON("/proxies", &proxies)
		var providers struct {
			Providers map[string]struct {
				Name, VehicleType string
				Proxies           []any
			}
		}
		b.getJSON("/providers/proxies", &providers)
		global, ok := proxies.Proxies["GLOBAL"]
		if !ok || global.All == nil {
			t.Fatalf("proxies.GLOBAL.all is missing: %+v", proxies)
		}
		for name, pr := range proxies.Proxies {
			if pr.Type == "" || pr.Name != name {
				t.Errorf("proxy %q: name %q type %q", name, pr.Name, pr.Type)
			}
		}
		for _, name := range global.All {
			if _, ok := proxies.Proxies[name]; !ok {
				t.Errorf("GLOBAL lists %q, which /proxies lacks", name)
			}
		}
		var rules struct {
			Rules []struct{ Type, Payload, Proxy string }
		}
		b.getJSON("/rules", &rules)
		var ruleProviders struct{ Providers map[string]any }
		b.getJSON("/providers/rules", &ruleProviders)
		var configs struct {
			Mode     string `json:"mode"`
			LogLevel string `json:"log-level"`
			Tun      struct{ Enable *bool }
		}
		b.getJSON("/configs", &configs)
		if configs.Mode == "" || configs.Tun.Enable == nil {
			t.Errorf("configs %+v", configs)
		}
		if !slices.ContainsFunc(rules.Rules, func(r struct{ Type, Payload, Proxy string }) bool { return r.Proxy == "DIRECT" }) {
			t.Errorf("rules %+v", rules)
		}

		conns := b.websocket("/connections?token=" + testSecret)
		tw := b.websocket("/traffic?token=" + testSecret)
		mem := b.websocket("/memory?token=" + testSecret)
		logs := b.websocket("/logs?token=" + testSecret + "&level=info")
		var m dashMemory
		readJSON(t, mem, &m)
		var tr dashTraffic
		readJSON(t, tw, &tr)
		if m.Inuse == nil || tr.Down == nil {
			t.Errorf("memory %+v traffic %+v", m, tr)
		}

		x := startTransfer(t, pu, plain.URL+"/zash", nil)
		id := dashWaitConn(t, conns, "/zash")
		logger.Info("zashboard replay", "conn", id)
		dashWaitLog(t, logs, "zashboard replay", "conn="+id)
		if resp, _ := b.fetch(http.MethodDelete, "/connections", ""); resp.StatusCode/100 != 2 {
			t.Fatalf("DELETE /connections: %s", resp.Status)
		}
		if err := x.wait(t); errors.Is(err, errNoError) {
			t.Error("the transfer ended without error")
		}
	})
}
