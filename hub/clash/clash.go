package clash

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/proxywatch/proxywatch"
)

// ClashOptions configures a ClashAPI. The zero value (or a nil *ClashOptions)
// is a working configuration: a random secret, no cross-origin access, the
// intervals Clash uses. Every field documents its default.
type ClashOptions struct {
	// Secret is what a dashboard must present, exactly as Clash's "secret":
	// "Authorization: Bearer SECRET" on HTTP requests, ?token=SECRET on
	// WebSocket upgrades. Empty means NewClashAPI generates a random 128-bit
	// one (hex); read it with ClashAPI.Secret and enter it in the dashboard.
	// There is no way to run the API without a secret.
	Secret string

	// AllowedOrigins lists the browser origins, besides the API's own, that
	// may use the API, exactly as browsers send them (scheme://host[:port],
	// e.g. "http://127.0.0.1:5173" for a dashboard dev server). Hosted
	// dashboards are served from another origin than the API, so they need
	// theirs listed here. Requests from these origins get CORS headers that
	// echo the origin (never "*"); a request with no Origin header (not a
	// browser) or a same-origin one is always allowed; any other origin is
	// refused with 403, WebSocket upgrades included. "null" (sandboxed frames,
	// file: pages) is refused unless listed.
	AllowedOrigins []string

	// AllowAnyOrigin lets every web page the user visits call the API from a
	// browser, "null" included: UNSAFE. The secret is then the only
	// protection, and any page can try to guess it or use one it learned.
	// Use it only on a throwaway setup; prefer listing AllowedOrigins.
	AllowAnyOrigin bool

	// ProxyAddr is the address the Proxy listens on (host:port), reported as
	// "port", "bind-address" and "allow-lan" by GET /configs and as the
	// inbound address of every connection. Empty means unknown: ports are
	// reported as 0.
	ProxyAddr string

	// LogLevel is the Leveler given to proxywatch.Options.LogLevel, reported
	// as "log-level" by GET /configs. When it is a *slog.LevelVar, PATCH
	// /configs {"log-level": ...} changes it. Nil means the Proxy's default,
	// debug, which cannot be changed from the API.
	LogLevel slog.Leveler

	// TrafficInterval is the period of /traffic messages. Zero means one
	// second, as Clash.
	TrafficInterval time.Duration

	// MemoryInterval is the period of /memory messages. Zero means one
	// second, as Clash.
	MemoryInterval time.Duration

	// ConnectionsInterval is the period of /connections snapshots when the
	// request has no ?interval= (milliseconds). Zero means one second, as
	// Clash.
	ConnectionsInterval time.Duration

	// MinConnectionsInterval bounds ?interval= from below: a smaller value is
	// raised to it, so that no client can make the API encode the whole
	// connection list in a busy loop. Zero means 100 ms.
	MinConnectionsInterval time.Duration

	// LogQueue is how many log lines may wait for each /logs client; lines
	// beyond it are dropped for that client and counted, and the client is
	// told how many with a warning line when it catches up. Zero means 1024,
	// as Clash (which drops silently).
	LogQueue int

	// MaxStreams is how many streaming responses (WebSockets and streaming
	// GETs) may be open at once; further ones get 503. A dashboard opens four.
	// Zero means 128.
	MaxStreams int

	// WriteWait bounds every write to a streaming client; a client that does
	// not take a message within it is disconnected. Zero means 10 seconds.
	WriteWait time.Duration

	// ErrorLog receives what goes wrong that a caller cannot see otherwise.
	// Nil means such errors are discarded.
	ErrorLog *slog.Logger
}

// Defaults of ClashOptions.
const (
	clashDefaultInterval        = time.Second
	clashDefaultMinConnInterval = 100 * time.Millisecond
	clashMaxConnInterval        = time.Hour
	clashDefaultLogQueue        = 1024
	clashDefaultMaxStreams      = 128
	clashDefaultWriteWait       = 10 * time.Second
	clashMaxBody                = 64 << 10 // request bodies (PATCH /configs, PUT /proxies)
	clashMaxClientFrame         = 4 << 10  // dashboards send nothing on these sockets
	clashCloseGrace             = time.Second
)

// clashSource is what a ClashAPI needs of a *proxywatch.Proxy.
type clashSource interface {
	Stats() proxywatch.Stats
	Connections() []proxywatch.ConnInfo
	CloseConnection(id proxywatch.ConnID) (proxywatch.ConnInfo, bool)
	CloseAll() []proxywatch.ConnInfo
	Observe(o any) (stop func())
}

var _ clashSource = (*proxywatch.Proxy)(nil)

// ClashAPI serves the Clash/mihomo external-controller API (CLASH.md) for one
// Proxy, so that dashboards written for Clash (yacd, metacubexd, zashboard...)
// show its traffic, connections and logs and can close connections. Create
// it with NewClashAPI, serve it on its own listener (dashboards expect the
// API at the root of an address), and Close it. All methods are safe for
// concurrent use.
type ClashAPI struct {
	src       clashSource
	secret    string
	secretSum [sha256.Size]byte
	origins   []string
	anyOrigin bool
	inboundIP string
	inboundPt int
	allowLAN  bool
	bindAddr  string
	logLevel  slog.Leveler
	version   string
	upgrader  websocket.Upgrader
	log       *slog.Logger

	trafficEvery, memoryEvery time.Duration
	connsEvery, minConnsEvery time.Duration
	logQueue, maxStreams      int
	writeWait                 time.Duration

	stopObserve func()
	done        chan struct{} // closed by Close: every stream returns
	closeOnce   sync.Once
	wg          sync.WaitGroup // streams and their socket readers

	mu      sync.Mutex // guards the fields below
	closed  bool
	streams int
	logSubs map[*clashLogSub]struct{}
	conns   map[*websocket.Conn]struct{} // upgraded sockets, to cut on Close
}

