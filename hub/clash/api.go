package clash

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/proxywatch/proxywatch"
	"github.com/proxywatch/proxywatch/internal/defaults"
	"github.com/proxywatch/proxywatch/internal/version"
	"github.com/proxywatch/proxywatch/internal/webauth"
)

// Options configures an API. The zero value (or a nil *Options) is a working
// configuration: a random secret, no cross-origin access, the intervals Clash
// uses. Every field documents its default.
type Options struct {
	// Token is the secret a dashboard must present, what Clash calls its
	// "secret": "Authorization: Bearer TOKEN" on HTTP requests, ?token=TOKEN
	// on WebSocket upgrades. Empty means New generates a random 128-bit one
	// (hex); read it with API.Token and enter it in the dashboard as its
	// secret. There is no way to run the API without one.
	Token string

	// AllowedOrigins lists the browser origins, besides the API's own, that
	// may use the API, exactly as browsers send them (scheme://host[:port],
	// e.g. "http://127.0.0.1:5173" for a dashboard dev server). Hosted
	// dashboards are served from another origin than the API, so they need
	// theirs listed here. Requests from these origins get CORS headers that
	// echo the origin (never "*"); a request with no Origin header (not a
	// browser) or a same-origin one is always allowed; any other origin is
	// refused with 403, WebSocket upgrades included. "null" (sandboxed frames,
	// file: pages) is always refused, listed or not: every such page on the
	// web sends it.
	AllowedOrigins []string

	// AllowAnyOrigin lets every web page the user visits call the API from a
	// browser ("null" still excepted): UNSAFE. The secret is then the only
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

// Defaults of Options.
const (
	defaultInterval        = time.Second
	defaultMinConnInterval = 100 * time.Millisecond
	maxConnInterval        = time.Hour
	defaultLogQueue        = 1024
	defaultMaxStreams      = 128
	defaultWriteWait       = 10 * time.Second
	maxBody                = 64 << 10 // request bodies (PATCH /configs, PUT /proxies)
	maxClientFrame         = 4 << 10  // dashboards send nothing on these sockets
	closeGrace             = time.Second
)

// source is what an API needs of a *proxywatch.Proxy.
type source interface {
	Stats() proxywatch.Stats
	Connections() []proxywatch.ConnInfo
	CloseConnection(id proxywatch.ConnID) (proxywatch.ConnInfo, bool)
	CloseAll() []proxywatch.ConnInfo
	Observe(o any) (stop func())
}

var _ source = (*proxywatch.Proxy)(nil)

// API serves the Clash/mihomo external-controller API (CLASH.md) for one
// Proxy. Create it with New, serve it on its own listener (dashboards expect
// the API at the root of an address), and Close it. All methods are safe for
// concurrent use.
type API struct {
	src       source
	auth      *webauth.Checker
	inboundIP string
	inboundPt int
	allowLAN  bool
	bindAddr  string
	logLevel  slog.Leveler
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
	logSubs map[*logSub]struct{}
	traffic map[*trafficSub]struct{}     // open /traffic streams, fed by observeTraffic
	conns   map[*websocket.Conn]struct{} // upgraded sockets, to cut on Close
}

// New returns an API for p configured by opts (nil means all
// defaults). It registers itself with p.Observe to receive log records and
// traffic samples, which starts p's observer machinery; Close removes it
// again. It starts no goroutine of its own: each stream runs in its request's
// goroutine plus, for a WebSocket, one reader goroutine, and Close ends them
// all.
func New(p *proxywatch.Proxy, opts *Options) *API {
	return newAPI(p, opts)
}

func newAPI(src source, opts *Options) *API {
	var o Options
	if opts != nil {
		o = *opts
	}
	c := &API{
		src: src,
		auth: webauth.New(webauth.Policy{Token: o.Token, AllowedOrigins: o.AllowedOrigins,
			AllowAnyOrigin: o.AllowAnyOrigin, TokenOnUpgradeOnly: true}),
		logLevel:      o.LogLevel,
		log:           o.ErrorLog,
		trafficEvery:  defaults.Or(o.TrafficInterval, defaultInterval),
		memoryEvery:   defaults.Or(o.MemoryInterval, defaultInterval),
		connsEvery:    defaults.Or(o.ConnectionsInterval, defaultInterval),
		minConnsEvery: defaults.Or(o.MinConnectionsInterval, defaultMinConnInterval),
		logQueue:      defaults.Or(o.LogQueue, defaultLogQueue),
		maxStreams:    defaults.Or(o.MaxStreams, defaultMaxStreams),
		writeWait:     defaults.Or(o.WriteWait, defaultWriteWait),
		done:          make(chan struct{}),
		logSubs:       make(map[*logSub]struct{}),
		traffic:       make(map[*trafficSub]struct{}),
		conns:         make(map[*websocket.Conn]struct{}),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.inboundIP, c.inboundPt, c.allowLAN, c.bindAddr = parseInbound(o.ProxyAddr)
	c.upgrader = websocket.Upgrader{
		CheckOrigin: c.auth.OriginAllowed, // checked before already
	}
	c.stopObserve = src.Observe(observer{c})
	return c
}

// parseInbound derives the inbound fields from the proxy's address.
func parseInbound(addr string) (ip string, port int, allowLAN bool, bind string) {
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

// Token returns the secret dashboards must present: Options.Token, or
// the one New generated.
func (c *API) Token() string { return c.auth.Token() }

// Streams returns the number of streaming responses currently served.
func (c *API) Streams() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.streams
}

// Close ends every stream (WebSockets get close code 1001, going away),
// removes the API from its Proxy and waits for every goroutine serving a
// stream to return; sockets that do not take their close frame within a
// second are cut. Later streaming requests get 503; plain requests are still
// answered. Close is idempotent and returns nil.
func (c *API) Close() error {
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
		case <-time.After(2 * closeGrace):
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
func (c *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !c.cors(w, r) {
		return
	}
	if !c.auth.Matches(r) {
		writeError(w, http.StatusUnauthorized, "Unauthorized")
		return
	}
	c.route(w, r)
}

// writeError answers {"message": msg} with status code, as Clash does.
func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, struct {
		Message string `json:"message"`
	}{msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil { // the types encoded here cannot fail
		code, b = http.StatusInternalServerError, []byte(`{"message":"encoding failed"}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

// writeUnsupported answers an endpoint of the Clash API that a forward proxy
// without proxy nodes, rules or a configuration file cannot honour.
func writeUnsupported(w http.ResponseWriter, what string) {
	writeError(w, http.StatusNotImplemented, "proxywatch does not support "+what)
}

// route dispatches an authorized request.
func (c *API) route(w http.ResponseWriter, r *http.Request) {
	seg := pathSegments(r.URL)
	if seg == nil {
		writeError(w, http.StatusNotFound, "Resource not found")
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
		writeError(w, http.StatusMethodNotAllowed, "Method not allowed")
		return false
	}
	first := ""
	if len(seg) > 0 {
		first = seg[0]
	}
	switch {
	case len(seg) == 0:
		if allow(http.MethodGet) {
			writeJSON(w, http.StatusOK, map[string]string{"hello": "clash"})
		}
	case first == "version" && len(seg) == 1:
		if allow(http.MethodGet) {
			writeJSON(w, http.StatusOK, versionInfo{Meta: false, Version: version.String()})
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
				writeJSON(w, http.StatusOK, map[string]map[string]any{"providers": {}})
			}
		default: // there is no provider by any name
			writeError(w, http.StatusNotFound, "Resource not found")
		}
	case first == "rules" && len(seg) == 1:
		if allow(http.MethodGet) {
			writeJSON(w, http.StatusOK, map[string][]rule{"rules": {matchRule}})
		}
	case first == "configs" && len(seg) == 1:
		switch method {
		case http.MethodGet:
			writeJSON(w, http.StatusOK, c.configs())
		case http.MethodPatch:
			c.patchConfigs(w, r)
		case http.MethodPut:
			writeUnsupported(w, "loading a configuration: it has none")
		default:
			allow(http.MethodGet, http.MethodPatch, http.MethodPut)
		}
	case first == "configs" && len(seg) == 2 && seg[1] == "geo",
		first == "cache",
		first == "dns",
		first == "upgrade",
		first == "restart":
		writeUnsupported(w, "/"+strings.Join(seg, "/")+": it has no GeoIP data, DNS cache, or self-upgrade")
	default:
		writeError(w, http.StatusNotFound, "Resource not found")
	}
}

// pathSegments splits the path into unescaped segments, without empty ones
// from a trailing slash. Nil means a segment could not be unescaped.
func pathSegments(u *url.URL) []string {
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

type versionInfo struct {
	Meta    bool   `json:"meta"`
	Version string `json:"version"`
}

var (
	_ http.Handler = (*API)(nil)
	_ io.Closer    = (*API)(nil)
)
