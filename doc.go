// Package proxywatch embeds the github.com/elazarl/goproxy forward proxy and
// makes everything it carries observable, live: the bytes it moves, every
// connection it holds (which can really be closed), and its log lines as
// structured records.
//
//	p := proxywatch.New(nil) // zero Options work
//	p.Observe(proxywatch.TrafficObserverFunc(func(s proxywatch.TrafficSample) {
//		log.Printf("up %d B/s, down %d B/s", int(s.UpRate()), int(s.DownRate()))
//	}))
//	log.Fatal(p.ListenAndServe("127.0.0.1:8080"))
//
// The goproxy server stays fully usable through [Proxy.GoProxy]: register
// OnRequest, OnResponse and HandleConnect handlers on it as usual. The hub
// subpackage pushes all of it to browsers over one WebSocket, and
// examples/dashboard serves a ready-made dashboard.
//
// # Connections
//
// A connection is one proxied unit, the same one the dashboard shows:
//
//   - HTTP: one plain-HTTP request/response exchange. A keep-alive client
//     connection carrying three requests is three connections, one after the
//     other.
//   - HTTPS-Tunnel: a CONNECT tunnel passed through untouched, from the
//     CONNECT until both directions ended.
//   - HTTPS-MITM and HTTP-MITM: one decrypted request inside a CONNECT that
//     the proxy decrypts (Options.MITM). Its Parent is the ID of the CONNECT it
//     came through; the CONNECT itself is not a connection of its own, since
//     its bytes are those of its requests.
//   - WebSocket and WebSocket-MITM: an upgrade request, which becomes a
//     WebSocket connection when the upstream answers 101, until either side
//     ends it.
//
// Every connection has an ID (goproxy's session number, never reused by a
// Proxy), a protocol, method, host, URL, client address, start time and live
// byte counts; after it ends, its end time, status code where there is one,
// and why it ended ([EndReason]). The last Options.History closed connections
// are kept ([Proxy.History]).
//
// # Counting
//
// Up is client to upstream, down is upstream to client. What a byte is
// depends on the protocol, and each number is measured where it is exact:
//
//   - HTTP, HTTPS-MITM, HTTP-MITM: the request body as the upstream read it
//     (up) and the response body as the client was sent it (down). Headers,
//     chunk framing and TLS records are not counted. The default goproxy
//     passes the client's Accept-Encoding upstream and the response's
//     encoding back: down is the body as encoded, which is what the client
//     receives (with a GoProxy of yours, goproxy drops the client's
//     Accept-Encoding unless KeepAcceptEncoding is set, and a transport that
//     asks for gzip itself decompresses: down is then the decompressed size).
//     A response that a handler of yours made without a round trip is not
//     counted.
//   - HTTPS-Tunnel: every byte after the proxy's "200 Connection established"
//     reply, in each direction, measured on the upstream connection (so bytes
//     the client sent together with its CONNECT are counted too). For a TLS
//     tunnel that is the TLS records, handshake included.
//   - WebSocket, WebSocket-MITM: every byte after the 101 response in each
//     direction (frames as sent, decrypted for MITM).
//
// Counts are live: each Read and Write on a counted stream adds to its
// connection's counters with one atomic add, so a ten-second download shows
// its progress every sample, not at the end. [Proxy.Stats]' Up and Down are,
// by construction, the sum over every connection, live and closed. Rates
// (ConnInfo.UpRate, TrafficSample.UpRate) are computed by the sampler over the
// real elapsed interval.
//
// A byte is counted when the proxy hands it to the kernel's socket toward
// its reader (for a tunnel on Linux, with each splice into that socket). So
// that a count follows what a slow reader takes, not what the kernel would
// buffer for it (several MiB per socket on Linux), every TCP socket of the
// proxy, to clients and to upstreams, holds at most 32 KiB unsent
// (TCP_NOTSENT_LOWAT, Linux): a count then leads what a reader's program has
// read by that, plus a 32 KiB copy buffer, plus what the reader's own kernel
// has received (its receive buffer): about 200 KiB for a reader of 50 KB/s
// with a 64 KiB buffer. A client that takes its bytes fast (1 MiB within
// 50 ms, looked at once per MiB) has the limit lifted, where a lead of a few
// MiB is milliseconds of its transfer and the limit would only cost wake-ups;
// it is set again at the first MiB that takes more than 200 ms. A fast reader that
// turns slow may therefore see its count lead by its socket's send buffer
// until it has drained it. Where TCP_NOTSENT_LOWAT is not set (other
// systems) a count may lead by the socket's whole send buffer.
//
// # Closing
//
// [Proxy.CloseConnection], [Proxy.CloseConnections] and [Proxy.CloseAll]
// remove connections from the live set at once (EndClosedByAPI), then close
// what they hold: the client connection (for a MITM request, the CONNECT's
// connection), the tunnel's upstream connection, the request's context. The
// client sees an error, never a silently truncated response, and the
// upstream request is cancelled. For the same reason, when an upstream body
// fails mid-way, proxywatch closes the client connection rather than let
// net/http end a chunked response as if it were complete.
//
// goproxy sets no timeout on tunnels, MITM connections or upstreams that
// stall; proxywatch closes a client connection that carries any of them and
// moved no byte for Options.IdleTimeout (EndIdleTimeout). [Proxy.Shutdown]
// and [Proxy.Close] also end tunnels, MITM connections and WebSockets, which
// http.Server alone does not.
//
// A close by the Proxy (by API, for idleness, at Shutdown's deadline or by
// Close) resets the client's and a tunnel's upstream TCP connection
// (SO_LINGER 0): what the kernel still queued for the client is dropped, and
// the client sees the reset once it has read what its own kernel had
// already received, not after the proxy's queue drained. A connection that
// ends by itself closes gracefully.
//
// # Observers
//
// Observers are small interfaces ([TrafficObserver], [ConnObserver],
// [LogObserver]), each with a Func adapter and a Multi fan-out. They are
// installed with Options or [Proxy.Observe]. The contract:
//
//   - No observer is ever called on the I/O path: traffic is sampled once per
//     Options.SampleInterval by the sampler goroutine, connection events
//     happen once per connection, log records once per line.
//   - Each observer has its own goroutine and its own bounded queues
//     (Options.ObserverQueue). Calls to one observer are sequential, never
//     concurrent; events of one kind arrive in order (a connection's opened
//     event before its closed one), different kinds may interleave.
//   - Under load, events are delivered in batches: an observer's goroutine,
//     once woken, lets events queue for a few milliseconds (5) before it
//     delivers them, so an event may arrive that much later, and a busy proxy
//     wakes each observer some 200 times a second rather than twice per
//     connection.
//   - An observer may be slow or even block: it delays only itself. Events it
//     cannot take are dropped and counted (Stats.Dropped); a LogRecord carries
//     in Dropped how many records that observer missed just before it.
//   - Stop functions and Close wait until queued events were delivered and
//     the observer's goroutine returned.
//
// # Logs
//
// proxywatch replaces goproxy's Logger with a sink that parses goproxy's
// format and arguments directly (no regular expressions, no guessing from
// words in the message), maps its lines onto slog levels (the noisy
// per-request INFO lines become DEBUG, upstream failures ERROR), and resolves
// the 16-bit session number goproxy prints to the connection ID. The
// embedding program's own logs can join them through [Proxy.SlogHandler];
// the proxy's http.Server errors arrive too. Logging never blocks the proxy.
//
// A log line costs only what someone wants of it. Below Options.LogLevel, or
// below the lowest level any log observer wants, it is not even formatted. A
// LogObserver that also implements slog.Leveler tells that level with Level,
// which is asked for every line and so must be cheap (embed a
// *slog.LevelVar); one that does not wants every level. A record that is
// made goes to every log observer, which filters finer itself, and a record
// that no observer has room for is counted as dropped without being made.
//
// # Concurrency
//
// All methods of Proxy are safe for concurrent use. New starts no goroutine;
// Serve, ListenAndServe and Observe start the sampler and the observer
// goroutines, and Close or Shutdown stop every goroutine the Proxy started.
//
// # Security
//
// MITM is off unless Options.MITM is set, and then uses a per-installation CA
// ([LoadOrCreateCA]), never goproxy's built-in CA, whose private key is
// public. Upstream TLS certificates are always verified; Options.UpstreamCAs
// adds roots for private or test upstreams.
//
// A request the proxy would send to itself is refused (508 Loop Detected; a
// CONNECT fails): one addressed to the proxy's own listener, and every
// request when HTTP_PROXY or HTTPS_PROXY in the proxy's environment point at
// it, which would otherwise come back to it for ever.
package proxywatch