// NewClashAPI returns a ClashAPI for p configured by opts (nil means all
// defaults). It registers itself with p.Observe to receive log records, which
// starts p's observer machinery; Close removes it again. It starts no
// goroutine of its own: each stream runs in its request's goroutine plus, for
// a WebSocket, one reader goroutine, and Close ends them all.
func NewClashAPI(p *proxywatch.Proxy, opts *ClashOptions) *ClashAPI {
	return newClashAPI(p, opts)
}

func newClashAPI(src clashSource, opts *ClashOptions) *ClashAPI {
	var o ClashOptions
	if opts != nil {
		o = *opts
	}
	c := &ClashAPI{
		src:           src,
		secret:        o.Secret,
		anyOrigin:     o.AllowAnyOrigin,
		logLevel:      o.LogLevel,
		version:       clashVersion(),
		log:           o.ErrorLog,
		trafficEvery:  clashOrDefault(o.TrafficInterval, clashDefaultInterval),
		memoryEvery:   clashOrDefault(o.MemoryInterval, clashDefaultInterval),
		connsEvery:    clashOrDefault(o.ConnectionsInterval, clashDefaultInterval),
		minConnsEvery: clashOrDefault(o.MinConnectionsInterval, clashDefaultMinConnInterval),
		logQueue:      clashOrDefault(o.LogQueue, clashDefaultLogQueue),
		maxStreams:    clashOrDefault(o.MaxStreams, clashDefaultMaxStreams),
		writeWait:     clashOrDefault(o.WriteWait, clashDefaultWriteWait),
		done:          make(chan struct{}),
		logSubs:       make(map[*clashLogSub]struct{}),
		conns:         make(map[*websocket.Conn]struct{}),
	}
	if c.secret == "" {
		var b [16]byte
		rand.Read(b[:]) // never fails (crypto/rand documents it)
		c.secret = hex.EncodeToString(b[:])
	}
	c.secretSum = sha256.Sum256([]byte(c.secret))
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	for _, origin := range o.AllowedOrigins {
		c.origins = append(c.origins, strings.TrimSuffix(origin, "/"))
	}
	c.inboundIP, c.inboundPt, c.allowLAN, c.bindAddr = clashInbound(o.ProxyAddr)
	c.upgrader = websocket.Upgrader{
		CheckOrigin: func(r *http.Request) bool { return c.originAllowed(r) }, // checked before already
	}
	c.stopObserve = src.Observe(proxywatch.LogObserverFunc(c.observeLog))
	return c
}

func clashOrDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// clashInbound derives the inbound fields from the proxy's address.
func clashInbound(addr string) (ip string, port int, allowLAN bool, bind string) {
	if addr == "" {
		return "", 0, false, ""
	}
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, false, ""
	}
	port, _ = strconv.Atoi(p)
	ipAddr := net.ParseIP(host)
	switch {
	case host == "" || (ipAddr != nil && ipAddr.IsUnspecified()):
		return "", port, true, "*"
	case strings.EqualFold(host, "localhost") || (ipAddr != nil && ipAddr.IsLoopback()):
		return host, port, false, host
	}
	return host, port, true, host
}

// clashVersion is "proxywatch VERSION", the module version this program was
// built with ("(devel)" when proxywatch is the main module, as in its tests).
func clashVersion() string {
	const module = "github.com/proxywatch/proxywatch"
	v := "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Path == module && bi.Main.Version != "" {
			v = bi.Main.Version
		}
		for _, d := range bi.Deps {
			if d.Path == module && d.Version != "" {
				v = d.Version
			}
		}
	}
	return "proxywatch " + v
}

// Secret returns the secret dashboards must present: ClashOptions.Secret, or
// the one NewClashAPI generated.
func (c *ClashAPI) Secret() string { return c.secret }

// Streams returns the number of streaming responses currently served.
func (c *ClashAPI) Streams() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.streams
}

// Close ends every stream (WebSockets get close code 1001, going away),
// removes the API from its Proxy and waits for every goroutine serving a
// stream to return; sockets that do not take their close frame within a
// second are cut. Later streaming requests get 503; plain requests are still
// answered. Close is idempotent and returns nil.
func (c *ClashAPI) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		close(c.done)
		c.stopObserve()

		finished := make(chan struct{})
		go func() {
			c.wg.Wait()
			close(finished)
		}()
		select {
		case <-finished:
		case <-time.After(2 * clashCloseGrace):
			c.mu.Lock()
			for ws := range c.conns {
				ws.NetConn().Close() // unblocks a writer stuck on a full TCP window
			}
			c.mu.Unlock()
			<-finished
		}
	})
	return nil
}

// ServeHTTP answers one request of the Clash API: CORS preflights and the
// origin policy first, then the secret (401 {"message":"Unauthorized"}
// without it), then the endpoint.
func (c *ClashAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !c.cors(w, r) {
		return
	}
	if !c.authorized(r) {
		clashError(w, http.StatusUnauthorized, "Unauthorized")
		return
	}
	c.route(w, r)
}

