// Package hub serves a Proxy's traffic, connections and logs to dashboards
// over one WebSocket each, and lets them close connections. The wire protocol
// is documented in PROTOCOL.md next to this file. It is the seed protocol
// (subscribe, closeAllConnections; traffic, connections and log messages)
// plus additive extensions: a hello message, connection events (one by one,
// or batched per interval), the live list as deltas, a log backlog with
// sequence numbers for gap-free resume, close by id or filter, and the
// closed-connection history.
//
// Mount a Hub like any handler:
//
//	p := proxywatch.New(nil)
//	h := hub.New(p, nil) // a random secret: h.Token()
//	defer h.Close()
//	http.Handle("/start", h)
//
// # Security
//
// Every socket must present the secret, as ?token= or an
// "Authorization: Bearer" header; otherwise the answer is 401 and nothing is
// upgraded. Browser origins other than the hub's own are refused (403) unless
// listed in Options.AllowedOrigins. Client frames are limited in size, and so
// are the sockets (Options.MaxClients) and each client's queue. Serve the hub
// on loopback unless you have reasons not to: the secret travels in URLs.
//
// # Delivery
//
// The Hub observes its Proxy (Proxy.Observe) for log records and connection
// events, and runs one ticker goroutine for the periodic traffic,
// connections, connectionsDelta and eventBatch messages. Each message is
// encoded once and the same bytes are queued for every client that
// subscribed to it (a delta is computed once, against the list all its
// subscribers were last sent). The Hub tells the Proxy the lowest log level
// its clients want (Level), so that records nobody wants are never made. Each client has a bounded
// queue, one writer goroutine and one reader goroutine. Queueing never
// blocks: a client whose queue is full is closed with 1008 (policy
// violation), and neither the other clients nor the Proxy wait for it. A
// dropped client reconnects and resumes its logs by sequence number. Log
// records the Hub did not get, because its observer queue in the Proxy
// overflowed, are announced to clients as logsDropped, never skipped
// silently.
//
// # Concurrency
//
// All methods of Hub are safe for concurrent use. Close stops everything the
// Hub started (the ticker and every client's goroutines), removes the Hub
// from its Proxy and returns when they are gone. The Hub and the Proxy may be
// closed in either order.
//
// # Reuse
//
// The message types (Hello, Traffic, Conn, Event, Log, LogsDropped, Result,
// Error, Request, Filter) are exported with the protocol's JSON field names,
// so that Go clients and other servers, such as a Clash-style API adapter, can
// speak the same format. ConnFromInfo, EventFromConn and LogFromRecord convert
// proxywatch values to them.
//
// # Clash-compatible API
//
// Package github.com/proxywatch/proxywatch/hub/clash serves the Clash/mihomo
// external-controller API over the same Proxy, so that the dashboards people
// already use (yacd, metacubexd, zashboard) can watch proxywatch unchanged:
// traffic, connections that DELETE really closes, logs. Its CLASH.md lists
// every endpoint and the values a forward proxy without rules answers with.
package hub