// authorized checks the secret the way Clash does: on a WebSocket upgrade
// that carries ?token=, the token (browsers cannot set headers on a
// WebSocket); otherwise "Authorization: Bearer". Both sides are hashed first
// so that the constant-time compare does not even leak the secret's length.
func (c *ClashAPI) authorized(r *http.Request) bool {
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

func (c *ClashAPI) secretMatches(got string) bool {
	sum := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(sum[:], c.secretSum[:]) == 1
}

// originAllowed implements the origin policy (ClashOptions.AllowedOrigins).
func (c *ClashAPI) originAllowed(r *http.Request) bool {
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
	return clashSameOrigin(origin, r.Host)
}

func clashSameOrigin(origin, host string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	return strings.EqualFold(u.Host, host)
}

// cors applies the origin policy and answers preflights. It reports whether
// the request goes on; when it does not, it has answered.
func (c *ClashAPI) cors(w http.ResponseWriter, r *http.Request) bool {
	h := w.Header()
	h.Add("Vary", "Origin")
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true // not a browser: nothing to negotiate
	}
	if !c.originAllowed(r) {
		clashError(w, http.StatusForbidden, "Forbidden origin")
		return false
	}
	if !clashSameOrigin(origin, r.Host) {
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

// clashError answers {"message": msg} with status code, as Clash does.
func clashError(w http.ResponseWriter, code int, msg string) {
	clashJSON(w, code, struct {
		Message string `json:"message"`
	}{msg})
}

func clashJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil { // the types encoded here cannot fail
		code, b = http.StatusInternalServerError, []byte(`{"message":"encoding failed"}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

// clashUnsupported answers an endpoint of the Clash API that a forward proxy
// without proxy nodes, rules or a configuration file cannot honour.
func clashUnsupported(w http.ResponseWriter, what string) {
	clashError(w, http.StatusNotImplemented, "proxywatch does not support "+what)
}

// route dispatches an authorized request.
func (c *ClashAPI) route(w http.ResponseWriter, r *http.Request) {
	seg := clashSegments(r.URL)
	if seg == nil {
		clashError(w, http.StatusNotFound, "Resource not found")
		return
	}
	method := r.Method
	allow := func(methods ...string) bool {
		for _, m := range methods {
			if method == m {
				return true
			}
		}
		w.Header().Set("Allow", strings.Join(methods, ", "))
		clashError(w, http.StatusMethodNotAllowed, "Method not allowed")
		return false
	}
	first := ""
	if len(seg) > 0 {
		first = seg[0]
	}
	switch {
	case len(seg) == 0:
		if allow(http.MethodGet) {
			clashJSON(w, http.StatusOK, map[string]string{"hello": "clash"})
		}
	case first == "version" && len(seg) == 1:
		if allow(http.MethodGet) {
			clashJSON(w, http.StatusOK, clashVersionInfo{Meta: false, Version: c.version})
		}
	case first == "traffic" && len(seg) == 1:
		if allow(http.MethodGet) {
			c.serveTraffic(w, r)
		}
	case first == "memory" && len(seg) == 1:
		if allow(http.MethodGet) {
			c.serveMemory(w, r)
		}
	case first == "logs" && len(seg) == 1:
		if allow(http.MethodGet) {
			c.serveLogs(w, r)
		}
	case first == "connections" && len(seg) == 1:
		if allow(http.MethodGet, http.MethodDelete) {
			if method == http.MethodDelete {
				c.src.CloseAll()
				w.WriteHeader(http.StatusNoContent)
				return
			}
			c.serveConnections(w, r)
		}
	case first == "connections" && len(seg) == 2:
		if allow(http.MethodDelete) {
			// Clash answers 204 for an unknown id as well.
			if id, err := strconv.ParseInt(seg[1], 10, 64); err == nil {
				c.src.CloseConnection(proxywatch.ConnID(id))
			}
			w.WriteHeader(http.StatusNoContent)
		}
	case first == "proxies" || first == "group":
		c.serveProxies(w, r, method, seg)
	case first == "providers" && len(seg) >= 2 && (seg[1] == "proxies" || seg[1] == "rules"):
		switch {
		case len(seg) == 2:
			if allow(http.MethodGet) {
				clashJSON(w, http.StatusOK, map[string]map[string]any{"providers": {}})
			}
		default: // there is no provider by any name
			clashError(w, http.StatusNotFound, "Resource not found")
		}
	case first == "rules" && len(seg) == 1:
		if allow(http.MethodGet) {
			clashJSON(w, http.StatusOK, map[string][]clashRule{"rules": {clashMatchRule}})
		}
	case first == "configs" && len(seg) == 1:
		switch method {
		case http.MethodGet:
			clashJSON(w, http.StatusOK, c.configs())
		case http.MethodPatch:
			c.patchConfigs(w, r)
		case http.MethodPut:
			clashUnsupported(w, "loading a configuration: it has none")
		default:
			allow(http.MethodGet, http.MethodPatch, http.MethodPut)
		}
	case first == "configs" && len(seg) == 2 && seg[1] == "geo",
		first == "cache",
		first == "dns",
		first == "upgrade",
		first == "restart":
		clashUnsupported(w, "/"+strings.Join(seg, "/")+": it has no GeoIP data, DNS cache, or self-upgrade")
	default:
		clashError(w, http.StatusNotFound, "Resource not found")
	}
}

// clashSegments splits the path into unescaped segments, without empty ones
// from a trailing slash. Nil means a segment could not be unescaped.
func clashSegments(u *url.URL) []string {
	seg := []string{}
	for _, s := range strings.Split(strings.Trim(u.EscapedPath(), "/"), "/") {
		if s == "" {
			continue
		}
		d, err := url.PathUnescape(s)
		if err != nil {
			return nil
		}
		seg = append(seg, d)
	}
	return seg
}

type clashVersionInfo struct {
	Meta    bool   `json:"meta"`
	Version string `json:"version"`
}

// The proxy "nodes" and groups: proxywatch connects every connection itself,
// which Clash calls DIRECT, and Clash dashboards need the GLOBAL selector
// group to exist (zashboard reads proxies.GLOBAL.all).
const (
	clashDirect = "DIRECT"
	clashGlobal = "GLOBAL"
)

// clashProxy is the JSON of a proxy or proxy group in /proxies.
type clashProxy struct {
	Name    string         `json:"name"`
	Type    string         `json:"type"`
	Alive   bool           `json:"alive"`
	UDP     bool           `json:"udp"`
	XUDP    bool           `json:"xudp"`
	TFO     bool           `json:"tfo"`
	MPTCP   bool           `json:"mptcp"`
	SMUX    bool           `json:"smux"`
	UOT     bool           `json:"uot"`
	History []struct{}     `json:"history"`
	Extra   map[string]any `json:"extra"`
	ID      string         `json:"id"`
	All     []string       `json:"all,omitempty"`
	Now     string         `json:"now,omitempty"`
	Hidden  bool           `json:"hidden"`
	Icon    string         `json:"icon"`
	TestURL string         `json:"testUrl"`
	Fixed   string         `json:"fixed"`
}

func clashProxies() map[string]clashProxy {
	return map[string]clashProxy{
		clashDirect: {Name: clashDirect, Type: "Direct", Alive: true, History: []struct{}{}, Extra: map[string]any{}},
		clashGlobal: {Name: clashGlobal, Type: "Selector", Alive: true, History: []struct{}{}, Extra: map[string]any{},
			All: []string{clashDirect}, Now: clashDirect},
	}
}

// serveProxies answers /proxies... and /group...: DIRECT and GLOBAL exist,
// GLOBAL can be "switched" to DIRECT only, and latency tests are refused
// (there is no proxy node whose latency would mean anything).
func (c *ClashAPI) serveProxies(w http.ResponseWriter, r *http.Request, method string, seg []string) {
	proxies := clashProxies()
	isGroup := seg[0] == "group"
	switch {
	case len(seg) == 1:
		if method != http.MethodGet {
			clashError(w, http.StatusMethodNotAllowed, "Method not allowed")
			return
		}
		if isGroup {
			clashJSON(w, http.StatusOK, map[string][]clashProxy{"proxies": {proxies[clashGlobal]}})
			return
		}
		clashJSON(w, http.StatusOK, map[string]map[string]clashProxy{"proxies": proxies})
		return
	}
	pr, ok := proxies[seg[1]]
	if !ok || (isGroup && pr.All == nil) {
		clashError(w, http.StatusNotFound, "Resource not found")
		return
	}
	switch {
	case len(seg) == 2 && method == http.MethodGet:
		clashJSON(w, http.StatusOK, pr)
	case len(seg) == 2 && method == http.MethodPut && !isGroup:
		var body struct {
			Name string `json:"name"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, clashMaxBody)).Decode(&body); err != nil {
			clashError(w, http.StatusBadRequest, "Body invalid")
			return
		}
		if pr.All == nil || body.Name != clashDirect {
			clashError(w, http.StatusBadRequest, "Selector update error: proxywatch only has DIRECT")
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case len(seg) == 2 && method == http.MethodDelete && !isGroup:
		clashError(w, http.StatusBadRequest, "GLOBAL is a selector: nothing is fixed")
	case len(seg) == 3 && seg[2] == "delay" && method == http.MethodGet:
		clashUnsupported(w, "latency tests: it connects directly, there is no proxy node to test")
	case len(seg) == 2 || len(seg) == 3:
		clashError(w, http.StatusMethodNotAllowed, "Method not allowed")
	default:
		clashError(w, http.StatusNotFound, "Resource not found")
	}
}

// clashRule is the JSON of a rule in /rules.
type clashRule struct {
	Index   int    `json:"index"`
	Type    string `json:"type"`
	Payload string `json:"payload"`
	Proxy   string `json:"proxy"`
	Size    int    `json:"size"`
}

// clashMatchRule is the one rule that describes proxywatch: every connection
// goes DIRECT.
var clashMatchRule = clashRule{Type: "Match", Payload: "", Proxy: clashDirect, Size: -1}

// clashConfigs is the JSON of GET /configs.
type clashConfigs struct {
	Port           int      `json:"port"`
	SocksPort      int      `json:"socks-port"`
	RedirPort      int      `json:"redir-port"`
	TProxyPort     int      `json:"tproxy-port"`
	MixedPort      int      `json:"mixed-port"`
	Tun            clashTun `json:"tun"`
	AllowLAN       bool     `json:"allow-lan"`
	BindAddress    string   `json:"bind-address"`
	Mode           string   `json:"mode"`
	Modes          []string `json:"modes"`
	ModeList       []string `json:"mode-list"`
	LogLevel       string   `json:"log-level"`
	IPv6           bool     `json:"ipv6"`
	InterfaceName  string   `json:"interface-name"`
	Sniffing       bool     `json:"sniffing"`
	TCPConcurrent  bool     `json:"tcp-concurrent"`
	Authentication []string `json:"authentication"`
}

type clashTun struct {
	Enable bool `json:"enable"`
}

func (c *ClashAPI) configs() clashConfigs {
	return clashConfigs{
		Port:           c.inboundPt,
		AllowLAN:       c.allowLAN,
		BindAddress:    c.bindAddr,
		Mode:           "direct",
		Modes:          []string{"direct"},
		ModeList:       []string{"direct"},
		LogLevel:       clashLevelName(c.currentLevel()),
		IPv6:           true,
		Authentication: []string{},
	}
}

func (c *ClashAPI) currentLevel() slog.Level {
	if c.logLevel == nil {
		return slog.LevelDebug
	}
	return c.logLevel.Level()
}

// patchConfigs applies the settings it can: "log-level" when the Proxy's
// level is a *slog.LevelVar, and "mode" when it is already "direct". Any
// other key refuses the whole request, and nothing is changed.
func (c *ClashAPI) patchConfigs(w http.ResponseWriter, r *http.Request) {
	var body map[string]json.RawMessage
	if err := json.NewDecoder(io.LimitReader(r.Body, clashMaxBody)).Decode(&body); err != nil {
		clashError(w, http.StatusBadRequest, "Body invalid")
		return
	}
	var setLevel func()
	for key, raw := range body {
		var s string
		switch key {
		case "log-level":
			lv, ok := c.logLevel.(*slog.LevelVar)
			if !ok {
				clashError(w, http.StatusBadRequest, "log-level is fixed by the program embedding proxywatch")
				return
			}
			var l slog.Level
			if json.Unmarshal(raw, &s) != nil || !clashParseLevelInto(s, &l) || l == clashSilent {
				clashError(w, http.StatusBadRequest, "Body invalid")
				return
			}
			setLevel = func() { lv.Set(l) }
		case "mode":
			if json.Unmarshal(raw, &s) != nil || !strings.EqualFold(s, "direct") {
				clashError(w, http.StatusBadRequest, "proxywatch only has mode direct")
				return
			}
		default:
			clashError(w, http.StatusBadRequest, "proxywatch cannot change "+strconv.Quote(key))
			return
		}
	}
	if setLevel != nil {
		setLevel()
	}
	w.WriteHeader(http.StatusNoContent)
}

// clashSilent is the level of ?level=silent: above every record.
const clashSilent = slog.Level(math.MaxInt32)

// clashParseLevelInto parses a Clash level name (debug, info, warning,
// error, silent; "warn" as well).
func clashParseLevelInto(s string, l *slog.Level) bool {
	if strings.EqualFold(s, "silent") {
		*l = clashSilent
		return true
	}
	lv, ok := proxywatch.ParseLevel(s)
	if ok {
		*l = lv
	}
	return ok
}

// clashLevelName is the Clash name of l: debug, info, warning or error.
func clashLevelName(l slog.Level) string {
	switch proxywatch.LevelName(l) {
	case "ERROR":
		return "error"
	case "WARN":
		return "warning"
	case "INFO":
		return "info"
	}
	return "debug"
}

// clashConn is the JSON of one connection in a /connections snapshot.
type clashConn struct {
	ID             string        `json:"id"`
	Metadata       clashMetadata `json:"metadata"`
	Upload         uint64        `json:"upload"`
	Download       uint64        `json:"download"`
	Start          time.Time     `json:"start"`
	Chains         []string      `json:"chains"`
	ProviderChains []string      `json:"providerChains"`
	Rule           string        `json:"rule"`
	RulePayload    string        `json:"rulePayload"`
	Proxywatch     clashExtra    `json:"proxywatch"`
}

// clashMetadata is Clash's connection metadata, filled with what a forward
// proxy knows (CLASH.md, "Connections").
type clashMetadata struct {
	Network           string    `json:"network"`
	Type              string    `json:"type"`
	SourceIP          string    `json:"sourceIP"`
	DestinationIP     string    `json:"destinationIP"`
	SourceGeoIP       *[]string `json:"sourceGeoIP"`
	DestinationGeoIP  *[]string `json:"destinationGeoIP"`
	SourceIPASN       string    `json:"sourceIPASN"`
	DestinationIPASN  string    `json:"destinationIPASN"`
	SourcePort        string    `json:"sourcePort"`
	DestinationPort   string    `json:"destinationPort"`
	InboundIP         string    `json:"inboundIP"`
	InboundPort       string    `json:"inboundPort"`
	InboundName       string    `json:"inboundName"`
	InboundUser       string    `json:"inboundUser"`
	Host              string    `json:"host"`
	DNSMode           string    `json:"dnsMode"`
	UID               uint32    `json:"uid"`
	Process           string    `json:"process"`
	ProcessPath       string    `json:"processPath"`
	SpecialProxy      string    `json:"specialProxy"`
	SpecialRules      string    `json:"specialRules"`
	RemoteDestination string    `json:"remoteDestination"`
	DSCP              uint8     `json:"dscp"`
	SniffHost         string    `json:"sniffHost"`
}

// clashExtra carries what proxywatch knows beyond Clash's fields; dashboards
// show it in their raw connection view.
type clashExtra struct {
	Protocol string  `json:"protocol"`
	Method   string  `json:"method,omitempty"`
	URL      string  `json:"url,omitempty"`
	Parent   string  `json:"parent,omitempty"`
	Status   int     `json:"status,omitempty"`
	UpRate   float64 `json:"upRate"`
	DownRate float64 `json:"downRate"`
}

// clashType maps a proxywatch protocol onto Clash's inbound type: a plain
// proxied request is "HTTP" and a CONNECT tunnel "HTTPS", as Clash names
// them; the kinds Clash has no name for keep proxywatch's.
func clashType(p proxywatch.Protocol) string {
	switch p {
	case proxywatch.ProtoHTTP:
		return "HTTP"
	case proxywatch.ProtoTunnel:
		return "HTTPS"
	}
	return string(p)
}

func (c *ClashAPI) clashConnFrom(ci proxywatch.ConnInfo) clashConn {
	srcIP, srcPort, err := net.SplitHostPort(ci.Client)
	if err != nil {
		srcIP, srcPort = ci.Client, "0"
	}
	host, dstPort, err := net.SplitHostPort(ci.Host)
	if err != nil {
		host, dstPort = ci.Host, clashDefaultPort(ci.URL)
	}
	dstIP := ""
	if ip := net.ParseIP(strings.SplitN(host, "%", 2)[0]); ip != nil {
		dstIP, host = host, "" // Clash's host is the domain name; an IP goes to destinationIP
	}
	cc := clashConn{
		ID: strconv.FormatInt(int64(ci.ID), 10),
		Metadata: clashMetadata{
			Network:         "tcp",
			Type:            clashType(ci.Protocol),
			SourceIP:        srcIP,
			DestinationIP:   dstIP,
			SourcePort:      srcPort,
			DestinationPort: dstPort,
			InboundIP:       c.inboundIP,
			InboundPort:     strconv.Itoa(c.inboundPt),
			InboundName:     "proxywatch",
			Host:            host,
			DNSMode:         "normal",
		},
		Upload:         ci.Up,
		Download:       ci.Down,
		Start:          ci.Start,
		Chains:         []string{clashDirect},
		ProviderChains: []string{},
		Rule:           clashMatchRule.Type,
		RulePayload:    clashMatchRule.Payload,
		Proxywatch: clashExtra{
			Protocol: string(ci.Protocol),
			Method:   ci.Method,
			URL:      ci.URL,
			Status:   ci.Status,
			UpRate:   ci.UpRate,
			DownRate: ci.DownRate,
		},
	}
	if ci.Parent != 0 {
		cc.Proxywatch.Parent = strconv.FormatInt(int64(ci.Parent), 10)
	}
	return cc
}

// clashDefaultPort is the port a URL without one implies.
func clashDefaultPort(raw string) string {
	u, err := url.Parse(raw)
	if err == nil && (u.Scheme == "https" || u.Scheme == "wss") {
		return "443"
	}
	return "80"
}

// clashSnapshot is the JSON of a /connections message.
type clashSnapshot struct {
	DownloadTotal uint64      `json:"downloadTotal"`
	UploadTotal   uint64      `json:"uploadTotal"`
	Connections   []clashConn `json:"connections"` // never null
	Memory        uint64      `json:"memory"`
}

func (c *ClashAPI) snapshot() clashSnapshot {
	live := c.src.Connections()
	st := c.src.Stats()
	s := clashSnapshot{
		DownloadTotal: st.Down,
		UploadTotal:   st.Up,
		Connections:   make([]clashConn, 0, len(live)),
		Memory:        clashMemoryInUse(),
	}
	for _, ci := range live {
		s.Connections = append(s.Connections, c.clashConnFrom(ci))
	}
	return s
}

// clashTraffic is the JSON of a /traffic message.
type clashTraffic struct {
	Up        uint64 `json:"up"`
	Down      uint64 `json:"down"`
	UpTotal   uint64 `json:"upTotal"`
	DownTotal uint64 `json:"downTotal"`
}

// clashMemory is the JSON of a /memory message.
type clashMemory struct {
	InUse   uint64 `json:"inuse"`
	OSLimit uint64 `json:"oslimit"`
}

// clashMemoryInUse is the memory the Go runtime holds from the OS: all of
// it, less the heap it returned. It is read without stopping the world.
func clashMemoryInUse() uint64 {
	s := []metrics.Sample{
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
	}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 || s[1].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	total, released := s[0].Value.Uint64(), s[1].Value.Uint64()
	if released > total {
		return 0
	}
	return total - released
}

// clashMemoryLimit is GOMEMLIMIT, 0 when none is set.
func clashMemoryLimit() uint64 {
	l := debug.SetMemoryLimit(-1)
	if l <= 0 || l == math.MaxInt64 {
		return 0
	}
	return uint64(l)
}

// clashStream is one streaming response: an upgraded WebSocket, or a GET
// answered with newline-delimited JSON that ends when either side leaves.
type clashStream struct {
	api  *ClashAPI
	ws   *websocket.Conn
	rc   *http.ResponseController
	w    http.ResponseWriter
	gone <-chan struct{} // the client went away
}

var errClashClosed = errors.New("clash API closed")

// openStream starts a stream for r, counted against MaxStreams; nil means it
// has answered already (503, or the failed upgrade). The caller must call
// closeStream.
func (c *ClashAPI) openStream(w http.ResponseWriter, r *http.Request) *clashStream {
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		clashError(w, http.StatusServiceUnavailable, "API closed")
		return nil
	case c.streams >= c.maxStreams:
		c.mu.Unlock()
		w.Header().Set("Retry-After", "5")
		clashError(w, http.StatusServiceUnavailable, "Too many streams")
		return nil
	}
	c.streams++
	c.wg.Add(1)
	c.mu.Unlock()

	s := &clashStream{api: c}
	if !websocket.IsWebSocketUpgrade(r) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		s.w, s.rc, s.gone = w, http.NewResponseController(w), r.Context().Done()
		if err := s.rc.Flush(); err != nil {
			c.log.Debug("clash: flushing a stream", "err", err)
		}
		return s
	}
	ws, err := c.upgrader.Upgrade(w, r, nil) // on error it has answered already
	if err != nil {
		c.releaseStream()
		return nil
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		ws.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseGoingAway, "shutdown"), time.Now().Add(clashCloseGrace))
		ws.Close()
		c.releaseStream()
		return nil
	}
	c.conns[ws] = struct{}{}
	c.wg.Add(1)
	c.mu.Unlock()
	ws.SetReadLimit(clashMaxClientFrame)
	gone := make(chan struct{})
	s.ws, s.gone = ws, gone
	go func() { // the reader: answers pings and close frames, notices the peer leaving
		defer c.wg.Done()
		defer close(gone)
		for {
			if _, _, err := ws.NextReader(); err != nil {
				return
			}
		}
	}()
	return s
}

func (c *ClashAPI) releaseStream() {
	c.mu.Lock()
	c.streams--
	c.mu.Unlock()
	c.wg.Done()
}

// send writes one JSON message.
func (s *clashStream) send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.sendRaw(b)
}

func (s *clashStream) sendRaw(b []byte) error {
	deadline := time.Now().Add(s.api.writeWait)
	if s.ws != nil {
		s.ws.SetWriteDeadline(deadline)
		return s.ws.WriteMessage(websocket.TextMessage, b)
	}
	if err := s.rc.SetWriteDeadline(deadline); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	if _, err := s.w.Write(append(b, '\n')); err != nil {
		return err
	}
	return s.rc.Flush()
}

// wait returns nil when ch delivers, or why the stream must end.
func (s *clashStream) wait(ch <-chan time.Time) error {
	select {
	case <-ch:
		return nil
	case <-s.gone:
		return io.EOF
	case <-s.api.done:
		return errClashClosed
	}
}

// closeStream ends s: a WebSocket gets a close frame (1001 when the API is
// closing, 1000 otherwise) and is closed; its reader then returns.
func (c *ClashAPI) closeStream(s *clashStream, why error) {
	if s.ws != nil {
		code, text := websocket.CloseNormalClosure, ""
		if errors.Is(why, errClashClosed) {
			code, text = websocket.CloseGoingAway, "shutdown"
		}
		if !errors.Is(why, io.EOF) { // the peer is still there: say goodbye, briefly
			s.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text),
				time.Now().Add(clashCloseGrace))
			select { // let the peer answer the close frame
			case <-s.gone:
			case <-time.After(clashCloseGrace):
			}
		}
		s.ws.Close()
		c.mu.Lock()
		delete(c.conns, s.ws)
		c.mu.Unlock()
	}
	c.releaseStream()
}

// serveTraffic streams {"up","down","upTotal","downTotal"} every
// TrafficInterval: up and down are bytes per second over the real time since
// the previous message (the first covers the first interval), the totals are
// every byte since the Proxy was created.
func (c *ClashAPI) serveTraffic(w http.ResponseWriter, r *http.Request) {
	s := c.openStream(w, r)
	if s == nil {
		return
	}
	t := time.NewTicker(c.trafficEvery)
	defer t.Stop()
	st := c.src.Stats()
	prevUp, prevDown, prev := st.Up, st.Down, time.Now()
	var err error
	for err == nil {
		if err = s.wait(t.C); err != nil {
			break
		}
		st := c.src.Stats()
		now := time.Now()
		secs := now.Sub(prev).Seconds()
		err = s.send(clashTraffic{
			Up:        clashPerSecond(st.Up, prevUp, secs),
			Down:      clashPerSecond(st.Down, prevDown, secs),
			UpTotal:   st.Up,
			DownTotal: st.Down,
		})
		prevUp, prevDown, prev = st.Up, st.Down, now
	}
	c.closeStream(s, err)
}

func clashPerSecond(now, before uint64, secs float64) uint64 {
	if now <= before || secs <= 0 {
		return 0
	}
	return uint64(math.Round(float64(now-before) / secs))
}

// serveMemory streams {"inuse","oslimit"} every MemoryInterval, the first at
// once.
func (c *ClashAPI) serveMemory(w http.ResponseWriter, r *http.Request) {
	s := c.openStream(w, r)
	if s == nil {
		return
	}
	t := time.NewTicker(c.memoryEvery)
	defer t.Stop()
	limit := clashMemoryLimit()
	var err error
	for err == nil {
		if err = s.send(clashMemory{InUse: clashMemoryInUse(), OSLimit: limit}); err != nil {
			break
		}
		err = s.wait(t.C)
	}
	c.closeStream(s, err)
}

// serveConnections answers one snapshot to a GET, and streams one at once
// and then one every ?interval= milliseconds to a WebSocket.
func (c *ClashAPI) serveConnections(w http.ResponseWriter, r *http.Request) {
	every := c.connsEvery
	if v := r.URL.Query().Get("interval"); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms <= 0 {
			clashError(w, http.StatusBadRequest, "Body invalid")
			return
		}
		every = time.Duration(min(ms, clashMaxConnInterval.Milliseconds())) * time.Millisecond
	}
	every = max(every, c.minConnsEvery)
	if !websocket.IsWebSocketUpgrade(r) {
		clashJSON(w, http.StatusOK, c.snapshot())
		return
	}
	s := c.openStream(w, r)
	if s == nil {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var err error
	for err == nil {
		if err = s.send(c.snapshot()); err != nil {
			break
		}
		err = s.wait(t.C)
	}
	c.closeStream(s, err)
}

// clashLog and clashLogStructured are the two formats of /logs lines.
type clashLog struct {
	Type    string `json:"type"`
	Payload string `json:"payload"`
}

type clashLogStructured struct {
	Time    string          `json:"time"`
	Level   string          `json:"level"`
	Message string          `json:"message"`
	Fields  []clashLogField `json:"fields"`
}

type clashLogField struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// clashLogSub is one /logs client.
type clashLogSub struct {
	level      slog.Level
	structured bool
	ch         chan []byte   // encoded lines
	dropped    atomic.Uint64 // lines this client missed since it was last told
}

// observeLog fans r out to every /logs client whose level it reaches, each
// format encoded once. A client whose queue is full misses the line, and
// learns how many it missed when it catches up.
func (c *ClashAPI) observeLog(r proxywatch.LogRecord) {
	var plain, structured []byte
	c.mu.Lock()
	defer c.mu.Unlock()
	for sub := range c.logSubs {
		if r.Dropped > 0 {
			sub.dropped.Add(r.Dropped) // missed before reaching the API: of any level
		}
		if r.Level < sub.level {
			continue
		}
		var line []byte
		if sub.structured {
			if structured == nil {
				structured = clashEncodeStructured(r)
			}
			line = structured
		} else {
			if plain == nil {
				plain = clashEncodePlain(r)
			}
			line = plain
		}
		select {
		case sub.ch <- line:
		default:
			sub.dropped.Add(1)
		}
	}
}

// clashLogFields lists r's attributes as strings, and the connection it
// belongs to as "conn" (the id /connections shows) when known.
func clashLogFields(r proxywatch.LogRecord) []clashLogField {
	fields := make([]clashLogField, 0, len(r.Attrs)+1)
	hasConn := false
	for _, a := range r.Attrs {
		hasConn = hasConn || a.Key == "conn"
		fields = append(fields, clashLogField{Key: a.Key, Value: a.Value.String()})
	}
	if r.Conn != 0 && !hasConn {
		fields = append(fields, clashLogField{Key: "conn", Value: strconv.FormatInt(int64(r.Conn), 10)})
	}
	return fields
}

// clashEncodePlain is the default format: the message followed by its
// fields as key=value, quoted where needed. The attributes of goproxy's lines
// are the arguments already formatted into the message: only "conn" is
// added to those.
func clashEncodePlain(r proxywatch.LogRecord) []byte {
	var b strings.Builder
	b.WriteString(r.Message)
	for _, f := range clashLogFields(r) {
		if r.Source == clashSourceGoproxy && f.Key != "conn" {
			continue
		}
		b.WriteByte(' ')
		b.WriteString(f.Key)
		b.WriteByte('=')
		if f.Value == "" || strings.ContainsAny(f.Value, " \t\n\"=") {
			b.WriteString(strconv.Quote(f.Value))
		} else {
			b.WriteString(f.Value)
		}
	}
	out, _ := json.Marshal(clashLog{Type: clashLevelName(r.Level), Payload: b.String()})
	return out
}

// clashSourceGoproxy is LogRecord.Source of goproxy's own lines.
const clashSourceGoproxy = "goproxy"

// clashEncodeStructured is format=structured: the record's own time (Clash
// sends the time of sending), level "warn" for warnings as Clash does, and
// the fields Clash leaves empty.
func clashEncodeStructured(r proxywatch.LogRecord) []byte {
	level := clashLevelName(r.Level)
	if level == "warning" {
		level = "warn"
	}
	t := r.Time
	if t.IsZero() {
		t = time.Now()
	}
	out, _ := json.Marshal(clashLogStructured{
		Time:    t.Format(time.TimeOnly),
		Level:   level,
		Message: r.Message,
		Fields:  clashLogFields(r),
	})
	return out
}

// clashDroppedLine tells a client how many lines it missed.
func clashDroppedLine(n uint64, structured bool) any {
	msg := "proxywatch: " + strconv.FormatUint(n, 10) + " log lines were dropped because this client did not keep up"
	if structured {
		return clashLogStructured{Time: time.Now().Format(time.TimeOnly), Level: "warn", Message: msg,
			Fields: []clashLogField{{Key: "dropped", Value: strconv.FormatUint(n, 10)}}}
	}
	return clashLog{Type: "warning", Payload: msg}
}

// serveLogs streams the log lines at ?level= (debug, info, warning, error,
// silent; default info) and above, from now on, in the default format or in
// ?format=structured.
func (c *ClashAPI) serveLogs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	level := slog.LevelInfo
	if v := q.Get("level"); v != "" && !clashParseLevelInto(v, &level) {
		clashError(w, http.StatusBadRequest, "Body invalid")
		return
	}
	sub := &clashLogSub{level: level, structured: q.Get("format") == "structured", ch: make(chan []byte, c.logQueue)}
	// Subscribed before the upgrade completes: a client that saw the 101
	// gets every line logged after it.
	c.mu.Lock()
	c.logSubs[sub] = struct{}{}
	c.mu.Unlock()
	s := c.openStream(w, r)
	if s == nil {
		c.mu.Lock()
		delete(c.logSubs, sub)
		c.mu.Unlock()
		return
	}
	var err error
	for err == nil {
		select {
		case line := <-sub.ch:
			if n := sub.dropped.Swap(0); n > 0 {
				err = s.send(clashDroppedLine(n, sub.structured))
			}
			if err == nil {
				err = s.sendRaw(line)
			}
		case <-s.gone:
			err = io.EOF
		case <-c.done:
			err = errClashClosed
		}
	}
	c.mu.Lock()
	delete(c.logSubs, sub)
	c.mu.Unlock()
	c.closeStream(s, err)
}

var (
	_ http.Handler = (*ClashAPI)(nil)
	_ io.Closer    = (*ClashAPI)(nil)
)
